-- activity aggregates these events over windows 3h, 1d: for an entity at t, the events
-- with t - window <= __fs_known < t (a training row's time, or an online lookup's).
-- n = count(__fs_known), total = sum(__fs_a1)
SELECT
  "events"."user_id" AS "user_id",
  CAST("ts" AS TIMESTAMP WITH TIME ZONE) AS "__fs_ts",
  CAST("ts" AS TIMESTAMP WITH TIME ZONE) AS "__fs_known",
  "events"."amount" AS "__fs_a1"
FROM "events" AS "events"
WHERE
  NOT CAST("ts" AS TIMESTAMP WITH TIME ZONE) IS NULL
