-- entity: user_id
-- timestamp: ts
-- owner: fraud-ml@example.com
-- description: Cards added to the user's account over trailing windows; a burst of new cards within hours is the strongest account-takeover signal in this domain.
-- known_at: ingested_at
-- windows: 3h, 1d, 7d
-- tags: cards, velocity
SELECT
    user_id,
    count(*) AS cards_added,
    count(DISTINCT card_id) AS distinct_cards
FROM card_events
GROUP BY user_id
