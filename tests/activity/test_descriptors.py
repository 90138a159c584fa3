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


# ------------------------------------------------------------------ speed paths
def _real_smiles(n_plain: int = 60, n_odd: int = 30) -> list[str | None]:
    """Real Tox21 SMILES (the bundled demo copy): the first ``n_plain``, one unparseable
    entry, ``n_odd`` written with brackets (charges, metals, isotopes, stereo), the three
    largest (122-132 atoms: BLAS threads the Ipc products there) and a None, so the
    worker paths meet what a user's library holds."""
    import polars as pl

    from cellframe.demo import demo_data_dir

    smiles = pl.read_csv(demo_data_dir() / "moleculenet" / "tox21.csv.gz")["smiles"].to_list()
    odd = [s for s in smiles[n_plain:] if "[" in s or "@" in s][:n_odd]
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    try:
        longest = sorted(smiles, key=len)[-12:]
        largest = [s for s in longest if Chem.MolFromSmiles(s) is not None][-3:]
    finally:
        RDLogger.EnableLog("rdApp.*")
    return [*smiles[:n_plain], "C1CC", *odd, *largest, None]


@pytest.fixture(scope="module")
def real_molecules():
    import warnings

    from cellframe.activity.chem import parse_smiles

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "C1CC" and None: counted, they give NaN rows
        return parse_smiles(_real_smiles())


def test_descriptors_equal_rdkit_on_real_molecules(real_molecules):
    """Every value, on real Tox21 molecules, is RDKit's CalcMolDescriptors' value (the
    E-state quartet reuses the indices RDKit keeps on the molecule, Ipc and AvgIpc
    share one characteristic polynomial: same numbers).

    Ipc and AvgIpc of the large molecules differ by up to ~1e-6 relative: their
    polynomial is a chain of dense products, which OpenBLAS sums in another order
    when it threads them; cellframe uses one BLAS thread, so its value is the same on
    every machine, while RDKit's depends on how many BLAS threads run.
    """
    from rdkit import RDLogger
    from rdkit.Chem import Descriptors

    names = descriptor_names()
    ipc = [names.index("Ipc"), names.index("AvgIpc")]
    rest = [j for j in range(len(names)) if j not in ipc]
    got = rdkit_descriptors(real_molecules, workers=1)
    RDLogger.DisableLog("rdApp.*")
    try:
        for i, mol in enumerate(real_molecules):
            if mol is None:
                assert np.isnan(got[i]).all()
                continue
            ref = Descriptors.CalcMolDescriptors(mol)
            want = np.array([ref[n] for n in names], dtype=np.float64)
            want[~np.isfinite(want)] = np.nan
            np.testing.assert_array_equal(got[i, rest], want[rest])
            np.testing.assert_allclose(got[i, ipc], want[ipc], rtol=1e-5)
            if mol.GetNumAtoms() <= 40:  # products too small for OpenBLAS to thread
                np.testing.assert_array_equal(got[i, ipc], want[ipc])
    finally:
        RDLogger.EnableLog("rdApp.*")
    assert sum(m is None for m in real_molecules) == 2
    estate = [names.index(n) for n in ("MaxEStateIndex", "MinEStateIndex")]
    assert got[0, estate[0]] > got[0, estate[1]]  # a real spread, not one cached number
    assert got[0, ipc[0]] > got[0, ipc[1]] > 0  # Ipc = sum(poly) * AvgIpc, not a copy


def test_parallel_equals_serial_on_real_molecules(real_molecules, monkeypatch):
    """Worker processes give exactly the serial values, rows in order, NaN rows kept."""
    import cellframe.activity.descriptors as d

    serial = rdkit_descriptors(real_molecules, workers=1)
    assert len(real_molecules) == 95  # 60 plain, "C1CC", 30 with brackets, 3 large, None
    assert max(m.GetNumAtoms() for m in real_molecules if m is not None) >= 100
    monkeypatch.setattr(d, "CHUNK_SIZE", 16)  # 95 molecules -> 6 chunks over 2 processes
    assert d._n_workers(2, len(real_molecules)) == 2
    parallel = rdkit_descriptors(real_molecules, workers=2, progress=True)
    np.testing.assert_array_equal(parallel, serial)  # NaN == NaN here, bit for bit otherwise
    nan_rows = np.flatnonzero(np.isnan(parallel).all(axis=1)).tolist()
    assert nan_rows == [60, 94]  # "C1CC" after the 60 plain ones, None last
    # From SMILES too (parsed here, then sent to the workers).
    smiles = [s for s in _real_smiles() if s not in (None, "C1CC")][:40]
    np.testing.assert_array_equal(
        rdkit_descriptors(smiles, names=["MolWt", "qed", "MaxAbsEStateIndex"], workers=2),
        rdkit_descriptors(smiles, names=["MolWt", "qed", "MaxAbsEStateIndex"], workers=1),
    )


def test_worker_count_rule():
    import cellframe.activity.descriptors as d

    assert d._n_workers(1, 10_000) == 1  # this process
    assert d._n_workers(None, d.PARALLEL_MIN_MOLECULES - 1) == 1  # too few to start processes
    assert d._n_workers(0, 0) == 1
    assert d._n_workers(8, 3 * d.CHUNK_SIZE) == 3  # never more processes than chunks
    assert d._n_workers(3, 10 * d.CHUNK_SIZE) == 3
    auto = d._n_workers(None, d.PARALLEL_MIN_MOLECULES)
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert auto == min(cores, -(-d.PARALLEL_MIN_MOLECULES // d.CHUNK_SIZE))
    for bad in (-1, True):
        with pytest.raises(InvalidInputError, match="workers"):
            rdkit_descriptors(["CCO"], workers=bad)
    # Inside a multiprocessing.Pool worker (a daemon, which may not start processes)
    # the automatic choice is this process; outside it is not.
    import multiprocessing

    if cores > 1:
        with multiprocessing.get_context("fork").Pool(1) as pool:
            inside = pool.apply(d._n_workers, (None, 10 * d.PARALLEL_MIN_MOLECULES))
        assert inside == 1 and d._n_workers(None, 10 * d.PARALLEL_MIN_MOLECULES) > 1


def _die(binaries):
    import os

    os._exit(3)


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="fork only")
def test_dead_worker_is_a_named_error(monkeypatch):
    import cellframe.activity.descriptors as d
    from cellframe.errors import CellframeError, DescriptorWorkerError

    monkeypatch.setattr(d, "CHUNK_SIZE", 2)
    monkeypatch.setattr(d, "_chunk_rows", _die)  # the forked workers see it by name
    with pytest.raises(DescriptorWorkerError, match=r"died after 0 of 6 molecules") as err:
        rdkit_descriptors(["CCO", "CCN", "CCC", "c1ccccc1", "CO", "CN"], workers=2)
    assert isinstance(err.value, CellframeError)
