# The two set-up commands of the README: `make demo` and `make test`. Both create .venv on first use.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
CLI := $(VENV)/bin/checkout-recs

.PHONY: venv demo test test-fast lint bench bench-serving validate-manifests lock compile-pipelines services clean

venv:
	@bash scripts/bootstrap.sh

services: ## make sure Redis (6379) and PostgreSQL (5432) answer on 127.0.0.1
	@bash scripts/ensure_services.sh

demo: venv
	@$(CLI) demo

test: venv services
	@$(PY) -m pytest -q -p no:cacheprovider tests

test-fast: venv services
	@$(PY) -m pytest -q -p no:cacheprovider -m "not slow and not e2e" tests

lint: venv
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/mypy

bench: venv services
	@$(PY) benchmarks/data.py
	@$(PY) benchmarks/models.py
	@$(PY) benchmarks/ranker_segments.py --jobs 2
	@$(PY) benchmarks/features.py

bench-serving: venv services
	@$(PY) benchmarks/serving.py

validate-manifests: venv
	@$(CLI) manifests validate

compile-pipelines: venv
	@$(CLI) pipeline compile --all

lock: ## re-pin requirements.lock from requirements.in (needs uv)
	@$(VENV)/bin/uv pip compile requirements.in --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	  --find-links $${PIP_FIND_LINKS:-/opt/wheels} --constraint /etc/xdg/pip/constraints.txt --no-header -o requirements.lock

clean:
	rm -rf artifacts runs .pytest_cache
