# revsync developer entry points. Every target that needs Python sets up .venv itself.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.DEFAULT_GOAL := help

# Lambda runs python3.12: prefer it (pyenv or PATH), fall back to python3.
PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12 /root/.pyenv/versions/3.12*/bin/python3.12) $(shell command -v python3.12) $(shell command -v python3))
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The AWS SAM CLI in its own venv (its dependency pins differ from the dev tools').
SAM_VENV := .sam-venv
SAM := $(SAM_VENV)/bin/sam
SAM_VERSION := 1.170.0
# Stripe's CLI, its official npm package pinned in local/stripe-cli (the sandbox's CLI test runs it).
STRIPE_CLI_DIR := local/stripe-cli
STRIPE_CLI_STAMP := $(STRIPE_CLI_DIR)/node_modules/.package-lock.json

.PHONY: help venv test test-unit lint fmt build sam-cli stripe-cli up demo bench clean browser-deps soak redrive

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml layers/revsync/requirements.txt
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip 2>&1 | { grep -v 'is ignored: it is neither' || true; }
	$(VPY) -m pip install --quiet -e '.[dev]' 2>&1 | { grep -v 'is ignored: it is neither' || true; }
	@touch $(STAMP)

venv: $(STAMP) ## create .venv with the layer package (editable) and dev tools

test: $(STAMP) lint browser-deps $(SAM) stripe-cli ## lint, then the whole test suite (unit, integration, end to end, browser, Stripe CLI, build)
	PATH="$(abspath $(VENV))/bin:$(abspath $(SAM_VENV))/bin:$$PATH" $(VPY) -m pytest

# The settings page is tested in Debian's chromium; installing it needs root (as in CI). Elsewhere,
# without it, that one test is skipped (and CI=true makes a missing browser an error).
browser-deps: ## install Debian's chromium and chromedriver if missing (root only)
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; \
	else echo "chromium/chromedriver not installed and not root: the browser test will be skipped"; fi

test-unit: $(STAMP) ## the unit tests only: the domain and the services on fakes
	$(VPY) -m pytest tests/unit

lint: $(STAMP) ## ruff, mypy and cfn-lint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/cfn-lint template.yaml

fmt: $(STAMP) ## format and autofix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

$(SAM):
	@test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --disable-pip-version-check aws-sam-cli==$(SAM_VERSION) 2>&1 | { grep -v 'is ignored: it is neither' || true; }

sam-cli: $(SAM) ## install the AWS SAM CLI into .sam-venv (its own venv: its pins differ from the dev tools')

# `npm install --no-save` with the lock, not `npm ci`: a lock lists only the platform packages its
# registry serves, and `npm ci` refuses one without all of @stripe/cli's optional platforms.
# --ignore-scripts: without its platform package, @stripe/cli's postinstall would download the binary
# from GitHub. Without npm (or a platform package for this machine) the CLI test is skipped.
$(STRIPE_CLI_STAMP): $(STRIPE_CLI_DIR)/package.json $(STRIPE_CLI_DIR)/package-lock.json
	@if command -v npm >/dev/null; then \
		cd $(STRIPE_CLI_DIR) && npm install --ignore-scripts --no-save --no-audit --no-fund --loglevel=error; \
	else echo "npm is not installed: the Stripe CLI test will be skipped"; fi

stripe-cli: $(STRIPE_CLI_STAMP) ## install Stripe's CLI from npm into local/stripe-cli (the version its package-lock.json pins)

# The layer and functions build with their Makefiles (BuildMethod: makefile), which call python3.12:
# the venv's comes first on PATH so the bytecode they precompile is the Lambda runtime's version.
build: $(STAMP) $(SAM) ## sam build into .aws-sam/build (trimmed layer, precompiled bytecode), as deployed
	PATH="$(abspath $(VENV))/bin:$$PATH" $(SAM) build

up: $(STAMP) ## run the local stack in the foreground (API :3000, moto :5000, Stripe sandbox :12111)
	$(VPY) -m local.stack

demo: $(STAMP) ## run the end-to-end story on the local stack, print the records, check them against Stripe
	$(VPY) -m local.demo

soak: $(STAMP) ## 10,000 hostile inputs over HTTP against a fresh local stack; prints counts, fails on any 5xx or loss
	$(VPY) -m local.soak

redrive: $(STAMP) ## move every message parked in the local stack's dead-letter queue back to its queue (`make up` running)
	$(VPY) -m local.redrive

bench: $(STAMP) build ## run the benchmarks under bench/ (cold start as built, backfill, per-event cost, revenue reads, MRR history over years, the platform at 5,000 tenants)
	-$(VPY) -m bench.cold_start
	-$(VPY) -m bench.backfill
	-$(VPY) -m bench.worker_cost
	-$(VPY) -m bench.revenue
	-$(VPY) -m bench.platform
	-$(VPY) -m bench.history

clean: ## remove the virtualenv and build output
	rm -rf $(VENV) $(SAM_VENV) .aws-sam .mypy_cache .ruff_cache $(STRIPE_CLI_DIR)/node_modules
