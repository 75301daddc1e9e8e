#!/usr/bin/env bash
# Install featurestore with its test dependencies into .venv, then check the code with ruff
# (configured in pyproject.toml). Extra arguments go to `ruff check` (e.g. scripts/lint.sh --fix).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
exec "$VENV/bin/ruff" check "$@" .
