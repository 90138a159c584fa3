"""Molecule-level RDKit 2D descriptors and their training-split CDF normalisation.

DOMAIN.md §6 (CS features). Chemprop's ``rdkit_2d_normalized`` features
(Yang et al. 2019) concatenate about 200 RDKit descriptors, each mapped through a
cumulative distribution function, to the learned D-MPNN encoding. Chemprop's CDFs
were fitted once on a large external library; here the CDF is the empirical one of
the *training* compounds (:class:`DescriptorNormalizer`), so nothing outside the
training split informs the features and no external data is needed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from cellframe.errors import DescriptorWorkerError, InvalidInputError

__all__ = [
    "CHUNK_SIZE",
    "PARALLEL_MIN_MOLECULES",
    "DescriptorNormalizer",
    "descriptor_names",
    "rdkit_descriptors",
]


def descriptor_names() -> list[str]:
    """Names of the RDKit 2D descriptors computed by :func:`rdkit_descriptors`.

    Returns
    -------
    list of str
        ``rdkit.Chem.Descriptors.descList`` order (217 names in RDKit 2026.09).
    """
    from rdkit.Chem import Descriptors

    return [name for name, _ in Descriptors.descList]


#: With ``workers=None`` fewer molecules than this are computed in this process:
#: starting worker processes (~0.5 s) costs more than it saves below it.
PARALLEL_MIN_MOLECULES = 2000
#: Molecules per task sent to a worker process.
CHUNK_SIZE = 256


def rdkit_descriptors(
    molecules: Sequence[Any],
    *,
    names: Sequence[str] | None = None,
    progress: bool = False,
    workers: int | None = None,
    cache: str | os.PathLike[str] | None = None,
) -> np.ndarray:
    """RDKit 2D descriptors, one row per molecule, over worker processes when many.

    Parameters
    ----------
    molecules : sequence of str or rdkit Mol
        SMILES or molecules; an unparseable one (``None``) gives a row of NaN.
    names : sequence of str, optional
        Descriptor names (default: all of :func:`descriptor_names`).
    progress : bool, default False
        Progress bar over molecules (all 217 descriptors take about 4-7 ms of CPU
        per Tox21 molecule; more wall time on busy cores).
    workers : int, optional
        Processes computing the descriptors: ``1`` computes them here; ``n > 1``
        uses ``n`` worker processes, each given chunks of :data:`CHUNK_SIZE`
        molecules (as ``Mol.ToBinary`` bytes with every property, so each worker
        rebuilds the very molecule given); ``None`` or ``0`` uses one per available
        core, or computes here for fewer than :data:`PARALLEL_MIN_MOLECULES`
        molecules or inside a daemonic process (which may not start others).
        Every path calls the same RDKit functions on the same molecule with one
        BLAS thread: the values are identical (tested), only the time differs.
        They are RDKit's ``CalcMolDescriptors`` values exactly, except ``Ipc`` and
        ``AvgIpc`` of molecules over ~40 atoms, where RDKit's own value moves by
        ~1e-6 relative with the number of BLAS threads (see
        :func:`_descriptor_functions`).
    cache : str or path-like, optional
        A Parquet file keeping the descriptors of a compound library, keyed by
        canonical SMILES with the RDKit and descriptor-set versions
        (:mod:`cellframe.activity.descriptor_cache`): compounds already in it are
        read, new ones computed (all descriptors) and appended; a file of another
        version is recomputed and replaced, with a warning. With a cache, a
        compound's values are those of the molecule read from its canonical SMILES
        (the same for every way of writing it).

    Returns
    -------
    numpy.ndarray of float64, shape (n_molecules, n_descriptors)
        NaN where RDKit fails or the value is not finite.

    Raises
    ------
    InvalidInputError
        If a name is not an RDKit descriptor or ``workers`` is negative.
    DescriptorWorkerError
        If a worker process dies (killed for memory, say); nothing is returned.
    DescriptorCacheError
        If ``cache`` names a file that is not a cellframe descriptor cache (left
        untouched).

    Examples
    --------
    >>> rdkit_descriptors(["CCO"], names=["MolWt", "NumHDonors"]).round(2)
    array([[46.07,  1.  ]])
    >>> rdkit_descriptors(["CCO", "c1ccccc1"], names=["MolWt"], workers=2).round(2)
    array([[46.07],
           [78.11]])
    """
    from rdkit.Chem import Descriptors

    from cellframe.activity.chem import _as_mols

    table = dict(Descriptors.descList)
    chosen = list(table) if names is None else list(names)
    unknown = [n for n in chosen if n not in table]
    if unknown:
        raise InvalidInputError(
            f"unknown RDKit descriptor(s) {unknown[:5]}; valid names: "
            "cellframe.activity.descriptors.descriptor_names()"
        )
    if workers is not None and (isinstance(workers, bool) or int(workers) < 0):
        raise InvalidInputError(
            f"rdkit_descriptors(workers={workers!r}): give 1 (this process), n > 1 worker "
            "processes, or None / 0 for one per core"
        )
    mols = _as_mols(molecules)
    if cache is not None:
        from cellframe.activity.descriptor_cache import cached_descriptors

        everything = list(table)
        return cached_descriptors(
            mols, chosen, cache, lambda ms: _compute(ms, everything, workers, progress)
        )
    return _compute(mols, chosen, workers, progress)


def _compute(mols: list[Any], chosen: list[str], workers: int | None, progress: bool) -> np.ndarray:
    """The descriptors ``chosen`` of parsed molecules, here or over worker processes."""
    from cellframe._progress import progress as _progress

    n_workers = _n_workers(workers, len(mols))
    out = np.full((len(mols), len(chosen)), np.nan, dtype=np.float64)
    bar = {"total": len(mols), "desc": "descriptors", "unit": "mol", "enabled": progress}
    if n_workers <= 1:
        functions = _descriptor_functions(chosen)
        with _rdkit_log_off(), _one_blas_thread():
            for i, mol in enumerate(_progress(mols, **bar)):
                if mol is not None:
                    _descriptor_row(mol, functions, out[i])
    else:
        for i, row in _progress(_parallel_rows(mols, chosen, n_workers), **bar):
            out[i] = row
    out[~np.isfinite(out)] = np.nan
    return out


def _n_workers(workers: int | None, n_molecules: int) -> int:
    """How many processes compute ``n_molecules`` (1: this one)."""
    import os

    if workers == 1 or n_molecules == 0:
        return 1
    if not workers:  # None or 0: automatic
        import multiprocessing

        # A daemonic process (a multiprocessing.Pool worker) may not start processes.
        if n_molecules < PARALLEL_MIN_MOLECULES or multiprocessing.current_process().daemon:
            return 1
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        workers = cores or 1
    return max(1, min(int(workers), -(-n_molecules // CHUNK_SIZE)))


class _rdkit_log_off:
    """RDKit's log off inside the block (descriptors of odd molecules warn per call)."""

    def __enter__(self) -> None:
        from rdkit import RDLogger

        RDLogger.DisableLog("rdApp.*")

    def __exit__(self, *exc: object) -> None:
        from rdkit import RDLogger

        RDLogger.EnableLog("rdApp.*")


def _descriptor_functions(names: Sequence[str]) -> list[Any]:
    """RDKit's function of each descriptor name, sharing work RDKit does twice.

    * ``Max/Min/MaxAbs/MinEStateIndex`` each recompute the E-state indices (a
      Python double loop over atom pairs) unless called with ``force=0``, RDKit's
      own switch to reuse the indices it keeps on the molecule: they are called so.
      The indices themselves come from :func:`_estate_indices` (RDKit's loop as
      array operations summed in RDKit's order), kept where RDKit keeps them, so
      ``EState_VSA*`` and ``VSA_EState*`` reuse them too.
    * ``Ipc`` and ``AvgIpc`` each compute the characteristic polynomial of the
      adjacency matrix (``n`` dense ``n x n`` products: a third of the descriptor
      CPU time on Tox21 on busy cores): it is computed once (:func:`_ipc_polynomial`,
      RDKit's own steps) and both are formed from it as RDKit forms them.
    * ``qed`` recomputes eight properties on a copy of the molecule; :func:`_qed`
      passes RDKit's ``qed`` the same properties, the Crippen logP taken from the
      value RDKit already keeps on the molecule and the 116 structural alerts
      matched in one call of RDKit's ``FilterCatalog``.
    * ``SPS`` is RDKit's integer spacial score (:func:`_spacial_score`) summed
      without its per-atom Python bookkeeping.

    Same functions on the same numbers: the values are RDKit's exactly (tested
    against ``Descriptors.CalcMolDescriptors`` on real molecules), computed with one
    BLAS thread (:func:`_one_blas_thread`): ~2x less CPU for ``Ipc`` on 2 busy
    cores, and the same ``Ipc`` on every machine (threaded BLAS sums the
    polynomial's products in another order: ~1e-6 relative on 100-atom molecules).
    """
    from rdkit.Chem import Descriptors

    table = dict(Descriptors.descList)
    estate = ("MaxEStateIndex", "MinEStateIndex", "MaxAbsEStateIndex", "MinAbsEStateIndex")
    own = {"Ipc": _ipc, "AvgIpc": _avg_ipc, "qed": _qed, "SPS": _spacial_score}
    functions = []
    for name in names:
        if name in own:
            functions.append(own[name])
        elif name in estate or name.startswith(("EState_VSA", "VSA_EState")):
            functions.append(_with_estate(table[name], force=name in estate))
        else:
            functions.append(table[name])
    return functions


def _with_estate(function: Any, *, force: bool) -> Any:
    """``function(mol)`` after :func:`_estate_indices` (``force=0`` for the quartet)."""

    def call(mol: Any) -> Any:
        _estate_indices(mol)
        return function(mol, force=0) if force else function(mol)

    return call


def _estate_indices(mol: Any) -> np.ndarray:
    """RDKit's ``EState.EStateIndices(mol)``, the same floating-point operations in arrays.

    RDKit (Hall, Mohney and Kier 1991) forms the intrinsic state ``I`` of each atom
    in a Python loop, then for every pair ``i < j`` at topological distance
    ``p - 1`` (``p < 1e6``: same fragment) adds ``t = (I[i] - I[j]) / (p * p)`` to
    atom ``i`` and subtracts it from atom ``j``, pair by pair. Atom ``k`` thus
    receives ``-t[0, k], ..., -t[k-1, k], +t[k, k+1], ..., +t[k, n-1]`` in that
    order; here each ``t`` is the same IEEE expression and the terms are added in
    that order by ``numpy.cumsum`` (sequential, unlike ``sum``), so the indices are
    RDKit's bit for bit. Kept on the molecule as RDKit keeps them
    (``_eStateIndices``), which RDKit's E-state descriptors reuse.
    """
    cached = getattr(mol, "_eStateIndices", None)
    if cached is not None:
        return cached
    from rdkit import Chem
    from rdkit.Chem.EState.EState import GetPrincipleQuantumNumber

    table = Chem.GetPeriodicTable()
    n = mol.GetNumAtoms()
    intrinsic = np.zeros(n, dtype=np.float64)
    for i, atom in enumerate(mol.GetAtoms()):
        degree = atom.GetDegree()
        if degree > 0:
            number = atom.GetAtomicNum()
            dv = table.GetNOuterElecs(number) - atom.GetTotalNumHs()
            q = GetPrincipleQuantumNumber(number)
            intrinsic[i] = (4.0 / (q * q) * dv + 1) / degree
    p = Chem.GetDistanceMatrix(mol, useBO=False, useAtomWts=False) + 1
    with np.errstate(all="ignore"):
        t = (intrinsic[:, None] - intrinsic[None, :]) / (p * p)
    t = np.where(np.triu(p < 1e6, 1), t, 0.0)  # t[i, j] for i < j; 0 adds nothing
    terms = np.zeros((n, n + 1), dtype=np.float64)  # a leading 0.0 as RDKit's start
    terms[:, 1:] = t - t.T  # row k: -t[j, k] for j < k, +t[k, j] for j > k, 0 at k
    result = np.cumsum(terms, axis=1)[:, -1] + intrinsic
    mol._eStateIndices = result
    return result


def _qed(mol: Any) -> float:
    """RDKit's ``QED.qed(mol)`` from the properties ``QED.properties(mol)`` computes.

    ``QED.properties`` works on ``Chem.RemoveHs(mol)``. When that removes no atom
    (SMILES input without explicit hydrogens) it is the same graph, and the Crippen
    logP is the one RDKit's ``MolLogP`` already keeps on ``mol``. The structural
    alerts are counted by one ``FilterCatalog`` of the same SMARTS (a catalog entry
    matches when ``HasSubstructMatch`` does). The other properties are RDKit's
    calls, and ``qed(mol, qedProperties=...)`` forms the score as RDKit does.
    """
    from rdkit import Chem
    from rdkit.Chem import QED, Crippen, MolSurf
    from rdkit.Chem import rdMolDescriptors as rdmd

    stripped = Chem.RemoveHs(mol)
    same_graph = stripped.GetNumAtoms() == mol.GetNumAtoms()
    properties = QED.QEDproperties(
        MW=rdmd._CalcMolWt(stripped),
        ALOGP=Crippen.MolLogP(mol if same_graph else stripped),
        HBA=sum(
            len(stripped.GetSubstructMatches(pattern))
            for pattern in QED.Acceptors
            if stripped.HasSubstructMatch(pattern)
        ),
        HBD=rdmd.CalcNumHBD(stripped),
        PSA=MolSurf.TPSA(stripped),
        ROTB=rdmd.CalcNumRotatableBonds(stripped, rdmd.NumRotatableBondsOptions.Strict),
        AROM=len(Chem.GetSSSR(Chem.DeleteSubstructs(Chem.Mol(stripped), QED.AliphaticRings))),
        ALERTS=len(_qed_alert_catalog().GetMatches(stripped)),
    )
    return QED.qed(stripped, qedProperties=properties)


_QED_ALERTS: list[Any] = []


def _qed_alert_catalog() -> Any:
    """A ``FilterCatalog`` of RDKit's QED structural alerts, one entry per SMARTS."""
    if not _QED_ALERTS:
        from rdkit.Chem import QED
        from rdkit.Chem.FilterCatalog import FilterCatalog, FilterCatalogEntry, SmartsMatcher

        catalog = FilterCatalog()
        for i, smarts in enumerate(QED.StructuralAlertSmarts):
            catalog.AddEntry(FilterCatalogEntry(str(i), SmartsMatcher(str(i), smarts, 1)))
        _QED_ALERTS.append(catalog)
    return _QED_ALERTS[0]


def _spacial_score(mol: Any) -> float:
    """RDKit's ``SpacialScore.SPS(mol)`` (normalised), its integer sum formed directly.

    RDKit's class stores four per-atom scores in dictionaries and looks each atom up
    in a list of stereocentres and in every double bond; the score is the integer
    ``sum(h * s * r * d**2)`` over atoms (any order), divided by the heavy atoms.
    The same RDKit calls find the stereocentres and stereo double bonds.
    """
    from rdkit import Chem
    from rdkit.Chem import rdmolops
    from rdkit.Chem.SpacialScore import _SpacialScore

    copy = Chem.Mol(mol)
    rdmolops.FindPotentialStereoBonds(copy)
    stereo = {
        i
        for i, _ in Chem.FindMolChiralCenters(
            copy, includeUnassigned=True, includeCIP=False, useLegacyImplementation=False
        )
    }
    double, none = Chem.BondType.DOUBLE, Chem.BondStereo.STEREONONE
    for bond in copy.GetBonds():
        if bond.GetBondType() == double and bond.GetStereo() != none:
            stereo.update((bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()))
    hybrid = _SpacialScore._hybridisations
    score = 0
    for atom in copy.GetAtoms():
        ring = 1 if atom.GetIsAromatic() else (2 if atom.IsInRing() else 1)
        s = 2 if atom.GetIdx() in stereo else 1
        score += hybrid[atom.GetHybridization()] * s * ring * atom.GetDegree() ** 2
    return score / copy.GetNumHeavyAtoms()


def _ipc_polynomial(mol: Any) -> np.ndarray:
    """``abs`` of the characteristic polynomial RDKit's ``GraphDescriptors.Ipc`` computes.

    The same steps as RDKit 2026.09's ``Ipc(mol)``: the topological distance matrix
    (the one RDKit keeps on the molecule as ``_adjMat``, else computed and kept),
    its entries equal to 1 as the adjacency matrix, ``Graphs.CharacteristicPolynomial``.
    Kept on the molecule, so ``Ipc`` and ``AvgIpc`` share it.
    """
    cached = getattr(mol, "_cellframeIpcPolynomial", None)
    if cached is not None:
        return cached
    from rdkit import Chem
    from rdkit.Chem import Graphs

    try:
        distances = mol._adjMat
    except AttributeError:
        distances = Chem.GetDistanceMatrix(mol, False)
        mol._adjMat = distances
    poly = abs(Graphs.CharacteristicPolynomial(mol, np.equal(distances, 1)))
    mol._cellframeIpcPolynomial = poly
    return poly


def _ipc(mol: Any) -> float:
    """RDKit's ``Ipc``: ``sum(cPoly) * InfoEntropy(cPoly)``."""
    from rdkit.ML.InfoTheory import entropy

    poly = _ipc_polynomial(mol)
    return sum(poly) * entropy.InfoEntropy(poly)


def _avg_ipc(mol: Any) -> float:
    """RDKit's ``AvgIpc``: ``InfoEntropy(cPoly)``."""
    from rdkit.ML.InfoTheory import entropy

    return entropy.InfoEntropy(_ipc_polynomial(mol))


def _one_blas_thread() -> Any:
    """Limit BLAS to one thread in the block (threadpoolctl, a scikit-learn dependency).

    ``Ipc``'s polynomial is ``n`` small dense matrix products; OpenBLAS threads
    each one, and on busy cores its threads wait on each other far longer than the
    product takes. With one thread the values are also the same on every machine:
    threaded OpenBLAS sums in another order (~1e-6 relative on the polynomial of a
    100-atom molecule, tested).
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _descriptor_row(mol: Any, functions: Sequence[Any], row: np.ndarray) -> None:
    """Fill ``row`` with each function's value for ``mol`` (left NaN where RDKit fails)."""
    for j, fn in enumerate(functions):
        try:
            row[j] = fn(mol)
        except Exception:  # RDKit raises assorted errors; NaN is the answer
            pass


#: A worker process's descriptor functions (set once by :func:`_start_worker`).
_WORKER_FUNCTIONS: list[Any] = []


def _start_worker(names: list[str]) -> None:
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")
    _one_blas_thread()  # for the worker's life
    _WORKER_FUNCTIONS[:] = _descriptor_functions(names)


def _chunk_rows(binaries: list[bytes | None]) -> np.ndarray:
    """Descriptors of one chunk of ``Mol.ToBinary`` molecules, in a worker process."""
    from rdkit import Chem

    out = np.full((len(binaries), len(_WORKER_FUNCTIONS)), np.nan, dtype=np.float64)
    for i, b in enumerate(binaries):
        if b is not None:
            _descriptor_row(Chem.Mol(b), _WORKER_FUNCTIONS, out[i])
    return out


def _parallel_rows(mols: list[Any], names: list[str], n_workers: int) -> Iterator[tuple[int, Any]]:
    """``(index, descriptor row)`` of every molecule, in order, from ``n_workers`` processes.

    Linux forks the workers (no re-import of the caller's script); elsewhere they
    are spawned. A worker that dies raises :class:`DescriptorWorkerError`.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from rdkit import Chem

    all_props = Chem.PropertyPickleOptions.AllProps
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    chunks = (
        [None if m is None else m.ToBinary(all_props) for m in mols[s : s + CHUNK_SIZE]]
        for s in range(0, len(mols), CHUNK_SIZE)
    )
    done = 0
    try:
        with ProcessPoolExecutor(
            n_workers,
            mp_context=multiprocessing.get_context(method),
            initializer=_start_worker,
            initargs=(names,),
        ) as pool:
            for block in pool.map(_chunk_rows, chunks):
                for row in block:
                    yield done, row
                    done += 1
    except BrokenProcessPool as err:
        raise DescriptorWorkerError(
            f"a descriptor worker process died after {done} of {len(mols)} molecules "
            f"({n_workers} processes; killed for memory?); rerun with fewer workers "
            "(workers=1 computes them in this process)"
        ) from err


class DescriptorNormalizer:
    """Map each descriptor through the empirical CDF of the training compounds.

    A value ``v`` of descriptor ``j`` becomes ``(#{t < v} + #{t <= v}) / (2 n)``
    over the ``n`` finite training values ``t`` of ``j`` (the "mean" percentile
    rank, ``scipy.stats.percentileofscore(t, v, kind="mean") / 100``). The result
    lies in [0, 1], is robust to the heavy tails of counts and topological indices,
    and is the analogue of Chemprop's CDF-normalised RDKit features. Missing values
    (NaN) become ``fill_value``.

    Parameters
    ----------
    fill_value : float, default 0.0
        Value of a missing descriptor after normalisation (Chemprop uses 0).

    Attributes
    ----------
    sorted_ : list of numpy.ndarray, each shape (n_finite,)
        Sorted finite training values per descriptor.

    Examples
    --------
    >>> norm = DescriptorNormalizer().fit(np.array([[1.0], [2.0], [3.0], [4.0]]))
    >>> norm.transform(np.array([[0.0], [2.0], [2.5], [9.0]])).ravel().tolist()
    [0.0, 0.375, 0.5, 1.0]
    """

    def __init__(self, *, fill_value: float = 0.0) -> None:
        self.fill_value = fill_value

    def fit(self, descriptors: np.ndarray) -> DescriptorNormalizer:
        """Store the sorted finite training values of each column.

        Parameters
        ----------
        descriptors : numpy.ndarray, shape (n_compounds, n_descriptors)
            Training compounds only.

        Returns
        -------
        DescriptorNormalizer
            ``self``.

        Raises
        ------
        InvalidInputError
            If the array is not 2-D or has no rows.
        """
        x = _as_2d(descriptors)
        if x.shape[0] == 0:
            raise InvalidInputError("cannot fit a DescriptorNormalizer on zero compounds")
        self.sorted_ = [np.sort(col[np.isfinite(col)]) for col in x.T]
        return self

    def transform(self, descriptors: np.ndarray) -> np.ndarray:
        """Percentile ranks in [0, 1] against the training values, float32.

        Parameters
        ----------
        descriptors : numpy.ndarray, shape (n_compounds, n_descriptors)
            With the columns seen in ``fit``.

        Returns
        -------
        numpy.ndarray of float32, shape (n_compounds, n_descriptors)
            A column with no finite training value is
            ``fill_value`` throughout.

        Raises
        ------
        InvalidInputError
            If called before ``fit`` or the column count differs.
        """
        if not hasattr(self, "sorted_"):
            raise InvalidInputError("call DescriptorNormalizer.fit() before transform()")
        x = _as_2d(descriptors)
        if x.shape[1] != len(self.sorted_):
            raise InvalidInputError(
                f"{x.shape[1]} descriptor columns, but the normalizer was fitted on "
                f"{len(self.sorted_)}; compute the same descriptors for every split"
            )
        out = np.full(x.shape, self.fill_value, dtype=np.float64)
        for j, ref in enumerate(self.sorted_):
            if ref.size == 0:
                continue
            col = x[:, j]
            ok = np.isfinite(col)
            below = np.searchsorted(ref, col[ok], side="left")
            at_or_below = np.searchsorted(ref, col[ok], side="right")
            out[ok, j] = (below + at_or_below) / (2.0 * ref.size)
        return out.astype(np.float32)

    def fit_transform(self, descriptors: np.ndarray) -> np.ndarray:
        """``fit(descriptors).transform(descriptors)``."""
        return self.fit(descriptors).transform(descriptors)


def _as_2d(descriptors: np.ndarray) -> np.ndarray:
    x = np.asarray(descriptors, dtype=np.float64)
    if x.ndim != 2:
        raise InvalidInputError(
            f"descriptors must be 2-D (n_compounds, n_descriptors), got shape {x.shape}"
        )
    return x
