"""SMILES input with one defect each, built from MoleculeNet's Tox21 matrix.

Tox21 holds 8 SMILES RDKit cannot parse; the other cases add one defect to its
first rows: a molecule written two ways with conflicting readouts, an empty
SMILES, a compound with two structures.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cellframe.activity.chem import (
    InvalidSmilesWarning,
    SameMoleculeWarning,
    canonical_smiles,
    parse_smiles,
)
from cellframe.activity.matrix import (
    MatrixColumns,
    ReadoutWarning,
    assay_matrix_from_long,
    read_assay_matrix,
)
from cellframe.errors import InvalidInputError


@pytest.fixture(scope="module")
def tox21(moleculenet: Path) -> Path:
    return moleculenet / "tox21.csv"


@pytest.fixture(scope="module")
def head(tox21: Path) -> list[str]:
    """The header and the first 40 rows of Tox21 (all parseable)."""
    return tox21.read_text().splitlines()[:41]


def _write(tmp_path: Path, lines: list[str], name: str = "m.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def _respell(smiles: str) -> str:
    """The same molecule written from another atom: a different string, one canonical form."""
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    other = Chem.MolToSmiles(mol, rootedAtAtom=mol.GetNumAtoms() - 1, canonical=False)
    assert other != smiles and canonical_smiles([other])[0] == canonical_smiles([smiles])[0]
    return other


def test_tox21_bad_smiles_are_reported_per_line_with_rdkits_reason(tox21: Path) -> None:
    from rdkit import Chem, RDLogger

    lines = tox21.read_text().splitlines()
    RDLogger.DisableLog("rdApp.*")
    try:
        expected = [
            i + 1
            for i, ln in enumerate(lines[1:], start=1)
            if Chem.MolFromSmiles(ln.split(",")[0]) is None
        ]
    finally:
        RDLogger.EnableLog("rdApp.*")
    assert len(expected) == 8  # the data README's count
    with pytest.warns(InvalidSmilesWarning) as record:
        m = read_assay_matrix(tox21)
    msg = next(str(w.message) for w in record if "cannot be parsed" in str(w.message))
    assert msg.startswith(f"{tox21}: 8 of 7831 SMILES cannot be parsed by RDKit")
    for line in expected:
        assert f"line {line} " in msg
    assert "Explicit valence" in msg  # RDKit's own words
    # They are kept for the cleaning step, which drops them (and names the compounds).
    assert m.shape == (7831, 12)
    with pytest.warns(InvalidSmilesWarning, match=r"8 of 7831 SMILES in the assay matrix"):
        from cellframe.activity.clean import clean_assay_matrix

        cleaned = clean_assay_matrix(
            m, pains=False, iou_threshold=None, frequent_hitter_fraction=None
        )
    assert cleaned.report.filter(pl.col("step") == "invalid SMILES")["compounds_removed"][0] == 8


def test_one_molecule_written_two_ways_meets_the_conflict_check(
    head: list[str], tmp_path: Path
) -> None:
    smiles, *values = head[1].split(",")
    # Same molecule, another spelling, the first assay's readout flipped (a conflict).
    values = list(values)
    first = values[0]
    values[0] = "0" if first == "1" else "1"
    path = _write(tmp_path, [*head, ",".join([_respell(smiles), *values])])
    with pytest.warns(
        SameMoleculeWarning, match=r"1 row\(s\) write a molecule.*line 42 .* = line 2"
    ) as rec:
        m = read_assay_matrix(path)
    conflict = [str(w.message) for w in rec if "conflicting readouts" in str(w.message)]
    assert len(conflict) == 1 and "1 (compound, assay) pair(s)" in conflict[0]
    assert m.shape == (40, 12) and m.compounds[0] == smiles
    assert np.isnan(m.values[0, 0])  # on_conflict="missing" (the default)
    with pytest.warns(ReadoutWarning, match="kept as hits"):
        hit = read_assay_matrix(path, on_conflict="hit")
    assert hit.values[0, 0] == 1.0
    with pytest.raises(InvalidInputError, match=r"conflicting readouts.*on_conflict"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SameMoleculeWarning)
            read_assay_matrix(path, on_conflict="error")
    # Control: without canonicalization the two spellings are two compounds.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = read_assay_matrix(path, canonicalize=False)
    assert raw.shape == (41, 12)


def test_respelled_duplicate_with_equal_readouts_merges_quietly_into_one(
    head: list[str], tmp_path: Path
) -> None:
    """Valid but unusual: the duplicate agrees, so no readout is lost or changed."""
    smiles, *values = head[3].split(",")
    path = _write(tmp_path, [*head, ",".join([_respell(smiles), *values])])
    with pytest.warns(SameMoleculeWarning):
        m = read_assay_matrix(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clean = read_assay_matrix(_write(tmp_path, head, "clean.csv"))
    assert m.compounds == clean.compounds
    np.testing.assert_array_equal(m.values, clean.values)


def test_empty_smiles_is_skipped_with_its_line(head: list[str], tmp_path: Path) -> None:
    blank = "," + head[5].split(",", 1)[1]
    path = _write(tmp_path, [*head[:5], blank, *head[5:]])
    with pytest.warns(InvalidSmilesWarning, match=r"1 row\(s\) have an empty SMILES.*\(line 6\)"):
        m = read_assay_matrix(path)
    assert m.shape == (40, 12) and None not in m.compounds


def test_empty_smiles_with_an_id_column_is_kept_and_named(head: list[str], tmp_path: Path) -> None:
    rows = [f"id,{head[0]}"] + [f"c{i},{ln}" for i, ln in enumerate(head[1:])]
    rows[3] = "c2," + "," + rows[3].split(",", 2)[2]
    path = _write(tmp_path, rows)
    with pytest.warns(InvalidSmilesWarning, match=r"line 4: empty SMILES"):
        m = read_assay_matrix(path, columns=MatrixColumns(compound="id"))
    assert m.shape == (40, 12) and m.smiles[2] is None and m.compounds[2] == "c2"
    # One molecule under two ids: counted, and kept apart as the ids say.
    rows.append("c99," + _respell(head[1].split(",")[0]) + "," + head[1].split(",", 1)[1])
    with pytest.warns(
        SameMoleculeWarning, match=r"1 molecule\(s\).*'c0' \(line 2\) = 'c99' \(line 42\)"
    ):
        two = read_assay_matrix(
            _write(tmp_path, rows, "ids.csv"), columns=MatrixColumns(compound="id")
        )
    assert two.shape == (41, 12)
    # The fingerprint/cleaning code names the compound instead of crashing.
    with pytest.warns(InvalidSmilesWarning, match=r"compound 'c2': empty SMILES"):
        mols = parse_smiles(m.smiles, labels=[f"compound {c!r}" for c in m.compounds])
    assert mols[2] is None and sum(x is None for x in mols) == 1


def test_nan_and_none_smiles_never_raise_type_error() -> None:
    with pytest.warns(
        InvalidSmilesWarning, match=r"2 of 3 SMILES.*entry 2: empty SMILES; entry 3: empty"
    ):
        mols = parse_smiles(["CCO", None, float("nan")])  # type: ignore[list-item]
    assert [m is None for m in mols] == [False, True, True]


def test_long_table_two_spellings_are_one_structure_two_structures_are_an_error() -> None:
    frame = pl.DataFrame(
        {
            "Metadata_Compound": ["a", "a", "b", "b"],
            "Metadata_SMILES": ["CCO", "OCC", "CCN", "CCC"],
            "Metadata_Assay": ["x", "y", "x", "y"],
            "readout": [1, 0, 0, 1],
        }
    )
    with pytest.raises(
        InvalidInputError, match=r"compound 'b' has 2 different structures \('CCN', 'CCC'\)"
    ):
        assay_matrix_from_long(frame)
    m = assay_matrix_from_long(frame.filter(pl.col("Metadata_Compound") == "a"))
    assert m.compounds == ["a"] and m.smiles == ["CCO"]


def test_cli_activity_with_an_empty_and_an_invalid_smiles(tox21: Path, tmp_path: Path) -> None:
    """`cellframe activity` runs to the end: the empty SMILES is skipped, the invalid one cleaned."""
    from cellframe.cli import main
    from cellframe.store import Store

    lines = tox21.read_text().splitlines()[:301]
    lines[5] = "," + lines[5].split(",", 1)[1]
    lines[9] = "C1CC," + lines[9].split(",", 1)[1]
    _write(tmp_path, lines)
    config = tmp_path / "e.toml"
    config.write_text(
        '[data]\nmatrix = "m.csv"\n[clean]\nenabled = false\n[split]\nmethod = "random"\n'
        'n_folds = 2\n[modalities]\nCS = { kind = "rf" }\n[model]\nn_estimators = 5\n'
    )
    store = tmp_path / "s.duckdb"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["activity", str(config), "--store", str(store), "-q"])
    assert rc == 0
    with Store(store, read_only=True) as s:
        folds = s.read("activity_folds")
    assert folds.height == 298  # 300 rows - the empty - the unparseable
    assert "C1CC" not in folds["Metadata_Compound"].to_list()
