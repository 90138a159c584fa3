"""RDKit features: Morgan fingerprints, scaffolds, PAINS (against the reference's indices)."""

from __future__ import annotations

import numpy as np
import pytest

from cellframe.activity.chem import (
    morgan_fingerprints,
    morgan_frame,
    murcko_scaffolds,
    pains_matches,
    parse_smiles,
)
from cellframe.activity.columns import COMPOUND

from .conftest import SMILES


def test_morgan_matches_rdkit_bit_vector():
    # Reference: RDKit's older bit-vector API, bit by bit.
    from rdkit import Chem, DataStructs
    from rdkit.Chem import rdMolDescriptors

    fps = morgan_fingerprints(SMILES)
    assert fps.shape == (len(SMILES), 2048) and fps.dtype == np.uint8
    for row, smi in zip(fps, SMILES, strict=True):
        bv = rdMolDescriptors.GetMorganFingerprintAsBitVect(Chem.MolFromSmiles(smi), 2, nBits=2048)
        ref = np.zeros(2048, dtype=np.uint8)
        DataStructs.ConvertToNumpyArray(bv, ref)
        np.testing.assert_array_equal(row, ref)


def test_invalid_smiles_are_counted_and_skipped():
    smiles = ["CCO", "not_a_smiles", "C1CC", "CCN"]
    with pytest.warns(UserWarning, match="2 of 4 SMILES.* cannot be parsed"):
        mols = parse_smiles(smiles)
    assert [m is None for m in mols] == [False, True, True, False]
    with pytest.warns(UserWarning, match="2 of 4 SMILES"):
        frame = morgan_frame(["a", "b", "c", "d"], smiles, n_bits=64)
    assert frame[COMPOUND].to_list() == ["a", "d"]
    assert frame.width == 65
    with pytest.warns(UserWarning):
        fps = morgan_fingerprints(smiles, n_bits=64)
    assert fps[1].sum() == 0 and fps[0].sum() > 0


def test_murcko_scaffolds_hand_checked():
    assert murcko_scaffolds(["c1ccccc1CCO", "CCO", "c1ccncc1CO", "OC(=O)c1ccc2ccccc2c1"]) == [
        "c1ccccc1",
        "",
        "c1ccncc1",
        "c1ccc2ccccc2c1",
    ]


def _moshkov_smiles(root):
    return [ln.strip() for ln in (root / "assay_data" / "smiles.txt").read_text().splitlines()[1:]]


def test_pains_on_reference_subset(moshkov):
    # Every compound the reference flags plus 100 it does not: exact agreement per family.
    ref = np.load(moshkov / "misc" / "compound_analysis.npz")
    smiles = _moshkov_smiles(moshkov)
    flagged = np.unique(ref["pains_overall"])
    rng = np.random.default_rng(0)
    clean = rng.choice(np.setdiff1d(np.arange(len(smiles)), flagged), 100, replace=False)
    idx = np.concatenate([flagged, clean])
    match = pains_matches([smiles[i] for i in idx])
    for family in "ABC":
        expected = np.isin(idx, ref[f"pains_{family.lower()}"])
        np.testing.assert_array_equal(match[family], expected, err_msg=f"PAINS_{family}")
    np.testing.assert_array_equal(match["any"], np.isin(idx, flagged))
    assert int(match["A"].sum()) == 690 and int(match["B"].sum()) == 65
    assert int(match["C"].sum()) == 25 and int(match["any"].sum()) == 768


@pytest.mark.slow
def test_pains_counts_all_16978(moshkov):
    ref = np.load(moshkov / "misc" / "compound_analysis.npz")
    match = pains_matches(_moshkov_smiles(moshkov))
    for family in "ABC":
        np.testing.assert_array_equal(
            np.flatnonzero(match[family]), np.sort(ref[f"pains_{family.lower()}"])
        )
    assert int(match["any"].sum()) == len(np.unique(ref["pains_overall"])) == 768


def test_pains_unknown_family():
    with pytest.raises(ValueError, match="valid"):
        pains_matches(["CCO"], families=["D"])
