"""Feature selection on an engine: map-reduce over exact per-plate statistics.

Each plate is reduced to the statistics the operations need; the driver adds
them up and applies the same drop rules as :func:`cellframe.profiles.feature_select`
(shared code), so the kept features and the reasons are those of the local
function on the concatenated table.

=========================  =====================================================
operation                  per-plate statistics, and how they combine
=========================  =====================================================
``variance_threshold``     non-missing count, mean, sum of squared deviations
                           (Chan et al.'s pairwise update), min and max (a
                           feature whose values are all equal has variance 0)
``frequency_threshold``    value-count table of every feature (distinct values
                           and their counts), added value by value: exact
``correlation_threshold``  pairwise-complete moments about a shift (the plate
                           mean): counts N, sums S, sums of squares SS and
                           cross-products P = U^T U, re-based to the global mean
                           before they are added (no cancellation)
``drop_na_columns``        missing count per feature, and rows
``drop_outliers``          max |x| per feature
``blocklist``              names only, no data
=========================  =====================================================
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from cellframe.engine.base import MapReport
from cellframe.engine.run import map_plates, reduce_plates
from cellframe.errors import EmptyInputError
from cellframe.profiles import select as _select
from cellframe.profiles._common import (
    RowFilter,
    filter_columns,
    require_columns,
    resolve_features,
    row_filter,
    to_numpy64,
)
from cellframe.profiles.select import FeatureSelection

if TYPE_CHECKING:
    from cellframe.store import Store

__all__ = [
    "CrossMoments",
    "SelectStatistics",
    "apply_selection_plates",
    "combine_statistics",
    "feature_select_plates",
    "select_statistics",
]


# ----------------------------------------------------------- cross-moments
@dataclass
class CrossMoments:
    """Pairwise-complete moments of features about a per-feature shift.

    For features i and j over the rows where both are present, with
    ``u = x - shift``: ``n[i, j]`` rows, ``s[i, j]`` = sum of u_i,
    ``ss[i, j]`` = sum of u_i^2 and ``p[i, j]`` = sum of u_i u_j. When no value
    is missing, ``n`` is a scalar and ``s``/``ss`` are vectors (every pair
    sees every row), which keeps a plate's statistics at one d x d matrix.

    Attributes
    ----------
    shift : numpy.ndarray
        Per-feature shift (the mean of the rows seen, for accuracy).
    n, s, ss : numpy.ndarray or int
        Counts, sums and sums of squares (d x d, or scalar / d-vectors).
    p : numpy.ndarray
        Cross-products (d x d).
    """

    shift: np.ndarray
    n: Any
    s: np.ndarray
    ss: np.ndarray
    p: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray) -> CrossMoments:
        """Moments of the rows of ``x`` (n x d float64, NaN for missing)."""
        present = ~np.isnan(x)
        with np.errstate(invalid="ignore", divide="ignore"):
            counts = present.sum(axis=0)
            shift = np.where(counts > 0, np.nansum(x, axis=0) / np.maximum(counts, 1), 0.0)
        u = np.where(present, x - shift, 0.0)
        p = u.T @ u
        if present.all():
            return cls(shift, x.shape[0], u.sum(axis=0), (u * u).sum(axis=0), p)
        m = present.astype(np.float64)
        return cls(shift, m.T @ m, u.T @ m, (u * u).T @ m, p)

    @property
    def compact(self) -> bool:
        """True when no value was missing (scalar count, vector sums)."""
        return np.ndim(self.n) == 0

    def full(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(n, s, ss)`` as d x d matrices."""
        if not self.compact:
            return self.n, self.s, self.ss
        d = self.p.shape[0]
        n = np.full((d, d), float(self.n))
        return n, np.repeat(self.s[:, None], d, axis=1), np.repeat(self.ss[:, None], d, axis=1)

    def rebased(self, shift: np.ndarray) -> CrossMoments:
        """The same moments about another shift (exact algebra, no data needed)."""
        delta = self.shift - shift
        if self.compact:
            n, s = self.n, self.s
            return CrossMoments(
                shift,
                n,
                s + n * delta,
                self.ss + 2 * delta * s + n * delta**2,
                self.p + np.outer(s, delta) + np.outer(delta, s) + n * np.outer(delta, delta),
            )
        n, s = self.n, self.s
        d_row = delta[:, None]
        return CrossMoments(
            shift,
            n,
            s + n * d_row,
            self.ss + 2 * d_row * s + n * d_row**2,
            self.p + s * delta[None, :] + s.T * d_row + n * np.outer(delta, delta),
        )

    def merge(self, other: CrossMoments, shift: np.ndarray) -> CrossMoments:
        """Sum of two sets of moments, both re-based to ``shift``."""
        a, b = self.rebased(shift), other.rebased(shift)
        if a.compact and b.compact:
            return CrossMoments(shift, a.n + b.n, a.s + b.s, a.ss + b.ss, a.p + b.p)
        (na, sa, ssa), (nb, sb, ssb) = a.full(), b.full()
        return CrossMoments(shift, na + nb, sa + sb, ssa + ssb, a.p + b.p)

    def subset(self, index: np.ndarray) -> CrossMoments:
        """Moments of the features at ``index``."""
        ix = np.ix_(index, index)
        if self.compact:
            return CrossMoments(
                self.shift[index], self.n, self.s[index], self.ss[index], self.p[ix]
            )
        return CrossMoments(self.shift[index], self.n[ix], self.s[ix], self.ss[ix], self.p[ix])

    def correlation(self, constant: np.ndarray | None = None) -> np.ndarray:
        """Pearson r of every pair over its pairwise-complete rows (NaN where undefined).

        ``constant`` marks features whose values are all equal: their r is NaN
        (zero spread), whatever rounding leaves in their moments.
        """
        n, s, ss = self.full()
        with np.errstate(invalid="ignore", divide="ignore"):
            cov = n * self.p - s * s.T
            var = n * ss - s * s
            den = np.sqrt(var * var.T)
            r = np.clip(cov / den, -1.0, 1.0)
        r[~(den > 0) | (n < 2)] = np.nan
        if constant is not None and constant.any():
            r[constant, :] = np.nan
            r[:, constant] = np.nan
        return (r + r.T) / 2  # exactly symmetric


# --------------------------------------------------------- per-plate stats
def _chan(
    n_a: np.ndarray, mean_a: np.ndarray, m2_a: np.ndarray,
    n_b: np.ndarray, mean_b: np.ndarray, m2_b: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Chan, Golub and LeVeque's pairwise update of count, mean and M2."""
    n = n_a + n_b
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = mean_b - mean_a
        frac = np.where(n > 0, n_b / np.maximum(n, 1), 0.0)
        mean = mean_a + delta * frac
        m2 = m2_a + m2_b + delta**2 * n_a * frac
    return n, np.where(n > 0, mean, 0.0), np.where(n > 0, m2, 0.0)


#: Value-count tables of one feature are added up once this many are pending,
#: so a long run over plates neither grows a list per plate nor re-sorts every time.
_PENDING_TABLES = 16


def _unique_counts(
    parts: Sequence[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray]:
    """One (distinct values, counts) table from several, counts added value by value."""
    vals = np.concatenate([v for v, _ in parts])
    counts = np.concatenate([c for _, c in parts]).astype(np.int64)
    distinct, inverse = np.unique(vals, return_inverse=True)
    total = np.zeros(distinct.size, dtype=np.int64)
    np.add.at(total, inverse.ravel(), counts)
    return distinct, total


def _add_tables(
    a: list[tuple[np.ndarray, np.ndarray]], b: list[tuple[np.ndarray, np.ndarray]]
) -> list[tuple[np.ndarray, np.ndarray]]:
    parts = a + b
    return [_unique_counts(parts)] if len(parts) >= _PENDING_TABLES else parts


@dataclass
class SelectStatistics:
    """Exact statistics of the rows of one plate (or of several, once combined).

    Attributes
    ----------
    features : list of str
    n_rows : int
        Rows (after the ``samples`` filter), missing values included.
    count : numpy.ndarray
        Non-missing values per feature.
    mean, m2 : numpy.ndarray
        Mean of the non-missing values and the sum of squared deviations from it.
    minimum, maximum, peak : numpy.ndarray
        Min, max and max |x| of the non-missing values (NaN where none).
    values : list of list of (values, counts), optional
        Per feature, value-count tables still to be added up (frequency_threshold).
    moments : CrossMoments, optional
        Pairwise-complete cross-moments (correlation_threshold).
    """

    features: list[str]
    n_rows: int
    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray
    peak: np.ndarray
    values: list[list[tuple[np.ndarray, np.ndarray]]] | None = None
    moments: CrossMoments | None = field(default=None, repr=False)

    @classmethod
    def of(
        cls, x: np.ndarray, features: Sequence[str], *, values: bool, moments: bool
    ) -> SelectStatistics:
        """Statistics of ``x`` (rows x features, float64 with NaN for missing)."""
        present = ~np.isnan(x)
        count = present.sum(axis=0)
        import warnings

        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
            mean = np.where(count > 0, np.nansum(x, axis=0) / np.maximum(count, 1), 0.0)
            m2 = np.where(present, (x - mean) ** 2, 0.0).sum(axis=0)
            empty = np.full(x.shape[1], np.nan)
            minimum = np.nanmin(x, axis=0) if x.shape[0] else empty
            maximum = np.nanmax(x, axis=0) if x.shape[0] else empty
            peak = np.nanmax(np.abs(x), axis=0) if x.shape[0] else empty
        tables = None
        if values:
            tables = []
            for j in range(x.shape[1]):
                col = x[present[:, j], j]
                tables.append([np.unique(col, return_counts=True)])
        return cls(
            list(features),
            int(x.shape[0]),
            count.astype(np.int64),
            mean,
            m2,
            minimum,
            maximum,
            peak,
            tables,
            CrossMoments.of(x) if moments else None,
        )

    def merge(self, other: SelectStatistics) -> SelectStatistics:
        """The statistics of both sets of rows together (exact)."""
        count, mean, m2 = _chan(self.count, self.mean, self.m2, other.count, other.mean, other.m2)
        values = None
        if self.values is not None and other.values is not None:
            values = [_add_tables(a, b) for a, b in zip(self.values, other.values, strict=True)]
        moments = None
        if self.moments is not None and other.moments is not None:
            moments = self.moments.merge(other.moments, mean)
        return SelectStatistics(
            self.features,
            self.n_rows + other.n_rows,
            count,
            mean,
            m2,
            np.fmin(self.minimum, other.minimum),
            np.fmax(self.maximum, other.maximum),
            np.fmax(self.peak, other.peak),
            values,
            moments,
        )

    @property
    def constant(self) -> np.ndarray:
        """Features whose non-missing values are all equal."""
        return self.minimum == self.maximum

    @property
    def variance(self) -> np.ndarray:
        """Population variance of the non-missing values (NaN without values, 0 if constant)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            var = np.where(self.count > 0, self.m2 / np.maximum(self.count, 1), np.nan)
        return np.where(self.constant, 0.0, var)

    def value_counts(self, j: int) -> np.ndarray:
        """How often each distinct non-missing value of feature ``j`` occurs."""
        if self.values is None:
            raise ValueError("these statistics were computed without value counts")
        return _unique_counts(self.values[j])[1]


def select_statistics(
    frame: pl.DataFrame,
    *,
    features: Sequence[str],
    samples: RowFilter = "all",
    values: bool = False,
    moments: bool = False,
) -> SelectStatistics:
    """The feature-selection statistics of one plate's rows (the map step).

    Parameters
    ----------
    frame : polars.DataFrame
        One plate's rows.
    features : sequence of str
        Features to summarise.
    samples : str, polars.Expr or None
        Rows to use (see :func:`cellframe.profiles._common.row_filter`).
    values : bool
        Also keep every feature's value-count table (frequency_threshold).
    moments : bool
        Also compute the pairwise cross-moments (correlation_threshold).

    Returns
    -------
    SelectStatistics
    """
    predicate = row_filter(samples)
    rows = frame if predicate is None else frame.filter(predicate)
    x = to_numpy64(rows, features)
    return SelectStatistics.of(x, features, values=values, moments=moments)


def combine_statistics(parts: Iterable[SelectStatistics]) -> SelectStatistics | None:
    """Add up per-plate statistics one plate at a time (None when there are none)."""
    total = None
    for part in parts:
        total = part if total is None else total.merge(part)
    return total


def _rows(frame: pl.DataFrame, *, features: Sequence[str], samples: RowFilter) -> pl.DataFrame:
    predicate = row_filter(samples)
    rows = frame if predicate is None else frame.filter(predicate)
    return rows.select(features)


def _concat(parts: Iterable[pl.DataFrame]) -> pl.DataFrame:
    return pl.concat(list(parts), how="vertical")


# ------------------------------------------------------------------ driver
_NEEDS_DATA = {
    "variance_threshold",
    "frequency_threshold",
    "correlation_threshold",
    "drop_na_columns",
    "drop_outliers",
}


def _check_parameters(ops: Sequence[Any], params: Mapping[str, Any]) -> None:
    """The checks each local operation makes on its parameters, before any plate is read."""
    names = {op for op in ops if isinstance(op, str)}
    if "variance_threshold" in names:
        _select._check_variance_params(params.get("min_variance", 1e-6))
    if "frequency_threshold" in names:
        _select._check_frequency_params(
            params.get("freq_cut", 0.05), params.get("unique_cut", 0.01)
        )
    if "correlation_threshold" in names:
        _select._check_correlation_params(
            params.get("corr_threshold", 0.9),
            params.get("corr_method", "pearson"),
            params.get("corr_strategy", "pycytominer"),
        )
    if "drop_na_columns" in names:
        _select._check_na_params(params.get("na_cutoff", 0.05))


def feature_select_plates(
    store: Store,
    source: str,
    operation: str | Any | Sequence[str | Any] = "variance_threshold",
    *,
    features: Sequence[str] | None = None,
    samples: RowFilter = "all",
    engine: str = "local",
    address: str | None = None,
    progress: bool = True,
    **params: Any,
) -> FeatureSelection:
    """Feature selection over every plate of ``source`` as map-reduce on an engine.

    Equals :func:`cellframe.profiles.feature_select` on the whole table (same
    kept features, same reasons): each plate is reduced to exact statistics
    (see the module docstring), which the driver adds up and hands to the
    same drop rules. Only what the operations need is computed.

    Parameters
    ----------
    store, source
        The store and the table to select on (native or partitioned).
    operation : str, callable or sequence of those
        As in :func:`cellframe.profiles.feature_select`. A callable operation
        needs the rows themselves: they are gathered from every plate
        (features only) and the callable runs on the driver.
    features, samples, **params
        As in :func:`cellframe.profiles.feature_select`.
    engine : {"local", "ray"}
    address : str, optional
        Ray cluster address.
    progress : bool, default True

    Returns
    -------
    FeatureSelection

    Raises
    ------
    ValueError
        For an unknown operation or parameter, or a parameter out of range.
    MissingColumnsError
        If a feature or a column of ``samples`` is not in ``source``.
    EmptyInputError
        If no row is left to compute statistics on.
    InvalidInputError
        If every feature would be dropped.
    """
    ops = _select._operations(operation, params)
    _check_parameters(ops, params)
    schema = store.schema(source)
    where = f"table {source!r}"
    feats = resolve_features(schema, features, where)
    require_columns(schema, filter_columns(samples), where, "check samples=")
    names = {op for op in ops if isinstance(op, str)}
    custom = [op for op in ops if not isinstance(op, str)]
    stats = None
    if names & _NEEDS_DATA or custom:
        fn = functools.partial(
            select_statistics,
            features=feats,
            samples=samples,
            values="frequency_threshold" in names,
            moments="correlation_threshold" in names,
        )
        stats = reduce_plates(
            store, source, fn, combine_statistics, engine=engine, address=address, progress=progress,
            desc="selection statistics",
        )  # fmt: skip
        if stats is None or stats.n_rows == 0:
            raise EmptyInputError(
                f"no rows to select features on in {source!r} (samples={samples!r})"
            )
    rows = None
    if custom:
        fn_rows = functools.partial(_rows, features=feats, samples=samples)
        rows = reduce_plates(
            store, source, fn_rows, _concat, engine=engine, address=address, progress=progress,
            desc="selection rows",
        )  # fmt: skip
    position = {f: i for i, f in enumerate(feats)}

    def run(op: Any, kept: list[str]) -> FeatureSelection:
        if not isinstance(op, str):
            return op(rows, features=kept, samples="all")
        kwargs = {
            name: params[key] for key, name in _select.OPERATIONS[op][1].items() if key in params
        }
        if op == "blocklist":
            drops = _select._blocklist_drops(kept, kwargs.get("blocklist"))
            return _select._result(kept, drops, op)
        assert stats is not None
        idx = np.array([position[f] for f in kept], dtype=np.int64)
        if op == "variance_threshold":
            drops = _select._variance_drops(
                kept, stats.variance[idx], kwargs.get("min_variance", 1e-6)
            )
        elif op == "frequency_threshold":
            drops = _select._frequency_drops(
                kept,
                [stats.value_counts(int(i)) for i in idx],
                stats.n_rows,
                kwargs.get("freq_cut", 0.05),
                kwargs.get("unique_cut", 0.01),
            )
        elif op == "correlation_threshold":
            assert stats.moments is not None
            corr = stats.moments.subset(idx).correlation(stats.constant[idx])
            drops = _select._correlation_drops(
                kept, corr, kwargs.get("threshold", 0.9), kwargs.get("strategy", "pycytominer")
            )
        elif op == "drop_na_columns":
            missing = stats.n_rows - stats.count[idx]
            drops = _select._na_drops(kept, missing, stats.n_rows, kwargs.get("cutoff", 0.05))
        else:  # drop_outliers
            drops = _select._outlier_drops(
                kept, stats.peak[idx], kwargs.get("outlier_cutoff", 500.0)
            )
        return _select._result(kept, drops, op)

    return _select._compose(ops, feats, run)


def _drop_features(frame: pl.DataFrame, *, dropped: Sequence[str]) -> pl.DataFrame:
    present = set(frame.columns)
    return frame.drop([f for f in dropped if f in present])


def _check_previous_selection(store: Store, dest: str, dropped: Sequence[str]) -> None:
    """Refuse to resume onto plates written with another feature selection."""
    from cellframe.partitions import (
        PartitionVersionError,
        completed_plates,
        partition_dir,
        read_marker,
    )

    root = store.parts_dir / dest
    for plate in completed_plates(root):
        record = read_marker(partition_dir(root, plate)) or {}
        before = record.get("parameters", {}).get("dropped")
        if record.get("step") == "select" and before is not None and list(before) != list(dropped):
            raise PartitionVersionError(
                f"plate {plate!r} of {dest!r} was written with another feature selection "
                f"({len(before)} features dropped, now {len(dropped)}); re-run with --force "
                "to recompute every plate, or write to a new table"
            )


def apply_selection_plates(
    store: Store,
    source: str,
    dest: str,
    selection: FeatureSelection,
    *,
    engine: str = "local",
    address: str | None = None,
    force: bool = False,
    progress: bool = True,
    parameters: Mapping[str, Any] | None = None,
) -> MapReport:
    """Write ``source`` without the features ``selection`` drops to ``dest``, plate by plate.

    With Ray, each plate becomes one Parquet partition; a re-run skips plates
    already complete unless ``force``.

    Raises
    ------
    cellframe.partitions.PartitionVersionError
        On Ray without ``force``, if a complete plate of ``dest`` was written
        by another cellframe version or with another feature selection.
    """
    dropped = selection.dropped_features
    if engine != "local" and not force:
        _check_previous_selection(store, dest, dropped)
    fn = functools.partial(_drop_features, dropped=dropped)
    params = {"n_kept": len(selection.kept), "dropped": dropped}
    params.update(parameters or {})
    return map_plates(
        store, source, dest, fn, engine=engine, address=address, force=force,
        step="select", parameters=params, progress=progress,
    )  # fmt: skip
