"""RDKit 2D descriptors and their training-split CDF normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from cellframe.activity.descriptors import (
    DescriptorNormalizer,
    descriptor_names,
    rdkit_descriptors,
)
from cellframe.errors import InvalidInputError

from .conftest import SMILES


def test_descriptors_match_rdkit_functions():
    from rdkit import Chem
    from rdkit.Chem import Crippen, Descriptors, rdMolDescriptors

    names = ["MolWt", "TPSA", "MolLogP", "NumHDonors", "NumHAcceptors", "RingCount"]
    direct = {
        "MolWt": Descriptors.MolWt,
        "TPSA": rdMolDescriptors.CalcTPSA,
        "MolLogP": Crippen.MolLogP,
        "NumHDonors": rdMolDescriptors.CalcNumHBD,
        "NumHAcceptors": rdMolDescriptors.CalcNumHBA,
        "RingCount": rdMolDescriptors.CalcNumRings,
    }
    got = rdkit_descriptors(SMILES, names=names)
    assert got.shape == (len(SMILES), len(names))
    for i, s in enumerate(SMILES):
        mol = Chem.MolFromSmiles(s)
        want = [direct[n](mol) for n in names]
        np.testing.assert_allclose(got[i], want, rtol=1e-12, atol=0)
    # Hand-checked values for ethanol-like phenol: C6H6O weighs 94.113, TPSA 20.23.
    assert got[0, 0] == pytest.approx(94.113, abs=1e-3)
    assert got[0, 1] == pytest.approx(20.23, abs=1e-2)


def test_all_descriptors_and_unparseable_row():
    from rdkit import Chem
    from rdkit.Chem import Descriptors

    names = descriptor_names()
    assert names == [n for n, _ in Descriptors.descList]
    mols = [Chem.MolFromSmiles("c1ccccc1O"), None]
    got = rdkit_descriptors(mols)
    assert got.shape == (2, len(names))
    assert np.isnan(got[1]).all()  # unparseable molecule: a row of NaN
    ref = Descriptors.CalcMolDescriptors(mols[0])
    want = np.array([ref[n] for n in names], dtype=np.float64)
    want[~np.isfinite(want)] = np.nan
    np.testing.assert_allclose(got[0], want, rtol=1e-12, equal_nan=True)


def test_unknown_descriptor_name():
    with pytest.raises(InvalidInputError, match="NotADescriptor"):
        rdkit_descriptors(["CCO"], names=["MolWt", "NotADescriptor"])


def test_normalizer_matches_scipy_percentile_rank():
    rng = np.random.default_rng(0)
    train = rng.lognormal(size=(200, 3))
    train[:, 2] = rng.integers(0, 4, size=200)  # ties, as in count descriptors
    train[5, 1] = np.nan
    test = np.vstack([rng.lognormal(size=(50, 3)), [[0.0, 1e9, 2.0]]])
    test[3, 0] = np.nan
    norm = DescriptorNormalizer().fit(train)
    got = norm.transform(test)
    assert got.dtype == np.float32
    for j in range(3):
        ref = train[:, j][np.isfinite(train[:, j])]
        for i in range(test.shape[0]):
            if np.isnan(test[i, j]):
                assert got[i, j] == 0.0  # missing -> fill_value
                continue
            want = scipy.stats.percentileofscore(ref, test[i, j], kind="mean") / 100
            assert got[i, j] == pytest.approx(want, abs=1e-6)
    assert got[-1, 0] == 0.0 and got[-1, 1] == 1.0  # outside the training range: 0 / 1


def test_normalizer_uses_training_values_only():
    norm = DescriptorNormalizer(fill_value=-1.0).fit(np.array([[1.0], [2.0], [3.0], [4.0]]))
    got = norm.transform(np.array([[0.0], [2.0], [2.5], [9.0], [np.nan]])).ravel()
    np.testing.assert_array_equal(got, np.array([0.0, 0.375, 0.5, 1.0, -1.0], np.float32))
    # A column without any finite training value is fill_value throughout.
    empty = DescriptorNormalizer().fit(np.array([[np.nan], [np.inf]]))
    np.testing.assert_array_equal(empty.transform(np.array([[1.0], [2.0]])), [[0.0], [0.0]])


def test_normalizer_bad_input():
    norm = DescriptorNormalizer()
    with pytest.raises(InvalidInputError, match="fit"):
        norm.transform(np.zeros((2, 2)))
    with pytest.raises(InvalidInputError, match="2-D"):
        norm.fit(np.zeros(3))
    with pytest.raises(InvalidInputError, match="zero compounds"):
        norm.fit(np.zeros((0, 3)))
    norm.fit(np.zeros((4, 3)))
    with pytest.raises(InvalidInputError, match="fitted on 3"):
        norm.transform(np.zeros((2, 2)))
