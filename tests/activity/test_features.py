"""Aligning profile tables with the assay matrix (missing compounds, duplicates)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from cellframe.activity.columns import COMPOUND
from cellframe.activity.features import align_profiles
from cellframe.activity.matrix import AssayMatrix
from cellframe.errors import InvalidInputError, MissingColumnsError

M = AssayMatrix(["x", "y", "z"], ["a"], np.array([[1], [0], [np.nan]], dtype=np.float32))


def test_align_orders_like_matrix():
    profiles = pl.DataFrame(
        {COMPOUND: ["z", "x", "y"], "f": [3.0, 1.0, 2.0], "Metadata_Plate": ["p"] * 3}
    )
    out = align_profiles(M, profiles)
    np.testing.assert_array_equal(out.features[:, 0], [1.0, 2.0, 3.0])
    assert out.feature_names == ["f"] and out.n_missing == 0


def test_profile_table_missing_compounds():
    profiles = pl.DataFrame({COMPOUND: ["z", "x"], "f": [3.0, 1.0]})
    with pytest.warns(
        UserWarning, match=r"1 of 3 compounds .* no row in the MO table \(e.g. \['y'\]\)"
    ):
        out = align_profiles(M, profiles, name="MO")
    assert out.matrix.compounds == ["x", "z"] and out.n_missing == 1
    np.testing.assert_array_equal(out.features[:, 0], [1.0, 3.0])
    with pytest.raises(InvalidInputError, match="on_missing='drop'"):
        align_profiles(M, profiles, on_missing="error")


def test_bad_profile_tables():
    with pytest.raises(InvalidInputError, match="aggregate replicate wells"):
        align_profiles(M, pl.DataFrame({COMPOUND: ["x", "x"], "f": [1.0, 2.0]}))
    with pytest.raises(MissingColumnsError, match=COMPOUND):
        align_profiles(M, pl.DataFrame({"id": ["x"], "f": [1.0]}))
    with pytest.raises(InvalidInputError, match="NaN"):
        align_profiles(M, pl.DataFrame({COMPOUND: ["x", "y", "z"], "f": [1.0, np.nan, 2.0]}))
