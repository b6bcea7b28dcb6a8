#!/usr/bin/env bash
# ALS fit time and nDCG@10: implicit 0.7.3 (refeval's venv) and `nectar eval` (release build)
# on the same refeval split (user_random), same params (f=64, reg=20, alpha=1, binary
# confidence, 15 iterations, 3 CG steps, seed 42) and the same threads, side by side, on
# ml-100k and on a generated MovieLens-1M-shaped set (1 M ratings, 6 k users, 4 k items,
# power-law popularity; scripts/bench/gen_movielens_like.py, deterministic).
# Usage: scripts/bench/als-vs-implicit.sh [NECTAR_BIN] [THREADS] [REPEATS]
# REFEVAL (default ../shared/tools/refeval), REFEVAL_DATA (default /tmp/refeval/data) and
# REFEVAL_PY (a python with implicit==0.7.3, pandas, threadpoolctl; default
# /tmp/refeval/venv/bin/python, created when missing) override the locations.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
BIN=${1:-target/release/nectar}
THREADS=${2:-2}
REPEATS=${3:-3}
REFEVAL=${REFEVAL:-../shared/tools/refeval}
DATA=${REFEVAL_DATA:-/tmp/refeval/data}
PY=${REFEVAL_PY:-/tmp/refeval/venv/bin/python}
SPLITS=$(realpath -m "$DATA/../splits-als-bench")
if ! "$PY" -c 'import implicit, pandas, threadpoolctl' 2>/dev/null; then
  python3 -m venv "$(dirname "$(dirname "$PY")")"
  "$PY" -m pip install -q implicit==0.7.3 pandas threadpoolctl
fi
[ -x "$BIN" ] || cargo build --release -p nectar-cli
[ -f "$DATA/ml-100k/ml-100k.csv" ] || bash "$REFEVAL/get_data.sh" "$DATA" >/dev/null
[ -f "$DATA/ml-1m-like/ml-1m-like.csv" ] || {
  mkdir -p "$DATA/ml-1m-like"
  "$PY" scripts/bench/gen_movielens_like.py "$DATA/ml-1m-like/ml-1m-like.csv"
}
for name in ml-100k ml-1m-like; do
  [ -f "$SPLITS/$name/user_random/train.csv" ] ||
    (cd "$REFEVAL" && "$PY" baselines.py --csv "$DATA/$name/$name.csv" --name "$name" \
      --splits-only --splits-dir "$SPLITS" >/dev/null)
  "$PY" scripts/bench/als_vs_implicit.py --refeval "$REFEVAL" --nectar "$BIN" \
    --train "$SPLITS/$name/user_random/train.csv" --test "$SPLITS/$name/user_random/test.csv" \
    --name "$name" --threads "$THREADS" --repeats "$REPEATS"
  echo
done
