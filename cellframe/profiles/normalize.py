"""Normalization of profiles against negative controls (DOMAIN.md §2).

Statistics are fitted per plate by default, or per any grouping the user
names, on the negative-control rows (or on all rows), and applied to every
row of the group:

* ``standardize``: ``(x - mean) / std`` with the population std (ddof=0), as
  scikit-learn's ``StandardScaler`` inside pycytominer;
* ``robustize``: ``(x - median) / IQR`` (75th - 25th percentile, linear
  interpolation), as scikit-learn's ``RobustScaler``;
* ``mad_robustize``: ``(x - median) / (1.4826 * MAD + epsilon)``, as
  pycytominer's ``RobustMAD``.

A feature whose control spread is zero in a group is never divided by a tiny
number (pycytominer's ``epsilon=1e-18`` turns it into ~1e18): it is reported
in a warning with counts and then kept centred (``zero_spread="center"``),
dropped (``"drop"``) or refused (``"error"``).

A group with fewer than ``min_controls`` control rows (a plate holding a
single well, or one control well) has no spread to estimate: normalizing it
would turn its profiles into all-zero rows. It is refused
(:class:`~cellframe.errors.TooFewControlsError`, ``too_few_controls="error"``,
the default) or left out with a warning counting its groups and rows
(``too_few_controls="drop"``); never silently zeroed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl

from cellframe.columns import FEATURE_DTYPE, PLATE
from cellframe.errors import InvalidInputError, TooFewControlsError
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

__all__ = ["NORMALIZATIONS", "NoControlsError", "Normalizer", "normalize"]

#: Column of a saved fit telling which statistic a row holds.
STATISTIC = "Metadata_Statistic"
N_CONTROLS = "Metadata_N_Controls"

#: 1.4826 makes the MAD of a normal sample estimate its standard deviation.
MAD_SCALE = 1.4826

StatFn = Callable[[pl.Expr], tuple[pl.Expr, pl.Expr]]


def _standardize(x: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    return x.mean(), x.std(ddof=0)


def _robustize(x: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    # numpy's default (linear) percentile, as sklearn's RobustScaler uses.
    return x.median(), x.quantile(0.75, "linear") - x.quantile(0.25, "linear")


def _mad_robustize(x: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    return x.median(), MAD_SCALE * (x - x.median()).abs().median()


#: Normalization methods: each maps a feature expression to (centre, spread) aggregations.
NORMALIZATIONS: dict[str, StatFn] = {
    "standardize": _standardize,
    "robustize": _robustize,
    "mad_robustize": _mad_robustize,
}

#: Methods whose spread gets ``epsilon`` added before dividing (pycytominer's RobustMAD).
_ADDS_EPSILON = {"mad_robustize"}

#: A spread this small relative to the centre is zero up to float64 rounding.
_ZERO_SPREAD_RTOL = 1e-10


class NoControlsError(InvalidInputError):
    """A group (plate) to normalize has no control rows to fit statistics on."""


def _center(f: str) -> str:
    return f"__cf_center__{f}"


def _scale(f: str) -> str:
    return f"__cf_scale__{f}"


@dataclass
class GroupedStatistics:
    """Mergeable per-group moments of the control rows (``standardize``'s statistic).

    Attributes
    ----------
    schema : dict of str to polars.DataType
        The grouping columns.
    groups : dict of tuple to ColumnStatistics
        Per group key (the values of the grouping columns), the moments of its
        control rows; merged group by group (Chan's update).
    features : list of str
    """

    schema: dict[str, Any]
    groups: dict[tuple[Any, ...], ColumnStatistics]
    features: list[str]
    needs_all_rows: bool = field(default=False, init=False, repr=False)

    def merge(self, other: GroupedStatistics) -> GroupedStatistics:
        """The statistics of both sets of rows together, group by group (exact)."""
        groups = dict(self.groups)
        for key, value in other.groups.items():
            groups[key] = groups[key].merge(value) if key in groups else value
        return GroupedStatistics(self.schema, groups, self.features)


class Normalizer:
    """Fitted normalization statistics: per group, a centre and a spread per feature.

    Parameters
    ----------
    method : {"standardize", "robustize", "mad_robustize"} or callable, default "standardize"
        A callable maps ``pl.col(f)`` (Float64) to ``(centre, spread)``
        aggregation expressions.
    by : sequence of str, default ("Metadata_Plate",)
        Grouping: statistics are fitted and applied per group. ``()`` fits one
        set of statistics on all rows.
    controls : str, polars.Expr or None, default "negcon"
        Rows to fit on: a value of ``Metadata_Control`` (``"negcon"``), a SQL
        condition (``"Metadata_pert_type = 'control'"``), a Polars expression,
        or ``None``/``"all"`` for every row.
    features : sequence of str, optional
        Features to normalize (default: every numeric non-metadata column).
    zero_spread : {"center", "drop", "error"}, default "center"
        What to do with a feature whose control spread is zero in a group:
        keep it centred (divide by 1), drop the feature from the output, or raise.
        Each case is warned with counts.
    epsilon : float, default 1e-18
        Added to the spread of ``mad_robustize`` (pycytominer's default).
    missing_controls : {"error", "drop"}, default "error"
        What :meth:`transform` does with rows of a group that had no controls
        at fit time: raise :class:`NoControlsError`, or drop them with a warning.
    min_controls : int, default 2
        Fewest control rows a group needs to estimate a spread.
    too_few_controls : {"error", "drop"}, default "error"
        What to do with groups that have fewer control rows than
        ``min_controls``: raise :class:`~cellframe.errors.TooFewControlsError`,
        or leave them out of the fit and drop their rows in :meth:`transform`
        (both warned with the counts of groups and rows).

    Attributes
    ----------
    features_ : list of str
        The features fitted (after ``zero_spread="drop"``, those kept).
    stats_ : polars.DataFrame
        One row per group: the ``by`` columns, ``Metadata_N_Controls`` and,
        per feature, its centre and spread.
    zero_spread_ : polars.DataFrame
        ``(group..., feature)`` pairs whose spread was zero.
    excluded_groups_ : polars.DataFrame
        The ``by`` columns of groups left out for too few controls
        (``too_few_controls="drop"``) with their ``Metadata_N_Controls``.

    Examples
    --------
    >>> import polars as pl
    >>> wells = pl.DataFrame({"Metadata_Plate": ["P"] * 4,
    ...                       "Metadata_Control": ["negcon", "negcon", "", ""],
    ...                       "f": [1.0, 3.0, 5.0, 2.0]})
    >>> norm = Normalizer("standardize").fit(wells)  # negcon mean 2, std 1
    >>> norm.features_
    ['f']
    >>> norm.stats_.row(0)
    ('P', 2, 2.0, 1.0)
    >>> norm.transform(wells).collect()["f"].to_list()
    [-1.0, 1.0, 3.0, 0.0]
    """

    def __init__(
        self,
        method: str | StatFn = "standardize",
        *,
        by: Sequence[str] = (PLATE,),
        controls: RowFilter = "negcon",
        features: Sequence[str] | None = None,
        zero_spread: Literal["center", "drop", "error"] = "center",
        epsilon: float = 1e-18,
        missing_controls: Literal["error", "drop"] = "error",
        min_controls: int = 2,
        too_few_controls: Literal["error", "drop"] = "error",
    ) -> None:
        self.method = method
        self._stat_fn = resolve_method(method, NORMALIZATIONS, "normalization method")
        self.by = [by] if isinstance(by, str) else list(by)
        self.controls = controls
        self.features = None if features is None else list(features)
        if zero_spread not in ("center", "drop", "error"):
            raise InvalidInputError(
                f"zero_spread must be 'center', 'drop' or 'error', not {zero_spread!r}"
            )
        if missing_controls not in ("error", "drop"):
            raise InvalidInputError(
                f"missing_controls must be 'error' or 'drop', not {missing_controls!r}"
            )
        if epsilon < 0:
            raise InvalidInputError("epsilon must be non-negative")
        if too_few_controls not in ("error", "drop"):
            raise InvalidInputError(
                f"too_few_controls must be 'error' or 'drop', not {too_few_controls!r}"
            )
        if int(min_controls) < 1:
            raise InvalidInputError(f"min_controls must be at least 1, not {min_controls!r}")
        self.min_controls = int(min_controls)
        self.too_few_controls = too_few_controls
        self.zero_spread = zero_spread
        self.epsilon = float(epsilon)
        self.missing_controls = missing_controls

    # ------------------------------------------------------------------ fitting
    def parameters(self) -> dict[str, Any]:
        """JSON-serialisable parameters (recorded in provenance)."""
        return {
            "method": self.method if isinstance(self.method, str) else repr(self.method),
            "by": self.by,
            "controls": self.controls
            if isinstance(self.controls, str | None)
            else str(self.controls),
            "zero_spread": self.zero_spread,
            "epsilon": self.epsilon,
            "missing_controls": self.missing_controls,
            "min_controls": self.min_controls,
            "too_few_controls": self.too_few_controls,
        }

    def fit(self, lf: pl.LazyFrame | pl.DataFrame) -> Normalizer:
        """Fit the statistics on the control rows of each group.

        Raises
        ------
        MissingColumnsError
            If a grouping column or the control column is absent.
        EmptyInputError
            If no row matches ``controls``.
        InvalidInputError
            With ``zero_spread="error"``, if some control spread is zero.
        """
        return self._fit_controls(*self._control_rows(lf))

    def _control_rows(self, frame: pl.LazyFrame | pl.DataFrame) -> tuple[pl.LazyFrame, list[str]]:
        """The control rows the fit reads and the features it fits (grouping columns excluded)."""
        lf = frame.lazy()
        where = "the profiles to normalize"
        require_columns(
            lf, self.by, where, "name existing columns in by=, or by=() for no grouping"
        )
        require_columns(
            lf,
            filter_columns(self.controls),
            where,
            "name the control rows with controls=..., or controls='all' to fit on every row",
        )
        features = [f for f in resolve_features(lf, self.features, where) if f not in self.by]
        predicate = row_filter(self.controls)
        return (lf if predicate is None else lf.filter(predicate)), features

    def statistics(self, frame: pl.LazyFrame | pl.DataFrame) -> GroupedStatistics | Rows:
        """What the fit needs from the control rows of ``frame``.

        ``standardize``: per group, mergeable moments of the control rows
        (:class:`GroupedStatistics`; count, mean, sum of squared deviations).
        Medians (``robustize``, ``mad_robustize``) and custom methods have no
        finite sufficient statistic, so their statistic is the control rows
        themselves (grouping columns and features; ``needs_all_rows``);
        merging concatenates them.

        Raises
        ------
        MissingColumnsError
            If a grouping column, the control column or a feature is absent.
        """
        ctrl, features = self._control_rows(frame)
        rows = ctrl.select(*self.by, *features).collect()
        if self.method != "standardize":
            return Rows(rows)
        parts = (
            rows.partition_by(self.by, as_dict=True, maintain_order=True) if self.by else {(): rows}
        )
        return GroupedStatistics(
            dict(rows.select(self.by).schema),
            {
                key: ColumnStatistics.of(to_numpy64(df, features), features)
                for key, df in parts.items()
            },
            features,
        )

    def from_statistics(self, stats: GroupedStatistics | Rows) -> Normalizer:
        """Fit from (merged) :meth:`statistics`; returns ``self``.

        Raises
        ------
        EmptyInputError
            If there is no control row.
        InvalidInputError
            With ``zero_spread="error"``, if some control spread is zero.
        """
        if isinstance(stats, GroupedStatistics) and self.method == "standardize":
            return self._finish(self._standardize_frame(stats), list(stats.features))
        if not isinstance(stats, Rows) or self.method == "standardize":
            raise InvalidInputError(
                f"a Normalizer is fitted from its control rows (Rows, from "
                f"Normalizer.statistics; GroupedStatistics for 'standardize'), not "
                f"{type(stats).__name__}"
            )
        features = [c for c in stats.frame.columns if c not in self.by]
        return self._fit_controls(stats.frame.lazy(), features)

    def _standardize_frame(self, stats: GroupedStatistics) -> pl.DataFrame:
        """Per group: control count, mean and population std of each feature (null without values)."""
        len_dtype = pl.DataFrame({"x": [0]}).select(pl.len()).dtypes[0]
        keys = list(stats.groups)
        columns: dict[str, pl.Series] = {
            c: pl.Series(c, [k[i] for k in keys], dtype=dtype)
            for i, (c, dtype) in enumerate(stats.schema.items())
        }
        st = list(stats.groups.values())
        columns[N_CONTROLS] = pl.Series(N_CONTROLS, [g.n_rows for g in st], dtype=len_dtype)
        for j, f in enumerate(stats.features):
            some = [g.count[j] > 0 for g in st]
            center = [float(g.mean[j]) if ok else None for g, ok in zip(st, some, strict=True)]
            scale = [
                float(np.sqrt(g.variance[j])) if ok else None
                for g, ok in zip(st, some, strict=True)
            ]
            columns[_center(f)] = pl.Series(_center(f), center, dtype=pl.Float64)
            columns[_scale(f)] = pl.Series(_scale(f), scale, dtype=pl.Float64)
        return pl.DataFrame(list(columns.values()))

    def _fit_controls(self, ctrl: pl.LazyFrame, features: list[str]) -> Normalizer:
        """Fit the statistics of each group on the control rows ``ctrl``."""
        aggs: list[pl.Expr] = [pl.len().alias(N_CONTROLS)]
        for f in features:
            x = pl.col(f).cast(pl.Float64).fill_nan(None)
            center, scale = self._stat_fn(x)
            aggs += [center.alias(_center(f)), scale.alias(_scale(f))]
        if self.by:
            stats = ctrl.group_by(self.by).agg(aggs).collect(engine="streaming")
        else:
            # One group over all rows. Polars evaluates quantiles in a plain
            # select about 20x slower than the same aggregation in a group-by
            # (robustize on 384 x 454: ~8 s vs 0.3 s), so group on a constant key.
            key = "__cf_all_rows__"
            stats = (
                ctrl.with_columns(pl.lit(0, dtype=pl.Int8).alias(key))
                .group_by(key)
                .agg(aggs)
                .drop(key)
                .collect(engine="streaming")
            )
        return self._finish(stats, features)

    def _finish(self, stats: pl.DataFrame, features: list[str]) -> Normalizer:
        """Checks and zero-spread handling shared by every way of fitting."""
        if self.by:
            stats = stats.sort(self.by, nulls_last=True)
        if stats.height == 0 or int(stats[N_CONTROLS].sum()) == 0:
            from cellframe.errors import EmptyInputError

            raise EmptyInputError(
                f"no control rows match controls={self.controls!r}; name the negative "
                "controls (e.g. controls=\"Metadata_pert_type = 'control'\") or pass "
                "controls='all' to fit on every row"
            )
        stats = self._exclude_small_groups(stats)
        self._check_groups(stats, features)
        self.features_ = features
        self.stats_ = stats
        self._handle_zero_spread()
        return self

    def _group_label(self, row: dict[str, Any]) -> str:
        return ", ".join(f"{k}={row[k]!r}" for k in self.by) or "all rows"

    def _exclude_small_groups(self, stats: pl.DataFrame) -> pl.DataFrame:
        """Refuse, or leave out, groups with fewer than ``min_controls`` control rows."""
        few = stats.filter(pl.col(N_CONTROLS) < self.min_controls)
        self.excluded_groups_ = few.select(*self.by, N_CONTROLS)
        if few.height == 0:
            return stats
        labels = [
            f"{self._group_label(r)} ({r[N_CONTROLS]} control row(s))"
            for r in few.iter_rows(named=True)
        ]
        msg = (
            f"{few.height} of {stats.height} group(s) have fewer than {self.min_controls} "
            f"control rows (controls={self.controls!r}), too few to estimate a spread; "
            "normalizing them would turn their profiles into all-zero rows: "
            f"{short_list(labels, quote=False)}"
        )
        if self.too_few_controls == "error":
            raise TooFewControlsError(
                msg + "; add control wells, pool plates with by=() or a coarser by=, fit on "
                "controls='all', or pass too_few_controls='drop' to leave those groups out"
            )
        warn(
            msg + "; those groups are left out of the fit and their rows are dropped "
            "(too_few_controls='drop')",
            stacklevel=6,
        )
        return stats.filter(pl.col(N_CONTROLS) >= self.min_controls)

    def _check_groups(self, stats: pl.DataFrame, features: list[str]) -> None:
        empty = [f for f in features if stats[_center(f)].null_count() > 0]
        if empty:
            n_groups = sum(stats[_center(f)].null_count() for f in empty)
            warn(
                f"{len(empty)} feature(s) have no non-missing control value in "
                f"{n_groups} (group, feature) pair(s); their normalized values are null: "
                f"{short_list(empty)}",
                stacklevel=6,
            )

    def _handle_zero_spread(self) -> None:
        stats = self.stats_
        records = []
        for f in self.features_:
            c = stats[_center(f)]
            s = stats[_scale(f)]
            mask = (s.is_not_null() & (s <= _ZERO_SPREAD_RTOL * c.abs())).fill_null(False)
            mask = mask | (s == 0).fill_null(False)
            if mask.any():
                rows = stats.filter(mask).select(self.by) if self.by else pl.DataFrame({"_": [0]})
                for r in rows.iter_rows(named=True):
                    records.append({**{k: r[k] for k in self.by}, "feature": f})
        if self.by:
            schema = {**{k: stats.schema[k] for k in self.by}, "feature": pl.String}
        else:
            schema = {"feature": pl.String}
        self.zero_spread_ = pl.DataFrame(records, schema=schema, orient="row")
        self.dropped_features_: list[str] = []
        if not records:
            return
        bad = self.zero_spread_["feature"].unique(maintain_order=True).to_list()
        msg = (
            f"{len(bad)} feature(s) have zero control spread in {len(records)} "
            f"(group, feature) pair(s) for {self._method_name()}: {short_list(bad)}"
        )
        if self.zero_spread == "error":
            raise InvalidInputError(
                msg + "; remove constant features first (e.g. variance_threshold) or pass "
                "zero_spread='center' or 'drop'"
            )
        if self.zero_spread == "drop":
            warn(msg + "; dropped (zero_spread='drop')", stacklevel=6)
            keep = [f for f in self.features_ if f not in set(bad)]
            self.stats_ = stats.drop([c for f in bad for c in (_center(f), _scale(f))])
            self.features_ = keep
            self.dropped_features_ = bad
        else:
            warn(msg + "; kept centred, not scaled (zero_spread='center')", stacklevel=6)
            # A spread of 1 keeps the feature centred and avoids dividing by ~0.
            for f in bad:
                s = self.stats_[_scale(f)]
                c = self.stats_[_center(f)]
                zero = (
                    s.is_not_null() & ((s <= _ZERO_SPREAD_RTOL * c.abs()) | (s == 0))
                ).fill_null(False)
                self.stats_ = self.stats_.with_columns(
                    pl.Series(_scale(f), s.set(zero, 1.0 - self._epsilon_for()))
                )

    def _method_name(self) -> str:
        return (
            self.method
            if isinstance(self.method, str)
            else getattr(self.method, "__name__", "custom")
        )

    def _epsilon_for(self) -> float:
        return self.epsilon if self._method_name() in _ADDS_EPSILON else 0.0

    # ------------------------------------------------------------------ applying
    def _require_fitted(self) -> None:
        if not hasattr(self, "stats_"):
            raise InvalidInputError(
                "this Normalizer is not fitted; call fit(...) first (or cellframe.pipeline.load_step)"
            )

    def transform(self, lf: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
        """Normalize every row with the statistics of its group.

        Features that the fit dropped (``zero_spread="drop"``) are removed;
        other columns pass through unchanged. Features come out as Float32.

        Raises
        ------
        MissingColumnsError
            If a fitted feature or a grouping column is absent (feature sets
            must agree between the fitted and the transformed plates).
        NoControlsError
            If some group of ``lf`` had no controls at fit time
            (``missing_controls="error"``).
        """
        self._require_fitted()
        lf = lf.lazy()
        where = "the profiles to normalize"
        require_columns(lf, self.by, where)
        require_columns(
            lf,
            self.features_,
            where,
            "the fitted features must all be present (select common features across plates first)",
        )
        schema = lf.collect_schema()
        dropped = [f for f in getattr(self, "dropped_features_", []) if f in schema]
        stats = self.stats_.drop(N_CONTROLS)
        excluded = getattr(self, "excluded_groups_", None)
        if self.by and excluded is not None and excluded.height:
            keys = excluded.select(self.by)
            n_rows = (
                lf.join(keys.lazy(), on=self.by, how="semi", nulls_equal=True)
                .select(pl.len())
                .collect()
                .item()
            )
            if n_rows:
                warn(
                    f"{n_rows} row(s) of {keys.height} group(s) with too few controls are "
                    "dropped (too_few_controls='drop'): "
                    f"{short_list([self._group_label(r) for r in keys.iter_rows(named=True)], quote=False)}"
                )
                lf = lf.join(keys.lazy(), on=self.by, how="anti", nulls_equal=True)
        if self.by:
            stats = stats.with_columns(pl.lit(True).alias("__cf_has_stats"))
            groups = lf.select(self.by).unique().collect()
            unmatched = groups.join(stats.select(self.by), on=self.by, how="anti", nulls_equal=True)
            if unmatched.height:
                labels = [self._group_label(r) for r in unmatched.iter_rows(named=True)]
                msg = (
                    f"{unmatched.height} group(s) have no control rows to normalize against "
                    f"(controls={self.controls!r}): {short_list(labels, quote=False)}"
                )
                if self.missing_controls == "error":
                    raise NoControlsError(
                        msg + "; add controls to those plates, normalize with a coarser by=, "
                        "controls='all', or missing_controls='drop'"
                    )
                warn(msg + "; their rows are dropped (missing_controls='drop')")
            out = lf.join(
                stats.lazy(),
                on=self.by,
                how="inner" if unmatched.height else "left",
                nulls_equal=True,
                maintain_order="left",
            )
        else:
            out = lf.join(stats.lazy(), how="cross")
        eps = self._epsilon_for()
        out = out.with_columns(
            [
                (
                    (pl.col(f).cast(pl.Float64).fill_nan(None) - pl.col(_center(f)))
                    / (pl.col(_scale(f)) + eps)
                )
                .cast(FEATURE_DTYPE)
                .alias(f)
                for f in self.features_
            ]
        )
        helper = [c for c in out.collect_schema() if c.startswith("__cf_")]
        return out.drop([*helper, *dropped])

    def fit_transform(self, lf: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
        """:meth:`fit` then :meth:`transform` on the same rows.

        A LazyFrame source is read once: collected, then fitted on and
        transformed from memory (the profiles a normalizer is fitted on are
        well-level tables; stream single cells with :meth:`fit` on the controls
        and :meth:`transform`).
        """
        df = lf.collect() if isinstance(lf, pl.LazyFrame) else lf
        return self.fit(df).transform(df)

    # ------------------------------------------------------------------ storage
    def to_frame(self) -> pl.DataFrame:
        """The statistics as a table: one row per (group, statistic) with the features as columns."""
        self._require_fitted()
        parts = []
        for stat, name in (("center", _center), ("scale", _scale)):
            part = self.stats_.select(
                *self.by,
                pl.lit(stat).alias(STATISTIC),
                pl.col(N_CONTROLS),
                *[pl.col(name(f)).alias(f) for f in self.features_],
            )
            parts.append(part)
        return pl.concat(parts, how="vertical")

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, parameters: dict[str, Any]) -> Normalizer:
        """A fitted normalizer from :meth:`to_frame`'s table and its parameters.

        ``parameters`` holds :meth:`parameters` plus ``features`` (and
        ``dropped_features``), as :func:`cellframe.pipeline.save_step` records them.

        Raises
        ------
        InvalidInputError
            If the method is a custom callable (not serialisable: refit it).
        MissingColumnsError
            If a column of the saved layout is absent.
        """
        method = parameters["method"]
        if method not in NORMALIZATIONS:
            raise InvalidInputError(
                f"a saved normalization holds a custom method {method!r}; refit it"
            )
        obj = cls(
            method,
            by=parameters["by"],
            controls=parameters["controls"],
            zero_spread=parameters["zero_spread"],
            epsilon=parameters["epsilon"],
            missing_controls=parameters["missing_controls"],
            min_controls=parameters.get("min_controls", 2),
            too_few_controls=parameters.get("too_few_controls", "error"),
        )
        require_columns(
            frame, [*obj.by, STATISTIC, N_CONTROLS], "the saved normalization statistics"
        )
        features = [c for c in parameters["features"] if c in frame.columns]
        center = frame.filter(pl.col(STATISTIC) == "center")
        scale = frame.filter(pl.col(STATISTIC) == "scale")
        if obj.by:
            center = center.sort(obj.by, nulls_last=True)
            scale = scale.sort(obj.by, nulls_last=True)
        stats = center.select(*obj.by, N_CONTROLS)
        stats = stats.with_columns(
            [center[f].cast(pl.Float64).alias(_center(f)) for f in features]
            + [scale[f].cast(pl.Float64).alias(_scale(f)) for f in features]
        )
        obj.features_ = features
        obj.stats_ = stats
        obj.zero_spread_ = pl.DataFrame()
        obj.dropped_features_ = list(parameters.get("dropped_features", []))
        return obj

    def __repr__(self) -> str:
        state = f", fitted on {len(self.features_)} features" if hasattr(self, "features_") else ""
        return f"Normalizer({self._method_name()!r}, by={self.by}{state})"


def normalize(
    lf: pl.LazyFrame | pl.DataFrame,
    method: str | StatFn = "standardize",
    *,
    by: Sequence[str] = (PLATE,),
    controls: RowFilter = "negcon",
    features: Sequence[str] | None = None,
    zero_spread: Literal["center", "drop", "error"] = "center",
    epsilon: float = 1e-18,
    missing_controls: Literal["error", "drop"] = "error",
    min_controls: int = 2,
    too_few_controls: Literal["error", "drop"] = "error",
) -> pl.LazyFrame:
    """Normalize profiles against controls, per plate by default.

    Fits a :class:`Normalizer` on ``lf`` and applies it to ``lf``; see that
    class for the parameters. Metadata columns pass through unchanged.

    Returns
    -------
    polars.LazyFrame
        Same rows and columns (minus features dropped by ``zero_spread="drop"``),
        features as Float32.

    Examples
    --------
    >>> import polars as pl
    >>> wells = pl.LazyFrame({"Metadata_Plate": ["P"] * 4,
    ...                       "Metadata_Control": ["negcon", "negcon", "", ""],
    ...                       "f": [1.0, 3.0, 5.0, 2.0]})
    >>> normalize(wells, "standardize").collect()["f"].to_list()
    [-1.0, 1.0, 3.0, 0.0]
    """
    norm = Normalizer(
        method,
        by=by,
        controls=controls,
        features=features,
        zero_spread=zero_spread,
        epsilon=epsilon,
        missing_controls=missing_controls,
        min_controls=min_controls,
        too_few_controls=too_few_controls,
    )
    return norm.fit_transform(lf)
