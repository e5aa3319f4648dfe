"""The ranker's whole-matrix passes done a chunk of rows at a time (issue #21 part 2): the
statistics, the spline edges, the wide input, the training set's column-pruned batched read and
the compact wide input of the linear warm start equal the whole-frame computations (bit for bit
where the arithmetic is the same; to float rounding where the order of the additions changes)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fixtures_models import SLATE_FEATURES, make_model_inputs, make_slates  # noqa: E402

from checkout_recs.models import ranker_fit as fit  # noqa: E402
from checkout_recs.models.inputs import read_table  # noqa: E402
from checkout_recs.models.piecewise import (  # noqa: E402
    CompactWideInput,
    PiecewiseLinear,
    quantile_edges,
)
from checkout_recs.models.ranker import RankerConfig, RankerNet, train_ranker  # noqa: E402
from checkout_recs.models.ranker_features import (  # noqa: E402
    available_features,
    ranker_columns,
    ranker_matrix,
)
from checkout_recs.models.train import (  # noqa: E402
    TrainConfig,
    read_ranker_split,
    split_by_time,
    train_ranker_stage,
)

CHUNKS = (1, 7, 64, 10**6)  # one row, odd sizes, more rows than the frame


def _matrix(n: int = 701, seed: int = 0) -> np.ndarray:
    """Columns with ties, constant runs and a constant column (zero-width bins)."""
    rng = np.random.default_rng(seed)
    X = np.concatenate(
        [
            rng.standard_normal((n, 2)) * 10 + 3,
            rng.integers(0, 3, (n, 2)),
            rng.exponential(1, (n, 1)),
            np.zeros((n, 1)),
        ],
        1,
    ).astype(np.float32)
    X[: n // 2, 4] = 0
    return X


def _chunks(X: np.ndarray, rows: int) -> list[np.ndarray]:
    return [X[sl] for sl in fit.row_chunks(len(X), rows)]


@pytest.mark.parametrize("rows", CHUNKS)
@pytest.mark.parametrize("d", [1, 2, 6])
def test_chunked_column_sums_are_the_whole_matrix_sums(rows, d):
    X = _matrix()[:, :d].copy()
    tot, sq, n = fit.column_sums(_chunks(X, rows), d)
    assert n == len(X)
    assert np.array_equal(tot, X.sum(0))
    assert np.array_equal(sq, (X.astype(np.float64) ** 2).sum(0))
    mean, std = fit.feature_stats(_chunks(X, rows), d)
    whole = fit.feature_stats(X)
    assert np.array_equal(mean, whole[0]) and np.array_equal(std, whole[1])


def test_feature_stats_of_no_rows_and_without_d():
    mean, std = fit.feature_stats(iter([]), 3)
    assert np.array_equal(mean, np.zeros(3, np.float32)) and (std == 1e-6).all()
    with pytest.raises(ValueError):
        fit.feature_stats(iter([]))


def test_quantile_edges_column_by_column_equal_numpy_on_the_matrix():
    X = _matrix()
    q = np.linspace(0, 1, 9)
    ref = np.quantile(X.astype(np.float64), q, axis=0).T.astype(np.float32)
    assert np.array_equal(quantile_edges(X, 8), ref)


@pytest.mark.parametrize("rows", CHUNKS)
def test_spline_fit_and_wide_matrix_by_chunks_equal_the_whole_matrix(rows):
    X = _matrix()
    Xt = torch.from_numpy(X)
    net = RankerNet(X.shape[1], [4], wide=True, spline_knots=8)
    mean, std = fit.feature_stats(X)
    net.mean.copy_(torch.from_numpy(mean))
    net.std.copy_(torch.from_numpy(std))
    ref = PiecewiseLinear(X.shape[1], 8, 0.03)
    with torch.no_grad():  # the whole-matrix fit as it was
        ref.edges.copy_(torch.from_numpy(quantile_edges(X, 8)))
        m, s = fit.feature_stats(ref.ramps(Xt).numpy())
        ref.mean.copy_(torch.from_numpy(m))
        ref.std.copy_(torch.from_numpy(s))
    assert net.spline is not None
    net.spline.fit(X, chunk_rows=rows)
    for name in ("edges", "mean", "std"):
        assert torch.equal(getattr(net.spline, name), getattr(ref, name)), name
    with torch.no_grad():
        whole = net.wide_input(Xt, (Xt - net.mean) / net.std)
    assert torch.equal(net.wide_matrix(Xt, chunk_rows=rows), whole)


@pytest.mark.parametrize("rows", CHUNKS)
def test_chunked_logits_equal_the_whole_batch(rows):
    torch.manual_seed(0)
    X = _matrix(3000)
    net = RankerNet(X.shape[1], [8, 4], wide=True, spline_knots=8, fm_factors=2).eval()
    assert net.spline is not None
    net.spline.fit(X)
    Xt = torch.from_numpy(X)
    with torch.inference_mode():
        a, b = net(Xt)
    a2, b2 = fit.logits(net, Xt, rows)
    # BLAS may take another kernel for a few rows (1e-7); large chunks score rows alike.
    assert torch.allclose(a, a2, atol=1e-5, rtol=0) and torch.allclose(b, b2, atol=1e-5, rtol=0)
    if rows >= 64:
        assert torch.equal(a, a2) and torch.equal(b, b2)


@pytest.mark.parametrize("rows", CHUNKS)
def test_compact_wide_input_rebuilds_z_and_its_products(rows):
    X = _matrix(301 if rows == 1 else 2001)
    Xt = torch.from_numpy(X)
    net = RankerNet(X.shape[1], [4], wide=True, spline_knots=8)
    assert net.spline is not None
    net.spline.fit(X)
    dense = net.wide_matrix(Xt)
    z = CompactWideInput(Xt, net.mean, net.std, net.spline, chunk_rows=rows)
    assert z.shape == tuple(dense.shape)
    assert torch.equal(z.matrix(), dense)  # the same numbers, bit for bit
    gen = torch.Generator().manual_seed(1)
    W = torch.randn(2, dense.shape[1], generator=gen, requires_grad=True)
    bias = torch.randn(2, generator=gen, requires_grad=True)
    g = torch.randn(len(X), 2, generator=gen)
    (dense @ W.T + bias).mul(g).sum().backward()
    ref_w, ref_b = W.grad.clone(), bias.grad.clone()
    W.grad, bias.grad = None, None
    out = z.logits(W, bias)
    out.mul(g).sum().backward()
    assert torch.allclose(out, dense @ W.T + bias, atol=1e-5, rtol=1e-6)
    assert torch.allclose(W.grad, ref_w, atol=1e-6 * float(ref_w.abs().max()) * 10, rtol=0)
    assert torch.equal(bias.grad, ref_b)


def test_compact_warm_start_gives_the_dense_model_to_float_rounding():
    f = make_slates(400, 4, True)
    cfg = RankerConfig(epochs=2, seed=0)
    dense = train_ranker(f, cfg, SLATE_FEATURES)
    compact = train_ranker(f, cfg.model_copy(update={"warm_start_max_gb": 0.0}), SLATE_FEATURES)
    a, b = dense.net.state_dict(), compact.net.state_dict()
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4
    assert dense.metrics["deep_epochs"] == compact.metrics["deep_epochs"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    return make_model_inputs(tmp_path_factory.mktemp("chunks") / "inputs", seed=5)


def test_ranker_columns_give_the_same_features_and_matrix(inputs):
    df = read_table(inputs["training_set"])
    cols = ranker_columns(list(df.columns))
    assert set(cols) < set(df.columns)
    names = available_features(df)
    assert available_features(df[cols]) == names
    assert np.array_equal(ranker_matrix(df[cols], names), ranker_matrix(df, names))


@pytest.mark.parametrize("rows", [997, 10**6])
def test_read_ranker_split_equals_the_whole_frame_split(inputs, rows):
    share, es = 0.2, 0.1
    df = read_table(inputs["training_set"])
    train, val = split_by_time(df, share)
    names = available_features(train)
    split = read_ranker_split(inputs["training_set"], share, es, batch_rows=rows)
    assert split.names == names
    yc, yb = fit.labels(train)
    assert np.array_equal(split.train.X, ranker_matrix(train, names))
    assert np.array_equal(split.train.y_click, yc) and np.array_equal(split.train.y_buy, yb)
    assert np.array_equal(split.train.groups, fit.group_codes(train))
    assert np.array_equal(split.train.hold, fit.holdout_mask(train, es))
    assert split.train.hold.any()
    assert np.array_equal(split.val_X, ranker_matrix(val, names))
    assert np.array_equal(split.val_clicked, val["clicked"].to_numpy())
    assert np.array_equal(split.val_purchased, val["purchased"].to_numpy())


def test_read_ranker_split_on_microsecond_times_and_unsorted_requests(inputs, tmp_path):
    """Timestamps stored in µs (as the pipeline writes them) and rows not grouped by request:
    the time split, the request codes and the early-stopping hold-out are still the frame's."""
    df = read_table(inputs["training_set"]).sample(frac=1.0, random_state=0)
    df["event_timestamp"] = df["event_timestamp"].dt.as_unit("us")
    path = tmp_path / "us.parquet"
    df.to_parquet(path, index=False)
    df = read_table(path)
    train, val = split_by_time(df, 0.3)
    split = read_ranker_split(path, 0.3, 0.15, batch_rows=500)
    assert np.array_equal(split.train.groups, fit.group_codes(train))
    assert np.array_equal(split.train.hold, fit.holdout_mask(train, 0.15))
    assert np.array_equal(split.train.X, ranker_matrix(train, split.names))
    assert np.array_equal(split.val_X, ranker_matrix(val, split.names))


def test_read_ranker_split_one_row_at_a_time(inputs, tmp_path):
    df = read_table(inputs["training_set"]).iloc[:240]
    path = tmp_path / "small.parquet"
    df.to_parquet(path, index=False)
    train, val = split_by_time(df, 0.25)
    split = read_ranker_split(path, 0.25, 0.0, batch_rows=1)
    assert np.array_equal(split.train.X, ranker_matrix(train, split.names))
    assert np.array_equal(split.val_X, ranker_matrix(val, split.names))
    assert not split.train.hold.any()


def test_ranker_stage_on_the_pruned_read_is_the_whole_frame_model(inputs, tmp_path):
    cfg = TrainConfig(ranker=RankerConfig(epochs=2, seed=3))
    train_ranker_stage(inputs["training_set"], tmp_path / "stage", cfg)
    train, _ = split_by_time(read_table(inputs["training_set"]), cfg.validation_share)
    ref = train_ranker(train, cfg.ranker)  # the whole frame, every column
    from safetensors.torch import load_file

    got = load_file(str(tmp_path / "stage" / "ranker" / "weights.safetensors"))
    want = ref.net.state_dict()
    assert got.keys() == want.keys()
    for k in want:
        assert torch.equal(got[k], want[k]), k
