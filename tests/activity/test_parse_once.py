"""Each SMILES is parsed once: canonicalization per distinct SMILES, molecules reused downstream.

The results must be those of parsing every entry on its own (the former
implementation): canonical SMILES, RDKit's reasons, warnings, merged rows,
conflicts, cleaning and molecules.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from rdkit import Chem, RDLogger

from cellframe.activity.chem import (
    InvalidSmilesWarning,
    canonical_molecules,
    canonical_smiles,
    morgan_fingerprints,
    parse_smiles,
    smiles_reasons,
)
from cellframe.activity.clean import SkippedStepWarning, clean_assay_matrix
from cellframe.activity.graph import featurize_molecules
from cellframe.activity.holdout import UnparsedCompoundsWarning
from cellframe.activity.matrix import AssayMatrix, read_assay_matrix, read_assay_subset
from cellframe.demo import demo_data_dir
from cellframe.errors import InvalidInputError, MissingColumnsError, UnknownFormatError

TOX21 = demo_data_dir() / "moleculenet" / "tox21.csv.gz"
BAD_SMILES = "NC(=O)NC1N=C(O[AlH3](O)O)NC1=O"  # Tox21 line 1324; RDKit rejects the valence


def _one_by_one(smiles: list) -> list[str | None]:
    """Reference: every entry parsed on its own, as before."""
    RDLogger.DisableLog("rdApp.*")
    try:
        out = []
        for s in smiles:
            mol = Chem.MolFromSmiles(s) if isinstance(s, str) and s.strip() else None
            out.append(None if mol is None else Chem.MolToSmiles(mol))
        return out
    finally:
        RDLogger.EnableLog("rdApp.*")


def _recorded(fn, *args, **kwargs):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        result = fn(*args, **kwargs)
    return result, [(type(w.message), str(w.message)) for w in record]


def test_canonical_smiles_match_parsing_each_entry() -> None:
    raw = pl.read_csv(TOX21, infer_schema_length=0)["smiles"].to_list()
    # unusual but valid controls: repeats, another spelling, whitespace, empties, a bad one
    extra = ["OCC", "C(O)C", "OCC", "  ", None, "", "C1CC", "C1CC", raw[0]]
    smiles = raw + extra
    canonical, reasons, binaries = canonical_molecules(smiles)
    assert canonical == _one_by_one(smiles)
    assert canonical[-9:-6] == ["CCO", "CCO", "CCO"]
    assert (canonical, reasons) == canonical_smiles(smiles)
    assert reasons == smiles_reasons(smiles)[1]
    assert reasons[-6:-3] == ["empty SMILES"] * 3
    assert reasons[-3] == reasons[-2] == "SMILES Parse Error: unclosed ring for input: 'C1CC'"
    assert sum(r is not None for r in reasons) == 8 + 5  # 8 in Tox21 (test_bad_smiles)
    assert [b is None for b in binaries] == [c is None for c in canonical]
    # the bytes are the parsed molecule, stereo perception included
    for s, b in zip(smiles[:300], binaries[:300], strict=True):
        if b is not None:
            assert Chem.MolToMolBlock(Chem.Mol(b)) == Chem.MolToMolBlock(Chem.MolFromSmiles(s))


def test_reading_keeps_the_parsed_molecules() -> None:
    matrix, _ = _recorded(read_assay_matrix, TOX21)
    assert matrix.binaries is not None and len(matrix.binaries) == 7831
    assert sum(b is None for b in matrix.binaries) == 8
    rebuilt, w_rebuilt = _recorded(parse_smiles, matrix.smiles, where="x", binaries=matrix.binaries)
    parsed, w_parsed = _recorded(parse_smiles, matrix.smiles, where="x")
    assert w_rebuilt == w_parsed and len(w_parsed) == 1
    assert w_parsed[0][0] is InvalidSmilesWarning and "8 of 7831 SMILES in x" in w_parsed[0][1]
    ok = [m for m in parsed if m is not None]
    ok_rebuilt = [m for m in rebuilt if m is not None]
    assert [m is None for m in parsed] == [m is None for m in rebuilt]
    assert np.array_equal(morgan_fingerprints(ok), morgan_fingerprints(ok_rebuilt))
    a, b = featurize_molecules(ok[:500]), featurize_molecules(ok_rebuilt[:500])
    assert np.array_equal(a.atom_features, b.atom_features)
    assert np.array_equal(a.edge_src, b.edge_src) and np.array_equal(a.edge_dst, b.edge_dst)
    # subsets keep them in step with the SMILES
    assert matrix.smiles.index(BAD_SMILES) == 1322  # file line 1324
    sub = matrix.subset(compounds=[5, 1322, 0])
    assert sub.smiles[1] == BAD_SMILES and sub.binaries[1] is None
    assert sub.binaries[0] == matrix.binaries[5]


def test_merged_rows_conflicts_and_reports_are_unchanged(tmp_path: Path) -> None:
    """Another spelling of a molecule, a conflict, bad and empty SMILES: same result with or
    without the kept molecules, and the molecules are those of the SMILES kept."""
    path = tmp_path / "m.csv"
    path.write_text(
        "smiles,a,b\n"
        "OCC,1,0\n"  # line 2
        "C(O)C,0,0\n"  # line 3: the molecule of line 2, conflicting in assay a
        "C1CC,1,\n"  # line 4: unparseable
        ",0,1\n"  # line 5: empty, skipped
        "c1ccccc1,0,1\n"  # line 6
        "OCC,,0\n"  # line 7: line 2 again
    )
    matrix, record = _recorded(read_assay_matrix, path)
    kinds = [k.__name__ for k, _ in record]
    assert kinds == [
        "InvalidSmilesWarning",
        "SameMoleculeWarning",
        "InvalidSmilesWarning",
        "ReadoutWarning",
        "ReadoutWarning",
    ]
    assert "line 4 'C1CC': SMILES Parse Error: unclosed ring" in record[0][1]
    assert "line 3 'C(O)C' = line 2 'OCC'" in record[1][1]
    assert "(line 5)" in record[2][1]
    assert "1 (compound, assay) pair(s) have conflicting readouts" in record[4][1]
    assert matrix.compounds == matrix.smiles == ["OCC", "C1CC", "c1ccccc1"]
    assert np.array_equal(
        matrix.values, np.array([[np.nan, 0], [1, np.nan], [0, 1]], np.float32), equal_nan=True
    )
    assert [None if b is None else Chem.MolToSmiles(Chem.Mol(b)) for b in matrix.binaries] == [
        "CCO",
        None,
        "c1ccccc1",
    ]
    # cleaning with the kept molecules = cleaning that parses the SMILES again
    fresh = dataclasses.replace(matrix, binaries=None)
    kept, w_kept = _recorded(clean_assay_matrix, matrix, frequent_hitter_fraction=None)
    again, w_again = _recorded(clean_assay_matrix, fresh, frequent_hitter_fraction=None)
    assert w_kept == w_again and "compound 'C1CC'" in w_kept[0][1]
    assert kept.report.equals(again.report) and kept.removed == again.removed
    assert kept.matrix.compounds == ["OCC", "c1ccccc1"]
    assert kept.matrix.binaries == [matrix.binaries[0], matrix.binaries[2]]


def test_long_table_keeps_molecules_of_the_first_spelling(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_text(
        "Metadata_Compound,smiles,Metadata_Assay,readout\n"
        "c1,OCC,a,1\nc1,C(O)C,b,0\nc2,C1CC,a,0\nc3,N,a,1\n"
    )
    matrix, record = _recorded(read_assay_matrix, path)
    assert matrix.compounds == ["c1", "c2", "c3"] and matrix.smiles == ["OCC", "C1CC", "N"]
    assert [None if b is None else Chem.MolToSmiles(Chem.Mol(b)) for b in matrix.binaries] == [
        "CCO",
        None,
        "N",
    ]
    assert [k.__name__ for k, _ in record] == ["InvalidSmilesWarning"]


def test_binaries_must_match_the_smiles() -> None:
    with pytest.raises(InvalidInputError, match="one binary per SMILES"):
        AssayMatrix(["a", "b"], ["x"], np.zeros((2, 1)), smiles=["C", "N"], binaries=[None])
    with pytest.raises(InvalidInputError, match="one binary per SMILES"):
        AssayMatrix(["a"], ["x"], np.zeros((1, 1)), binaries=[None])
    with pytest.raises(InvalidInputError, match=r"1 molecule binaries for 2 SMILES of f\.csv"):
        parse_smiles(["C", "N"], where="f.csv", binaries=[None])
    # an unparseable entry given no molecule is counted with RDKit's reason
    with pytest.warns(InvalidSmilesWarning, match=r"1 of 2 SMILES in f\.csv .*entry 2 'C1CC'"):
        mols = parse_smiles(
            ["CC", "C1CC"], where="f.csv", binaries=[Chem.MolFromSmiles("CC").ToBinary(), None]
        )
    assert Chem.MolToSmiles(mols[0]) == "CC" and mols[1] is None


def test_parse_smiles_warnings_name_the_source_and_count() -> None:
    with pytest.warns(InvalidSmilesWarning, match=r"^1 of 3 SMILES in plate\.csv cannot"):
        parse_smiles(["CC", "C1CC", "N"], where="plate.csv")
    with pytest.warns(InvalidSmilesWarning, match=r"1 of 2 SMILES in the SMILES given to morgan"):
        fp = morgan_fingerprints(["CC", "C1CC"], n_bits=64)
    assert fp[1].sum() == 0 and fp[0].sum() > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # valid SMILES: no warning at all
        parse_smiles(["CC", "c1ccccc1"], where="plate.csv")
    assert issubclass(UnparsedCompoundsWarning, InvalidSmilesWarning)
    assert not issubclass(InvalidSmilesWarning, UnparsedCompoundsWarning)
    no_smiles = AssayMatrix(["a", "b"], ["x", "y"], np.array([[1, 0], [0, 1]]))
    with pytest.warns(SkippedStepWarning, match="2 compounds has no SMILES: the PAINS step"):
        clean_assay_matrix(no_smiles, frequent_hitter_fraction=None)


def test_assay_subset_is_the_first_rows_and_named_assays(tmp_path: Path) -> None:
    with gzip.open(TOX21, "rt", newline="") as fh:
        rows = list(csv.reader(fh))
    header = rows[0]
    assays = ["SR-MMP", "NR-AhR"]  # not in file order: the order given is kept
    cols = [header.index(c) for c in ("smiles", *assays)]
    small = tmp_path / "small.csv"
    with small.open("w", newline="") as fh:
        csv.writer(fh).writerows([[r[i] for i in cols] for r in rows[:1401]])
    expected, w_expected = _recorded(read_assay_matrix, small)
    got, w_got = _recorded(read_assay_subset, TOX21, 1400, assays)
    assert got.compounds == expected.compounds and got.smiles == expected.smiles
    assert got.assays == assays == expected.assays
    assert np.array_equal(got.values, expected.values, equal_nan=True)
    assert got.binaries == expected.binaries
    assert [(k, m.replace(str(TOX21), "F")) for k, m in w_got] == [
        (k, m.replace(str(small), "F")) for k, m in w_expected
    ]
    assert len(w_got) == 1 and "line 1324" in w_got[0][1]  # the aluminium complex
    one = read_assay_subset(TOX21, 1, ["NR-AhR"])  # the smallest subset
    assert one.smiles == [rows[1][0]] and one.values.tolist() == [[1.0]]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_rows": 7832, "assays": ["NR-AhR"]}, InvalidInputError, "7831 data rows, fewer"),
        ({"n_rows": 0, "assays": ["NR-AhR"]}, InvalidInputError, "n_rows must be a positive"),
        ({"n_rows": 10, "assays": []}, InvalidInputError, "name at least one assay"),
        ({"n_rows": 10, "assays": ["NR-AhR", "NR-AhR"]}, InvalidInputError, "named twice"),
        ({"n_rows": 10, "assays": ["NR-Ahr"]}, MissingColumnsError, "'NR-Ahr'.*NR-AhR"),
    ],
)
def test_assay_subset_refuses_bad_requests(kwargs, error, match) -> None:
    with pytest.raises(error, match=match) as info:
        read_assay_subset(TOX21, **kwargs)
    assert "tox21.csv.gz" in str(info.value)


def test_assay_subset_refuses_other_formats(tmp_path: Path) -> None:
    path = tmp_path / "m.parquet"
    pl.DataFrame({"smiles": ["C"], "a": [1]}).write_parquet(path)
    with pytest.raises(UnknownFormatError, match=r"m\.parquet"):
        read_assay_subset(path, 1, ["a"])
    with pytest.raises(FileNotFoundError, match="no assay matrix"):
        read_assay_subset(tmp_path / "absent.csv", 1, ["a"])
