#!/usr/bin/env bash
# The one test command: installs what the tests need (redis-server, moto in a venv, the pinned
# infra tools in .venv-infra), starts the services on loopback, runs the infra checks, checks
# formatting and lints, runs every test, and stops the services.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required (https://rustup.rs)" >&2
  exit 1
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

# A one-shot build gains nothing from incremental compilation's caches (gigabytes on a clean
# clone); developers' own `cargo test` keeps them.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}

bash tests/services.sh start
trap 'bash tests/services.sh stop' EXIT
set -a
# shellcheck source=/dev/null
source tests/.services/env
set +a

echo "== infra checks (cfn-lint, sam validate --lint, actionlint, schedules vs config, functions vs template)"
bash infra/check.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked --no-fail-fast
echo "== the Lab: Python package (python/, built by scripts/python-env.sh), its tests and the notebook"
lab_start=$SECONDS
cargo fmt --manifest-path python/Cargo.toml -- --check
cargo clippy --manifest-path python/Cargo.toml --all-targets --locked -- -D warnings
cargo build -p nectar-cli --locked
bash scripts/python-env.sh
.venv-lab/bin/python -m pytest -q python/tests
echo "== the Lab took $((SECONDS - lab_start)) s"
