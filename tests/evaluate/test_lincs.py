"""Reference numbers on the real LINCS plate SQ00015054 (../shared/data/README.md)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from cellframe.evaluate import (
    grit,
    mean_average_precision,
    percent_replicating,
    phenotypic_activity,
    retrieval_metrics,
)

GROUPS = ["Metadata_broad_sample", "Metadata_mg_per_ml"]


@pytest.fixture(scope="module")
def activity(lincs):
    return phenotypic_activity(
        lincs,
        treatment="Metadata_broad_sample",
        controls=pl.col("Metadata_broad_sample") == "DMSO",
        keep=["Metadata_Well"],
    )


def test_phenotypic_activity_reference_numbers(activity):
    res = mean_average_precision(
        activity.filter(~pl.col("is_control")),
        sameby="Metadata_broad_sample",
        null_size=10000,
        seed=0,
    )
    assert res.height == 58
    assert res["mean_average_precision"].mean() == pytest.approx(0.618, abs=5e-4)
    assert res["below_corrected_p"].mean() == pytest.approx(0.534, abs=5e-4)  # 31 of 58


@pytest.mark.slow
def test_parity_with_copairs(activity, lincs_pandas, tmp_path):
    copairs_map = pytest.importorskip("copairs.map")
    from copairs.matching import assign_reference_index

    df = assign_reference_index(
        lincs_pandas,
        "Metadata_broad_sample == 'DMSO'",
        reference_col="Metadata_ref",
        default_value=-1,
    )
    meta = df[[c for c in df.columns if c.startswith("Metadata_")]]
    feats = df[[c for c in df.columns if not c.startswith("Metadata_")]].values
    rule = ["Metadata_broad_sample", "Metadata_ref"]
    ap = copairs_map.average_precision(
        meta,
        feats,
        pos_sameby=rule,
        pos_diffby=[],
        neg_sameby=[],
        neg_diffby=rule,
        progress_bar=False,
    )
    np.testing.assert_allclose(
        activity["average_precision"].fill_null(np.nan).to_numpy(),
        ap["average_precision"].values,
        atol=1e-5,
    )
    ref = copairs_map.mean_average_precision(
        ap,
        ["Metadata_broad_sample"],
        null_size=10000,
        threshold=0.05,
        seed=0,
        progress_bar=False,
        cache_dir=tmp_path,
    )
    ours = mean_average_precision(activity, sameby="Metadata_broad_sample", null_size=10000, seed=0)
    ref = ref.sort_values("Metadata_broad_sample")
    np.testing.assert_allclose(
        ours["mean_average_precision"], ref["mean_average_precision"], atol=1e-5
    )
    np.testing.assert_array_equal(ours["p_value"].to_numpy(), ref["p_value"].values)
    sig_ours = set(ours.filter(pl.col("below_corrected_p"))["Metadata_broad_sample"])
    sig_ref = set(ref.loc[ref.below_corrected_p, "Metadata_broad_sample"])
    assert sig_ours == sig_ref and len(sig_ours) == 31


@pytest.mark.parametrize(
    ("similarity", "quantile", "expected"),
    [
        ("pearson", 0.5, 0.681),
        ("pearson", 0.95, 0.458),
        ("spearman", 0.5, 0.679),
        ("spearman", 0.95, 0.466),
    ],
)
def test_percent_replicating_matches_cytominer_eval(lincs, similarity, quantile, expected):
    res = percent_replicating(
        lincs, replicate_groups=GROUPS, quantile=quantile, similarity=similarity
    )
    assert round(res.percent_replicating, 3) == expected
    assert res.per_group["n_pairs"].sum() == 408  # 24 DMSO wells + 58 x 2 ... replicate pairs
    assert res.summary()["percent_replicating"][0] == res.percent_replicating


def test_percent_replicating_block_invariant(lincs):
    a = percent_replicating(lincs, replicate_groups=GROUPS, block_rows=37)
    b = percent_replicating(lincs, replicate_groups=GROUPS)
    assert a.threshold == pytest.approx(b.threshold, abs=1e-12)
    assert a.percent_replicating == b.percent_replicating


def test_grit_matches_cytominer_eval(lincs):
    res = grit(
        lincs, profile_col="Metadata_broad_sample", group_col="Metadata_moa", control_perts=["DMSO"]
    )
    top = res.row(0, named=True)
    assert top["perturbation"] == "BRD-A94756469-001-04-7"
    assert top["group"] == "ATPase inhibitor"
    assert round(top["grit"], 4) == 0.9990


def test_moa_retrieval_on_lincs(lincs):
    # Treatment-level profiles (mean of the wells of each compound), MoA as labels.
    treatments = (
        lincs.filter(pl.col("Metadata_moa").is_not_null())
        .group_by("Metadata_broad_sample")
        .agg(pl.col("Metadata_moa").first(), pl.col("^[^M].*$").mean())
    )
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = retrieval_metrics(treatments, label="Metadata_moa")
    assert any("have no positive" in str(w.message) for w in caught)
    s = res.summary.row(0, named=True)
    assert s["n_queries"] + s["n_unscored"] == treatments.height
    assert 0 < s["mean_average_precision"] <= 1
    assert s["mean_average_precision"] >= s["mean_average_precision_noninterpolated"]
