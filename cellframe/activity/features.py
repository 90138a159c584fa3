"""Feature tables for the activity models: aligning profiles with the assay matrix.

A feature table (MO or GE profiles, Morgan fingerprints, an early-fused table)
has one row per compound keyed by ``Metadata_Compound`` and numeric feature
columns. :func:`align_profiles` orders it like the matrix and reports compounds
of the matrix that have no profile.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from cellframe.activity.columns import COMPOUND
from cellframe.activity.matrix import AssayMatrix
from cellframe.columns import feature_columns
from cellframe.errors import (
    EmptyInputError,
    InvalidChoiceError,
    InvalidInputError,
    MissingColumnsError,
)

__all__ = ["AlignedFeatures", "align_profiles"]


@dataclass
class AlignedFeatures:
    """A matrix and a feature array with the same compounds in the same order.

    Attributes
    ----------
    matrix : AssayMatrix
        The input matrix restricted to compounds with a profile.
    features : numpy.ndarray of float32, shape (n_compounds, n_features)
    feature_names : list of str
    n_missing : int
        Compounds of the matrix without a profile (dropped).
    """

    matrix: AssayMatrix
    features: np.ndarray
    feature_names: list[str]
    n_missing: int


def align_profiles(
    matrix: AssayMatrix,
    profiles: pl.DataFrame | pl.LazyFrame,
    *,
    on_missing: Literal["drop", "error"] = "drop",
    compound_column: str = COMPOUND,
    name: str = "profiles",
) -> AlignedFeatures:
    """Put a per-compound feature table in the order of the matrix's compounds.

    Parameters
    ----------
    matrix : AssayMatrix
    profiles : DataFrame or LazyFrame
        One row per compound; feature columns are every numeric non-metadata column.
    on_missing : {"drop", "error"}, default "drop"
        Compounds of the matrix absent from ``profiles``: drop them with a
        counted warning, or raise.
    compound_column : str, default "Metadata_Compound"
    name : str
        Name of the table for messages (e.g. ``"MO"``).

    Returns
    -------
    AlignedFeatures

    Raises
    ------
    MissingColumnsError
        If ``compound_column`` is absent.
    InvalidInputError
        If a compound has several rows, a feature is missing/NaN, or compounds
        are missing with ``on_missing="error"``.
    EmptyInputError
        If no compound of the matrix has a profile.
    """
    if on_missing not in ("drop", "error"):
        raise InvalidChoiceError(f"on_missing must be 'drop' or 'error', not {on_missing!r}")
    df = profiles.collect() if isinstance(profiles, pl.LazyFrame) else profiles
    if compound_column not in df.columns:
        raise MissingColumnsError(f"the {name} table", [compound_column])
    ids = df[compound_column].cast(pl.String)
    if ids.is_duplicated().any():
        raise InvalidInputError(
            f"the {name} table has {int(ids.is_duplicated().sum())} rows of repeated compounds; "
            "aggregate replicate wells to one profile per compound first"
        )
    cols = feature_columns(df.drop(compound_column))
    if not cols:
        raise InvalidInputError(f"the {name} table has no numeric feature columns")
    position = {c: i for i, c in enumerate(ids.to_list())}
    rows = np.array([position.get(c, -1) for c in matrix.compounds], dtype=np.int64)
    have = rows >= 0
    n_missing = int((~have).sum())
    if n_missing:
        example = [c for c, h in zip(matrix.compounds, have, strict=True) if not h][:3]
        msg = (
            f"{n_missing} of {len(rows)} compounds of the assay matrix have no row in the "
            f"{name} table (e.g. {example})"
        )
        if on_missing == "error":
            raise InvalidInputError(msg + "; add their profiles or pass on_missing='drop'")
        warnings.warn(msg + "; they are left out", stacklevel=2)
    if not have.any():
        raise EmptyInputError(f"no compound of the assay matrix has a row in the {name} table")
    x = df.select(cols).to_numpy().astype(np.float32)[rows[have]]
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).any(axis=1).sum())
        raise InvalidInputError(
            f"the {name} table has NaN/inf features for {bad} compound(s); impute or drop them"
        )
    return AlignedFeatures(
        matrix=matrix.subset(compounds=have), features=x, feature_names=cols, n_missing=n_missing
    )
