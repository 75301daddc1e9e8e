SELECT
  "events"."user_id" AS "user_id",
  COUNT(*) AS "n",
  SUM("events"."amount") AS "total"
FROM "events" AS "events"
GROUP BY
  "events"."user_id"
