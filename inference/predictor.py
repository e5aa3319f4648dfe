"""KServe predictor: the multi-task ranker scoring all candidates of a request in one call.

v2 only: input ``features`` FP32 [n, d] (the ranker matrix built by the transformer with
``models.ranker_features.ranker_matrix`` in the model's feature order); outputs ``p_click``
and ``p_purchase`` FP32 [n] (purchase given click). The model is the bundle's student when it
has one, else the ranker (``checkout_recs.models.ranker.RankerModel``, safetensors).

Every answer's ``parameters`` say what answered: ``model_version`` (the model's, from its
``config.json``: not unique per bundle, every trained ranker is ``ranker-0`` unless configured) and
``bundle_version`` (the bundle's index version, unique per published bundle: what the transformer
logs as ``predictor_version`` beside its own ``index_version``, so attribution sees the pair).

Entry point: ``python -m inference.predictor --bundle DIR --http_port P --grpc_port G``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from kserve import Model
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from checkout_recs.log_format import (
    REQUEST_ID,
    add_log_format_argument,
    configure_logging,
    set_bundle_version,
    set_request_id,
)
from checkout_recs.models.numpy_scorer import NumpyScorer
from checkout_recs.serving.bundle_layout import BundleLayout
from inference.asgi import REQUEST_ID_HEADER, valid_request_id
from inference.server import LoopbackModelServer

PREDICTOR_NAME = "ranker"
MAX_ROWS = 5000
#: Environment variables the predictor reads (BLAS threads; the manifest contract test checks the pods).
ENV_VARS = frozenset({"OMP_NUM_THREADS"})


class RankerPredictor(Model):
    """Scores a candidate matrix with the bundle's ranker (student preferred).

    Also a ``fast_infer.BinaryTensorModel``: the server answers its v2 binary-tensor infer on
    the fast route (``binary_outputs``), the same answer as ``predict`` gives through kserve.
    """

    input_name = "features"
    output_names = ("p_click", "p_purchase")

    def __init__(self, bundle_dir: Path, name: str = PREDICTOR_NAME) -> None:
        super().__init__(name)
        self.bundle_dir = Path(bundle_dir)
        self.feature_names: list[str] = []
        self.version: str | None = None
        self.bundle_version: str | None = None
        self._predict: Any = None

    def load(self) -> bool:
        """Load the ranker from ``model/student`` or ``model/ranker`` (``BundleLayout.scoring_dirs``);
        raises when neither exists.

        A shared-bottom model (the student) is read straight into ``NumpyScorer``, so the
        process never imports torch (~185 MiB less resident memory); any other architecture is
        loaded and scored with torch.
        """

        layout = BundleLayout(self.bundle_dir)
        for d in layout.scoring_dirs:
            if (d / "config.json").exists() and (d / "weights.safetensors").exists():
                try:
                    scorer = NumpyScorer.from_dir(d)
                    self.feature_names, self.version, self._predict = (
                        scorer.feature_names,
                        scorer.version,
                        scorer.predict,
                    )
                except ValueError:  # MMoE / FM / spline: torch
                    self._load_torch(d)
                break
        if self._predict is None:
            raise FileNotFoundError(f"no ranker under {layout.model_dir}")
        self.bundle_version = bundle_version(self.bundle_dir)
        self._predict(np.zeros((2, len(self.feature_names)), np.float32))  # warm up
        self.ready = True
        return self.ready

    def _load_torch(self, model_dir: Path) -> None:
        import torch  # lazy: torch is optional on the serving path (the transformer and numpy predictor run without it)

        from checkout_recs.models.ranker import (
            RankerModel,
        )  # lazy: keeps torch out of this module's import

        torch.set_num_threads(1)  # two cores shared by two servers: no oversubscription
        model = RankerModel.load(model_dir)  # NumpyScorer refused it: torch scores
        self.feature_names, self.version, self._predict = (
            list(model.feature_names),
            model.version,
            model.predict,
        )

    def validate(self, payload: Any) -> Any:
        """Accept v2 requests only (the transformer speaks v2)."""
        return payload

    def score(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(p_click, p_purchase|click) float32 (n,) for x float32 (n, d); InvalidInput on bad shape."""
        d = len(self.feature_names)
        if x.ndim != 2 or x.shape[1] != d or x.shape[0] > MAX_ROWS:
            raise InvalidInput(
                f"'features' must be FP32 [n<={MAX_ROWS}, {d}], got shape {list(x.shape)}"
            )
        if x.shape[0] == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.float32)
        pc, pp = self._predict(x)
        return np.asarray(pc, np.float32), np.asarray(pp, np.float32)

    def binary_outputs(self, x: np.ndarray) -> list[np.ndarray]:
        """``score`` as the fast route's outputs: [p_click, p_purchase] float32 (n,)."""
        return list(
            self.score(np.array(x, np.float32))
        )  # a writable copy (x may view the request body)

    def response_parameters(self) -> dict[str, Any]:
        """The ``parameters`` every answer carries: the model version and the bundle (index) version."""
        return {"model_version": self.version or "", "bundle_version": self.bundle_version or ""}

    async def predict(
        self,
        payload: Any,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> InferResponse:
        """Score the ``features`` tensor; answers in the request's binary/JSON form. Log lines
        written meanwhile carry the caller's ``x-request-id`` (gRPC metadata or REST header)."""
        rid = valid_request_id((headers or {}).get(REQUEST_ID_HEADER))
        token = set_request_id(rid) if rid is not None else None
        try:
            return self._predict_v2(payload)
        finally:
            if token is not None:
                REQUEST_ID.reset(token)

    def _predict_v2(self, payload: Any) -> InferResponse:
        if not isinstance(payload, InferRequest):
            raise InvalidInput(
                "the ranker predictor speaks v2 only: send an FP32 tensor 'features'"
            )
        inp = payload.get_input_by_name("features")
        if inp is None or inp.datatype != "FP32":
            raise InvalidInput("input 'features' (FP32 [n, d]) is required")
        try:
            x = np.asarray(inp.as_numpy(), dtype=np.float32)
        except Exception as exc:  # noqa: BLE001 - undecodable tensor is bad input
            raise InvalidInput(f"input 'features' could not be decoded: {exc}") from None
        pc, pp = self.score(x)
        binary = payload.use_binary_outputs if hasattr(payload, "use_binary_outputs") else False
        outs = []
        for name, arr in (("p_click", pc), ("p_purchase", pp)):
            o = InferOutput(name=name, shape=[int(arr.shape[0])], datatype="FP32")
            o.set_data_from_numpy(np.ascontiguousarray(arr, np.float32), binary_data=bool(binary))
            outs.append(o)
        # outputs asked for by name answer as asked (binary or JSON each, v2's per-output binary_data)
        return InferResponse(
            response_id=payload.id or "",
            model_name=self.name,
            infer_outputs=outs,
            use_binary_outputs=bool(binary),
            parameters=self.response_parameters(),
            requested_outputs=payload.request_outputs,
        )


def build_parser() -> argparse.ArgumentParser:
    """Command-line flags of the predictor process."""
    p = argparse.ArgumentParser(description="Checkout recs ranker predictor (KServe)")
    p.add_argument("--bundle", required=True, type=Path)
    p.add_argument("--http_port", type=int, default=8081)
    p.add_argument("--grpc_port", type=int, default=8091)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--max_body_bytes", type=int, default=8 * 1024 * 1024)
    p.add_argument(
        "--no_fast_route",
        action="store_true",
        help="serve the binary-tensor infer through kserve's app too (A/B of inference.fast_infer)",
    )
    add_log_format_argument(p)
    return p


def bundle_version(bundle_dir: Path) -> str:
    """The bundle's version as serving logs it: its index version (``index/manifest.json``), else
    the folder's name (what ``ServingBundle.load`` reports as ``index_version``)."""
    manifest = BundleLayout(bundle_dir).index_manifest
    version = json.loads(manifest.read_text()).get("version") if manifest.exists() else None
    return str(version or Path(bundle_dir).name)


def main(argv: list[str] | None = None) -> None:
    """Start the predictor server (see module docstring)."""

    args = build_parser().parse_args(argv)  # strict: a flag nothing reads is an error
    configure_logging(args.log_format)
    set_bundle_version(bundle_version(args.bundle))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    model = RankerPredictor(args.bundle)
    model.load()
    LoopbackModelServer(
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        max_body_bytes=args.max_body_bytes,
        enable_latency_logging=False,
        fast_route=not args.no_fast_route,
    ).start([model])


if __name__ == "__main__":
    main()
