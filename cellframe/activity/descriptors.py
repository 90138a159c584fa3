"""Molecule-level RDKit 2D descriptors and their training-split CDF normalisation.

DOMAIN.md §6 (CS features). Chemprop's ``rdkit_2d_normalized`` features
(Yang et al. 2019) concatenate about 200 RDKit descriptors, each mapped through a
cumulative distribution function, to the learned D-MPNN encoding. Chemprop's CDFs
were fitted once on a large external library; here the CDF is the empirical one of
the *training* compounds (:class:`DescriptorNormalizer`), so nothing outside the
training split informs the features and no external data is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cellframe.errors import InvalidInputError

__all__ = ["DescriptorNormalizer", "descriptor_names", "rdkit_descriptors"]


def descriptor_names() -> list[str]:
    """Names of the RDKit 2D descriptors computed by :func:`rdkit_descriptors`.

    Returns
    -------
    list of str
        ``rdkit.Chem.Descriptors.descList`` order (217 names in RDKit 2026.09).
    """
    from rdkit.Chem import Descriptors

    return [name for name, _ in Descriptors.descList]


def rdkit_descriptors(
    molecules: Sequence[Any], *, names: Sequence[str] | None = None, progress: bool = False
) -> np.ndarray:
    """RDKit 2D descriptors, one row per molecule.

    Parameters
    ----------
    molecules : sequence of str or rdkit Mol
        SMILES or molecules; an unparseable one (``None``) gives a row of NaN.
    names : sequence of str, optional
        Descriptor names (default: all of :func:`descriptor_names`).
    progress : bool, default False
        Progress bar over molecules (about 20 ms per molecule on one core).

    Returns
    -------
    numpy.ndarray of float64, shape (n_molecules, n_descriptors)
        NaN where RDKit fails or the
        value is not finite.

    Raises
    ------
    InvalidInputError
        If a name is not an RDKit descriptor.

    Examples
    --------
    >>> rdkit_descriptors(["CCO"], names=["MolWt", "NumHDonors"]).round(2)
    array([[46.07,  1.  ]])
    """
    from rdkit import RDLogger
    from rdkit.Chem import Descriptors

    from cellframe._progress import progress as _progress
    from cellframe.activity.chem import _as_mols

    table = dict(Descriptors.descList)
    chosen = list(table) if names is None else list(names)
    unknown = [n for n in chosen if n not in table]
    if unknown:
        raise InvalidInputError(
            f"unknown RDKit descriptor(s) {unknown[:5]}; valid names: "
            "cellframe.activity.descriptors.descriptor_names()"
        )
    functions = [table[n] for n in chosen]
    mols = _as_mols(molecules)
    out = np.full((len(mols), len(chosen)), np.nan, dtype=np.float64)
    RDLogger.DisableLog("rdApp.*")
    try:
        for i, mol in enumerate(
            _progress(mols, total=len(mols), desc="descriptors", unit="mol", enabled=progress)
        ):
            if mol is None:
                continue
            for j, fn in enumerate(functions):
                try:
                    out[i, j] = fn(mol)
                except Exception:  # RDKit raises assorted errors; NaN is the answer
                    pass
    finally:
        RDLogger.EnableLog("rdApp.*")
    out[~np.isfinite(out)] = np.nan
    return out


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
