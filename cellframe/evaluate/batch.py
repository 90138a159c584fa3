"""Batch-correction metric panel (scib's definitions, as used by Arevalo et al. 2024).

Every metric is scaled to [0, 1], higher is better, and is a function of a
feature matrix (or a frame of profiles) and label arrays:

* **batch removal** (:data:`BATCH_METRICS`): :func:`silhouette_batch`,
  :func:`ilisi`, :func:`kbet`, :func:`graph_connectivity`;
* **biology conservation** (:data:`BIO_METRICS`): :func:`leiden_nmi_ari` (NMI and
  ARI), :func:`silhouette_label`, :func:`clisi`, :func:`map_control`,
  :func:`map_nonrep`;
* **overall** = 0.4 x mean(batch) + 0.6 x mean(biology) (Luecken et al. 2022,
  Arevalo et al. 2024; DOMAIN.md section 7).

Definitions follow scib / scib-metrics (Luecken et al., Nat Methods 2022), with
these stated deviations: neighbours are exact Euclidean k-nearest neighbours
(brute force in NumPy, one search shared by LISI and the graphs; of equidistant
rows the lower index first) on the profiles as given (no PCA first); kBET's per-label
neighbourhoods are Euclidean rather than diffusion-map distances; the Leiden
graph is UMAP's fuzzy connectivity of the 15 nearest neighbours (scanpy's
default), built here in NumPy. scib-metrics itself needs JAX and is not a
dependency; the tests check each metric against scikit-learn, harmonypy's LISI
and hand-computed cases.

Scale: every pass over all pairs of rows (the neighbour search, the
silhouettes) runs in blocks of rows against all rows, one block of distances
(:data:`BLOCK_BYTES`) at a time, so memory is ``O(block x n)`` and never
``O(n^2)``: 100,000 wells take the profiles plus about 200 MB. In
:func:`batch_panel` the label silhouettes and the neighbour search share one
pass.

This module is pure: it imports neither the store nor the engines.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from cellframe.columns import CONTROL, NEGATIVE_CONTROL, feature_columns
from cellframe.errors import InvalidInputError, MissingColumnsError, SkippedLabelsWarning

if TYPE_CHECKING:
    import scipy.sparse as sp

__all__ = [
    "BATCH_METRICS",
    "BATCH_WEIGHT",
    "BIO_METRICS",
    "batch_panel",
    "clisi",
    "compare",
    "graph_connectivity",
    "ilisi",
    "kbet",
    "leiden_clusters",
    "leiden_nmi_ari",
    "lisi",
    "map_control",
    "map_nonrep",
    "silhouette_batch",
    "silhouette_label",
]

#: Metrics averaged into the batch-removal score.
BATCH_METRICS: tuple[str, ...] = ("silhouette_batch", "ilisi", "kbet", "graph_connectivity")
#: Metrics averaged into the biology-conservation score.
BIO_METRICS: tuple[str, ...] = (
    "leiden_nmi",
    "leiden_ari",
    "silhouette_label",
    "clisi",
    "map_control",
    "map_nonrep",
)
#: Weight of the batch score in the overall score (the biology score gets 1 - this).
BATCH_WEIGHT = 0.4
#: scib-metrics' Leiden resolution sweep: 0.2, 0.4, ..., 2.0.
LEIDEN_RESOLUTIONS: tuple[float, ...] = tuple(2 * i / 10 for i in range(1, 11))

Matrix = np.ndarray | pl.DataFrame
Labels = np.ndarray | pl.Series | Sequence


# --------------------------------------------------------------------------- inputs


def _matrix(x: Matrix, what: str = "profiles") -> np.ndarray:
    if isinstance(x, pl.LazyFrame):
        x = x.collect()
    if isinstance(x, pl.DataFrame):
        feats = feature_columns(x)
        if not feats:
            raise InvalidInputError(f"{what} has no feature columns (numeric, not Metadata_*)")
        x = x.select(pl.col(feats).cast(pl.Float64)).to_numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 2:
        raise InvalidInputError(
            f"{what}: expected a 2-D matrix of at least 2 rows, got shape {arr.shape}"
        )
    bad = ~np.isfinite(arr)
    if bad.any():
        cols = np.flatnonzero(bad.any(axis=0))[:5].tolist()
        raise InvalidInputError(
            f"{what} has {int(bad.sum())} NaN/infinite values (e.g. in feature positions "
            f"{cols}); drop or impute them before the batch panel"
        )
    return arr


def _codes(values: Labels, n: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes and the unique values of a label array; nulls are refused."""
    if isinstance(values, pl.Series):
        n_null = values.null_count()
        values = values.to_numpy()
    else:
        values = np.asarray(values, dtype=object if not isinstance(values, np.ndarray) else None)
        n_null = int(sum(v is None or (isinstance(v, float) and np.isnan(v)) for v in values))
    if len(values) != n:
        raise InvalidInputError(
            f"{what} has {len(values)} values for {n} profiles; give one per row"
        )
    if n_null:
        raise InvalidInputError(
            f"{what} is null in {n_null} of {n} rows; filter those rows or fill the labels first"
        )
    uniques, codes = np.unique(values.astype(str), return_inverse=True)
    return codes.ravel(), uniques


def _check_k(k: int, n: int, what: str) -> int:
    if k < 1:
        raise InvalidInputError(f"{what} must be at least 1, got {k}")
    return min(int(k), n - 1)


#: Bytes of one block of float64 distances (rows x n x 8) in the blocked passes
#: over all pairs (neighbour search, silhouettes). A pass holds about three
#: such arrays at once (the distances, the neighbour candidates, the distances
#: in label order), so its temporaries stay near 200 MB whatever ``n`` is; the
#: profiles themselves (n x d float64) come on top.
BLOCK_BYTES = 2**26


def _block_rows(n: int, block_bytes: int | None) -> int:
    return max(1, min(n, (block_bytes or BLOCK_BYTES) // (8 * max(n, 1))))


def _k_nearest(d2: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` smallest entries of each row of ``d2``: ascending, equal values by column index.

    ``argpartition`` finds the k-th value of each row; a row whose k-th value
    is tied with entries outside the partition (duplicate profiles, lattices)
    is resolved again among all entries up to that value, so which of several
    equidistant rows is kept never depends on the selection algorithm or the
    block: the lower row index wins, as in a stable sort.
    """
    part = np.argpartition(d2, k - 1, axis=1)[:, :k]
    part_d2 = np.take_along_axis(d2, part, axis=1)
    kth = part_d2.max(axis=1)
    order = np.lexsort((part, part_d2), axis=1)  # by distance, then by index
    idx = np.take_along_axis(part, order, axis=1)
    top = np.take_along_axis(part_d2, order, axis=1)
    n_within = np.count_nonzero(d2 <= kth[:, None], axis=1)
    for r in np.flatnonzero(n_within > k):  # ties across the k-th place
        cand = np.flatnonzero(d2[r] <= kth[r])  # ascending index
        keep = cand[np.argsort(d2[r, cand], kind="stable")[:k]]
        idx[r], top[r] = keep, d2[r, keep]
    return top, idx


def _scan(
    x: np.ndarray,
    *,
    k: int | None = None,
    codes: np.ndarray | None = None,
    block_bytes: int | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """One blocked pass over all pairs of rows: k nearest neighbours and/or silhouettes.

    Squared Euclidean distances of a block of rows against all rows come from
    BLAS as scikit-learn's ``euclidean_distances`` computes them
    (``-2 a.b + |a|^2 + |b|^2``, clipped at 0); only one block exists at a
    time, so memory is ``O(block x n)`` (:data:`BLOCK_BYTES`), never ``O(n^2)``.

    Parameters
    ----------
    x : numpy.ndarray of float64, shape (n, d)
    k : int, optional
        Neighbours to find (each row's ``k`` nearest other rows).
    codes : numpy.ndarray of int, shape (n,), optional
        Cluster codes ``0 .. c-1``, each used by at least one row (as
        ``np.unique(..., return_inverse=True)`` gives them), whose silhouette
        width each row gets.
    block_bytes : int, optional
        Size of one block of distances (default :data:`BLOCK_BYTES`).

    Returns
    -------
    tuple
        ``(dist, idx, silhouette)``: distances and indices of the neighbours,
        shape (n, k), ascending (None without ``k``); the silhouette width of
        each row, shape (n,), as :func:`sklearn.metrics.silhouette_samples`
        (0 for a row alone in its cluster; None without ``codes``).
    """
    n = x.shape[0]
    sq = np.einsum("ij,ij->i", x, x)
    block = _block_rows(n, block_bytes)
    dist = idx = sil = None
    if k is not None:
        dist = np.empty((n, k))
        idx = np.empty((n, k), dtype=np.int64)
    if codes is not None:
        # columns in cluster order (stable: each cluster's rows in index order, as
        # scikit-learn's bincount sums them); per-row sums over a cluster's columns
        counts = np.bincount(codes)
        by_code = np.argsort(codes, kind="stable")
        starts = np.r_[0, np.cumsum(counts)[:-1]]
        within = np.empty(n)
        nearest = np.empty(n)
    for start in range(0, n, block):
        stop = min(n, start + block)
        rows = np.arange(stop - start)
        d2 = x[start:stop] @ x.T
        d2 *= -2.0
        d2 += sq[start:stop, None]
        d2 += sq[None, :]
        if k is not None:
            d2[rows, rows + start] = np.inf  # not its own neighbour
            top, idx[start:stop] = _k_nearest(d2, k)
            dist[start:stop] = np.sqrt(np.maximum(top, 0.0))
        if codes is not None:
            d2[rows, rows + start] = 0.0
            np.maximum(d2, 0.0, out=d2)
            np.sqrt(d2, out=d2)
            sums = np.add.reduceat(d2.take(by_code, axis=1), starts, axis=1)
            own = codes[start:stop]
            within[start:stop] = sums[rows, own]
            sums[rows, own] = np.inf
            nearest[start:stop] = (sums / counts).min(axis=1)
        del d2
    if codes is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            within /= counts[codes] - 1
            sil = (nearest - within) / np.maximum(within, nearest)
        # 0/0 (a row alone in its cluster, or all distances 0) is 0, as in scikit-learn
        sil[np.isnan(sil)] = 0.0
    return dist, idx, sil


def _knn(x: np.ndarray, k: int, *, block_bytes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Distances and indices of each row's ``k`` nearest other rows (Euclidean, exact, sorted).

    Brute force in blocks of rows against all rows (:func:`_scan`); of
    equidistant rows the lower index comes first.
    """
    dist, idx, _ = _scan(x, k=k, block_bytes=block_bytes)
    assert dist is not None and idx is not None
    return dist, idx


def _silhouette_samples(
    x: np.ndarray, codes: np.ndarray, *, block_bytes: int | None = None
) -> np.ndarray:
    """Euclidean silhouette width of each row (scikit-learn's definition), in row blocks."""
    _, _, sil = _scan(x, codes=codes, block_bytes=block_bytes)
    assert sil is not None
    return sil


class _Neighbours:
    """The k nearest neighbours of one matrix, computed once for the largest k asked."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x
        self._dist: np.ndarray | None = None
        self._idx: np.ndarray | None = None

    @property
    def n(self) -> int:
        return self.x.shape[0]

    def get(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self._idx is None or self._idx.shape[1] < k:
            self._dist, self._idx = _knn(self.x, k)
        assert self._dist is not None
        return self._dist[:, :k], self._idx[:, :k]

    def search_with_silhouette(self, k: int, codes: np.ndarray) -> np.ndarray:
        """Find the ``k`` nearest neighbours and, in the same pass, the silhouettes of ``codes``."""
        self._dist, self._idx, sil = _scan(self.x, k=k, codes=codes)
        assert sil is not None
        return sil


def _warn_skipped(metric: str, skipped: int, total: int, why: str) -> None:
    if skipped:
        warnings.warn(
            f"{metric}: {skipped} of {total} labels skipped ({why})",
            SkippedLabelsWarning,
            stacklevel=3,
        )


# --------------------------------------------------------------------------- silhouettes


def silhouette_label(x: Matrix, labels: Labels, *, metric: str = "euclidean") -> float:
    """Average silhouette width of the labels, rescaled to [0, 1]: ``(ASW + 1) / 2``.

    scib's ``silhouette`` (cell-type ASW): 1 means tight, well-separated labels,
    0.5 overlapping ones.

    Parameters
    ----------
    x : numpy.ndarray, shape (n, d), or polars.DataFrame
        Profiles (a frame contributes its feature columns).
    labels : array-like, shape (n,)
        One biological label per row (at least 2 distinct values).
    metric : str
        ``"euclidean"`` (computed here in row blocks, equal to scikit-learn's to
        1e-12) or another distance of :func:`sklearn.metrics.silhouette_samples`.

    Returns
    -------
    float

    Raises
    ------
    InvalidInputError
        Fewer than 2 or as many labels as rows, NaN features, null labels.

    Examples
    --------
    Two tight labels far apart, each measured in two batches that mix well:

    >>> import numpy as np
    >>> x = np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [0.1, 0.1],
    ...               [5.0, 5.0], [5.1, 5.0], [5.0, 5.1], [5.1, 5.1]])
    >>> labels = ["a"] * 4 + ["b"] * 4
    >>> batch = ["p1", "p2"] * 4
    >>> round(silhouette_label(x, labels), 3)
    0.992
    """
    arr = _matrix(x)
    codes, uniques = _codes(labels, arr.shape[0], "labels")
    _check_label_count(len(uniques), arr.shape[0])
    return _rescaled_asw(_silhouettes(arr, codes, metric))


def _check_label_count(n_labels: int, n: int) -> None:
    if not 2 <= n_labels <= n - 1:
        raise InvalidInputError(
            f"silhouette_label needs 2 to n-1 distinct labels, got {n_labels} for "
            f"{n} rows; choose a label column with replicates"
        )


def _rescaled_asw(silhouettes: np.ndarray) -> float:
    return (float(np.mean(silhouettes)) + 1.0) / 2.0


def _silhouettes(x: np.ndarray, codes: np.ndarray, metric: str) -> np.ndarray:
    """Silhouette widths: blocked here for Euclidean, scikit-learn's for another metric."""
    if metric == "euclidean":
        return _silhouette_samples(x, codes)
    from sklearn.metrics import silhouette_samples

    return silhouette_samples(x, codes, metric=metric)


def silhouette_batch(
    x: Matrix, batch: Labels, labels: Labels, *, metric: str = "euclidean"
) -> float:
    """scib's batch ASW: per label, mean of ``1 - |s_batch|``; then the mean over labels.

    ``s_batch`` is each row's silhouette width with the batch as cluster, computed
    among the rows of its label. 1 means batches are indistinguishable within
    every label. Labels whose rows all share one batch, or sit in as many batches
    as they have rows (scikit-learn's silhouette is undefined then), are skipped
    as scib does, with a :class:`~cellframe.errors.SkippedLabelsWarning` counting them.

    Parameters
    ----------
    x : numpy.ndarray, shape (n, d), or polars.DataFrame
        Profiles.
    batch, labels : array-like, shape (n,)
        Batch (plate, source) and biological label of each row.
    metric : str
        ``"euclidean"`` (computed here in row blocks, equal to scikit-learn's to
        1e-12) or another distance of :func:`sklearn.metrics.silhouette_samples`.

    Returns
    -------
    float

    Raises
    ------
    InvalidInputError
        If no label qualifies (each needs at least 2 batches and more rows than
        batches), NaN features or null labels.

    Examples
    --------
    Two tight labels far apart, each measured in two batches that mix well:

    >>> import numpy as np
    >>> x = np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [0.1, 0.1],
    ...               [5.0, 5.0], [5.1, 5.0], [5.0, 5.1], [5.1, 5.1]])
    >>> labels = ["a"] * 4 + ["b"] * 4
    >>> batch = ["p1", "p2"] * 4
    >>> round(silhouette_batch(x, batch, labels), 3)
    0.828
    """
    arr = _matrix(x)
    b, _ = _codes(batch, arr.shape[0], "batch")
    lab, uniques = _codes(labels, arr.shape[0], "labels")
    means = []
    for g in range(len(uniques)):
        rows = np.flatnonzero(lab == g)
        n_batches = len(np.unique(b[rows]))
        if n_batches == 1 or n_batches == len(rows):
            continue
        sub_b = np.unique(b[rows], return_inverse=True)[1].ravel()
        s = _silhouettes(arr[rows], sub_b, metric)
        means.append(float(np.mean(1.0 - np.abs(s))))
    if not means:
        raise InvalidInputError(
            "silhouette_batch: no label has rows in at least 2 batches and more rows than "
            "batches (e.g. replicates spread one per plate); use a label with several rows "
            "per batch, such as the negative controls"
        )
    _warn_skipped(
        "silhouette_batch",
        len(uniques) - len(means),
        len(uniques),
        "a single batch, or one row per batch",
    )
    return float(np.mean(means))


# --------------------------------------------------------------------------- LISI


def _simpson(
    dist: np.ndarray,
    neighbour_codes: np.ndarray,
    n_codes: int,
    perplexity: float,
    *,
    tol: float = 1e-5,
    max_iter: int = 50,
) -> np.ndarray:
    """Simpson index of each row's neighbour labels under perplexity-calibrated Gaussian weights.

    The bisection on the precision ``beta`` (start 1, doubled or halved until
    bracketed) and the weights ``exp(-beta * d)`` on plain (not squared)
    distances follow LISI (Korsunsky et al. 2019) as scib-metrics computes it.
    Rows whose weights vanish get NaN.
    """
    n = dist.shape[0]
    target = np.log(perplexity)
    beta = np.ones(n)
    lo = np.full(n, -np.inf)
    hi = np.full(n, np.inf)

    def entropy(beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # shift by each row's nearest distance for stability; H and P are unchanged by it
        d0 = dist - dist[:, :1]
        p = np.exp(-d0 * beta[:, None])
        s = p.sum(axis=1)
        h = np.log(s) + beta * (d0 * p).sum(axis=1) / s
        return h, p / s[:, None]

    h, p = entropy(beta)
    for _ in range(max_iter):
        diff = h - target
        active = np.abs(diff) > tol
        if not active.any():
            break
        up = active & (diff > 0)
        down = active & (diff <= 0)
        lo = np.where(up, beta, lo)
        hi = np.where(down, beta, hi)
        new = beta.copy()
        new[up] = np.where(np.isinf(hi[up]), beta[up] * 2, (beta[up] + hi[up]) / 2)
        new[down] = np.where(np.isinf(lo[down]), beta[down] / 2, (beta[down] + lo[down]) / 2)
        beta = new
        h, p = entropy(beta)
    mass = np.zeros((n, n_codes))
    np.add.at(mass, (np.repeat(np.arange(n), dist.shape[1]), neighbour_codes.ravel()), p.ravel())
    simpson = (mass**2).sum(axis=1)
    simpson[~np.isfinite(simpson) | (simpson <= 0)] = np.nan
    return simpson


def lisi(x: Matrix, labels: Labels, *, perplexity: float = 30.0) -> np.ndarray:
    """Local inverse Simpson's index of every row (Korsunsky et al. 2019).

    The effective number of label values in each row's neighbourhood: the
    ``3 x perplexity`` nearest neighbours (the row itself excluded) weighted by a
    Gaussian kernel whose width gives that perplexity. 1 when every neighbour
    shares one value; the number of values under perfectly even mixing.

    Parameters
    ----------
    x : numpy.ndarray, shape (n, d), or polars.DataFrame
        Profiles.
    labels : array-like, shape (n,)
        Batch (for iLISI) or biological label (for cLISI) of each row.
    perplexity : float, default 30
        Effective neighbourhood size (scib's default); with fewer than
        ``3 x perplexity + 1`` rows the ``n - 1`` others are used and the
        perplexity lowered to a third of them.

    Returns
    -------
    numpy.ndarray, shape (n,)
        LISI values (NaN where the kernel weights vanish).

    Examples
    --------
    Two tight labels far apart, each measured in two batches that mix well:

    >>> import numpy as np
    >>> x = np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [0.1, 0.1],
    ...               [5.0, 5.0], [5.1, 5.0], [5.0, 5.1], [5.1, 5.1]])
    >>> labels = ["a"] * 4 + ["b"] * 4
    >>> batch = ["p1", "p2"] * 4
    >>> lisi(x, batch, perplexity=3).round(3)  # near 2: both batches around every row
    array([1.996, 1.996, 1.996, 1.996, 1.996, 1.996, 1.996, 1.996])
    """
    arr = _matrix(x)
    codes, uniques = _codes(labels, arr.shape[0], "labels")
    return _lisi(_Neighbours(arr), codes, len(uniques), perplexity)


def _lisi_k(perplexity: float, n: int) -> tuple[int, float]:
    """Neighbours and perplexity LISI uses with ``n`` rows."""
    if perplexity <= 0:
        raise InvalidInputError(f"perplexity must be positive, got {perplexity}")
    k = _check_k(int(3 * perplexity), n, "3 x perplexity")
    return k, min(float(perplexity), max(k / 3.0, 1.0))


def _lisi(nn: _Neighbours, codes: np.ndarray, n_codes: int, perplexity: float) -> np.ndarray:
    k, perp = _lisi_k(perplexity, nn.n)
    dist, idx = nn.get(k)
    return 1.0 / _simpson(dist, codes[idx], n_codes, perp)


def ilisi(x: Matrix, batch: Labels, *, perplexity: float = 30.0) -> float:
    """Scaled integration LISI: ``(median(LISI_batch) - 1) / (n_batches - 1)``.

    1 means every neighbourhood holds all batches evenly (perfect mixing of
    equal-size batches); 0 means each neighbourhood is one batch (scib-metrics'
    ``ilisi_knn``).

    Raises
    ------
    InvalidInputError
        With a single batch.

    Examples
    --------
    Two tight labels far apart, each measured in two batches that mix well:

    >>> import numpy as np
    >>> x = np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [0.1, 0.1],
    ...               [5.0, 5.0], [5.1, 5.0], [5.0, 5.1], [5.1, 5.1]])
    >>> labels = ["a"] * 4 + ["b"] * 4
    >>> batch = ["p1", "p2"] * 4
    >>> round(ilisi(x, batch, perplexity=3), 3)  # 1 = batches fully mixed
    0.996
    """
    arr = _matrix(x)
    codes, uniques = _codes(batch, arr.shape[0], "batch")
    return _ilisi(_Neighbours(arr), codes, len(uniques), perplexity)


def _ilisi(nn: _Neighbours, codes: np.ndarray, n_batches: int, perplexity: float) -> float:
    if n_batches < 2:
        raise InvalidInputError("ilisi needs at least 2 batches; the batch column has one value")
    value = float(np.nanmedian(_lisi(nn, codes, n_batches, perplexity)))
    return (value - 1.0) / (n_batches - 1.0)


def clisi(x: Matrix, labels: Labels, *, perplexity: float = 30.0) -> float:
    """Scaled cell-type LISI: ``(n_labels - median(LISI_label)) / (n_labels - 1)``.

    1 means every neighbourhood holds a single label (biology kept apart).

    Raises
    ------
    InvalidInputError
        With a single label.

    Examples
    --------
    Two tight labels far apart, each measured in two batches that mix well:

    >>> import numpy as np
    >>> x = np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [0.1, 0.1],
    ...               [5.0, 5.0], [5.1, 5.0], [5.0, 5.1], [5.1, 5.1]])
    >>> labels = ["a"] * 4 + ["b"] * 4
    >>> batch = ["p1", "p2"] * 4
    >>> round(clisi(x, labels, perplexity=3), 3)  # 1 = labels fully separated
    1.0
    """
    arr = _matrix(x)
    codes, uniques = _codes(labels, arr.shape[0], "labels")
    return _clisi(_Neighbours(arr), codes, len(uniques), perplexity)


def _clisi(nn: _Neighbours, codes: np.ndarray, n_labels: int, perplexity: float) -> float:
    if n_labels < 2:
        raise InvalidInputError("clisi needs at least 2 labels; the label column has one value")
    value = float(np.nanmedian(_lisi(nn, codes, n_labels, perplexity)))
    return (n_labels - value) / (n_labels - 1.0)


# --------------------------------------------------------------------------- kBET


def _kbet_p_values(x: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """Pearson chi-square p-value of each row's k-neighbourhood batch counts against ``b``'s frequencies."""
    from scipy.stats import chi2

    _, idx = _knn(x, k)
    n_batches = int(b.max()) + 1
    expected = np.bincount(b, minlength=n_batches) / len(b) * k
    keep = expected > 0
    observed = np.zeros((len(b), n_batches))
    np.add.at(observed, (np.repeat(np.arange(len(b)), k), b[idx].ravel()), 1.0)
    stat = ((observed[:, keep] - expected[keep]) ** 2 / expected[keep]).sum(axis=1)
    return chi2.sf(stat, df=int(keep.sum()) - 1)


def kbet(
    x: Matrix,
    batch: Labels,
    labels: Labels | None = None,
    *,
    alpha: float = 0.05,
    k: int | None = None,
    min_rows: int = 10,
) -> float:
    """kBET acceptance rate (Buettner et al. 2019), per label as in scib.

    For each row, the batch counts among its ``k`` nearest neighbours are tested
    against the batch frequencies of its label (Pearson chi-square, ``n_batches - 1``
    degrees of freedom); the acceptance rate is the share of rows with
    ``p >= alpha``. With ``labels`` the test runs within each label's rows and the
    rates are averaged over labels (scib's ``kBET``, reported as
    1 - rejection rate); labels with fewer than ``min_rows`` rows or a single batch
    are skipped (counted in a :class:`~cellframe.errors.SkippedLabelsWarning`).

    Parameters
    ----------
    x : numpy.ndarray, shape (n, d), or polars.DataFrame
        Profiles.
    batch : array-like, shape (n,)
        Batch of each row.
    labels : array-like, shape (n,), optional
        Biological label of each row; None tests all rows as one group.
    alpha : float, default 0.05
        Significance level of each neighbourhood's test.
    k : int, optional
        Neighbourhood size; default scib's ``k0``: a quarter of the mean rows per
        batch of the label, clipped to [10, 70] (and below the label's rows).
    min_rows : int, default 10
        Smallest label tested (scib's limit).

    Returns
    -------
    float
        Mean acceptance rate in [0, 1]; 1 = neighbourhoods look like random draws
        from the batches.

    Raises
    ------
    InvalidInputError
        No label qualifies, bad ``alpha`` or ``k``.

    Examples
    --------
    Forty rows from one distribution in two batches, then with batch ``p2``
    shifted by 3 on the first feature:

    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(40, 3))
    >>> batch = ["p1", "p2"] * 20
    >>> round(kbet(x, batch), 3)
    1.0
    >>> shifted = x + np.where(np.array(batch)[:, None] == "p2", [3.0, 0.0, 0.0], 0.0)
    >>> round(kbet(shifted, batch), 3)
    0.45
    """
    arr = _matrix(x)
    n = arr.shape[0]
    if not 0 < alpha < 1:
        raise InvalidInputError(f"alpha must be in (0, 1), got {alpha}")
    b, _ = _codes(batch, n, "batch")
    lab, uniques = (
        _codes(labels, n, "labels") if labels is not None else (np.zeros(n, int), np.array(["all"]))
    )
    rates = []
    for g in range(len(uniques)):
        rows = np.flatnonzero(lab == g)
        sub_b = np.unique(b[rows], return_inverse=True)[1].ravel()
        if len(rows) < max(min_rows, 3) or sub_b.max() == 0:
            continue
        if k is None:
            k0 = int(np.clip(np.floor(np.bincount(sub_b).mean() / 4), 10, 70))
        else:
            k0 = int(k)
        k0 = _check_k(k0, len(rows), "k")
        rates.append(float(np.mean(_kbet_p_values(arr[rows], sub_b, k0) >= alpha)))
    if not rates:
        raise InvalidInputError(
            f"kbet: no label has at least {min_rows} rows in 2 or more batches; use a label "
            "with more replicates (e.g. the negative controls) or lower min_rows"
        )
    _warn_skipped(
        "kbet", len(uniques) - len(rates), len(uniques), f"under {min_rows} rows or one batch"
    )
    return float(np.mean(rates))


# --------------------------------------------------------------------------- graphs


def _knn_graph(nn: _Neighbours, k: int) -> sp.csr_matrix:
    """The directed k-NN graph (an edge from each row to each of its neighbours)."""
    import scipy.sparse as sp

    _, idx = nn.get(k)
    n = nn.n
    ones = np.ones(n * k, dtype=np.int8)
    return sp.csr_matrix((ones, (np.repeat(np.arange(n), k), idx.ravel())), shape=(n, n))


def graph_connectivity(x: Matrix, labels: Labels, *, n_neighbors: int = 15) -> float:
    """Mean over labels of the share of a label's rows in its largest connected component.

    The graph is the directed ``n_neighbors``-nearest-neighbour graph of all rows,
    restricted to each label's rows (strongly connected components, as scib).
    1 means every label's rows stay connected through each other.

    Returns
    -------
    float

    Examples
    --------
    Two tight labels far apart, each measured in two batches that mix well:

    >>> import numpy as np
    >>> x = np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [0.1, 0.1],
    ...               [5.0, 5.0], [5.1, 5.0], [5.0, 5.1], [5.1, 5.1]])
    >>> labels = ["a"] * 4 + ["b"] * 4
    >>> batch = ["p1", "p2"] * 4
    >>> graph_connectivity(x, labels, n_neighbors=3)
    1.0
    """
    arr = _matrix(x)
    lab, uniques = _codes(labels, arr.shape[0], "labels")
    return _graph_connectivity(_Neighbours(arr), lab, len(uniques), n_neighbors)


def _graph_connectivity(nn: _Neighbours, lab: np.ndarray, n_labels: int, k: int) -> float:
    from scipy.sparse.csgraph import connected_components

    graph = _knn_graph(nn, _check_k(k, nn.n, "n_neighbors"))
    shares = []
    for g in range(n_labels):
        rows = np.flatnonzero(lab == g)
        _, comp = connected_components(graph[rows][:, rows], connection="strong")
        shares.append(np.bincount(comp).max() / len(rows))
    return float(np.mean(shares))


def _fuzzy_connectivities(nn: _Neighbours, k: int) -> sp.csr_matrix:
    """UMAP's fuzzy simplicial set of the k-NN graph (scanpy's ``connectivities``).

    Per row: ``rho`` = distance to the nearest neighbour, ``sigma`` by bisection so
    that ``sum exp(-(d - rho) / sigma) = log2(k)``; weights ``exp(-(d - rho) / sigma)``,
    then the fuzzy union ``W + W.T - W * W.T``.
    """
    import scipy.sparse as sp

    dist, idx = nn.get(k)
    n = nn.n
    rho = dist[:, 0]
    shifted = np.maximum(dist - rho[:, None], 0.0)
    target = np.log2(k)
    lo, hi = np.zeros(n), np.full(n, np.inf)
    sigma = np.ones(n)
    for _ in range(64):
        total = np.exp(-shifted / sigma[:, None]).sum(axis=1)
        big = total > target
        hi = np.where(big, sigma, hi)
        lo = np.where(big, lo, sigma)
        sigma = np.where(np.isinf(hi), sigma * 2, (lo + hi) / 2)
    w = np.exp(-shifted / sigma[:, None])
    mat = sp.csr_matrix((w.ravel(), (np.repeat(np.arange(n), k), idx.ravel())), shape=(n, n))
    return (mat + mat.T - mat.multiply(mat.T)).tocsr()


def leiden_clusters(
    x: Matrix, *, resolution: float = 1.0, n_neighbors: int = 15, seed: int = 0
) -> np.ndarray:
    """Leiden clusters (igraph, modularity with a resolution) of the UMAP k-NN graph.

    Parameters
    ----------
    x : numpy.ndarray, shape (n, d), or polars.DataFrame
        Profiles.
    resolution : float
        Resolution of the modularity objective (higher: more clusters).
    n_neighbors : int, default 15
        Neighbours of the graph (scanpy's default).
    seed : int
        Seed of igraph's random generator, for a reproducible partition.

    Returns
    -------
    numpy.ndarray, shape (n,)
        Cluster ids.
    """
    arr = _matrix(x)
    return _leiden(_leiden_graph(_Neighbours(arr), n_neighbors), resolution, seed)


def _leiden_graph(nn: _Neighbours, k: int):
    import igraph as ig

    upper = _triu(_fuzzy_connectivities(nn, _check_k(k, nn.n, "n_neighbors")))
    rows, cols = upper.nonzero()
    graph = ig.Graph(n=nn.n, edges=np.column_stack([rows, cols]).tolist())
    graph.es["weight"] = np.asarray(upper[rows, cols]).ravel().tolist()
    return graph


def _leiden(graph, resolution: float, seed: int) -> np.ndarray:
    # igraph's Leiden on the modularity objective, as scib-metrics runs it (scanpy's
    # flavor="igraph"); its global random generator is seeded, then restored.
    import random

    import igraph as ig

    ig.set_random_number_generator(random.Random(seed))
    try:
        clustering = graph.community_leiden(
            objective_function="modularity", weights="weight", resolution=float(resolution)
        )
    finally:
        ig.set_random_number_generator(random)
    return np.asarray(clustering.membership)


def _triu(mat: sp.csr_matrix) -> sp.csr_matrix:
    """Upper triangle of a symmetric sparse matrix, diagonal excluded (one edge per pair)."""
    import scipy.sparse as sp

    return sp.triu(mat, k=1).tocsr()


def leiden_nmi_ari(
    x: Matrix,
    labels: Labels,
    *,
    resolutions: Sequence[float] = LEIDEN_RESOLUTIONS,
    n_neighbors: int = 15,
    seed: int = 0,
) -> tuple[float, float]:
    """NMI and ARI of Leiden clusters against the labels, at the resolution of best NMI.

    scib's sweep: Leiden at each resolution (0.2, 0.4, ..., 2.0), keep the clustering
    whose NMI (arithmetic normalization) with the labels is highest; report its NMI
    and its adjusted Rand index (scikit-learn's ``normalized_mutual_info_score`` and
    ``adjusted_rand_score``). ARI can be slightly negative for clusterings worse
    than chance; it is reported as is.

    Returns
    -------
    tuple of float
        ``(nmi, ari)``.
    """
    arr = _matrix(x)
    lab, _ = _codes(labels, arr.shape[0], "labels")
    return _leiden_nmi_ari(_Neighbours(arr), lab, resolutions, n_neighbors, seed)


def _leiden_nmi_ari(
    nn: _Neighbours, lab: np.ndarray, resolutions: Sequence[float], k: int, seed: int
) -> tuple[float, float]:
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    if not len(resolutions):
        raise InvalidInputError("resolutions is empty; give at least one Leiden resolution")
    graph = _leiden_graph(nn, k)
    best = (-np.inf, np.nan)
    for r in resolutions:
        clusters = _leiden(graph, r, seed)
        nmi = normalized_mutual_info_score(lab, clusters, average_method="arithmetic")
        if nmi > best[0]:
            best = (nmi, adjusted_rand_score(lab, clusters))
    return float(best[0]), float(best[1])


# --------------------------------------------------------------------------- mAP


def _require(frame: pl.DataFrame, cols: Sequence[str], where: str) -> None:
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise MissingColumnsError(where, missing, "name existing batch/label columns")


def _control_mask(frame: pl.DataFrame, controls: pl.Expr | None) -> np.ndarray:
    if controls is None:
        if CONTROL not in frame.columns:
            raise InvalidInputError(
                f"no {CONTROL!r} column to find the negative controls for mAP; pass "
                "controls=, e.g. pl.col('Metadata_Treatment') == 'DMSO'"
            )
        controls = pl.col(CONTROL) == NEGATIVE_CONTROL
    try:
        mask = frame.select(controls.fill_null(False).alias("c"))["c"].to_numpy().astype(bool)
    except pl.exceptions.PolarsError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InvalidInputError(
            f"the controls expression cannot be evaluated on the profiles ({first}); "
            f"name an existing column, e.g. pl.col({CONTROL!r}) == {NEGATIVE_CONTROL!r}"
        ) from err
    if not mask.any():
        raise InvalidInputError(
            "no row matched the controls expression; mAP against controls needs negative "
            "controls (check controls=)"
        )
    return mask


def _label_mean(ap: pl.DataFrame, label: str) -> float:
    per_label = (
        ap.filter(pl.col("average_precision").is_not_null() & ~pl.col("average_precision").is_nan())
        .group_by(label)
        .agg(pl.col("average_precision").mean())
    )
    if per_label.height == 0:
        raise InvalidInputError(
            f"no {label!r} value has two or more profiles: mAP needs replicates of a label"
        )
    return float(per_label["average_precision"].mean())


def map_control(
    frame: pl.DataFrame | pl.LazyFrame,
    *,
    label: str,
    controls: pl.Expr | None = None,
    features: Sequence[str] | None = None,
) -> float:
    """mAP of replicates retrieved against negative controls, averaged over labels.

    Each non-control profile ranks the other profiles of its label (positives)
    against the negative controls (copairs' phenotypic activity,
    :func:`cellframe.evaluate.phenotypic_activity`, cosine similarity); AP is
    averaged per label and the label means are averaged.

    Parameters
    ----------
    frame : polars.DataFrame or LazyFrame
        Profiles with ``label`` and the control column.
    label : str
        Column whose equal values are replicates.
    controls : polars.Expr, optional
        True for negative-control rows; default ``Metadata_Control == "negcon"``.
    features : sequence of str, optional
        Feature columns (default: every numeric non-``Metadata_`` column).

    Returns
    -------
    float

    Examples
    --------
    Treatment ``a`` is far from the controls, ``b`` sits among them:

    >>> import polars as pl
    >>> profiles = pl.DataFrame({
    ...     "Metadata_Treatment": ["DMSO"] * 4 + ["a", "a", "b", "b"],
    ...     "Metadata_Control": ["negcon"] * 4 + [None] * 4,
    ...     "f1": [0.1, -0.1, 0.0, 0.05, 1.0, 1.1, 0.1, -0.1],
    ...     "f2": [0.0, 0.1, -0.1, 0.0, 1.0, 0.9, -0.1, 0.1]})
    >>> map_control(profiles, label="Metadata_Treatment")  # mean of a's 1.0 and b's 0.225
    0.6125
    >>> map_control(profiles.filter(pl.col("Metadata_Treatment") != "b"),
    ...             label="Metadata_Treatment")
    1.0
    """
    from cellframe.evaluate.pairs import phenotypic_activity

    df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
    _require(df, [label], "profiles")
    mask = _control_mask(df, controls)
    with warnings.catch_warnings():
        # labels with a single profile have no positives; the mean below leaves them out
        warnings.filterwarnings("ignore", message=".*no positive pair.*", category=RuntimeWarning)
        ap = phenotypic_activity(
            df.with_columns(pl.Series("__cf_control", mask)),
            treatment=label,
            controls=pl.col("__cf_control"),
            features=features if features is not None else feature_columns(df),
        )
    return _label_mean(ap.filter(~pl.col("is_control")), label)


def map_nonrep(
    frame: pl.DataFrame | pl.LazyFrame,
    *,
    label: str,
    controls: pl.Expr | None = None,
    features: Sequence[str] | None = None,
) -> float:
    """mAP of replicates retrieved against non-replicates, averaged over labels.

    Controls are left out; each profile ranks the other profiles of its label
    (positives) against the profiles of every other label (negatives) with
    :func:`cellframe.evaluate.average_precision`; AP is averaged per label, then
    over labels.

    Parameters
    ----------
    frame, label, controls, features
        As in :func:`map_control`.

    Returns
    -------
    float
    """
    from cellframe.evaluate.pairs import PairRules, average_precision

    df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
    _require(df, [label], "profiles")
    feats = list(features) if features is not None else feature_columns(df)
    treated = df.filter(pl.Series(~_control_mask(df, controls)))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*no positive pair.*", category=RuntimeWarning)
        ap = average_precision(
            treated, features=feats, rules=PairRules(pos_sameby=[label], neg_diffby=[label])
        )
    return _label_mean(ap, label)


# --------------------------------------------------------------------------- panel


def batch_panel(
    frame: pl.DataFrame | pl.LazyFrame,
    *,
    batch: str,
    label: str,
    controls: pl.Expr | None = None,
    features: Sequence[str] | None = None,
    n_neighbors: int = 15,
    perplexity: float = 30.0,
    seed: int = 0,
) -> pl.DataFrame:
    """Every batch-correction metric of one table of profiles, as one row.

    Parameters
    ----------
    frame : polars.DataFrame or LazyFrame
        Profiles (one row per well or treatment replicate).
    batch : str
        Batch column (``Metadata_Plate``, source, ...).
    label : str
        Biological label column (treatment, MoA); also the replicate key of the
        two mAP metrics. Null labels or batches are refused.
    controls : polars.Expr, optional
        Negative-control rows (default ``Metadata_Control == "negcon"``), the
        reference of :func:`map_control` and left out of :func:`map_nonrep`.
        The other metrics use every row, controls included (as one label).
    features : sequence of str, optional
        Feature columns (default: every numeric non-``Metadata_`` column).
    n_neighbors : int, default 15
        Neighbours of the graph metrics (connectivity, Leiden).
    perplexity : float, default 30
        LISI's neighbourhood perplexity.
    seed : int
        Leiden seed.

    Returns
    -------
    polars.DataFrame
        One row: ``n_profiles``, ``n_batches``, ``n_labels``, each metric of
        :data:`BATCH_METRICS` and :data:`BIO_METRICS` (Float64, in [0, 1] except
        ARI, which can dip below 0), ``batch_score`` (their mean over
        :data:`BATCH_METRICS`), ``bio_score`` (mean over :data:`BIO_METRICS`) and
        ``overall_score`` = 0.4 x batch_score + 0.6 x bio_score.

    Raises
    ------
    MissingColumnsError
        If ``batch``, ``label`` or a feature column is absent.
    InvalidInputError
        NaN features, null batch or label values, a single batch, no controls,
        or a metric undefined on the data (each message names it).

    Examples
    --------
    >>> import numpy as np, polars as pl
    >>> rng = np.random.default_rng(0)
    >>> centers = rng.normal(size=(4, 5)) * 5
    >>> rows = [(p, t, c) for p in "AB" for t in range(4) for c in range(6)]
    >>> x = np.array([centers[t] + rng.normal(size=5) for _, t, _ in rows])
    >>> df = pl.DataFrame({"Metadata_Plate": [p for p, _, _ in rows],
    ...     "Metadata_Treatment": [f"t{t}" for _, t, _ in rows],
    ...     "Metadata_Control": ["negcon" if t == 0 else None for _, t, _ in rows]}
    ...     ).hstack(pl.DataFrame(x, schema=[f"f{i}" for i in range(5)]))
    >>> row = batch_panel(df, batch="Metadata_Plate", label="Metadata_Treatment")
    >>> round(row["overall_score"][0], 2) > 0.7
    True
    """
    df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
    _require(df, [batch, label], "profiles")
    # a numeric batch or label column without the Metadata_ prefix is not a feature
    feats = (
        list(features)
        if features is not None
        else [c for c in feature_columns(df) if c not in (batch, label)]
    )
    _require(df, feats, "profiles")
    x = _matrix(df.select(feats), "profiles")
    b, l_ = df[batch], df[label]
    n_batches = _codes(b, df.height, f"batch column {batch!r}")[1].size
    n_labels = _codes(l_, df.height, f"label column {label!r}")[1].size
    if n_batches < 2:
        raise InvalidInputError(
            f"batch column {batch!r} has a single value: the panel compares batches; "
            "name the plate or source column"
        )
    b_codes, _ = _codes(b, df.height, "batch")
    l_codes, _ = _codes(l_, df.height, "labels")
    # one neighbour search serves LISI (3 x perplexity) and the graphs (n_neighbors)
    # one blocked pass over all pairs serves the neighbours of LISI (3 x perplexity)
    # and the graphs (n_neighbors), and the label silhouettes
    _check_label_count(n_labels, df.height)
    nn = _Neighbours(x)
    k = max(_lisi_k(perplexity, df.height)[0], _check_k(n_neighbors, df.height, "n_neighbors"))
    label_silhouettes = nn.search_with_silhouette(k, l_codes)
    values: dict[str, float] = {}
    values["silhouette_batch"] = silhouette_batch(x, b, l_)
    values["ilisi"] = _ilisi(nn, b_codes, n_batches, perplexity)
    values["kbet"] = kbet(x, b, l_)
    values["graph_connectivity"] = _graph_connectivity(nn, l_codes, n_labels, n_neighbors)
    nmi, ari = _leiden_nmi_ari(nn, l_codes, LEIDEN_RESOLUTIONS, n_neighbors, seed)
    values["leiden_nmi"], values["leiden_ari"] = nmi, ari
    values["silhouette_label"] = _rescaled_asw(label_silhouettes)
    values["clisi"] = _clisi(nn, l_codes, n_labels, perplexity)
    values["map_control"] = map_control(df, label=label, controls=controls, features=feats)
    values["map_nonrep"] = map_nonrep(df, label=label, controls=controls, features=feats)
    batch_score = float(np.mean([values[m] for m in BATCH_METRICS]))
    bio_score = float(np.mean([values[m] for m in BIO_METRICS]))
    overall = BATCH_WEIGHT * batch_score + (1 - BATCH_WEIGHT) * bio_score
    return pl.DataFrame(
        {
            "n_profiles": [df.height],
            "n_batches": [n_batches],
            "n_labels": [n_labels],
            **{m: [values[m]] for m in (*BATCH_METRICS, *BIO_METRICS)},
            "batch_score": [batch_score],
            "bio_score": [bio_score],
            "overall_score": [overall],
        },
        schema_overrides={"n_profiles": pl.Int64, "n_batches": pl.Int64, "n_labels": pl.Int64},
    )


def _method_names(key: str | tuple[str, str]) -> tuple[str | None, str]:
    if isinstance(key, tuple):
        if len(key) != 2:
            raise InvalidInputError(
                f"compare: a key must be 'correction', 'source/correction' or a "
                f"(source, correction) pair, got {key!r}"
            )
        return str(key[0]), str(key[1])
    source, sep, correction = str(key).partition("/")
    return (source, correction) if sep else (None, source)


def compare(
    frames: Mapping[str | tuple[str, str], pl.DataFrame | pl.LazyFrame],
    *,
    batch: str,
    label: str,
    controls: pl.Expr | None = None,
    n_neighbors: int = 15,
    perplexity: float = 30.0,
    seed: int = 0,
) -> pl.DataFrame:
    """The batch panel of several tables: one row per (feature source, correction).

    Parameters
    ----------
    frames : mapping
        Name -> profiles. A name ``"source/correction"`` (or a ``(source,
        correction)`` tuple) fills both columns; a plain name is the correction
        and leaves ``feature_source`` null.
    batch, label, controls, n_neighbors, perplexity, seed
        As in :func:`batch_panel` (each table's own feature columns are used).

    Returns
    -------
    polars.DataFrame
        ``method`` (the name), ``feature_source``, ``correction``, then the
        columns of :func:`batch_panel`, in the order given.

    Raises
    ------
    InvalidInputError
        No tables, or a table the panel refuses (the message names the table).
    """
    if not frames:
        raise InvalidInputError("compare needs at least one table of profiles")
    rows = []
    for key, frame in frames.items():
        source, correction = _method_names(key)
        name = key if isinstance(key, str) else f"{source}/{correction}"
        df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
        _require(df, [batch, label], f"table {name!r}")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                row = batch_panel(
                    df,
                    batch=batch,
                    label=label,
                    controls=controls,
                    n_neighbors=n_neighbors,
                    perplexity=perplexity,
                    seed=seed,
                )
        except InvalidInputError as err:
            raise type(err)(f"table {name!r}: {err}") from err
        for w in caught:  # re-issued with the table's name, so several tables stay apart
            warnings.warn(f"table {name!r}: {w.message}", w.category, stacklevel=2)
        rows.append(
            pl.DataFrame(
                {"method": [name], "feature_source": [source], "correction": [correction]},
                schema={"method": pl.String, "feature_source": pl.String, "correction": pl.String},
            ).hstack(row)
        )
    return pl.concat(rows)
