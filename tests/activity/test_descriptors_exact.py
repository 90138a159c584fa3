"""cellframe's faster descriptor paths give RDKit's own values bit for bit.

The references are RDKit's functions themselves (``Descriptors.CalcMolDescriptors``,
``EState.EStateIndices``, ``QED.qed``, ``SpacialScore.SPS``) on fresh copies of each
molecule, with one BLAS thread as cellframe uses (``Ipc``'s products are otherwise
summed in a thread-dependent order, see test_descriptors.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from cellframe.activity import descriptors as d
from cellframe.activity.descriptors import descriptor_names, rdkit_descriptors

#: Valid but unusual molecules: explicit hydrogens (RemoveHs changes the graph),
#: salts and metals (disconnected fragments: pairs at "infinite" distance), single
#: atoms (degree 0), isotopes and charges (QED alerts), stereo, spiro, bridged and
#: macrocyclic rings, an empty molecule (most descriptors fail: NaN).
UNUSUAL = [
    "[Na+].[Cl-]",
    "C",
    "[He]",
    "O",
    "[13CH3]C(=O)O",
    "C/C=C/C(=O)[O-].[K+]",
    "C[C@H](N)C(=O)O",
    "C1CCC2(CC1)CCCC2",
    "C1CC2CCC1C2",
    "C1CCCCCCCCCCCCCCC1",
    "Clc1cc(Cl)c(Cl)cc1Cl",
    "OS(=O)(=O)C(F)(F)F",
    "[N-]=[N+]=NCC",
    "CC(C)(C)c1ccc(O)cc1.CCO",
    "c1ccc2c(c1)ccc1ccccc12",
    "O=[N+]([O-])c1ccc(N)cc1",
    "",
]


def _explicit_h(smiles: str):
    from rdkit import Chem

    return Chem.AddHs(Chem.MolFromSmiles(smiles))


def _molecules(n_real: int):
    import polars as pl
    from rdkit import Chem, RDLogger

    from cellframe.demo import demo_data_dir

    smiles = pl.read_csv(demo_data_dir() / "moleculenet" / "tox21.csv.gz")["smiles"].to_list()
    RDLogger.DisableLog("rdApp.*")
    try:
        real = [m for m in map(Chem.MolFromSmiles, smiles[:n_real]) if m is not None]
        largest = sorted(
            (m for m in map(Chem.MolFromSmiles, sorted(smiles, key=len)[-8:]) if m is not None),
            key=lambda m: m.GetNumAtoms(),
        )[-2:]
        unusual = [Chem.MolFromSmiles(s) for s in UNUSUAL]
    finally:
        RDLogger.EnableLog("rdApp.*")
    explicit = [_explicit_h(s) for s in ("CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1")]
    return [*real, *largest, *unusual, *explicit]


def _reference(mols) -> np.ndarray:
    from rdkit import Chem, RDLogger
    from rdkit.Chem import Descriptors

    names = descriptor_names()
    ref = np.full((len(mols), len(names)), np.nan)
    RDLogger.DisableLog("rdApp.*")
    try:
        with d._one_blas_thread():
            for i, mol in enumerate(mols):
                values = Descriptors.CalcMolDescriptors(Chem.Mol(mol))
                ref[i] = [np.nan if values[n] is None else values[n] for n in names]
    finally:
        RDLogger.EnableLog("rdApp.*")
    ref[~np.isfinite(ref)] = np.nan
    return ref


def _check_identical(mols) -> None:
    from rdkit import Chem

    got = rdkit_descriptors([Chem.Mol(m) for m in mols], workers=1)
    ref = _reference(mols)
    names = descriptor_names()
    bad = ~((got == ref) | (np.isnan(got) & np.isnan(ref)))
    where = [
        (names[j], Chem.MolToSmiles(mols[np.flatnonzero(bad[:, j])[0]]))
        for j in np.flatnonzero(bad.any(0))
    ]
    assert not where, f"not RDKit's value: {where}"


def test_every_descriptor_identical_on_real_and_unusual_molecules():
    mols = _molecules(120)
    _check_identical(mols)
    # The unusual controls exercise every branch: the E-state and spacial score of an
    # empty molecule fail (NaN) as in RDKit, while single atoms and salts give numbers.
    got = rdkit_descriptors(mols, names=["MaxEStateIndex", "SPS", "qed"], workers=1)
    empty = len(mols) - 4  # "" is the last unusual molecule, before 3 explicit-H ones
    assert mols[empty].GetNumAtoms() == 0 and np.isnan(got[empty, :2]).all()
    assert np.isfinite(got[:empty]).all() and np.isfinite(got[empty + 1 :]).all()


@pytest.mark.slow
def test_every_descriptor_identical_on_all_tox21():
    """All ~7,800 Tox21 molecules (about 90 s of CPU)."""
    _check_identical(_molecules(100_000))


def test_fast_functions_equal_rdkit_functions():
    """Each replacement against the RDKit function it replaces, on the same molecules."""
    from rdkit import Chem
    from rdkit.Chem import QED
    from rdkit.Chem.EState import EState
    from rdkit.Chem.SpacialScore import SPS

    mols = [m for m in _molecules(60) if m.GetNumAtoms() > 0]
    for mol in mols:
        want = EState.EStateIndices(Chem.Mol(mol))
        got = d._estate_indices(Chem.Mol(mol))
        np.testing.assert_array_equal(got, want)
        assert d._qed(Chem.Mol(mol)) == QED.qed(Chem.Mol(mol))
        assert d._spacial_score(Chem.Mol(mol)) == SPS(Chem.Mol(mol))
    # A hand-checked E-state (Hall, Mohney & Kier 1991): ethanol's intrinsic states
    # I = (4 / N**2 * dv + 1) / degree are CH3 2, CH2 1.5, OH 6; atom i's index is
    # I_i + sum_j (I_i - I_j) / (d_ij + 1) ** 2.
    ethanol = d._estate_indices(Chem.MolFromSmiles("CCO"))
    want = [2 + 0.5 / 4 - 4 / 9, 1.5 - 0.5 / 4 - 4.5 / 4, 6 + 4 / 9 + 4.5 / 4]
    np.testing.assert_allclose(ethanol, want, rtol=1e-15)
    # The indices are kept where RDKit keeps them, so its E-state descriptors reuse them.
    mol = Chem.MolFromSmiles("CCO")
    assert d._estate_indices(mol) is mol._eStateIndices


def test_qed_with_explicit_hydrogens_uses_the_stripped_graph():
    """With explicit H atoms RemoveHs changes the graph: logP comes from the stripped copy."""
    from rdkit import Chem
    from rdkit.Chem import QED

    mol = _explicit_h("CC(=O)Nc1ccc(O)cc1")
    stripped = Chem.RemoveHs(mol)
    assert stripped.GetNumAtoms() < mol.GetNumAtoms()
    assert d._qed(mol) == QED.qed(Chem.Mol(mol))
    assert d._qed(mol) == pytest.approx(0.595, abs=1e-3)  # paracetamol, RDKit's QED
