"""Phenotypic activity of a store table with an honest null, learned from provenance.

The cross-fitting itself is :mod:`cellframe.evaluate.crossfit`'s (pure); this
module reads a table's provenance to find which fitted corrections made it
(:func:`correction_from_provenance`), and evaluates it with those corrections
refitted by cross-fitting (:func:`activity_from_store`).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import polars as pl

from cellframe.errors import DependentNullWarning, InvalidInputError
from cellframe.evaluate.crossfit import (
    COLUMN_STEPS,
    REFITTABLE_STEPS,
    CorrectionPlan,
    CrossFit,
    KeepColumns,
    _is_expression_text,
    _refit_step,
)

if TYPE_CHECKING:
    from cellframe.store import Store

__all__ = [
    "NullSettings",
    "StoreActivity",
    "activity_from_store",
    "correction_from_provenance",
    "warn_dependent_null",
]


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


def correction_from_provenance(store: Store, table: str) -> CorrectionPlan:
    """Read which fitted corrections made ``table`` and how to refit them by cross-fitting.

    Walks the provenance back from ``table`` through ``sphere``, ``normalize``
    and ``select`` steps (as written by ``cellframe sphere|normalize|select``
    and :func:`cellframe.pipeline.run_step`) to the first table made otherwise.
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
        "Cross-fit instead: evaluate the pre-correction table with "
        "phenotypic_activity(..., cross_fit=CrossFit(correction)), or let "
        "cellframe refit the recorded steps (cross_fit=True; CLI: without --as-is)",
        DependentNullWarning,
        stacklevel=3,
    )


@dataclass(frozen=True)
class NullSettings:
    """How the null of an activity test is made and read.

    Parameters
    ----------
    n_folds : int, default 2
        Cross-fitting folds of the control wells.
    seed : int, default 0
        Seeds the folds and the permutation nulls.
    null_size : int, default 10000
        Permutations per null (:func:`~cellframe.evaluate.mean_average_precision`).
    threshold : float, default 0.05
        q-value below which a treatment is active.
    cross_fit : bool, default True
        Refit corrections found in provenance by cross-fitting; False
        evaluates the table as it is (with a ``DependentNullWarning`` when a
        correction was fitted on the controls).

    Examples
    --------
    >>> NullSettings(null_size=2000).n_folds
    2
    """

    n_folds: int = 2
    seed: int = 0
    null_size: int = 10000
    threshold: float = 0.05
    cross_fit: bool = True


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
    null: NullSettings | None = None,
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
    null : NullSettings, optional
        Folds, seed, permutations, q threshold and whether to cross-fit
        (default: ``NullSettings()``).
    progress : bool
        Progress bars.

    Returns
    -------
    StoreActivity
    """
    from cellframe.columns import metadata_columns
    from cellframe.evaluate.pairs import phenotypic_activity
    from cellframe.evaluate.significance import mean_average_precision
    from cellframe.evaluate.similarity import ComputeOptions

    settings = null if null is not None else NullSettings()
    plan = correction_from_provenance(store, table)
    correction: list[Any] | None = None
    if plan.correction is not None and settings.cross_fit:
        source = plan.source
        correction = list(plan.correction)
        if features is not None:
            correction.append(KeepColumns(features))
        kind = "cross-fitted"
    else:
        source = table
        kind = "plain"
        if plan.correction is not None:
            plan.problem = "cross-fitting was turned off (cross_fit=False)"
        if plan.problem is not None:
            kind = "dependent"
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
        compute=ComputeOptions(progress=progress),
        cross_fit=None
        if correction is None
        else CrossFit(correction, n_folds=settings.n_folds, seed=settings.seed),
    )
    summary = mean_average_precision(
        per_query.filter(~pl.col("is_control")),
        sameby=[treatment],
        null_size=settings.null_size,
        seed=settings.seed,
        threshold=settings.threshold,
    )
    return StoreActivity(per_query, summary, plan, kind)
