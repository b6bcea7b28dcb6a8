# Nectar developer commands. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-14s %s\n", $$1, $$2}'

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

bench: ## Criterion benchmarks (release build; not part of `make test`)
	cargo bench -p nectar-model --bench collect

.PHONY: help dev fmt lint services services-stop test pr-check bench
