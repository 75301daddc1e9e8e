-- entity: user_id
-- timestamp: day_end
-- owner: fraud-ml@example.com
-- description: Average daily spend over the user's last seven days with spending (from user_daily_stats), and how that day's spend compares with it; a sudden jump above the trend is a takeover signal.
-- available_after: 2h
-- ttl: 7d
-- tags: spend, trend
SELECT
    user_id,
    day_end,
    avg(total_amount) OVER (
        PARTITION BY user_id ORDER BY day_end ROWS BETWEEN 6 PRECEDING AND CURRENT ROW
    ) AS avg_daily_amount_7d,
    total_amount / avg(total_amount) OVER (
        PARTITION BY user_id ORDER BY day_end ROWS BETWEEN 6 PRECEDING AND CURRENT ROW
    ) AS spend_vs_trend_7d
FROM user_daily_stats
