"""Evidently 0.7 drift report: HTML for on-call, a JSON verdict for machines.

``drift_report(reference, current, out_dir)`` compares two tables column by column with
Evidently's ``DataDriftPreset`` (one ``ValueDrift`` per column and ``DriftedColumnsCount``) and
writes ``out_dir/drift_report.html`` and ``out_dir/drift_summary.json``. Evidently 0.7 has no
table-level ``dataset_drift`` flag; the verdict here is ours: the share of drifted columns against
``DriftThresholds.drift_share``, or any drifted ``critical_columns``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from monitoring.thresholds import DriftThresholds, load_thresholds

#: Columns never compared: identifiers and times say nothing about the distribution of traffic.
ID_LIKE_SUFFIXES = ("_id", "_ids")
SUMMARY_FILE = "drift_summary.json"
REPORT_FILE = "drift_report.html"


class DriftInputError(ValueError):
    """The inputs cannot be compared (missing file, empty table, unknown or unusable column)."""


class ColumnDrift(BaseModel):
    """One column's drift test."""

    column: str
    kind: str = Field(description="'numerical' or 'categorical'.")
    method: str = Field(description="Evidently stat test (display name).")
    score: float = Field(description="Drift score: a distance, or a p-value for test methods.")
    threshold: float
    drifted: bool


class DriftSummary(BaseModel):
    """The JSON verdict written next to the HTML report."""

    drift_detected: bool = Field(description="The table verdict (see module docstring).")
    reason: str = Field(description="Why the verdict is what it is, in one line.")
    drifted_share: float = Field(ge=0, le=1)
    share_threshold: float
    n_columns: int
    n_drifted: int
    drifted_columns: list[str]
    columns: list[ColumnDrift]
    reference_rows: int
    current_rows: int
    report_html: str
    created_at: str

    def write(self, path: Path) -> None:
        """Write the summary as indented JSON to ``path``."""
        path.write_text(self.model_dump_json(indent=2))

    @classmethod
    def read(cls, path: Path) -> DriftSummary:
        """Read a summary written by ``write``."""
        return cls.model_validate_json(Path(path).read_text())


def read_table(source: pd.DataFrame | Path | str) -> pd.DataFrame:
    """A frame from a DataFrame, a parquet file, or a folder of parquet files (recursive).

    Raises ``DriftInputError`` when the path does not exist or holds no parquet file.
    """
    if isinstance(source, pd.DataFrame):
        return source
    p = Path(source)
    if p.is_file():
        return pd.read_parquet(p)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*.parquet") if not f.name.startswith("."))
        if not files:
            raise DriftInputError(f"no parquet files under {p}")
        return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    raise DriftInputError(f"not a parquet file or folder: {p}")


def select_columns(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: list[str] | None,
    thresholds: DriftThresholds,
) -> tuple[list[str], list[str]]:
    """Split the compared columns into (numerical, categorical).

    With ``columns=None`` every shared column is considered except identifiers (``*_id``), times,
    lists, and strings with more than ``max_categories`` distinct values. Explicit ``columns`` must
    exist on both sides and be numeric, boolean or string; otherwise ``DriftInputError``.
    """
    shared = [c for c in reference.columns if c in current.columns]
    if columns:
        missing = [c for c in columns if c not in shared]
        if missing:
            raise DriftInputError(f"columns missing from reference or current: {missing}")
        candidates = list(columns)
    else:
        candidates = [
            c for c in shared if not c.endswith(ID_LIKE_SUFFIXES) and c != "event_timestamp"
        ]
    numerical: list[str] = []
    categorical: list[str] = []
    for c in candidates:
        kind = _column_kind(reference[c], thresholds.max_categories)
        if kind == "numerical":
            numerical.append(c)
        elif kind == "categorical":
            categorical.append(c)
        elif columns:
            raise DriftInputError(f"column {c!r} ({reference[c].dtype}) cannot be compared")
    if not numerical and not categorical:
        raise DriftInputError("no comparable columns (numeric, boolean or low-cardinality string)")
    return numerical, categorical


def _column_kind(s: pd.Series, max_categories: int) -> str | None:
    if pd.api.types.is_bool_dtype(s):
        return "categorical"
    if pd.api.types.is_numeric_dtype(s):
        return "numerical"
    if pd.api.types.is_string_dtype(s) or isinstance(s.dtype, pd.CategoricalDtype):
        sample = s.dropna().head(10_000)
        if sample.map(lambda v: isinstance(v, str)).all() and sample.nunique() <= max_categories:
            return "categorical"
    return None


def _prepare(df: pd.DataFrame, num: list[str], cat: list[str], t: DriftThresholds) -> pd.DataFrame:
    out = df[num + cat].copy()
    if len(out) > t.max_rows:
        out = out.sample(n=t.max_rows, random_state=t.seed)
    for c in num:
        out[c] = pd.to_numeric(out[c], errors="coerce").astype(float)
    for c in cat:
        out[c] = out[c].astype(str).where(out[c].notna(), None)
    return out.reset_index(drop=True)


def drift_report(
    reference: pd.DataFrame | Path | str,
    current: pd.DataFrame | Path | str,
    out_dir: Path,
    thresholds: DriftThresholds | None = None,
    columns: list[str] | None = None,
    title: str = "Drift report",
) -> DriftSummary:
    """Compare ``current`` with ``reference``; write the HTML report and the JSON verdict.

    Parameters
    ----------
    reference, current
        Tables of shape (n_rows, n_columns): DataFrames, parquet files or folders of parquet.
    out_dir
        Created if needed; receives ``drift_report.html`` and ``drift_summary.json``.
    thresholds
        Methods and thresholds; ``None`` reads ``monitoring/thresholds.yaml``.
    columns
        Columns to compare; ``None`` picks every comparable shared column.
    title
        Heading of the summary (kept in the JSON's ``reason``).

    Returns
    -------
    DriftSummary
        Per-column scores and verdicts, the drifted share and the table verdict. Raises
        ``DriftInputError`` on unusable input (nothing is written then).
    """
    t = thresholds or load_thresholds()
    ref, cur = read_table(reference), read_table(current)
    if ref.empty or cur.empty:
        raise DriftInputError(f"empty table: reference {len(ref)} rows, current {len(cur)} rows")
    num, cat = select_columns(ref, cur, columns, t)
    ref_p, cur_p = _prepare(ref, num, cat, t), _prepare(cur, num, cat, t)
    for c in num + cat:
        if ref_p[c].notna().sum() == 0 or cur_p[c].notna().sum() == 0:
            raise DriftInputError(f"column {c!r} is entirely null on one side")
    snapshot = _run_evidently(ref_p, cur_p, num, cat, t)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    html = out_dir / REPORT_FILE
    snapshot.save_html(str(html))
    col_results = _column_results(snapshot.dict(), num)
    summary = _summarise(col_results, t, len(ref), len(cur), html, title)
    summary.write(out_dir / SUMMARY_FILE)
    return summary


def _run_evidently(
    ref: pd.DataFrame, cur: pd.DataFrame, num: list[str], cat: list[str], t: DriftThresholds
):
    from evidently import (  # lazy: evidently costs seconds to import; only the drift report needs it
        DataDefinition,
        Dataset,
        Report,
    )
    from evidently.presets import (
        DataDriftPreset,  # lazy: evidently costs seconds to import; only the drift report needs it
    )

    definition = DataDefinition(numerical_columns=num, categorical_columns=cat)
    preset = DataDriftPreset(
        columns=num + cat,
        drift_share=t.drift_share,
        num_method=t.num_method,
        num_threshold=t.num_threshold,
        cat_method=t.cat_method,
        cat_threshold=t.cat_threshold,
        per_column_method=t.per_column_method or None,
        per_column_threshold=t.per_column_threshold or None,
    )
    report = Report([preset], include_tests=True)
    return report.run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
    )


def _column_results(snap: dict[str, Any], numerical: list[str]) -> list[ColumnDrift]:
    """Per-column score from each ``ValueDrift`` metric, verdict from its bound test."""
    status: dict[str, str] = {}
    for test in snap.get("tests", []):
        params = test.get("metric_config", {}).get("params", {})
        if params.get("type", "").endswith("ValueDrift"):
            status[params["column"]] = test["status"]
    out: list[ColumnDrift] = []
    for m in snap.get("metrics", []):
        cfg = m.get("config", {})
        if not cfg.get("type", "").endswith("ValueDrift"):
            continue
        col = cfg["column"]
        score = float(m["value"]) if m["value"] is not None else float("nan")
        out.append(
            ColumnDrift(
                column=col,
                kind="numerical" if col in numerical else "categorical",
                method=str(cfg.get("method")),
                score=0.0 if np.isnan(score) else score,
                threshold=float(cfg.get("threshold") or 0.0),
                drifted=status.get(col) == "FAIL",
            )
        )
    return out


def _summarise(
    cols: list[ColumnDrift], t: DriftThresholds, n_ref: int, n_cur: int, html: Path, title: str
) -> DriftSummary:
    drifted = [c.column for c in cols if c.drifted]
    share = len(drifted) / len(cols) if cols else 0.0
    critical = [c for c in drifted if c in t.critical_columns]
    detected = share >= t.drift_share or bool(critical)
    if critical:
        reason = f"{title}: critical column(s) drifted: {', '.join(critical)}"
    else:
        cmp = ">=" if detected else "<"
        reason = f"{title}: {len(drifted)}/{len(cols)} columns drifted ({share:.0%} {cmp} {t.drift_share:.0%})"
    return DriftSummary(
        drift_detected=detected,
        reason=reason,
        drifted_share=share,
        share_threshold=t.drift_share,
        n_columns=len(cols),
        n_drifted=len(drifted),
        drifted_columns=drifted,
        columns=cols,
        reference_rows=n_ref,
        current_rows=n_cur,
        report_html=str(html),
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
