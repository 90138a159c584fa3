"""The thesis retrieval metrics (DOMAIN.md §3): interpolated mAP, PR curve, enrichment, hits.

A query ranks every other usable profile by cosine similarity. Its positives
are the profiles sharing at least one label with it (labels split on ``|``);
every other candidate is a negative. A query without positives is not scored.

* **Interpolated AP**: precision at the k-th positive is ``k / n_k``;
  interpolated precision at recall ``k / P`` is the largest precision at that
  recall or beyond; AP is their mean over ``k = 1 .. P``. mAP is the mean over
  queries. The non-interpolated AP (copairs, scikit-learn) is reported beside it.
* **Chance-normalized AP** (``normalized_average_precision_noninterpolated``):
  ``(AP - E[AP]) / (1 - E[AP])`` of the non-interpolated AP, ``E[AP]`` its
  exact expectation under a random ranking of the same positives and
  candidates (no closed form exists for the interpolated AP's expectation).
* **Averaged precision-recall curve**: each query's interpolated precision is
  evaluated on one recall grid (``p(r) = max precision at recall >= r``) and
  averaged over queries.
* **Folds of enrichment** at the top fraction (1%): the ``t = ceil(0.01 x
  candidates)`` nearest candidates of a query form a 2 x 2 table (in the top or
  not) x (positive or not); the odds ratio ``(a d) / (b c)``. **Zero-cell rule**:
  when any cell is zero, 0.5 is added to all four cells (Haldane-Anscombe), so
  the ratio is always finite and positive. The metric is the mean over queries.
* **Hit at the top fraction**: a query with at least one positive in its top
  ``t``. :func:`hits_at_top` counts, per group (treatment), whether any of its
  queries hits: the well level (queries are wells, positives other wells of the
  treatment) and the image level (``exclude_same=(PLATE, WELL)`` removes the
  query's own well from its candidates).

Ties between a positive and a negative are broken in favour of the positive,
as in copairs.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from cellframe.columns import MOA, PLATE, TREATMENT, WELL
from cellframe.errors import InvalidInputError
from cellframe.evaluate._data import default_block_rows, encode, profile_matrix
from cellframe.evaluate._ranking import (
    RankLists,
    average_precision_from_ranks,
    interpolated_average_precision_from_ranks,
    interpolated_precision,
    rank_lists,
    segment_sums,
)
from cellframe.evaluate.pairs import label_matrix
from cellframe.evaluate.significance import normalized_average_precision
from cellframe.evaluate.similarity import ComputeOptions, check_float32_similarity, unit_rows

__all__ = [
    "RetrievalResult",
    "folds_of_enrichment",
    "hits_at_top",
    "retrieval_map",
    "retrieval_metrics",
]

IMAGE_LEVEL_EXCLUDE = (PLATE, WELL)


@dataclass
class RetrievalResult:
    """Per-query metrics, their summary and the averaged precision-recall curve.

    Attributes
    ----------
    per_query : polars.DataFrame
        One row per scored query.
    summary : polars.DataFrame
        One row: ``n_queries``, ``mean_average_precision`` (interpolated),
        ``mean_average_precision_noninterpolated``,
        ``mean_normalized_average_precision_noninterpolated`` (chance-normalized
        non-interpolated AP, see
        :func:`~cellframe.evaluate.normalized_average_precision`; queries whose
        candidates are all positives have none), ``folds_of_enrichment``,
        ``hits_at_top``, ``top_fraction``, ``n_unscored``.
    pr_curve : polars.DataFrame
        ``recall``, ``precision``: the averaged interpolated curve.
    """

    per_query: pl.DataFrame
    summary: pl.DataFrame
    pr_curve: pl.DataFrame


def folds_of_enrichment(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Odds ratio ``(a d) / (b c)`` of 2 x 2 tables with the Haldane-Anscombe rule.

    ``a``: positives in the top, ``b``: negatives in the top, ``c``: positives
    outside, ``d``: negatives outside. A table with any zero cell gets 0.5
    added to every cell.

    Examples
    --------
    >>> import numpy as np
    >>> folds_of_enrichment(np.array([2, 1]), np.array([1, 0]), np.array([1, 2]), np.array([96, 97])).tolist()
    [192.0, 117.0]
    """
    cells = np.stack([a, b, c, d]).astype(np.float64)
    cells += 0.5 * (cells == 0).any(axis=0)
    a_, b_, c_, d_ = cells
    return (a_ * d_) / (b_ * c_)


def _retrieval_lists(
    profiles: pl.DataFrame | pl.LazyFrame,
    *,
    label: str,
    sep: str | None,
    features: Sequence[str] | None,
    exclude_same: Sequence[str],
    keep: Sequence[str],
    dtype: type[np.floating],
    block_rows: int | None,
    progress: bool,
) -> tuple[RankLists, pl.DataFrame]:
    pm = profile_matrix(
        profiles,
        features=features,
        metadata=[*keep, *exclude_same],
        required_labels=[label],
        dtype=dtype,
    )
    meta, n = pm.meta, pm.n
    if sep is None:
        codes = encode(meta[label])
        lab = None
    else:
        lab, _ = label_matrix(meta[label], sep=sep)
        lab_t = lab.T.tocsr()
    excl = [encode(meta[c]) for c in exclude_same]
    invalid = ~pm.valid
    if meta.filter(pl.Series(pm.valid))[label].n_unique() < 2:
        raise InvalidInputError(
            f"every usable profile has the same {label!r}: retrieval needs at least two "
            "different labels (a single treatment has no negatives)"
        )

    def spec(q: np.ndarray):
        b = len(q)
        if lab is None:
            pos = codes[q][:, None] == codes[None, :]
        else:
            pos = (lab[q] @ lab_t).toarray() > 0
        cand = np.ones((b, n), dtype=bool)
        cand[:, invalid] = False
        cand[np.arange(b), q] = False
        if excl:
            same = np.ones((b, n), dtype=bool)
            for c in excl:
                same &= c[q][:, None] == c[None, :]
            cand &= ~same
        pos &= cand
        neg = cand & ~pos
        return np.arange(b), pos, neg, None

    queries = np.flatnonzero(pm.valid)
    x_unit = unit_rows(pm.x, dtype=dtype)
    if dtype == np.float32:
        check_float32_similarity(pm.x, unit=x_unit)
    b = block_rows or default_block_rows(n, bytes_per_cell=20)
    lists = rank_lists(
        x_unit, spec, queries=queries, block_rows=b, progress=progress, desc="retrieval"
    )
    return lists, meta


def _per_query(
    lists: RankLists, meta: pl.DataFrame, keep: Sequence[str], top_fraction: float
) -> pl.DataFrame:
    n_cand = lists.n_total
    n_top = np.maximum(1, np.ceil(top_fraction * n_cand - 1e-9)).astype(np.int64)
    in_top = lists.ranks <= np.repeat(n_top, lists.n_pos)
    a = segment_sums(in_top.astype(np.float64), lists).astype(np.int64)
    b = n_top - a
    c = lists.n_pos - a
    d = lists.n_neg - b
    ap_plain = average_precision_from_ranks(lists)
    return (
        pl.DataFrame(
            {
                "row": lists.query.astype(np.uint32),
                "n_positives": lists.n_pos,
                "n_candidates": n_cand,
                "average_precision": interpolated_average_precision_from_ranks(lists),
                "average_precision_noninterpolated": ap_plain,
                "normalized_average_precision_noninterpolated": pl.Series(
                    normalized_average_precision(ap_plain, lists.n_pos, n_cand)
                ).fill_nan(None),
                "n_top": n_top,
                "positives_in_top": a,
                "folds_of_enrichment": folds_of_enrichment(a, b, c, d),
                "hit_at_top": a > 0,
            }
        )
        .join(meta.select(["row", *keep]), on="row", how="left")
        .select(
            [
                "row",
                *keep,
                "n_positives",
                "n_candidates",
                "average_precision",
                "average_precision_noninterpolated",
                "normalized_average_precision_noninterpolated",
                "n_top",
                "positives_in_top",
                "folds_of_enrichment",
                "hit_at_top",
            ]
        )
    )


def _pr_curve(lists: RankLists, grid: np.ndarray) -> np.ndarray:
    """Mean over scored lists of the interpolated precision on ``grid``."""
    ip = interpolated_precision(lists)
    scored = np.flatnonzero(lists.n_pos > 0)
    recall = lists.k() / np.repeat(lists.n_pos, lists.n_pos)
    total = np.zeros(len(grid))
    # p(r) = max precision at recall >= r = the interpolated precision of the first
    # positive whose recall reaches r (interpolated precision is non-increasing).
    for i in scored:
        lo, hi = lists.offsets[i], lists.offsets[i + 1]
        pos = np.searchsorted(recall[lo:hi], grid - 1e-12, side="left")
        vals = np.where(pos < hi - lo, ip[lo:hi][np.minimum(pos, hi - lo - 1)], 0.0)
        total += vals
    return total / max(1, len(scored))


def retrieval_metrics(
    profiles: pl.DataFrame | pl.LazyFrame,
    *,
    label: str = MOA,
    sep: str | None = "|",
    features: Sequence[str] | None = None,
    top_fraction: float = 0.01,
    recall_points: int = 101,
    exclude_same: Sequence[str] = (),
    keep: Sequence[str] = (),
    compute: ComputeOptions | None = None,
) -> RetrievalResult:
    """Interpolated mAP, PR curve, folds of enrichment and hits at the top 1% (thesis metrics).

    Parameters
    ----------
    profiles : polars.DataFrame or LazyFrame
        One row per profile (treatment, well or image level).
    label : str
        Column whose shared labels make two profiles positives (``Metadata_MoA``).
    sep : str or None
        Separator of several labels in one value (``"|"``); None compares whole values.
    features : sequence of str, optional
        Feature columns (default: numeric non-``Metadata_`` columns).
    top_fraction : float
        Fraction of candidates forming the "top" (0.01 = top 1%).
    recall_points : int
        Points of the recall grid of the averaged PR curve (0 to 1 inclusive).
    exclude_same : sequence of str
        Candidates equal to the query on all these columns are removed (image
        level: ``("Metadata_Plate", "Metadata_Well")``).
    keep : sequence of str
        Metadata columns copied into ``per_query``.
    compute : ComputeOptions, optional
        Arithmetic type, queries per block, progress bar; ``ComputeOptions()``
        (float32, automatic blocks, no bar) by default.

    Returns
    -------
    RetrievalResult

    Raises
    ------
    InvalidInputError
        NaN features, a single label value, ``top_fraction`` outside (0, 1], or no
        query with positives.
    MissingColumnsError
        The label column is absent.

    Warns
    -----
    RuntimeWarning
        Counts of queries without positives, all-zero profiles and rows
        without a label (those are left out).

    Examples
    --------
    >>> import polars as pl
    >>> df = pl.DataFrame({"Metadata_MoA": ["a", "a", "b", "b"],
    ...                    "f1": [1.0, 0.9, 0.0, 0.1], "f2": [0.0, 0.1, 1.0, 0.9]})
    >>> retrieval_metrics(df).summary["mean_average_precision"][0]
    1.0
    """
    compute = ComputeOptions() if compute is None else compute
    if not 0 < top_fraction <= 1:
        raise InvalidInputError(f"top_fraction must be in (0, 1], got {top_fraction}")
    if recall_points < 2:
        raise InvalidInputError(f"recall_points must be at least 2, got {recall_points}")
    lists, meta = _retrieval_lists(
        profiles,
        label=label,
        sep=sep,
        features=features,
        exclude_same=exclude_same,
        keep=[label, *[k for k in keep if k != label]],
        dtype=compute.dtype,
        block_rows=compute.block_rows,
        progress=compute.progress,
    )
    keep_cols = [label, *[k for k in keep if k != label]]
    per_query = _per_query(lists, meta, keep_cols, top_fraction)
    unscored = per_query.filter(pl.col("n_positives") == 0).height
    per_query = per_query.filter(pl.col("n_positives") > 0)
    if unscored:
        warnings.warn(
            f"{unscored} of {unscored + per_query.height} queries have no positive (no other "
            f"profile shares a {label!r} label): they are not scored",
            RuntimeWarning,
            stacklevel=2,
        )
    if per_query.height == 0:
        raise InvalidInputError(
            f"no query has a positive: no two usable profiles share a {label!r} label"
        )
    grid = np.linspace(0.0, 1.0, recall_points)
    pr = pl.DataFrame({"recall": grid, "precision": _pr_curve(lists, grid)})
    summary = pl.DataFrame(
        {
            "n_queries": [per_query.height],
            "n_unscored": [unscored],
            "mean_average_precision": [per_query["average_precision"].mean()],
            "mean_average_precision_noninterpolated": [
                per_query["average_precision_noninterpolated"].mean()
            ],
            "mean_normalized_average_precision_noninterpolated": [
                per_query["normalized_average_precision_noninterpolated"].mean()
            ],
            "folds_of_enrichment": [per_query["folds_of_enrichment"].mean()],
            "hits_at_top": [int(per_query["hit_at_top"].sum())],
            "top_fraction": [float(top_fraction)],
        }
    )
    return RetrievalResult(per_query=per_query, summary=summary, pr_curve=pr)


def retrieval_map(
    profiles: pl.DataFrame | pl.LazyFrame,
    *,
    label: str = "Metadata_MoA",
    features: Sequence[str] | None = None,
) -> float:
    """Mean interpolated AP over the rows of ``profiles`` as queries.

    Every row is a query; its positives are the other rows sharing a ``label``
    value (several labels split on ``|``). This is the score a lambda sweep of
    sphering maximises.

    Parameters
    ----------
    profiles : polars.DataFrame or LazyFrame
        One row per profile.
    label : str
        Label column.
    features : sequence of str, optional
        Feature columns (default: numeric non-``Metadata_`` columns).

    Returns
    -------
    float
        The mAP, in [0, 1].

    Examples
    --------
    >>> import polars as pl
    >>> df = pl.DataFrame({"Metadata_MoA": ["a", "a", "b", "b"],
    ...                    "f1": [1.0, 0.0, 0.9, 0.1], "f2": [0.0, 1.0, 0.1, 0.9]})
    >>> round(retrieval_map(df), 4)  # each query finds its positive at rank 3, 3, 2, 2
    0.4167
    """
    res = retrieval_metrics(profiles, label=label, features=features, recall_points=2)
    return float(res.summary["mean_average_precision"][0])


def hits_at_top(
    profiles: pl.DataFrame | pl.LazyFrame,
    *,
    group: str = TREATMENT,
    exclude_same: Sequence[str] = (),
    top_fraction: float = 0.01,
    features: Sequence[str] | None = None,
    dtype: type[np.floating] = np.float32,
    block_rows: int | None = None,
    progress: bool = False,
) -> pl.DataFrame:
    """Groups (treatments) for which some query finds a replicate in its top fraction.

    Well level: rows are well profiles, ``group`` the treatment. Image level:
    rows are image profiles and ``exclude_same=("Metadata_Plate",
    "Metadata_Well")`` removes the query's own well from its candidates.

    Returns
    -------
    polars.DataFrame
        One row per group with at least one scored query: ``group``,
        ``n_queries``, ``n_queries_hit``, ``hit`` (any query hit), sorted by
        group. ``df["hit"].sum()`` is the number of hits.

    Examples
    --------
    >>> import polars as pl
    >>> df = pl.DataFrame({"Metadata_Treatment": ["a", "a", "b", "b"],
    ...                    "f1": [1.0, 0.9, 0.0, 0.1], "f2": [0.0, 0.1, 1.0, 0.9]})
    >>> hits_at_top(df)["hit"].to_list()
    [True, True]
    """
    res = retrieval_metrics(
        profiles,
        label=group,
        sep=None,
        features=features,
        top_fraction=top_fraction,
        exclude_same=exclude_same,
        recall_points=2,
        compute=ComputeOptions(dtype=dtype, block_rows=block_rows, progress=progress),
    )
    return (
        res.per_query.group_by(group)
        .agg(
            pl.len().alias("n_queries"),
            pl.col("hit_at_top").sum().alias("n_queries_hit"),
            pl.col("hit_at_top").any().alias("hit"),
        )
        .sort(group)
    )
