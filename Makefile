# Nectar developer commands. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-18s %s\n", $$1, $$2}'

dev: ## Run the local dev server on the embedded default config
	cargo run -p nectar-cli -- dev

fmt: ## Format the code
	cargo fmt --all

lint: ## rustfmt check and clippy with warnings as errors
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

services: ## Install (if missing) and start redis-server and moto_server on loopback
	bash tests/services.sh start

services-stop: ## Stop the test services
	bash tests/services.sh stop

test: ## Install what tests need, then run lint and every test (unit, handler, real services)
	bash scripts/test-all.sh

pr-check: test ## What CI runs on a pull request

.PHONY: deploy-spark-job
deploy-spark-job: ## Upload the Spark job, CONFIG and the packed SPARK_ENV to s3://BUCKET/jobs/spark/ (jobs/spark/README.md "On AWS")
	bash scripts/deploy-spark-job.sh $(BUCKET) $(CONFIG) $(SPARK_ENV)

.PHONY: test-spark
test-spark: ## The PySpark ALS job's tests (Java 17, pyspark in .venv-spark, ml-100k; about 3 min, not in `make test`)
	bash scripts/spark-test.sh

# `sam local invoke` (needs Docker) runs what infra/build.sh built: the built template points
# at the bootstrap binaries, the source template at crates SAM cannot run. EVENT=events/… overrides
# the sample event.
SAM_TEMPLATE ?= .aws-sam/build/template.yaml
STACK_ENV ?= default

invoke-collect: ## sam local invoke CollectFunction with events/collect-post-json.json (EVENT=… to change)
	sam local invoke CollectFunction -e $(or $(EVENT),events/collect-post-json.json) -t $(SAM_TEMPLATE)

invoke-recommend: ## sam local invoke RecommendFunction with events/recommend-for-you.json
	sam local invoke RecommendFunction -e $(or $(EVENT),events/recommend-for-you.json) -t $(SAM_TEMPLATE)

invoke-archive: ## sam local invoke ArchiveFunction with events/archive-kinesis-batch.json
	sam local invoke ArchiveFunction -e $(or $(EVENT),events/archive-kinesis-batch.json) -t $(SAM_TEMPLATE)

invoke-train: ## sam local invoke TrainFunction with events/train-schedule-input.json
	sam local invoke TrainFunction -e $(or $(EVENT),events/train-schedule-input.json) -t $(SAM_TEMPLATE)

smoke: ## Smoke test the deployed stack of samconfig.toml's STACK_ENV (default): collect + recommend
	bash infra/smoke.sh $(STACK_ENV)

bench: ## Criterion benchmarks (release build; not part of `make test`)
	cargo bench -p nectar-model --bench collect
	cargo bench -p nectar-model --bench serve_topk
	cargo bench -p nectar-model --bench online_bandit
	cargo bench -p nectar-model --bench online_report

check-report-html: ## Online report HTML of a generated event set, screenshot and DOM in headless Chromium (target/report-check)
	bash scripts/check-report-html.sh

bench-serve: ## nectar dev with the ml-100k ALS model under wrk (release build)
	cargo build --release -p nectar-cli
	bash scripts/bench/serve.sh target/release/nectar 10 16
	bash scripts/bench/serve.sh target/release/nectar 10 16 --redis

bench-serve-features: ## What explain=true, diversity and session requests cost: the recommend service in process, variants interleaved (release build)
	cargo build --release -p nectar-cli
	SERVE_INPROC=1 bash scripts/bench/serve.sh target/release/nectar 20

bench-serve-peer: ## nectar dev against a Flask + gunicorn + numpy server of the same model, side by side under wrk (release build)
	cargo build --release -p nectar-cli
	bash scripts/bench/serve-vs-flask.sh target/release/nectar 10 3

bench-serve-ab: ## The served log's share of the 4-connection tail: nectar dev with and without it, alternating rounds (release build)
	cargo build --release -p nectar-cli
	bash scripts/bench/serve-ab.sh 10 "served-log|target/release/nectar||" "no-log|target/release/nectar|--no-served-log|"

bench-cold-start: ## Cold start of the recommend Lambda binary (release if built) via a Runtime API emulator
	bash scripts/bench/cold-start.sh

bench-served-log: ## The served log's designs (extension, log, kinesis): answer vs billed time, events written
	cargo build --release -p recommend -p nectar-served-log
	bash scripts/bench/served-log.sh

lab: ## The Lab: JupyterLab with the nectar Python package on the demo data dir (nectar lab)
	cargo run -p nectar-cli -- lab

lab-screenshot: ## Execute the Lab's notebook and screenshot its last cell (examples/lab/getting-started-last-cell.png)
	bash scripts/lab-screenshot.sh

bench-als: ## ALS fit time and nDCG@10 beside implicit's, ml-100k and a 1M MovieLens-shaped set (release build)
	cargo build --release -p nectar-cli
	bash scripts/bench/als-vs-implicit.sh target/release/nectar 2 3

.PHONY: help dev fmt lint services services-stop test pr-check invoke-collect invoke-recommend invoke-archive invoke-train smoke bench check-report-html bench-serve bench-serve-peer bench-serve-ab bench-serve-features bench-cold-start bench-served-log lab lab-screenshot bench-als
