SELECT
  "events"."user_id" AS "user_id",
  COUNT(*) AS "n",
  SUM("events"."amount") AS "total"
FROM READ_PARQUET('{root}/data/events.parquet') AS "events"
GROUP BY
  "events"."user_id"
