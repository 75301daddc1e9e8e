#!/usr/bin/env bash
# Run the browser tests (marker `browser`): the feature catalog page in a real headless Chromium.
# Installs the `browser` extra (Selenium) into .venv, and Chromium with its driver from the
# system's packages when they are missing and this runs as root (Debian: chromium, chromium-driver).
# The screenshot goes to test-artifacts/catalog.png. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromedriver >/dev/null || ! { command -v chromium >/dev/null || command -v chromium-browser >/dev/null; }; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing Chromium and its driver (apt-get install chromium chromium-driver)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || {
            apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium chromium-driver >/dev/null; }
    else
        echo "no Chromium or chromedriver here, and no way to install them (needs root and apt-get): the browser tests did not run"
        exit 0
    fi
fi
source scripts/_venv.sh
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[dev,browser]'
exec "$VENV/bin/python" -m pytest tests/test_catalog.py -m browser -p no:cacheprovider -rA "$@"
