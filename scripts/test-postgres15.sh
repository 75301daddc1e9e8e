#!/usr/bin/env bash
# Run the tests that use PostgreSQL against a real PostgreSQL 15 server (not the embedded one),
# when this machine has its binaries (Debian's postgresql-15). The server lives in a temporary
# folder and is stopped at exit. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${PG15_BIN:-/usr/lib/postgresql/15/bin}"
if [ ! -x "$BIN/postgres" ]; then
    echo "no PostgreSQL 15 binaries in $BIN: the tests ran on the embedded PostgreSQL only"
    exit 0
fi
source scripts/_venv.sh
DATA="$(mktemp -d)"
PORT="$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
RUNUSER="$(PATH="$PATH:/usr/sbin:/sbin" command -v runuser || true)"  # sbin may be off a CI's PATH
as_owner() {  # PostgreSQL refuses to run as root
    if [ "$(id -u)" = 0 ]; then "${RUNUSER:?runuser is needed to run PostgreSQL as root}" -u postgres -- "$@"; else "$@"; fi
}
[ "$(id -u)" = 0 ] && chown postgres "$DATA"
as_owner "$BIN/initdb" -D "$DATA/db" -U postgres --auth=trust >/dev/null
as_owner "$BIN/pg_ctl" -D "$DATA/db" -l "$DATA/log" -w start \
    -o "-p $PORT -c listen_addresses=127.0.0.1 -k $DATA" >/dev/null
trap 'as_owner "$BIN/pg_ctl" -D "$DATA/db" -m fast stop >/dev/null; rm -rf "$DATA"' EXIT
echo "PostgreSQL $("$BIN/postgres" --version | awk '{print $3}') on port $PORT"
FEATURESTORE_POSTGRES_URL="postgresql://postgres@127.0.0.1:$PORT/postgres" \
    "$VENV/bin/python" -m pytest tests/test_online.py tests/test_sources.py tests/test_server.py tests/test_governance.py -p no:cacheprovider "$@"
