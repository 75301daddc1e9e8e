SELECT
  "events"."user_id" AS "user_id",
  "events"."ts" AS "ts",
  "events"."amount" AS "amount"
FROM "events" AS "events"
