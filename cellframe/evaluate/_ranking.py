"""The engine behind every retrieval metric: ranks of the positives, block by block.

For each query, candidates are split into positives and negatives by boolean
masks. Candidates are ordered by cosine similarity, descending; a positive tied
with a negative comes first ("optimistic ties", as copairs). What every metric
needs is then, for the k-th positive, its rank ``n_k = k + (number of negatives
ranked before it)``. Only these ranks are kept: ``O(n_positives)`` per query,
while similarities live one block at a time.

Ties use copairs' sort key ``float32(1) - similarity``, so two similarities that
differ by less than float32 resolution around 1 tie exactly as they do in copairs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl

from cellframe._progress import progress as _progress

#: Above this many positives in one list, count negatives by sorting instead of comparing.
_COMPARE_MAX_POSITIVES = 12

#: Above this many "few-list" candidate pairs per list, similarities come from one GEMM.
_SPARSE_PAIRS_PER_LIST = 16

#: A block spec returns, for the query rows of a block: the row of the block each
#: list uses, its positive mask, its negative mask and an optional label code.
BlockSpec = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]]


@dataclass
class RankLists:
    """Positive ranks of every (query[, label]) list.

    Attributes
    ----------
    query : (L,) int64
        Row of the query.
    label : (L,) int64 or None
        Label code of the list (multi-label AP), else None.
    n_pos, n_neg : (L,) int64
        Positives and negatives of the list.
    offsets : (L + 1,) int64
        ``ranks[offsets[i]:offsets[i+1]]`` are list i's positive ranks, ascending.
    ranks : (sum n_pos,) int64
        1-based rank of the k-th positive among positives and negatives.
    """

    query: np.ndarray
    label: np.ndarray | None
    n_pos: np.ndarray
    n_neg: np.ndarray
    offsets: np.ndarray
    ranks: np.ndarray

    @property
    def n_total(self) -> np.ndarray:
        """Candidates per list (positives + negatives)."""
        return self.n_pos + self.n_neg

    def list_index(self) -> np.ndarray:
        """For every entry of ``ranks``, the list it belongs to."""
        return np.repeat(np.arange(len(self.n_pos)), self.n_pos)

    def k(self) -> np.ndarray:
        """For every entry of ``ranks``, its position k (1-based) among the positives."""
        return np.arange(len(self.ranks)) - np.repeat(self.offsets[:-1], self.n_pos) + 1


def _negatives_before(keys: np.ndarray, neg: np.ndarray, pos_keys: np.ndarray) -> np.ndarray:
    """For each row r and slot j: number of negatives of row r with key < pos_keys[r, j]."""
    kneg = np.where(neg, keys, np.float32(np.inf))
    n_slots = pos_keys.shape[1]
    if n_slots <= _COMPARE_MAX_POSITIVES:
        out = np.empty(pos_keys.shape, dtype=np.int64)
        for j in range(n_slots):
            out[:, j] = np.count_nonzero(kneg < pos_keys[:, j : j + 1], axis=1)
        return out
    kneg.sort(axis=1)
    out = np.empty(pos_keys.shape, dtype=np.int64)
    for r in range(kneg.shape[0]):
        out[r] = np.searchsorted(kneg[r], pos_keys[r], side="left")
    return out


def positive_ranks(keys: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, ...]:
    """Ranks of the positives for rows of sort keys (smaller key = more similar).

    Parameters
    ----------
    keys : (E, n) float32
        Sort keys, ``1 - similarity``.
    pos, neg : (E, n) bool
        Positive and negative candidates of each row (disjoint or not: a
        candidate in both counts once as each, as in copairs).

    Returns
    -------
    n_pos, n_neg, ranks
        Counts per row and the flat ranks (row-major, ascending within a row).
    """
    n_pos = np.count_nonzero(pos, axis=1).astype(np.int64)
    n_neg = np.count_nonzero(neg, axis=1).astype(np.int64)
    p_max = int(n_pos.max()) if len(n_pos) else 0
    if p_max == 0:
        return n_pos, n_neg, np.zeros(0, dtype=np.int64)
    # Positive keys of each row, sorted, padded with +inf into an (E, p_max) array.
    rows, cols = np.nonzero(pos)  # row-major: rows ascending
    vals = keys[rows, cols]
    order = np.lexsort((vals, rows))
    starts = np.zeros(len(n_pos), dtype=np.int64)
    np.cumsum(n_pos[:-1], out=starts[1:])
    slot_of = np.arange(len(rows)) - np.repeat(starts, n_pos)
    pos_keys = np.full((len(n_pos), p_max), np.float32(np.inf), dtype=np.float32)
    pos_keys[rows, slot_of] = vals[order]
    before = _negatives_before(keys, neg, pos_keys)
    slot = np.arange(1, p_max + 1)
    ranks = before + slot[None, :]
    keep = slot[None, :] <= n_pos[:, None]
    return n_pos, n_neg, ranks[keep]


def _candidate_keys(
    x_unit: np.ndarray, q: np.ndarray, list_rows: np.ndarray, pos: np.ndarray, neg: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort keys ``1 - similarity`` of the candidates of each list, restricted to useful columns.

    Only columns that are a candidate of some list are kept. Columns wanted by
    many lists (controls, or everything when all others are negatives) come
    from one matrix product; columns wanted by a few lists only (the replicates
    of a treatment) from row-wise dot products of just those pairs. Entries
    that are no candidate are left at 0 and never read.
    """
    want = np.logical_or(pos, neg)
    # A list without positives has no ranks to compute (its AP is null): its
    # candidates are counted from the masks but need no similarity.
    want &= pos.any(axis=1)[:, None]
    counts = want.sum(axis=0, dtype=np.int32)
    cols = np.flatnonzero(counts)
    pos, neg, want = pos[:, cols], neg[:, cols], want[:, cols]
    dense = counts[cols] * 4 >= len(list_rows)
    # Row-wise dot products pay only for a handful of pairs per list; beyond
    # that one matrix product over all wanted columns is cheaper.
    if int(counts[cols][~dense].sum()) > _SPARSE_PAIRS_PER_LIST * len(list_rows):
        dense[:] = True
    identity = np.array_equal(list_rows, np.arange(len(q)))
    rows_x = x_unit[q] if identity else x_unit[q[list_rows]]
    keys = np.zeros((len(list_rows), len(cols)), dtype=np.float32)
    dcols = np.flatnonzero(dense)
    if len(dcols):
        if not identity:
            sims = x_unit[q] @ x_unit[cols[dcols]].T
            keys[:, dcols] = np.float32(1) - sims[list_rows].astype(np.float32, copy=False)
        else:
            sims = rows_x @ x_unit[cols[dcols]].T
            keys[:, dcols] = np.float32(1) - sims.astype(np.float32, copy=False)
        del sims
    scols = np.flatnonzero(~dense)
    if len(scols):
        r, c = np.nonzero(want[:, scols])
        step = max(1, (32 * 2**20) // max(1, 8 * x_unit.shape[1]))
        for s0 in range(0, len(r), step):
            rr, cc = r[s0 : s0 + step], scols[c[s0 : s0 + step]]
            dots = np.einsum("ij,ij->i", rows_x[rr], x_unit[cols[cc]])
            keys[rr, cc] = np.float32(1) - dots.astype(np.float32, copy=False)
    return keys, pos, neg


def rank_lists(
    x_unit: np.ndarray,
    spec: BlockSpec,
    *,
    queries: np.ndarray,
    block_rows: int,
    progress: bool = False,
    desc: str = "ranking",
) -> RankLists:
    """Run ``spec`` over blocks of ``queries`` and gather the positive ranks.

    Parameters
    ----------
    x_unit : numpy.ndarray, shape (n, d)
        Unit-norm profiles (float32 or float64).
    spec : callable
        ``spec(query_rows) -> (list_rows, pos, neg, labels)``; ``list_rows``
        index into ``query_rows``; the self pair must already be excluded.
    queries : numpy.ndarray of int, shape (q,)
        Query rows.
    block_rows : int
        Queries per block.
    """
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("q", "lab", "np", "nn", "r")}
    has_label = False
    blocks: Iterator[int] = iter(range(0, len(queries), block_rows))
    n_blocks = (len(queries) + block_rows - 1) // block_rows
    for s in _progress(blocks, total=n_blocks, desc=desc, unit="block", enabled=progress):
        q = queries[s : s + block_rows]
        list_rows, pos, neg, labels = spec(q)
        if len(list_rows) == 0:
            continue
        n_neg = np.count_nonzero(neg, axis=1).astype(np.int64)  # before columns are dropped
        keys, pos, neg = _candidate_keys(x_unit, q, list_rows, pos, neg)
        n_pos, _, ranks = positive_ranks(keys, pos, neg)
        parts["q"].append(q[list_rows])
        parts["np"].append(n_pos)
        parts["nn"].append(n_neg)
        parts["r"].append(ranks)
        if labels is not None:
            has_label = True
            parts["lab"].append(labels)
    if not parts["q"]:
        empty = np.zeros(0, dtype=np.int64)
        return RankLists(empty, None, empty, empty, np.zeros(1, dtype=np.int64), empty)
    n_pos = np.concatenate(parts["np"])
    offsets = np.zeros(len(n_pos) + 1, dtype=np.int64)
    np.cumsum(n_pos, out=offsets[1:])
    return RankLists(
        query=np.concatenate(parts["q"]).astype(np.int64),
        label=np.concatenate(parts["lab"]).astype(np.int64) if has_label else None,
        n_pos=n_pos,
        n_neg=np.concatenate(parts["nn"]),
        offsets=offsets,
        ranks=np.concatenate(parts["r"]),
    )


def segment_sums(values: np.ndarray, lists: RankLists) -> np.ndarray:
    """Sum ``values`` (one per positive) within each list; 0 for lists without positives."""
    out = np.zeros(len(lists.n_pos))
    has = lists.n_pos > 0
    if has.any():
        out[has] = np.add.reduceat(values, lists.offsets[:-1][has])
    return out


def average_precision_from_ranks(lists: RankLists) -> np.ndarray:
    """Non-interpolated AP per list: mean over positives of ``k / n_k`` (NaN without positives).

    Equal to scikit-learn's ``average_precision_score`` and copairs' AP.
    """
    prec = lists.k() / lists.ranks
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(lists.n_pos > 0, segment_sums(prec, lists) / lists.n_pos, np.nan)


def interpolated_precision(lists: RankLists) -> np.ndarray:
    """Interpolated precision at each positive: max precision at this recall or beyond."""
    prec = lists.k() / lists.ranks
    if len(prec) == 0:
        return prec
    # Reverse cumulative maximum within each list (exact; Polars does it per group).
    frame = pl.DataFrame({"p": prec, "list": lists.list_index()})
    return frame.select(pl.col("p").reverse().cum_max().reverse().over("list"))["p"].to_numpy()


def interpolated_average_precision_from_ranks(lists: RankLists) -> np.ndarray:
    """Interpolated AP per list: mean over recall points k/P of the interpolated precision."""
    ip = interpolated_precision(lists)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(lists.n_pos > 0, segment_sums(ip, lists) / lists.n_pos, np.nan)
