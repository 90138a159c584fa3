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

from cellframe.errors import InvalidInputError, MissingColumnsError, NaNExcludedWarning

__all__ = [
    "average_precision_p_values",
    "benjamini_hochberg",
    "mean_average_precision",
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
    numpy.ndarray
        ``(null_size,)`` float32 APs.
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
        raise ValueError(
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
        ``n_queries``, ``p_value``, ``corrected_p_value``, ``below_p``,
        ``below_corrected_p``, sorted by the group columns.

    Raises
    ------
    InvalidInputError
        If no profile has positives.
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
    maps = np.empty(groups.height)
    pvals = np.empty(groups.height)
    for g, members in enumerate(groups["__i"].to_list()):
        idx = np.asarray(members, dtype=np.int64)
        score = ap_values[idx].sum() / len(idx)
        null = nulls[inv[idx]].mean(axis=0)  # float32, as copairs averages its nulls
        maps[g] = score
        pvals[g] = (np.count_nonzero(null > score) + 1) / (null_size + 1)
    q = benjamini_hochberg(pvals)
    return (
        groups.drop("__i")
        .with_columns(
            pl.Series("mean_average_precision", maps),
            pl.Series("p_value", pvals),
            pl.Series("corrected_p_value", q),
            pl.Series("below_p", pvals < threshold),
            pl.Series("below_corrected_p", q < threshold),
        )
        .select(
            [
                *group,
                "mean_average_precision",
                "n_queries",
                "p_value",
                "corrected_p_value",
                "below_p",
                "below_corrected_p",
            ]
        )
    )
