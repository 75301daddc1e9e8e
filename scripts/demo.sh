#!/usr/bin/env bash
# Install featurestore into .venv and run the fraud example end to end on the embedded defaults:
# generate the sources, validate every definition, list the catalog, show compiled SQL, build a
# training frame, materialize the online store, look users up, and record the definitions in the
# registry with the features nobody has read yet; then train, serve and score, and push fresh card
# events whose effect on the score is served at once.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
fs() { "$VENV/bin/featurestore" "$@"; }
export FEATURESTORE_CONSUMER="${FEATURESTORE_CONSUMER:-demo}"   # who reads: recorded with every read

echo "== 1. generate the example's sources (Parquet files, a PostgreSQL table, a DuckDB table)"
fs demo-data
echo "== 2. validate every definition"
fs validate
echo "== 3. the catalog"
fs views
echo "== 4. the SQL a window view compiles to: the events its windows aggregate"
fs compile cards_added
echo "== 5. a point-in-time training frame: October's transactions, each with features as of its own time"
fs frame --spine "SELECT transaction_id, user_id, merchant_id, country, ts, is_fraud FROM transactions
                  WHERE ts >= TIMESTAMPTZ '2026-10-01 00:00:00+00' ORDER BY ts" \
   --features "user_daily_stats.*,user_profile.account_type,merchant_risk.fraud_rate,user_spend_trend.*,cards_added.cards_added_1d" \
   --head 8
echo "== 6. materialize the latest values into PostgreSQL (a first run backfills; the next one is incremental)"
fs materialize --until 2026-10-30
fs materialize --until 2026-11-01
echo "== 7. look two users up as of the last run, as a serving service would (user 1626 added 15 cards that week)"
fs online --entity user_id=1,1626 --features "user_daily_stats.*,user_profile.account_type,cards_added.*" \
   --at 2026-11-01
echo "== 8. record the definitions in the registry, and list the features nobody read in 30 days"
fs apply
fs unused
echo "== 9. the model: train a scikit-learn Pipeline on point-in-time features (and a leaky one, to compare),"
echo "      save the frame as a snapshot, serve the features over HTTP, score new transactions, check no skew,"
echo "      then push a burst of new cards to card_events: served at once, and the score moves"
"$VENV/bin/python" examples/fraud/run.py
