"""Chance-normalized AP: exact E[AP] by enumeration, Monte Carlo, copairs parity, table columns."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import polars as pl
import pytest

from cellframe.errors import InvalidInputError
from cellframe.evaluate import (
    PairRules,
    average_precision,
    expected_average_precision,
    mean_average_precision,
    normalized_average_precision,
    phenotypic_activity,
    retrieval_metrics,
)
from tests.evaluate._synthetic import synthetic_screen


def _ap(positions: tuple[int, ...]) -> float:
    """Non-interpolated AP of positives at the given sorted 0-based ranks."""
    return float(np.mean([(k + 1) / (r + 1) for k, r in enumerate(positions)]))


@pytest.mark.parametrize("n_total", range(1, 9))
def test_expected_ap_equals_enumeration(n_total):
    for n_pos in range(1, n_total + 1):
        aps = [_ap(c) for c in combinations(range(n_total), n_pos)]
        assert expected_average_precision(n_pos, n_total) == pytest.approx(
            np.mean(aps), abs=1e-12
        ), (n_pos, n_total)


def test_small_cases_by_hand():
    # One positive among two: AP 1 or 1/2, E = 3/4.
    assert expected_average_precision(1, 2) == pytest.approx(0.75)
    # Two among three: positions {0,1} 1, {0,2} (1 + 2/3)/2, {1,2} (1/2 + 2/3)/2.
    assert expected_average_precision(2, 3) == pytest.approx((1 + 5 / 6 + 7 / 12) / 3)
    # One positive among L: E = H_L / L.
    assert expected_average_precision(1, 100) == pytest.approx(
        sum(1 / r for r in range(1, 101)) / 100, abs=1e-14
    )
    assert normalized_average_precision([1.0, 0.75, 0.5], 1, 2).tolist() == [1.0, 0.0, -1.0]
    # Worse than chance can pass -1 when E[AP] > 1/2 (2 positives, 1 negative ranked first).
    worst = _ap((1, 2))
    mu = (1 + 5 / 6 + 7 / 12) / 3
    assert normalized_average_precision(worst, 2, 3) == pytest.approx((worst - mu) / (1 - mu))
    assert normalized_average_precision(worst, 2, 3) < -1
    # No negatives: every ranking is perfect, nothing to normalize.
    assert np.isnan(normalized_average_precision(1.0, 4, 4))
    assert np.isnan(expected_average_precision(0, 4))


@pytest.mark.parametrize(("n_pos", "n_total"), [(1, 30), (3, 20), (10, 50), (25, 40)])
def test_expected_ap_against_monte_carlo(n_pos, n_total):
    """200,000 random rankings; the exact value lies within 4 standard errors (< 0.002)."""
    rng = np.random.default_rng(n_pos * 1000 + n_total)
    # Random rankings: the positives' ranks are the first n_pos of a random permutation.
    positions = np.sort(np.argsort(rng.random((200_000, n_total)), axis=1)[:, :n_pos], axis=1)
    draws = (np.arange(1, n_pos + 1) / (positions + 1)).mean(axis=1)
    se = draws.std() / np.sqrt(len(draws))
    assert se < 5e-4
    assert abs(expected_average_precision(n_pos, n_total) - draws.mean()) < 4 * se


def test_vectorised_and_copairs_parity():
    normalization = pytest.importorskip("copairs.map.normalization")
    m = np.array([1, 2, 5, 7, 30, 1])
    t = np.array([2, 9, 5, 100, 400, 1])
    got = expected_average_precision(m, t)
    ref = [normalization.expected_ap(int(a), int(b - a)) for a, b in zip(m, t, strict=True)]
    np.testing.assert_allclose(got, ref, atol=1e-12)
    ap = np.array([0.9, 0.3, 1.0, 0.05, 0.2, 1.0])
    ours = normalized_average_precision(ap, m, t)
    theirs = normalization.normalize_ap(ap, m, t - m)
    # copairs writes 0 where there are no negatives (m == t) and clips to [-1, 1].
    defined = m < t
    np.testing.assert_allclose(ours[defined], theirs[defined], atol=1e-12)
    assert np.isnan(ours[~defined]).all()
    with pytest.raises(InvalidInputError, match="0 <= n_pos <= n_total"):
        expected_average_precision(5, 4)


def test_average_precision_table_has_the_column_beside_ap():
    copairs_map = pytest.importorskip("copairs.map")
    df = synthetic_screen(n_treatments=10, signal=0.5, seed=2)
    rules = dict(pos_sameby=["Metadata_Treatment"], neg_diffby=["Metadata_Treatment"])
    got = average_precision(
        df.filter(pl.col("Metadata_Control") != "negcon"), rules=PairRules(**rules)
    )
    assert got.columns.index("normalized_average_precision") == (
        got.columns.index("average_precision") + 1
    )
    pdf = df.filter(pl.col("Metadata_Control") != "negcon").to_pandas()
    feats = [c for c in pdf.columns if not c.startswith("Metadata_")]
    meta = pdf[[c for c in pdf.columns if c.startswith("Metadata_")]]
    ref = copairs_map.average_precision(
        meta, pdf[feats].values, pos_sameby=rules["pos_sameby"], pos_diffby=[],
        neg_sameby=[], neg_diffby=rules["neg_diffby"], progress_bar=False,
    )  # fmt: skip
    np.testing.assert_allclose(
        got["normalized_average_precision"].to_numpy(),
        ref["normalized_average_precision"].to_numpy(),
        atol=1e-5,
    )
    own = normalized_average_precision(
        got["average_precision"].to_numpy(), got["n_pos_pairs"], got["n_total_pairs"]
    )
    np.testing.assert_allclose(got["normalized_average_precision"].to_numpy(), own, atol=1e-12)


def test_mean_average_precision_reports_the_group_mean():
    df = synthetic_screen(n_treatments=6, signal=0.8, seed=5)
    ap = phenotypic_activity(df).filter(~pl.col("is_control"))
    res = mean_average_precision(ap, sameby="Metadata_Treatment", null_size=100)
    ref = (
        ap.group_by("Metadata_Treatment")
        .agg(pl.col("normalized_average_precision").mean())
        .sort("Metadata_Treatment")
    )
    np.testing.assert_allclose(
        res["mean_normalized_average_precision"].to_numpy(),
        ref["normalized_average_precision"].to_numpy(),
        atol=1e-12,
    )
    # A table without the column (older stores) still works, without the new column.
    old = mean_average_precision(
        ap.drop("normalized_average_precision"), sameby="Metadata_Treatment", null_size=100
    )
    assert "mean_normalized_average_precision" not in old.columns
    assert old["p_value"].to_list() == res["p_value"].to_list()


def test_retrieval_metrics_column_and_summary():
    df = pl.DataFrame(
        {"Metadata_MoA": ["a", "a", "b", "b", "b"],
         "f1": [1.0, 0.0, 0.9, 0.1, 0.5], "f2": [0.0, 1.0, 0.1, 0.9, 0.5]}
    )  # fmt: skip
    res = retrieval_metrics(df, recall_points=2)
    pq = res.per_query
    expected = normalized_average_precision(
        pq["average_precision_noninterpolated"].to_numpy(), pq["n_positives"], pq["n_candidates"]
    )
    np.testing.assert_allclose(
        pq["normalized_average_precision_noninterpolated"].to_numpy(), expected
    )
    # Query 0 ((1, 0), "a"): candidates by similarity 2 (b), 4 (b), 3 (b), 1 (a): AP 1/4.
    assert pq["average_precision_noninterpolated"][0] == pytest.approx(0.25)
    mu = expected_average_precision(1, 4)
    assert pq["normalized_average_precision_noninterpolated"][0] == pytest.approx(
        (0.25 - mu) / (1 - mu)
    )
    assert res.summary["mean_normalized_average_precision_noninterpolated"][0] == pytest.approx(
        expected.mean()
    )
