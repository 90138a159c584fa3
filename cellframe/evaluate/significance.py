"""Permutation p-values for AP and mAP, and Benjamini-Hochberg FDR (copairs' scheme).

The null of a query's AP depends only on its configuration: ``k`` positives
among ``m`` candidates. For each configuration a null of ``null_size`` APs is
drawn from random rankings. A profile's p-value counts null APs ``>=`` its AP; a
group's mAP p-value compares the mAP with the element-wise mean of its members'
nulls and counts values strictly ``>``; both add one to numerator and
denominator. ``method="copairs"`` draws the rankings exactly as copairs 0.5.5
(one seed per configuration from ``default_rng(seed).integers(8096)``, a full
row permutation per draw), so p-values are identical to copairs'; it runs in
chunks of rows, so memory stays bounded. ``method="sampled"`` draws only the
``k`` positive positions, ``O(null_size x k)`` instead of ``O(null_size x m)``:
the same distribution, other random numbers.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import polars as pl

from cellframe.errors import (
    InvalidChoiceError,
    InvalidInputError,
    MissingColumnsError,
    NaNExcludedWarning,
)

__all__ = [
    "average_precision_p_values",
    "benjamini_hochberg",
    "expected_average_precision",
    "hierarchical_fdr",
    "mean_average_precision",
    "normalized_average_precision",
    "null_average_precision",
]

#: Bytes of random-permutation matrix drawn at once by the copairs-exact null.
_NULL_CHUNK_BYTES = 64 * 2**20


def _ap_of_positions(positions: np.ndarray, k: int) -> np.ndarray:
    """AP (float32) of rankings whose positives sit at sorted 0-based ``positions``."""
    prec = np.arange(1, k + 1, dtype=np.float32) / (positions + 1)
    return prec.sum(axis=1) / k


def _null_copairs(k: int, m: int, null_size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dtype = np.uint16 if m < 2**16 else np.uint32
    rows = max(1, _NULL_CHUNK_BYTES // (m * np.dtype(dtype).itemsize))
    out = np.empty(null_size, dtype=np.float32)
    base = np.arange(m, dtype=dtype)
    for s in range(0, null_size, rows):
        r = min(rows, null_size - s)
        perm = np.tile(base, (r, 1))
        # Shuffling rows chunk by chunk consumes the generator exactly as one
        # call on the whole matrix does, so the draws equal copairs'.
        rng.permuted(perm, axis=1, out=perm)
        positions = np.sort(perm[:, :k], axis=1)
        out[s : s + r] = _ap_of_positions(positions, k)
    return out


def _null_sampled(k: int, m: int, null_size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dtype = np.uint16 if m < 2**16 else np.uint32
    positions = np.empty((null_size, k), dtype=dtype)
    todo = np.arange(null_size)
    while len(todo):
        draw = np.sort(rng.integers(0, m, size=(len(todo), k)), axis=1)
        ok = np.all(np.diff(draw, axis=1) > 0, axis=1) if k > 1 else np.ones(len(todo), bool)
        positions[todo[ok]] = draw[ok]
        todo = todo[~ok]
    return _ap_of_positions(positions, k)


_NULL_METHODS: dict[str, Callable[[int, int, int, int], np.ndarray]] = {
    "copairs": _null_copairs,
    "sampled": _null_sampled,
}


def null_average_precision(
    n_pos: int,
    n_total: int,
    *,
    null_size: int = 10000,
    seed: int = 0,
    method: str | Callable[[int, int, int, int], np.ndarray] = "copairs",
) -> np.ndarray:
    """Null distribution of AP for ``n_pos`` positives among ``n_total`` candidates.

    Parameters
    ----------
    n_pos, n_total : int
        The configuration (``1 <= n_pos <= n_total``).
    null_size : int
        Number of random rankings.
    seed : int
        Seed of this configuration's generator.
    method : {"copairs", "sampled"} or callable
        See the module docstring; a callable gets ``(k, m, null_size, seed)``.

    Returns
    -------
    numpy.ndarray of float32, shape (null_size,)
        APs.

    Examples
    --------
    One positive among four candidates: its AP is 1/rank, each rank equally likely:

    >>> null = null_average_precision(1, 4, null_size=1000)
    >>> null.shape, null.dtype
    ((1000,), dtype('float32'))
    >>> sorted({round(float(v), 4) for v in null})
    [0.25, 0.3333, 0.5, 1.0]
    """
    if not 1 <= n_pos <= n_total:
        raise InvalidInputError(f"need 1 <= n_pos <= n_total, got {n_pos} and {n_total}")
    fn = _resolve(method)
    return fn(int(n_pos), int(n_total), int(null_size), int(seed))


def _resolve(method: str | Callable) -> Callable:
    if callable(method):
        return method
    try:
        return _NULL_METHODS[method]
    except KeyError:
        raise InvalidInputError(
            f"unknown null method {method!r}; choose one of {sorted(_NULL_METHODS)} or pass a callable"
        ) from None


def _null_table(
    configs: np.ndarray, null_size: int, seed: int, method: str | Callable
) -> np.ndarray:
    """``(n_configs, null_size)`` nulls; configs sorted as ``np.unique(axis=0)`` sorts them."""
    seeds = np.random.default_rng(seed).integers(8096, size=len(configs))
    out = np.empty((len(configs), null_size), dtype=np.float32)
    for i, (k, m) in enumerate(configs):
        out[i] = null_average_precision(
            int(k), int(m), null_size=null_size, seed=int(seeds[i]), method=method
        )
    return out


def _warn_nan(n_nan: int, n: int, what: str) -> None:
    warnings.warn(
        f"{n_nan} of {n} rows of the AP table have a NaN average_precision: {what} "
        "(NaN would rank above every null AP and count as significant)",
        NaNExcludedWarning,
        stacklevel=3,
    )


def _require(ap: pl.DataFrame, cols: Sequence[str]) -> None:
    missing = [c for c in cols if c not in ap.columns]
    if missing:
        raise MissingColumnsError(
            "the AP table", missing, "pass the output of cellframe.evaluate.average_precision"
        )


def average_precision_p_values(
    ap: pl.DataFrame,
    *,
    null_size: int = 10000,
    seed: int = 0,
    method: str | Callable = "copairs",
) -> pl.DataFrame:
    """Add a per-profile permutation ``p_value`` to an AP table (copairs' ``p_values``).

    ``p = (1 + #{null >= AP}) / (1 + null_size)``; null where the profile has
    no positives.

    Parameters
    ----------
    ap : polars.DataFrame
        ``average_precision``, ``n_pos_pairs`` and ``n_total_pairs`` per profile
        (the output of :func:`~cellframe.evaluate.average_precision`).
    null_size, seed, method
        As in :func:`null_average_precision`; profiles sharing
        ``(n_pos_pairs, n_total_pairs)`` share one null.

    Returns
    -------
    polars.DataFrame
        ``ap`` with a Float32 ``p_value`` column.

    Examples
    --------
    >>> import polars as pl
    >>> ap = pl.DataFrame({"average_precision": [1.0, 0.25, None],
    ...                    "n_pos_pairs": [1, 1, 0], "n_total_pairs": [4, 4, 4]})
    >>> p = average_precision_p_values(ap, null_size=1000)["p_value"]
    >>> [None if v is None else round(v, 2) for v in p]  # AP 1.0 is the top quarter
    [0.25, 1.0, None]
    """
    _require(ap, ["average_precision", "n_pos_pairs", "n_total_pairs"])
    k = ap["n_pos_pairs"].to_numpy().astype(np.int64)
    m = ap["n_total_pairs"].to_numpy().astype(np.int64)
    score = ap["average_precision"].fill_null(np.nan).to_numpy().astype(np.float64)
    # NaN sorts above every null AP and would get the smallest p-value: no p-value.
    nan_ap = (k > 0) & np.isnan(score)
    if nan_ap.any():
        _warn_nan(int(nan_ap.sum()), ap.height, "they get no p-value")
    mask = (k > 0) & ~nan_ap
    pvals = np.full(ap.height, np.nan, dtype=np.float32)
    if mask.any():
        configs, inv = np.unique(np.stack([k[mask], m[mask]], axis=1), axis=0, return_inverse=True)
        nulls = _null_table(configs, null_size, seed, method)
        nulls.sort(axis=1)
        inv = inv.ravel()
        num = np.empty(int(mask.sum()), dtype=np.int64)
        for c in range(len(configs)):
            sel = inv == c
            num[sel] = null_size - np.searchsorted(nulls[c], score[mask][sel], side="left")
        pvals[mask] = (num + 1) / (null_size + 1)
    return ap.with_columns(pl.Series("p_value", pvals).fill_nan(None))


def benjamini_hochberg(p_values: np.ndarray | Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values), capped at 1.

    NaN inputs stay NaN and do not count as tests.

    Examples
    --------
    >>> benjamini_hochberg([0.01, 0.04, 0.03, 0.2]).round(4).tolist()
    [0.04, 0.0533, 0.0533, 0.2]
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m == 0:
        return out
    pv = p[ok]
    order = np.argsort(pv, kind="stable")
    scaled = pv[order] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(scaled[::-1])[::-1]
    res = np.empty(m)
    res[order] = np.minimum(q, 1.0)
    out[ok] = res
    return out


def mean_average_precision(
    ap: pl.DataFrame,
    *,
    sameby: Sequence[str] | str,
    null_size: int = 10000,
    threshold: float = 0.05,
    seed: int = 0,
    method: str | Callable = "copairs",
) -> pl.DataFrame:
    """mAP per group with permutation p-values and BH-corrected p-values (copairs' scheme).

    Parameters
    ----------
    ap : polars.DataFrame
        Output of :func:`~cellframe.evaluate.average_precision` (or
        :func:`~cellframe.evaluate.phenotypic_activity`).
    sameby : str or sequence of str
        Columns defining a group (e.g. the treatment).
    null_size : int
        Random rankings per configuration.
    threshold : float
        Significance level for ``below_p`` / ``below_corrected_p``.
    seed : int
        Seed (copairs-compatible derivation of per-configuration seeds).
    method : {"copairs", "sampled"} or callable
        How nulls are drawn (see the module docstring).

    Returns
    -------
    polars.DataFrame
        One row per group: ``sameby`` columns, ``mean_average_precision``,
        ``mean_normalized_average_precision`` (when ``ap`` has the
        ``normalized_average_precision`` column; mean over members where it is
        defined), ``n_queries``, ``p_value``, ``corrected_p_value``, ``below_p``,
        ``below_corrected_p``, sorted by the group columns.

    Raises
    ------
    InvalidInputError
        If no profile has positives.

    Examples
    --------
    >>> import polars as pl
    >>> ap = pl.DataFrame({"Metadata_Treatment": ["a", "a", "b", "b"],
    ...                    "average_precision": [1.0, 1.0, 0.25, 0.5],
    ...                    "n_pos_pairs": [1, 1, 1, 1], "n_total_pairs": [7, 7, 7, 7]})
    >>> result = mean_average_precision(ap, sameby="Metadata_Treatment", null_size=1000)
    >>> result.select("Metadata_Treatment", "mean_average_precision", "below_p").rows()
    [('a', 1.0, True), ('b', 0.375, False)]
    >>> round(result["p_value"][0], 4)  # 1 / (null_size + 1): no null mAP reaches 1.0
    0.001
    """
    group = [sameby] if isinstance(sameby, str) else list(sameby)
    _require(ap, [*group, "average_precision", "n_pos_pairs", "n_total_pairs"])
    if null_size < 1:
        raise InvalidInputError(f"null_size must be positive, got {null_size}")
    has_pos = pl.col("n_pos_pairs") > 0
    nan_ap = ap.filter(has_pos & pl.col("average_precision").is_nan()).height
    if nan_ap:
        _warn_nan(nan_ap, ap.height, "they are left out of mAP")
    scored = ap.filter(
        pl.col("average_precision").is_not_null() & ~pl.col("average_precision").is_nan() & has_pos
    )
    if scored.height == 0:
        raise InvalidInputError("no profile has positives: nothing to average into mAP")
    k = scored["n_pos_pairs"].to_numpy().astype(np.int64)
    m = scored["n_total_pairs"].to_numpy().astype(np.int64)
    configs, inv = np.unique(np.stack([k, m], axis=1), axis=0, return_inverse=True)
    nulls = _null_table(configs, null_size, seed, method)
    inv = inv.ravel()
    scored = scored.with_columns(pl.Series("__cfg", inv)).with_row_index("__i")
    groups = (
        scored.group_by(group, maintain_order=True)
        .agg(pl.col("__i"), pl.len().alias("n_queries"))
        .sort(group)
    )
    ap_values = scored["average_precision"].to_numpy().astype(np.float64)
    has_norm = "normalized_average_precision" in scored.columns
    norm_values = (
        scored["normalized_average_precision"].fill_null(np.nan).to_numpy().astype(np.float64)
        if has_norm
        else None
    )
    norm_maps = np.full(groups.height, np.nan)
    maps = np.empty(groups.height)
    pvals = np.empty(groups.height)
    for g, members in enumerate(groups["__i"].to_list()):
        idx = np.asarray(members, dtype=np.int64)
        score = ap_values[idx].sum() / len(idx)
        null = nulls[inv[idx]].mean(axis=0)  # float32, as copairs averages its nulls
        maps[g] = score
        if norm_values is not None:
            defined = norm_values[idx][~np.isnan(norm_values[idx])]
            norm_maps[g] = defined.mean() if len(defined) else np.nan
        pvals[g] = (np.count_nonzero(null > score) + 1) / (null_size + 1)
    q = benjamini_hochberg(pvals)
    norm_cols = (
        [pl.Series("mean_normalized_average_precision", norm_maps).fill_nan(None)]
        if has_norm
        else []
    )
    return (
        groups.drop("__i")
        .with_columns(
            pl.Series("mean_average_precision", maps),
            *norm_cols,
            pl.Series("p_value", pvals),
            pl.Series("corrected_p_value", q),
            pl.Series("below_p", pvals < threshold),
            pl.Series("below_corrected_p", q < threshold),
        )
        .select(
            [
                *group,
                "mean_average_precision",
                *(["mean_normalized_average_precision"] if has_norm else []),
                "n_queries",
                "p_value",
                "corrected_p_value",
                "below_p",
                "below_corrected_p",
            ]
        )
    )


def expected_average_precision(
    n_pos: np.ndarray | Sequence[int] | int, n_total: np.ndarray | Sequence[int] | int
) -> np.ndarray:
    """Expected non-interpolated AP of a uniformly random ranking, exactly.

    With ``M`` positives among ``L`` candidates, every placement of the
    positives equally likely, the precision at the positive of rank ``r`` has
    expectation ``1/r + (M - 1)/(L - 1) x (1 - 1/r)`` (the rank-``r`` item itself,
    plus each of the other ``r - 1`` items being a positive with probability
    ``(M - 1)/(L - 1)``); averaging over the ``M`` positives' ranks gives

    ``E[AP] = (1/L) x [(M - 1)/(L - 1) x (L - H_L) + H_L]``

    with ``H_L`` the L-th harmonic number (copairs' ``expected_ap``, the
    finite-sample formula of Bestgen 2015). ``E[AP] = 1`` when ``M = L``.

    Parameters
    ----------
    n_pos : int or array of int, shape (n,)
        Positives ``M`` (``>= 1``).
    n_total : int or array of int, shape (n,)
        Candidates ``L`` (positives plus negatives, ``>= M``).

    Returns
    -------
    numpy.ndarray of float64, shape (n,) (0-d for scalar inputs)
        Expectations, NaN where ``M < 1`` (no positive: AP undefined).

    Raises
    ------
    InvalidInputError
        If ``M > L`` or a count is negative.

    Examples
    --------
    >>> expected_average_precision([1, 2, 3], [2, 4, 3]).round(4).tolist()
    [0.75, 0.6806, 1.0]
    """
    from scipy.special import digamma

    m = np.asarray(n_pos, dtype=np.float64)
    t = np.asarray(n_total, dtype=np.float64)
    m, t = np.broadcast_arrays(m, t)
    if np.any(m < 0) or np.any(t < 0) or np.any(m > t):
        raise InvalidInputError(
            "expected AP needs 0 <= n_pos <= n_total for every list; got "
            f"n_pos={m[(m < 0) | (t < 0) | (m > t)][:3].tolist()} with "
            f"n_total={t[(m < 0) | (t < 0) | (m > t)][:3].tolist()}"
        )
    harmonic = digamma(t + 1.0) + np.euler_gamma  # H_L, exact to float64 rounding
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(t > 1, (m - 1.0) / np.maximum(t - 1.0, 1.0), 0.0)
        out = (share * (t - harmonic) + harmonic) / t
    out = np.where(m == t, 1.0, out)
    return np.where(m >= 1, out, np.nan)


def normalized_average_precision(
    ap: np.ndarray | Sequence[float] | float,
    n_pos: np.ndarray | Sequence[int] | int,
    n_total: np.ndarray | Sequence[int] | int,
) -> np.ndarray:
    """Chance-normalized AP: ``(AP - E[AP]) / (1 - E[AP])``.

    ``E[AP]`` is :func:`expected_average_precision` of the same positives and
    candidates. 0 means chance, 1 a perfect ranking; a ranking worse than
    chance is negative and can fall below -1 when ``E[AP] > 1/2`` (copairs
    clips to [-1, 1]; here the value is left as computed). Undefined (NaN)
    without negatives (``E[AP] = 1``: every ranking is perfect) and without
    positives (copairs writes 0 in the first case).

    Parameters
    ----------
    ap : float or array of float, shape (n,)
        Non-interpolated AP values (NaN passes through).
    n_pos, n_total : int or array of int, shape (n,)
        Positives and candidates of each list.

    Returns
    -------
    numpy.ndarray of float64, shape (n,) (0-d for scalar inputs)
        Normalized APs.

    Examples
    --------
    >>> normalized_average_precision([1.0, 0.75, 0.5], 1, 2).tolist()
    [1.0, 0.0, -1.0]
    """
    a = np.asarray(ap, dtype=np.float64)
    mu = expected_average_precision(n_pos, n_total)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mu < 1.0, (a - mu) / (1.0 - mu), np.nan)


def _combine_min(p: np.ndarray) -> float:
    return float(p.min())


def _combine_bonferroni(p: np.ndarray) -> float:
    return float(min(1.0, p.min() * len(p)))


def _combine_simes(p: np.ndarray) -> float:
    ordered = np.sort(p)
    return float(min(1.0, (ordered * len(p) / np.arange(1, len(p) + 1)).min()))


#: How a group's p-values become one (stage 1 of :func:`hierarchical_fdr`).
GROUP_COMBINERS: dict[str, Callable[[np.ndarray], float]] = {
    "min": _combine_min,
    "bonferroni": _combine_bonferroni,
    "simes": _combine_simes,
}


def hierarchical_fdr(
    table: pl.DataFrame,
    *,
    by: str | Sequence[str],
    p_value: str = "p_value",
    combine: str | Callable[[np.ndarray], float] = "min",
    threshold: float = 0.05,
) -> pl.DataFrame:
    """Two-stage (hierarchical) Benjamini-Hochberg FDR for dose series.

    Exactly what is computed (copairs' ``apply_hierarchical_fdr_correction``
    with ``combine="min"``):

    1. **Stage 1, across groups.** Each group of rows sharing the ``by``
       columns (a compound, whose rows are its doses) gets one p-value from
       its members' p-values: the minimum (``"min"``, the default: a compound
       active at its top dose only is not penalised for inactive low doses),
       the Bonferroni-adjusted minimum ``min(1, n x min p)`` or the Simes
       combination ``min_i n p_(i) / i`` (both valid under any dependence within
       the group, where the plain minimum is not). These group p-values get
       BH q-values over all groups; a group is *selected* when its q-value is
       below ``threshold``.
    2. **Stage 2, within each selected group.** The group's own p-values get
       BH q-values over the group's rows only (a single row keeps its p-value).
       Rows of groups not selected get 1.0 (not rejected), as in copairs.

    Rows whose p-value is null or NaN are no tests: they are counted in a
    warning, take part in neither stage and get null outputs.

    Parameters
    ----------
    table : polars.DataFrame
        One row per test, e.g. :func:`mean_average_precision` with
        ``sameby=[compound, dose]``.
    by : str or sequence of str
        Group columns (the compound).
    p_value : str
        Column holding the raw p-values.
    combine : {"min", "bonferroni", "simes"} or callable
        Stage-1 combination; a callable gets one group's p-values (float64
        array) and returns its p-value.
    threshold : float
        FDR level for selecting groups and for ``below_hierarchical_p``.

    Returns
    -------
    polars.DataFrame
        ``table`` in its order, plus ``group_p_value``,
        ``group_corrected_p_value``, ``group_selected``,
        ``hierarchical_corrected_p_value`` and ``below_hierarchical_p``
        (selected group and stage-2 q-value below ``threshold``).

    Raises
    ------
    MissingColumnsError
        A ``by`` or ``p_value`` column is absent.
    InvalidInputError
        p-values outside [0, 1], or ``threshold`` outside (0, 1).
    InvalidChoiceError
        An unknown ``combine`` name.

    Warns
    -----
    NaNExcludedWarning
        With the count of rows without a p-value.

    Examples
    --------
    >>> import polars as pl
    >>> t = pl.DataFrame({"compound": ["a", "a", "b", "b", "c", "c"],
    ...                   "p_value": [0.001, 0.2, 0.04, 0.5, 0.3, 0.6]})
    >>> out = hierarchical_fdr(t, by="compound")  # group q-values 0.003, 0.06, 0.3
    >>> out["hierarchical_corrected_p_value"].to_list()
    [0.002, 0.2, 1.0, 1.0, 1.0, 1.0]
    """
    group = [by] if isinstance(by, str) else list(by)
    missing = [c for c in [*group, p_value] if c not in table.columns]
    if missing:
        raise MissingColumnsError(
            "the table to correct", missing, "name its group columns (by=) and p_value="
        )
    if not 0 < threshold < 1:
        raise InvalidInputError(f"threshold must be in (0, 1), got {threshold}")
    if callable(combine):
        combiner = combine
    elif combine in GROUP_COMBINERS:
        combiner = GROUP_COMBINERS[combine]
    else:
        raise InvalidChoiceError(
            f"unknown combine {combine!r}; choose one of {sorted(GROUP_COMBINERS)} or pass a callable"
        )
    p = table[p_value].cast(pl.Float64).fill_null(np.nan).to_numpy()
    tested = ~np.isnan(p)
    out_of_range = tested & ((p < 0) | (p > 1))
    if out_of_range.any():
        bad = np.flatnonzero(out_of_range)
        raise InvalidInputError(
            f"column {p_value!r} holds {len(bad)} value(s) outside [0, 1] (first at row "
            f"{int(bad[0])}: {p[bad[0]]}); pass raw p-values, not scores or -log10 p"
        )
    if (~tested).any():
        warnings.warn(
            f"{int((~tested).sum())} of {table.height} rows have no {p_value!r} (null or NaN): "
            "they are no tests and get null hierarchical p-values",
            NaNExcludedWarning,
            stacklevel=2,
        )
    codes = table.select(pl.struct(group).rank("dense").alias("g"))["g"].to_numpy() - 1
    n_groups = int(codes.max()) + 1 if len(codes) else 0
    group_p = np.full(n_groups, np.nan)
    for g in range(n_groups):
        members = p[(codes == g) & tested]
        if len(members):
            group_p[g] = combiner(members)
    group_q = benjamini_hochberg(group_p)
    selected = group_q < threshold  # NaN compares False
    within = np.full(len(p), np.nan)
    within[tested] = 1.0
    for g in np.flatnonzero(selected):
        rows = np.flatnonzero((codes == g) & tested)
        within[rows] = benjamini_hochberg(p[rows])
    row_group_p = group_p[codes]
    return table.with_columns(
        pl.Series("group_p_value", row_group_p).fill_nan(None),
        pl.Series("group_corrected_p_value", group_q[codes]).fill_nan(None),
        pl.Series("group_selected", selected[codes]),
        pl.Series("hierarchical_corrected_p_value", within).fill_nan(None),
        pl.Series("below_hierarchical_p", selected[codes] & (within < threshold)).set(
            pl.Series(~tested), None
        ),
    )
