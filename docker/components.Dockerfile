# syntax=docker/dockerfile:1
# Component image of every KFP step (ghcr.io/checkout-recs/components:<tag>) and of the
# PyTorchJob. The project's code and its pinned runtime set (requirements/components.lock: torch,
# kfp, feast, mlflow, evidently...; no test or lint tools) are in the image, so components list no
# packages and install nothing at start. Non-root (uid 10001), read-only root friendly.
#
# Build arguments (docs/deploy.md, "Images"):
#   BASE_IMAGE            a Debian bookworm image with python3.11 + venv (default python:3.11.7-slim-bookworm;
#                         here: scripts/base_image.sh)
#   PIP_INDEX_URL, PIP_EXTRA_INDEX_URL   package index(es); torch==2.13.0+cpu is on the PyTorch CPU index
#                                        unless the wheel folder has it
#   --build-context wheels=DIR           optional local wheel folder (pip --find-links)
#   --secret id=ca_bundle,src=FILE       optional CA bundle for an HTTPS-intercepting proxy
#
#   podman build -f docker/components.Dockerfile -t ghcr.io/checkout-recs/components:0.1.0 .
ARG BASE_IMAGE=docker.io/library/python:3.11.7-slim-bookworm

# Empty unless --build-context wheels=DIR replaces it.
FROM scratch AS wheels

FROM ${BASE_IMAGE} AS build
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG REQUIREMENTS=requirements/components.lock
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PIP_FIND_LINKS=/wheels
COPY ${REQUIREMENTS} /tmp/requirements.lock
# The lock is the whole closure: --no-deps, wheels only (no compiler; kfp-server-api is published
# as a pure-Python sdist only).
# Then out of the runtime venv: pip itself, and the test suites of the big numeric packages (never
# imported; not every package's "tests" can go: evidently's is runtime code).
RUN --mount=type=bind,from=wheels,target=/wheels \
    --mount=type=secret,id=ca_bundle,target=/run/secrets/ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-deps --only-binary=:all: --no-binary=kfp-server-api -r /tmp/requirements.lock \
 && /opt/venv/bin/pip uninstall -q -y pip \
 && cd /opt/venv/lib/python3.11/site-packages \
 && for p in numpy pandas pyarrow scipy sklearn matplotlib statsmodels sympy networkx; do \
      if [ -d "$p" ]; then find "$p" -type d -name tests -prune -exec rm -rf {} +; fi; done
COPY checkout_recs /opt/app/checkout_recs
COPY cli /opt/app/cli
COPY components /opt/app/components
COPY kfp_pipelines /opt/app/kfp_pipelines
COPY monitoring /opt/app/monitoring
COPY feature_repo /opt/app/feature_repo
COPY inference /opt/app/inference
COPY manifests/training /opt/app/manifests/training
RUN find /opt/app -name __pycache__ -prune -exec rm -rf {} + \
 && python3 -m compileall -q --invalidation-mode unchecked-hash /opt/app

FROM ${BASE_IMAGE}
RUN echo "app:x:10001:10001::/tmp:/usr/sbin/nologin" >> /etc/passwd && echo "app:x:10001:" >> /etc/group
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/app /opt/app
ENV PATH=/opt/venv/bin:$PATH PYTHONPATH=/opt/app PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib
WORKDIR /tmp
USER 10001:10001
# KFP supplies the command (python3 -m kfp.dsl.executor_main ...); the PyTorchJob runs torchrun;
# a bare run shows the CLI.
CMD ["python", "-m", "cli.app", "--help"]
