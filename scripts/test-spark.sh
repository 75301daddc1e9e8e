#!/usr/bin/env bash
# Run the Spark tests (marker `spark`): training frames on a local Apache Spark session must equal
# DuckDB's, types included, on the reference suites' random cases. Installs the `spark` extra
# (PySpark) into .venv; needs Java 17+. FEATURESTORE_SPARK_EXAMPLES sets the number of random
# cases per suite (default 40). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v java >/dev/null && [ -z "${JAVA_HOME:-}" ]; then
    echo "no Java on this machine (java not on PATH, JAVA_HOME unset): the Spark tests did not run"
    exit 0
fi
source scripts/_venv.sh
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[dev,spark]'
exec "$VENV/bin/python" -m pytest tests/test_spark.py -m spark -p no:cacheprovider "$@"
