WITH `spend` AS (
  SELECT
    `events`.`user_id` AS `user_id`,
    `events`.`ts` AS `ts`,
    `events`.`amount` AS `amount`
  FROM parquet.`{root}/data/events.parquet` AS `events`
), `recent` AS (
  SELECT
    `spend`.`user_id` AS `user_id`,
    `spend`.`ts` AS `ts`,
    `spend`.`amount` AS `amount`
  FROM `spend` AS `spend`
  WHERE
    `spend`.`amount` > 1
)
SELECT
  `recent`.`user_id` AS `user_id`,
  `recent`.`ts` AS `ts`,
  AVG(`recent`.`amount`) OVER (PARTITION BY `recent`.`user_id` ORDER BY `recent`.`ts` NULLS LAST ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS `avg3`
FROM `recent` AS `recent`
