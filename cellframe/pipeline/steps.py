"""Profiling steps over store tables: one ``run_step``, and a whole chain from a TOML config.

:func:`run_step` reads one store table, applies a step (an
:class:`~cellframe.pipeline.Aggregation`, a :class:`~cellframe.profiles.Normalizer`,
a :class:`~cellframe.profiles.FeatureSelector`, a :class:`~cellframe.profiles.Spherizer`
or a :class:`QualityControl`) on an engine, and writes the result to another
table with provenance (step name and parameters). :func:`run_pipeline` chains
steps from a config such as::

    input = "cells"

    [[step]]
    run = "aggregate"        # cells -> wells (median), plate by plate
    output = "wells"

    [[step]]
    run = "normalize"
    method = "mad_robustize"

    [[step]]
    run = "select"
    operations = ["variance_threshold", "correlation_threshold", "drop_na_columns", "blocklist"]

    [[step]]
    run = "sphere"
    lam = 0.01

    [[step]]
    run = "activity"         # cross-fits the sphering: an honest null

A top-level ``engine = "ray"`` (with ``address = "HOST:PORT"`` for a
cluster) runs aggregation, normalization, feature selection, sphering and QC
on Ray (see :mod:`cellframe.engine`). Each step reads the previous step's
output unless it names ``input``; its output defaults to the input name plus a
suffix (``_normalized``, ``_selected``, ``_sphered``, ``_qc``, ``_strength``,
``_activity``; ``wells`` / ``images`` / ``treatments`` for aggregation).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cellframe._progress import progress as _progress
from cellframe.errors import InvalidChoiceError, InvalidInputError

if TYPE_CHECKING:
    from cellframe.engine.base import Engine
    from cellframe.pipeline.activity import NullSettings
    from cellframe.store import Store

__all__ = [
    "STEPS",
    "QualityControl",
    "StepReport",
    "make_engine",
    "run_activity",
    "run_pipeline",
    "run_step",
    "run_strength",
]


@dataclass(frozen=True)
class StepReport:
    """What one pipeline step did."""

    step: str
    input: str
    output: str
    rows: int
    seconds: float
    note: str = ""


@dataclass(frozen=True)
class QualityControl:
    """A QC step: PCA outlier wells (``kind="wells"``) or image quality (``"images"``).

    Parameters
    ----------
    kind : {"wells", "images"}, default "wells"
    n_components : int, default 3
        Principal components of the outlier test.
    z_threshold : float, default 3.5
        Robust z-score above which a well is an outlier.
    focus_z : float, default 4.0
        Robust z-score of the focus measures above which an image is flagged.
    max_saturated_percent : float, default 1.0
        Saturated pixels (percent) above which an image is flagged.
    by : sequence of str, optional
        Groups of the robust z-scores (default: ``Metadata_Plate``; ``()`` for none).

    Raises
    ------
    InvalidChoiceError
        For an unknown ``kind``.

    Examples
    --------
    >>> QualityControl("images").kind
    'images'
    """

    kind: str = "wells"
    n_components: int = 3
    z_threshold: float = 3.5
    focus_z: float = 4.0
    max_saturated_percent: float = 1.0
    by: Sequence[str] | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("wells", "images"):
            raise InvalidChoiceError(
                f"unknown QC kind {self.kind!r} (QualityControl kind=); valid: 'wells', "
                "'images' (PCA outlier wells, or image quality)"
            )

    def groups(self) -> tuple[str, ...]:
        """The grouping columns, with the default (``Metadata_Plate``) filled in."""
        from cellframe.columns import PLATE

        return (PLATE,) if self.by is None else tuple(self.by)


def make_engine(
    name: str = "local",
    *,
    address: str | None = None,
    force: bool = False,
    workers: int | None = None,
    chunk_rows: int | None = None,
) -> Engine:
    """An engine from the options of a config or the command line.

    Parameters
    ----------
    name : {"local", "ray"}, default "local"
    address, force
        Ray only: the cluster, and whether to recompute complete plates.
    workers, chunk_rows
        Local only: the chunked reads of aggregation.

    Returns
    -------
    LocalEngine or RayEngine

    Raises
    ------
    InvalidInputError
        For an unknown engine name, or a local option below 1.

    Examples
    --------
    >>> make_engine("ray", address="auto")
    RayEngine(address='auto', force=False, num_cpus=None)
    """
    if name == "local":
        from cellframe.engine.local import LocalEngine

        return LocalEngine(workers=workers, chunk_rows=chunk_rows)
    if name == "ray":
        from cellframe.engine.ray import RayEngine

        return RayEngine(address=address, force=force)
    from cellframe.engine.base import resolve_engine

    return resolve_engine(name)  # raises, naming the valid engines


def _engine_step_report(
    step: str, source: str, dest: str, report: Any, t0: float, what: str
) -> StepReport:
    """The StepReport of a step run on an engine (``report`` is a MapReport)."""
    return StepReport(
        step,
        source,
        dest,
        report.rows,
        time.perf_counter() - t0,
        f"{what}, {report.engine}: {len(report.computed)} plates computed, "
        f"{len(report.skipped)} already complete",
    )


def run_step(
    store: Store,
    step: Any,
    source: str,
    dest: str,
    *,
    engine: Engine | str = "local",
    save_fit: str | None = None,
    fit_from: str | None = None,
    report: str | None = None,
    progress: bool = True,
) -> StepReport:
    """Run one step on ``source`` and write ``dest``, on an engine, with provenance.

    Parameters
    ----------
    store : cellframe.store.Store
    step : Aggregation, Normalizer, FeatureSelector, Spherizer or QualityControl
        What to compute (unfitted: it is fitted on ``source``).
    source, dest : str
        The table read and the table written (replaced).
    engine : LocalEngine, RayEngine, "local" or "ray", default "local"
        Where to run. Locally, a fitted step is fitted on the whole table and
        ``dest`` written in one transaction (aggregation: in bounded chunks,
        see :class:`~cellframe.engine.LocalEngine`). On Ray, a fitted step is
        fitted from exact per-plate statistics merged over plates (a
        normalization per plate: on each plate's own rows) and applied plate
        by plate into per-plate Parquet partitions, resumably
        (``RayEngine(force=True)`` recomputes complete plates).
    save_fit : str, optional
        Normalizer, Spherizer: also save the fit to this table (:func:`save_step`).
    fit_from : str, optional
        Normalizer, Spherizer: apply the fit saved in this table instead of
        fitting ``step`` (:func:`load_step`; it must hold the same class).
    report : str, optional
        FeatureSelector: the table listing the dropped features (default
        ``<dest>_dropped``; columns feature, operation, reason).
    progress : bool, default True
        Progress bars.

    Returns
    -------
    StepReport

    Raises
    ------
    InvalidInputError
        For a step of another kind, or an option that the step does not take.

    Examples
    --------
    >>> import polars as pl
    >>> from cellframe.profiles import Normalizer
    >>> from cellframe.store import Store
    >>> store = Store()
    >>> wells = pl.DataFrame({"Metadata_Plate": ["P1"] * 4, "Metadata_Control": ["negcon"] * 4,
    ...                       "f": [1.0, 2.0, 3.0, 4.0]})
    >>> _ = store.write("wells", wells, step="example")
    >>> run_step(store, Normalizer(), "wells", "wells_normalized", progress=False).rows
    4
    >>> [round(x, 3) for x in store.read("wells_normalized")["f"]]
    [-1.342, -0.447, 0.447, 1.342]
    """
    from cellframe.engine.base import resolve_engine
    from cellframe.pipeline.aggregate import Aggregation
    from cellframe.profiles.normalize import Normalizer
    from cellframe.profiles.select import FeatureSelector
    from cellframe.profiles.sphere import Spherizer

    fitted = ("save_fit", "fit_from")
    # Step class -> (runner, the run_step options it takes).
    runners: dict[type, tuple[Callable[..., StepReport], tuple[str, ...]]] = {
        Aggregation: (_aggregate, ()),
        Normalizer: (_normalize, fitted),
        FeatureSelector: (_select, ("report",)),
        Spherizer: (_sphere, fitted),
        QualityControl: (_qc, ()),
    }
    if type(step) not in runners:
        valid = ", ".join(t.__name__ for t in runners)
        raise InvalidInputError(
            f"run_step cannot run a {type(step).__name__} ({source!r} -> {dest!r}); "
            f"give one of: {valid}"
        )
    runner, takes = runners[type(step)]
    options = {"save_fit": save_fit, "fit_from": fit_from, "report": report}
    wrong = [k for k, v in options.items() if v is not None and k not in takes]
    if wrong:
        raise InvalidInputError(
            f"run_step: {type(step).__name__} takes no {', '.join(wrong)}= "
            f"(only {', '.join(takes) or 'no options'}); remove it"
        )
    kwargs = {k: options[k] for k in takes}
    return runner(store, step, source, dest, resolve_engine(engine), progress=progress, **kwargs)


def _aggregate(
    store: Store, spec: Any, source: str, dest: str, engine: Engine, *, progress: bool
) -> StepReport:
    from cellframe.pipeline.aggregate import aggregate_table

    t0 = time.perf_counter()
    what = f"{spec.level} ({spec.path})"
    if engine.name != "local":
        from cellframe.pipeline.plates import aggregate_plates

        report = aggregate_plates(
            store, source, dest, level=spec.level, path=spec.path, strata=spec.strata,
            method=spec.method, features=spec.features, engine=engine, progress=progress,
        )  # fmt: skip
        return _engine_step_report("aggregate", source, dest, report, t0, what)
    n = aggregate_table(store, source, dest, spec, engine=engine, progress=progress)  # type: ignore[arg-type]
    return StepReport("aggregate", source, dest, n, time.perf_counter() - t0, what)


def _normalize(
    store: Store,
    norm: Any,
    source: str,
    dest: str,
    engine: Engine,
    *,
    progress: bool,
    save_fit: str | None,
    fit_from: str | None,
) -> StepReport:
    from cellframe.columns import PLATE
    from cellframe.pipeline.fits import load_step, save_step
    from cellframe.profiles.normalize import Normalizer

    t0 = time.perf_counter()
    if fit_from:
        norm = load_step(store, fit_from, expect=Normalizer)
    if engine.name != "local":
        from cellframe.engine.base import Plates

        # With the default grouping (per plate) each plate is fitted on its own
        # rows, a pure per-plate function; a grouping that spans plates is
        # fitted once from every plate's merged statistics.
        fitted = bool(fit_from)
        per_plate = not fitted and list(norm.by) == [PLATE] and not save_fit
        plates = Plates(store, source)
        if not per_plate and not fitted:
            norm = engine.reduce(norm, plates, desc="normalization fit", progress=progress)
        if save_fit:
            save_step(store, norm, save_fit)
        report = engine.apply(
            norm, plates, dest, name="normalize", parameters=norm.parameters(),
            fit_each_plate=per_plate, progress=progress,
        )  # fmt: skip
        return _engine_step_report("normalize", source, dest, report, t0, norm._method_name())
    lf = store.scan(source)
    if not fit_from:
        norm = norm.fit(lf)
    if save_fit:
        save_step(store, norm, save_fit)
    params = {
        **norm.parameters(),
        "source": source,
        "fit_from": fit_from,
        "dropped_features": getattr(norm, "dropped_features_", []),
    }
    n = store.write(
        dest, norm.transform(lf), mode="replace", step="normalize", parameters=params, source=source
    )
    return StepReport("normalize", source, dest, n, time.perf_counter() - t0, norm._method_name())


def _select(
    store: Store,
    selector: Any,
    source: str,
    dest: str,
    engine: Engine,
    *,
    progress: bool,
    report: str | None,
) -> StepReport:
    t0 = time.perf_counter()
    operations = list(selector.operations)
    samples, features, params = selector.samples, selector.features, selector.params
    if engine.name != "local":
        from cellframe.pipeline.plates import apply_selection_plates, feature_select_plates

        result = feature_select_plates(
            store, source, operations, features=features, samples=samples, engine=engine,
            progress=progress, **params,
        )  # fmt: skip
    else:
        from cellframe.profiles.select import feature_select

        lf = store.scan(source)
        result = feature_select(lf, operations, features=features, samples=samples, **params)
    parameters = {
        "operations": operations,
        "samples": samples,
        **params,
        "source": source,
        "n_kept": len(result.kept),
        "dropped": result.dropped_features,
    }
    report = report or f"{dest}_dropped"
    note = f"kept {len(result.kept)}, dropped {result.dropped.height} (see {report})"
    if engine.name != "local":
        mapped = apply_selection_plates(
            store, source, dest, result, engine=engine, progress=progress,
            parameters={k: v for k, v in parameters.items() if k != "source"},
        )  # fmt: skip
    else:
        n = store.write(
            dest,
            result.apply(store.scan(source)),
            mode="replace",
            step="select",
            parameters=parameters,
            source=source,
        )
    store.write(
        report,
        result.dropped,
        mode="replace",
        step="select_report",
        parameters=parameters,
        source=source,
    )
    if engine.name != "local":
        return _engine_step_report("select", source, dest, mapped, t0, note)
    return StepReport("select", source, dest, n, time.perf_counter() - t0, note)


def _sphere(
    store: Store,
    sph: Any,
    source: str,
    dest: str,
    engine: Engine,
    *,
    progress: bool,
    save_fit: str | None,
    fit_from: str | None,
) -> StepReport:
    from cellframe.pipeline.fits import load_step, save_step
    from cellframe.profiles.sphere import Spherizer

    t0 = time.perf_counter()
    if fit_from:
        sph = load_step(store, fit_from, expect=Spherizer)
    if engine.name != "local":
        from cellframe.engine.base import Plates

        plates = Plates(store, source)
        if not fit_from:
            sph = engine.reduce(sph, plates, desc="sphering fit", progress=progress)
        if save_fit:
            save_step(store, sph, save_fit)
        report = engine.apply(
            sph, plates, dest, name="sphere", parameters=sph.parameters(), progress=progress
        )
        return _engine_step_report("sphere", source, dest, report, t0, repr(sph))
    lf = store.scan(source)
    if not fit_from:
        sph = sph.fit(lf)
    if save_fit:
        save_step(store, sph, save_fit)
    params = {
        **sph.parameters(),
        "source": source,
        "fit_from": fit_from,
        "n_controls": sph.n_controls_,
    }
    n = store.write(
        dest, sph.transform(lf), mode="replace", step="sphere", parameters=params, source=source
    )
    return StepReport("sphere", source, dest, n, time.perf_counter() - t0, repr(sph))


def _qc(
    store: Store, qc: QualityControl, source: str, dest: str, engine: Engine, *, progress: bool
) -> StepReport:
    from cellframe.profiles.qc import OUTLIER, flag_outlier_wells, image_qc

    t0 = time.perf_counter()
    groups = qc.groups()
    if engine.name != "local":
        from cellframe.pipeline.plates import flag_outlier_wells_plates, image_qc_plates
        from cellframe.store import quote_identifier

        if qc.kind == "wells":
            mapped = flag_outlier_wells_plates(
                store, source, dest, n_components=qc.n_components, z_threshold=qc.z_threshold,
                by=groups or None, engine=engine, progress=progress,
            )  # fmt: skip
        else:
            mapped = image_qc_plates(
                store, source, dest, focus_z=qc.focus_z,
                max_saturated_percent=qc.max_saturated_percent, by=groups or None,
                engine=engine, progress=progress,
            )  # fmt: skip
        flagged = store.sql(
            f"SELECT count(*) AS n FROM {quote_identifier(dest)} WHERE {quote_identifier(OUTLIER)}"
        )["n"][0]
        return _engine_step_report("qc", source, dest, mapped, t0, f"{int(flagged)} flagged")
    lf = store.scan(source)
    if qc.kind == "wells":
        out = flag_outlier_wells(
            lf, n_components=qc.n_components, z_threshold=qc.z_threshold, by=groups or None
        )
    else:
        out = image_qc(
            lf,
            focus_z=qc.focus_z,
            max_saturated_percent=qc.max_saturated_percent,
            by=groups or None,
        )
    params = {
        "kind": qc.kind,
        "n_components": qc.n_components,
        "z_threshold": qc.z_threshold,
        "focus_z": qc.focus_z,
        "max_saturated_percent": qc.max_saturated_percent,
        "by": list(groups),
    }
    n = store.write(dest, out, mode="replace", step="qc", parameters=params, source=source)
    return StepReport(
        "qc", source, dest, n, time.perf_counter() - t0, f"{int(out[OUTLIER].sum())} flagged"
    )


# ------------------------------------------------------- steps by name (config, CLI)
#: Keys of a step's parameters that choose its engine, not the step.
ENGINE_OPTIONS = ("engine", "address", "force", "workers", "chunk_rows")
#: Keys that are options of run_step, not of the step.
_RUN_OPTIONS = ("save_fit", "fit_from", "report")


def _build(name: str, params: dict[str, Any]) -> Any:
    """The step object of a named step from a config's (or the CLI's) parameters."""
    from cellframe.columns import PLATE

    if name == "aggregate":
        from cellframe.pipeline.aggregate import Aggregation

        return Aggregation(**params)
    if name == "normalize":
        from cellframe.profiles.normalize import Normalizer

        method = params.pop("method", "standardize")
        by = params.pop("by", None)
        return Normalizer(method, by=(PLATE,) if by is None else by, **params)
    if name == "select":
        from cellframe.profiles.select import FeatureSelector

        operations = params.pop("operations", ("variance_threshold",))
        return FeatureSelector(list(operations), **params)
    if name == "sphere":
        from cellframe.profiles.sphere import Spherizer

        return Spherizer(params.pop("method", "regularized"), **params)
    return QualityControl(**params)


def _run_named(
    name: str,
    store: Store,
    source: str,
    dest: str,
    *,
    progress: bool = True,
    **params: Any,
) -> StepReport:
    """Build the named step from ``params`` and :func:`run_step` it."""
    engine = make_engine(
        params.pop("engine", "local"),
        **{k: params.pop(k) for k in ENGINE_OPTIONS[1:] if k in params},
    )
    options = {k: params.pop(k) for k in _RUN_OPTIONS if k in params}
    step = _build(name, params)
    return run_step(store, step, source, dest, engine=engine, progress=progress, **options)


def run_strength(
    store: Store,
    source: str,
    dest: str,
    *,
    treatment: str | None = None,
    controls: str | None = "negcon",
    by: Sequence[str] | None = None,
    ddof: int = 0,
    k: int | None = None,
    progress: bool = True,
) -> StepReport:
    """Algorithm 1 on ``source``: treatment strengths to ``dest``, per-well z-scores to ``<dest>_wells``.

    Parameters
    ----------
    store : cellframe.store.Store
    source, dest : str
        The well profiles read, and the per-treatment table written (replaced).
    treatment : str, optional
        Treatment column (default ``Metadata_Treatment``).
    controls : str or None, default "negcon"
        The negative-control wells (see
        :func:`cellframe.profiles.treatment_strength`).
    by : sequence of str, optional
        Groups with their own controls (default: per plate).
    ddof : int, default 0
        Degrees of freedom of the control std.
    k : int, optional
        Keep only the ``k`` strongest treatments in ``dest`` (default: all).
    progress : bool, default True
        Accepted for a uniform step signature; the step shows no progress bar.

    Returns
    -------
    StepReport
        ``rows`` is the number of treatments written to ``dest``.

    Examples
    --------
    >>> import polars as pl
    >>> from cellframe.store import Store
    >>> store = Store()
    >>> _ = store.write("wells", pl.DataFrame({
    ...     "Metadata_Plate": ["P"] * 5,
    ...     "Metadata_Control": ["negcon", "negcon", "negcon", None, None],
    ...     "Metadata_Treatment": ["DMSO", "DMSO", "DMSO", "t1", "t2"],
    ...     "f1": [0.0, 1.0, -1.0, 0.5, 6.0], "f2": [1.0, 0.0, -1.0, 0.0, 8.0]}),
    ...     step="example")
    >>> run_strength(store, "wells", "wells_strength", k=1).note
    '2 treatments; per-well z in wells_strength_wells'
    >>> store.read("wells_strength").select("Metadata_Treatment", "rank").rows()
    [('t2', 1)]
    >>> store.read("wells_strength_wells").height
    5
    """
    from cellframe.columns import PLATE, TREATMENT
    from cellframe.profiles.strength import treatment_strength

    del progress
    t0 = time.perf_counter()
    result = treatment_strength(
        store.scan(source),
        treatment=treatment or TREATMENT,
        controls=controls,
        by=(PLATE,) if by is None else by,
        ddof=ddof,
    )
    params = {"treatment": treatment or TREATMENT, "controls": controls, "ddof": ddof, "k": k}
    table = result.treatments if k is None else result.treatments.head(k)
    n = store.write(dest, table, mode="replace", step="strength", parameters=params, source=source)
    store.write(
        f"{dest}_wells",
        result.wells,
        mode="replace",
        step="strength",
        parameters=params,
        source=source,
    )
    return StepReport(
        "strength",
        source,
        dest,
        n,
        time.perf_counter() - t0,
        f"{result.treatments.height} treatments; per-well z in {dest}_wells",
    )


def run_activity(
    store: Store,
    source: str,
    dest: str,
    *,
    treatment: str | None = None,
    controls: str = "negcon",
    control_column: str | None = None,
    same_plate: bool = False,
    features: Sequence[str] | None = None,
    null: NullSettings | None = None,
    progress: bool = True,
) -> StepReport:
    """Phenotypic activity of ``source`` with an honest null: ``dest`` and ``<dest>_per_query``.

    When ``source`` was made by steps fitted on the control wells (sphering,
    normalization), they are refitted by cross-fitting from the pre-correction
    table named in provenance (:func:`cellframe.pipeline.activity_from_store`),
    so the controls that form the null were not used to fit the correction.

    Parameters
    ----------
    store : cellframe.store.Store
    source, dest : str
        The profiles evaluated, and the per-treatment table written (the
        per-well APs go to ``<dest>_per_query``).
    treatment : str, optional
        Treatment column (default ``Metadata_Treatment``).
    controls : str, default "negcon"
        The value of ``control_column`` that marks negative controls.
    control_column : str, optional
        Default ``Metadata_Control``.
    same_plate : bool, default False
        Compare a well only with controls of its own plate.
    features : sequence of str, optional
        Feature columns (default: every feature column).
    null : NullSettings, optional
        Folds, seed, permutations, q threshold, whether to cross-fit.
    progress : bool, default True

    Returns
    -------
    StepReport
    """
    import polars as pl

    from cellframe.columns import CONTROL, TREATMENT
    from cellframe.pipeline.activity import NullSettings, activity_from_store

    t0 = time.perf_counter()
    settings = null if null is not None else NullSettings()
    treatment = treatment or TREATMENT
    column = control_column or CONTROL
    result = activity_from_store(
        store,
        source,
        treatment=treatment,
        controls=pl.col(column) == controls,
        same_plate=same_plate,
        features=features,
        null=settings,
        progress=progress,
    )
    params = {
        "treatment": treatment,
        "control_column": column,
        "controls": controls,
        "same_plate": same_plate,
        "n_folds": settings.n_folds,
        "seed": settings.seed,
        "null_size": settings.null_size,
        "threshold": settings.threshold,
        **result.provenance(),
    }
    n = store.write(
        dest, result.summary, mode="replace", step="activity", parameters=params, source=source
    )
    store.write(
        f"{dest}_per_query",
        result.per_query,
        mode="replace",
        step="activity",
        parameters=params,
        source=source,
    )
    n_active = int(result.summary["below_corrected_p"].sum())
    return StepReport(
        "activity",
        source,
        dest,
        n,
        time.perf_counter() - t0,
        f"{n_active} of {n} treatments active (q < {settings.threshold}); null {result.null}",
    )


def _run_activity_named(
    store: Store, source: str, dest: str, *, progress: bool = True, **params: Any
) -> StepReport:
    """:func:`run_activity` from a config's flat keys (``n_folds``, ``null_size``, ...)."""
    from cellframe.pipeline.activity import NullSettings

    null = NullSettings(**{k: params.pop(k) for k in _NULL_KEYS if k in params})
    return run_activity(store, source, dest, null=null, progress=progress, **params)


#: Config keys of an ``activity`` step that set its :class:`NullSettings`.
_NULL_KEYS = ("n_folds", "seed", "null_size", "threshold", "cross_fit")

#: Step runners by name (the ``run`` key of a config step and the CLI command).
STEPS: dict[str, Callable[..., StepReport]] = {
    "aggregate": functools.partial(_run_named, "aggregate"),
    "normalize": functools.partial(_run_named, "normalize"),
    "select": functools.partial(_run_named, "select"),
    "sphere": functools.partial(_run_named, "sphere"),
    "qc": functools.partial(_run_named, "qc"),
    "strength": run_strength,
    "activity": _run_activity_named,
}

#: Steps that run on an engine (``engine = "ray"`` at the top of a config).
_ENGINE_STEPS = ("aggregate", "normalize", "select", "sphere", "qc")

_SUFFIX = {
    "normalize": "_normalized",
    "select": "_selected",
    "sphere": "_sphered",
    "qc": "_qc",
    "strength": "_strength",
    "activity": "_activity",
}
_LEVEL_TABLE = {"image": "image_profiles", "well": "wells", "treatment": "treatments"}


def _default_output(step: str, source: str, params: Mapping[str, Any]) -> str:
    if step == "aggregate":
        return _LEVEL_TABLE.get(str(params.get("level", "well")), f"{source}_aggregated")
    return f"{source}{_SUFFIX[step]}"


def run_pipeline(
    store: Store, config: Mapping[str, Any] | str | Path, *, progress: bool = True
) -> list[StepReport]:
    """Run the steps of a config in order, each writing a store table.

    Parameters
    ----------
    store : cellframe.store.Store
    config : mapping or path
        A parsed config or a TOML file (see the module docstring).
    progress : bool, default True
        Progress bars over steps (and over plates inside aggregation).

    Returns
    -------
    list of StepReport

    Examples
    --------
    Cells of four wells (two of them negative controls) to normalized well profiles:

    >>> import polars as pl
    >>> from cellframe.store import Store
    >>> store = Store()
    >>> cells = pl.DataFrame({"Metadata_Plate": ["P1"] * 8,
    ...                       "Metadata_Well": ["A01", "A01", "A02", "A02",
    ...                                         "A03", "A03", "A04", "A04"],
    ...                       "Metadata_Control": ["negcon"] * 4 + [None] * 4,
    ...                       "f": [1.0, 3.0, 3.0, 5.0, 6.0, 8.0, 0.0, 2.0]})
    >>> _ = store.write("cells", cells, step="example")
    >>> config = {"input": "cells",
    ...           "step": [{"run": "aggregate", "output": "wells"},
    ...                    {"run": "normalize", "method": "standardize"}]}
    >>> for report in run_pipeline(store, config, progress=False):
    ...     print(report.step, report.input, "->", report.output, report.rows)
    aggregate cells -> wells 4
    normalize wells -> wells_normalized 4
    >>> store.read("wells_normalized").sort("Metadata_Well")["f"].to_list()  # (median - 3) / 1
    [-1.0, 1.0, 4.0, -2.0]
    """
    from cellframe.pipeline.config import load_config, validate_config

    if isinstance(config, Mapping):
        validate_config(config, "the pipeline config")
    else:
        config = load_config(config)
    steps = list(config.get("step", []))
    if not steps:
        raise InvalidInputError("the pipeline config has no [[step]] entries")
    current = config.get("input")
    reports = []
    for i, raw in enumerate(_progress(steps, desc="profile", unit="step", enabled=progress)):
        params = dict(raw)
        name = params.pop("run", None)
        if name not in STEPS:
            raise InvalidInputError(
                f"step {i + 1} of the config has run = {name!r}; valid: {', '.join(STEPS)}"
            )
        source = params.pop("input", current)
        if not source:
            raise InvalidInputError(f'step {i + 1} ({name}) has no input table; set input = "..."')
        dest = params.pop("output", None) or _default_output(name, source, params)
        if name in _ENGINE_STEPS:
            # A top-level engine = "ray" (and address) applies to every per-plate step.
            for key in ("engine", "address"):
                if key in config:
                    params.setdefault(key, config[key])
        try:
            reports.append(STEPS[name](store, source, dest, progress=progress, **params))
        except TypeError as exc:
            raise InvalidInputError(f"step {i + 1} ({name}): {exc}") from exc
        current = dest
    store.record_provenance(
        reports[-1].output,
        "profile",
        {"steps": json.loads(json.dumps(steps, default=str))},
        n_rows=reports[-1].rows,
    )
    return reports
