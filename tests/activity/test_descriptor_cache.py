"""The descriptor cache of a compound library (``rdkit_descriptors(..., cache=path)``)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from cellframe.activity import descriptor_cache as dc
from cellframe.activity import descriptors as d
from cellframe.activity.descriptors import descriptor_names, rdkit_descriptors
from cellframe.errors import CellframeError, DescriptorCacheError

#: Written as a user might: non-canonical atom orders, one compound twice in two
#: ways ("OCC" / "C(O)C"), a salt, a charged and an isotope-labelled molecule.
LIBRARY = [
    "OCC",
    "c1ccccc1O",
    "C(O)C",
    "OC(=O)c1ccccc1O",
    "[Na+].[Cl-]",
    "C[N+](C)(C)C",
    "[13CH3]C(=O)O",
    "CC(=O)Nc1ccc(O)cc1",
]


def _canonical_reference(smiles: list[str]) -> np.ndarray:
    """RDKit's CalcMolDescriptors of each compound read from its canonical SMILES."""
    from rdkit import Chem
    from rdkit.Chem import Descriptors

    names = descriptor_names()
    out = np.full((len(smiles), len(names)), np.nan)
    with d._one_blas_thread():
        for i, s in enumerate(smiles):
            mol = Chem.MolFromSmiles(Chem.MolToSmiles(Chem.MolFromSmiles(s)))
            values = Descriptors.CalcMolDescriptors(mol)
            out[i] = [np.nan if values[n] is None else values[n] for n in names]
    out[~np.isfinite(out)] = np.nan
    return out


class _Spy:
    """Counts the molecules ``rdkit_descriptors`` computes (not read from the cache)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.computed: list[int] = []
        real = d._compute

        def compute(mols, chosen, workers, progress):
            self.computed.append(len(mols))
            return real(mols, chosen, workers, progress)

        monkeypatch.setattr(d, "_compute", compute)


def _rows(path) -> list[str]:
    import pyarrow.parquet as pq

    return pq.read_table(path).column(dc.SMILES_COLUMN).to_pylist()


def test_cache_hit_equals_fresh_computation_exactly(tmp_path, monkeypatch):
    path = tmp_path / "library.parquet"
    spy = _Spy(monkeypatch)
    first = rdkit_descriptors(LIBRARY, cache=path)
    assert spy.computed == [7]  # 8 entries, 7 distinct compounds ("OCC" == "C(O)C")
    ref = _canonical_reference(LIBRARY)
    np.testing.assert_array_equal(first, ref)  # NaN in the same places, bit for bit else
    np.testing.assert_array_equal(first[0], first[2])  # one compound, one row of values
    before = path.read_bytes()
    again = rdkit_descriptors(LIBRARY, cache=path)
    assert spy.computed == [7]  # nothing computed: all read
    np.testing.assert_array_equal(again, first)
    assert path.read_bytes() == before  # a full hit leaves the file as it was
    assert _rows(path) == ["CCO", "Oc1ccccc1", "O=C(O)c1ccccc1O", "[Cl-].[Na+]",
                           "C[N+](C)(C)C", "[13CH3]C(=O)O", "CC(=O)Nc1ccc(O)cc1"]  # fmt: skip
    # Chosen names read the same columns; canonical-order input gives the same row
    # without a cache (the cache's values are those of the canonical molecule).
    names = ["MolWt", "qed", "Ipc", "MaxEStateIndex"]
    sub = rdkit_descriptors(["CCO", "Oc1ccccc1"], names=names, cache=path)
    cols = [descriptor_names().index(n) for n in names]
    np.testing.assert_array_equal(sub, first[[0, 1]][:, cols])
    np.testing.assert_array_equal(sub, rdkit_descriptors(["CCO", "Oc1ccccc1"], names=names))
    assert sub[0, 0] == pytest.approx(46.069, abs=1e-3)  # ethanol's molecular weight


def test_partially_cached_library_computes_only_new_compounds(tmp_path, monkeypatch):
    path = tmp_path / "library.parquet"
    rdkit_descriptors(LIBRARY[:3], cache=path)
    assert _rows(path) == ["CCO", "Oc1ccccc1"]
    spy = _Spy(monkeypatch)
    extended = ["c1ccccc1O", "CCC(=O)O", "C1CC", None, *LIBRARY, "CCC(=O)O"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "C1CC" and None: counted by parse_smiles
        got = rdkit_descriptors(extended, cache=path, workers=1)
    assert spy.computed == [6]  # propanoic acid and LIBRARY's 5 compounds not seen before
    assert len(_rows(path)) == 8 and _rows(path)[:2] == ["CCO", "Oc1ccccc1"]
    assert np.isnan(got[[2, 3]]).all()  # unparseable / None: NaN rows, not cached
    ok = [i for i in range(len(extended)) if i not in (2, 3)]
    np.testing.assert_array_equal(got[ok], _canonical_reference([extended[i] for i in ok]))


def test_version_mismatch_recomputes_with_a_warning(tmp_path, monkeypatch):
    path = tmp_path / "library.parquet"
    monkeypatch.setattr(dc, "DESCRIPTOR_SET_VERSION", "0")
    rdkit_descriptors(["CCO", "CCN"], cache=path)
    # Plant a wrong value in the old-version file: it must never be returned.
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    j = table.column_names.index("MolWt")
    table = table.set_column(j, "MolWt", pa.array([999.0, 999.0]))
    pq.write_table(table, path)
    monkeypatch.setattr(dc, "DESCRIPTOR_SET_VERSION", "1")
    spy = _Spy(monkeypatch)
    with pytest.warns(dc.DescriptorCacheVersionWarning, match=r"set 0 \(2 compounds\)"):
        got = rdkit_descriptors(["CCO", "CCC"], names=["MolWt"], cache=path)
    assert spy.computed == [2]  # both recomputed, the stale CCO included
    np.testing.assert_allclose(got.ravel(), [46.069, 44.097], atol=1e-3)
    meta = pq.read_table(path).schema.metadata
    assert meta[b"cellframe.descriptor_set_version"] == b"1"
    assert _rows(path) == ["CCO", "CCC"]  # replaced: the stale rows are gone
    # An RDKit version mismatch is treated alike.
    monkeypatch.setattr(dc, "cache_versions", lambda: {"rdkit": "0.0", "descriptor_set": "1"})
    with pytest.warns(dc.DescriptorCacheVersionWarning, match="RDKit 0.0"):
        rdkit_descriptors(["CCO"], names=["MolWt"], cache=path)


def test_foreign_or_broken_cache_file_is_a_named_error_and_left_untouched(tmp_path):
    import polars as pl

    not_parquet = tmp_path / "notes.parquet"
    not_parquet.write_text("compound,MolWt\nCCO,46\n")
    foreign = tmp_path / "foreign.parquet"
    pl.DataFrame({"compound": ["CCO"], "MolWt": [46.0]}).write_parquet(foreign)
    twice = tmp_path / "twice.parquet"
    rdkit_descriptors(["CCO", "CCN"], cache=twice)
    import pyarrow.parquet as pq

    table = pq.read_table(twice)
    dup = table.set_column(0, "smiles", __import__("pyarrow").array(["CCO", "CCO"]))
    pq.write_table(dup.replace_schema_metadata(table.schema.metadata), twice)
    cases = [
        (not_parquet, "not a readable Parquet file"),
        (foreign, "not a cellframe descriptor cache"),
        (twice, "'CCO' appears more than once"),
    ]
    for path, defect in cases:
        before = path.read_bytes()
        with pytest.raises(DescriptorCacheError, match=defect) as err:
            rdkit_descriptors(["CCO", "c1ccccc1"], cache=path)
        assert isinstance(err.value, CellframeError) and str(path) in str(err.value)
        assert "delete it or name another cache file" in str(err.value)
        assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "foreign.parquet",
        "notes.parquet",
        "twice.parquet",
    ]  # fmt: skip  (no temporary file left behind)


def test_explicit_hydrogens_are_part_of_the_key(tmp_path):
    """An AddHs molecule is another graph (other topological indices): its own entry."""
    from rdkit import Chem

    path = tmp_path / "library.parquet"
    plain = Chem.MolFromSmiles("CCO")
    explicit = Chem.AddHs(plain)
    got = rdkit_descriptors([plain, explicit], names=["Chi0", "HeavyAtomCount"], cache=path)
    assert _rows(path) == ["CCO", "[H]OC([H])([H])C([H])([H])[H]"]
    assert got[0, 1] == got[1, 1] == 3  # same heavy atoms
    assert got[1, 0] > got[0, 0]  # Chi0 counts the explicit H atoms
    want = rdkit_descriptors([explicit], names=["Chi0", "HeavyAtomCount"])
    np.testing.assert_array_equal(got[1], want[0])
