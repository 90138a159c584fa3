"""Cross-fitting: significance tests whose null controls the correction never saw.

A correction fitted on the negative controls (sphering, normalization to
controls) pulls exactly those wells towards the origin. If the same wells are
then the null of a permutation test (:func:`~cellframe.evaluate.phenotypic_activity`),
every treatment looks far from them and comes out "active": on the LINCS plate
SQ00015054, twelve DMSO wells relabelled as a pretend compound reach q = 0.003
after sphering on the other twelve (q = 0.52 before sphering).

Cross-fitting removes the dependence. The control wells are split into
``n_folds`` folds, stratified per plate and seeded (:func:`control_folds`). For
each fold the correction is fitted on every row except that fold's controls
(the treatments and the other folds' controls: whatever the correction fits
on, it never sees the held-out controls), the treatments and the held-out
controls are transformed, and each treatment well gets an AP against the
held-out controls only. The rows of all folds are returned together (column
``fold``); :func:`~cellframe.evaluate.mean_average_precision` on them averages
the AP over replicates *and* folds and compares that mean with the element-wise
mean of the members' nulls (copairs' scheme, which treats members with equal
configuration as one: conservative for the dependent folds), then applies BH
over treatments.

:func:`cellframe.pipeline.correction_from_provenance` reads a store table's
provenance and rebuilds the fitted steps that made it (``normalize`` and
``sphere`` are refitted; ``select`` keeps the columns it kept) with the
:class:`CorrectionPlan` of this module, so an already-corrected table is
evaluated by cross-fitting from the pre-correction source.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import polars as pl

from cellframe.errors import InvalidInputError

__all__ = [
    "ChainedCorrection",
    "CorrectionPlan",
    "CrossFit",
    "FittedCorrection",
    "KeepColumns",
    "control_folds",
    "fit_correction",
]

#: Provenance steps whose fit uses the negative controls and that can be refitted.
REFITTABLE_STEPS = ("normalize", "sphere")

#: Provenance steps that only keep columns (replayed as the kept columns).
COLUMN_STEPS = ("select",)


class FittedCorrection(Protocol):
    """What a correction callable returns: something with ``transform(frame)``."""

    def transform(self, lf: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame | pl.DataFrame: ...


#: A correction: ``callable(fit_frame) -> fitted``, an unfitted estimator with
#: ``fit``/``transform`` (copied for each fold), or a sequence of them applied in order.
Correction = (
    Callable[[pl.DataFrame], FittedCorrection] | Any | Sequence[Callable[[pl.DataFrame], Any] | Any]
)


class KeepColumns:
    """A fixed feature selection: keep these feature columns and every ``Metadata_`` column.

    Parameters
    ----------
    features : sequence of str
        The feature columns to keep.
    """

    def __init__(self, features: Sequence[str]) -> None:
        self.features = list(features)

    def fit(self, lf: pl.LazyFrame | pl.DataFrame) -> KeepColumns:
        """Nothing to fit; returns itself."""
        del lf
        return self

    def transform(self, lf: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
        """Keep the metadata columns and :attr:`features`."""
        lf = lf.lazy()
        names = lf.collect_schema().names()
        keep = set(self.features)
        return lf.select([c for c in names if c.startswith("Metadata_") or c in keep])

    def __repr__(self) -> str:
        return f"KeepColumns({len(self.features)} features)"


@dataclass
class ChainedCorrection:
    """Fitted steps applied in order (the result of :func:`fit_correction` on a sequence)."""

    steps: list[Any] = field(default_factory=list)

    def transform(self, lf: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
        """Apply every fitted step in order."""
        out = lf.lazy()
        for step in self.steps:
            out = step.transform(out).lazy()
        return out


def _fit_one(spec: Any, frame: pl.DataFrame) -> Any:
    if hasattr(spec, "fit") and hasattr(spec, "transform"):
        fitted = copy.deepcopy(spec).fit(frame)
    elif callable(spec):
        fitted = spec(frame)
    else:
        raise InvalidInputError(
            f"correction must be a callable(controls_frame) -> fitted object, an estimator "
            f"with fit/transform, or a sequence of them; got {type(spec).__name__}"
        )
    if not hasattr(fitted, "transform"):
        raise InvalidInputError(
            f"the correction returned a {type(fitted).__name__} without .transform(frame); "
            "return the fitted object, e.g. lambda controls: Spherizer().fit(controls)"
        )
    return fitted


def fit_correction(correction: Correction, frame: pl.DataFrame) -> Any:
    """Fit ``correction`` on ``frame`` and return the fitted object.

    Parameters
    ----------
    correction : callable, estimator or sequence
        ``callable(frame) -> fitted`` (``fitted.transform(frame)``), an unfitted
        estimator with ``fit``/``transform`` (deep-copied, then fitted), or a
        sequence of those fitted in order, each on the previous ones' output.
    frame : polars.DataFrame
        The rows the correction may fit on.

    Returns
    -------
    object with ``transform(frame)``
    """
    if isinstance(correction, list | tuple):
        steps = []
        current: pl.DataFrame = frame
        for i, spec in enumerate(correction):
            fitted = _fit_one(spec, current)
            steps.append(fitted)
            if i < len(correction) - 1:
                current = fitted.transform(current).lazy().collect()
        return ChainedCorrection(steps)
    return _fit_one(correction, frame)


@dataclass(frozen=True)
class CrossFit:
    """A correction to cross-fit on the controls, with its folds (see the module docstring).

    Parameters
    ----------
    correction : callable, estimator or sequence
        The correction, given *unfitted*: ``callable(frame) -> fitted`` with
        ``fitted.transform(frame)`` (e.g. ``lambda rows: Spherizer(lam=1e-2).fit(rows)``),
        an estimator with ``fit``/``transform`` (copied per fold), or a
        sequence of them applied in order.
    n_folds : int, default 2
        Folds of the controls (stratified per plate when that column exists).
    seed : int, default 0
        Seed of the fold assignment.

    Raises
    ------
    InvalidInputError
        For an ``n_folds`` that is not an integer of at least 2.

    Examples
    --------
    >>> CrossFit(lambda rows: rows, n_folds=3).seed
    0
    """

    correction: Correction
    n_folds: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if (
            isinstance(self.n_folds, bool)
            or not isinstance(self.n_folds, int | np.integer)
            or self.n_folds < 2
        ):
            raise InvalidInputError(
                f"CrossFit: n_folds must be an integer of at least 2, got {self.n_folds!r}"
            )


def control_folds(
    is_control: np.ndarray,
    *,
    n_folds: int,
    seed: int = 0,
    strata: np.ndarray | None = None,
) -> np.ndarray:
    """Assign the control rows to ``n_folds`` folds, stratified and seeded.

    Within each stratum (plate) the controls are shuffled with
    ``numpy.random.default_rng(seed)`` and dealt round-robin, continuing the
    count across strata, so every fold gets ``n // n_folds`` or one more
    controls overall and at most one more than any other fold from each plate.

    Parameters
    ----------
    is_control : numpy.ndarray of bool, shape (n,)
        True for control rows.
    n_folds : int
        Number of folds (2 or more, at most the number of controls).
    seed : int
        Random seed.
    strata : numpy.ndarray, shape (n,), optional
        Stratum codes (e.g. plate); default one stratum.

    Returns
    -------
    numpy.ndarray of int64, shape (n,)
        Fold of each control row, ``-1`` for the other rows.

    Raises
    ------
    InvalidInputError
        If ``n_folds < 2`` or there are fewer controls than folds.

    Examples
    --------
    >>> import numpy as np
    >>> folds = control_folds(np.array([True] * 6 + [False]), n_folds=3, seed=0)
    >>> sorted(np.bincount(folds[folds >= 0]).tolist()), int(folds[-1])
    ([2, 2, 2], -1)
    """
    is_control = np.asarray(is_control, dtype=bool)
    n_ctrl = int(is_control.sum())
    if n_folds < 2:
        raise InvalidInputError(f"n_folds must be at least 2 for cross-fitting, got {n_folds}")
    if n_ctrl < n_folds:
        raise InvalidInputError(
            f"cross-fitting needs at least one control per fold: {n_ctrl} control rows for "
            f"n_folds={n_folds}; lower n_folds or add control wells"
        )
    strata = np.zeros(len(is_control), dtype=np.int64) if strata is None else np.asarray(strata)
    rng = np.random.default_rng(seed)
    folds = np.full(len(is_control), -1, dtype=np.int64)
    dealt = 0
    for s in np.unique(strata[is_control]):
        rows = np.flatnonzero(is_control & (strata == s))
        rows = rows[rng.permutation(len(rows))]
        folds[rows] = (dealt + np.arange(len(rows))) % n_folds
        dealt += len(rows)
    return folds


@dataclass
class CorrectionPlan:
    """How to evaluate a store table honestly, read from its provenance.

    Attributes
    ----------
    table : str
        The table asked for.
    source : str
        The table to read: the pre-correction source when ``correction`` is set,
        else ``table`` itself.
    correction : list or None
        The steps to refit by cross-fitting (estimators and :class:`KeepColumns`).
    steps : list of str
        Provenance steps from ``source`` up to ``table``, oldest first.
    controls : list of str
        The ``controls`` parameter of each refitted step (which wells it fitted on).
    problem : str or None
        Why the table cannot be refitted (the null is then not independent).
    """

    table: str
    source: str
    correction: list[Any] | None
    steps: list[str]
    controls: list[Any]
    problem: str | None = None

    def describe(self) -> str:
        """One line saying what will be done."""
        if self.correction is None and self.problem is None:
            return f"{self.table}: no correction fitted on controls; plain null"
        if self.problem is not None:
            return f"{self.table}: {self.problem}"
        chain = " -> ".join([self.source, *self.steps])
        return f"{self.table}: cross-fitting {chain} (controls fitted on: {self.controls})"


def _is_expression_text(controls: Any) -> bool:
    """Whether a recorded ``controls`` is the text of a Polars expression (not replayable)."""
    return isinstance(controls, str) and ("col(" in controls or controls.startswith("["))


def _refit_step(step: str, params: dict[str, Any]) -> Any:
    if step == "sphere":
        from cellframe.profiles.sphere import Spherizer

        return Spherizer(
            params.get("method", "regularized"),
            lam=float(params.get("lam", 1e-2)),
            epsilon=float(params.get("epsilon", 1e-6)),
            center=bool(params.get("center", True)),
            controls=params.get("controls", "negcon"),
        )
    from cellframe.profiles.normalize import NORMALIZATIONS, Normalizer

    method = params.get("method", "standardize")
    if method not in NORMALIZATIONS:
        raise InvalidInputError(f"normalization method {method!r} is not a registered name")
    return Normalizer(
        method,
        by=params.get("by") or (),
        controls=params.get("controls", "negcon"),
        zero_spread=params.get("zero_spread", "center"),
        epsilon=float(params.get("epsilon", 1e-18)),
        missing_controls=params.get("missing_controls", "error"),
    )
