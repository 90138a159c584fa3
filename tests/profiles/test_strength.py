"""Strong treatments (Algorithm 1) on hand-computed cases."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from cellframe.columns import CONTROL, PLATE, TREATMENT
from cellframe.errors import InvalidInputError
from cellframe.profiles import NoControlsError, strong_treatments, treatment_strength
from cellframe.profiles.strength import DISTANCE, ZSCORE

# Plate P1: controls at (0,0), (2,0), (0,2), (4,4): median (1, 1).
# Control distances: sqrt2, sqrt2, sqrt2, 3 sqrt2 -> mean 1.5 sqrt2, std sqrt2 * sqrt(0.75).
# Treatment a at (4, 5): distance 5; b at (1, 2): distance 1.
P1 = {
    PLATE: ["P1"] * 6,
    TREATMENT: ["dmso"] * 4 + ["a", "b"],
    CONTROL: ["negcon"] * 4 + ["", ""],
    "f1": [0.0, 2.0, 0.0, 4.0, 4.0, 1.0],
    "f2": [0.0, 0.0, 2.0, 4.0, 5.0, 2.0],
}
P2 = {
    PLATE: ["P2"] * 4,
    TREATMENT: ["dmso", "dmso", "a", "b"],
    CONTROL: ["negcon", "negcon", "", ""],
    "f1": [1.0, 3.0, 2.0, 12.0],
    "f2": [0.0, 0.0, 0.0, 0.0],
}


def test_hand_computed_two_plates():
    result = treatment_strength(pl.DataFrame(P1))
    w = result.wells
    s2 = np.sqrt(2.0)
    # P1: MCP = (1, 1); ECT = [s2, s2, s2, 3 s2]; mean 1.5 s2, std (ddof 0) = s2 * sqrt(0.75)
    ect_mean, ect_sd = 1.5 * s2, s2 * np.sqrt(0.75)
    d_a, d_b = np.hypot(3, 4), np.hypot(0, 1)
    z1 = (np.array([s2, s2, s2, 3 * s2, d_a, d_b]) - ect_mean) / ect_sd
    np.testing.assert_allclose(
        w.filter(pl.col(PLATE) == "P1")[DISTANCE].to_numpy(), [s2, s2, s2, 3 * s2, d_a, d_b]
    )
    np.testing.assert_allclose(w.filter(pl.col(PLATE) == "P1")[ZSCORE].to_numpy(), z1)
    assert result.treatments.columns[:4] == [TREATMENT, "strength", "n_wells", "n_plates"]
    assert result.treatments["strength"].to_list() == pytest.approx([z1[4], z1[5]])
    # ddof=1: the sample std of the control distances.
    z_ddof1 = treatment_strength(pl.DataFrame(P1), ddof=1).wells[ZSCORE].to_numpy()
    sd1 = np.std([s2, s2, s2, 3 * s2], ddof=1)
    np.testing.assert_allclose(z_ddof1[4], (d_a - ect_mean) / sd1)


def test_strength_sums_over_plates():
    p2 = dict(P2)
    p2 = {
        **p2,
        PLATE: ["P2"] * 5,
        TREATMENT: ["dmso", "dmso", "dmso", "a", "b"],
        CONTROL: ["negcon"] * 3 + ["", ""],
        "f1": [1.0, 3.0, 2.0, 2.0, 12.0],
        "f2": [0.0] * 5,
    }
    df = pl.concat([pl.DataFrame(P1), pl.DataFrame(p2)])
    result = treatment_strength(df)
    s2 = np.sqrt(2.0)
    z_p1 = {
        "a": (5.0 - 1.5 * s2) / (s2 * np.sqrt(0.75)),
        "b": (1.0 - 1.5 * s2) / (s2 * np.sqrt(0.75)),
    }
    # P2: MCP = (2, 0); ECT = [1, 1, 0]: mean 2/3, std sqrt(2/9); EDT a = 0, b = 10.
    m, sd = 2 / 3, np.sqrt(2 / 9)
    z_p2 = {"a": (0 - m) / sd, "b": (10 - m) / sd}
    t = result.treatments
    for trt in ("a", "b"):
        row = t.filter(pl.col(TREATMENT) == trt)
        assert row["strength"][0] == pytest.approx(z_p1[trt] + z_p2[trt])
        assert row["n_wells"][0] == 2 and row["n_plates"][0] == 2
    assert t[TREATMENT].to_list() == ["b", "a"] and t["rank"].to_list() == [1, 2]
    assert strong_treatments(df, k=1)[TREATMENT].to_list() == ["b"]
    assert result.top(1) == ["b"]


def test_bad_input():
    no_ctrl = pl.DataFrame({**P2, CONTROL: ["", "", "", ""]})
    with pytest.raises(NoControlsError, match="Metadata_Plate='P2' has no control wells"):
        treatment_strength(pl.concat([pl.DataFrame(P1), no_ctrl]))
    one = pl.DataFrame({**P2, CONTROL: ["negcon", "", "", ""]})
    with pytest.raises(InvalidInputError, match="1 control well"):
        treatment_strength(one)
    with pytest.raises(InvalidInputError, match="equally far"):
        treatment_strength(pl.DataFrame(P2))  # two controls at distance 1 each
    with pytest.raises(InvalidInputError, match="needs negative controls"):
        treatment_strength(pl.DataFrame(P1), controls="all")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_feature_never_heads_the_top_k(bad):
    """A NaN/inf distance would sort first in a descending top-k: it is refused instead."""
    f1 = [0.0, 2.0, 0.0, 4.0, bad, 1.0]  # treatment a's well is missing
    with pytest.raises(InvalidInputError, match=r"1 feature\(s\) .* missing or infinite .*'f1'"):
        strong_treatments(pl.DataFrame({**P1, "f1": f1}), k=1)
    # Control: the same plate with finite values ranks a (distance 5) above b (distance 1).
    assert strong_treatments(pl.DataFrame(P1), k=1)[TREATMENT].to_list() == ["a"]
