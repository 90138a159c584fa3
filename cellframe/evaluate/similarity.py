"""Cosine similarity in blocks, and the top-k most similar profiles per query.

A full ``n x n`` similarity matrix of 100,000 profiles is 40 GB in float32; here
it is never built. Rows are L2-normalised once and similarities are produced one
block of query rows at a time (``block x n``), in float32 by default. A float64
check on a sample of rows guards the float32 arithmetic.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from cellframe._progress import progress as _progress
from cellframe.errors import InvalidInputError
from cellframe.evaluate._data import default_block_rows, profile_matrix

__all__ = [
    "ComputeOptions",
    "check_float32_similarity",
    "cosine_similarity",
    "iter_similarity_blocks",
    "top_k_similar",
    "unit_rows",
]

#: Largest |float32 - float64| cosine difference accepted by the float64 check.
FLOAT32_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ComputeOptions:
    """How the evaluation functions compute similarities: precision, block size, progress.

    Shared by :func:`~cellframe.evaluate.average_precision`,
    :func:`~cellframe.evaluate.recall_at_k`,
    :func:`~cellframe.evaluate.phenotypic_activity` and
    :func:`~cellframe.evaluate.retrieval_metrics`; none of these settings
    changes which pairs are compared, only how the arithmetic runs.

    Parameters
    ----------
    dtype : numpy float type, default numpy.float32
        float32 (checked against float64, see :func:`check_float32_similarity`)
        or float64 similarity arithmetic.
    block_rows : int, optional
        Queries per block (default: ~512 MB of temporaries).
    progress : bool, default False
        Show a progress bar.

    Raises
    ------
    InvalidInputError
        For a ``dtype`` that is not a floating type, or a ``block_rows`` that
        is not a positive integer.

    Examples
    --------
    >>> import numpy as np
    >>> ComputeOptions(dtype=np.float64, block_rows=256).progress
    False
    """

    dtype: type[np.floating] = np.float32
    block_rows: int | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        try:
            kind = np.dtype(self.dtype).kind
        except TypeError:
            kind = ""
        if kind != "f":
            raise InvalidInputError(
                f"ComputeOptions: dtype must be numpy.float32 or numpy.float64, got {self.dtype!r}"
            )
        if self.block_rows is not None and (
            isinstance(self.block_rows, bool)
            or not isinstance(self.block_rows, int | np.integer)
            or self.block_rows < 1
        ):
            raise InvalidInputError(
                f"ComputeOptions: block_rows must be a positive integer or None (automatic), "
                f"got {self.block_rows!r}"
            )


def unit_rows(x: np.ndarray, *, dtype: type[np.floating] = np.float32) -> np.ndarray:
    """Rows of ``x`` scaled to unit L2 norm (all-zero rows stay zero).

    Norms are accumulated in float64, a slab of rows at a time, so a large
    float32 matrix is never copied whole to float64.

    Parameters
    ----------
    x : numpy.ndarray, shape (n, d)
        Profiles.
    dtype : numpy float type, default numpy.float32
        Type of the result.

    Returns
    -------
    numpy.ndarray, shape (n, d)

    Examples
    --------
    >>> import numpy as np
    >>> unit_rows(np.array([[3.0, 4.0], [0.0, 0.0]]))
    array([[0.6, 0.8],
           [0. , 0. ]], dtype=float32)
    """
    x = np.asarray(x)
    out = np.empty(x.shape, dtype=dtype)
    step = max(1, (64 * 2**20) // max(1, 8 * x.shape[1]))
    for s in range(0, x.shape[0], step):
        slab = x[s : s + step].astype(np.float64)
        norms = np.sqrt(np.einsum("ij,ij->i", slab, slab))
        norms[norms == 0] = 1.0
        out[s : s + step] = slab / norms[:, None]
    return out


def cosine_similarity(
    a: np.ndarray, b: np.ndarray | None = None, *, dtype: type[np.floating] = np.float32
) -> np.ndarray:
    """Cosine similarity between the rows of ``a`` and ``b`` (default ``a``).

    Builds the whole ``len(a) x len(b)`` matrix: use it for small inputs and
    :func:`iter_similarity_blocks` for large ones. Zero rows give 0.

    Examples
    --------
    >>> import numpy as np
    >>> cosine_similarity(np.array([[1.0, 0.0], [1.0, 1.0]]), dtype=np.float64).round(4).tolist()
    [[1.0, 0.7071], [0.7071, 1.0]]
    """
    ua = unit_rows(a, dtype=dtype)
    ub = ua if b is None else unit_rows(b, dtype=dtype)
    return ua @ ub.T


def iter_similarity_blocks(
    x: np.ndarray,
    *,
    block_rows: int | None = None,
    rows: np.ndarray | None = None,
    normalized: bool = False,
    dtype: type[np.floating] = np.float32,
    progress: bool = False,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(query_rows, similarities)`` blocks of the cosine similarity matrix.

    Parameters
    ----------
    x : numpy.ndarray, shape (n, d)
        Profiles.
    block_rows : int, optional
        Query rows per block; by default sized so a block stays near 512 MB.
    rows : numpy.ndarray of int, shape (b,), optional
        Query row indices (default: all rows).
    normalized : bool
        ``x`` already has unit rows.
    dtype : numpy float type
        Arithmetic type (float32 default).
    progress : bool
        Show a progress bar.

    Yields
    ------
    (numpy.ndarray of int, shape (b,), numpy.ndarray, shape (b, n))
        Query indices and their similarities to every row.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    >>> for rows, sims in iter_similarity_blocks(x, block_rows=2):
    ...     print(rows, sims.dtype, sims.astype(float).round(3).tolist())
    [0 1] float32 [[1.0, 0.0, 0.707], [0.0, 1.0, 0.707]]
    [2] float32 [[0.707, 0.707, 1.0]]
    """
    u = x.astype(dtype, copy=False) if normalized else unit_rows(x, dtype=dtype)
    n = u.shape[0]
    q = np.arange(n) if rows is None else np.asarray(rows)
    b = block_rows or default_block_rows(n, bytes_per_cell=8)
    starts = range(0, len(q), b)
    for s in _progress(
        starts, total=len(starts), desc="similarity", unit="block", enabled=progress
    ):
        idx = q[s : s + b]
        yield idx, u[idx] @ u.T


def check_float32_similarity(
    x: np.ndarray,
    *,
    n_rows: int = 64,
    seed: int = 0,
    tolerance: float = FLOAT32_TOLERANCE,
    unit: np.ndarray | None = None,
) -> float:
    """Largest difference between float32 and float64 cosine similarities on a sample.

    ``n_rows`` random rows are compared with every row, a slab of rows at a
    time (no float64 copy of ``x``). A difference above ``tolerance`` means
    float32 cannot rank these profiles reliably (features with huge offsets,
    say): a warning says to pass ``dtype=np.float64``.

    Parameters
    ----------
    x : numpy.ndarray, shape (n, d)
        Profiles.
    n_rows : int
        Rows sampled as queries.
    seed : int
        Seed of the sample.
    tolerance : float
        Largest accepted difference.
    unit : numpy.ndarray of float32, shape (n, d), optional
        ``unit_rows(x, dtype=np.float32)`` when already computed.

    Returns
    -------
    float
        The largest absolute difference found.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    >>> check_float32_similarity(x) < 1e-6  # float32 ranks these profiles as float64 does
    True
    """
    n = x.shape[0]
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=min(n_rows, n), replace=False))
    u32 = unit_rows(x, dtype=np.float32) if unit is None else unit
    q32 = u32[rows]
    q64 = unit_rows(x[rows], dtype=np.float64)
    step = max(1, (32 * 2**20) // max(1, 8 * x.shape[1]))
    diff = 0.0
    for s in range(0, n, step):
        s64 = q64 @ unit_rows(x[s : s + step], dtype=np.float64).T
        s32 = (q32 @ u32[s : s + step].T).astype(np.float64)
        diff = max(diff, float(np.max(np.abs(s32 - s64))))
    if diff > tolerance:
        warnings.warn(
            f"float32 cosine similarities differ from float64 by up to {diff:.2e} "
            f"(> {tolerance:.0e}); rankings may change: pass dtype=np.float64",
            RuntimeWarning,
            stacklevel=2,
        )
    return diff


def top_k_similar(
    profiles: pl.DataFrame | pl.LazyFrame,
    *,
    k: int = 10,
    features: Sequence[str] | None = None,
    id_columns: Sequence[str] = (),
    block_rows: int | None = None,
    dtype: type[np.floating] = np.float32,
    progress: bool = False,
) -> pl.DataFrame:
    """The ``k`` most similar other profiles of every profile (cosine), streamed by block.

    Memory is ``O(n x block_rows)``: each block keeps only its top ``k`` per row.

    Parameters
    ----------
    profiles : polars.DataFrame or LazyFrame
        One row per profile.
    k : int
        Neighbours per query (at most ``n - 1``).
    features : sequence of str, optional
        Feature columns (default: every numeric non-``Metadata_`` column).
    id_columns : sequence of str
        Metadata columns copied for query (``query_<col>``) and neighbour
        (``neighbor_<col>``).
    block_rows, dtype, progress
        See :func:`iter_similarity_blocks`.

    Returns
    -------
    polars.DataFrame
        ``query_row``, ``neighbor_row``, ``rank`` (1 = most similar),
        ``similarity``, and the id columns; sorted by query then rank.
        All-zero profiles are left out (with a warning).

    Raises
    ------
    InvalidInputError
        If ``k < 1``.

    Examples
    --------
    >>> import polars as pl
    >>> wells = pl.DataFrame({"Metadata_Treatment": ["a", "a", "b"],
    ...                       "f1": [1.0, 0.9, 0.0], "f2": [0.0, 0.1, 1.0]})
    >>> top = top_k_similar(wells, k=1, id_columns=["Metadata_Treatment"])
    >>> top.select("query_row", "neighbor_row", "neighbor_Metadata_Treatment").rows()
    [(0, 1, 'a'), (1, 0, 'a'), (2, 1, 'a')]
    """
    if k < 1:
        raise InvalidInputError(f"k must be at least 1, got {k}")
    pm = profile_matrix(profiles, features=features, metadata=id_columns, dtype=dtype)
    valid_rows = np.flatnonzero(pm.valid)
    x = pm.x[valid_rows]
    n = x.shape[0]
    kk = min(k, n - 1)
    if kk < 1:
        raise InvalidInputError("top_k_similar needs at least two usable profiles")
    q_out, n_out, r_out, s_out = [], [], [], []
    for idx, sims in iter_similarity_blocks(
        x, block_rows=block_rows, dtype=dtype, progress=progress
    ):
        sims[np.arange(len(idx)), idx] = -np.inf  # never your own neighbour
        part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        vals = np.take_along_axis(sims, part, axis=1)
        # Stable order: similarity descending, then row index ascending.
        order = np.lexsort((part, -vals), axis=1)
        part = np.take_along_axis(part, order, axis=1)
        vals = np.take_along_axis(vals, order, axis=1)
        q_out.append(np.repeat(idx, kk))
        n_out.append(part.ravel())
        r_out.append(np.tile(np.arange(1, kk + 1), len(idx)))
        s_out.append(vals.ravel())
    q = valid_rows[np.concatenate(q_out)]
    nb = valid_rows[np.concatenate(n_out)]
    out = pl.DataFrame(
        {
            "query_row": q.astype(np.int64),
            "neighbor_row": nb.astype(np.int64),
            "rank": np.concatenate(r_out).astype(np.int32),
            "similarity": np.concatenate(s_out).astype(np.float64),
        }
    )
    for col in id_columns:
        values = pm.meta[col]
        out = out.with_columns(
            values.gather(out["query_row"]).alias(f"query_{col}"),
            values.gather(out["neighbor_row"]).alias(f"neighbor_{col}"),
        )
    return out
