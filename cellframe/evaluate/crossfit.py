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

:func:`correction_from_provenance` reads a store table's provenance and
rebuilds the fitted steps that made it (``normalize`` and ``sphere`` are refitted;
``select`` keeps the columns it kept), so an already-corrected table is
evaluated by cross-fitting from the pre-correction source.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import polars as pl

from cellframe.errors import DependentNullWarning, InvalidInputError

if TYPE_CHECKING:
    from cellframe.store import Store

__all__ = [
    "ChainedCorrection",
    "CorrectionPlan",
    "FittedCorrection",
    "KeepColumns",
    "StoreActivity",
    "activity_from_store",
    "control_folds",
    "correction_from_provenance",
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
    is_control : numpy.ndarray
        ``(n,)`` bool, True for control rows.
    n_folds : int
        Number of folds (2 or more, at most the number of controls).
    seed : int
        Random seed.
    strata : numpy.ndarray, optional
        ``(n,)`` stratum codes (e.g. plate); default one stratum.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` int64 fold of each control row, ``-1`` for the other rows.

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


def _last_record(store: Store, table: str) -> dict[str, Any] | None:
    prov = store.provenance(table)
    # Records that describe the table's contents (not later annotations such as "profile").
    prov = prov.filter(~pl.col("step").is_in(["profile"]))
    if prov.height == 0:
        return None
    row = prov.row(prov.height - 1, named=True)
    params = row["parameters"]
    row["parameters"] = json.loads(params) if isinstance(params, str) and params else {}
    return row


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


def correction_from_provenance(store: Store, table: str) -> CorrectionPlan:
    """Read which fitted corrections made ``table`` and how to refit them by cross-fitting.

    Walks the provenance back from ``table`` through ``sphere``, ``normalize``
    and ``select`` steps (as written by ``cellframe sphere|normalize|select``
    and :mod:`cellframe.profiles.pipeline`) to the first table made otherwise.
    ``sphere`` and ``normalize`` steps that fitted on control rows are refitted
    per fold with their recorded parameters; ``select`` steps keep the columns
    they kept (the selection is not refitted). A step applied from a saved fit
    (``fit_from``) or fitted by a custom method cannot be refitted: the plan
    then carries a ``problem`` and no correction.

    Parameters
    ----------
    store : cellframe.store.Store
    table : str

    Returns
    -------
    CorrectionPlan
    """
    chain: list[tuple[str, dict[str, Any], str]] = []  # (step, params, table), newest first
    current = table
    seen = {current}
    problem = None
    while True:
        rec = _last_record(store, current)
        if rec is not None and rec["step"] == "recipe":
            # cellframe correct --recipe: its steps fit on the controls (and Harmony on
            # every row) in one go, which provenance does not replay per fold.
            problem = (
                f"{current!r} was made by the recipe {rec['parameters'].get('recipe')!r}, "
                "whose steps were fitted on every well, controls included, and are not refitted"
            )
            break
        if rec is None or rec["step"] not in (*REFITTABLE_STEPS, *COLUMN_STEPS):
            break
        params = rec["parameters"]
        src = rec.get("source") or params.get("source")
        if rec["step"] in REFITTABLE_STEPS and _is_expression_text(params.get("controls")):
            problem = (
                f"step {rec['step']!r} of {current!r} chose its controls with a Polars "
                f"expression ({params['controls']}), which provenance cannot replay"
            )
            break
        if rec["step"] in REFITTABLE_STEPS and params.get("fit_from"):
            problem = (
                f"step {rec['step']!r} of {current!r} applied the saved fit "
                f"{params['fit_from']!r}, fitted on wells cellframe cannot see"
            )
            break
        if not src or src in seen or src not in store.table_names():
            if rec["step"] in REFITTABLE_STEPS:
                problem = (
                    f"step {rec['step']!r} of {current!r} was fitted on controls but its source "
                    f"table {src!r} is not in the store, so it cannot be refitted"
                )
            break
        chain.append((rec["step"], params, current))
        seen.add(src)
        current = src
    # Only the part of the chain up to the newest refittable step matters; a
    # select on top of the last correction is replayed as kept columns too.
    if problem is not None:
        return CorrectionPlan(table, table, None, [], [], problem)
    if not any(step in REFITTABLE_STEPS for step, _, _ in chain):
        return CorrectionPlan(table, table, None, [], [], None)
    # Drop refit-free steps below the oldest refittable one: start from its input.
    while chain and chain[-1][0] not in REFITTABLE_STEPS:
        current = chain[-1][2]
        chain.pop()
    steps: list[Any] = []
    names: list[str] = []
    controls: list[Any] = []
    for step, params, out in reversed(chain):
        names.append(step)
        if step in COLUMN_STEPS:
            from cellframe.columns import feature_columns

            steps.append(KeepColumns(feature_columns(store.scan(out))))
            continue
        try:
            steps.append(_refit_step(step, params))
        except (InvalidInputError, ValueError, TypeError) as exc:
            return CorrectionPlan(
                table, table, None, [], [], f"step {step!r} of {out!r} cannot be refitted: {exc}"
            )
        controls.append(params.get("controls"))
    return CorrectionPlan(table, current, steps, names, controls, None)


def warn_dependent_null(plan: CorrectionPlan) -> None:
    """Warn that the activity null reuses the wells a correction was fitted on."""
    warnings.warn(
        f"{plan.problem}; the negative controls that serve as the null of the permutation "
        "test were used to fit that correction, so the null is not independent and "
        "p-values are too small (pretend treatments made of controls come out active). "
        "Cross-fit instead: evaluate the pre-correction table with correction=..., or let "
        "cellframe refit the recorded steps (cross_fit=True; CLI: without --as-is)",
        DependentNullWarning,
        stacklevel=3,
    )


@dataclass
class StoreActivity:
    """Phenotypic activity of a store table, with how its null was made.

    Attributes
    ----------
    per_query : polars.DataFrame
        Output of :func:`~cellframe.evaluate.phenotypic_activity`.
    summary : polars.DataFrame
        Output of :func:`~cellframe.evaluate.mean_average_precision` per treatment.
    plan : CorrectionPlan
        What the provenance said and what was refitted.
    null : str
        ``"cross-fitted"``, ``"plain"`` (no correction fitted on controls) or
        ``"dependent"`` (a correction fitted on the controls could not be refitted).
    """

    per_query: pl.DataFrame
    summary: pl.DataFrame
    plan: CorrectionPlan
    null: str

    def provenance(self) -> dict[str, Any]:
        """How the null was made, for the provenance of the tables written from it."""
        return {
            "null": self.null,
            "null_source": self.plan.source,
            "refitted_steps": self.plan.steps if self.null == "cross-fitted" else [],
        }


def activity_from_store(
    store: Store,
    table: str,
    *,
    treatment: str,
    controls: pl.Expr,
    same_plate: bool = False,
    features: Sequence[str] | None = None,
    n_folds: int = 2,
    seed: int = 0,
    null_size: int = 10000,
    threshold: float = 0.05,
    cross_fit: bool = True,
    progress: bool = False,
) -> StoreActivity:
    """Phenotypic activity of ``table`` with an honest null, learned from provenance.

    When ``table`` was made by steps fitted on the control wells
    (:func:`correction_from_provenance`), those steps are refitted by
    cross-fitting from the pre-correction source table; when they cannot be
    refitted (or ``cross_fit=False``), the table is evaluated as it is with a
    :class:`~cellframe.errors.DependentNullWarning`.

    Parameters
    ----------
    store : cellframe.store.Store
    table : str
        Profile table to evaluate.
    treatment, controls, same_plate
        As in :func:`~cellframe.evaluate.phenotypic_activity`.
    features : sequence of str, optional
        Feature columns of ``table`` (with cross-fitting: kept after the correction).
    n_folds, seed
        Cross-fitting folds and seed (the seed also seeds the permutation nulls).
    null_size, threshold
        As in :func:`~cellframe.evaluate.mean_average_precision`.
    cross_fit : bool, default True
        Refit corrections by cross-fitting; False evaluates the table as it is.
    progress : bool
        Progress bars.

    Returns
    -------
    StoreActivity
    """
    from cellframe.columns import metadata_columns
    from cellframe.evaluate.pairs import phenotypic_activity
    from cellframe.evaluate.significance import mean_average_precision

    plan = correction_from_provenance(store, table)
    correction: list[Any] | None = None
    if plan.correction is not None and cross_fit:
        source = plan.source
        correction = list(plan.correction)
        if features is not None:
            correction.append(KeepColumns(features))
        null = "cross-fitted"
    else:
        source = table
        null = "plain"
        if plan.correction is not None:
            plan.problem = "cross-fitting was turned off (cross_fit=False)"
        if plan.problem is not None:
            null = "dependent"
            warn_dependent_null(plan)
    lf = store.scan(source)
    keep = [c for c in metadata_columns(lf) if c != treatment]
    per_query = phenotypic_activity(
        lf,
        treatment=treatment,
        controls=controls,
        same_plate=same_plate,
        features=None if correction is not None else features,
        keep=keep,
        progress=progress,
        correction=correction,
        n_folds=n_folds,
        seed=seed,
    )
    summary = mean_average_precision(
        per_query.filter(~pl.col("is_control")),
        sameby=[treatment],
        null_size=null_size,
        seed=seed,
        threshold=threshold,
    )
    return StoreActivity(per_query, summary, plan, null)
