"""Feature selection with pycytominer 1.7's operations, names and defaults (DOMAIN.md §2).

One function per operation; each returns a :class:`FeatureSelection` saying
which features it drops and why. :func:`feature_select` applies a list of
operations in order, each on the features the previous ones kept, as
pycytominer's ``feature_select(operation=[...])`` does.

=========================  ==========================================================
operation                  drops a feature when (defaults)
=========================  ==========================================================
``variance_threshold``     population variance <= ``min_variance`` (1e-6), or undefined
``frequency_threshold``    2nd / 1st most common value count < ``freq_cut`` (0.05) OR
                           distinct values / rows < ``unique_cut`` (0.01)
``correlation_threshold``  r > ``corr_threshold`` (0.9) with another feature (Pearson,
                           Spearman or Kendall tau-b): of each such pair, the one with
                           the larger sum of |r| (pycytominer, all pairs at once), or
                           iteratively
``drop_na_columns``        fraction missing > ``na_cutoff`` (0.05)
``blocklist``              in pycytominer's default blocklist (or a given one)
``drop_outliers``          max |x| > ``outlier_cutoff`` (500)
``noise_removal``          mean over perturbation groups of the within-group std >
                           ``stdev_cutoff`` (0.8); needs ``perturb_groups`` (a column)
=========================  ==========================================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from cellframe.errors import InvalidInputError
from cellframe.profiles._common import (
    RowFilter,
    filter_columns,
    require_columns,
    resolve_features,
    row_filter,
    to_numpy64,
)
from cellframe.profiles._fitted import ColumnStatistics, Rows

__all__ = [
    "OPERATIONS",
    "FeatureSelection",
    "FeatureSelector",
    "SelectionStatistics",
    "blocklist",
    "correlation_threshold",
    "default_blocklist",
    "drop_na_columns",
    "drop_outliers",
    "feature_select",
    "frequency_threshold",
    "noise_removal",
    "select_features",
    "variance_threshold",
]

_DROPPED_SCHEMA = {"feature": pl.String, "operation": pl.String, "reason": pl.String}


@dataclass(frozen=True)
class FeatureSelection:
    """Result of feature selection: kept features, and dropped ones with the reason.

    Attributes
    ----------
    kept : list of str
        Features kept, in input order.
    dropped : polars.DataFrame
        Columns ``feature``, ``operation``, ``reason``; one row per dropped feature.
    """

    kept: list[str]
    dropped: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=_DROPPED_SCHEMA))

    @property
    def dropped_features(self) -> list[str]:
        """Names of the dropped features."""
        return self.dropped["feature"].to_list()

    def apply(self, lf: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
        """Remove the dropped features from ``lf`` (other columns stay)."""
        lf = lf.lazy()
        present = set(lf.collect_schema())
        return lf.drop([f for f in self.dropped_features if f in present])


def _result(features: Sequence[str], drops: Mapping[str, str], operation: str) -> FeatureSelection:
    dropped = pl.DataFrame(
        {
            "feature": [f for f in features if f in drops],
            "operation": [operation] * sum(1 for f in features if f in drops),
            "reason": [drops[f] for f in features if f in drops],
        },
        schema=_DROPPED_SCHEMA,
    )
    return FeatureSelection(kept=[f for f in features if f not in drops], dropped=dropped)


def _prepare(
    profiles: pl.LazyFrame | pl.DataFrame,
    features: Sequence[str] | None,
    samples: RowFilter,
) -> tuple[list[str], np.ndarray]:
    lf = profiles.lazy()
    feats = resolve_features(lf, features, "the profiles to select features from")
    predicate = row_filter(samples)
    if predicate is not None:
        require_columns(lf, list(predicate.meta.root_names()), "the profiles", "check samples=")
        lf = lf.filter(predicate)
    df = lf.select(feats).collect()
    if df.height == 0:
        from cellframe.errors import EmptyInputError

        raise EmptyInputError(f"no rows to select features on (samples={samples!r})")
    return feats, to_numpy64(df, feats)


def _check_variance_params(min_variance: float) -> None:
    if min_variance < 0:
        raise InvalidInputError("min_variance must be non-negative")


def _variance_drops(
    features: Sequence[str], variance: np.ndarray, min_variance: float
) -> dict[str, str]:
    """Drop rule of :func:`variance_threshold` from per-feature variances (NaN: no values)."""
    drops = {}
    for f, v in zip(features, variance, strict=True):
        if not np.isfinite(v):
            drops[f] = "variance undefined (no non-missing values)"
        elif v <= min_variance:
            drops[f] = f"variance {v:.3g} <= min_variance {min_variance:g}"
    return drops


def variance_threshold(
    profiles: pl.LazyFrame | pl.DataFrame,
    *,
    features: Sequence[str] | None = None,
    samples: RowFilter = "all",
    min_variance: float = 1e-6,
) -> FeatureSelection:
    """Drop features whose population variance is at most ``min_variance``.

    As scikit-learn's ``VarianceThreshold`` in pycytominer: variance with
    ddof=0 over non-missing values; a feature with no values has no variance
    and is dropped. A feature whose values are all equal has variance exactly
    0 (not the rounding residue of its mean).

    Examples
    --------
    >>> import polars as pl
    >>> df = pl.DataFrame({"a": [1.0, 1.0, 1.0], "b": [0.0, 1.0, 2.0]})
    >>> variance_threshold(df).dropped_features
    ['a']
    """
    _check_variance_params(min_variance)
    feats, x = _prepare(profiles, features, samples)
    import warnings

    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        var = np.nanvar(x, axis=0)
        constant = np.nanmin(x, axis=0) == np.nanmax(x, axis=0) if x.size else var == 0
    var = np.where(constant, 0.0, var)
    return _result(feats, _variance_drops(feats, var, min_variance), "variance_threshold")


def _check_frequency_params(freq_cut: float, unique_cut: float) -> None:
    if not 0 <= freq_cut <= 1:
        raise InvalidInputError("freq_cut must be between 0 and 1")
    if not 0 <= unique_cut <= 1:
        raise InvalidInputError("unique_cut must be between 0 and 1")


def _frequency_drops(
    features: Sequence[str],
    value_counts: Sequence[np.ndarray],
    n_rows: int,
    freq_cut: float,
    unique_cut: float,
) -> dict[str, str]:
    """Drop rule of :func:`frequency_threshold` from each feature's value-count array.

    ``value_counts[j]`` holds how often each distinct non-missing value of
    feature ``j`` occurs (any order); ``n_rows`` counts every row, missing or not.
    """
    drops = {}
    for f, counts in zip(features, value_counts, strict=True):
        n_unique = counts.size
        if n_unique < 2:
            ratio = 0.0
        else:
            top2 = np.partition(counts, n_unique - 2)[-2:]
            ratio = float(top2[0] / top2[1])
        unique_ratio = n_unique / n_rows
        reasons = []
        if ratio < freq_cut:
            reasons.append(f"2nd/1st most common value count {ratio:.3g} < freq_cut {freq_cut:g}")
        if unique_ratio < unique_cut:
            reasons.append(f"distinct/rows {unique_ratio:.3g} < unique_cut {unique_cut:g}")
        if reasons:
            drops[f] = "; ".join(reasons)
    return drops


def frequency_threshold(
    profiles: pl.LazyFrame | pl.DataFrame,
    *,
    features: Sequence[str] | None = None,
    samples: RowFilter = "all",
    freq_cut: float = 0.05,
    unique_cut: float = 0.01,
) -> FeatureSelection:
    """Drop features dominated by one value or with few distinct values.

    A feature is dropped when (count of its 2nd most common value) / (count of
    its most common value) < ``freq_cut`` (0 when it has fewer than two
    distinct values), or (distinct non-missing values) / (rows) < ``unique_cut``
    (pycytominer 1.7's rule: either condition drops).
    """
    _check_frequency_params(freq_cut, unique_cut)
    feats, x = _prepare(profiles, features, samples)
    counts = []
    for j in range(len(feats)):
        col = x[:, j]
        counts.append(np.unique(col[~np.isnan(col)], return_counts=True)[1])
    drops = _frequency_drops(feats, counts, x.shape[0], freq_cut, unique_cut)
    return _result(feats, drops, "frequency_threshold")


def _pearson(x: np.ndarray) -> np.ndarray:
    """Pearson correlation matrix; pairwise-complete when values are missing (as pandas)."""
    import warnings

    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        if not np.isnan(x).any() and not np.isinf(x).any():
            c = np.corrcoef(x, rowvar=False)
            return np.atleast_2d(c)
        # Columns without missing values: one corrcoef. A column with missing
        # values: centred (two-pass) sums over its rows against every other
        # column, as pandas' pairwise-complete ``DataFrame.corr``.
        d = x.shape[1]
        missing = np.isnan(x).any(axis=0)
        full = np.flatnonzero(~missing)
        part = np.flatnonzero(missing)
        c = np.full((d, d), np.nan)
        if full.size:
            c[np.ix_(full, full)] = np.atleast_2d(np.corrcoef(x[:, full], rowvar=False))

        def centred_r(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            if a.shape[0] < 2:
                return np.full(b.shape[1], np.nan)
            a = a - a.mean()
            b = b - b.mean(axis=0)
            den = np.sqrt((a @ a) * (b * b).sum(axis=0))
            r = (a @ b) / den
            r[den == 0] = np.nan
            return np.clip(r, -1.0, 1.0)

        for k, i in enumerate(part):
            rows = ~np.isnan(x[:, i])
            if full.size:
                r = centred_r(x[rows, i], x[np.ix_(rows, full)])
                c[i, full] = r
                c[full, i] = r
            for j in part[k:]:
                both = rows & ~np.isnan(x[:, j])
                r = centred_r(x[both, i], x[both, j][:, None])[0]
                c[i, j] = c[j, i] = r
        return c


def _spearman(x: np.ndarray) -> np.ndarray:
    """Spearman correlation matrix: Pearson r of average ranks, pairwise-complete (as pandas).

    Without missing values every column is ranked once; a pair involving a
    column with missing values is ranked again over the rows both hold.
    """
    from scipy.stats import rankdata

    missing = np.isnan(x)
    if not missing.any():
        return _pearson(rankdata(x, method="average", axis=0))
    d = x.shape[1]
    c = np.full((d, d), np.nan)
    full = np.flatnonzero(~missing.any(axis=0))
    if full.size:
        c[np.ix_(full, full)] = _pearson(rankdata(x[:, full], method="average", axis=0))
    for i in np.flatnonzero(missing.any(axis=0)):
        for j in range(d):
            if j in full or j >= i:
                both = ~missing[:, i] & ~missing[:, j]
                if both.sum() < 2:
                    r = np.nan
                else:
                    pair = rankdata(x[np.ix_(both, [i, j])], method="average", axis=0)
                    r = _pearson(pair)[0, 1]
                c[i, j] = c[j, i] = r
    return c


#: Sign products are summed in blocks of about this many row pairs.
_KENDALL_BLOCK = 32768


def _kendall(x: np.ndarray) -> np.ndarray:
    """Kendall tau-b matrix, pairwise-complete (as pandas / scipy's ``kendalltau``).

    tau-b = sum over row pairs of sign(dx_i) sign(dx_j), divided by
    sqrt(pairs untied in i * pairs untied in j), all over the rows where both
    features are present; the sums are matrix products of the pairwise sign
    differences, built a block of row pairs at a time (exact: integer counts).
    """
    n, d = x.shape
    missing = np.isnan(x)
    any_missing = missing.any()
    num = np.zeros((d, d))
    den = np.zeros((d, d)) if any_missing else np.zeros(d)
    signs: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    pending = 0

    def flush() -> None:
        nonlocal pending
        if not signs:
            return
        s = np.concatenate(signs).astype(np.float32)
        num[...] += (s.T @ s).astype(np.float64)
        a = np.abs(s)
        if any_missing:
            m = np.concatenate(masks).astype(np.float32)
            den[...] += (a.T @ m).astype(np.float64)
        else:
            den[...] += a.sum(axis=0, dtype=np.float64)
        signs.clear()
        masks.clear()
        pending = 0

    with np.errstate(invalid="ignore"):
        for i in range(n - 1):
            diff = np.sign(x[i + 1 :] - x[i])
            signs.append(np.nan_to_num(diff, nan=0.0).astype(np.int8))
            if any_missing:
                masks.append((~missing[i + 1 :] & ~missing[i]).astype(np.int8))
            pending += n - 1 - i
            if pending >= _KENDALL_BLOCK:
                flush()
    flush()
    with np.errstate(invalid="ignore", divide="ignore"):
        if any_missing:
            tau = num / np.sqrt(den * den.T)
        else:
            tau = num / np.sqrt(np.outer(den, den))
    tau[~np.isfinite(tau)] = np.nan
    np.fill_diagonal(tau, 1.0)  # as pandas, even for a constant feature
    return np.clip(tau, -1.0, 1.0)


#: Correlation coefficients of :func:`correlation_threshold` (pycytominer's ``corr_method``).
CORRELATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "pearson": lambda x: _pearson(x),
    "spearman": _spearman,
    "kendall": _kendall,
}


def _check_correlation_params(threshold: float, method: str, strategy: str) -> None:
    if method not in CORRELATIONS:
        raise InvalidInputError(
            f"unknown correlation method {method!r}; valid: {', '.join(map(repr, CORRELATIONS))}"
        )
    if not 0 <= threshold <= 1:
        raise InvalidInputError("threshold must be between 0 and 1")
    if strategy not in ("pycytominer", "iterative"):
        raise InvalidInputError(f"unknown strategy {strategy!r}; valid: 'pycytominer', 'iterative'")


def _correlation_drops(
    feats: Sequence[str], corr: np.ndarray, threshold: float, strategy: str
) -> dict[str, str]:
    """Drop rule of :func:`correlation_threshold` from a correlation matrix (NaN: undefined)."""
    drops: dict[str, str] = {}
    if strategy == "pycytominer":
        total = np.nansum(np.abs(corr), axis=0)
        # pandas' Series.sort_values uses numpy quicksort: same order for ties.
        order = np.argsort(total, kind="quicksort")
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        rows, cols = np.nonzero(np.tril(np.nan_to_num(corr, nan=-np.inf) > threshold, k=-1))
        for a, b in zip(rows, cols, strict=True):
            drop, other = (a, b) if rank[a] > rank[b] else (b, a)
            if feats[drop] not in drops:
                drops[feats[drop]] = (
                    f"r = {corr[a, b]:.4f} > {threshold:g} with {feats[other]!r}; "
                    f"larger sum |r| ({total[drop]:.4g} vs {total[other]:.4g})"
                )
        return drops
    a = np.abs(np.nan_to_num(corr, nan=0.0))
    np.fill_diagonal(a, 0.0)
    alive = np.ones(len(feats), dtype=bool)
    while True:
        masked = np.where(alive[:, None] & alive[None, :], a, 0.0)
        flat = int(np.argmax(masked))
        i, j = divmod(flat, masked.shape[1])
        if masked[i, j] <= threshold:
            break
        k = int(alive.sum()) - 1
        mean_i = masked[i].sum() / k
        mean_j = masked[j].sum() / k
        drop, other = (i, j) if mean_i >= mean_j else (j, i)
        drops[feats[drop]] = (
            f"|r| = {a[i, j]:.4f} > {threshold:g} with {feats[other]!r}; larger mean |r| "
            f"({max(mean_i, mean_j):.4g} vs {min(mean_i, mean_j):.4g})"
        )
        alive[drop] = False
    return drops


def correlation_threshold(
    profiles: pl.LazyFrame | pl.DataFrame,
    *,
    features: Sequence[str] | None = None,
    samples: RowFilter = "all",
    threshold: float = 0.9,
    method: Literal["pearson", "spearman", "kendall"] = "pearson",
    strategy: Literal["pycytominer", "iterative"] = "pycytominer",
) -> FeatureSelection:
    """Drop one feature of each highly correlated pair.

    Parameters
    ----------
    threshold : float, default 0.9
        Pairs with correlation above this are considered.
    method : {"pearson", "spearman", "kendall"}, default "pearson"
        Correlation coefficient (pycytominer's ``corr_method``): Pearson r,
        Spearman's rho (Pearson r of average ranks) or Kendall's tau-b, each
        over the rows both features hold (as pandas' ``DataFrame.corr``).
    strategy : {"pycytominer", "iterative"}, default "pycytominer"
        ``"pycytominer"``: every pair with r > ``threshold`` (signed r, as
        pycytominer) at once; of each pair, drop the feature with the larger
        sum of |r| over all features. ``"iterative"``: repeatedly take the
        most correlated remaining pair by |r| and drop the member with the
        larger mean |r| with the remaining features, until no pair has
        |r| > ``threshold`` (caret's ``findCorrelation``); it usually drops
        fewer features.
    """
    _check_correlation_params(threshold, method, strategy)
    feats, x = _prepare(profiles, features, samples)
    drops = _correlation_drops(feats, CORRELATIONS[method](x), threshold, strategy)
    return _result(feats, drops, "correlation_threshold")


def _check_na_params(cutoff: float) -> None:
    if not 0 <= cutoff <= 1:
        raise InvalidInputError("cutoff must be between 0 and 1")


def _na_drops(
    features: Sequence[str], n_missing: np.ndarray, n_rows: int, cutoff: float
) -> dict[str, str]:
    """Drop rule of :func:`drop_na_columns` from per-feature missing counts."""
    frac = np.asarray(n_missing, dtype=np.float64) / n_rows
    return {
        f: f"{p:.1%} missing > na_cutoff {cutoff:g}"
        for f, p in zip(features, frac, strict=True)
        if p > cutoff
    }


def drop_na_columns(
    profiles: pl.LazyFrame | pl.DataFrame,
    *,
    features: Sequence[str] | None = None,
    samples: RowFilter = "all",
    cutoff: float = 0.05,
) -> FeatureSelection:
    """Drop features whose fraction of missing values (null or NaN) exceeds ``cutoff``."""
    _check_na_params(cutoff)
    feats, x = _prepare(profiles, features, samples)
    drops = _na_drops(feats, np.isnan(x).sum(axis=0), x.shape[0], cutoff)
    return _result(feats, drops, "drop_na_columns")


@lru_cache(maxsize=1)
def default_blocklist() -> tuple[str, ...]:
    """pycytominer's default blocklist of noisy CellProfiler features.

    Read at run time from the installed pycytominer's package data
    (``data/blocklist_features.txt``); when pycytominer is absent, the copy
    shipped in ``cellframe/profiles/default_blocklist.txt`` (same list, with
    its attribution: Way 2019, doi:10.6084/m9.figshare.10255811) is used.
    """
    import importlib.util

    text = None
    # Locate pycytominer's data without importing it (its import loads pandas
    # and scikit-learn, seconds of start-up).
    spec = importlib.util.find_spec("pycytominer")
    if spec is not None and spec.origin:
        path = Path(spec.origin).parent / "data" / "blocklist_features.txt"
        if path.is_file():
            text = path.read_text(encoding="utf-8")
    if text is None:
        text = (resources.files("cellframe.profiles") / "default_blocklist.txt").read_text()
    names = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.startswith("#") and line.strip() != "blocklist"
    ]
    return tuple(names)


def _blocklist_drops(features: Sequence[str], names: Iterable[str] | None) -> dict[str, str]:
    """Drop rule of :func:`blocklist` (``names=None``: the default blocklist)."""
    listed = set(default_blocklist() if names is None else names)
    source = "the default blocklist" if names is None else "the given blocklist"
    return {f: f"in {source}" for f in features if f in listed}


def blocklist(
    profiles: pl.LazyFrame | pl.DataFrame,
    *,
    features: Sequence[str] | None = None,
    samples: RowFilter = "all",
    blocklist: Iterable[str] | None = None,
) -> FeatureSelection:
    """Drop features named in a blocklist (default: pycytominer's, see :func:`default_blocklist`)."""
    del samples  # the rows do not matter; kept so every operation has one signature
    feats = resolve_features(profiles.lazy(), features, "the profiles to select features from")
    return _result(feats, _blocklist_drops(feats, blocklist), "blocklist")


def _outlier_drops(
    features: Sequence[str], peak: np.ndarray, outlier_cutoff: float
) -> dict[str, str]:
    """Drop rule of :func:`drop_outliers` from per-feature max |x| (NaN: no values)."""
    return {
        f: f"max |x| = {v:.4g} > outlier_cutoff {outlier_cutoff:g}"
        for f, v in zip(features, peak, strict=True)
        if v > outlier_cutoff
    }


def drop_outliers(
    profiles: pl.LazyFrame | pl.DataFrame,
    *,
    features: Sequence[str] | None = None,
    samples: RowFilter = "all",
    outlier_cutoff: float = 500.0,
) -> FeatureSelection:
    """Drop features with any absolute value above ``outlier_cutoff`` (after normalization)."""
    feats, x = _prepare(profiles, features, samples)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        peak = np.nanmax(np.abs(x), axis=0) if x.shape[0] else np.full(len(feats), np.nan)
    return _result(feats, _outlier_drops(feats, peak, outlier_cutoff), "drop_outliers")


def noise_removal(
    profiles: pl.LazyFrame | pl.DataFrame,
    *,
    features: Sequence[str] | None = None,
    samples: RowFilter = "all",
    perturb_groups: str | None = None,
    stdev_cutoff: float = 0.8,
) -> FeatureSelection:
    """Drop features that vary too much within perturbation groups (pycytominer's ``noise_removal``).

    Per feature: the population standard deviation (ddof=0) within each
    group of ``perturb_groups`` (e.g. the replicates of one compound), then
    the mean of those over the groups; a feature whose mean exceeds
    ``stdev_cutoff`` is dropped.

    Parameters
    ----------
    perturb_groups : str
        Column naming each row's perturbation group (pycytominer's
        ``noise_removal_perturb_groups``; required).
    stdev_cutoff : float, default 0.8
        Largest mean within-group std kept (``noise_removal_stdev_cutoff``).

    Notes
    -----
    Missing values are skipped in each std (a group whose feature is all
    missing is left out of that feature's mean; a feature missing everywhere
    has no mean and is kept, as pycytominer). Rows with a null group are
    left out, with a :class:`~cellframe.errors.NaNExcludedWarning` giving
    their count (pandas drops them silently).

    Raises
    ------
    MissingColumnsError
        If ``perturb_groups`` is not a column.
    InvalidInputError
        If ``perturb_groups`` is not given or ``stdev_cutoff`` is negative.

    Examples
    --------
    >>> import polars as pl
    >>> df = pl.DataFrame({"Metadata_pert": ["a", "a", "b", "b"],
    ...                    "quiet": [1.0, 1.1, 5.0, 5.1], "noisy": [0.0, 4.0, 1.0, -3.0]})
    >>> noise_removal(df, perturb_groups="Metadata_pert").dropped_features
    ['noisy']
    """
    _check_noise_params(perturb_groups, stdev_cutoff)
    assert perturb_groups is not None
    lf = profiles.lazy()
    where = "the profiles to select features from"
    require_columns(
        lf, [perturb_groups], where, "name the perturbation-group column in perturb_groups="
    )
    feats = [f for f in resolve_features(lf, features, where) if f != perturb_groups]
    predicate = row_filter(samples)
    if predicate is not None:
        require_columns(lf, list(predicate.meta.root_names()), where, "check samples=")
        lf = lf.filter(predicate)
    df = lf.select(perturb_groups, *feats).collect()
    n_null = df[perturb_groups].null_count()
    if n_null:
        import warnings

        from cellframe.errors import NaNExcludedWarning

        warnings.warn(
            f"noise_removal: {n_null} row(s) with a null {perturb_groups!r} are left out of "
            "the within-group standard deviations",
            NaNExcludedWarning,
            stacklevel=2,
        )
        df = df.filter(pl.col(perturb_groups).is_not_null())
    if df.height == 0:
        from cellframe.errors import EmptyInputError

        raise EmptyInputError(f"no rows to select features on (samples={samples!r})")
    stds = df.group_by(perturb_groups).agg(
        pl.col(f).cast(pl.Float64).fill_nan(None).std(ddof=0) for f in feats
    )
    means = stds.select(pl.col(feats).mean()).row(0)
    drops = {
        f: f"mean within-group std {m:.4g} > stdev_cutoff {stdev_cutoff:g}"
        for f, m in zip(feats, means, strict=True)
        if m is not None and m > stdev_cutoff
    }
    return _result(feats, drops, "noise_removal")


def _check_noise_params(perturb_groups: str | None, stdev_cutoff: float) -> None:
    if not isinstance(perturb_groups, str) or not perturb_groups:
        raise InvalidInputError(
            "noise_removal needs the perturbation-group column: pass perturb_groups='<column>' "
            "(feature_select: noise_removal_perturb_groups='<column>')"
        )
    if not stdev_cutoff >= 0:
        raise InvalidInputError(f"stdev_cutoff must be >= 0, not {stdev_cutoff!r}")


Operation = Callable[..., FeatureSelection]

#: Operations by pycytominer name, with the composer's keyword each one takes.
OPERATIONS: dict[str, tuple[Operation, dict[str, str]]] = {
    "variance_threshold": (variance_threshold, {"min_variance": "min_variance"}),
    "frequency_threshold": (
        frequency_threshold,
        {"freq_cut": "freq_cut", "unique_cut": "unique_cut"},
    ),
    "correlation_threshold": (
        correlation_threshold,
        {"corr_threshold": "threshold", "corr_method": "method", "corr_strategy": "strategy"},
    ),
    "drop_na_columns": (drop_na_columns, {"na_cutoff": "cutoff"}),
    "blocklist": (blocklist, {"blocklist": "blocklist"}),
    "drop_outliers": (drop_outliers, {"outlier_cutoff": "outlier_cutoff"}),
    "noise_removal": (
        noise_removal,
        {
            "noise_removal_perturb_groups": "perturb_groups",
            "noise_removal_stdev_cutoff": "stdev_cutoff",
        },
    ),
}


def _row_columns(op: str, kwargs: Mapping[str, Any]) -> list[str] | None:
    """Non-feature columns an operation reads from the rows, or None if it needs no rows.

    Operations without a finite statistic (noise removal's per-group spread,
    rank correlations) are run on the gathered rows by :class:`FeatureSelector`.
    """
    if op == "noise_removal":
        group = kwargs.get("perturb_groups")
        return [group] if isinstance(group, str) else []
    if op == "correlation_threshold" and kwargs.get("method", "pearson") != "pearson":
        return []
    return None


def feature_select(
    profiles: pl.LazyFrame | pl.DataFrame,
    operation: str | Operation | Sequence[str | Operation] = "variance_threshold",
    *,
    features: Sequence[str] | None = None,
    samples: RowFilter = "all",
    **params: Any,
) -> FeatureSelection:
    """Apply feature-selection operations in order, each on the features still kept.

    Parameters
    ----------
    profiles : polars.LazyFrame or DataFrame
        Profiles (usually normalized well profiles).
    operation : str, callable or sequence of those, default "variance_threshold"
        Names from :data:`OPERATIONS` (pycytominer's names) or callables
        ``f(profiles, features=..., samples=...) -> FeatureSelection``.
    features : sequence of str, optional
        Candidate features (default: every numeric non-metadata column).
    samples : str, polars.Expr or None, default "all"
        Rows to compute the statistics on (see ``row_filter``).
    **params
        pycytominer's parameter names: ``min_variance``, ``freq_cut``,
        ``unique_cut``, ``corr_threshold``, ``corr_method``, ``corr_strategy``,
        ``na_cutoff``, ``blocklist``, ``outlier_cutoff``,
        ``noise_removal_perturb_groups``, ``noise_removal_stdev_cutoff``.

    Returns
    -------
    FeatureSelection
        ``dropped`` lists every dropped feature with the operation and reason.

    Raises
    ------
    ValueError
        For an unknown operation or parameter name.
    """
    ops = _operations(operation, params)
    lf = profiles.lazy()
    feats = resolve_features(lf, features, "the profiles to select features from")
    # Collect once: every operation works on the same (small, well-level) rows.
    predicate = row_filter(samples)
    extra = [
        params["noise_removal_perturb_groups"]
        for op in ops
        if op == "noise_removal" and isinstance(params.get("noise_removal_perturb_groups"), str)
    ][:1]
    require_columns(lf, extra, "the profiles to select features from", "check perturb_groups=")
    feats = [f for f in feats if f not in extra]
    data = (lf if predicate is None else lf.filter(predicate)).select(*extra, *feats).collect()

    def run(op: str | Operation, kept: list[str]) -> FeatureSelection:
        if callable(op) and not isinstance(op, str):
            return op(data, features=kept, samples="all")
        fn, names = OPERATIONS[op]
        kwargs = {names[k]: v for k, v in params.items() if k in names}
        return fn(data, features=kept, samples="all", **kwargs)

    return _compose(ops, feats, run)


def _operations(
    operation: str | Operation | Sequence[str | Operation], params: Mapping[str, Any]
) -> list[str | Operation]:
    """The operations as a list, with unknown names and parameters refused."""
    ops = [operation] if isinstance(operation, str) or callable(operation) else list(operation)
    known = {p for _, names in OPERATIONS.values() for p in names}
    unknown = sorted(set(params) - known)
    if unknown:
        raise InvalidInputError(
            f"unknown feature-selection parameter(s) {unknown}; valid: {sorted(known)}"
        )
    for op in ops:
        if isinstance(op, str) and op not in OPERATIONS:
            raise InvalidInputError(
                f"unknown operation {op!r}; valid: {', '.join(map(repr, OPERATIONS))}"
            )
    return ops


def _compose(
    ops: Sequence[str | Operation],
    features: Sequence[str],
    run: Callable[[str | Operation, list[str]], FeatureSelection],
) -> FeatureSelection:
    """Apply ``run(op, kept)`` for each operation in order, each on the features still kept."""
    kept = list(features)
    dropped = []
    for op in ops:
        result = run(op, kept)
        dropped.append(result.dropped)
        gone = set(result.dropped_features)
        kept = [f for f in kept if f not in gone]
    if not kept:
        raise InvalidInputError(
            "feature selection dropped every feature; loosen the thresholds or check the input"
        )
    return FeatureSelection(kept=kept, dropped=pl.concat(dropped, how="vertical"))


def select_features(
    profiles: pl.LazyFrame | pl.DataFrame,
    operation: str | Operation | Sequence[str | Operation] = "variance_threshold",
    **kwargs: Any,
) -> pl.LazyFrame:
    """:func:`feature_select`, then drop the selected features from ``profiles``."""
    return feature_select(profiles, operation, **kwargs).apply(profiles)


# ------------------------------------------------------------ fitted step
def _defaults(op: str) -> dict[str, Any]:
    """The keyword defaults of operation ``op`` (its function's signature: one source of truth)."""
    import inspect

    fn = OPERATIONS[op][0]
    return {
        name: p.default
        for name, p in inspect.signature(fn).parameters.items()
        if p.kind is p.KEYWORD_ONLY and name not in ("features", "samples")
    }


#: The drop rule of each operation from merged :class:`ColumnStatistics`:
#: ``rule(stats, index, kept, kwargs) -> {feature: reason}``; ``index`` holds the
#: positions of ``kept`` in ``stats.features`` and ``kwargs`` the operation's
#: keywords (defaults filled in).
StatisticRule = Callable[[ColumnStatistics, np.ndarray, list[str], dict[str, Any]], dict[str, str]]

STATISTIC_RULES: dict[str, StatisticRule] = {
    "variance_threshold": lambda st, ix, kept, kw: _variance_drops(
        kept, st.variance[ix], kw["min_variance"]
    ),
    "frequency_threshold": lambda st, ix, kept, kw: _frequency_drops(
        kept, [st.value_counts(int(i)) for i in ix], st.n_rows, kw["freq_cut"], kw["unique_cut"]
    ),
    "correlation_threshold": lambda st, ix, kept, kw: _correlation_drops(
        kept,
        st.moments.subset(ix).correlation(st.constant[ix]),  # type: ignore[union-attr]
        kw["threshold"],
        kw["strategy"],
    ),
    "drop_na_columns": lambda st, ix, kept, kw: _na_drops(
        kept, st.n_rows - st.count[ix], st.n_rows, kw["cutoff"]
    ),
    "drop_outliers": lambda st, ix, kept, kw: _outlier_drops(
        kept, st.peak[ix], kw["outlier_cutoff"]
    ),
    "blocklist": lambda st, ix, kept, kw: _blocklist_drops(kept, kw["blocklist"]),
}

#: Operations that read no row (their statistic is the feature names).
_NO_DATA = frozenset({"blocklist"})


@dataclass(frozen=True)
class SelectionStatistics:
    """Statistics of a :class:`FeatureSelector`: column statistics, plus rows for callables.

    Attributes
    ----------
    columns : ColumnStatistics, optional
        ``None`` when no operation reads data.
    rows : Rows, optional
        The selected rows (features only), when a callable operation needs them.
    """

    columns: ColumnStatistics | None
    rows: Rows | None = None

    @property
    def needs_all_rows(self) -> bool:
        """True when a callable operation needs the rows themselves."""
        return self.rows is not None

    def merge(self, other: SelectionStatistics) -> SelectionStatistics:
        """The statistics of both sets of rows together (exact)."""
        columns = (
            None
            if self.columns is None or other.columns is None
            else self.columns.merge(other.columns)
        )
        rows = None if self.rows is None or other.rows is None else self.rows.merge(other.rows)
        return SelectionStatistics(columns, rows)


class FeatureSelector:
    """Feature selection as a fitted step: mergeable statistics, then the drop rules.

    Equals :func:`feature_select` (same kept features and reasons; the Pearson
    correlations to floating-point rounding) whether it is fitted on the
    whole table or on merged per-plate statistics.

    Parameters
    ----------
    operation : str, callable or sequence of those, default "variance_threshold"
        As in :func:`feature_select`.
    features : sequence of str, optional
        Candidate features (default: every numeric non-metadata column).
    samples : str, polars.Expr or None, default "all"
        Rows to compute the statistics on.
    **params
        pycytominer's parameter names, as in :func:`feature_select`.

    Attributes
    ----------
    selection_ : FeatureSelection
        The fit.

    Raises
    ------
    ValueError
        For an unknown operation or parameter, or a parameter out of range.

    Examples
    --------
    >>> df = pl.DataFrame({"a": [1.0, 1.0, 1.0], "b": [0.0, 1.0, 2.0]})
    >>> FeatureSelector("variance_threshold").fit(df).selection_.kept
    ['b']
    """

    def __init__(
        self,
        operation: str | Operation | Sequence[str | Operation] = "variance_threshold",
        *,
        features: Sequence[str] | None = None,
        samples: RowFilter = "all",
        **params: Any,
    ) -> None:
        self.operations = _operations(operation, params)
        self.params = dict(params)
        self.features = None if features is None else list(features)
        self.samples = samples
        self._kwargs = {}
        for op in self.operations:
            if isinstance(op, str):
                names = OPERATIONS[op][1]
                kw = _defaults(op)
                kw.update({names[k]: v for k, v in params.items() if k in names})
                self._kwargs[op] = kw
        kw = self._kwargs
        if "variance_threshold" in kw:
            _check_variance_params(kw["variance_threshold"]["min_variance"])
        if "frequency_threshold" in kw:
            _check_frequency_params(
                kw["frequency_threshold"]["freq_cut"], kw["frequency_threshold"]["unique_cut"]
            )
        if "correlation_threshold" in kw:
            c = kw["correlation_threshold"]
            _check_correlation_params(c["threshold"], c["method"], c["strategy"])
        if "drop_na_columns" in kw:
            _check_na_params(kw["drop_na_columns"]["cutoff"])
        if "noise_removal" in kw:
            n = kw["noise_removal"]
            _check_noise_params(n["perturb_groups"], n["stdev_cutoff"])
        # Operations run on the gathered rows, and the non-feature columns they read.
        self._row_ops = {op: cols for op in kw if (cols := _row_columns(op, kw[op])) is not None}

    def parameters(self) -> dict[str, Any]:
        """JSON-serialisable parameters (recorded in provenance)."""
        return {
            "operations": [op if isinstance(op, str) else repr(op) for op in self.operations],
            "samples": self.samples if isinstance(self.samples, str | None) else str(self.samples),
            **{
                k: (list(v) if k == "blocklist" and v is not None else v)
                for k, v in self.params.items()
            },
        }

    def statistics(self, frame: pl.LazyFrame | pl.DataFrame) -> SelectionStatistics:
        """What the operations need from ``frame``'s rows (only that is computed).

        Raises
        ------
        MissingColumnsError
            If a feature or a column of ``samples`` is absent.
        """
        lf = frame.lazy()
        where = "the profiles to select features from"
        feats = resolve_features(lf, self.features, where)
        require_columns(lf, filter_columns(self.samples), where, "check samples=")
        names = {op for op in self.operations if isinstance(op, str)}
        custom = any(not isinstance(op, str) for op in self.operations)
        needs_data = bool(names - _NO_DATA) or custom
        extra = list(dict.fromkeys(c for cols in self._row_ops.values() for c in cols))
        require_columns(lf, extra, where, "check perturb_groups=")
        feats = [f for f in feats if f not in extra]
        rows = None
        columns = None
        if needs_data:
            predicate = row_filter(self.samples)
            df = (
                (lf if predicate is None else lf.filter(predicate)).select(*extra, *feats).collect()
            )
            pearson = self._kwargs.get("correlation_threshold", {}).get("method") == "pearson"
            columns = ColumnStatistics.of(
                to_numpy64(df, feats),
                feats,
                values="frequency_threshold" in names,
                moments="correlation_threshold" in names and pearson,
            )
            rows = Rows(df) if custom or self._row_ops else None
        else:
            columns = ColumnStatistics.of(np.empty((0, len(feats))), feats)
        return SelectionStatistics(columns, rows)

    def from_statistics(self, stats: SelectionStatistics) -> FeatureSelector:
        """Fit from (merged) statistics: apply each operation's drop rule in order.

        Raises
        ------
        EmptyInputError
            If an operation needs data and no row was seen.
        InvalidInputError
            If every feature would be dropped.
        """
        assert stats.columns is not None
        cols = stats.columns
        names = {op for op in self.operations if isinstance(op, str)}
        needs_data = bool(names - _NO_DATA) or stats.rows is not None
        if needs_data and cols.n_rows == 0:
            from cellframe.errors import EmptyInputError

            raise EmptyInputError(f"no rows to select features on (samples={self.samples!r})")
        position = {f: i for i, f in enumerate(cols.features)}

        def run(op: str | Operation, kept: list[str]) -> FeatureSelection:
            if not isinstance(op, str):
                assert stats.rows is not None
                return op(stats.rows.frame, features=kept, samples="all")
            if op in self._row_ops:  # no finite statistic: run on the gathered rows
                assert stats.rows is not None
                fn = OPERATIONS[op][0]
                return fn(stats.rows.frame, features=kept, samples="all", **self._kwargs[op])
            idx = np.array([position[f] for f in kept], dtype=np.int64)
            return _result(kept, STATISTIC_RULES[op](cols, idx, kept, self._kwargs[op]), op)

        self.selection_ = _compose(self.operations, cols.features, run)
        return self

    def fit(self, frame: pl.LazyFrame | pl.DataFrame) -> FeatureSelector:
        """Fit on ``frame``'s rows (:meth:`statistics`, then :meth:`from_statistics`)."""
        return self.from_statistics(self.statistics(frame))

    def _require_fitted(self) -> None:
        if not hasattr(self, "selection_"):
            raise InvalidInputError(
                "this FeatureSelector is not fitted; call fit(...) or from_statistics(...) first"
            )

    def transform(self, frame: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
        """``frame`` without the dropped features (other columns pass through)."""
        self._require_fitted()
        return self.selection_.apply(frame)

    def to_frame(self) -> pl.DataFrame:
        """The fit as a table: ``feature``, ``kept``, ``operation`` and ``reason`` (null if kept)."""
        self._require_fitted()
        kept = pl.DataFrame(
            {"feature": self.selection_.kept},
            schema={"feature": pl.String},
        ).with_columns(
            pl.lit(True).alias("kept"),
            pl.lit(None, dtype=pl.String).alias("operation"),
            pl.lit(None, dtype=pl.String).alias("reason"),
        )
        dropped = self.selection_.dropped.with_columns(pl.lit(False).alias("kept")).select(
            "feature", "kept", "operation", "reason"
        )
        return pl.concat([kept, dropped], how="vertical")

    @classmethod
    def from_selection(cls, selection: FeatureSelection) -> FeatureSelector:
        """A fitted selector applying an existing :class:`FeatureSelection`."""
        obj = cls([])
        obj.selection_ = selection
        return obj

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, **kwargs: Any) -> FeatureSelector:
        """A fitted selector from :meth:`to_frame`'s table (``kwargs``: the parameters).

        Raises
        ------
        MissingColumnsError
            If a column of the saved layout is absent.
        """
        require_columns(
            frame, ["feature", "kept", "operation", "reason"], "the saved feature selection"
        )
        obj = cls(**kwargs)
        kept = frame.filter(pl.col("kept"))["feature"].to_list()
        dropped = frame.filter(~pl.col("kept")).select(list(_DROPPED_SCHEMA)).cast(_DROPPED_SCHEMA)
        obj.selection_ = FeatureSelection(kept=kept, dropped=dropped)
        return obj

    def __repr__(self) -> str:
        ops = [
            op if isinstance(op, str) else getattr(op, "__name__", "callable")
            for op in self.operations
        ]
        return f"FeatureSelector({ops})"
