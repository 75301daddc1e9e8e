-- entity: user_id
-- timestamp: day_end
-- owner: fraud-ml@example.com
-- description: Each user's card spend over one UTC day (count, total, largest payment), stamped at the end of the day; the nightly batch lands two hours after midnight UTC and a value older than three days is stale.
-- available_after: 2h
-- ttl: 3d
-- tags: spend, daily
SELECT
    user_id,
    date_trunc('day', ts) + INTERVAL 1 DAY AS day_end,
    count(*) AS txn_count,
    sum(amount) AS total_amount,
    max(amount) AS max_amount
FROM transactions
GROUP BY user_id, date_trunc('day', ts) + INTERVAL 1 DAY
