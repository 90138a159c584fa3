"""Feature selection: every operation against pycytominer 1.7.1 on real CellProfiler data."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from cellframe.columns import feature_columns
from cellframe.errors import InvalidInputError
from cellframe.profiles import (
    OPERATIONS,
    blocklist,
    correlation_threshold,
    default_blocklist,
    feature_select,
    select_features,
    variance_threshold,
)

from .conftest import with_missing


def _pyc_dropped(df: pl.DataFrame, operation, **kwargs) -> set[str]:
    from pycytominer import feature_select as pyc_feature_select

    feats = feature_columns(df)
    out = pyc_feature_select(df.to_pandas(), features=feats, operation=operation, **kwargs)
    return set(feats) - set(out.columns)


@pytest.fixture(scope="module")
def nf1_features(nf1_cells) -> pl.DataFrame:
    # Real CellProfiler cells, with NaN put into a few features at 1%..50% of rows
    # so that drop_na_columns and the pairwise-complete correlation are exercised.
    return with_missing(nf1_cells, {5: 0.01, 30: 0.04, 60: 0.05, 90: 0.06, 120: 0.5})


# noise_removal needs a perturbation-group column: tests/profiles/test_select_parity.py.
@pytest.mark.parametrize(
    "operation", [op for op in OPERATIONS if op not in ("blocklist", "noise_removal")]
)
def test_each_operation_matches_pycytominer(nf1_features, operation):
    feats = feature_columns(nf1_features)
    fn = OPERATIONS[operation][0]
    ours = fn(nf1_features, features=feats)
    ref = _pyc_dropped(nf1_features, operation)
    print(
        f"{operation}: pycytominer drops {len(ref)}, cellframe drops {len(ours.dropped_features)}"
    )
    assert set(ours.dropped_features) == ref
    assert set(ours.kept) | set(ours.dropped_features) == set(feats)
    assert ours.dropped["operation"].unique().to_list() in ([operation], [])


def test_some_operations_drop_something(nf1_features):
    # Guard: the parity above must not be vacuous on this data.
    counts = {
        op: len(OPERATIONS[op][0](nf1_features).dropped_features)
        for op in OPERATIONS
        if op != "noise_removal"
    }
    assert counts["variance_threshold"] == 17 and counts["frequency_threshold"] >= 40
    assert counts["correlation_threshold"] >= 100 and counts["drop_na_columns"] == 2
    assert counts["drop_outliers"] >= 50


def test_blocklist_matches_pycytominer(jump_nuclei):
    ours = blocklist(jump_nuclei)
    ref = _pyc_dropped(jump_nuclei, "blocklist")
    assert len(ref) == 55 and set(ours.dropped_features) == ref
    assert len(default_blocklist()) == 55
    custom = blocklist(jump_nuclei, blocklist=["Nuclei_AreaShape_Area"])
    assert custom.dropped_features == ["Nuclei_AreaShape_Area"]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_correlation_on_wide_real_data(jump_nuclei):
    ours = correlation_threshold(jump_nuclei)
    ref = _pyc_dropped(jump_nuclei, "correlation_threshold")
    print(f"correlation_threshold JUMP nuclei: {len(ref)} dropped by both")
    assert set(ours.dropped_features) == ref


def test_composer_matches_pycytominer_order(nf1_features):
    ops = [
        "variance_threshold",
        "drop_na_columns",
        "frequency_threshold",
        "correlation_threshold",
        "drop_outliers",
        "blocklist",
    ]
    ours = feature_select(nf1_features, ops, corr_threshold=0.8, outlier_cutoff=1000, freq_cut=0.1)
    ref = _pyc_dropped(nf1_features, ops, corr_threshold=0.8, outlier_cutoff=1000, freq_cut=0.1)
    assert set(ours.dropped_features) == ref
    # Each feature is dropped once, by the first operation that rejects it.
    assert ours.dropped["feature"].is_unique().all()
    assert ours.dropped.group_by("operation").len()["len"].sum() == len(ref)
    lf = select_features(nf1_features, ops, corr_threshold=0.8, outlier_cutoff=1000, freq_cut=0.1)
    assert set(feature_columns(lf.collect_schema())) == set(ours.kept)


def test_reasons_are_specific():
    df = pl.DataFrame({"a": [1.0, 1.0, 1.0, 1.0], "b": [0.0, 1.0, 2.0, 3.0]})
    result = variance_threshold(df)
    assert result.dropped.to_dicts() == [
        {
            "feature": "a",
            "operation": "variance_threshold",
            "reason": "variance 0 <= min_variance 1e-06",
        }
    ]


def test_iterative_variant_uses_absolute_r_hand_computed():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    df = pl.DataFrame(
        {
            "x1": x,
            "x2": x + np.array([0.1, -0.1, 0.1, -0.1, 0.1, -0.1]),
            "x3": -x,
            "z": np.array([1.0, -1.0, 1.0, 1.0, -1.0, -1.0]),
        }
    )
    # pycytominer's rule uses signed r: only the x1/x2 pair (r ~ 0.997) counts.
    pyc = correlation_threshold(df)
    ref = _pyc_dropped(df.rename(lambda c: f"Cells_{c}"), "correlation_threshold")
    assert {f"Cells_{f}" for f in pyc.dropped_features} == ref
    assert len(pyc.dropped_features) == 1 and pyc.dropped_features[0] in ("x1", "x2")
    # The iterative variant uses |r|: x1, x2, x3 are one block; two of them go.
    it = correlation_threshold(df, strategy="iterative")
    assert len(it.dropped_features) == 2 and "z" in it.kept
    kept = df.select(it.kept).to_numpy()
    r = np.corrcoef(kept, rowvar=False)
    assert np.abs(r[np.triu_indices_from(r, 1)]).max() <= 0.9


def test_samples_subset_and_bad_input():
    df = pl.DataFrame(
        {
            "Metadata_Control": ["negcon"] * 3 + [""] * 3,
            "a": [1.0, 1.0, 1.0, 5.0, 6.0, 7.0],
            "b": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        }
    )
    assert variance_threshold(df, samples="negcon").dropped_features == [
        "a"
    ]  # a Metadata_Control value
    assert variance_threshold(df, samples="Metadata_Control = 'negcon'").dropped_features == ["a"]
    assert variance_threshold(df, samples=None).dropped_features == []
    with pytest.raises(ValueError, match=r"unknown operation 'noise'.*'variance_threshold'"):
        feature_select(df, ["noise"])
    with pytest.raises(ValueError, match="unknown feature-selection parameter"):
        feature_select(df, ["variance_threshold"], min_var=1.0)
    with pytest.raises(InvalidInputError, match="dropped every feature"):
        feature_select(df, ["variance_threshold"], min_variance=100.0)


@pytest.mark.filterwarnings("ignore:Degrees of freedom:RuntimeWarning")  # sklearn, in the reference
def test_all_nan_feature_is_dropped_with_reason():
    df = pl.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "gone": [float("nan")] * 4})
    assert variance_threshold(df).dropped.filter(pl.col("feature") == "gone")[
        "reason"
    ].to_list() == ["variance undefined (no non-missing values)"]
    result = feature_select(df, ["drop_na_columns"])
    assert result.dropped["reason"].to_list() == ["100.0% missing > na_cutoff 0.05"]
    ref = _pyc_dropped(df.rename({"a": "Cells_a", "gone": "Cells_gone"}), "variance_threshold")
    assert ref == {"Cells_gone"}


def test_shipped_blocklist_equals_pycytominer(monkeypatch):
    import importlib.util

    from_pycytominer = default_blocklist()
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "pycytominer" else real_find_spec(name, *a),
    )
    default_blocklist.cache_clear()
    try:
        assert default_blocklist() == from_pycytominer
    finally:
        default_blocklist.cache_clear()


def test_constant_feature_variance_is_exactly_zero():
    # np.var([0.1] * 7) is 1.9e-34, not 0: a feature whose values are all equal
    # reports variance 0 (so the reason does not depend on summation order).
    assert np.var(np.full(7, 0.1)) > 0
    df = pl.DataFrame({"a": [0.1] * 7, "b": [float(i) for i in range(7)]})
    assert variance_threshold(df).dropped["reason"].to_list() == [
        "variance 0 <= min_variance 1e-06"
    ]
