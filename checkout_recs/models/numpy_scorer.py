"""The shared-bottom ranker (the distilled student) evaluated in numpy, loadable without torch.

``NumpyScorer`` computes what ``ranker.RankerModel.predict`` computes for a shared-bottom
network without FM or spline terms (checked against torch in tests, and at load time wherever
torch is present: ``student.fast_predict``). ``NumpyScorer.from_dir`` reads a saved model
(``config.json`` + ``weights.safetensors``) with safetensors' numpy loader, so the predictor
serves the student without importing torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


class NumpyScorer:
    """A shared-bottom ranker in numpy: X float32 (n, d) → (p_click, p_cvr), float32 (n,) each.

    Parameters
    ----------
    state : the network's state (``RankerNet.state_dict()`` names, arrays).
    n_hidden : number of hidden layers of the shared bottom.
    feature_names, version : the model's input columns and version (from its ``config.json``).
    """

    def __init__(
        self,
        state: dict[str, Any],
        n_hidden: int,
        feature_names: list[str] | None = None,
        version: str | None = None,
    ) -> None:
        sd = {k: np.asarray(v, np.float32) for k, v in state.items()}
        if any(k.startswith(("spline.", "fm.", "experts.", "gates.")) for k in sd):
            raise ValueError(
                "a ranker with MMoE, FM or spline terms needs torch (NumpyScorer: shared bottom only)"
            )
        self.feature_names = list(feature_names or [])
        self.version = version
        self.inv_std = 1.0 / sd["std"]
        self.mean = sd["mean"]
        self.layers = [
            (sd[f"bottom.{i}.weight"].T.copy(), sd[f"bottom.{i}.bias"])
            for i in range(0, 2 * n_hidden, 2)
        ]
        self.head_w = np.stack([sd["click_head.weight"][0], sd["cvr_head.weight"][0]], 1)  # (h, 2)
        self.head_b = np.array([sd["click_head.bias"][0], sd["cvr_head.bias"][0]], np.float32)
        self.wide_w = sd["wide.weight"].T.copy() if "wide.weight" in sd else None  # (d, 2)

    @classmethod
    def from_model(cls, model: Any) -> NumpyScorer:
        """From a loaded ``RankerModel``; ValueError when its architecture needs torch."""
        sd = {k: v.detach().numpy() for k, v in model.net.state_dict().items()}
        return cls(sd, len(model.cfg.hidden), model.feature_names, model.version)

    @classmethod
    def from_dir(cls, model_dir: Path) -> NumpyScorer:
        """From a model saved by ``RankerModel.save``, without torch; nothing unpickled.
        ValueError when its architecture needs torch (MMoE, FM or spline terms)."""
        from safetensors.numpy import (
            load_file,  # lazy: safetensors torch helpers pull torch; the numpy path imports its numpy loader only
        )

        model_dir = Path(model_dir)
        meta = json.loads((model_dir / "config.json").read_text())
        return cls(
            load_file(str(model_dir / "weights.safetensors")),
            len(meta["config"]["hidden"]),
            meta["feature_names"],
            meta.get("version"),
        )

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities (p_click, p_purchase_given_click), float32 (n,) each."""
        x = (X - self.mean) * self.inv_std
        h = x
        for w, b in self.layers:
            h = np.maximum(h @ w + b, 0.0)
        z = h @ self.head_w + self.head_b
        if self.wide_w is not None:
            z += x @ self.wide_w
        p = 1.0 / (1.0 + np.exp(-z))
        return p[:, 0], p[:, 1]
