"""The serving bundle's layout: every folder and file name of a bundle, and ``bundle.json``.

This module is the one place that knows where a bundle keeps what. ``bundle_writer`` writes
bundles through it, ``bundle.ServingBundle.load`` (and the KServe predictor) read them through
it; ``retrieval`` is handed the folders (``index_dir``, ``two_tower_dir``) and never sees the
bundle's root. A bundle is a folder (``artifacts/bundle/<version>/`` in the artifact store)::

    bundle.json                 BundleInfo: model / index versions, item count, candidate rows, MLflow run
    model/                      the ``train_all`` folder: ranker/ (safetensors + config.json),
                                student/, ranker.pt, two_tower/, metrics.json
    index/                      ``RetrievalIndex.save``: shard.<i>.faiss, ids.npy, embeddings.npy,
                                snapshot.parquet (listing + seller features, aligned), manifest.json;
                                a catalogue-only bundle (no two-tower model) holds only
                                snapshot.parquet + manifest.json and serves built-in candidates
    candidates/                 co_purchase_items.parquet, category_pairs.parquet, item_knn.parquet
    features/user.parquet       latest user features (one row per user): the embedded user store

One path per file: a reader does not guess between alternatives.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

#: Name of the bundle's metadata file (``BundleInfo``).
INFO_FILE = "bundle.json"
#: Tables of ``candidates/`` (file ``<name>.parquet`` each), as the bundle writer names them.
CANDIDATE_TABLES = ("co_purchase_items", "category_pairs", "item_knn")


class BundleInfo(BaseModel):
    """``bundle.json``: what a bundle holds. Unknown keys are kept (older or newer writers)."""

    model_config = ConfigDict(extra="allow")

    ranker_version: str | None = Field(default=None, description="Version of model/ranker.")
    two_tower_version: str | None = Field(
        default=None, description="Version of model/two_tower (None: no ANN)."
    )
    index_version: str | None = Field(
        default=None, description="Version of index/ (what serving logs)."
    )
    n_items: int | None = Field(default=None, description="Listings in the index snapshot.")
    candidate_tables: dict[str, int] = Field(
        default_factory=dict, description="Rows per candidates/ table."
    )
    mlflow_run_id: str | None = Field(
        default=None, description="MLflow run of the training (None: not logged)."
    )
    refreshed_from: str | None = Field(
        default=None, description="Bundle this one's index was refreshed from."
    )


@dataclass(frozen=True)
class BundleLayout:
    """Every path of the bundle rooted at ``root`` (paths only: nothing is read or checked)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # ---------------------------------------------------------------- metadata
    @property
    def info_path(self) -> Path:
        """``bundle.json`` (``BundleInfo``)."""
        return self.root / INFO_FILE

    def read_info(self) -> BundleInfo:
        """Parse ``bundle.json``; ``FileNotFoundError`` when the bundle has none."""
        return BundleInfo.model_validate_json(self.info_path.read_text())

    def write_info(self, info: BundleInfo) -> Path:
        """Write ``bundle.json`` (indented JSON, ``None`` kept); returns its path."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.info_path.write_text(info.model_dump_json(indent=2))
        return self.info_path

    # ---------------------------------------------------------------- models
    @property
    def model_dir(self) -> Path:
        """``model/``: the ``train_all`` output folder, copied whole."""
        return self.root / "model"

    @property
    def ranker_dir(self) -> Path:
        """``model/ranker/``: the multi-task ranker (teacher)."""
        return self.model_dir / "ranker"

    @property
    def student_dir(self) -> Path:
        """``model/student/``: the distilled ranker serving prefers."""
        return self.model_dir / "student"

    @property
    def two_tower_dir(self) -> Path:
        """``model/two_tower/``: the retrieval model (user tower for ANN queries)."""
        return self.model_dir / "two_tower"

    @property
    def metrics_path(self) -> Path:
        """``model/metrics.json``: training and validation metrics."""
        return self.model_dir / "metrics.json"

    @property
    def scoring_dirs(self) -> tuple[Path, Path]:
        """The ranker folders serving may score with, in preference order (student, ranker)."""
        return self.student_dir, self.ranker_dir

    def scoring_model_dir(self) -> Path | None:
        """The first of ``scoring_dirs`` holding a ``config.json``, or None (no ranker)."""
        return next((d for d in self.scoring_dirs if (d / "config.json").exists()), None)

    # ---------------------------------------------------------------- index
    @property
    def index_dir(self) -> Path:
        """``index/``: the retrieval index folder (``RetrievalIndex.save``)."""
        return self.root / "index"

    @property
    def snapshot(self) -> Path:
        """``index/snapshot.parquet``: one row per listing, aligned with the index."""
        return self.index_dir / "snapshot.parquet"

    @property
    def index_manifest(self) -> Path:
        """``index/manifest.json``: index version, item count, snapshot time."""
        return self.index_dir / "manifest.json"

    @property
    def index_ids(self) -> Path:
        """``index/ids.npy``: present only when the bundle carries a FAISS index."""
        return self.index_dir / "ids.npy"

    def has_retrieval(self) -> bool:
        """Whether the bundle carries a FAISS index and a two-tower model (ANN candidates)."""
        return self.index_ids.exists() and self.two_tower_dir.is_dir()

    # ---------------------------------------------------------------- candidate tables, users
    @property
    def candidates_dir(self) -> Path:
        """``candidates/``: the candidate sources' tables."""
        return self.root / "candidates"

    def candidate_table(self, name: str) -> Path:
        """``candidates/<name>.parquet`` for a name of ``CANDIDATE_TABLES``; ``KeyError`` otherwise."""
        if name not in CANDIDATE_TABLES:
            raise KeyError(f"{name!r} is not a candidate table ({', '.join(CANDIDATE_TABLES)})")
        return candidate_table_path(self.candidates_dir, name)

    @property
    def co_purchase(self) -> Path:
        """``candidates/co_purchase_items.parquet``: ``listing_a, listing_b, strength``."""
        return self.candidate_table("co_purchase_items")

    @property
    def category_pairs(self) -> Path:
        """``candidates/category_pairs.parquet``: latest day of ``contract.CATEGORY_PAIR_FEATURES``."""
        return self.candidate_table("category_pairs")

    @property
    def item_knn(self) -> Path:
        """``candidates/item_knn.parquet``: ``listing_a, listing_b, similarity`` (CF neighbours)."""
        return self.candidate_table("item_knn")

    @property
    def features_dir(self) -> Path:
        """``features/``: user features for the embedded user store."""
        return self.root / "features"

    @property
    def user_features(self) -> Path:
        """``features/user.parquet``: latest ``contract.USER_FEATURES`` row per user."""
        return self.features_dir / "user.parquet"

    # ---------------------------------------------------------------- listing
    def files(self) -> set[str]:
        """Relative POSIX paths of every file under ``root`` (empty when it does not exist)."""
        out: set[str] = set()
        for dirpath, _, names in os.walk(self.root):
            rel = Path(dirpath).relative_to(self.root)
            out.update((rel / n).as_posix() for n in names)
        return out


def candidate_table_path(candidates_dir: Path, name: str) -> Path:
    """File of candidate table ``name`` in a candidates folder (a bundle's, or a benchmark's own)."""
    return Path(candidates_dir) / f"{name}.parquet"


def read_bundle_info(root: Path) -> BundleInfo:
    """``BundleLayout(root).read_info()``: the bundle's ``bundle.json``; ``FileNotFoundError`` without one."""
    return BundleLayout(root).read_info()
