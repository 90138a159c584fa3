"""The fitted-step contract and the mergeable statistics behind it (ARCHITECTURE.md layer 3).

A fitted step (:class:`~cellframe.profiles.normalize.Normalizer`,
:class:`~cellframe.profiles.select.FeatureSelector`,
:class:`~cellframe.profiles.sphere.Spherizer`, :class:`~cellframe.profiles.qc.PCA`)
is written once and run by any engine through four methods:

* ``step.statistics(frame) -> S`` — what the fit needs from some rows (one
  plate, one partition, or the whole table);
* ``S.merge(S2)`` — the statistics of both sets of rows together, exactly;
* ``step.from_statistics(S)`` — fit ``step`` from merged statistics (returns it);
* ``step.transform(frame)`` — apply the fit to any rows;

plus ``to_frame()`` / ``from_frame()`` to save a fit as a table. A local fit is
``step.from_statistics(step.statistics(frame))``; an engine computes the
statistics plate by plate and merges them (:func:`merge_all`).

Statistics
----------
:class:`ColumnStatistics`
    per feature: non-missing count, mean and sum of squared deviations
    (Chan, Golub and LeVeque's pairwise update), min, max, max |x|; optionally
    value-count tables and :class:`CrossMoments`.
:class:`CrossMoments`
    pairwise-complete sums and cross-products about a per-feature shift,
    re-based to a common shift before they are added (no ``X^T X / n - mu mu^T``
    cancellation: exact on data with a large offset).
:class:`Rows`
    the rows themselves, for fits without finite sufficient statistics
    (medians, pycytominer's SVD): ``needs_all_rows`` is True, and merging
    concatenates.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np
import polars as pl

from cellframe.errors import EmptyInputError, InvalidInputError

__all__ = [
    "ColumnStatistics",
    "CrossMoments",
    "FittedStep",
    "Rows",
    "Statistics",
    "fit_local",
    "merge_all",
]

S = TypeVar("S", bound="Statistics")


@runtime_checkable
class Statistics(Protocol):
    """What a fitted step's ``statistics(frame)`` returns."""

    #: True when the statistic is the rows themselves (no finite summary exists).
    needs_all_rows: bool

    def merge(self, other: Any) -> Any:
        """The statistics of both sets of rows together."""
        ...


@runtime_checkable
class FittedStep(Protocol):
    """The contract every fitted step meets (see the module docstring)."""

    def statistics(self, frame: pl.DataFrame) -> Any:
        """Statistics of ``frame``'s rows that the fit needs."""
        ...

    def from_statistics(self, stats: Any) -> Any:
        """Fit this step from (merged) statistics and return it."""
        ...

    def transform(self, frame: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
        """Apply the fit."""
        ...

    def to_frame(self) -> pl.DataFrame:
        """The fit as a table."""
        ...


def merge_all(parts: Iterable[S]) -> S | None:
    """Merge statistics one part at a time, in order (``None`` when there are none).

    Examples
    --------
    >>> x = np.arange(12.0).reshape(6, 2)
    >>> parts = [ColumnStatistics.of(x[:2], ["a", "b"]), ColumnStatistics.of(x[2:], ["a", "b"])]
    >>> merge_all(parts).variance.tolist()
    [11.666666666666666, 11.666666666666666]
    """
    total = None
    for part in parts:
        total = part if total is None else total.merge(part)
    return total


def fit_local(step: Any, frames: Iterable[pl.DataFrame]) -> Any:
    """Fit ``step`` on one or many partitions in this process: statistics, merge, fit.

    Parameters
    ----------
    step : FittedStep
        An unfitted step.
    frames : iterable of polars.DataFrame
        The partitions (e.g. plates), read one at a time.

    Returns
    -------
    FittedStep
        ``step``, fitted.

    Raises
    ------
    EmptyInputError
        If ``frames`` is empty.
    """
    stats = merge_all(step.statistics(f) for f in frames)
    if stats is None:
        raise EmptyInputError(f"no partitions to fit {step!r} on")
    return step.from_statistics(stats)


# ------------------------------------------------------------------- rows
@dataclass
class Rows:
    """The rows themselves: the statistic of a fit that needs all of them.

    Medians (``robustize``, ``mad_robustize``), pycytominer's SVD and custom
    callables have no finite sufficient statistics; their ``statistics`` keep
    the rows they need (usually the control rows, a small fraction), and
    merging concatenates them in order.

    Attributes
    ----------
    frame : polars.DataFrame
    """

    frame: pl.DataFrame
    needs_all_rows: bool = field(default=True, init=False)

    def merge(self, other: Rows) -> Rows:
        """Both sets of rows, ``self``'s first."""
        return Rows(pl.concat([self.frame, other.frame], how="vertical_relaxed"))


# ----------------------------------------------------------- cross-moments
@dataclass
class CrossMoments:
    """Pairwise-complete moments of features about a per-feature shift.

    For features i and j over the rows where both are present, with
    ``u = x - shift``: ``n[i, j]`` rows, ``s[i, j]`` = sum of u_i,
    ``ss[i, j]`` = sum of u_i^2 and ``p[i, j]`` = sum of u_i u_j. When no value
    is missing, ``n`` is a scalar and ``s``/``ss`` are vectors (every pair
    sees every row), which keeps the statistics at one d x d matrix.

    Attributes
    ----------
    shift : numpy.ndarray, shape (d,)
        Per-feature shift (the mean of the rows seen, for accuracy).
    n, s, ss : numpy.ndarray, shape (d, d), or int and shape (d,)
        Counts, sums and sums of squares.
    p : numpy.ndarray, shape (d, d)
        Cross-products.
    """

    shift: np.ndarray
    n: Any
    s: np.ndarray
    ss: np.ndarray
    p: np.ndarray
    needs_all_rows: bool = field(default=False, init=False, repr=False)

    @classmethod
    def of(cls, x: np.ndarray) -> CrossMoments:
        """Moments of the rows of ``x`` (shape (n, d), float64 with NaN for missing)."""
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

    def counts(self) -> np.ndarray:
        """Non-missing values per feature, shape (d,)."""
        if self.compact:
            return np.full(self.p.shape[0], float(self.n))
        return np.diag(self.n).astype(np.float64)

    def mean(self) -> np.ndarray:
        """Per-feature mean of the non-missing values (0 where there is none)."""
        n = self.counts()
        s = self.s if self.compact else np.diag(self.s)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, self.shift + s / np.maximum(n, 1), 0.0)

    def rebased(self, shift: np.ndarray) -> CrossMoments:
        """The same moments about another shift (exact algebra, no data needed)."""
        delta = self.shift - shift
        n, s = self.n, self.s
        if self.compact:
            return CrossMoments(
                shift,
                n,
                s + n * delta,
                self.ss + 2 * delta * s + n * delta**2,
                self.p + np.outer(s, delta) + np.outer(delta, s) + n * np.outer(delta, delta),
            )
        d_row = delta[:, None]
        return CrossMoments(
            shift,
            n,
            s + n * d_row,
            self.ss + 2 * d_row * s + n * d_row**2,
            self.p + s * delta[None, :] + s.T * d_row + n * np.outer(delta, delta),
        )

    def merge(self, other: CrossMoments, shift: np.ndarray | None = None) -> CrossMoments:
        """Sum of two sets of moments, both re-based to ``shift`` (default: the joint mean)."""
        if shift is None:
            na, nb = self.counts(), other.counts()
            with np.errstate(invalid="ignore", divide="ignore"):
                shift = np.where(
                    na + nb > 0, (na * self.mean() + nb * other.mean()) / np.maximum(na + nb, 1), 0
                )
        a, b = self.rebased(shift), other.rebased(shift)
        if a.compact and b.compact:
            return CrossMoments(shift, a.n + b.n, a.s + b.s, a.ss + b.ss, a.p + b.p)
        (na_, sa, ssa), (nb_, sb, ssb) = a.full(), b.full()
        return CrossMoments(shift, na_ + nb_, sa + sb, ssa + ssb, a.p + b.p)

    def subset(self, index: np.ndarray) -> CrossMoments:
        """Moments of the features at ``index``."""
        ix = np.ix_(index, index)
        if self.compact:
            return CrossMoments(
                self.shift[index], self.n, self.s[index], self.ss[index], self.p[ix]
            )
        return CrossMoments(self.shift[index], self.n[ix], self.s[ix], self.ss[ix], self.p[ix])

    def covariance(self) -> np.ndarray:
        """Population covariance (divided by n), shape (d, d); needs complete rows.

        Computed about the shift as ``(P - s s^T / n) / n`` with ``s`` the
        (small) sums of the deviations from the shift, so a large common
        offset does not cancel digits.

        Raises
        ------
        InvalidInputError
            If some value was missing (pairwise counts differ).
        """
        if self.compact:
            n, s = float(self.n), self.s
        else:
            if self.n.size and not np.all(self.n == self.n.flat[0]):
                raise InvalidInputError(
                    "a covariance matrix needs complete rows; these moments saw missing "
                    "values (drop or impute the features with missing values first)"
                )
            n, s = float(self.n.flat[0]) if self.n.size else 0.0, np.diag(self.s).copy()
        cov = (self.p - np.outer(s, s) / n) / n
        return (cov + cov.T) / 2

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


# --------------------------------------------------------- column statistics
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
class ColumnStatistics:
    """Exact, mergeable per-feature statistics of some rows.

    Attributes
    ----------
    features : list of str
    n_rows : int
        Rows, missing values included.
    count : numpy.ndarray, shape (d,)
        Non-missing values per feature.
    mean, m2 : numpy.ndarray, shape (d,)
        Mean of the non-missing values and the sum of squared deviations from it.
    minimum, maximum, peak : numpy.ndarray, shape (d,)
        Min, max and max |x| of the non-missing values (NaN where none).
    values : list of list of (values, counts), optional
        Per feature, value-count tables still to be added up.
    moments : CrossMoments, optional
        Pairwise-complete cross-moments.
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
    needs_all_rows: bool = field(default=False, init=False, repr=False)

    @classmethod
    def of(
        cls,
        x: np.ndarray,
        features: Sequence[str],
        *,
        values: bool = False,
        moments: bool = False,
    ) -> ColumnStatistics:
        """Statistics of ``x`` (shape (n, d), float64 with NaN for missing)."""
        present = ~np.isnan(x)
        if x.shape[0] and present.all() and not values:
            return cls._of_complete(x, features, moments=moments)
        count = present.sum(axis=0)
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
            tables = [
                [np.unique(x[present[:, j], j], return_counts=True)] for j in range(x.shape[1])
            ]
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

    @classmethod
    def _of_complete(
        cls, x: np.ndarray, features: Sequence[str], *, moments: bool
    ) -> ColumnStatistics:
        """:meth:`of` without missing values: one centred copy serves M2 and the moments."""
        n, d = x.shape
        mean = x.sum(axis=0) / n
        u = x - mean
        m2 = np.einsum("ij,ij->j", u, u)
        minimum, maximum = x.min(axis=0), x.max(axis=0)
        cross = CrossMoments(mean, n, u.sum(axis=0), m2.copy(), u.T @ u) if moments else None
        return cls(
            list(features),
            int(n),
            np.full(d, n, dtype=np.int64),
            mean,
            m2,
            minimum,
            maximum,
            np.maximum(np.abs(minimum), np.abs(maximum)),
            None,
            cross,
        )

    def merge(self, other: ColumnStatistics) -> ColumnStatistics:
        """The statistics of both sets of rows together (exact).

        Raises
        ------
        InvalidInputError
            If the two were computed on different features.
        """
        if self.features != other.features:
            raise InvalidInputError(
                f"cannot merge statistics of different features ({len(self.features)} vs "
                f"{len(other.features)}); every partition must hold the same feature columns"
            )
        count, mean, m2 = _chan(self.count, self.mean, self.m2, other.count, other.mean, other.m2)
        values = None
        if self.values is not None and other.values is not None:
            values = [_add_tables(a, b) for a, b in zip(self.values, other.values, strict=True)]
        moments = None
        if self.moments is not None and other.moments is not None:
            moments = self.moments.merge(other.moments, mean)
        return ColumnStatistics(
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
        """How often each distinct non-missing value of feature ``j`` occurs.

        Raises
        ------
        InvalidInputError
            If these statistics were computed without value counts.
        """
        if self.values is None:
            raise InvalidInputError(
                "these statistics were computed without value counts (values=False)"
            )
        return _unique_counts(self.values[j])[1]
