-- entity: user_id
-- timestamp: updated_at
-- owner: identity-data@example.com
-- description: The user's account profile as of each change (home country, account type, sign-up time); one row per profile version from the accounts table.
-- tags: pii, profile
SELECT
    user_id,
    updated_at,
    country,
    account_type,
    signup_ts
FROM accounts
