"""Replicate metrics analysts know from cytominer-eval: percent replicating and grit.

Both use a similarity between profiles: Pearson correlation (default, as
cytominer-eval), Spearman correlation (Pearson of per-profile feature ranks) or
cosine. Correlations are cosine similarities of row-centred (ranked) profiles,
so they are computed in blocks like every other similarity here.

* **Percent replicating** (cytominer-eval's ``replicate_reproducibility``):
  over all unordered pairs of profiles, the fraction of *replicate* pairs (equal
  on every ``replicate_groups`` column) whose similarity exceeds the
  ``quantile`` of the *non-replicate* pair similarities (linear interpolation,
  as pandas). The quantile is exact and computed in two streaming passes
  (a histogram, then the values of the one or two bins that hold it), so no
  ``n^2`` list of pairs is kept.
* **grit**: for each perturbation (``profile_col``), the similarities of its
  profiles to profiles of *other* perturbations of the same group
  (``group_col``, e.g. MoA) are z-scored against the similarities of its
  profiles to the control perturbations (mean and population standard
  deviation), then summarised by their mean (or median).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from cellframe._progress import progress as _progress
from cellframe.errors import InvalidChoiceError, InvalidInputError
from cellframe.evaluate._data import default_block_rows, encode, profile_matrix
from cellframe.evaluate.similarity import unit_rows

__all__ = ["ReplicateResult", "grit", "percent_replicating", "similarity_profiles"]

_HIST_BINS = 1 << 20


def _centre(x: np.ndarray) -> np.ndarray:
    return x - x.mean(axis=1, keepdims=True)


def _ranks(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return _centre(rankdata(x, axis=1).astype(x.dtype))


_SIMILARITIES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "pearson": _centre,
    "spearman": _ranks,
    "cosine": lambda x: x,
}


def similarity_profiles(
    x: np.ndarray, method: str | Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """Transform profiles so that their cosine similarity is the chosen similarity.

    ``"pearson"`` centres each profile, ``"spearman"`` ranks then centres it,
    ``"cosine"`` keeps it; a callable is applied as is. Unit rows are returned.
    """
    if callable(method):
        fn = method
    else:
        try:
            fn = _SIMILARITIES[method]
        except KeyError:
            raise InvalidInputError(
                f"unknown similarity {method!r}; choose one of {sorted(_SIMILARITIES)} or pass a callable"
            ) from None
    return unit_rows(fn(np.asarray(x, dtype=np.float64)), dtype=x.dtype)


@dataclass
class ReplicateResult:
    """Percent replicating and its per-group detail.

    Attributes
    ----------
    percent_replicating : float
        Fraction of replicate pairs above the null threshold.
    threshold : float
        The ``quantile`` of the non-replicate similarities.
    per_group : polars.DataFrame
        Replicate-group columns, ``n_pairs``, ``median_similarity``,
        ``fraction_above``.
    """

    percent_replicating: float
    threshold: float
    per_group: pl.DataFrame

    def summary(self) -> pl.DataFrame:
        """One-row table of the result."""
        return pl.DataFrame(
            {
                "percent_replicating": [self.percent_replicating],
                "threshold": [self.threshold],
                "n_replicate_pairs": [int(self.per_group["n_pairs"].sum())],
            }
        )


def _upper_blocks(u: np.ndarray, block_rows: int, progress: bool, desc: str):
    n = u.shape[0]
    for s in _progress(
        range(0, n, block_rows),
        total=(n + block_rows - 1) // block_rows,
        desc=desc,
        unit="block",
        enabled=progress,
    ):
        q = np.arange(s, min(n, s + block_rows))
        sims = (u[q] @ u.T).astype(np.float64)
        upper = np.arange(n)[None, :] > q[:, None]
        yield q, sims, upper


def _bins(s: np.ndarray) -> np.ndarray:
    return np.clip(((s + 1.0) * 0.5 * _HIST_BINS).astype(np.int64), 0, _HIST_BINS - 1)


def percent_replicating(
    profiles: pl.DataFrame | pl.LazyFrame,
    *,
    replicate_groups: Sequence[str],
    quantile: float = 0.95,
    similarity: str | Callable[[np.ndarray], np.ndarray] = "pearson",
    features: Sequence[str] | None = None,
    dtype: type[np.floating] = np.float64,
    block_rows: int | None = None,
    progress: bool = False,
) -> ReplicateResult:
    """Fraction of replicate pairs more similar than the ``quantile`` of non-replicate pairs.

    Parameters
    ----------
    profiles : polars.DataFrame or LazyFrame
        One row per profile.
    replicate_groups : sequence of str
        Two profiles are replicates when equal on all these columns.
    quantile : float
        Quantile of the non-replicate similarities used as threshold, in (0, 1].
    similarity : {"pearson", "spearman", "cosine"} or callable
        Similarity between profiles.
    features : sequence of str, optional
        Feature columns.
    dtype : numpy float type
        Arithmetic type (float64 default: the threshold comparison is exact).
    block_rows, progress
        Rows per block; progress bar.

    Returns
    -------
    ReplicateResult

    Raises
    ------
    InvalidInputError
        If no replicate pair or no non-replicate pair exists, or ``quantile`` is
        outside (0, 1].

    Examples
    --------
    >>> import polars as pl
    >>> wells = pl.DataFrame({"Metadata_Treatment": ["a", "a", "b", "b", "c", "c"],
    ...                       "f1": [1.0, 1.1, 0.0, 0.1, -1.0, -0.9],
    ...                       "f2": [0.0, 0.2, 1.0, 0.8, 0.5, 0.4],
    ...                       "f3": [0.3, 0.3, 0.0, 0.1, 1.0, 1.2]})
    >>> result = percent_replicating(wells, replicate_groups=["Metadata_Treatment"])
    >>> result.percent_replicating, round(result.threshold, 4)
    (1.0, 0.2774)
    >>> result.per_group.select("Metadata_Treatment", "n_pairs", "fraction_above").rows()
    [('a', 1, 1.0), ('b', 1, 1.0), ('c', 1, 1.0)]
    """
    if not 0 < quantile <= 1:
        raise InvalidInputError(f"quantile must be in (0, 1], got {quantile}")
    groups = list(replicate_groups)
    pm = profile_matrix(profiles, features=features, metadata=groups, dtype=dtype)
    u = similarity_profiles(pm.x, similarity)
    keys = np.stack([encode(pm.meta[c]) for c in groups], axis=1)
    gid = np.unique(keys, axis=0, return_inverse=True)[1].ravel()
    valid = pm.valid
    n = pm.n
    b = block_rows or default_block_rows(n, bytes_per_cell=24)

    def masks(q, upper):
        rep = gid[q][:, None] == gid[None, :]
        ok = upper & valid[q][:, None] & valid[None, :]
        return ok & rep, ok & ~rep

    hist = np.zeros(_HIST_BINS, dtype=np.int64)
    for q, sims, upper in _upper_blocks(u, b, progress, "percent replicating (1/2)"):
        _, nonrep = masks(q, upper)
        hist += np.bincount(_bins(sims[nonrep]), minlength=_HIST_BINS)
    n_non = int(hist.sum())
    if n_non == 0:
        raise InvalidInputError(f"no non-replicate pairs: every profile shares {groups}")
    pos = quantile * (n_non - 1)
    lo_rank, frac = int(np.floor(pos)), pos - np.floor(pos)
    hi_rank = min(lo_rank + 1, n_non - 1)
    cum = np.cumsum(hist)
    lo_bin, hi_bin = (int(np.searchsorted(cum, r, side="right")) for r in (lo_rank, hi_rank))
    before = int(cum[lo_bin - 1]) if lo_bin > 0 else 0
    inside: list[np.ndarray] = []
    rep_sims: list[np.ndarray] = []
    rep_gid: list[np.ndarray] = []
    for q, sims, upper in _upper_blocks(u, b, progress, "percent replicating (2/2)"):
        rep, nonrep = masks(q, upper)
        v = sims[nonrep]
        bins = _bins(v)
        inside.append(v[(bins >= lo_bin) & (bins <= hi_bin)])
        rows = np.nonzero(rep)[0]
        rep_sims.append(sims[rep])
        rep_gid.append(gid[q][rows])
    vals = np.sort(np.concatenate(inside))
    v_lo, v_hi = vals[lo_rank - before], vals[hi_rank - before]
    threshold = float(v_lo + (v_hi - v_lo) * frac)
    rep_all = np.concatenate(rep_sims)
    if len(rep_all) == 0:
        raise InvalidInputError(
            f"no replicate pairs: no two profiles share {groups}; check replicate_groups"
        )
    above = rep_all > threshold
    first_row = np.unique(gid, return_index=True)[1]
    names = pm.meta.select(groups)[first_row].with_row_index("__gid")
    per_group = (
        pl.DataFrame({"__gid": np.concatenate(rep_gid).astype(np.uint32), "s": rep_all, "a": above})
        .group_by("__gid")
        .agg(
            pl.len().alias("n_pairs"),
            pl.col("s").median().alias("median_similarity"),
            pl.col("a").mean().alias("fraction_above"),
        )
        .join(names, on="__gid")
        .sort(groups)
        .select([*groups, "n_pairs", "median_similarity", "fraction_above"])
    )
    return ReplicateResult(float(above.mean()), threshold, per_group)


def grit(
    profiles: pl.DataFrame | pl.LazyFrame,
    *,
    profile_col: str,
    group_col: str,
    control_perts: Sequence[str],
    summary: str = "mean",
    similarity: str | Callable[[np.ndarray], np.ndarray] = "pearson",
    features: Sequence[str] | None = None,
    dtype: type[np.floating] = np.float64,
    block_rows: int | None = None,
    progress: bool = False,
) -> pl.DataFrame:
    """Grit of every perturbation: z-scored similarity to its group, against controls.

    Parameters
    ----------
    profiles : polars.DataFrame or LazyFrame
        One row per profile (replicate wells of a perturbation share ``profile_col``).
    profile_col : str
        Perturbation column (compound, guide).
    group_col : str
        Higher-level group (MoA, gene). Perturbations without a group get a null grit.
    control_perts : sequence of str
        ``profile_col`` values of the control perturbations (e.g. ``["DMSO"]``).
    summary : {"mean", "median"}
        How the z-scores of a perturbation are summarised.
    similarity, features, dtype, block_rows, progress
        As in :func:`percent_replicating`.

    Returns
    -------
    polars.DataFrame
        ``perturbation``, ``group``, ``grit`` (null when the perturbation has no
        other perturbation in its group), sorted by grit descending, ties
        (and nulls, last) by perturbation.

    Raises
    ------
    InvalidInputError
        If fewer than two control profiles are found, or ``summary`` is unknown.

    Examples
    --------
    Two guides of gene A that agree, one guide of gene B (no partner: null), and
    four control wells:

    >>> import polars as pl
    >>> wells = pl.DataFrame({
    ...     "Metadata_Treatment": ["DMSO"] * 4 + ["a1", "a1", "a2", "a2", "b1", "b1"],
    ...     "Metadata_Gene": [None] * 4 + ["A", "A", "A", "A", "B", "B"],
    ...     "f1": [0.1, -0.1, 0.0, 0.2, 1.0, 1.1, 0.9, 1.0, -1.0, -0.9],
    ...     "f2": [0.0, 0.1, -0.1, 0.0, 1.0, 0.9, 1.1, 1.0, 0.5, 0.4],
    ...     "f3": [0.1, 0.0, 0.1, -0.1, 0.0, 0.1, 0.0, 0.1, 1.0, 1.1]})
    >>> result = grit(wells, profile_col="Metadata_Treatment", group_col="Metadata_Gene",
    ...               control_perts=["DMSO"])
    >>> [(p, g, None if s is None else round(s, 3)) for p, g, s in result.rows()]
    [('a2', 'A', 1.86), ('a1', 'A', 1.829), ('DMSO', None, None), ('b1', 'B', None)]
    """
    if summary not in ("mean", "median"):
        raise InvalidChoiceError(f"unknown summary {summary!r}; choose 'mean' or 'median'")
    pm = profile_matrix(profiles, features=features, metadata=[profile_col, group_col], dtype=dtype)
    meta = pm.meta
    pert = meta[profile_col].cast(pl.String)
    is_ctrl = pert.is_in(list(control_perts)).to_numpy()
    if int((is_ctrl & pm.valid).sum()) < 2:
        raise InvalidInputError(
            f"grit needs at least two control profiles; none of {list(control_perts)!r} "
            f"matched enough rows of {profile_col!r}"
        )
    p_code = encode(pert)
    g_code = encode(meta[group_col])
    g_null = meta[group_col].is_null().to_numpy()
    u = similarity_profiles(pm.x, similarity)
    n = pm.n
    valid = pm.valid
    b = block_rows or default_block_rows(n, bytes_per_cell=16)
    rows = np.flatnonzero(valid)
    c_sum = np.zeros(n)
    c_sq = np.zeros(n)
    c_n = np.zeros(n)
    t_vals: list[np.ndarray] = []
    t_rows: list[np.ndarray] = []
    for s in _progress(
        range(0, len(rows), b),
        total=(len(rows) + b - 1) // b,
        desc="grit",
        unit="block",
        enabled=progress,
    ):
        q = rows[s : s + b]
        sims = (u[q] @ u.T).astype(np.float64)
        cand = np.broadcast_to(valid, sims.shape).copy()
        cand[np.arange(len(q)), q] = False
        ctrl = cand & is_ctrl[None, :]
        c_sum[q] = np.where(ctrl, sims, 0).sum(axis=1)
        c_sq[q] = np.where(ctrl, sims * sims, 0).sum(axis=1)
        c_n[q] = ctrl.sum(axis=1)
        target = (
            cand
            & (g_code[q][:, None] == g_code[None, :])
            & (p_code[q][:, None] != p_code[None, :])
            & ~g_null[q][:, None]
            & ~g_null[None, :]
        )
        r, _ = np.nonzero(target)
        t_vals.append(sims[target])
        t_rows.append(q[r])
    per_pert = (
        pl.DataFrame(
            {
                "perturbation": pert,
                "group": meta[group_col].cast(pl.String),
                "s": c_sum,
                "sq": c_sq,
                "n": c_n,
                "valid": valid,
            }
        )
        .filter(pl.col("valid"))
        .group_by("perturbation")
        .agg(pl.col("group").first(), pl.col("s").sum(), pl.col("sq").sum(), pl.col("n").sum())
        .with_columns(mu=pl.col("s") / pl.col("n"))
        .with_columns(
            sd=(pl.col("sq") / pl.col("n") - pl.col("mu") ** 2).clip(lower_bound=0).sqrt()
        )
        # StandardScaler leaves a zero spread unscaled (NaN is not > 0 here: is_nan first).
        .with_columns(
            sd=pl.when(~pl.col("sd").is_nan() & (pl.col("sd") > 0))
            .then(pl.col("sd"))
            .otherwise(1.0)
        )
    )
    t_row = np.concatenate(t_rows) if t_rows else np.zeros(0, dtype=np.int64)
    targets = pl.DataFrame(
        {"perturbation": pert.gather(t_row), "t": np.concatenate(t_vals) if t_vals else []}
    )
    agg = pl.col("z").mean() if summary == "mean" else pl.col("z").median()
    scores = (
        targets.join(per_pert.select("perturbation", "mu", "sd"), on="perturbation")
        .with_columns(z=(pl.col("t") - pl.col("mu")) / pl.col("sd"))
        .group_by("perturbation")
        .agg(agg.alias("grit"))
        .with_columns(pl.col("grit").fill_nan(None))  # null sorts last; NaN would sort first
    )
    return (
        per_pert.select("perturbation", "group")
        .join(scores, on="perturbation", how="left")
        # Ties (nulls above all) in perturbation order: group_by leaves rows unordered.
        .sort(["grit", "perturbation"], descending=[True, False], nulls_last=True)
    )
