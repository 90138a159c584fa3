"""Null distributions, p-values and FDR against copairs 0.5.5 and statsmodels."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from cellframe.errors import InvalidInputError
from cellframe.evaluate import (
    PairRules,
    average_precision,
    average_precision_p_values,
    benjamini_hochberg,
    mean_average_precision,
    null_average_precision,
)
from tests.evaluate._synthetic import synthetic_screen

compute = pytest.importorskip("copairs.compute")
copairs_map = pytest.importorskip("copairs.map")


@pytest.mark.parametrize(("k", "m"), [(1, 2), (3, 29), (5, 300), (11, 70000)])
def test_null_equals_copairs_bit_for_bit(k, m):
    null_size = 300 if m > 1000 else 2000
    ours = null_average_precision(k, m, null_size=null_size, seed=123)
    ref = compute.random_ap(null_size, k, m, 123)
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(ours, ref)


def test_sampled_null_has_the_exact_expected_ap():
    from copairs.map.normalization import expected_ap

    null = null_average_precision(4, 60, null_size=40000, seed=1, method="sampled")
    # Monte Carlo error of the mean is about sd / sqrt(40000) ~ 0.001.
    assert null.mean() == pytest.approx(expected_ap(4, 56), abs=0.004)
    assert null.min() > 0 and null.max() <= 1


def test_unknown_null_method():
    with pytest.raises(ValueError, match="copairs"):
        null_average_precision(2, 10, method="nope")
    with pytest.raises(InvalidInputError, match="n_pos <= n_total"):
        null_average_precision(5, 3)


def test_benjamini_hochberg_matches_statsmodels():
    from statsmodels.stats.multitest import multipletests

    p = np.random.default_rng(0).random(200) ** 3
    np.testing.assert_allclose(
        benjamini_hochberg(p), multipletests(p, method="fdr_bh")[1], atol=1e-12
    )
    with_nan = benjamini_hochberg([0.01, np.nan, 0.02])
    assert np.isnan(with_nan[1]) and with_nan[0] == pytest.approx(0.02)


def test_map_p_values_match_copairs(tmp_path, monkeypatch):
    df = synthetic_screen(n_treatments=15, signal=0.4, seed=11)
    rules = dict(
        pos_sameby=["Metadata_Treatment"],
        pos_diffby=[],
        neg_sameby=[],
        neg_diffby=["Metadata_Treatment"],
    )
    ours = average_precision(df, rules=PairRules(**rules))
    pdf = df.to_pandas()
    feats = [c for c in df.columns if not c.startswith("Metadata_")]
    ap = copairs_map.average_precision(
        pdf[[c for c in pdf.columns if c.startswith("Metadata_")]],
        pdf[feats].values,
        progress_bar=False,
        **rules,
    )
    ref = copairs_map.mean_average_precision(
        ap,
        ["Metadata_Treatment"],
        null_size=2000,
        threshold=0.05,
        seed=3,
        progress_bar=False,
        cache_dir=tmp_path,
    )
    ref = pl.from_pandas(ref.drop(columns=["indices"])).sort("Metadata_Treatment")
    got = mean_average_precision(ours, sameby="Metadata_Treatment", null_size=2000, seed=3)
    np.testing.assert_allclose(
        got["mean_average_precision"], ref["mean_average_precision"], atol=1e-6
    )
    np.testing.assert_array_equal(got["p_value"].to_numpy(), ref["p_value"].to_numpy())
    np.testing.assert_allclose(got["corrected_p_value"], ref["corrected_p_value"], atol=1e-12)
    assert got["below_corrected_p"].to_list() == ref["below_corrected_p"].to_list()
    # Per-profile p-values (copairs' p_values: null >= AP).
    from copairs.map.average_precision import p_values

    monkeypatch.setenv("HOME", str(tmp_path))  # copairs caches per-profile nulls in ~/.copairs
    ref_p = p_values(ap, 500, 3, progress_bar=False)
    got_p = average_precision_p_values(ours, null_size=500, seed=3)["p_value"].to_numpy()
    np.testing.assert_array_equal(got_p, ref_p)


def test_map_errors():
    ap = pl.DataFrame(
        {"g": ["a"], "average_precision": [None], "n_pos_pairs": [0], "n_total_pairs": [3]},
        schema_overrides={"average_precision": pl.Float64},
    )
    with pytest.raises(InvalidInputError, match="no profile has positives"):
        mean_average_precision(ap, sameby="g")
    from cellframe.errors import MissingColumnsError

    with pytest.raises(MissingColumnsError, match="n_total_pairs"):
        mean_average_precision(ap.drop("n_total_pairs"), sameby="g")


# ---------------------------------------------------------------- NaN is never significant
def _ap_table(aps):
    n = len(aps)
    return pl.DataFrame(
        {
            "Metadata_Treatment": ["a"] * 3 + ["b"] * (n - 3),
            "average_precision": aps,
            "n_pos_pairs": [2] * n,
            "n_total_pairs": [10] * n,
        }
    )


def test_nan_ap_gets_no_p_value_and_stays_out_of_map():
    from cellframe.errors import NaNExcludedWarning

    nan = float("nan")
    table = _ap_table([1.0, nan, 0.5, 0.2, 0.3, 1.0])
    with pytest.warns(NaNExcludedWarning, match="1 of 6 rows .* NaN average_precision"):
        p = average_precision_p_values(table, null_size=500, seed=1)
    assert p["p_value"][1] is None  # NaN would have had p = 1 / (null_size + 1)
    clean = average_precision_p_values(
        _ap_table([1.0, 0.7, 0.5, 0.2, 0.3, 1.0]), null_size=500, seed=1
    )
    assert p["p_value"].drop_nulls().len() == 5
    assert p["p_value"][0] == clean["p_value"][0]  # an unusual but valid AP of 1.0 is kept
    with pytest.warns(NaNExcludedWarning, match="left out of mAP"):
        got = mean_average_precision(table, sameby="Metadata_Treatment", null_size=500)
    a = got.filter(pl.col("Metadata_Treatment") == "a")
    assert a["n_queries"][0] == 2 and a["mean_average_precision"][0] == pytest.approx(0.75)
    # All-NaN group: no row rather than a "significant" NaN mAP.
    with pytest.warns(NaNExcludedWarning, match="3 of 6"):
        only_b = mean_average_precision(
            _ap_table([nan, nan, nan, 0.2, 0.3, 1.0]), sameby="Metadata_Treatment", null_size=500
        )
    assert only_b["Metadata_Treatment"].to_list() == ["b"]
