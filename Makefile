# The two set-up commands of the README: `make demo` and `make test`. Both create .venv on first use.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
CLI := $(VENV)/bin/checkout-recs

.PHONY: venv demo test test-fast lint bench bench-serving bench-throughput bench-scale validate-manifests lock requirements images base-image compile-pipelines services clean stack-up stack-down stack-smoke

venv:
	@bash scripts/bootstrap.sh

services: ## make sure Redis (6379) and PostgreSQL (5432) answer on 127.0.0.1, and prometheus + promtool are installed
	@bash scripts/ensure_services.sh

demo: venv
	@$(CLI) demo

test: venv services
	@$(PY) -m pytest -q -p no:cacheprovider tests

test-fast: venv services
	@$(PY) -m pytest -q -p no:cacheprovider -m "not slow and not e2e" tests

lint: venv
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/mypy

bench: venv services
	@$(PY) benchmarks/data.py
	@$(PY) benchmarks/models.py
	@$(PY) benchmarks/ranker_segments.py --jobs 2
	@$(PY) benchmarks/features.py

bench-serving: venv services
	@$(PY) benchmarks/serving.py

# the shipped serving path's highest rate at p99 <= 25 ms (#21 part 6), generator in its own process
bench-throughput: venv services ## -> benchmarks/results/serving_throughput.json
	@$(PY) benchmarks/serving.py --scenarios throughput --sweep '' --fault-duration 0 \
		--out benchmarks/results/serving_throughput.json

# Scale ladder (#21): simulate → serve through the CLI at each rung; resumable (runs/scale/<rung>/steps/).
# e.g. `make bench-scale SCALE_RUNGS=1M SCALE_MAX_RSS_GB=8`, `SCALE_ARGS="--from-step train"`.
SCALE_RUNGS ?= 1M 5M 18M
SCALE_MAX_RSS_GB ?= 0
SCALE_ARGS ?=
bench-scale: venv services ## -> benchmarks/results/scale.json + scale.html
	@$(PY) benchmarks/scale.py --rungs $(SCALE_RUNGS) --max-rss-gb $(SCALE_MAX_RSS_GB) $(SCALE_ARGS)

validate-manifests: venv
	@$(CLI) manifests validate

compile-pipelines: venv
	@$(CLI) pipeline compile --all

UV_COMPILE = $(VENV)/bin/uv pip compile --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	  --find-links $${PIP_FIND_LINKS:-/opt/wheels} --constraint /etc/xdg/pip/constraints.txt --no-header -q
# Runtime sets of the images (requirements/*.in), pinned at requirements.lock's versions.
IMAGE_SETS := transformer predictor predictor-torch components
# Pulled in only by feast's SQLAlchemy[mypy] (the mypy plugin): never imported at run time, left out
# of the image sets, which are installed with --no-deps.
NOT_RUNTIME := mypy librt ast-serialize pathspec types-greenlet

lock: ## re-pin requirements.lock (runtime) and requirements-dev.lock (runtime + dev), then the images' sets
	@$(UV_COMPILE) requirements.in -o requirements.lock
	@$(UV_COMPILE) requirements-dev.in --constraint requirements.lock -o requirements-dev.lock
	@$(MAKE) --no-print-directory requirements

requirements: ## re-pin requirements/*.lock (one runtime set per image) at requirements.lock's versions
	@for n in $(IMAGE_SETS); do \
	  $(UV_COMPILE) requirements/$$n.in --constraint requirements.lock \
	    $(addprefix --no-emit-package ,$(NOT_RUNTIME)) -o requirements/$$n.lock || exit 1; done

# Container images (docker/*.Dockerfile), built with podman: not part of `make test` or CI (slow).
# Here no registry answers: BASE_IMAGE is made by scripts/base_image.sh (debootstrap) and the CPU
# torch wheel comes from the local wheel folder. A registry-connected CI overrides BASE_IMAGE (or
# leaves the Dockerfiles' default python:3.11.7-slim-bookworm) and needs no wheel folder.
IMAGE_TAG ?= 0.1.0
IMAGE_REPO ?= ghcr.io/checkout-recs
BASE_IMAGE ?= localhost/checkout-recs/python-base:3.11-bookworm
WHEELS ?= $(or $(PIP_FIND_LINKS),/opt/wheels)
CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt
PIP_INDEX_URL ?= https://pypi.org/simple
# torch==2.13.0+cpu: from the wheel folder when it has it, else from PyTorch's CPU index.
PIP_EXTRA_INDEX_URL ?= $(if $(wildcard $(WHEELS)/torch-2.13.0*.whl),,https://download.pytorch.org/whl/cpu)
IMAGES ?= predictor transformer components
export CONTAINERS_CONF ?= $(CURDIR)/docker/containers.conf

base-image: ## the local base image (debootstrap; cached), when BASE_IMAGE is not pulled from a registry
	@bash scripts/base_image.sh $(BASE_IMAGE)

images: ## build the three images with podman, smoke-run them, write benchmarks/results/images.json
	@case "$(BASE_IMAGE)" in localhost/*) bash scripts/base_image.sh $(BASE_IMAGE);; esac
	@BASE_IMAGE=$(BASE_IMAGE) IMAGE_REPO=$(IMAGE_REPO) IMAGE_TAG=$(IMAGE_TAG) PIP_INDEX_URL=$(PIP_INDEX_URL) \
	  PIP_EXTRA_INDEX_URL=$(PIP_EXTRA_INDEX_URL) WHEELS=$(WHEELS) CA_BUNDLE=$(CA_BUNDLE) \
	  bash scripts/build_images.sh $(IMAGES)

# The local overlay's InferenceService as the pods KServe's RawDeployment mode would create, played
# with podman beside moto (S3), the host's Redis and PostgreSQL and an MLflow server (docs/deploy.md,
# "Local stack"). Needs the images (`make images`); not part of `make test` or CI.
stack-up: venv services ## render overlays/local, convert to pods, podman kube play; transformer on 127.0.0.1:8080
	@$(PY) scripts/stack.py up

stack-smoke: venv ## assert the targets against the running pods -> benchmarks/results/stack.json
	@$(PY) benchmarks/stack.py

stack-down: venv ## remove the pods, the ConfigMap volume, the secret; stop moto and MLflow
	@$(PY) scripts/stack.py down

clean:
	rm -rf artifacts runs .pytest_cache
