"""Consensus profiles: one profile per treatment from its replicate wells (DOMAIN.md §7).

Two methods, as pycytominer's ``consensus(..., operation=...)``:

* ``"median"``: the per-feature median of the replicates (missing values skipped);
* ``"modz"``: the moderated z-score of CMap, a weighted sum of the replicates
  whose weights are each replicate's mean Spearman correlation with the other
  replicates (correlations below 0 set to 0, weights clipped at ``min_weight``
  = 0.01), normalized to sum 1 and rounded to ``precision`` = 4 decimals
  (pycytominer's ``modz``; equal to it to 1e-6 on real profiles).

A consensus reads every replicate of a group, so it gathers the rows of the
groups it forms (a per-plate function only when every replicate group lies
on one plate).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import polars as pl

from cellframe.columns import COUNT_CELLS, FEATURE_DTYPE, TREATMENT
from cellframe.errors import InvalidInputError
from cellframe.profiles._common import require_columns, resolve_features, resolve_method, to_numpy64
from cellframe.profiles.aggregate import _carried_exprs, _carry_columns

__all__ = ["CONSENSUS_METHODS", "N_REPLICATES", "consensus", "modz_weights"]

#: Output column counting the replicate rows behind each consensus profile.
N_REPLICATES = "Metadata_N_Replicates"

#: Correlations modz can weight replicates by (pycytominer's ``modz_args["method"]``).
_CORRELATIONS = ("spearman", "pearson")


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks of each row's values (NaN stays NaN)."""
    from scipy.stats import rankdata

    return rankdata(x, method="average", axis=1, nan_policy="omit")


def _row_correlation(x: np.ndarray, method: str) -> np.ndarray:
    """Correlation of every pair of rows of ``x`` over the columns both hold (as pandas' ``corr``)."""
    k = x.shape[0]
    missing = np.isnan(x)
    if not missing.any():
        y = _ranks(x) if method == "spearman" else x
        y = y - y.mean(axis=1, keepdims=True)
        norm = np.sqrt((y * y).sum(axis=1))
        with np.errstate(invalid="ignore", divide="ignore"):
            r = (y @ y.T) / np.outer(norm, norm)
        return np.clip(r, -1.0, 1.0)
    r = np.full((k, k), np.nan)
    for i in range(k):
        for j in range(i, k):
            both = ~missing[i] & ~missing[j]
            if both.sum() < 2:
                continue
            a, b = x[i, both], x[j, both]
            if method == "spearman":
                a, b = _ranks(a[None])[0], _ranks(b[None])[0]
            a, b = a - a.mean(), b - b.mean()
            den = np.sqrt((a @ a) * (b @ b))
            r[i, j] = r[j, i] = np.clip((a @ b) / den, -1.0, 1.0) if den > 0 else np.nan
    return r


def modz_weights(
    x: np.ndarray,
    *,
    correlation: str = "spearman",
    min_weight: float = 0.01,
    precision: int | None = 4,
) -> np.ndarray:
    """The modz weight of each replicate (rows of ``x``, features as columns).

    Weight of replicate i: the mean of its correlations with the other
    replicates, each clipped below at 0; then clipped below at
    ``min_weight``, divided by the sum of all, and rounded to ``precision``
    decimals (pycytominer's convention; ``None``: no rounding). A replicate
    whose correlations are all undefined (a constant profile) gets
    ``min_weight``. A single replicate gets weight 1.

    Parameters
    ----------
    x : numpy.ndarray, shape (k, d)
        The replicates (NaN for missing values; correlations are then
        taken over the features both replicates hold).
    correlation : {"spearman", "pearson"}, default "spearman"
    min_weight : float, default 0.01
    precision : int or None, default 4

    Returns
    -------
    numpy.ndarray, shape (k,)

    Examples
    --------
    >>> x = np.array([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 4.0, 3.0], [4.0, 3.0, 2.0, 1.0]])
    >>> modz_weights(x).tolist()
    [0.4938, 0.4938, 0.0123]
    """
    if correlation not in _CORRELATIONS:
        raise InvalidInputError(
            f"unknown modz correlation {correlation!r}; valid: {', '.join(map(repr, _CORRELATIONS))}"
        )
    k = x.shape[0]
    if k == 1:
        return np.ones(1)
    r = _row_correlation(x, correlation)
    np.fill_diagonal(r, np.nan)
    r = np.where(np.isnan(r), np.nan, np.maximum(r, 0.0))
    with np.errstate(invalid="ignore"):
        counts = (~np.isnan(r)).sum(axis=1)
        raw = np.where(counts > 0, np.nansum(r, axis=1) / np.maximum(counts, 1), min_weight)
    raw = np.maximum(raw, min_weight)
    total = raw.sum()
    weights = raw / total if total > 0 else np.full(k, 1.0 / k)
    return np.round(weights, precision) if precision is not None else weights


def _weighted(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Sum of w_i x_i per feature; a missing value's weight goes to the present ones.

    Without missing values this is pycytominer's plain weighted sum (its
    rounded weights kept as they are); a feature missing in every replicate
    stays missing.
    """
    present = ~np.isnan(x)
    if present.all():
        return w @ x
    wp = (w[:, None] * present).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        total = (w[:, None] * np.where(present, x, 0.0)).sum(axis=0)
        return np.where(wp > 0, total * (w.sum() / np.where(wp > 0, wp, 1.0)), np.nan)


def _median(x: np.ndarray, **_: Any) -> np.ndarray:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN features
        return np.nanmedian(x, axis=0)


def _modz(
    x: np.ndarray, *, correlation: str, min_weight: float, precision: int | None
) -> np.ndarray:
    w = modz_weights(x, correlation=correlation, min_weight=min_weight, precision=precision)
    return x[0].copy() if x.shape[0] == 1 else _weighted(x, w)


#: Consensus methods: ``f(replicates (k, d), **modz options) -> (d,)``.
CONSENSUS_METHODS: dict[str, Callable[..., np.ndarray]] = {"median": _median, "modz": _modz}


def consensus(
    lf: pl.LazyFrame | pl.DataFrame,
    method: str | Callable[..., np.ndarray] = "median",
    *,
    by: str | Sequence[str] = (TREATMENT,),
    features: Sequence[str] | None = None,
    correlation: str = "spearman",
    min_weight: float = 0.01,
    precision: int | None = 4,
    keep: Sequence[str] | str | None = "auto",
) -> pl.LazyFrame:
    """One consensus profile per replicate group (a treatment, or a treatment and dose).

    Parameters
    ----------
    lf : polars.LazyFrame or DataFrame
        Replicate profiles (usually normalized, feature-selected wells).
    method : {"median", "modz"} or callable, default "median"
        ``"median"``: per-feature median. ``"modz"``: Spearman-weighted sum
        (see :func:`modz_weights`). A callable maps a ``(k, d)`` float64 array
        of one group's replicates to its ``(d,)`` consensus.
    by : str or sequence of str, default ("Metadata_Treatment",)
        The replicate-group columns (pycytominer's ``replicate_columns``),
        e.g. ``["Metadata_broad_sample", "Metadata_mg_per_ml"]``. Rows with a
        null key form their own group, as pandas' ``groupby(dropna=False)``.
    features : sequence of str, optional
        Features (default: every numeric non-metadata column).
    correlation : {"spearman", "pearson"}, default "spearman"
        modz only: the correlation the weights come from.
    min_weight : float, default 0.01
        modz only: smallest weight before normalization.
    precision : int or None, default 4
        modz only: decimals the weights are rounded to (pycytominer's; ``None``: none).
    keep : "auto", list of str or None, default "auto"
        Metadata carried to the consensus rows; a column not constant within a
        group is null there (as :func:`~cellframe.profiles.aggregate_by`).

    Returns
    -------
    polars.LazyFrame
        One row per group, sorted by ``by``: the group columns,
        ``Metadata_N_Replicates``, ``Metadata_Count_Cells`` (the sum, when the
        input has it), carried metadata, then the features (Float32).

    Raises
    ------
    MissingColumnsError
        If a group column or a feature is absent.
    InvalidInputError
        For an unknown method or correlation, or ``min_weight`` < 0.

    Notes
    -----
    Missing values are skipped: the median of the values present; in modz
    they are left out of each pairwise correlation, and the weight of a
    missing value is shared among the replicates that have one (pycytominer
    counts it as 0). A feature missing in every replicate stays missing.

    Examples
    --------
    >>> import polars as pl
    >>> wells = pl.LazyFrame({"Metadata_Treatment": ["a", "a", "a", "b"],
    ...                       "f": [1.0, 2.0, 10.0, 5.0], "g": [0.0, 1.0, 2.0, 3.0]})
    >>> consensus(wells).collect()["f"].to_list()
    [2.0, 5.0]
    """
    fn = resolve_method(method, CONSENSUS_METHODS, "consensus method")
    if correlation not in _CORRELATIONS:
        raise InvalidInputError(
            f"unknown modz correlation {correlation!r}; valid: {', '.join(map(repr, _CORRELATIONS))}"
        )
    if not min_weight >= 0:
        raise InvalidInputError(f"min_weight must be >= 0, not {min_weight!r}")
    by = [by] if isinstance(by, str) else list(by)
    lf = lf.lazy()
    where = "the profiles to form consensus profiles from"
    require_columns(lf, by, where, "name the replicate-group columns in by=")
    schema = lf.collect_schema()
    feats = [f for f in resolve_features(lf, features, where) if f not in by and f != COUNT_CELLS]
    carry = [c for c in _carry_columns(schema, by, keep) if c != N_REPLICATES]
    df = lf.select(
        list(
            dict.fromkeys([*by, *carry, *feats, *([COUNT_CELLS] if COUNT_CELLS in schema else [])])
        )
    ).collect()
    df = df.with_row_index("__cf_i__")
    meta_aggs = [pl.len().cast(pl.Int64).alias(N_REPLICATES)]
    if COUNT_CELLS in schema:
        meta_aggs.append(pl.col(COUNT_CELLS).sum().cast(pl.Int64).alias(COUNT_CELLS))
    groups = (
        df.group_by(by)
        .agg([*meta_aggs, *_carried_exprs(carry), pl.col("__cf_i__")])
        .sort(by, nulls_last=True)
    )
    x = to_numpy64(df, feats)
    options = {"correlation": correlation, "min_weight": min_weight, "precision": precision}
    if callable(method) and not isinstance(method, str):
        options = {}
    out = np.empty((groups.height, len(feats)))
    for g, rows in enumerate(groups["__cf_i__"].to_list()):
        out[g] = fn(x[np.asarray(rows, dtype=np.int64)], **options)
    values = pl.DataFrame(
        {f: out[:, j] for j, f in enumerate(feats)}, schema=dict.fromkeys(feats, pl.Float64)
    ).with_columns(pl.all().cast(FEATURE_DTYPE))
    return groups.drop("__cf_i__").hstack(values.get_columns()).lazy()
