#!/usr/bin/env bash
# The Spark job's tests (`make test-spark`): pyspark in local mode against the Rust mapping, the
# artifact format and ml-100k. Installs what they need: Java 17 (Debian openjdk-17-jre-headless,
# when no java is on PATH), the pinned pyspark of jobs/spark/requirements.txt in .venv-spark/,
# the nectar CLI (cargo build -p nectar-cli) and ml-100k (refeval's get_data.sh, when the
# refeval folder is there: ../shared/tools/refeval or REFEVAL_DIR).
#
#   scripts/spark-test.sh [pytest args...]     e.g. -k mapping
#
# The ml-100k figures (nDCG@10 and fit time beside nectar eval) are printed and written to
# SPARK_RESULTS (default target/spark-results-ml-100k.json).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VENV=${NECTAR_SPARK_VENV:-$ROOT/.venv-spark}
REQ=jobs/spark/requirements.txt
log() { echo "spark-test: $*" >&2; }

if ! command -v java >/dev/null 2>&1; then
  log "installing openjdk-17-jre-headless (Debian)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq openjdk-17-jre-headless >/dev/null
fi

# Reinstalls only when the requirements changed (a stamp of their sha256, written last).
sum=$(sha256sum "$REQ" | cut -d' ' -f1)
if [ ! -f "$VENV/.requirements.sha256" ] || [ "$sum" != "$(cat "$VENV/.requirements.sha256")" ]; then
  log "installing $REQ into ${VENV#"$ROOT"/}/ (pyspark is about 320 MB)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ"
  echo "$sum" > "$VENV/.requirements.sha256"
fi

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
cargo build -q -p nectar-cli
export NECTAR_BIN="$TARGET/debug/nectar"

REFEVAL_DIR=${REFEVAL_DIR:-$ROOT/../shared/tools/refeval}
DATA=${REFEVAL_DATA:-/tmp/refeval/data}
export NECTAR_ML100K=${NECTAR_ML100K:-$DATA/ml-100k/ml-100k.csv}
if [ ! -f "$NECTAR_ML100K" ] && [ -x "$REFEVAL_DIR/get_data.sh" ]; then
  log "fetching ml-100k into $DATA (refeval get_data.sh)"
  (cd "$REFEVAL_DIR" && ./get_data.sh "$DATA")
fi
export SPARK_RESULTS=${SPARK_RESULTS:-$TARGET/spark-results-ml-100k.json}

cd jobs/spark
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider -s test_nectar_als.py "$@"
