# Serving image of the KServe transformer (ghcr.io/checkout-recs/transformer:<tag>): request
# parsing, Feast user features, candidates, inventory filter, six-slot policy. Non-root
# (uid 10001), runs with a read-only root filesystem (writes only to /tmp, an emptyDir).
#
#   docker build -f docker/transformer.Dockerfile -t ghcr.io/checkout-recs/transformer:0.1.0 .
FROM python:3.11.7-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements.lock pyproject.toml README.md ./
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --extra-index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
 && /opt/venv/bin/pip install -r requirements.lock
COPY checkout_recs ./checkout_recs
COPY inference ./inference
COPY feature_repo ./feature_repo
COPY monitoring ./monitoring
COPY components ./components
COPY kfp_pipelines ./kfp_pipelines
RUN /opt/venv/bin/pip install --no-deps .

FROM python:3.11.7-slim-bookworm
RUN groupadd --gid 10001 app && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp
WORKDIR /tmp
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["python", "-m", "inference.transformer"]
