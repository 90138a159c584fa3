"""Hierarchical FDR for dose series against statsmodels, scipy and copairs on hand cases."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy.stats import false_discovery_control
from statsmodels.stats.multitest import multipletests

from cellframe.errors import (
    InvalidChoiceError,
    InvalidInputError,
    MissingColumnsError,
    NaNExcludedWarning,
)
from cellframe.evaluate import hierarchical_fdr

# Three compounds x doses. Group minima 0.001, 0.02, 0.04, 0.6 -> BH over 4 groups:
# 0.004, 0.04, 0.0533, 0.6: compounds a and b are selected, c and d are not.
TABLE = pl.DataFrame(
    {
        "Metadata_Compound": ["a"] * 3 + ["b"] * 4 + ["c"] * 2 + ["d"],
        "Metadata_Dose": [1.0, 3.0, 10.0, 0.1, 1.0, 3.0, 10.0, 1.0, 10.0, 5.0],
        "p_value": [0.3, 0.01, 0.001, 0.5, 0.2, 0.02, 0.03, 0.04, 0.9, 0.6],
    }
)


def test_hand_case_against_statsmodels_and_scipy():
    out = hierarchical_fdr(TABLE, by="Metadata_Compound")
    group_p = np.array([0.001, 0.02, 0.04, 0.6])
    group_q = multipletests(group_p, method="fdr_bh")[1]
    np.testing.assert_allclose(group_q, false_discovery_control(group_p), atol=1e-15)
    np.testing.assert_allclose(group_q, [0.004, 0.04, 0.16 / 3, 0.6], atol=1e-15)
    by_row = {"a": 0, "b": 1, "c": 2, "d": 3}
    codes = [by_row[c] for c in TABLE["Metadata_Compound"]]
    assert out["group_p_value"].to_list() == pytest.approx(group_p[codes].tolist())
    assert out["group_corrected_p_value"].to_list() == pytest.approx(group_q[codes].tolist())
    assert out["group_selected"].to_list() == [True] * 7 + [False] * 3
    q_a = false_discovery_control([0.3, 0.01, 0.001])
    q_b = multipletests([0.5, 0.2, 0.02, 0.03], method="fdr_bh")[1]
    expected = [*q_a, *q_b, 1.0, 1.0, 1.0]
    assert out["hierarchical_corrected_p_value"].to_list() == pytest.approx(expected)
    # By hand: a -> 0.3, 0.015, 0.003; b -> 0.5, 0.2667, 0.06, 0.06.
    assert expected[:7] == pytest.approx([0.3, 0.015, 0.003, 0.5, 0.8 / 3, 0.06, 0.06])
    assert out["below_hierarchical_p"].to_list() == [False, True, True] + [False] * 7
    # The input columns and order are kept.
    assert out.select(TABLE.columns).equals(TABLE)


def test_parity_with_copairs():
    fdr = pytest.importorskip("copairs.map.hierarchical_fdr")
    rng = np.random.default_rng(0)
    compounds = np.repeat([f"c{i}" for i in range(30)], 4)
    p = np.where(rng.random(120) < 0.3, rng.random(120) * 0.002, rng.random(120))
    table = pl.DataFrame({"compound": compounds, "dose": np.tile([1, 2, 3, 4], 30), "p_value": p})
    ref = fdr.apply_hierarchical_fdr_correction(
        table.to_pandas(), hierarchical_by=["compound"], sameby=["compound", "dose"]
    )
    out = hierarchical_fdr(table, by="compound")
    np.testing.assert_allclose(
        out["hierarchical_corrected_p_value"].to_numpy(), ref["corrected_p_value"].to_numpy()
    )
    np.testing.assert_allclose(
        out["group_corrected_p_value"].to_numpy(), ref["stage1_corrected_p_value"].to_numpy()
    )
    assert out["group_selected"].to_list() == ref["stage1_significant"].tolist()
    assert 0 < out["group_selected"].sum() < 120  # the case selects some, not all


def test_combine_rules():
    t = pl.DataFrame({"c": ["a", "a", "a", "b"], "p_value": [0.01, 0.02, 0.9, 0.5]})
    bonf = hierarchical_fdr(t, by="c", combine="bonferroni")
    assert bonf["group_p_value"].to_list() == pytest.approx([0.03, 0.03, 0.03, 0.5])
    # Simes: min(3 x 0.01 / 1, 3 x 0.02 / 2, 3 x 0.9 / 3) = 0.03.
    simes = hierarchical_fdr(t, by="c", combine="simes")
    assert simes["group_p_value"].to_list() == pytest.approx([0.03, 0.03, 0.03, 0.5])
    t2 = t.with_columns(p_value=pl.Series([0.02, 0.021, 0.9, 0.5]))
    simes2 = hierarchical_fdr(t2, by="c", combine="simes")
    assert simes2["group_p_value"][0] == pytest.approx(3 * 0.021 / 2)  # < Bonferroni's 0.06
    own = hierarchical_fdr(t, by="c", combine=lambda p: float(np.median(p)))
    assert own["group_p_value"].to_list() == pytest.approx([0.02, 0.02, 0.02, 0.5])
    with pytest.raises(InvalidChoiceError, match="unknown combine 'fisher'"):
        hierarchical_fdr(t, by="c", combine="fisher")


def test_single_dose_group_keeps_its_p_value_and_multiple_by_columns():
    t = pl.DataFrame(
        {"src": ["s1", "s1", "s2"], "c": ["a", "a", "a"], "p_value": [0.001, 0.04, 0.01]}
    )
    out = hierarchical_fdr(t, by=["src", "c"])
    # Groups (s1, a): min 0.001, (s2, a): 0.01; BH -> 0.002, 0.01; both selected.
    assert out["group_corrected_p_value"].to_list() == pytest.approx([0.002, 0.002, 0.01])
    assert out["hierarchical_corrected_p_value"].to_list() == pytest.approx([0.002, 0.04, 0.01])


def test_missing_p_values_are_counted_and_left_out():
    t = TABLE.with_columns(
        p_value=pl.Series([0.3, None, 0.001, 0.5, 0.2, 0.02, 0.03, 0.04, float("nan"), 0.6])
    )
    with pytest.warns(NaNExcludedWarning, match="2 of 10 rows have no 'p_value'"):
        out = hierarchical_fdr(t, by="Metadata_Compound")
    assert out["hierarchical_corrected_p_value"][1] is None
    assert out["hierarchical_corrected_p_value"][8] is None
    assert out["below_hierarchical_p"][1] is None
    # Compound a is BH-corrected over its two tested doses only.
    assert out["hierarchical_corrected_p_value"].to_list()[:3:2] == pytest.approx(
        false_discovery_control([0.3, 0.001]).tolist()
    )


def test_bad_input():
    with pytest.raises(MissingColumnsError, match="'Metadata_Drug'"):
        hierarchical_fdr(TABLE, by="Metadata_Drug")
    with pytest.raises(InvalidInputError, match=r"2 value\(s\) outside \[0, 1\] \(first at row 0"):
        hierarchical_fdr(
            TABLE.with_columns(
                p_value=pl.Series([2.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, -1.0])
            ),
            by="Metadata_Compound",
        )
    with pytest.raises(InvalidInputError, match="threshold"):
        hierarchical_fdr(TABLE, by="Metadata_Compound", threshold=0)
