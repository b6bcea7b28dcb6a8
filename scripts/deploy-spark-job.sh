#!/usr/bin/env bash
# Uploads what the EMR Serverless job run of a spark task expects under s3://BUCKET/jobs/spark/
# (jobs/spark/README.md, "On AWS"): the job script nectar_als.py, the deployment's config as
# nectar.toml, and the packed Python environment pyspark_env.tar.gz (built on Amazon Linux 2023
# as that README says; it is not built here).
#
#   scripts/deploy-spark-job.sh BUCKET CONFIG_FILE PYSPARK_ENV_TAR_GZ
#   make deploy-spark-job BUCKET=… CONFIG=… SPARK_ENV=…
#
# AWS_ENDPOINT_URL (e.g. a local moto server) is honoured. Exits 2 on a bad argument, naming it.
set -euo pipefail

usage() {
  echo "usage: $0 BUCKET CONFIG_FILE PYSPARK_ENV_TAR_GZ" >&2
  echo "error: $1" >&2
  exit 2
}

[ $# -eq 3 ] || usage "expected 3 arguments, got $#"
bucket=$1 config=$2 env_tar=$3
root=$(cd "$(dirname "$0")/.." && pwd)
job="$root/jobs/spark/nectar_als.py"

[[ "$bucket" =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] || usage "BUCKET: not an S3 bucket name: $bucket"
[ -f "$config" ] || usage "CONFIG_FILE: no such file: $config"
[ -f "$env_tar" ] || usage "PYSPARK_ENV_TAR_GZ: no such file: $env_tar"
gzip -t "$env_tar" 2>/dev/null || usage "PYSPARK_ENV_TAR_GZ: not a gzip archive: $env_tar"
[ -f "$job" ] || usage "the job script is missing: $job"
if command -v nectar >/dev/null 2>&1; then
  nectar config check "$config" >/dev/null || usage "CONFIG_FILE: nectar config check refused $config"
fi

endpoint=()
[ -n "${AWS_ENDPOINT_URL:-}" ] && endpoint=(--endpoint-url "$AWS_ENDPOINT_URL")
dest="s3://$bucket/jobs/spark"
aws "${endpoint[@]}" s3 cp --only-show-errors "$job" "$dest/nectar_als.py"
aws "${endpoint[@]}" s3 cp --only-show-errors "$config" "$dest/nectar.toml"
aws "${endpoint[@]}" s3 cp --only-show-errors "$env_tar" "$dest/pyspark_env.tar.gz"
echo "uploaded nectar_als.py, nectar.toml and pyspark_env.tar.gz to $dest/"
