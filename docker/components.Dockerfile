# Component image of every KFP step (ghcr.io/checkout-recs/components:<tag>) and of the
# PyTorchJob. The project and its pinned dependencies are installed, so components list no
# packages and install nothing at start. Non-root, no shell tools beyond the base image.
#
#   docker build -f docker/components.Dockerfile -t ghcr.io/checkout-recs/components:0.1.0 .
FROM python:3.11.7-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements.lock pyproject.toml README.md ./
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --extra-index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
 && /opt/venv/bin/pip install -r requirements.lock
COPY checkout_recs ./checkout_recs
COPY components ./components
COPY kfp_pipelines ./kfp_pipelines
COPY feature_repo ./feature_repo
COPY monitoring ./monitoring
COPY inference ./inference
RUN /opt/venv/bin/pip install --no-deps .

FROM python:3.11.7-slim-bookworm
RUN groupadd --gid 10001 app && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib
WORKDIR /tmp
USER 10001:10001
# KFP supplies the command (python3 -m kfp.dsl.executor_main ...); a bare run shows the CLI.
CMD ["checkout-recs", "--help"]
