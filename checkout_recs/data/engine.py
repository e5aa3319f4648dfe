"""Data steps out of core: one per-partition transform, two runners (in-process or Ray Data).

A step whose logic partitions by a key runs in two phases with bounded memory. Two steps of
``build_labels`` are here, both by ``user_id``: the labelling of impressions (``label_step``:
every row it joins shares the user) and the users' purchase sequences (``sequences_step``).

1. **shuffle**: each keyed input table is read in batches of ``batch_rows`` rows, each batch gets a
   ``bucket`` column (``key mod buckets``, ``add_bucket``) and is written hive-partitioned
   (``<work>/<table>/bucket=<b>/*.parquet``);
2. **per bucket**: ``run_bucket`` reads bucket ``b`` of every keyed table plus the rows of the
   lookup tables the bucket refers to (``lookups``: only the named columns, only the rows whose
   key occurs in the bucket, e.g. the listings its impressions show), applies the step's pandas
   transform and returns an arrow table of the step's schema; each bucket is one part file of
   the output folder.

``add_bucket`` and ``run_bucket`` are the only code that touches rows, and both runners call them:

* ``local``: this process, pyarrow streaming (``dataset.to_batches`` into ``write_dataset``), one
  bucket at a time. Peak memory is about one bucket's input and output, whatever the table size.
* ``ray``: Ray Data (``read_parquet`` -> ``map_batches(add_bucket)`` ->
  ``write_parquet(partition_cols=["bucket"])``; then ``from_items(buckets)`` ->
  ``map_batches(run_bucket)`` -> ``write_parquet``), on ``address`` (a cluster: ``"auto"`` inside a
  KubeRay ``RayJob``, see ``manifests/training/rayjob.yaml``) or, when empty, on an embedded local
  Ray (``num_cpus``, no dashboard, ``object_store_mb`` cap) started and stopped around the step.

Paths are local folders or URIs pyarrow opens (``s3://``): on a cluster the work folder must be
reachable from every worker. Row order of the output differs from the whole-table pandas path
(bucket by bucket); the rows are the same (``tests/code/data/test_engine.py``).

Entry point of the RayJob (``checkout_recs.deploy.ray_job``)::

    python -m checkout_recs.data.engine --step labels --validated s3://b/ingested/validated \\
        --out s3://b/labels-ooc/impressions_labelled --runner ray --address auto --buckets 64
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pydantic import BaseModel, Field

from checkout_recs import contract
from checkout_recs.data.labels import USER_SEQUENCES, label_impressions, user_sequences

BUCKET = "bucket"


class EngineConfig(BaseModel):
    """Where and how a partitioned step runs."""

    runner: Literal["local", "ray"] = Field(
        default="local", description="local: this process, streaming; ray: Ray Data."
    )
    buckets: int = Field(
        default=16, ge=1, description="Partitions of the key; peak memory ~ input / buckets."
    )
    batch_rows: int = Field(default=65_536, ge=1, description="Rows per batch of the shuffle.")
    address: str = Field(
        default="", description="Ray cluster address ('auto' in a RayJob); '' = embedded local Ray."
    )
    num_cpus: int = Field(default=2, ge=1, description="CPUs of an embedded local Ray.")
    object_store_mb: int = Field(
        default=512, ge=80, description="Object store cap of an embedded local Ray, MB."
    )
    work_dir: str = Field(
        default="", description="Shuffle folder (URI); '' = '<out>.shuffle', removed after."
    )


@dataclass(frozen=True)
class Lookup:
    """What a bucket reads of a table that is not shuffled: ``columns``, and only the rows whose
    ``key`` occurs in the bucket's ``by`` table (a semi-join pushed into the parquet scan)."""

    columns: list[str]
    key: str
    by: str


@dataclass(frozen=True)
class PartitionedStep:
    """A step that partitions by key.

    name : the step (``--step`` of the entry point).
    keyed : table -> key column; these tables are shuffled into buckets of the key.
    lookups : table -> what each bucket reads of it (not shuffled: the catalogue).
    transform : frames by table name (one bucket's rows, plus its lookup rows) -> result.
    schema : the result's arrow schema (part files are written with it).
    """

    name: str
    keyed: dict[str, str]
    lookups: dict[str, Lookup]
    transform: Callable[[dict[str, pd.DataFrame]], pd.DataFrame]
    schema: pa.Schema = field(repr=False)


class StepReport(BaseModel):
    """What a partitioned run wrote."""

    step: str
    runner: str
    buckets: int
    rows: int
    seconds: float
    out_dir: str


def _label_partition(frames: dict[str, pd.DataFrame], window_s: int) -> pd.DataFrame:
    """``labels.label_impressions`` on one bucket's impressions, clicks and purchases."""
    return label_impressions(
        frames["impressions"], frames["clicks"], frames["purchases"], frames["listings"], window_s
    )


def label_step(window_s: int = 86_400) -> PartitionedStep:
    """The labelling of impressions (``contract.LABELLED_IMPRESSIONS``) partitioned by ``user_id``.

    Exact when a click carries the user of the impression it clicks (the simulator's logs do);
    a purchase joins a click on (user, listing), so it is in the same bucket.
    """
    return PartitionedStep(
        name="labels",
        keyed={"impressions": "user_id", "clicks": "user_id", "purchases": "user_id"},
        lookups={
            "listings": Lookup(["listing_id", "price", "take_rate"], "listing_id", "impressions")
        },
        transform=functools.partial(_label_partition, window_s=window_s),
        schema=contract.LABELLED_IMPRESSIONS,
    )


def _sequences_partition(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """``labels.user_sequences`` of one bucket's orders and purchases (the buys)."""
    cols = ["user_id", "listing_id", "event_timestamp"]
    return user_sequences(pd.concat([frames["orders"][cols], frames["purchases"][cols]]))


def sequences_step() -> PartitionedStep:
    """The users' purchase sequences (``labels.USER_SEQUENCES``) partitioned by ``user_id``."""
    return PartitionedStep(
        name="sequences",
        keyed={"orders": "user_id", "purchases": "user_id"},
        lookups={},
        transform=_sequences_partition,
        schema=USER_SEQUENCES,
    )


#: Steps of the entry point (``--step``).
STEPS = ("labels", "sequences")


def step_for(name: str, window_s: int = 86_400) -> PartitionedStep:
    """The step called ``name`` (``window_s``: the labels' purchase window, s); ``ValueError``
    for an unknown name."""
    if name == "labels":
        return label_step(window_s)
    if name == "sequences":
        return sequences_step()
    raise ValueError(f"step must be one of {STEPS}, got {name!r}")


def _fs(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) of a local path or a URI."""
    if "://" not in uri:
        return pafs.LocalFileSystem(), str(pafs.LocalFileSystem().normalize_path(_abs(uri)))
    return pafs.FileSystem.from_uri(uri)


def _abs(path: str) -> str:
    """An absolute local path."""
    return str(Path(path).resolve())


def _exists(uri: str) -> bool:
    """Whether ``uri`` names a file or folder."""
    fs, path = _fs(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def validated_root(ingested: str) -> str:
    """``<ingested>/validated`` when it exists, else ``ingested`` (as ``read_validated``)."""
    child = f"{ingested.rstrip('/')}/validated"
    return child if _exists(child) else ingested.rstrip("/")


def add_bucket(batch: pa.Table, key: str, buckets: int, schema: pa.Schema) -> pa.Table:
    """``batch`` cast to ``schema`` plus ``bucket`` (int32: ``key mod buckets``, in [0, buckets))."""
    t = batch.select(schema.names).cast(schema)
    b = t.column(key).to_numpy() % buckets
    return t.append_column(BUCKET, pa.array(b.astype("int32")))


def _read(
    uri: str, schema: pa.Schema, columns: list[str] | None = None, where: Any = None
) -> pd.DataFrame:
    """A parquet folder as pandas with ``schema`` (``columns`` of it, rows matching the dataset
    expression ``where``); empty (same columns) when absent."""
    if not _exists(uri):
        t = schema.empty_table()
        return (t.select(columns) if columns else t).to_pandas()
    fs, path = _fs(uri)
    dataset = ds.dataset(path, filesystem=fs, format="parquet", schema=schema)
    return dataset.to_table(columns=columns, filter=where).to_pandas()


def run_bucket(step: PartitionedStep, bucket: int, work: str, validated: str) -> pa.Table:
    """The step's result for one bucket, as an arrow table of ``step.schema``."""
    frames = {n: _read(f"{work}/{n}/{BUCKET}={bucket}", contract.RAW_TABLES[n]) for n in step.keyed}
    for n, lk in step.lookups.items():
        keys = pa.array(frames[lk.by][lk.key].unique())
        where = ds.field(lk.key).isin(keys)
        frames[n] = _read(f"{validated}/{n}", contract.RAW_TABLES[n], lk.columns, where)
    out = step.transform(frames)
    return pa.Table.from_pandas(out, schema=step.schema, preserve_index=False)


def _batches(src: str, schema: pa.Schema, rows: int) -> Iterator[pa.RecordBatch]:
    """``src`` (a parquet folder) in record batches of at most ``rows`` rows."""
    fs, path = _fs(src)
    yield from ds.dataset(path, filesystem=fs, format="parquet", schema=schema).to_batches(
        batch_size=rows, batch_readahead=1, fragment_readahead=1
    )


def _shuffle_local(src: str, dest: str, key: str, schema: pa.Schema, cfg: EngineConfig) -> None:
    """Phase 1 in this process: ``src`` streamed into ``dest/bucket=<b>/``."""
    out_schema = schema.append(pa.field(BUCKET, pa.int32(), nullable=False))
    batches = (
        part
        for b in _batches(src, schema, cfg.batch_rows)
        for part in add_bucket(pa.Table.from_batches([b]), key, cfg.buckets, schema).to_batches()
    )
    fs, path = _fs(dest)
    ds.write_dataset(
        batches,
        path,
        filesystem=fs,
        schema=out_schema,
        format="parquet",
        partitioning=ds.partitioning(pa.schema([out_schema.field(BUCKET)]), flavor="hive"),
        existing_data_behavior="delete_matching",
        max_rows_per_group=cfg.batch_rows,
        min_rows_per_group=0,
    )


def _run_local(
    step: PartitionedStep, validated: str, out: str, work: str, cfg: EngineConfig
) -> int:
    """Both phases in this process, one bucket at a time; rows written."""
    for n, key in step.keyed.items():
        _shuffle_local(f"{validated}/{n}", f"{work}/{n}", key, contract.RAW_TABLES[n], cfg)
    fs, path = _fs(out)
    fs.create_dir(path, recursive=True)
    rows = 0
    for b in range(cfg.buckets):
        t = run_bucket(step, b, work, validated)
        pq.write_table(t, f"{path}/part-{b:05d}.parquet", filesystem=fs)
        rows += t.num_rows
    return rows


def _bucket_batch(batch: pa.Table, step: PartitionedStep, work: str, validated: str) -> pa.Table:
    """``run_bucket`` for each bucket id of a Ray batch (a ``bucket`` column), concatenated."""
    ids = batch.column(BUCKET).to_pylist()
    return pa.concat_tables([run_bucket(step, int(b), work, validated) for b in ids])


def _run_ray(step: PartitionedStep, validated: str, out: str, work: str, cfg: EngineConfig) -> int:
    """Both phases on Ray Data (a cluster at ``cfg.address``, or an embedded local Ray)."""
    import ray  # lazy: Ray is heavy to import and only this runner needs it
    import ray.data

    started = not ray.is_initialized()
    if started and cfg.address:
        ray.init(address=cfg.address, log_to_driver=False)
    elif started:
        ray.init(
            num_cpus=cfg.num_cpus,
            include_dashboard=False,
            object_store_memory=cfg.object_store_mb * 1024 * 1024,
            log_to_driver=False,
        )
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        for n, key in step.keyed.items():
            schema = contract.RAW_TABLES[n]
            bucketed = functools.partial(add_bucket, key=key, buckets=cfg.buckets, schema=schema)
            ray.data.read_parquet(f"{validated}/{n}").map_batches(
                bucketed, batch_format="pyarrow", batch_size=cfg.batch_rows
            ).write_parquet(f"{work}/{n}", partition_cols=[BUCKET])
        per_bucket = functools.partial(_bucket_batch, step=step, work=work, validated=validated)
        result = ray.data.from_items([{BUCKET: b} for b in range(cfg.buckets)]).map_batches(
            per_bucket, batch_format="pyarrow", batch_size=1
        )
        result.write_parquet(out)
        fs, path = _fs(out)
        return sum(
            pq.ParquetFile(f"{path}/{p.base_name}", filesystem=fs).metadata.num_rows
            for p in fs.get_file_info(pafs.FileSelector(path))
            if p.base_name.endswith(".parquet")
        )
    finally:
        if started:
            ray.shutdown()


def run_step(
    step: PartitionedStep,
    ingested: str | Path,
    out_dir: str | Path,
    cfg: EngineConfig | None = None,
) -> StepReport:
    """Run ``step`` on an ingested folder (or its ``validated/``) into the folder ``out_dir``.

    Parameters
    ----------
    step : e.g. ``label_step(window_s)``.
    ingested : folder or URI of an ingest output (``validated/<table>/part-*.parquet``).
    out_dir : folder or URI written with part files of ``step.schema`` (replaced if present).
    cfg : runner, buckets, Ray address; defaults: ``local``, 16 buckets.

    Returns
    -------
    StepReport: rows written (the sum over buckets), wall seconds.
    """
    cfg = cfg or EngineConfig()
    validated = validated_root(_uri(ingested))
    out = _uri(out_dir).rstrip("/")
    work = _uri(cfg.work_dir) if cfg.work_dir else f"{out}.shuffle"
    start = time.perf_counter()
    for d in (out, work):
        if _exists(d):
            fs, path = _fs(d)
            fs.delete_dir(path)
    runner = _run_ray if cfg.runner == "ray" else _run_local
    try:
        rows = runner(step, validated, out, work, cfg)
    finally:
        if _exists(work):
            fs, path = _fs(work)
            fs.delete_dir(path)
    return StepReport(
        step=step.name,
        runner=cfg.runner,
        buckets=cfg.buckets,
        rows=rows,
        seconds=round(time.perf_counter() - start, 3),
        out_dir=out,
    )


def _uri(p: str | Path) -> str:
    """A URI as given; a local path made absolute (Ray workers do not share the cwd)."""
    s = str(p)
    return s if "://" in s else _abs(s)


def build_parser() -> argparse.ArgumentParser:
    """Flags of ``python -m checkout_recs.data.engine`` (manifests/training/rayjob.yaml)."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--step", required=True, choices=STEPS, help="which step to run")
    ap.add_argument("--validated", required=True, help="ingested folder or URI (s3://)")
    ap.add_argument("--out", required=True, help="output folder or URI (part files)")
    ap.add_argument("--runner", default="ray", choices=("local", "ray"), help="engine")
    ap.add_argument("--address", default="auto", help="Ray address ('' = embedded local Ray)")
    ap.add_argument("--buckets", type=int, default=16, help="partitions of the key")
    ap.add_argument("--window_s", type=int, default=86_400, help="labels: purchase window, s")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point of the RayJob; prints the ``StepReport`` as JSON; returns an exit code."""
    args = build_parser().parse_args(argv)
    cfg = EngineConfig(runner=args.runner, address=args.address, buckets=args.buckets)
    report = run_step(step_for(args.step, args.window_s), args.validated, args.out, cfg)
    print(json.dumps(report.model_dump()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
