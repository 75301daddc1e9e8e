-- entity: merchant_id, country
-- timestamp: day_end
-- owner: risk-analytics@example.com
-- description: Daily volume and fraud rate of a merchant's payments by card country (UTC day, stamped at its end), with the merchant's category. Labels are taken as known at the hourly batch after the day closes.
-- available_after: 1h
-- ttl: 7d
-- tags: merchant, risk, daily
SELECT
    t.merchant_id,
    t.country,
    date_trunc('day', t.ts) + INTERVAL 1 DAY AS day_end,
    m.category,
    count(*) AS txn_count,
    count(*) FILTER (WHERE t.is_fraud) AS fraud_count,
    avg(CASE WHEN t.is_fraud THEN 1.0 ELSE 0.0 END) AS fraud_rate,
    avg(t.amount) AS avg_amount
FROM transactions AS t
JOIN merchants AS m
    ON m.merchant_id = t.merchant_id
    AND m.onboarded_at <= t.ts
GROUP BY t.merchant_id, t.country, date_trunc('day', t.ts) + INTERVAL 1 DAY, m.category
