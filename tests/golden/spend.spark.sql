SELECT
  `events`.`user_id` AS `user_id`,
  `events`.`ts` AS `ts`,
  `events`.`amount` AS `amount`
FROM parquet.`{root}/data/events.parquet` AS `events`
