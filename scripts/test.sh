#!/usr/bin/env bash
# Install featurestore with its test dependencies into .venv, then run the whole test suite.
# The embedded PostgreSQL comes with the `pgserver` package; set FEATURESTORE_POSTGRES_URL to test
# against another server. Extra arguments go to pytest (e.g. scripts/test.sh -k validate).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
exec "$VENV/bin/python" -m pytest "$@"
