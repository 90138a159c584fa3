"""Batch-effect correction steps of the JUMP recipes (DOMAIN.md §7), as fitted steps.

Each step is a small fitted object (:mod:`cellframe.profiles._fitted`:
``statistics(frame) -> S``, ``S.merge``, ``from_statistics(S)``,
``transform(frame)``, ``to_frame()`` / ``from_frame()``) plus a plain
function ``LazyFrame -> LazyFrame`` that fits and applies it to the same rows:

=================================  =============================================  ===============
step                               what it does                                   statistic
=================================  =============================================  ===============
:func:`inverse_normal_transform`   rank inverse-normal transform, per plate or    the rows
                                   over all rows (Blom: Phi^-1((r - 3/8) /        (gathers them)
                                   (n + 1/4)), ties averaged)
:func:`well_position_correct`      subtract the per-position mean across plates   per-position
                                   (optionally of the control wells)              sums (mergeable)
:func:`regress_cell_count`         residuals of x = a + b * count per feature     moments
                                                                                  (mergeable)
:func:`typical_variation_normalize`  PCA (whitened) on the negative controls,     per-batch control
                                   then per batch centre and scale by the         moments
                                   batch's controls                               (mergeable)
=================================  =============================================  ===============

Missing values (null or NaN) are never filled in: they are left out of every
statistic and stay missing in the output; each step says how.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from cellframe.columns import COUNT_CELLS, FEATURE_DTYPE, PLATE, WELL
from cellframe.errors import EmptyInputError, InvalidInputError, TooFewControlsError
from cellframe.profiles._common import (
    RowFilter,
    filter_columns,
    require_columns,
    resolve_features,
    resolve_method,
    row_filter,
    short_list,
    to_numpy64,
    warn,
)
from cellframe.profiles._fitted import ColumnStatistics, Rows

__all__ = [
    "CORRECTIONS",
    "INT_METHODS",
    "CellCountRegressor",
    "InverseNormalTransformer",
    "TypicalVariationNormalizer",
    "WellPositionCorrector",
    "inverse_normal_transform",
    "regress_cell_count",
    "typical_variation_normalize",
    "well_position_correct",
]

Frame = pl.LazyFrame | pl.DataFrame

#: Column of a saved fit telling what each row holds.
ROW = "Metadata_Row"


# ------------------------------------------------------------------ helpers
def _as_list(by: str | Sequence[str]) -> list[str]:
    return [by] if isinstance(by, str) else list(by)


def _label(by: Sequence[str], key: tuple[Any, ...]) -> str:
    return ", ".join(f"{c}={v!r}" for c, v in zip(by, key, strict=True)) or "all rows"


def _groups(df: pl.DataFrame, by: Sequence[str]) -> list[tuple[tuple[Any, ...], np.ndarray]]:
    """Row positions of each group of ``df`` by the ``by`` columns (first-seen order)."""
    if not by:
        return [((), np.arange(df.height))]
    idx = (
        df.select(by)
        .with_row_index("__cf_i__")
        .group_by(by, maintain_order=True)
        .agg(pl.col("__cf_i__"))
    )
    keys = idx.select(by).rows()
    return [
        (tuple(k), np.asarray(rows, dtype=np.int64))
        for k, rows in zip(keys, idx["__cf_i__"].to_list(), strict=True)
    ]


def _replace_features(
    df: pl.DataFrame,
    features: Sequence[str],
    values: np.ndarray,
    names: Sequence[str] | None = None,
) -> pl.DataFrame:
    """``df`` with ``features`` replaced by the columns of ``values`` (Float32), order kept."""
    names = list(features) if names is None else list(names)
    new = {n: pl.Series(n, values[:, j].astype(np.float32)) for j, n in enumerate(names)}
    if names == list(features):
        return df.with_columns(list(new.values()))
    keep = [c for c in df.columns if c not in set(features)]
    return df.select(keep).hstack(list(new.values()))


def _params_text(value: Any) -> Any:
    return value if isinstance(value, str | None) else str(value)


def _control_frame(lf: pl.LazyFrame, controls: RowFilter, where: str) -> pl.LazyFrame:
    require_columns(
        lf,
        filter_columns(controls),
        where,
        "name the control rows with controls=..., or controls='all' to fit on every row",
    )
    predicate = row_filter(controls)
    return lf if predicate is None else lf.filter(predicate)


# ===================================================== rank inverse-normal transform
@dataclass(frozen=True)
class _RankOffset:
    """Rank-based INT: y = Phi^-1((r - c) / (n - 2c + 1)), r the average rank among n values."""

    offset: float


@dataclass(frozen=True)
class _Quantiles:
    """pycytominer 1.7's ``InverseNormalTransform`` (scikit-learn's ``QuantileTransformer``)."""


#: Inverse-normal methods: rank offsets c (Blom 1958: 3/8; DOMAIN.md §7) or
#: ``"pycytominer"``, scikit-learn's quantile transform as pycytominer runs it
#: (quantile (r - 1) / (n - 1) between ``n_quantiles`` landmarks, clipped at
#: 1e-7 and 1 - 1e-7).
INT_METHODS: dict[str, _RankOffset | _Quantiles] = {
    "blom": _RankOffset(3 / 8),
    "rankit": _RankOffset(1 / 2),
    "tukey": _RankOffset(1 / 3),
    "van_der_waerden": _RankOffset(0.0),
    "pycytominer": _Quantiles(),
}

#: scikit-learn's ``BOUNDS_THRESHOLD``: values within it of the extreme landmarks map to 0 or 1.
_QT_BOUND = 1e-7


def _ndtri(p: np.ndarray) -> np.ndarray:
    from scipy.special import ndtri

    return ndtri(p)


def _rank_reference(values: np.ndarray) -> np.ndarray:
    """Sorted non-missing values of one feature (the fit of a rank method)."""
    return np.sort(values[~np.isnan(values)])


def _rank_int(x: np.ndarray, ref: np.ndarray, offset: float) -> np.ndarray:
    """Blom-type INT of ``x`` against the sorted reference ``ref`` (NaN stays NaN).

    A value's rank is its average rank among the reference (ties averaged:
    (#below + #below-or-equal + 1) / 2); a value absent from the reference
    falls half-way between its neighbours.
    """
    out = np.full(x.shape, np.nan)
    ok = ~np.isnan(x)
    n = ref.size
    if n == 0 or not ok.any():
        return out
    v = x[ok]
    rank = (np.searchsorted(ref, v, "left") + np.searchsorted(ref, v, "right") + 1) / 2.0
    out[ok] = _ndtri((rank - offset) / (n - 2 * offset + 1))
    return out


def _quantile_reference(values: np.ndarray, n_quantiles: int) -> np.ndarray:
    """Landmarks of scikit-learn's QuantileTransformer: percentiles at linspace(0, 100, q)."""
    q = min(n_quantiles, values.size)  # values.size counts missing rows, as sklearn does
    present = values[~np.isnan(values)]
    if present.size == 0 or q < 1:
        return np.empty(0)
    return np.percentile(present, np.linspace(0, 1, q) * 100)


def _quantile_int(x: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """scikit-learn's forward normal quantile transform of ``x`` on ``landmarks``."""
    out = np.full(x.shape, np.nan)
    ok = ~np.isnan(x)
    if landmarks.size == 0 or not ok.any():
        return out
    refs = np.linspace(0, 1, landmarks.size)
    v = x[ok]
    # Interpolating up and down and averaging puts a repeated landmark at the
    # middle of its run (ties averaged).
    p = 0.5 * (np.interp(v, landmarks, refs) - np.interp(-v, -landmarks[::-1], -refs[::-1]))
    p[v + _QT_BOUND > landmarks[-1]] = 1.0
    p[v - _QT_BOUND < landmarks[0]] = 0.0
    eps = _QT_BOUND - np.spacing(1)
    with np.errstate(divide="ignore"):
        out[ok] = np.clip(_ndtri(p), _ndtri(eps), _ndtri(1 - eps))
    return out


class InverseNormalTransformer:
    """Rank inverse-normal transform (INT) of every feature, per group or over all rows.

    Each feature's values are replaced by normal scores of their ranks:
    ``y = Phi^-1((r - c) / (n - 2c + 1))`` with ``r`` the rank among the ``n``
    non-missing values of the group (ties get their average rank) and ``c``
    the method's offset (Blom: 3/8). Ranks have no finite sufficient
    statistic, so the fit **gathers the rows** (its statistic is
    :class:`~cellframe.profiles._fitted.Rows`, ``needs_all_rows``): the fit is
    each group's sorted values, and :meth:`transform` ranks any value among
    them (a value not seen falls half-way between its neighbours).

    Parameters
    ----------
    method : {"blom", "rankit", "tukey", "van_der_waerden", "pycytominer"}, default "blom"
        Offsets 3/8, 1/2, 1/3 and 0; ``"pycytominer"`` reproduces
        pycytominer 1.7's ``normalize(method="inverse_normal")``
        (scikit-learn's ``QuantileTransformer(output_distribution="normal")``:
        quantile (r - 1) / (n - 1) interpolated between ``n_quantiles``
        landmarks, values within 1e-7 of the extremes clipped to
        +-5.199; equal to pycytominer up to 10,000 rows, above which scikit-learn
        subsamples at random).
    by : sequence of str, default ()
        Groups ranked separately (``("Metadata_Plate",)``: per plate); ``()``
        ranks over all rows.
    features : sequence of str, optional
        Features to transform (default: every numeric non-metadata column).
    n_quantiles : int, default 1000
        Landmarks of the ``"pycytominer"`` method (capped at the group's rows).

    Notes
    -----
    NaN and null are left out of the ranks and stay missing; ``n`` counts the
    non-missing values of each feature. Features come out as Float32.

    Examples
    --------
    >>> import polars as pl
    >>> df = pl.DataFrame({"f": [3.0, 1.0, 2.0, 2.0, None]})
    >>> out = InverseNormalTransformer().fit(df).transform(df).collect()["f"]
    >>> [None if v is None else round(v, 4) for v in out]
    [1.0491, -1.0491, 0.0, 0.0, None]
    """

    def __init__(
        self,
        method: str = "blom",
        *,
        by: str | Sequence[str] = (),
        features: Sequence[str] | None = None,
        n_quantiles: int = 1000,
    ) -> None:
        self.method = method
        self._kind = resolve_method(method, INT_METHODS, "inverse-normal method")
        if not isinstance(self._kind, _RankOffset | _Quantiles):
            raise InvalidInputError(
                f"inverse-normal method must be one of {', '.join(map(repr, INT_METHODS))}"
            )
        self.by = _as_list(by)
        self.features = None if features is None else list(features)
        if int(n_quantiles) < 1:
            raise InvalidInputError(f"n_quantiles must be at least 1, not {n_quantiles!r}")
        self.n_quantiles = int(n_quantiles)

    def parameters(self) -> dict[str, Any]:
        """JSON-serialisable parameters (recorded in provenance)."""
        return {"method": self.method, "by": self.by, "n_quantiles": self.n_quantiles}

    def _features(self, lf: pl.LazyFrame) -> list[str]:
        where = "the profiles to rank-transform"
        require_columns(lf, self.by, where, "name existing columns in by=, or by=() for all rows")
        return [f for f in resolve_features(lf, self.features, where) if f not in self.by]

    def statistics(self, frame: Frame) -> Rows:
        """The grouping columns and features of ``frame``'s rows (``needs_all_rows``).

        Raises
        ------
        MissingColumnsError
            If a grouping column or a feature is absent.
        """
        lf = frame.lazy()
        features = self._features(lf)
        return Rows(lf.select(*self.by, *features).collect())

    def from_statistics(self, stats: Rows) -> InverseNormalTransformer:
        """Fit each group's reference (sorted values, or landmarks) from the gathered rows.

        Raises
        ------
        EmptyInputError
            If there is no row.
        """
        if not isinstance(stats, Rows):
            raise InvalidInputError(
                "an InverseNormalTransformer is fitted from the rows themselves (Rows, from "
                f"InverseNormalTransformer.statistics), not {type(stats).__name__}"
            )
        df = stats.frame
        if df.height == 0:
            raise EmptyInputError("no rows to fit the inverse-normal transform on")
        features = [c for c in df.columns if c not in self.by]
        x = to_numpy64(df, features)
        self.references_: dict[tuple[Any, ...], list[np.ndarray]] = {}
        for key, rows in _groups(df, self.by):
            block = x[rows]
            if isinstance(self._kind, _Quantiles):
                refs = [
                    _quantile_reference(block[:, j], self.n_quantiles) for j in range(len(features))
                ]
            else:
                refs = [_rank_reference(block[:, j]) for j in range(len(features))]
            self.references_[key] = refs
        self.features_ = features
        return self

    def fit(self, frame: Frame) -> InverseNormalTransformer:
        """Fit on ``frame``'s rows (:meth:`statistics`, then :meth:`from_statistics`)."""
        return self.from_statistics(self.statistics(frame))

    def _require_fitted(self) -> None:
        if not hasattr(self, "references_"):
            raise InvalidInputError(
                "this InverseNormalTransformer is not fitted; call fit(...) first"
            )

    def _apply(self, df: pl.DataFrame, *, fitted_rows: bool = False) -> pl.DataFrame:
        """Transform ``df``; ``fitted_rows``: ``df`` holds exactly the rows of the fit."""
        x = to_numpy64(df, self.features_)
        out = np.full(x.shape, np.nan)
        for key, rows in _groups(df, self.by):
            refs = self.references_.get(key)
            if refs is None:
                raise InvalidInputError(
                    f"group {_label(self.by, key)} was not among the rows the inverse-normal "
                    "transform was fitted on; fit on every group (or by=() for one fit)"
                )
            todo = range(len(refs))
            if fitted_rows and isinstance(self._kind, _RankOffset):
                # The fit's own rows: their average ranks straight from one vectorized
                # rankdata (the same numbers as searching the reference, ~2x faster).
                from scipy.stats import rankdata

                block = x[rows]
                complete = np.flatnonzero(~np.isnan(block).any(axis=0))
                if complete.size:
                    c, n = self._kind.offset, rows.size
                    ranks = rankdata(block[:, complete], method="average", axis=0)
                    out[np.ix_(rows, complete)] = _ndtri((ranks - c) / (n - 2 * c + 1))
                todo = np.flatnonzero(np.isnan(block).any(axis=0))
            for j in todo:
                ref = refs[j]
                if isinstance(self._kind, _Quantiles):
                    out[rows, j] = _quantile_int(x[rows, j], ref)
                else:
                    out[rows, j] = _rank_int(x[rows, j], ref, self._kind.offset)
        result = _replace_features(df, self.features_, out)
        # null in, null out (NaN in stays NaN).
        return result.with_columns(
            pl.when(df[f].is_null()).then(None).otherwise(pl.col(f)).alias(f)
            for f in self.features_
        )

    def transform(self, frame: Frame) -> pl.LazyFrame:
        """Rank every row's features among its group's fitted values; other columns pass through.

        Raises
        ------
        MissingColumnsError
            If a fitted feature or a grouping column is absent.
        InvalidInputError
            If a group was not in the fit.
        """
        self._require_fitted()
        lf = frame.lazy()
        require_columns(lf, [*self.by, *self.features_], "the profiles to rank-transform")
        schema = lf.collect_schema()
        out_schema = {
            c: (FEATURE_DTYPE if c in set(self.features_) else t) for c, t in schema.items()
        }
        return lf.map_batches(self._apply, schema=out_schema, streamable=False)

    def fit_transform(self, frame: Frame) -> pl.LazyFrame:
        """:meth:`fit` then :meth:`transform` on the same rows (read once)."""
        df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
        self.fit(df)
        require_columns(df, [*self.by, *self.features_], "the profiles to rank-transform")
        return self._apply(df, fitted_rows=True).lazy()

    def to_frame(self) -> pl.DataFrame:
        """The fit as a table: per group its sorted reference values, one column per feature.

        Columns are null-padded to the group's longest (features with missing
        values hold fewer reference values).
        """
        self._require_fitted()
        parts = []
        for key, refs in self.references_.items():
            n = max((r.size for r in refs), default=0)
            cols: dict[str, Any] = {c: [v] * n for c, v in zip(self.by, key, strict=True)}
            for f, r in zip(self.features_, refs, strict=True):
                cols[f] = pl.Series(f, np.concatenate([r, np.full(n - r.size, np.nan)])).fill_nan(
                    None
                )
            parts.append(pl.DataFrame(cols))
        return pl.concat(parts, how="vertical_relaxed")

    @classmethod
    def from_frame(
        cls, frame: pl.DataFrame, parameters: dict[str, Any]
    ) -> InverseNormalTransformer:
        """A fitted transform from :meth:`to_frame`'s table and :meth:`parameters`."""
        obj = cls(parameters["method"], by=parameters["by"], n_quantiles=parameters["n_quantiles"])
        require_columns(frame, obj.by, "the saved inverse-normal transform")
        features = [c for c in frame.columns if c not in obj.by]
        obj.references_ = {}
        for key, rows in _groups(frame, obj.by):
            x = to_numpy64(frame[rows], features)
            obj.references_[key] = [x[~np.isnan(x[:, j]), j] for j in range(len(features))]
        obj.features_ = features
        return obj

    def __repr__(self) -> str:
        return f"InverseNormalTransformer({self.method!r}, by={self.by})"


def inverse_normal_transform(
    lf: pl.LazyFrame | pl.DataFrame,
    method: str = "blom",
    *,
    by: str | Sequence[str] = (PLATE,),
    features: Sequence[str] | None = None,
    n_quantiles: int = 1000,
) -> pl.LazyFrame:
    """Rank inverse-normal transform of every feature, per plate (default) or over all rows.

    ``y = Phi^-1((r - 3/8) / (n + 1/4))`` (Blom) per feature, ``r`` the
    average rank of the value among the ``n`` non-missing values of its
    group (DOMAIN.md §7). With ``by=("Metadata_Plate",)`` it is a per-plate
    function; with ``by=()`` it ranks over all rows of ``lf``, which it
    gathers. See :class:`InverseNormalTransformer` for the parameters.

    Returns
    -------
    polars.LazyFrame
        Same rows and columns; features as Float32, missing values still missing.

    Raises
    ------
    MissingColumnsError
        If a grouping column or a feature is absent.

    Examples
    --------
    >>> import polars as pl
    >>> wells = pl.LazyFrame({"Metadata_Plate": ["P"] * 3 + ["Q"] * 2,
    ...                       "f": [10.0, 30.0, 20.0, 5.0, float("nan")]})
    >>> [round(v, 4) for v in inverse_normal_transform(wells).collect()["f"]]
    [-0.8694, 0.8694, 0.0, 0.0, nan]
    """
    step = InverseNormalTransformer(method, by=by, features=features, n_quantiles=n_quantiles)
    return step.fit_transform(lf)


# ============================================================ grouped moments
@dataclass
class GroupMoments:
    """Mergeable per-group moments of some rows (sums and counts, Chan's update).

    Attributes
    ----------
    by : list of str
        The grouping columns.
    features : list of str
    groups : dict of tuple to ColumnStatistics
        Per group key, the moments of its rows.
    seen : dict of tuple to int
        Every group met (fit rows or not) with its row count, so a group
        without fit rows is named, not silently skipped.
    """

    by: list[str]
    features: list[str]
    groups: dict[tuple[Any, ...], ColumnStatistics]
    seen: dict[tuple[Any, ...], int]
    moments: bool = False
    needs_all_rows: bool = field(default=False, init=False, repr=False)

    @classmethod
    def of(
        cls,
        fit_rows: pl.DataFrame,
        all_keys: pl.DataFrame,
        by: Sequence[str],
        features: Sequence[str],
        *,
        moments: bool = False,
    ) -> GroupMoments:
        """Moments of ``fit_rows`` per group; ``all_keys`` holds the group columns of every row."""
        x = to_numpy64(fit_rows, features)
        groups = {
            key: ColumnStatistics.of(x[rows], features, moments=moments)
            for key, rows in _groups(fit_rows, by)
        }
        seen = {key: int(rows.size) for key, rows in _groups(all_keys, by)}
        return cls(list(by), list(features), groups, seen, moments)

    def merge(self, other: GroupMoments) -> GroupMoments:
        """The moments of both sets of rows together, group by group (exact)."""
        if self.features != other.features:
            raise InvalidInputError(
                "cannot merge statistics of different features; every plate must hold the "
                "same feature columns"
            )
        groups = dict(self.groups)
        for key, value in other.groups.items():
            groups[key] = groups[key].merge(value) if key in groups else value
        seen = dict(self.seen)
        for key, n in other.seen.items():
            seen[key] = seen.get(key, 0) + n
        return GroupMoments(self.by, self.features, groups, seen, self.moments)

    def pooled(self) -> ColumnStatistics:
        """The moments of every group's rows together."""
        total = None
        for value in self.groups.values():
            total = value if total is None else total.merge(value)
        if total is None:
            return ColumnStatistics.of(
                np.empty((0, len(self.features))), self.features, moments=self.moments
            )
        return total


# ================================================================ well position
class WellPositionCorrector:
    """Subtract, per feature, the mean of the wells at the same position across plates.

    ``y = x - mean(x over the wells at x's position, e.g. B03, on every plate)``
    (DOMAIN.md §7), the mean taken over every well or over the control wells
    only. The statistic is per-position counts, means and sums of squared
    deviations (:class:`GroupMoments`), merged exactly plate by plate.

    Parameters
    ----------
    position : str, default "Metadata_Well"
        Column naming a well's position.
    controls : str, polars.Expr or None, default None
        Rows the means are taken over: ``None``/``"all"`` every row, else a
        control filter (``"negcon"``, a SQL condition or an expression).
    features : sequence of str, optional
        Features to correct (default: every numeric non-metadata column).

    Notes
    -----
    Missing values are left out of the means and stay missing. A position
    whose fit rows hold no value of a feature that some row at that position
    has cannot be corrected: :meth:`transform` refuses it.

    Examples
    --------
    >>> import polars as pl
    >>> wells = pl.DataFrame({"Metadata_Plate": ["P1", "P1", "P2", "P2"],
    ...                       "Metadata_Well": ["A01", "A02", "A01", "A02"],
    ...                       "f": [1.0, 10.0, 3.0, 20.0]})
    >>> WellPositionCorrector().fit(wells).transform(wells).collect()["f"].to_list()
    [-1.0, -5.0, 1.0, 5.0]
    """

    def __init__(
        self,
        *,
        position: str = WELL,
        controls: RowFilter = None,
        features: Sequence[str] | None = None,
    ) -> None:
        self.position = position
        self.controls = controls
        self.features = None if features is None else list(features)

    def parameters(self) -> dict[str, Any]:
        """JSON-serialisable parameters (recorded in provenance)."""
        return {"position": self.position, "controls": _params_text(self.controls)}

    def statistics(self, frame: Frame) -> GroupMoments:
        """Per-position moments of the fit rows of ``frame`` (mergeable).

        Raises
        ------
        MissingColumnsError
            If the position column, a control column or a feature is absent.
        """
        lf = frame.lazy()
        where = "the profiles to correct for well position"
        require_columns(lf, [self.position], where, "name the well-position column in position=")
        features = [f for f in resolve_features(lf, self.features, where) if f != self.position]
        df = lf.select(
            self.position,
            *[c for c in filter_columns(self.controls) if c != self.position],
            *features,
        ).collect()
        fit_rows = _control_frame(df.lazy(), self.controls, where).collect()
        return GroupMoments.of(fit_rows, df.select(self.position), [self.position], features)

    def from_statistics(self, stats: GroupMoments) -> WellPositionCorrector:
        """Per-position means from (merged) statistics.

        Raises
        ------
        EmptyInputError
            If no row was a fit row.
        TooFewControlsError
            With ``controls`` set, if some position has no control well.
        """
        if not isinstance(stats, GroupMoments):
            raise InvalidInputError(
                "a WellPositionCorrector is fitted from GroupMoments "
                f"(WellPositionCorrector.statistics), not {type(stats).__name__}"
            )
        if not stats.groups:
            raise EmptyInputError(
                f"no rows to take position means over (controls={self.controls!r})"
            )
        lacking = [k for k in stats.seen if k not in stats.groups]
        if lacking:
            raise TooFewControlsError(
                f"{len(lacking)} well position(s) have no control well (controls="
                f"{self.controls!r}) to take the mean over: "
                f"{short_list([k[0] for k in lacking])}; pass controls=None to use every well, "
                "or drop those positions first"
            )
        keys = list(stats.groups)
        self.features_ = list(stats.features)
        self.positions_ = [k[0] for k in keys]
        self.means_ = np.vstack(
            [np.where(stats.groups[k].count > 0, stats.groups[k].mean, np.nan) for k in keys]
        )
        self.counts_ = np.vstack([stats.groups[k].count for k in keys])
        return self

    def fit(self, frame: Frame) -> WellPositionCorrector:
        """Fit on ``frame`` (:meth:`statistics`, then :meth:`from_statistics`)."""
        return self.from_statistics(self.statistics(frame))

    def _require_fitted(self) -> None:
        if not hasattr(self, "means_"):
            raise InvalidInputError("this WellPositionCorrector is not fitted; call fit(...) first")

    def _means_frame(self, dtype: Any = None) -> pl.DataFrame:
        cols = {self.position: pl.Series(self.position, self.positions_, dtype=dtype)}
        for j, f in enumerate(self.features_):
            cols[f"__cf_mean__{f}"] = pl.Series(self.means_[:, j])
        return pl.DataFrame(cols)

    def transform(self, frame: Frame) -> pl.LazyFrame:
        """Subtract each row's position mean; other columns pass through, features as Float32.

        Raises
        ------
        MissingColumnsError
            If the position column or a fitted feature is absent.
        InvalidInputError
            If a row's position was not in the fit, or a value's position has
            no fitted mean for its feature.
        """
        self._require_fitted()
        lf = frame.lazy()
        where = "the profiles to correct for well position"
        require_columns(lf, [self.position, *self.features_], where)
        dtype = lf.collect_schema()[self.position]
        means = self._means_frame(dtype).lazy()
        unknown = (
            lf.select(self.position)
            .unique()
            .join(means.select(self.position), on=self.position, how="anti", nulls_equal=True)
            .collect()
        )
        if unknown.height:
            raise InvalidInputError(
                f"{unknown.height} well position(s) of the profiles were not in the fit: "
                f"{short_list(unknown[self.position].to_list())}; fit on rows covering every "
                "position"
            )
        out = lf.join(means, on=self.position, how="left", nulls_equal=True, maintain_order="left")
        x = {f: pl.col(f).cast(pl.Float64) for f in self.features_}
        # Only a feature with a position lacking a mean can leave a value uncorrected.
        suspect = [f for j, f in enumerate(self.features_) if np.isnan(self.means_[:, j]).any()]
        if suspect:
            counts = (
                out.select(
                    (x[f].is_not_null() & ~x[f].is_nan() & pl.col(f"__cf_mean__{f}").is_nan())
                    .sum()
                    .alias(f)
                    for f in suspect
                )
                .collect()
                .row(0, named=True)
            )
            bad = {f: n for f, n in counts.items() if n}
            if bad:
                raise InvalidInputError(
                    f"{sum(bad.values())} value(s) of {len(bad)} feature(s) "
                    f"({short_list([f'{f} ({n})' for f, n in bad.items()], quote=False)}) sit "
                    "at a well position whose fit rows hold no value of that feature, so no "
                    "position mean exists to subtract; drop features with missing values first "
                    "(drop_na_columns) or fit on controls=None"
                )
        out = out.with_columns(
            (x[f] - pl.col(f"__cf_mean__{f}")).cast(FEATURE_DTYPE).alias(f) for f in self.features_
        )
        return out.drop([f"__cf_mean__{f}" for f in self.features_])

    def fit_transform(self, frame: Frame) -> pl.LazyFrame:
        """:meth:`fit` then :meth:`transform` on the same rows (read once)."""
        df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
        return self.fit(df).transform(df)

    def to_frame(self) -> pl.DataFrame:
        """The fit as a table: one row per position, its mean of each feature."""
        self._require_fitted()
        frame = self._means_frame()
        return frame.rename({f"__cf_mean__{f}": f for f in self.features_})

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, parameters: dict[str, Any]) -> WellPositionCorrector:
        """A fitted corrector from :meth:`to_frame`'s table and :meth:`parameters`."""
        obj = cls(position=parameters["position"], controls=parameters["controls"])
        require_columns(frame, [obj.position], "the saved well-position means")
        obj.features_ = [c for c in frame.columns if c != obj.position]
        obj.positions_ = frame[obj.position].to_list()
        obj.means_ = to_numpy64(frame, obj.features_)
        obj.counts_ = np.zeros_like(obj.means_, dtype=np.int64)
        return obj

    def __repr__(self) -> str:
        return f"WellPositionCorrector(position={self.position!r}, controls={self.controls!r})"


def well_position_correct(
    lf: pl.LazyFrame | pl.DataFrame,
    *,
    position: str = WELL,
    controls: RowFilter = None,
    features: Sequence[str] | None = None,
) -> pl.LazyFrame:
    """Subtract, per feature, the mean of the wells at the same position across plates.

    Fits a :class:`WellPositionCorrector` on ``lf`` and applies it to ``lf``
    (see the class for the parameters and missing values).

    Returns
    -------
    polars.LazyFrame
        Same rows and columns, features as Float32.

    Raises
    ------
    MissingColumnsError
        If the position column or a feature is absent.
    TooFewControlsError
        With ``controls`` set, if a position has no control well.

    Examples
    --------
    >>> import polars as pl
    >>> wells = pl.LazyFrame({"Metadata_Plate": ["P1", "P1", "P2", "P2"],
    ...                       "Metadata_Well": ["A01", "A02", "A01", "A02"],
    ...                       "f": [1.0, 10.0, 3.0, 20.0]})
    >>> well_position_correct(wells).collect()["f"].to_list()
    [-1.0, -5.0, 1.0, 5.0]
    """
    return WellPositionCorrector(
        position=position, controls=controls, features=features
    ).fit_transform(lf)


# ============================================================ cell-count regression
@dataclass
class RegressionMoments:
    """Per feature, moments of (count, feature) over the rows where both are present.

    Attributes
    ----------
    features : list of str
    n : numpy.ndarray
        Rows with both values, per feature.
    mean_c, mean_x : numpy.ndarray
        Means of the count and of the feature over those rows.
    m2_c : numpy.ndarray
        Sum of squared deviations of the count over those rows.
    c_cx : numpy.ndarray
        Sum of the products of the count's and the feature's deviations.
    """

    features: list[str]
    n: np.ndarray
    mean_c: np.ndarray
    mean_x: np.ndarray
    m2_c: np.ndarray
    c_cx: np.ndarray
    needs_all_rows: bool = field(default=False, init=False, repr=False)

    @classmethod
    def of(cls, count: np.ndarray, x: np.ndarray, features: Sequence[str]) -> RegressionMoments:
        """Moments of ``count`` (shape (n,)) against each column of ``x`` (n, d; NaN missing)."""
        present = ~np.isnan(x)
        m = present.astype(np.float64)
        n = m.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_c = np.where(n > 0, (m * count[:, None]).sum(axis=0) / np.maximum(n, 1), 0.0)
            mean_x = np.where(n > 0, np.where(present, x, 0.0).sum(axis=0) / np.maximum(n, 1), 0.0)
        dc = np.where(present, count[:, None] - mean_c, 0.0)
        dx = np.where(present, x - mean_x, 0.0)
        return cls(list(features), n, mean_c, mean_x, (dc * dc).sum(axis=0), (dc * dx).sum(axis=0))

    def merge(self, other: RegressionMoments) -> RegressionMoments:
        """The moments of both sets of rows together (Chan's pairwise update, exact)."""
        if self.features != other.features:
            raise InvalidInputError(
                "cannot merge statistics of different features; every plate must hold the "
                "same feature columns"
            )
        n = self.n + other.n
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(n > 0, other.n / np.maximum(n, 1), 0.0)
        dcm = other.mean_c - self.mean_c
        dxm = other.mean_x - self.mean_x
        return RegressionMoments(
            self.features,
            n,
            self.mean_c + dcm * frac,
            self.mean_x + dxm * frac,
            self.m2_c + other.m2_c + dcm * dcm * self.n * frac,
            self.c_cx + other.c_cx + dcm * dxm * self.n * frac,
        )


class CellCountRegressor:
    """Regress each feature on the well's cell count and keep the residuals.

    Per feature, ``x = a + b * count`` is fitted by least squares over the
    fit rows (every row, or the controls) where both are present, and each
    value becomes ``x - a - b * count`` (DOMAIN.md §7). The statistic is
    per-feature moments of (count, x) (:class:`RegressionMoments`), merged
    exactly plate by plate.

    Parameters
    ----------
    count : str, default "Metadata_Count_Cells"
        The cell-count column (the one :func:`~cellframe.profiles.aggregate`
        writes).
    controls : str, polars.Expr or None, default None
        Rows the regression is fitted on (default: every row).
    features : sequence of str, optional
        Features to correct (default: every numeric non-metadata column
        except ``count``).

    Notes
    -----
    Missing feature values are left out of that feature's fit and stay
    missing. A missing count is refused (no residual exists for that row).
    A feature whose fit rows do not vary in count (or number fewer than 2)
    has no slope: it is only centred (b = 0), with a warning counting such
    features.

    Examples
    --------
    >>> import polars as pl
    >>> wells = pl.DataFrame({"Metadata_Count_Cells": [10, 20, 30], "f": [1.0, 2.5, 3.0]})
    >>> [round(v, 4) for v in CellCountRegressor().fit(wells).transform(wells).collect()["f"]]
    [-0.1667, 0.3333, -0.1667]
    """

    def __init__(
        self,
        *,
        count: str = COUNT_CELLS,
        controls: RowFilter = None,
        features: Sequence[str] | None = None,
    ) -> None:
        self.count = count
        self.controls = controls
        self.features = None if features is None else list(features)

    def parameters(self) -> dict[str, Any]:
        """JSON-serialisable parameters (recorded in provenance)."""
        return {"count": self.count, "controls": _params_text(self.controls)}

    def _check_count(self, lf: pl.LazyFrame, where: str) -> None:
        require_columns(
            lf, [self.count], where,
            "name the cell-count column in count= (aggregate writes Metadata_Count_Cells)",
        )  # fmt: skip
        dtype = lf.collect_schema()[self.count]
        if not dtype.is_numeric():
            raise InvalidInputError(
                f"{where}: the cell-count column {self.count!r} is {dtype}, not numeric; "
                "name a numeric column in count="
            )
        missing = (
            lf.select(
                (pl.col(self.count).is_null() | pl.col(self.count).cast(pl.Float64).is_nan()).sum()
            )
            .collect()
            .item()
        )
        if missing:
            raise InvalidInputError(
                f"{where}: {missing} row(s) have no cell count in {self.count!r}, so no "
                "residual exists for them; drop those rows or fill the count first"
            )

    def statistics(self, frame: Frame) -> RegressionMoments:
        """Moments of (count, feature) over the fit rows of ``frame`` (mergeable).

        Raises
        ------
        MissingColumnsError
            If the count column, a control column or a feature is absent.
        InvalidInputError
            If the count column is not numeric or has missing values.
        """
        lf = frame.lazy()
        where = "the profiles to regress on cell count"
        self._check_count(lf, where)
        features = [f for f in resolve_features(lf, self.features, where) if f != self.count]
        rows = _control_frame(lf, self.controls, where).select(self.count, *features).collect()
        count = rows[self.count].cast(pl.Float64).to_numpy()
        return RegressionMoments.of(count, to_numpy64(rows, features), features)

    def from_statistics(self, stats: RegressionMoments) -> CellCountRegressor:
        """Per-feature intercept and slope from (merged) moments.

        Raises
        ------
        EmptyInputError
            If no fit row holds a value.
        """
        if not isinstance(stats, RegressionMoments):
            raise InvalidInputError(
                "a CellCountRegressor is fitted from RegressionMoments "
                f"(CellCountRegressor.statistics), not {type(stats).__name__}"
            )
        if not stats.n.size or stats.n.max() == 0:
            raise EmptyInputError(
                f"no rows to fit the cell-count regression on (controls={self.controls!r})"
            )
        empty = [f for f, n in zip(stats.features, stats.n, strict=True) if n == 0]
        if empty:
            raise InvalidInputError(
                f"{len(empty)} feature(s) have no value in the fit rows: {short_list(empty)}; "
                "drop them first (drop_na_columns)"
            )
        # A spread this small relative to the mean is zero up to rounding.
        flat = (stats.n < 2) | (stats.m2_c <= 1e-12 * stats.n * np.maximum(stats.mean_c**2, 1e-300))
        with np.errstate(invalid="ignore", divide="ignore"):
            slope = np.where(flat, 0.0, stats.c_cx / np.where(flat, 1.0, stats.m2_c))
        if flat.any():
            names = [f for f, b in zip(stats.features, flat, strict=True) if b]
            warn(
                f"{len(names)} feature(s) have fewer than 2 fit rows or a constant cell count "
                f"over them, so no slope: they are only centred: {short_list(names)}",
                stacklevel=3,
            )
        self.features_ = list(stats.features)
        self.slope_ = slope
        self.intercept_ = stats.mean_x - slope * stats.mean_c
        self.n_ = stats.n.astype(np.int64)
        return self

    def fit(self, frame: Frame) -> CellCountRegressor:
        """Fit on ``frame`` (:meth:`statistics`, then :meth:`from_statistics`)."""
        return self.from_statistics(self.statistics(frame))

    def _require_fitted(self) -> None:
        if not hasattr(self, "slope_"):
            raise InvalidInputError("this CellCountRegressor is not fitted; call fit(...) first")

    def transform(self, frame: Frame) -> pl.LazyFrame:
        """Each feature minus its fitted line at the row's count; other columns pass through.

        Raises
        ------
        MissingColumnsError
            If the count column or a fitted feature is absent.
        InvalidInputError
            If the count is missing in some row.
        """
        self._require_fitted()
        lf = frame.lazy()
        where = "the profiles to regress on cell count"
        self._check_count(lf, where)
        require_columns(lf, self.features_, where)
        c = pl.col(self.count).cast(pl.Float64)
        return lf.with_columns(
            (pl.col(f).cast(pl.Float64) - (float(a) + float(b) * c)).cast(FEATURE_DTYPE).alias(f)
            for f, a, b in zip(self.features_, self.intercept_, self.slope_, strict=True)
        )

    def fit_transform(self, frame: Frame) -> pl.LazyFrame:
        """:meth:`fit` then :meth:`transform` on the same rows (read once)."""
        df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
        return self.fit(df).transform(df)

    def to_frame(self) -> pl.DataFrame:
        """The fit as a table: rows ``intercept``, ``slope``, ``n``; one column per feature."""
        self._require_fitted()
        rows = np.vstack([self.intercept_, self.slope_, self.n_.astype(np.float64)])
        frame = pl.DataFrame(rows, schema=dict.fromkeys(self.features_, pl.Float64), orient="row")
        return frame.insert_column(0, pl.Series(ROW, ["intercept", "slope", "n"]))

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, parameters: dict[str, Any]) -> CellCountRegressor:
        """A fitted regressor from :meth:`to_frame`'s table and :meth:`parameters`."""
        obj = cls(count=parameters["count"], controls=parameters["controls"])
        if ROW not in frame.columns or frame[ROW].to_list() != ["intercept", "slope", "n"]:
            raise InvalidInputError(
                f"this table is not a saved cell-count regression: its {ROW} column must be "
                "'intercept', 'slope', 'n'"
            )
        obj.features_ = [c for c in frame.columns if c != ROW]
        values = to_numpy64(frame, obj.features_)
        obj.intercept_, obj.slope_, obj.n_ = values[0], values[1], values[2].astype(np.int64)
        return obj

    def __repr__(self) -> str:
        return f"CellCountRegressor(count={self.count!r}, controls={self.controls!r})"


def regress_cell_count(
    lf: pl.LazyFrame | pl.DataFrame,
    *,
    count: str = COUNT_CELLS,
    controls: RowFilter = None,
    features: Sequence[str] | None = None,
) -> pl.LazyFrame:
    """Regress each feature on the cell count (``x = a + b * count``) and keep the residuals.

    Fits a :class:`CellCountRegressor` on ``lf`` and applies it to ``lf``
    (see the class for the parameters and missing values).

    Returns
    -------
    polars.LazyFrame
        Same rows and columns, features as Float32 residuals.

    Raises
    ------
    MissingColumnsError
        If the count column or a feature is absent.
    InvalidInputError
        If the count column is not numeric or has missing values.

    Examples
    --------
    >>> import polars as pl
    >>> wells = pl.LazyFrame({"Metadata_Count_Cells": [10, 20, 30], "f": [1.0, 2.0, 3.0]})
    >>> regress_cell_count(wells).collect()["f"].to_list()
    [0.0, 0.0, 0.0]
    """
    return CellCountRegressor(count=count, controls=controls, features=features).fit_transform(lf)


# ====================================================== typical-variation normalization
class TypicalVariationNormalizer:
    """Typical-variation normalization (TVN): PCA on the controls, then per-batch standardization.

    1. A PCA with whitening is fitted on the control rows of every batch
       pooled: ``z = (x - mu) V_k / sqrt(lambda_k)``, ``mu``, ``V`` and
       ``lambda`` the mean, eigenvectors and eigenvalues (covariance with
       n - 1, as scikit-learn's ``PCA(whiten=True)``) of the controls; each
       component's sign makes its largest loading positive (scikit-learn's
       convention).
    2. In that basis each batch is centred and scaled by its own controls:
       ``y = (z - mean_b(z)) / std_b(z)`` (population std, as
       ``StandardScaler``).

    Both steps come from one mergeable statistic: per batch, the count,
    mean and cross-moments of its control rows (the batch's mean and
    covariance in the PCA basis follow from them exactly). It holds a
    d x d matrix per batch (8 MB per batch for 1,000 features).

    Parameters
    ----------
    batch : str, default "Metadata_Plate"
        The batch column.
    controls : str, polars.Expr or None, default "negcon"
        The (negative) control rows.
    n_components : int, optional
        Components kept (default: those whose eigenvalue exceeds 1e-10 of
        the largest, at most ``n_controls - 1``).
    features : sequence of str, optional
        Features (default: every numeric non-metadata column).

    Attributes
    ----------
    mean_, components_, eigenvalues_ : numpy.ndarray
        The PCA: mean (d,), components (k, d) and their variances (k,).
    batch_mean_, batch_scale_ : dict of tuple to numpy.ndarray
        Per batch, the controls' mean and std of each component.
    output_names_ : list of str
        ``PC1 ... PCk``.

    Notes
    -----
    PCA needs complete rows: missing values in the controls, or in any row
    transformed, are refused (drop or impute those features first).

    Examples
    --------
    >>> import numpy as np, polars as pl
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(40, 3))
    >>> df = pl.DataFrame({"Metadata_Plate": ["A", "B"] * 20, "Metadata_Control": ["negcon"] * 40,
    ...                    "a": x[:, 0], "b": x[:, 1], "c": x[:, 2]})
    >>> out = TypicalVariationNormalizer().fit(df).transform(df).collect()
    >>> bool(np.allclose(out.filter(pl.col("Metadata_Plate") == "A")["PC1"].std(ddof=0), 1.0))
    True
    """

    def __init__(
        self,
        *,
        batch: str = PLATE,
        controls: RowFilter = "negcon",
        n_components: int | None = None,
        features: Sequence[str] | None = None,
    ) -> None:
        self.batch = batch
        self.controls = controls
        if n_components is not None and int(n_components) < 1:
            raise InvalidInputError(f"n_components must be at least 1, not {n_components!r}")
        self.n_components = None if n_components is None else int(n_components)
        self.features = None if features is None else list(features)

    def parameters(self) -> dict[str, Any]:
        """JSON-serialisable parameters (recorded in provenance)."""
        return {
            "batch": self.batch,
            "controls": _params_text(self.controls),
            "n_components": self.n_components,
        }

    def statistics(self, frame: Frame) -> GroupMoments:
        """Per batch, the count, mean and cross-moments of ``frame``'s control rows (mergeable).

        Raises
        ------
        MissingColumnsError
            If the batch column, a control column or a feature is absent.
        """
        lf = frame.lazy()
        where = "the profiles to normalize (TVN)"
        require_columns(lf, [self.batch], where, "name the batch column in batch=")
        features = [f for f in resolve_features(lf, self.features, where) if f != self.batch]
        ctrl = _control_frame(lf, self.controls, where).select(self.batch, *features).collect()
        keys = lf.select(self.batch).collect()
        return GroupMoments.of(ctrl, keys, [self.batch], features, moments=True)

    def from_statistics(self, stats: GroupMoments) -> TypicalVariationNormalizer:
        """Fit the PCA on the pooled controls and each batch's scaling.

        Raises
        ------
        TooFewControlsError
            If a batch has fewer than 2 control rows.
        InvalidInputError
            If a feature has missing values in the controls.
        """
        if not isinstance(stats, GroupMoments) or not stats.moments:
            raise InvalidInputError(
                "a TypicalVariationNormalizer is fitted from GroupMoments with moments "
                f"(TypicalVariationNormalizer.statistics), not {type(stats).__name__}"
            )
        few = {k: stats.groups[k].n_rows if k in stats.groups else 0 for k in stats.seen}
        few = {k: n for k, n in few.items() if n < 2}
        if few:
            labels = [f"{_label(stats.by, k)} ({n} control row(s))" for k, n in few.items()]
            raise TooFewControlsError(
                f"{len(few)} batch(es) have fewer than 2 control rows (controls="
                f"{self.controls!r}) to centre and scale by: {short_list(labels, quote=False)}; "
                "add controls, use a coarser batch= column, or leave those batches out"
            )
        pooled = stats.pooled()
        features = list(stats.features)
        incomplete = [f for f, c in zip(features, pooled.count, strict=True) if c < pooled.n_rows]
        if incomplete:
            raise InvalidInputError(
                f"{len(incomplete)} feature(s) have missing values in the control rows: "
                f"{short_list(incomplete)}; TVN's PCA needs complete rows: drop them "
                "(drop_na_columns) or impute first"
            )
        n = pooled.n_rows
        assert pooled.moments is not None
        cov = pooled.moments.rebased(pooled.mean).covariance() * n / (n - 1)
        evals, evecs = np.linalg.eigh(cov)
        evals, evecs = evals[::-1], evecs[:, ::-1]
        if self.n_components is None:
            k = int((evals > max(evals[0], 0.0) * 1e-10).sum()) if evals.size else 0
            k = max(1, min(k, n - 1))
        else:
            k = min(self.n_components, len(features))
        comps = evecs[:, :k].T.copy()
        flip = np.sign(comps[np.arange(k), np.argmax(np.abs(comps), axis=1)])
        comps *= flip[:, None]
        lam = evals[:k]
        if np.any(lam <= 0):
            raise InvalidInputError(
                f"the control profiles have only {int((evals > 0).sum())} component(s) with "
                f"variance, fewer than n_components={k}; ask for fewer components"
            )
        self.features_ = features
        self.mean_ = pooled.mean.copy()
        self.components_ = comps
        self.eigenvalues_ = lam.copy()
        self.output_names_ = [f"PC{i}" for i in range(1, k + 1)]
        self.batch_mean_: dict[tuple[Any, ...], np.ndarray] = {}
        self.batch_scale_: dict[tuple[Any, ...], np.ndarray] = {}
        proj = comps.T / np.sqrt(lam)  # d x k: x -> whitened components
        zero = 0
        for key, st in stats.groups.items():
            assert st.moments is not None
            cov_b = st.moments.rebased(st.mean).covariance()
            mean_b = (st.mean - self.mean_) @ proj
            var_b = np.einsum("ik,ij,jk->k", proj, cov_b, proj)
            scale = np.sqrt(np.clip(var_b, 0.0, None))
            flat = ~(scale > 1e-12 * np.sqrt(np.maximum(np.abs(mean_b) ** 2, 1.0)))
            zero += int(flat.sum())
            self.batch_mean_[key] = mean_b
            self.batch_scale_[key] = np.where(flat, 1.0, scale)
        if zero:
            warn(
                f"{zero} (batch, component) pair(s) have zero spread in the batch's controls; "
                "they are centred, not scaled",
                stacklevel=3,
            )
        self.n_controls_ = int(n)
        return self

    def fit(self, frame: Frame) -> TypicalVariationNormalizer:
        """Fit on ``frame`` (:meth:`statistics`, then :meth:`from_statistics`)."""
        return self.from_statistics(self.statistics(frame))

    def _require_fitted(self) -> None:
        if not hasattr(self, "components_"):
            raise InvalidInputError(
                "this TypicalVariationNormalizer is not fitted; call fit(...) first"
            )

    def _apply(self, df: pl.DataFrame) -> pl.DataFrame:
        x = to_numpy64(df, self.features_)
        bad = int(np.isnan(x).any(axis=1).sum())
        if bad:
            raise InvalidInputError(
                f"{bad} row(s) of the profiles to normalize (TVN) have missing feature values; "
                "a PCA projection needs complete rows: drop those features (drop_na_columns) "
                "or impute first"
            )
        z = (x - self.mean_) @ (self.components_.T / np.sqrt(self.eigenvalues_))
        for key, rows in _groups(df, [self.batch]):
            if key not in self.batch_mean_:
                raise TooFewControlsError(
                    f"batch {_label([self.batch], key)} had no control rows when TVN was "
                    f"fitted (controls={self.controls!r}); fit on rows that include its controls"
                )
            z[rows] = (z[rows] - self.batch_mean_[key]) / self.batch_scale_[key]
        return _replace_features(df, self.features_, z, self.output_names_)

    def transform(self, frame: Frame) -> pl.LazyFrame:
        """Project every row on the components and standardize it by its batch's controls.

        The features are replaced by ``PC1 ... PCk`` (Float32); other columns pass through.

        Raises
        ------
        MissingColumnsError
            If the batch column or a fitted feature is absent.
        TooFewControlsError
            If a row's batch had no controls at fit time.
        InvalidInputError
            If a row has a missing feature value.
        """
        self._require_fitted()
        lf = frame.lazy()
        require_columns(lf, [self.batch, *self.features_], "the profiles to normalize (TVN)")
        schema = lf.collect_schema()
        out_schema = {c: t for c, t in schema.items() if c not in set(self.features_)}
        out_schema.update(dict.fromkeys(self.output_names_, FEATURE_DTYPE))
        return lf.map_batches(self._apply, schema=out_schema, streamable=False)

    def fit_transform(self, frame: Frame) -> pl.LazyFrame:
        """:meth:`fit` then :meth:`transform` on the same rows (read once)."""
        df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
        return self.fit(df).transform(df)

    def to_frame(self) -> pl.DataFrame:
        """The fit as a table: rows ``mean`` and one per component (loadings / sqrt(variance)),
        then per batch its ``center`` and ``scale`` rows in the first k feature columns' places.

        Layout: ``Metadata_Row`` (``mean``, ``eigenvalue``, ``PC1``...,
        ``center``, ``scale``), ``Metadata_Batch`` (null except for the batch
        rows) and one Float64 column per feature; a batch row holds its k
        values in the first k feature columns (null beyond).
        """
        self._require_fitted()
        d, k = len(self.features_), len(self.output_names_)
        pad = np.full(d - k, np.nan)
        rows = [self.mean_, np.concatenate([self.eigenvalues_, pad]), *self.components_]
        labels = ["mean", "eigenvalue", *self.output_names_]
        batches: list[Any] = [None] * len(labels)
        for key in self.batch_mean_:
            rows += [
                np.concatenate([self.batch_mean_[key], pad]),
                np.concatenate([self.batch_scale_[key], pad]),
            ]
            labels += ["center", "scale"]
            batches += [json.dumps(key[0]), json.dumps(key[0])]
        frame = pl.DataFrame(
            np.vstack(rows), schema=dict.fromkeys(self.features_, pl.Float64), orient="row"
        )
        frame = frame.with_columns(pl.col(self.features_).fill_nan(None))
        return frame.insert_column(
            0, pl.Series("Metadata_Batch", batches, dtype=pl.String)
        ).insert_column(0, pl.Series(ROW, labels))

    @classmethod
    def from_frame(
        cls, frame: pl.DataFrame, parameters: dict[str, Any]
    ) -> TypicalVariationNormalizer:
        """A fitted TVN from :meth:`to_frame`'s table and :meth:`parameters`."""
        obj = cls(
            batch=parameters["batch"],
            controls=parameters["controls"],
            n_components=parameters["n_components"],
        )
        require_columns(frame, [ROW, "Metadata_Batch"], "the saved TVN fit")
        labels = frame[ROW].to_list()
        if labels[:2] != ["mean", "eigenvalue"]:
            raise InvalidInputError(
                f"this table is not a saved TVN fit: its {ROW} column must start with "
                "'mean', 'eigenvalue'"
            )
        features = [c for c in frame.columns if c not in (ROW, "Metadata_Batch")]
        values = to_numpy64(frame, features)
        names = [lab for lab in labels if lab.startswith("PC")]
        k = len(names)
        obj.features_ = features
        obj.mean_ = values[0]
        obj.eigenvalues_ = values[1, :k]
        obj.components_ = values[2 : 2 + k]
        obj.output_names_ = names
        obj.batch_mean_, obj.batch_scale_ = {}, {}
        batches = frame["Metadata_Batch"].to_list()
        for i in range(2 + k, len(labels), 2):
            key = (json.loads(batches[i]),)
            obj.batch_mean_[key] = values[i, :k]
            obj.batch_scale_[key] = values[i + 1, :k]
        return obj

    def __repr__(self) -> str:
        return f"TypicalVariationNormalizer(batch={self.batch!r}, controls={self.controls!r})"


def typical_variation_normalize(
    lf: pl.LazyFrame | pl.DataFrame,
    *,
    batch: str = PLATE,
    controls: RowFilter = "negcon",
    n_components: int | None = None,
    features: Sequence[str] | None = None,
) -> pl.LazyFrame:
    """Typical-variation normalization: PCA on the controls, then per-batch centre and scale.

    Fits a :class:`TypicalVariationNormalizer` on ``lf`` and applies it to
    ``lf`` (see the class for the formulas, parameters and missing values).

    Returns
    -------
    polars.LazyFrame
        The metadata columns and ``PC1 ... PCk`` (Float32).

    Raises
    ------
    TooFewControlsError
        If a batch has fewer than 2 control rows.
    InvalidInputError
        If a row has a missing feature value.

    Examples
    --------
    >>> import numpy as np, polars as pl
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(40, 2))
    >>> lf = pl.LazyFrame({"Metadata_Plate": ["A", "B"] * 20, "Metadata_Control": ["negcon"] * 40,
    ...                    "a": x[:, 0], "b": x[:, 1]})
    >>> typical_variation_normalize(lf).collect().columns
    ['Metadata_Plate', 'Metadata_Control', 'PC1', 'PC2']
    """
    step = TypicalVariationNormalizer(
        batch=batch, controls=controls, n_components=n_components, features=features
    )
    return step.fit_transform(lf)


#: The steps of this module by name: the fitted class and the function that runs it.
CORRECTIONS: dict[str, tuple[type, Callable[..., pl.LazyFrame]]] = {
    "inverse_normal": (InverseNormalTransformer, inverse_normal_transform),
    "well_position": (WellPositionCorrector, well_position_correct),
    "cell_count": (CellCountRegressor, regress_cell_count),
    "tvn": (TypicalVariationNormalizer, typical_variation_normalize),
}
