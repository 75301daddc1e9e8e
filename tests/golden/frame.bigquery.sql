-- BigQuery's TIMESTAMP is UTC; naive DATETIME spine times are read as UTC.
WITH `__fs_spine` AS (
  SELECT
    `user_id`,
    `at`,
    ROW_NUMBER() OVER (ORDER BY `at`, `user_id`) AS `__fs_row`
  FROM labels
), `__fs_spine_t` AS (
  SELECT
    *,
    CAST(`at` AS TIMESTAMP) AS `__fs_t`
  FROM __fs_spine
), `__fs_v0_rows` AS (
  SELECT
    `r`.`user_id`,
    CAST(`r`.`ts` AS TIMESTAMP) AS `__fs_ts`,
    CAST(`r`.`ts` AS TIMESTAMP) AS `__fs_known`,
    `r`.`amount`
  FROM (
    SELECT
      `events`.`user_id` AS `user_id`,
      `events`.`ts` AS `ts`,
      `events`.`amount` AS `amount`
    FROM `events` AS `events`
  ) AS `r`
  WHERE
    NOT CAST(`r`.`ts` AS TIMESTAMP) IS NULL
), `__fs_v0_hit` AS (
  SELECT
    `__fs_row`,
    `user_id`,
    `__fs_t`,
    `__fs_hit`
  FROM (
    SELECT
      *,
      MAX(`__fs_known`) OVER (PARTITION BY `user_id` ORDER BY `__fs_t`, `__fs_side` ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS `__fs_hit`
    FROM (
      SELECT
        `user_id`,
        `__fs_known` AS `__fs_t`,
        0 AS `__fs_side`,
        NULL AS `__fs_row`,
        `__fs_known`
      FROM __fs_v0_rows
      UNION ALL
      SELECT
        `user_id`,
        `__fs_t`,
        1,
        `__fs_row`,
        NULL
      FROM __fs_spine_t
      WHERE
        NOT `user_id` IS NULL AND NOT `__fs_t` IS NULL
    ) AS `u`
  ) AS `r`
  WHERE
    `__fs_side` = 1
), `__fs_v0` AS (
  SELECT
    `s`.`__fs_row`,
    `v0`.*
  FROM __fs_v0_hit AS `s`
  INNER JOIN __fs_v0_rows AS `v0`
    ON `s`.`user_id` = `v0`.`user_id` AND `v0`.`__fs_known` = `s`.`__fs_hit`
), `__fs_v1_events` AS (
  SELECT
    `events`.`user_id` AS `user_id`,
    CAST(`ts` AS TIMESTAMP) AS `__fs_ts`,
    CAST(`ts` AS TIMESTAMP) AS `__fs_known`,
    `events`.`amount` AS `__fs_a1`
  FROM `events` AS `events`
  WHERE
    NOT CAST(`ts` AS TIMESTAMP) IS NULL
), `__fs_v1j` AS (
  SELECT
    `s`.`__fs_row`,
    COUNT(IF(`e`.`__fs_known` >= `s`.`__fs_t` - INTERVAL '10800000000' MICROSECOND, `e`.`__fs_known`, NULL)) AS `n_3h`,
    COUNT(`e`.`__fs_known`) AS `n_1d`,
    SUM(IF(`e`.`__fs_known` >= `s`.`__fs_t` - INTERVAL '10800000000' MICROSECOND, `e`.`__fs_a1`, NULL)) AS `total_3h`,
    SUM(`e`.`__fs_a1`) AS `total_1d`
  FROM __fs_spine_t AS `s`
  INNER JOIN __fs_v1_events AS `e`
    ON `s`.`user_id` = `e`.`user_id` AND `e`.`__fs_known` >= `s`.`__fs_t` - INTERVAL '86400000000' MICROSECOND AND `e`.`__fs_known` < `s`.`__fs_t`
  GROUP BY
    `s`.`__fs_row`
)
SELECT
  `s`.`user_id`,
  `s`.`at`,
  `v0`.`amount` AS `amount`,
  CASE WHEN NOT `s`.`user_id` IS NULL AND NOT `s`.`__fs_t` IS NULL THEN COALESCE(`v1j`.`n_3h`, 0) END AS `n_3h`,
  CASE WHEN NOT `s`.`user_id` IS NULL AND NOT `s`.`__fs_t` IS NULL THEN COALESCE(`v1j`.`n_1d`, 0) END AS `n_1d`,
  CASE WHEN NOT `s`.`user_id` IS NULL AND NOT `s`.`__fs_t` IS NULL THEN `v1j`.`total_3h` END AS `total_3h`,
  CASE WHEN NOT `s`.`user_id` IS NULL AND NOT `s`.`__fs_t` IS NULL THEN `v1j`.`total_1d` END AS `total_1d`
FROM __fs_spine_t AS `s`
LEFT JOIN __fs_v0 AS `v0`
  ON `s`.`__fs_row` = `v0`.`__fs_row`
LEFT JOIN __fs_v1j AS `v1j`
  ON `s`.`__fs_row` = `v1j`.`__fs_row`
ORDER BY
  `s`.`__fs_row`
