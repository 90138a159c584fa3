"""Assay matrix ingest: wide, long, MatrixMarket; duplicates, empty assays, bad readouts."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import scipy.io
import scipy.sparse
from polars.testing import assert_frame_equal

from cellframe.activity.columns import ASSAY, COMPOUND, READOUT
from cellframe.activity.matrix import (
    AssayMatrix,
    MatrixMarketNames,
    ReadoutWarning,
    assay_matrix_from_long,
    assay_matrix_from_wide,
    read_assay_matrix,
)
from cellframe.errors import EmptyInputError, InvalidInputError, MissingColumnsError

NAN = np.nan
EXPECTED = np.array([[1, 0, NAN], [NAN, 0, 0], [0, 1, 1]], dtype=np.float32)
WIDE_CSV = "smiles,a1,a2,a3\nCCO,1,0,\nCCN,,0,0\nCCC,0,1,1\n"


def test_wide_csv(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text(WIDE_CSV)
    m = read_assay_matrix(path)
    assert m.compounds == ["CCO", "CCN", "CCC"]
    assert m.smiles == ["CCO", "CCN", "CCC"]
    assert m.assays == ["a1", "a2", "a3"]
    np.testing.assert_array_equal(m.values, EXPECTED)
    assert int(m.observed.sum()) == 7 and int(m.hits.sum()) == 3


def test_long_equals_wide(tmp_path):
    wide = read_assay_matrix(_write(tmp_path / "w.csv", WIDE_CSV))
    long = wide.to_long()
    assert long.height == 7
    assert long.schema[READOUT] == pl.Int8
    back = assay_matrix_from_long(long, smiles_column=None)
    # Same readouts, compound/assay order from first appearance.
    np.testing.assert_array_equal(back.values, EXPECTED)
    long.write_csv(tmp_path / "long.csv")
    from_file = read_assay_matrix(tmp_path / "long.csv")
    np.testing.assert_array_equal(from_file.values, EXPECTED)
    assert_frame_equal(from_file.to_long(), long)


def test_wide_round_trip():
    m = AssayMatrix(["x", "y", "z"], ["a1", "a2", "a3"], EXPECTED, smiles=["CCO", "CCN", "CCC"])
    wide = m.to_wide()
    assert wide["a1"].to_list() == [1, None, 0]
    back = assay_matrix_from_wide(wide, compound_column=COMPOUND, smiles_column="Metadata_SMILES")
    np.testing.assert_array_equal(back.values, EXPECTED)
    assert back.compounds == ["x", "y", "z"]


def test_matrix_market_keeps_explicit_zeros(tmp_path):
    rows, cols = np.nonzero(~np.isnan(EXPECTED))
    coo = scipy.sparse.coo_matrix((EXPECTED[rows, cols], (rows, cols)), shape=EXPECTED.shape)
    scipy.io.mmwrite(tmp_path / "m.mtx", coo)
    (tmp_path / "assays.txt").write_text("a1\na2\na3\n")
    names = MatrixMarketNames(assays=tmp_path / "assays.txt", compounds=["x", "y", "z"])
    m = read_assay_matrix(tmp_path / "m.mtx", names=names)
    np.testing.assert_array_equal(m.values, EXPECTED)
    assert m.assays == ["a1", "a2", "a3"] and m.compounds == ["x", "y", "z"]
    with pytest.raises(InvalidInputError, match="2 assay names"):
        read_assay_matrix(tmp_path / "m.mtx", names=MatrixMarketNames(assays=["a", "b"]))


def test_duplicate_compounds_conflicting_readouts():
    df = pl.DataFrame(
        {
            "smiles": ["CCO", "CCO", "CCN", "CCN"],
            "a1": [1, 0, 1, 1],  # CCO conflicts, CCN agrees
            "a2": [0, None, None, 1],  # no conflict: one readout each
        }
    )
    with pytest.warns(UserWarning, match=r"1 \(compound, assay\) pair\(s\) have conflicting"):
        m = assay_matrix_from_wide(df)
    assert m.compounds == ["CCO", "CCN"]
    np.testing.assert_array_equal(m.values, np.array([[NAN, 0], [1, 1]], dtype=np.float32))
    with pytest.warns(UserWarning, match="kept as hits"):
        hit = assay_matrix_from_wide(df, on_conflict="hit")
    assert hit.values[0, 0] == 1
    with pytest.raises(InvalidInputError, match=r"conflicting readouts.*on_conflict"):
        assay_matrix_from_wide(df, on_conflict="error")


def test_assay_without_readouts_warns_with_count():
    df = pl.DataFrame({"smiles": ["CCO", "CCN"], "a1": [1, 0], "empty": [None, None]})
    with pytest.warns(ReadoutWarning, match=r"1 assay\(s\) .* no observed readouts \('empty'\)"):
        m = assay_matrix_from_wide(df)
    assert np.isnan(m.values[:, 1]).all()


def test_bad_readouts_and_columns(tmp_path):
    with pytest.raises(
        InvalidInputError, match=r"column 'a' .* 1 of its 1 values .* e\.g\. 2 on row 1"
    ):
        assay_matrix_from_wide(pl.DataFrame({"smiles": ["C"], "a": [2]}))
    with pytest.raises(
        InvalidInputError, match=r"column 'a' .* 1 of its 2 values .* e\.g\. 'yes' on row 1"
    ):
        assay_matrix_from_wide(pl.DataFrame({"smiles": ["C", "N"], "a": ["yes", "0"]}))
    with pytest.raises(MissingColumnsError, match="'smiles'"):
        assay_matrix_from_wide(pl.DataFrame({"id": ["C"], "a": [1]}))
    with pytest.raises(EmptyInputError):
        assay_matrix_from_long(
            pl.DataFrame(
                {COMPOUND: ["x"], ASSAY: ["a"], READOUT: [None]},
                schema_overrides={READOUT: pl.Int8},
            )
        )
    with pytest.raises(FileNotFoundError):
        read_assay_matrix(tmp_path / "absent.csv")
    with pytest.raises(InvalidInputError, match="unique"):
        AssayMatrix(["x", "x"], ["a"], np.zeros((2, 1)))


def test_tox21_statistics(moleculenet):
    # Numbers from the data folder's PROVENANCE.txt (pandas/RDKit, computed independently).
    m = read_assay_matrix(moleculenet / "tox21.csv")
    assert m.shape == (7831, 12)
    assert int(m.observed.sum()) == 77946
    assert int(m.hits.sum()) == 5862


def _write(path, text):
    path.write_text(text)
    return path
