# chatops developer tasks. Everything runs from the project's own .venv.
#
#   make run                  start chatops (the local console when no Slack credentials are set)
#   make test                 run the test suite against SQLite and a throwaway PostgreSQL
#   make test PYTEST_ARGS=... pass arguments to pytest (e.g. PYTEST_ARGS="tests/storage -x")
#   make test TEST_WORKERS=1  run the tests in one process (default: one per core, at most 4)
#   make lint                 ruff check, ruff format --check, mypy
#   make lock                 update requirements.lock after changing dependencies in pyproject.toml
#   make lock UPGRADE=1       the same, moving every pin to its newest allowed version
#   make clean                remove the venv, caches and the throwaway PostgreSQL cluster

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Every dependency, runtime and dev, pinned with its hashes for Python 3.11 on Linux.
LOCK := requirements.lock
# Touched after a successful install: the venv is rebuilt when pyproject.toml or the lock changes.
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# pytest-xdist workers: one per core, at most 4 (the tests wait on processes and sockets as
# much as they compute, but many more workers than cores would only make each one slower).
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); echo $$(( n > 4 ? 4 : n )))
PYTEST := $(BIN)/pytest -q $(if $(filter-out 0 1,$(TEST_WORKERS)),-n $(TEST_WORKERS))
# Through bash, so a checkout that lost the executable bit still works.
PG := bash scripts/postgres.sh
PIP := PYTHONWARNINGS=ignore $(BIN)/python -m pip --disable-pip-version-check

.DEFAULT_GOAL := help
.PHONY: help venv lock run test lint clean

help:
	@sed -n 's/^#   /  /p' $(firstword $(MAKEFILE_LIST))

venv: $(STAMP)

# Rebuilt from nothing, so a dependency dropped from the lock leaves the venv too. The
# locked set goes in first (hashes checked, nothing resolved), then the project itself
# with --no-deps: what runs is exactly what the lock says.
$(STAMP): pyproject.toml $(LOCK)
	@rm -rf $(VENV)
	@echo "==> creating $(VENV) with $$($(PYTHON) --version 2>&1)"
	@$(PYTHON) -m venv $(VENV) || { \
	    echo "could not create $(VENV): install the venv module (Debian: apt-get install python3-venv)" >&2; \
	    rm -rf $(VENV); exit 1; }
	@echo "==> installing the locked dependencies ($(LOCK)) and chatops into $(VENV)"
	@$(PIP) install --quiet --no-deps --require-hashes -r $(LOCK)
	@$(PIP) install --quiet --no-deps -e .
	@$(PIP) check >/dev/null || { $(PIP) check; echo "$(LOCK) is incomplete: run make lock" >&2; exit 1; }
	@touch $@

# uv resolves pyproject.toml's dependencies and the dev extra into the lock, keeping the
# pins already there unless UPGRADE is set. It comes from the venv (it is a dev dependency);
# when the venv cannot be built (a broken lock), it is installed on its own first.
lock:
	@if [ ! -x $(BIN)/uv ]; then \
	    [ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV) || exit 1; \
	    $(PIP) install --quiet "uv$$(sed -n 's/^uv==\([^ ]*\).*/==\1/p' $(LOCK) 2>/dev/null)" || exit 1; \
	fi
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --python-platform linux \
	    --generate-hashes --custom-compile-command "make lock" --quiet $(if $(UPGRADE),--upgrade) -o $(LOCK)

run: venv
	$(BIN)/chatops run

# Uses CHATOPS_TEST_POSTGRES_URL when it is already set; otherwise starts the throwaway
# cluster (scripts/postgres.sh), points the tests at it, and stops it afterwards whatever
# pytest's result (which stays make's result). A cluster that was already running before
# `make test` is left running.
test: venv
	@if [ -n "$${CHATOPS_TEST_POSTGRES_URL:-}" ]; then \
	    echo "==> PostgreSQL from the environment: $$CHATOPS_TEST_POSTGRES_URL"; \
	    exec $(PYTEST) $(PYTEST_ARGS); \
	fi; \
	$(PG) status || trap '$(PG) stop' EXIT; \
	$(PG) start || exit 1; \
	export CHATOPS_TEST_POSTGRES_URL="$$($(PG) url)"; \
	echo "==> CHATOPS_TEST_POSTGRES_URL=$$CHATOPS_TEST_POSTGRES_URL"; \
	$(PYTEST) $(PYTEST_ARGS)

# Runs all three checks and fails if any of them failed.
lint: venv
	@status=0; \
	echo "==> ruff check"; $(BIN)/ruff check . || status=1; \
	echo "==> ruff format --check"; $(BIN)/ruff format --check . || status=1; \
	echo "==> mypy bot agents storage"; $(BIN)/mypy bot agents storage || status=1; \
	exit $$status

# Keeps chatops.db and .env: they are the user's data, not build output.
clean:
	@if [ -d .pgdata ]; then $(PG) destroy || true; fi
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# Benchmarks (bench/, results in docs/benchmarks.md): each script is bounded in time, talks
# only to 127.0.0.1 and prints its tables; the PostgreSQL ones use the throwaway cluster.
#   make bench                run the benchmarks (about 7 minutes) and print their tables
.PHONY: bench
bench: venv
	$(BIN)/python bench/ack_latency.py
	$(BIN)/python bench/orchestration.py
	$(BIN)/python bench/concurrency.py
	$(BIN)/python bench/slack_economy.py
	$(BIN)/python bench/growth.py
	$(BIN)/python bench/scale_out.py
	$(BIN)/python bench/handoff.py
