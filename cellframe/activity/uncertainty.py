"""Uncertainty a user can act on: ensemble spread and the applicability domain.

Issue #19. Two per-compound numbers go beside each prediction:

* the spread of the predicted probability across an ensemble (models of
  several types or seeds): the standard deviation over its members;
* the applicability domain: the Tanimoto similarity of the compound's Morgan
  fingerprint (radius 2, 2048 bits) to its nearest training compound, and a
  flag when it is below :data:`DOMAIN_THRESHOLD`.

A compound outside the domain is not wrong, but its prediction extrapolates
from compounds unlike it; rank such compounds last or test them first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from cellframe.errors import InvalidInputError, MissingColumnsError

__all__ = [
    "DOMAIN_THRESHOLD",
    "applicability_domain",
    "max_train_similarity",
    "nearest_similarity",
    "prediction_spread",
]

#: Nearest-training-neighbour Tanimoto (Morgan radius 2, 2048 bits) below which a
#: compound is flagged as outside the applicability domain. Pairs of unrelated
#: drug-like molecules mostly score below 0.3 on ECFP4-like fingerprints, so a
#: compound with no training neighbour above it has no close analogue there.
DOMAIN_THRESHOLD = 0.3


def _bit_vectors(molecules: Sequence[Any], radius: int, n_bits: int) -> list[Any]:
    from rdkit.Chem import rdFingerprintGenerator

    from cellframe.activity.chem import _as_mols

    gen = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    return [None if m is None else gen.GetFingerprint(m) for m in _as_mols(molecules)]


def max_train_similarity(
    train: Sequence[Any], query: Sequence[Any], *, radius: int = 2, n_bits: int = 2048
) -> np.ndarray:
    """Tanimoto similarity of each query molecule to its nearest training molecule.

    Parameters
    ----------
    train, query : sequence of str or rdkit Mol
        SMILES or molecules; an unparseable query gets NaN, an unparseable
        training molecule is skipped.
    radius, n_bits : int
        Morgan fingerprint settings (2 and 2048: ECFP4-like, DOMAIN.md §6).

    Returns
    -------
    numpy.ndarray of float64, shape (len(query),)
        In [0, 1]; 1.0 for a molecule that is in the
        training set.

    Raises
    ------
    InvalidInputError
        If no training molecule parses.

    Examples
    --------
    >>> max_train_similarity(["CCO", "CCCO"], ["CCO", "c1ccccc1"]).round(3).tolist()
    [1.0, 0.0]
    """
    ref = [fp for fp in _bit_vectors(train, radius, n_bits) if fp is not None]
    if not ref:
        raise InvalidInputError(
            "max_train_similarity: no training molecule parses; give the training SMILES"
        )
    return nearest_similarity(query, ref, radius=radius, n_bits=n_bits)


def nearest_similarity(
    query: Sequence[Any], reference: Sequence[Any], *, radius: int = 2, n_bits: int = 2048
) -> np.ndarray:
    """Largest Tanimoto similarity of each query molecule to reference fingerprints.

    The loop of :func:`max_train_similarity`, for a caller that holds the training
    fingerprints already (a saved model keeps them, not the molecules).

    Parameters
    ----------
    query : sequence of str or rdkit Mol
        An unparseable query gets NaN.
    reference : sequence of rdkit ExplicitBitVect
        Morgan fingerprints made with the same ``radius`` and ``n_bits``; not empty.
    radius, n_bits : int

    Returns
    -------
    numpy.ndarray of float64, shape (len(query),)

    Examples
    --------
    >>> from rdkit import Chem
    >>> from rdkit.Chem import rdFingerprintGenerator
    >>> gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    >>> ref = [gen.GetFingerprint(Chem.MolFromSmiles(s)) for s in ["CCO", "CCCO"]]
    >>> nearest_similarity(["CCO", "c1ccccc1"], ref).round(3).tolist()
    [1.0, 0.0]
    """
    from rdkit import DataStructs

    out = np.full(len(query), np.nan, dtype=np.float64)
    for i, fp in enumerate(_bit_vectors(query, radius, n_bits)):
        if fp is not None:
            out[i] = max(DataStructs.BulkTanimotoSimilarity(fp, reference))
    return out


def applicability_domain(
    train: Sequence[Any], query: Sequence[Any], *, threshold: float = DOMAIN_THRESHOLD
) -> pl.DataFrame:
    """Nearest-training-neighbour similarity and the in-domain flag of each query molecule.

    Parameters
    ----------
    train, query : sequence of str or rdkit Mol
    threshold : float, default :data:`DOMAIN_THRESHOLD` (0.3)
        A query is in the domain when its similarity is at least this.

    Returns
    -------
    polars.DataFrame
        ``train_similarity`` (Float64; null for an unparseable query) and
        ``in_domain`` (Boolean; null where the similarity is), one row per query.

    Raises
    ------
    InvalidInputError
        If ``threshold`` is not in [0, 1].
    """
    if not 0.0 <= float(threshold) <= 1.0:
        raise InvalidInputError(
            f"applicability_domain(threshold={threshold!r}): a Tanimoto similarity lies in "
            f"[0, 1]; the default is {DOMAIN_THRESHOLD}"
        )
    sim = pl.Series("train_similarity", max_train_similarity(train, query)).fill_nan(None)
    return pl.DataFrame([sim]).with_columns(
        (pl.col("train_similarity") >= float(threshold)).alias("in_domain")
    )


def prediction_spread(
    predictions: pl.DataFrame,
    *,
    keys: Sequence[str] = ("compound", "assay"),
    member: str = "model",
    probability: str = "probability",
) -> pl.DataFrame:
    """Mean and spread of each compound's predicted probability across ensemble members.

    Parameters
    ----------
    predictions : polars.DataFrame
        Long predictions, one row per member and (compound, assay), as
        :attr:`~cellframe.activity.HoldoutResult.predictions`.
    keys : sequence of str, default ("compound", "assay")
        What one prediction is.
    member : str, default "model"
        The column naming the ensemble member (a model or a seed).
    probability : str, default "probability"

    Returns
    -------
    polars.DataFrame
        ``keys`` then ``ensemble_mean`` (mean probability), ``ensemble_spread``
        (population standard deviation over the members; 0 for one member) and
        ``n_members``, in order of first appearance.

    Raises
    ------
    MissingColumnsError
        If a column is absent.
    InvalidInputError
        If a member predicts one (compound, assay) twice.

    Examples
    --------
    >>> p = pl.DataFrame({"compound": ["a", "a"], "assay": ["t", "t"],
    ...                   "model": ["rf", "lgbm"], "probability": [0.25, 0.75]})
    >>> prediction_spread(p).rows()
    [('a', 't', 0.5, 0.25, 2)]
    """
    cols = [*keys, member, probability]
    missing = [c for c in cols if c not in predictions.columns]
    if missing:
        raise MissingColumnsError("the predictions", missing)
    twice = predictions.select([*keys, member]).is_duplicated()
    if twice.any():
        row = predictions.filter(twice).row(0, named=True)
        raise InvalidInputError(
            f"the predictions hold {int(twice.sum())} rows that repeat a (member, "
            f"{', '.join(keys)}) pair, e.g. {row[member]!r} for "
            f"{', '.join(repr(row[k]) for k in keys)}; give one prediction per member"
        )
    p = pl.col(probability).cast(pl.Float64)
    return predictions.group_by(list(keys), maintain_order=True).agg(
        p.mean().alias("ensemble_mean"),
        p.std(ddof=0).alias("ensemble_spread"),
        pl.len().cast(pl.Int64).alias("n_members"),
    )
