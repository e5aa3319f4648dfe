#!/usr/bin/env bash
# Builds the project's images with podman, smoke-runs each once (read-only root, uid 10001, no
# network) and writes their sizes and build times to benchmarks/results/images.json.
#
#   scripts/build_images.sh [predictor] [transformer] [components] [predictor-torch]   (`make images`)
#
# predictor-torch: the predictor built with requirements/predictor-torch.lock, tagged <tag>-torch.
#
# Environment (the Makefile sets them): BASE_IMAGE, IMAGE_REPO, IMAGE_TAG, PIP_INDEX_URL,
# PIP_EXTRA_INDEX_URL, WHEELS (local wheel folder, optional), CA_BUNDLE (CA file, optional),
# NO_CACHE=1 (build every layer again: the build time of a cold build), CONTAINERS_CONF.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGES=("$@")
[ ${#IMAGES[@]} -gt 0 ] || IMAGES=(predictor transformer components)
BASE_IMAGE=${BASE_IMAGE:-docker.io/library/python:3.11.7-slim-bookworm}
IMAGE_REPO=${IMAGE_REPO:-ghcr.io/checkout-recs}
IMAGE_TAG=${IMAGE_TAG:-0.1.0}
OUT=${IMAGES_JSON:-benchmarks/results/images.json}

args=(--build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "PIP_INDEX_URL=${PIP_INDEX_URL:-https://pypi.org/simple}")
# Unset: each Dockerfile's default; set (even empty): that extra index, or none.
[ -n "${PIP_EXTRA_INDEX_URL+x}" ] && args+=(--build-arg "PIP_EXTRA_INDEX_URL=$PIP_EXTRA_INDEX_URL")
[ -n "${WHEELS:-}" ] && [ -d "$WHEELS" ] && args+=(--build-context "wheels=$WHEELS")
[ -n "${CA_BUNDLE:-}" ] && [ -s "$CA_BUNDLE" ] && args+=(--secret "id=ca_bundle,src=$CA_BUNDLE")
[ "${NO_CACHE:-0}" = 1 ] && args+=(--no-cache)

# What each image must import, run with a read-only root as uid 10001 without network.
smoke_code() {
  case $1 in
    predictor-torch) echo "import torch, inference.predictor, checkout_recs.models.ranker" ;;
    predictor) echo "import sys, inference.predictor, inference.server, inference.fast_infer, checkout_recs.models.numpy_scorer
assert 'torch' not in sys.modules, 'the predictor imported torch'" ;;
    transformer) echo "import sys, inference.transformer, inference.server, inference.user_features, checkout_recs.serving.bundle
import inference.inventory_consumer, checkout_recs.retrieval.candidates, checkout_recs.storage
import feast, faiss, redis, boto3, scipy.sparse, feature_repo.store, monitoring.exporter
assert 'torch' not in sys.modules, 'the transformer imported torch'" ;;
    components) echo "import torch, torch.distributed.run, kfp.dsl.executor_main, kfp.kubernetes, mlflow, evidently, feast, implicit
import checkout_recs.models.train, checkout_recs.models.ddp, components.train, components.bundle, components.deploy
import kfp_pipelines.training, kfp_pipelines.monitoring, kfp_pipelines.index_refresh, monitoring.drift, cli.app
import ray.data, checkout_recs.data.engine, checkout_recs.deploy.ray_job, checkout_recs.deploy.training_job" ;;
  esac
}

record() {  # NAME REF SIZE SECONDS LOAD: merge one image's figures into $OUT
  python3 - "$OUT" "$BASE_IMAGE" "$(podman image inspect --format '{{.Size}}' "$BASE_IMAGE" 2>/dev/null || echo 0)" \
    "${NO_CACHE:-0}" "$(podman --version)" "$@" <<'PY'
import datetime, json, os, sys
out, base, base_size, no_cache, podman, name, ref, size, secs, load = sys.argv[1:]
doc = json.load(open(out)) if os.path.exists(out) else {}
now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
images = doc.get("images", {})
images[name] = {"image": ref, "size_bytes": int(size), "size_mb": round(int(size) / 1e6),
                "build_seconds": float(secs), "cold_build": no_cache == "1", "load_average_1m": float(load),
                "base_image": base, "built": now, "smoke_run": "ok"}
doc.update({
    "date": now, "builder": podman, "cpus": os.cpu_count(),
    "base_image": base, "base_image_size_mb": round(int(base_size) / 1e6),
    "size": "podman image inspect .Size (uncompressed, base layers included), 1 MB = 10^6 bytes",
    "targets_mb": {"predictor": 800, "transformer": 1500},
    "images": dict(sorted(images.items())),
})
os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
with open(out, "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")
PY
}

for name in "${IMAGES[@]}"; do
  file=$name ref="$IMAGE_REPO/$name:$IMAGE_TAG" extra=()
  if [ "$name" = predictor-torch ]; then  # the predictor for bundles whose ranker needs torch
    file=predictor ref="$IMAGE_REPO/predictor:$IMAGE_TAG-torch"
    extra=(--build-arg REQUIREMENTS=requirements/predictor-torch.lock)
  fi
  echo "[images] building $ref (base $BASE_IMAGE)"
  t0=$(date +%s.%N)
  podman build --layers -f "docker/$file.Dockerfile" -t "$ref" "${args[@]}" "${extra[@]}" . >"/tmp/build-$name.log" 2>&1 \
    || { tail -30 "/tmp/build-$name.log" >&2; echo "[images] $name failed (log /tmp/build-$name.log)" >&2; exit 1; }
  t1=$(date +%s.%N)
  load=$(cut -d' ' -f1 /proc/loadavg)
  secs=$(python3 -c "print(round($t1 - $t0, 1))")
  size=$(podman image inspect --format '{{.Size}}' "$ref")
  echo "[images] $ref: $(( size / 1000000 )) MB, ${secs} s (load average $load); smoke run"
  run=(podman run --rm --read-only --user 10001:10001 --network none --tmpfs /tmp "$ref")
  # the entry point's own --help (imports the module, parses arguments), then the import check
  if [ "$file" = components ]; then "${run[@]}" >/dev/null; else "${run[@]}" --help >/dev/null; fi
  podman run --rm --read-only --user 10001:10001 --network none --tmpfs /tmp --entrypoint python "$ref" \
    -c "$(smoke_code "$name")"
  record "$name" "$ref" "$size" "$secs" "$load"
done
echo "[images] wrote $OUT"
podman images --filter "reference=$IMAGE_REPO/*"
