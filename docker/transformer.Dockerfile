# syntax=docker/dockerfile:1
# Serving image of the KServe transformer (ghcr.io/checkout-recs/transformer:<tag>): request
# parsing, user features (bundle, table or Feast), candidates, inventory filter, six-slot policy,
# decision log. Scores through the predictor: no torch (requirements/transformer.lock). Non-root
# (uid 10001), runs with a read-only root filesystem (writes only to /tmp, an emptyDir).
#
# Build arguments (docs/deploy.md, "Images"):
#   BASE_IMAGE            a Debian bookworm image with python3.11 + venv (default python:3.11.7-slim-bookworm;
#                         here: scripts/base_image.sh)
#   PIP_INDEX_URL, PIP_EXTRA_INDEX_URL   package index(es)
#   --build-context wheels=DIR           optional local wheel folder (pip --find-links)
#   --secret id=ca_bundle,src=FILE       optional CA bundle for an HTTPS-intercepting proxy
#
#   podman build -f docker/transformer.Dockerfile -t ghcr.io/checkout-recs/transformer:0.1.0 .
ARG BASE_IMAGE=docker.io/library/python:3.11.7-slim-bookworm

# Empty unless --build-context wheels=DIR replaces it.
FROM scratch AS wheels

FROM ${BASE_IMAGE} AS build
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG PIP_EXTRA_INDEX_URL=
ARG REQUIREMENTS=requirements/transformer.lock
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PIP_FIND_LINKS=/wheels
COPY ${REQUIREMENTS} /tmp/requirements.lock
# The lock is the whole closure: --no-deps, wheels only (no compiler).
# Then out of the runtime venv: pip itself, and the test suites of the big numeric packages (never
# imported; not every package's "tests" can go: evidently's is runtime code).
RUN --mount=type=bind,from=wheels,target=/wheels \
    --mount=type=secret,id=ca_bundle,target=/run/secrets/ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-deps --only-binary=:all: -r /tmp/requirements.lock \
 && /opt/venv/bin/pip uninstall -q -y pip \
 && cd /opt/venv/lib/python3.11/site-packages \
 && for p in numpy pandas pyarrow scipy sklearn matplotlib statsmodels sympy networkx; do \
      if [ -d "$p" ]; then find "$p" -type d -name tests -prune -exec rm -rf {} +; fi; done
COPY checkout_recs /opt/app/checkout_recs
COPY inference /opt/app/inference
COPY monitoring /opt/app/monitoring
COPY feature_repo /opt/app/feature_repo
RUN find /opt/app -name __pycache__ -prune -exec rm -rf {} + \
 && python3 -m compileall -q --invalidation-mode unchecked-hash /opt/app

FROM ${BASE_IMAGE}
RUN echo "app:x:10001:10001::/tmp:/usr/sbin/nologin" >> /etc/passwd && echo "app:x:10001:" >> /etc/group
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/app /opt/app
ENV PATH=/opt/venv/bin:$PATH PYTHONPATH=/opt/app PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp
WORKDIR /tmp
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["python", "-m", "inference.transformer"]
