"""Key normalization and feature typing, on hand-made cases."""

from __future__ import annotations

import math

import polars as pl
import pytest

from cellframe.columns import PLATE, SITE, WELL
from cellframe.errors import InvalidInputError, MissingColumnsError
from cellframe.io._normalize import (
    Issues,
    cast_features,
    normalize_keys,
    normalize_well,
    sanitize_name,
    well_expr,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("A1", "A01"),
        ("a01", "A01"),
        ("C6", "C06"),
        ("C - 3", "C03"),
        ("P24", "P24"),
        ("AF48", "AF48"),
        ("r01c01", "r01c01"),
    ],
)
def test_normalize_well(raw: str, expected: str) -> None:
    assert normalize_well(raw) == expected
    assert pl.DataFrame({"w": [raw]}).select(well_expr(pl.col("w")))["w"][0] == expected


def test_keys_from_barcode_row_col_and_text_site() -> None:
    df = pl.DataFrame(
        {
            "Metadata_Barcode": [110000106828.0],
            "Metadata_Row": [3],
            "Metadata_Col": [7],
            "Metadata_FieldID": ["f04"],
        }
    )
    out = normalize_keys(df, where="test")
    assert out.row(0, named=True) == {
        PLATE: "110000106828",
        WELL: "C07",
        SITE: 4,
        "Metadata_Row": 3,
        "Metadata_Col": 7,
    }
    assert out.schema[SITE] == pl.Int32


def test_missing_plate_and_well_errors_say_what_to_do() -> None:
    with pytest.raises(MissingColumnsError, match=r"file\.csv.*Metadata_Plate.*plate='NAME'"):
        normalize_keys(pl.DataFrame({"Metadata_Well": ["A1"]}), where="file.csv")
    with pytest.raises(MissingColumnsError, match=r"Metadata_Well.*well='A01'"):
        normalize_keys(pl.DataFrame({"x": [1]}), where="file.csv", plate="P")
    with pytest.raises(InvalidInputError, match="already has a well column"):
        normalize_keys(pl.DataFrame({"Metadata_Well": ["A1"]}), where="f", plate="P", well="B2")


def test_cast_features_counts_nonfinite_and_keeps_rows() -> None:
    df = pl.DataFrame({"a": [1.0, math.nan, math.inf], "b": ["2", " ", "-inf"], "c": [1, 2, 3]})
    issues = Issues()
    out = cast_features(df, ["a", "b", "c"], where="t.csv", issues=issues)
    assert out.schema == pl.Schema({"a": pl.Float32, "b": pl.Float32, "c": pl.Float32})
    assert out["a"].to_list() == [1.0, None, None]
    assert out["b"].to_list() == [2.0, None, None]
    assert issues.nan == {("t.csv", "a"): 1}
    assert issues.inf == {("t.csv", "a"): 1, ("t.csv", "b"): 1}
    assert issues.empty == {("t.csv", "b"): 1}  # the blank " "
    summary = issues.summary()
    assert "1 NaN and 2 infinite value(s) in 2 feature column(s)" in summary[-2]
    assert "1 empty field(s) in 1 feature column(s)" in summary[-1]


def test_cast_features_rejects_text() -> None:
    df = pl.DataFrame({"a": ["1", "two"]})
    with pytest.raises(
        InvalidInputError, match=r"t\.csv: column 'a' holds non-numeric values \(e\.g\. 'two'"
    ):
        cast_features(df, ["a"], where="t.csv", issues=None)


def test_sanitize_name() -> None:
    assert sanitize_name("Primary Target Intensity-Bckg wv1") == "Primary_Target_Intensity_Bckg_wv1"
