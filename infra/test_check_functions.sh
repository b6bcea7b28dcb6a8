#!/usr/bin/env bash
# Tests infra/check_functions.py on temporary copies of the tree: the four crates agree with the
# template (with the served-log extension's layer); a missing crate, an extra crate, a wrong binary and a non-member are each reported.
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON_INFRA:-.venv-infra/bin/python}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0

fresh() {  # a copy of template + workspace manifest with the four function crates
  rm -rf "$tmp/t" && mkdir -p "$tmp/t/infra" "$tmp/t/functions"
  cp infra/template.yaml "$tmp/t/infra/" && cp Cargo.toml "$tmp/t/"
  for f in collect archive train recommend; do
    mkdir -p "$tmp/t/functions/$f/src"
    printf '[package]\nname = "%s"\nversion = "0.1.0"\nedition = "2021"\n' "$f" > "$tmp/t/functions/$f/Cargo.toml"
    echo 'fn main() {}' > "$tmp/t/functions/$f/src/main.rs"
  done
  # The served-log extension: a crate shipped by a layer, built by its Makefile.
  mkdir -p "$tmp/t/functions/served-log-extension/src"
  printf '[package]\nname = "nectar-served-log"\nversion = "0.1.0"\nedition = "2021"\n' \
    > "$tmp/t/functions/served-log-extension/Cargo.toml"
  echo 'fn main() {}' > "$tmp/t/functions/served-log-extension/src/main.rs"
  echo 'build-ServedLogLayer:' > "$tmp/t/functions/served-log-extension/Makefile"
}
expect() {  # expect <exit code> <text in output or ""> <description>
  local want="$1" text="$2" what="$3" out rc=0
  out="$("$py" infra/check_functions.py --root "$tmp/t" 2>&1)" || rc=$?
  if [ "$rc" = "$want" ] && { [ -z "$text" ] || grep -qF -- "$text" <<<"$out"; }; then
    pass=$((pass + 1)); echo "ok: $what"
  else
    fail=$((fail + 1)); echo "FAILED: $what (exit $rc, want $want; output: $out)"
  fi
}

fresh; expect 0 "agree" "four crates, four functions, one extension layer"
fresh; rm "$tmp/t/functions/served-log-extension/Makefile"
expect 1 "must be built by its Makefile" "extension layer without its Makefile"
fresh; rm -r "$tmp/t/functions/served-log-extension"; expect 1 "no crate at functions/served-log-extension" "missing extension crate"
fresh; rm -r "$tmp/t/functions/recommend"; expect 1 "no crate at functions/recommend" "missing crate"
fresh; mkdir -p "$tmp/t/functions/extra/src"; printf '[package]\nname = "extra"\n' > "$tmp/t/functions/extra/Cargo.toml"
expect 1 "functions/extra: crate has no AWS::Serverless::Function" "crate not in the template"
fresh; printf '[[bin]]\nname = "bootstrap"\npath = "src/main.rs"\n' >> "$tmp/t/functions/train/Cargo.toml"
expect 1 "must have exactly one binary" "two binaries in one package"
fresh; sed -i 's/name = "collect"/name = "collector"/' "$tmp/t/functions/collect/Cargo.toml"
expect 1 "builds 'collector'" "binary name differs from Metadata Binary"
fresh; sed -i 's|"functions/\*", ||' "$tmp/t/Cargo.toml"
expect 1 "not a member of the root workspace" "crate outside the workspace"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
