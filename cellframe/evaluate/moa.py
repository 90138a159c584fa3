"""Mechanism-of-action accuracy by the nearest neighbour: NSC and NSCB (Ljosa et al. 2013).

Input: treatment profiles (one row per compound and concentration; build them
from wells with a consensus first). Each profile is a query; its **nearest
neighbour** is the most similar other profile among the *eligible* candidates,
and the query is **correct** when that neighbour has the same MoA
(DOMAIN.md §7):

* **NSC** (not-same-compound): candidates are profiles of *other compounds*,
  so a compound cannot find its own other doses or replicates.
* **NSCB** (not-same-compound-or-batch): candidates are profiles of other
  compounds *and* other batches (plates, runs), so a batch effect cannot make
  the neighbour right. Batch effects show as the gap NSC - NSCB (94% vs 77%
  for factor analysis on BBBC021, Ljosa 2013).

Accuracy is the share of scored queries that are correct; the per-MoA table
gives the same share per query MoA, and ``mean_moa_accuracy`` is the unweighted
mean over MoAs. Negative controls (DMSO) take no part, as queries or
candidates. A query with no eligible candidate (every other profile is the
same compound, or in the same batch) has no neighbour: it is counted in
``n_no_neighbour``, warned about, and left out of the accuracy's denominator.

Similarity is cosine by default (``metric="euclidean"`` ranks by negative
Euclidean distance, ``"correlation"`` by Pearson correlation, or pass a
callable ``(queries, candidates) -> similarities``), computed in float64 one
block of queries at a time. A tie for the nearest neighbour goes to the
candidate that comes first in the input.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from cellframe.columns import CONTROL, MOA, NEGATIVE_CONTROL, PLATE, TREATMENT
from cellframe.errors import InvalidChoiceError, InvalidInputError
from cellframe.evaluate._data import default_block_rows, encode, profile_matrix
from cellframe.evaluate.pairs import label_matrix

__all__ = [
    "SIMILARITY_METRICS",
    "MoaAccuracy",
    "NoNeighbourWarning",
    "nearest_neighbour_moa",
    "nsc_accuracy",
    "nscb_accuracy",
]

Similarity = Callable[[np.ndarray, np.ndarray], np.ndarray]


class NoNeighbourWarning(RuntimeWarning):
    """Some queries have no eligible nearest neighbour (the message gives the count)."""


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1)
    return x / np.where(norms == 0, 1.0, norms)[:, None]


def _cosine(queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    return _unit(queries) @ _unit(candidates).T


def _correlation(queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    return _cosine(
        queries - queries.mean(axis=1, keepdims=True),
        candidates - candidates.mean(axis=1, keepdims=True),
    )


def _negative_euclidean(queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    sq = (
        np.einsum("ij,ij->i", queries, queries)[:, None]
        + np.einsum("ij,ij->i", candidates, candidates)[None, :]
        - 2.0 * queries @ candidates.T
    )
    return -np.sqrt(np.maximum(sq, 0.0))


#: Built-in similarities (higher = nearer), by name.
SIMILARITY_METRICS: dict[str, Similarity] = {
    "cosine": _cosine,
    "correlation": _correlation,
    "euclidean": _negative_euclidean,
}


def _undefined_rows(metric: str | Similarity, x: np.ndarray) -> np.ndarray:
    """Rows whose similarity is undefined under a built-in metric (zero or constant rows)."""
    if metric == "cosine":
        return ~np.any(x != 0, axis=1)
    if metric == "correlation":
        return np.ptp(x, axis=1) == 0
    return np.zeros(len(x), dtype=bool)


def _block_similarity(
    metric: str | Similarity, sim_fn: Similarity, x: np.ndarray
) -> Callable[[np.ndarray], np.ndarray]:
    """``rows -> similarities of x[rows] with every row of x``, preparing x once.

    The built-in metrics normalise (cosine, correlation) or take squared norms
    (euclidean) of all rows once instead of once per block; the results equal
    those of the functions in :data:`SIMILARITY_METRICS`.
    """
    if metric in ("cosine", "correlation"):
        y = _unit(x - x.mean(axis=1, keepdims=True) if metric == "correlation" else x)
        return lambda rows: y[rows] @ y.T
    if metric == "euclidean":
        sq = np.einsum("ij,ij->i", x, x)
        return lambda rows: (
            -np.sqrt(np.maximum(sq[rows, None] + sq[None, :] - 2.0 * x[rows] @ x.T, 0.0))
        )
    return lambda rows: sim_fn(x[rows], x)


def _resolve(metric: str | Similarity) -> Similarity:
    if callable(metric):
        return metric
    try:
        return SIMILARITY_METRICS[metric]
    except KeyError:
        raise InvalidChoiceError(
            f"unknown metric {metric!r}; choose one of {sorted(SIMILARITY_METRICS)} "
            "or pass a callable (queries, candidates) -> similarities"
        ) from None


@dataclass
class MoaAccuracy:
    """Nearest-neighbour MoA accuracy: per profile, per MoA and overall.

    Attributes
    ----------
    per_profile : polars.DataFrame
        One row per query: ``row`` (input position), the ``keep`` columns, the
        compound, MoA and (NSCB) batch columns, ``neighbour_row``, the
        neighbour's compound and MoA (``neighbour_<column>``), ``similarity``
        and ``correct``; the neighbour columns and ``correct`` are null for a
        query without an eligible neighbour.
    per_moa : polars.DataFrame
        One row per query MoA value, sorted: ``n_compounds``, ``n_profiles``,
        ``n_scored``, ``n_no_neighbour``, ``n_correct``, ``accuracy`` (null
        when nothing was scored).
    summary : polars.DataFrame
        One row: ``n_profiles``, ``n_scored``, ``n_no_neighbour``,
        ``n_correct``, ``accuracy``, ``mean_moa_accuracy``,
        ``n_controls_left_out``, ``n_unlabelled_left_out``, ``exclude_same``.
    """

    per_profile: pl.DataFrame
    per_moa: pl.DataFrame
    summary: pl.DataFrame

    @property
    def accuracy(self) -> float:
        """Overall accuracy (share of scored queries whose neighbour shares the MoA)."""
        value = self.summary["accuracy"][0]
        return float("nan") if value is None else float(value)


def nearest_neighbour_moa(
    profiles: pl.DataFrame | pl.LazyFrame,
    *,
    exclude_same: Sequence[str],
    moa: str = MOA,
    compound: str = TREATMENT,
    metric: str | Similarity = "cosine",
    controls: pl.Expr | None = None,
    sep: str | None = None,
    features: Sequence[str] | None = None,
    keep: Sequence[str] = (),
    block_rows: int | None = None,
) -> MoaAccuracy:
    """1-nearest-neighbour MoA accuracy, leaving out candidates equal to the query on any column.

    :func:`nsc_accuracy` and :func:`nscb_accuracy` call this with
    ``exclude_same=[compound]`` and ``[compound, batch]``.

    Parameters
    ----------
    profiles : polars.DataFrame or LazyFrame
        Treatment profiles, one row each.
    exclude_same : sequence of str
        A candidate equal to the query in *any* of these columns is not eligible.
    moa : str
        MoA label column.
    compound : str
        Compound column (identifies a compound across its concentrations).
    metric : {"cosine", "correlation", "euclidean"} or callable
        Similarity; a callable gets ``(queries, candidates)`` float64 arrays and
        returns their ``(len(queries), len(candidates))`` similarities, higher
        meaning nearer.
    controls : polars.Expr, optional
        True for negative-control rows, which are left out; default
        ``Metadata_Control == "negcon"`` when that column exists, else none.
    sep : str, optional
        Split MoA values on ``sep`` (``"|"``): a neighbour is then correct when
        it shares at least one label. Default: whole values must be equal.
    features : sequence of str, optional
        Feature columns (default: numeric non-``Metadata_`` columns).
    keep : sequence of str
        Metadata columns copied into ``per_profile``.
    block_rows : int, optional
        Queries per block (default: ~512 MB of temporaries).

    Returns
    -------
    MoaAccuracy

    Raises
    ------
    InvalidInputError
        No exclusion column, NaN features, fewer than two usable profiles, a
        callable metric that returns the wrong shape or NaN.
    MissingColumnsError
        The MoA, compound or an exclusion column is absent.

    Warns
    -----
    NoNeighbourWarning
        With the count of queries that have no eligible candidate.
    RuntimeWarning
        With the counts of rows without a label and of rows whose similarity
        is undefined (all-zero under cosine, constant under correlation); those
        rows are left out and counted in the summary.

    Examples
    --------
    >>> import polars as pl
    >>> treatments = pl.DataFrame({"Metadata_Treatment": ["c1", "c2", "c3", "c4"],
    ...                            "Metadata_MoA": ["x", "x", "y", "y"],
    ...                            "f1": [1.0, 0.9, 0.0, 0.8],
    ...                            "f2": [0.0, 0.1, 1.0, 0.3]})
    >>> result = nearest_neighbour_moa(treatments, exclude_same=["Metadata_Treatment"])
    >>> result.per_profile.select("Metadata_Treatment", "neighbour_Metadata_Treatment",
    ...                           "correct").rows()  # c4 looks like an "x" compound
    [('c1', 'c2', True), ('c2', 'c1', True), ('c3', 'c4', True), ('c4', 'c2', False)]
    >>> result.accuracy
    0.75
    """
    exclude = list(dict.fromkeys(exclude_same))
    if not exclude:
        raise InvalidInputError(
            "exclude_same is empty: name at least the compound column (NSC) so a "
            "compound cannot find itself"
        )
    sim_fn = _resolve(metric)
    df = profiles.collect() if isinstance(profiles, pl.LazyFrame) else profiles
    if not isinstance(df, pl.DataFrame):
        raise InvalidInputError(
            f"profiles: expected a Polars DataFrame or LazyFrame, got {type(profiles).__name__}"
        )
    if controls is None and CONTROL in df.columns:
        controls = pl.col(CONTROL) == NEGATIVE_CONTROL
    is_control = np.zeros(df.height, dtype=bool)
    if controls is not None:
        try:
            is_control = df.select(controls.fill_null(False).alias("c"))["c"].to_numpy()
        except pl.exceptions.PolarsError as exc:
            raise InvalidInputError(
                f"the controls expression cannot be evaluated on the treatment profiles "
                f"({type(exc).__name__}: {str(exc).splitlines()[0]}); name existing columns, "
                "e.g. controls=pl.col('Metadata_Control') == 'negcon'"
            ) from None
        is_control = is_control.astype(bool)
    n_controls = int(is_control.sum())
    label_cols = list(dict.fromkeys([moa, compound, *exclude]))
    pm = profile_matrix(
        df.filter(pl.Series(~is_control)),
        features=features,
        metadata=[*keep],
        required_labels=label_cols,
        dtype=np.float64,
        zero_norm="ignore",
        what="treatment profiles",
    )
    # ``row`` is the position in the input, controls included.
    meta = pm.meta.with_columns(
        pl.Series("row", np.flatnonzero(~is_control).astype(np.uint32), dtype=pl.UInt32)
    )
    x = pm.x
    labelled = np.ones(pm.n, dtype=bool)
    for col in label_cols:
        s = meta[col]
        null = s.is_null()
        if s.dtype == pl.String:
            null = null | (s.str.strip_chars() == "").fill_null(True)
        labelled &= ~null.to_numpy()
    undefined = _undefined_rows(metric, x) & labelled
    if undefined.any():
        warnings.warn(
            f"{int(undefined.sum())} of {pm.n} treatment profiles have an undefined "
            f"{metric} similarity (all-zero or constant rows): they are left out",
            RuntimeWarning,
            stacklevel=3,
        )
    valid = labelled & ~undefined
    if int(valid.sum()) < 2:
        raise InvalidInputError(
            f"only {int(valid.sum())} usable treatment profile(s) (after leaving out "
            f"{n_controls} control rows and rows without {label_cols}): the nearest-"
            "neighbour accuracy needs at least two"
        )
    idx = np.flatnonzero(valid)
    xv = x[idx]
    excl_codes = [encode(meta[c])[idx] for c in exclude]
    if sep is None:
        moa_codes = encode(meta[moa])[idx]
    else:
        lab, _ = label_matrix(meta[moa][idx], sep=sep)
        lab = lab.tocsr()
    n = len(idx)
    best = np.full(n, -1, dtype=np.int64)
    best_sim = np.full(n, np.nan)
    b = block_rows or default_block_rows(n, bytes_per_cell=24)
    block_similarity = _block_similarity(metric, sim_fn, xv)
    for s0 in range(0, n, b):
        q = np.arange(s0, min(n, s0 + b))
        sims = np.asarray(block_similarity(q), dtype=np.float64)
        if sims.shape != (len(q), n):
            raise InvalidInputError(
                f"the metric returned shape {sims.shape} for {len(q)} queries and {n} "
                f"candidates; it must return ({len(q)}, {n})"
            )
        if np.isnan(sims).any():
            raise InvalidInputError(
                f"the metric returned {int(np.isnan(sims).sum())} NaN similarities; "
                "leave out profiles whose similarity is undefined or use another metric"
            )
        eligible = np.ones(sims.shape, dtype=bool)
        for codes in excl_codes:
            eligible &= codes[q][:, None] != codes[None, :]
        eligible[np.arange(len(q)), q] = False
        masked = np.where(eligible, sims, -np.inf)
        arg = np.argmax(masked, axis=1)  # first maximum: ties go to the earlier row
        has = eligible.any(axis=1)
        best[q[has]] = arg[has]
        best_sim[q[has]] = sims[np.flatnonzero(has), arg[has]]
    scored = best >= 0
    correct = np.zeros(n, dtype=bool)
    if sep is None:
        correct[scored] = moa_codes[scored] == moa_codes[best[scored]]
    else:
        shared = np.asarray(lab[np.flatnonzero(scored)].multiply(lab[best[scored]]).sum(axis=1))
        correct[scored] = shared.ravel() > 0
    n_none = int((~scored).sum())
    if n_none:
        warnings.warn(
            f"{n_none} of {n} treatment profiles have no eligible neighbour (every other "
            f"profile shares their {' or '.join(repr(c) for c in exclude)}): they are "
            "counted in n_no_neighbour and left out of the accuracy",
            NoNeighbourWarning,
            stacklevel=3,
        )
    return _tables(
        meta=meta[idx],
        keep=keep,
        cols=list(dict.fromkeys([compound, moa, *exclude])),
        compound=compound,
        moa=moa,
        exclude=exclude,
        best=best,
        best_sim=best_sim,
        correct=correct,
        n_controls=n_controls,
        n_unlabelled=int((~labelled).sum()),
        n_undefined=int(undefined.sum()),
    )


def _tables(
    *,
    meta: pl.DataFrame,
    keep: Sequence[str],
    cols: list[str],
    compound: str,
    moa: str,
    exclude: list[str],
    best: np.ndarray,
    best_sim: np.ndarray,
    correct: np.ndarray,
    n_controls: int,
    n_unlabelled: int,
    n_undefined: int,
) -> MoaAccuracy:
    scored = best >= 0
    safe = np.where(scored, best, 0)
    neighbour = meta[safe].select(
        pl.col("row").alias("neighbour_row"),
        *[pl.col(c).alias(f"neighbour_{c}") for c in (compound, moa)],
    )
    none = pl.Series(~scored)
    neighbour = neighbour.with_columns(
        pl.when(none).then(None).otherwise(pl.col(c)).alias(c) for c in neighbour.columns
    )
    per_profile = pl.concat(
        [
            meta.select(["row", *[k for k in keep if k not in cols], *cols]),
            neighbour,
            pl.DataFrame(
                {
                    "similarity": pl.Series(best_sim).fill_nan(None),
                    "correct": pl.Series(correct).set(none, None),
                }
            ),
        ],
        how="horizontal",
    )
    per_moa = (
        per_profile.group_by(moa)
        .agg(
            pl.col(compound).n_unique().alias("n_compounds"),
            pl.len().alias("n_profiles"),
            pl.col("correct").is_not_null().sum().alias("n_scored"),
            pl.col("correct").is_null().sum().alias("n_no_neighbour"),
            pl.col("correct").sum().alias("n_correct"),
        )
        .with_columns(
            pl.when(pl.col("n_scored") > 0)
            .then(pl.col("n_correct") / pl.col("n_scored"))
            .alias("accuracy")
        )
        .sort(moa)
    )
    n_scored = int(scored.sum())
    n_correct = int(correct.sum())
    summary = pl.DataFrame(
        {
            "exclude_same": [",".join(exclude)],
            "n_profiles": [len(best)],
            "n_scored": [n_scored],
            "n_no_neighbour": [len(best) - n_scored],
            "n_correct": [n_correct],
            "accuracy": [n_correct / n_scored if n_scored else None],
            "mean_moa_accuracy": [per_moa["accuracy"].mean()],
            "n_controls_left_out": [n_controls],
            "n_unlabelled_left_out": [n_unlabelled],
            "n_undefined_left_out": [n_undefined],
        },
        schema_overrides={"accuracy": pl.Float64, "mean_moa_accuracy": pl.Float64},
    )
    return MoaAccuracy(per_profile=per_profile, per_moa=per_moa, summary=summary)


def nsc_accuracy(
    profiles: pl.DataFrame | pl.LazyFrame,
    *,
    moa: str = MOA,
    compound: str = TREATMENT,
    metric: str | Similarity = "cosine",
    controls: pl.Expr | None = None,
    sep: str | None = None,
    features: Sequence[str] | None = None,
    keep: Sequence[str] = (),
    block_rows: int | None = None,
) -> MoaAccuracy:
    """NSC accuracy: nearest neighbour among profiles of other compounds has the same MoA.

    Parameters are those of :func:`nearest_neighbour_moa`.

    Returns
    -------
    MoaAccuracy

    Examples
    --------
    >>> import polars as pl
    >>> df = pl.DataFrame({
    ...     "Metadata_Treatment": ["c1", "c2", "c3", "c4"],
    ...     "Metadata_MoA": ["x", "x", "y", "y"],
    ...     "f1": [1.0, 0.9, 0.0, 0.1], "f2": [0.0, 0.1, 1.0, 0.9]})
    >>> nsc_accuracy(df).accuracy
    1.0
    """
    return nearest_neighbour_moa(
        profiles,
        exclude_same=[compound],
        moa=moa,
        compound=compound,
        metric=metric,
        controls=controls,
        sep=sep,
        features=features,
        keep=keep,
        block_rows=block_rows,
    )


def nscb_accuracy(
    profiles: pl.DataFrame | pl.LazyFrame,
    *,
    batch: str = PLATE,
    moa: str = MOA,
    compound: str = TREATMENT,
    metric: str | Similarity = "cosine",
    controls: pl.Expr | None = None,
    sep: str | None = None,
    features: Sequence[str] | None = None,
    keep: Sequence[str] = (),
    block_rows: int | None = None,
) -> MoaAccuracy:
    """NSCB accuracy: as :func:`nsc_accuracy`, also leaving out the query's batch.

    Parameters
    ----------
    batch : str
        Batch column (``Metadata_Plate`` by default; an experimental batch or
        source where there is one).

    Other parameters are those of :func:`nearest_neighbour_moa`.

    Returns
    -------
    MoaAccuracy

    Examples
    --------
    Each MoA was screened on its own plate, so the plate effect alone matches
    compounds of one MoA; leaving out the query's plate shows it:

    >>> import polars as pl
    >>> treatments = pl.DataFrame({"Metadata_Plate": ["P1", "P1", "P2", "P2"],
    ...                            "Metadata_Treatment": ["c1", "c2", "c3", "c4"],
    ...                            "Metadata_MoA": ["x", "x", "y", "y"],
    ...                            "f1": [1.0, 0.9, 0.0, 0.1], "f2": [0.0, 0.1, 1.0, 0.9]})
    >>> nsc_accuracy(treatments).accuracy, nscb_accuracy(treatments).accuracy
    (1.0, 0.0)
    """
    return nearest_neighbour_moa(
        profiles,
        exclude_same=[compound, batch],
        moa=moa,
        compound=compound,
        metric=metric,
        controls=controls,
        sep=sep,
        features=features,
        keep=keep,
        block_rows=block_rows,
    )
