#!/usr/bin/env bash
# Deploy what infra/build.sh built (.aws-sam/build/) with the samconfig.toml environment given:
#   infra/deploy.sh [default|prod]
# Credentials and region come from the usual AWS environment (in CI: the OIDC role).
set -euo pipefail
cd "$(dirname "$0")/.."
. infra/venv.sh
env="${1:-default}"
if [ ! -f .aws-sam/build/template.yaml ]; then
  echo "deploy: nothing built; run infra/build.sh first" >&2
  exit 2
fi
sam deploy --config-env "$env" --no-progressbar
