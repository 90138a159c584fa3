"""Thesis retrieval metrics against scikit-learn, float64 NumPy and hand-computed cases."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score

from cellframe.evaluate import (
    ComputeOptions,
    folds_of_enrichment,
    hits_at_top,
    retrieval_map,
    retrieval_metrics,
)
from cellframe.evaluate._ranking import (
    interpolated_average_precision_from_ranks,
    positive_ranks,
)
from tests.evaluate._synthetic import synthetic_screen


def _frame(x: np.ndarray, labels, **extra) -> pl.DataFrame:
    df = pl.DataFrame({"Metadata_MoA": labels, **extra})
    return df.hstack(pl.DataFrame(x, schema=[f"f{i}" for i in range(x.shape[1])]))


def _reference(x: np.ndarray, labels: list[str], grid: np.ndarray, top_fraction: float = 0.01):
    """Straightforward float64 loop over queries: the definitions of DOMAIN.md §3."""
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = u @ u.T
    sets = [set(v.split("|")) for v in labels]
    n = len(labels)
    rows = []
    curves = []
    for i in range(n):
        others = [j for j in range(n) if j != i]
        y = np.array([bool(sets[i] & sets[j]) for j in others])
        sim = s[i, others]
        if y.sum() == 0:
            continue
        # Optimistic ties: positives first among equal similarities.
        order = np.lexsort((~y, -sim))
        yy = y[order]
        hits = np.cumsum(yy)
        prec = hits / np.arange(1, len(yy) + 1)
        p_at_pos = prec[yy]
        interp = np.maximum.accumulate(p_at_pos[::-1])[::-1]
        recall = np.arange(1, y.sum() + 1) / y.sum()
        curves.append(
            [interp[recall >= r - 1e-12].max() if (recall >= r - 1e-12).any() else 0 for r in grid]
        )
        t = max(1, int(np.ceil(top_fraction * len(y))))
        a = int(yy[:t].sum())
        b, c, d = t - a, int(y.sum()) - a, int((~y).sum()) - (t - a)
        if min(a, b, c, d) == 0:
            a, b, c, d = a + 0.5, b + 0.5, c + 0.5, d + 0.5
        rows.append(
            {
                "row": i,
                "ap_sklearn": average_precision_score(y, sim),
                "ap_interp": interp.mean(),
                "fold": (a * d) / (b * c),
                "hit": int(yy[:t].sum()) > 0,
            }
        )
    return pl.DataFrame(rows), np.mean(curves, axis=0)


@pytest.mark.parametrize("block_rows", [1, 7, None])
def test_metrics_match_reference(block_rows):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 10))
    labels = rng.choice(["a", "b", "c", "a|b", "d"], size=80).tolist()
    grid = np.linspace(0, 1, 21)
    res = retrieval_metrics(
        _frame(x, labels),
        recall_points=21,
        top_fraction=0.05,
        compute=ComputeOptions(block_rows=block_rows),
    )
    ref, curve = _reference(x, labels, grid, top_fraction=0.05)
    got = res.per_query.sort("row")
    assert got["row"].to_list() == ref["row"].to_list()
    np.testing.assert_allclose(
        got["average_precision_noninterpolated"], ref["ap_sklearn"], atol=1e-6
    )
    np.testing.assert_allclose(got["average_precision"], ref["ap_interp"], atol=1e-6)
    np.testing.assert_allclose(got["folds_of_enrichment"], ref["fold"], rtol=1e-9)
    assert got["hit_at_top"].to_list() == ref["hit"].to_list()
    np.testing.assert_allclose(res.pr_curve["precision"], curve, atol=1e-6)
    summary = res.summary.row(0, named=True)
    assert summary["mean_average_precision"] == pytest.approx(ref["ap_interp"].mean(), abs=1e-6)
    assert summary["folds_of_enrichment"] == pytest.approx(ref["fold"].mean(), rel=1e-9)
    assert summary["hits_at_top"] == int(ref["hit"].sum())


def test_hand_computed_ranking():
    # Query 0 ranks: rows 1 (pos), 2 (neg), 3 (pos), 4 (neg) by construction.
    x = np.array([[1.0, 0.0], [0.99, 0.14], [0.9, 0.43], [0.7, 0.71], [0.0, 1.0]])
    df = _frame(x, ["a", "a", "b", "a", "b"])
    q0 = (
        retrieval_metrics(df, top_fraction=0.25)
        .per_query.filter(pl.col("row") == 0)
        .row(0, named=True)
    )
    # positives at ranks 1 and 3: precision 1 and 2/3.
    assert q0["average_precision_noninterpolated"] == pytest.approx((1 + 2 / 3) / 2)
    assert q0["average_precision"] == pytest.approx((1 + 2 / 3) / 2)
    # top 1 of 4 candidates: a=1, b=0, c=1, d=2 -> zero cell: (1.5 * 2.5) / (0.5 * 1.5) = 5
    assert q0["n_top"] == 1 and q0["positives_in_top"] == 1
    assert q0["folds_of_enrichment"] == pytest.approx(5.0)


def test_interpolation_lifts_earlier_precision():
    # Ranks of positives 2 and 3: precisions 1/2 then 2/3; interpolated 2/3, 2/3.
    keys = np.array([[0.1, 0.2, 0.3, 0.4]], dtype=np.float32)
    pos = np.array([[False, True, True, False]])
    neg = ~pos
    n_pos, n_neg, ranks = positive_ranks(keys, pos, neg)
    assert ranks.tolist() == [2, 3]
    from cellframe.evaluate._ranking import RankLists

    lists = RankLists(np.array([0]), None, n_pos, n_neg, np.array([0, 2]), ranks)
    assert interpolated_average_precision_from_ranks(lists)[0] == pytest.approx(2 / 3)


def test_ties_are_optimistic():
    keys = np.array([[0.5, 0.5, 0.5]], dtype=np.float32)
    pos = np.array([[False, True, False]])
    _, _, ranks = positive_ranks(keys, pos, ~pos)
    assert ranks.tolist() == [1]


def test_sorting_path_equals_compare_path():
    # More positives than the compare path handles: the sort path must agree.
    rng = np.random.default_rng(5)
    keys = rng.random((6, 200)).astype(np.float32)
    pos = rng.random((6, 200)) < 0.3
    neg = ~pos
    _, _, ranks = positive_ranks(keys, pos, neg)
    expected = []
    for r in range(6):
        pk = np.sort(keys[r, pos[r]])
        nk = keys[r, neg[r]]
        expected += [k + 1 + int((nk < v).sum()) for k, v in enumerate(pk)]
    assert ranks.tolist() == expected


def test_folds_of_enrichment_rule():
    got = folds_of_enrichment(
        np.array([3, 0]), np.array([2, 5]), np.array([1, 4]), np.array([94, 91])
    )
    assert got[0] == pytest.approx(3 * 94 / (2 * 1))
    assert got[1] == pytest.approx(0.5 * 91.5 / (5.5 * 4.5))


def test_hits_at_well_and_image_level():
    # Treatment "t" has two wells, each with two images; "u" is far away.
    x = np.array(
        [
            [1.0, 0.0, 0.0],
            [1.0, 0.01, 0.0],  # t, well A01, images 1-2
            [0.0, 0.3, 1.0],
            [0.0, 0.31, 1.0],  # t, well A02: nearer u than A01
            [0.9, 0.1, 0.0],
            [0.9, 0.11, 0.0],  # u, well B01: close to A01
        ]
    )
    df = pl.DataFrame(
        {
            "Metadata_Treatment": ["t", "t", "t", "t", "u", "u"],
            "Metadata_Plate": ["P"] * 6,
            "Metadata_Well": ["A01", "A01", "A02", "A02", "B01", "B01"],
        }
    ).hstack(pl.DataFrame(x, schema=["f1", "f2", "f3"]))
    # Well level: the top candidate of every image is its sibling image, a replicate.
    wells = hits_at_top(df, top_fraction=0.2)
    assert wells["hit"].to_list() == [True, True]
    # Image level: own-well images are excluded, so t's images now find u first,
    # and u (one well) has no positives left: it is not scored, with a warning.
    with pytest.warns(RuntimeWarning, match="2 of 6 queries have no positive"):
        images = hits_at_top(df, top_fraction=0.2, exclude_same=["Metadata_Plate", "Metadata_Well"])
    assert images["Metadata_Treatment"].to_list() == ["t"]
    assert images["hit"].to_list() == [False]
    assert images["n_queries"].to_list() == [4]


def test_retrieval_map_signature_and_value():
    df = synthetic_screen(signal=3.0).filter(pl.col("Metadata_MoA").is_not_null())
    value = retrieval_map(df, label="Metadata_MoA")
    assert isinstance(value, float)
    assert value == pytest.approx(
        retrieval_metrics(df).summary["mean_average_precision"][0], abs=1e-12
    )
    assert retrieval_map(df.lazy(), label="Metadata_Treatment") > value  # replicates are easier
    # Shuffled features lose the signal.
    feats = [c for c in df.columns if c.startswith("f")]
    shuffled = df.with_columns(pl.col(f).shuffle(seed=i) for i, f in enumerate(feats))
    assert retrieval_map(shuffled, features=feats) < value


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(4, 30),
)
def test_ap_in_unit_interval_and_interpolated_not_below(seed, n):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    labels = rng.choice(["a", "b"], size=n).tolist()
    if len(set(labels)) < 2:
        labels[0] = "a" if labels[0] == "b" else "b"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        pq = retrieval_metrics(_frame(x, labels)).per_query
    ap = pq["average_precision"].to_numpy()
    ap_ni = pq["average_precision_noninterpolated"].to_numpy()
    assert np.all((ap >= 0) & (ap <= 1 + 1e-12))
    assert np.all(ap >= ap_ni - 1e-12)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_features_are_refused_not_ranked(bad):
    """Hits in the top 1 % and enrichment rank similarities; a NaN would rank first."""
    from cellframe.errors import InvalidInputError

    df = synthetic_screen(n_treatments=6, n_controls=0, seed=3).drop("Metadata_Control")
    poisoned = df.with_columns(
        pl.when(pl.int_range(pl.len()) == 2).then(bad).otherwise(pl.col("f05")).alias("f05")
    )
    for call in (lambda f: retrieval_metrics(f, label="Metadata_MoA"), hits_at_top):
        with pytest.raises(InvalidInputError, match=r"1 NaN/infinite feature values.*'f05' \(1\)"):
            call(poisoned)
    # Control: a valid but unusual value (huge, finite) is ranked, not refused.
    huge = df.with_columns(
        pl.when(pl.int_range(pl.len()) == 2).then(1e30).otherwise(pl.col("f05")).alias("f05")
    )
    assert hits_at_top(huge)["n_queries"].sum() == df.height
