#!/usr/bin/env bash
# Build the Lambda packages: `sam build` with the rust-cargolambda builder (cargo-lambda and Zig
# from PyPI, pinned in infra/requirements.txt), release mode, into .aws-sam/build/.
#
#   infra/build.sh                       # every function in infra/template.yaml
#   infra/build.sh CollectFunction ...   # only these, each into .aws-sam/partial/<id>/ (a check,
#                                        # not deployable: deploy needs the full build)
#   NECTAR_ARCH=x86_64 infra/build.sh    # force the architecture
#
# The architecture defaults to arm64 when `rustup target add aarch64-unknown-linux-gnu` works,
# else x86_64. The chosen one is written as the default of the Architecture parameter in the
# built template, so a following `sam deploy` (which deploys .aws-sam/build/template.yaml) can
# never pair an x86_64 binary with an arm64 function. Don't set Architecture in samconfig.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
. infra/venv.sh

arch="${NECTAR_ARCH:-}"
if [ -z "$arch" ]; then
  if rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu \
     || rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1; then
    arch=arm64
  else
    arch=x86_64
    echo "build: the aarch64 Rust target cannot be installed here; building x86_64" >&2
  fi
fi
case "$arch" in
  arm64) rustup target add aarch64-unknown-linux-gnu >/dev/null ;;
  x86_64) rustup target add x86_64-unknown-linux-gnu >/dev/null ;;
  *) echo "build: NECTAR_ARCH must be arm64 or x86_64, not $arch" >&2; exit 2 ;;
esac

# The workspace's release profile keeps line tables (debug = "line-tables-only") for local
# profiling; Lambda packages drop them: an unstripped function binary is ~70 MB (19 MB zipped),
# which every cold start has to load. Symbols stay, so panics still name functions.
export CARGO_PROFILE_RELEASE_STRIP="${CARGO_PROFILE_RELEASE_STRIP:-debuginfo}"

# The served-log layer is a makefile build (functions/served-log-extension/Makefile): it needs the
# workspace and the architecture.
export NECTAR_ROOT="$PWD" NECTAR_ARCH="$arch"

start=$(date +%s)
if [ "$#" -gt 0 ]; then
  # `sam build <id>` empties the build directory first, so a build of some functions is kept
  # apart from the deployable one: each goes to .aws-sam/partial/<id>/ (for checking only).
  for id in "$@"; do
    sam build "$id" --template-file infra/template.yaml --build-dir ".aws-sam/partial/$id" \
      --parameter-overrides "Architecture=$arch"
  done
  echo "build: $arch builds of $* in .aws-sam/partial/ ($(( $(date +%s) - start )) s); deploy needs a full build"
  exit 0
fi

sam build --template-file infra/template.yaml --parameter-overrides "Architecture=$arch"
python3 - "$arch" <<'PY'
import sys
from samcli.yamlhelper import yaml_dump, yaml_parse
path = ".aws-sam/build/template.yaml"
with open(path) as f:
    t = yaml_parse(f.read())
t["Parameters"]["Architecture"]["Default"] = sys.argv[1]
t["Parameters"]["Architecture"]["AllowedValues"] = [sys.argv[1]]
with open(path, "w") as f:
    f.write(yaml_dump(t))
PY
echo "build: $arch packages in .aws-sam/build/ ($(( $(date +%s) - start )) s)"
