"""read_assay_matrix: named assay and identifier columns, and the report of what it took."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest

from cellframe.activity.matrix import (
    IgnoredColumnsWarning,
    MatrixColumns,
    matrix_options,
    read_assay_matrix,
)
from cellframe.errors import InvalidInputError, MissingColumnsError

# A Tox21-challenge-style file: an ID column, a name column, SMILES, three assays.
CHALLENGE = """ID,Name,smiles,NR-AR,SR-MMP,SR-ARE
NCGC00261443-01,ethanol,CCO,0,1,
NCGC00261444-01,phenol,c1ccccc1O,1,,0
NCGC00261445-01,acetic acid,CC(=O)O,,0,1
"""


@pytest.fixture
def challenge(tmp_path):
    path = tmp_path / "challenge.csv"
    path.write_text(CHALLENGE)
    return path


def test_id_column_read_as_assay_is_refused_with_the_fix(challenge):
    # Today's default (every non-SMILES column is an assay) takes 'ID' as an assay.
    with pytest.raises(InvalidInputError) as info:
        read_assay_matrix(challenge)
    msg = str(info.value)
    assert str(challenge) in msg and "column 'ID'" in msg
    assert "3 of its 3 values" in msg and "'NCGC00261443-01' on line 2" in msg
    assert 'identifier_columns = ["ID"]' in msg and "MatrixColumns(identifiers=['ID'])" in msg


def test_identifier_columns_are_not_assays_and_are_reported(challenge, caplog):
    cols = MatrixColumns(compound="ID", identifiers=["Name"])
    with caplog.at_level(logging.INFO, logger="cellframe.activity.matrix"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing is ignored: no warning
            m = read_assay_matrix(challenge, columns=cols)
    assert m.compounds == ["NCGC00261443-01", "NCGC00261444-01", "NCGC00261445-01"]
    assert m.assays == ["NR-AR", "SR-MMP", "SR-ARE"]
    expected = np.array([[0, 1, np.nan], [1, np.nan, 0], [np.nan, 0, 1]], dtype=np.float32)
    np.testing.assert_array_equal(m.values, expected)
    r = m.reading
    assert (r.layout, r.n_compounds, r.n_assays, r.n_readouts) == ("wide", 3, 3, 6)
    assert r.compound_column == "ID" and r.smiles_column == "smiles"
    assert r.identifier_columns == ("Name",) and r.ignored == {}
    line = str(r)
    assert "3 compounds x 3 assays" in line and "6 readouts" in line
    assert "1 identifier column(s) ['Name']" in line and "0 column(s) ignored" in line
    assert any("3 compounds x 3 assays" in rec.getMessage() for rec in caplog.records)


def test_named_assays_ignore_the_rest_with_a_counted_warning(challenge):
    cols = MatrixColumns(compound="ID", assays=["SR-ARE", "NR-AR"])
    with pytest.warns(IgnoredColumnsWarning, match=r"2 column\(s\) not read: 'Name' .*'SR-MMP'"):
        m = read_assay_matrix(challenge, columns=cols)
    assert m.assays == ["SR-ARE", "NR-AR"]  # in the order named
    np.testing.assert_array_equal(m.values[:, 0], [np.nan, 0, 1])
    assert m.reading.ignored == {
        "Name": "not named in assay_columns",
        "SR-MMP": "not named in assay_columns",
    }


def test_plain_moleculenet_file_reads_as_before(tmp_path):
    # Control: a file without identifier columns needs no option and ignores nothing.
    path = tmp_path / "plain.csv"
    path.write_text("smiles,A,B\nCCO,1,0\nCCN,0,\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = read_assay_matrix(path)
    assert m.assays == ["A", "B"] and m.reading.compound_column == "smiles"
    assert m.reading.n_readouts == 3


def test_named_columns_must_exist_and_not_overlap(challenge):
    with pytest.raises(MissingColumnsError, match="'Nmae'"):
        read_assay_matrix(challenge, columns=MatrixColumns(compound="ID", identifiers=["Nmae"]))
    with pytest.raises(InvalidInputError, match=r"\['Name'\] are named twice"):
        MatrixColumns(assays=["Name"], identifiers=["Name"])
    with pytest.raises(InvalidInputError, match=r"give a list .* identifiers=\['ID'\]"):
        MatrixColumns(identifiers="ID")
    with pytest.raises(InvalidInputError, match="cannot also be an assay"):
        MatrixColumns(compound="ID", assays=["ID", "NR-AR"])


def test_matrix_options_from_toml_keys(challenge):
    opts = matrix_options({"compound_column": "ID", "identifier_columns": ["Name"]})
    m = read_assay_matrix(challenge, **opts)
    assert m.assays == ["NR-AR", "SR-MMP", "SR-ARE"] and m.compounds[0] == "NCGC00261443-01"
    with pytest.raises(InvalidInputError, match=r"unknown key\(s\) \['assay_colums'\]"):
        matrix_options({"assay_colums": ["A"]})
    with pytest.raises(InvalidInputError, match=r"identifier_columns = .ID.: give a list"):
        matrix_options({"identifier_columns": "ID"})
