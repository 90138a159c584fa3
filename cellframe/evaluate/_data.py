"""Turn a profile frame into a float matrix plus the metadata the metrics need.

Every metric in :mod:`cellframe.evaluate` goes through :func:`profile_matrix`, so
bad input (missing columns, NaN features, all-zero profiles, missing labels) is
caught in one place with one set of messages.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from cellframe.columns import feature_columns, missing_columns
from cellframe.errors import EmptyInputError, InvalidInputError, MissingColumnsError

__all__ = ["ProfileMatrix", "default_block_rows", "profile_matrix"]

#: Bytes one block of the similarity engine may use (several b x n temporaries).
DEFAULT_BLOCK_BYTES = 512 * 2**20


@dataclass
class ProfileMatrix:
    """Profiles as a dense matrix and the metadata kept beside it.

    Attributes
    ----------
    meta : polars.DataFrame
        The requested metadata columns plus ``row`` (0-based position in the input).
    x : numpy.ndarray, shape (n, d)
        Features, float32 or float64.
    valid : numpy.ndarray of bool, shape (n,)
        Rows that may take part (non-zero norm, labels present).
    features : list of str
        The feature columns, in matrix order.
    """

    meta: pl.DataFrame
    x: np.ndarray
    valid: np.ndarray
    features: list[str]

    @property
    def n(self) -> int:
        """Number of profiles."""
        return self.x.shape[0]


def _as_frame(profiles: pl.DataFrame | pl.LazyFrame, what: str) -> pl.DataFrame:
    if isinstance(profiles, pl.LazyFrame):
        return profiles.collect()
    if isinstance(profiles, pl.DataFrame):
        return profiles
    raise InvalidInputError(
        f"{what}: expected a Polars DataFrame or LazyFrame, got {type(profiles).__name__}"
    )


def profile_matrix(
    profiles: pl.DataFrame | pl.LazyFrame,
    *,
    features: Sequence[str] | None = None,
    metadata: Sequence[str] = (),
    required_labels: Sequence[str] = (),
    dtype: type[np.floating] = np.float32,
    zero_norm: str = "warn",
    what: str = "profiles",
) -> ProfileMatrix:
    """Collect ``profiles`` into a feature matrix and checked metadata.

    Parameters
    ----------
    profiles : polars.DataFrame or LazyFrame
        One row per profile, ``Metadata_*`` columns and numeric features.
    features : sequence of str, optional
        Feature columns; by default every numeric non-``Metadata_`` column.
    metadata : sequence of str
        Metadata columns to keep (they must exist).
    required_labels : sequence of str
        Columns whose null values make a row unusable: such rows are marked
        invalid and counted in one warning.
    dtype : numpy float type, default float32
        Matrix dtype.
    zero_norm : {"warn", "raise", "ignore"}
        What to do with all-zero profiles, whose cosine similarity is undefined:
        mark them invalid with a counted warning (default), raise, or only
        mark them invalid.
    what : str
        Name used in messages.

    Returns
    -------
    ProfileMatrix

    Raises
    ------
    MissingColumnsError
        If a feature or metadata column is absent.
    EmptyInputError
        If there are no rows or no feature columns.
    InvalidInputError
        If a feature holds NaN or infinite values (the message names the worst
        columns and how many values), or ``zero_norm="raise"`` and a profile is all zero.
    """
    df = _as_frame(profiles, what)
    wanted_meta = list(dict.fromkeys([*metadata, *required_labels]))
    missing = missing_columns(df.columns, wanted_meta)
    if missing:
        raise MissingColumnsError(
            what, missing, "name an existing label/metadata column or add it to the table"
        )
    feats = list(features) if features is not None else feature_columns(df)
    missing = missing_columns(df.columns, feats)
    if missing:
        raise MissingColumnsError(what, missing, "pass features= that exist in the table")
    if not feats:
        raise EmptyInputError(f"{what} has no feature columns (numeric, not Metadata_*)")
    if df.height == 0:
        raise EmptyInputError(f"{what} has no rows")
    x = df.select(pl.col(feats).cast(pl.Float64 if dtype == np.float64 else pl.Float32))
    x = x.to_numpy(order="c")
    if x.dtype != dtype:
        x = x.astype(dtype)
    bad = ~np.isfinite(x)
    if not bad.any():
        del bad
    else:
        per_col = bad.sum(axis=0)
        worst = np.argsort(-per_col)[:5]
        named = ", ".join(f"{feats[i]!r} ({per_col[i]})" for i in worst if per_col[i])
        raise InvalidInputError(
            f"{what} has {int(bad.sum())} NaN/infinite feature values in "
            f"{int((per_col > 0).sum())} column(s), e.g. {named}; drop or impute them "
            "first (for example pl.col(features).fill_nan(None).fill_null(strategy='mean') "
            "or drop those columns)"
        )
    meta = df.select(wanted_meta).with_row_index("row")
    valid = np.ones(df.height, dtype=bool)
    zero = ~np.any(x != 0, axis=1)
    if zero.any():
        n_zero = int(zero.sum())
        msg = (
            f"{n_zero} of {df.height} {what} rows are all zero: cosine similarity is "
            "undefined for them, so they are left out of every ranking"
        )
        if zero_norm == "raise":
            raise InvalidInputError(msg + "; remove them first")
        if zero_norm == "warn":
            warnings.warn(msg, RuntimeWarning, stacklevel=3)
        valid &= ~zero
    for col in required_labels:
        nulls = df[col].is_null().to_numpy()
        if df[col].dtype == pl.String:
            nulls |= (df[col].str.strip_chars() == "").fill_null(True).to_numpy()
        if nulls.all():
            raise InvalidInputError(
                f"{what}: column {col!r} is null in every row; fill the labels "
                "(e.g. join an annotation table) before evaluating"
            )
        if nulls.any():
            warnings.warn(
                f"{int(nulls.sum())} of {df.height} {what} rows have no {col!r}; "
                "they are left out (neither queries nor candidates)",
                RuntimeWarning,
                stacklevel=3,
            )
            valid &= ~nulls
    return ProfileMatrix(meta=meta, x=x, valid=valid, features=feats)


def default_block_rows(
    n: int, *, bytes_per_cell: int = 16, budget: int = DEFAULT_BLOCK_BYTES
) -> int:
    """Query rows per block so that ``rows x n`` temporaries stay within ``budget`` bytes."""
    return int(max(1, min(n, budget // max(1, n * bytes_per_cell))))


def encode(series: pl.Series) -> np.ndarray:
    """Integer codes of a column (equal values, equal codes; nulls get their own code)."""
    return series.rank("dense").fill_null(0).to_numpy().astype(np.int32)
