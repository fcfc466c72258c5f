# The README's two commands: `make demo` and `make test`. Everything they need is installed from here.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
NODE_INSTALLED := node_modules/.installed

.PHONY: help install databases lint test demo bench clean

help:
	@echo "make demo   serve an example app with /sql over a seeded SQLite database on http://127.0.0.1:8000"
	@echo "make test   install everything, prepare the database roles, lint, type-check and run the test suite"
	@echo "make bench  run the benchmarks side by side and write docs/benchmarks.md"

$(INSTALLED): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[postgres,mysql,mssql,redis,metrics,cache,server,examples,test]'
	touch $@

$(NODE_INSTALLED): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(INSTALLED) $(NODE_INSTALLED)

databases:
	bash scripts/prepare-databases.sh

lint: $(INSTALLED)
	$(VENV)/bin/ruff check sqlhttp_middleware tests examples bench
	$(VENV)/bin/mypy sqlhttp_middleware

test: install databases lint
	$(VENV)/bin/pytest --cov=sqlhttp_middleware --cov-report=term-missing:skip-covered

bench: install databases
	command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[bench]'
	$(PY) bench/ratelimit.py
	$(PY) bench/run.py --write docs/benchmarks.md
	$(PY) bench/cache.py --write docs/benchmarks.md
	$(PY) bench/planetscale.py --write docs/benchmarks.md

demo: $(INSTALLED)
	$(PY) examples/demo.py

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov demo.db
