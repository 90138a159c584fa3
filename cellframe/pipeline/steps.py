"""Profiling steps over store tables, and a whole chain from a TOML config.

Each ``run_<step>`` reads one store table, applies the pure transform of its
module and writes the result to another table with provenance (step name and
parameters). :func:`run_pipeline` chains them from a config such as::

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
on Ray (see :mod:`cellframe.engine`). Each step reads the previous step's output unless it names ``input``; its
output defaults to the input name plus a suffix (``_normalized``,
``_selected``, ``_sphered``, ``_qc``, ``_strength``, ``_activity``; ``wells`` /
``images`` / ``treatments`` for aggregation).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cellframe._progress import progress as _progress
from cellframe.errors import InvalidChoiceError, InvalidInputError

if TYPE_CHECKING:
    from cellframe.store import Store

__all__ = [
    "STEPS",
    "StepReport",
    "run_activity",
    "run_aggregate",
    "run_normalize",
    "run_pipeline",
    "run_qc",
    "run_select",
    "run_sphere",
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


def run_aggregate(
    store: Store,
    source: str,
    dest: str,
    *,
    level: str = "well",
    path: str = "direct",
    strata: Sequence[str] | None = None,
    method: str | None = None,
    features: Sequence[str] | None = None,
    chunk_rows: int | None = None,
    workers: int | None = None,
    engine: str = "local",
    address: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> StepReport:
    """Aggregate ``source`` into ``dest`` plate by plate (see :func:`aggregate_table`).

    ``engine="ray"`` maps the aggregation over plates on a Ray cluster at
    ``address`` (see :mod:`cellframe.engine`); ``force`` recomputes plates a
    previous Ray run completed.
    """
    from cellframe.pipeline.aggregate import aggregate_table

    t0 = time.perf_counter()
    if engine != "local":
        from cellframe.pipeline.plates import aggregate_plates

        report = aggregate_plates(
            store, source, dest, level=level, path=path, strata=strata, method=method,
            features=features, engine=engine, address=address, force=force, progress=progress,
        )  # fmt: skip
        return _engine_step_report("aggregate", source, dest, report, t0, f"{level} ({path})")
    n = aggregate_table(
        store,
        source,
        dest,
        level,  # type: ignore[arg-type]
        path=path,
        strata=strata,
        method=method,
        features=features,  # type: ignore[arg-type]
        chunk_rows=chunk_rows,
        workers=workers,
        progress=progress,
    )
    return StepReport("aggregate", source, dest, n, time.perf_counter() - t0, f"{level} ({path})")


def run_normalize(
    store: Store,
    source: str,
    dest: str,
    *,
    method: str = "standardize",
    by: Sequence[str] | None = None,
    controls: str | None = "negcon",
    features: Sequence[str] | None = None,
    zero_spread: str = "center",
    epsilon: float = 1e-18,
    missing_controls: str = "error",
    save_fit: str | None = None,
    fit_from: str | None = None,
    engine: str = "local",
    address: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> StepReport:
    """Normalize ``source`` into ``dest``; optionally save the fit or apply a saved one.

    ``engine="ray"`` normalizes plate by plate on Ray; a grouping that spans
    plates is fitted once on every plate's controls (exact), then applied.
    """
    from cellframe.columns import PLATE
    from cellframe.pipeline.fits import load_step, save_step
    from cellframe.profiles.normalize import Normalizer

    t0 = time.perf_counter()
    if fit_from:
        norm = load_step(store, fit_from, expect=Normalizer)
    else:
        norm = Normalizer(
            method,
            by=(PLATE,) if by is None else by,
            controls=controls,
            features=features,
            zero_spread=zero_spread,  # type: ignore[arg-type]
            epsilon=epsilon,
            missing_controls=missing_controls,  # type: ignore[arg-type]
        )
    if engine != "local":
        from cellframe.engine.fitted import apply_plates, fit_plates

        # With the default grouping (per plate) each plate is fitted on its own
        # rows, a pure per-plate function; a grouping that spans plates is
        # fitted once from every plate's merged statistics.
        fitted = bool(fit_from)
        per_plate = not fitted and list(norm.by) == [PLATE] and not save_fit
        if not per_plate and not fitted:
            norm = fit_plates(
                store, source, norm, engine=engine, address=address, progress=progress,
                desc="normalization fit",
            )  # fmt: skip
        if save_fit:
            save_step(store, norm, save_fit)
        report = apply_plates(
            store, source, dest, norm, name="normalize", parameters=norm.parameters(),
            fit_each_plate=per_plate, engine=engine, address=address, force=force,
            progress=progress,
        )  # fmt: skip
        return _engine_step_report("normalize", source, dest, report, t0, norm._method_name())
    del progress
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


def run_select(
    store: Store,
    source: str,
    dest: str,
    *,
    operations: Sequence[str] = ("variance_threshold",),
    samples: str | None = "all",
    features: Sequence[str] | None = None,
    report: str | None = None,
    engine: str = "local",
    address: str | None = None,
    force: bool = False,
    progress: bool = True,
    **params: Any,
) -> StepReport:
    """Select features of ``source`` into ``dest``; the dropped features go to ``report``.

    ``report`` defaults to ``<dest>_dropped`` (columns feature, operation, reason).
    ``engine="ray"`` computes the selection as map-reduce over exact per-plate
    statistics (the same result as the local engine) and writes ``dest`` plate
    by plate as Parquet partitions; ``force`` recomputes plates a previous Ray
    run completed.
    """
    t0 = time.perf_counter()
    if engine != "local":
        from cellframe.pipeline.plates import apply_selection_plates, feature_select_plates

        result = feature_select_plates(
            store, source, list(operations), features=features, samples=samples, engine=engine,
            address=address, progress=progress, **params,
        )  # fmt: skip
    else:
        from cellframe.profiles.select import feature_select

        lf = store.scan(source)
        result = feature_select(lf, list(operations), features=features, samples=samples, **params)
    parameters = {
        "operations": list(operations),
        "samples": samples,
        **params,
        "source": source,
        "n_kept": len(result.kept),
        "dropped": result.dropped_features,
    }
    report = report or f"{dest}_dropped"
    note = f"kept {len(result.kept)}, dropped {result.dropped.height} (see {report})"
    if engine != "local":
        mapped = apply_selection_plates(
            store, source, dest, result, engine=engine, address=address, force=force,
            progress=progress, parameters={k: v for k, v in parameters.items() if k != "source"},
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
    if engine != "local":
        return _engine_step_report("select", source, dest, mapped, t0, note)
    return StepReport("select", source, dest, n, time.perf_counter() - t0, note)


def run_sphere(
    store: Store,
    source: str,
    dest: str,
    *,
    method: str = "regularized",
    lam: float = 1e-2,
    epsilon: float = 1e-6,
    center: bool = True,
    controls: str | None = "negcon",
    features: Sequence[str] | None = None,
    save_fit: str | None = None,
    fit_from: str | None = None,
    engine: str = "local",
    address: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> StepReport:
    """Sphere ``source`` into ``dest``; optionally save the fit or apply a saved one.

    ``engine="ray"`` fits from per-plate sufficient statistics (exact) and
    applies the transform plate by plate on Ray.
    """
    from cellframe.pipeline.fits import load_step, save_step
    from cellframe.profiles.sphere import Spherizer

    t0 = time.perf_counter()
    if fit_from:
        sph = load_step(store, fit_from, expect=Spherizer)
    else:
        sph = Spherizer(
            method, lam=lam, epsilon=epsilon, center=center, controls=controls, features=features
        )
    if engine != "local":
        from cellframe.engine.fitted import apply_plates, fit_plates

        if not fit_from:
            sph = fit_plates(
                store, source, sph, engine=engine, address=address, progress=progress,
                desc="sphering fit",
            )  # fmt: skip
        if save_fit:
            save_step(store, sph, save_fit)
        report = apply_plates(
            store, source, dest, sph, name="sphere", parameters=sph.parameters(), engine=engine,
            address=address, force=force, progress=progress,
        )  # fmt: skip
        return _engine_step_report("sphere", source, dest, report, t0, repr(sph))
    del progress
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


def run_qc(
    store: Store,
    source: str,
    dest: str,
    *,
    kind: str = "wells",
    n_components: int = 3,
    z_threshold: float = 3.5,
    focus_z: float = 4.0,
    max_saturated_percent: float = 1.0,
    by: Sequence[str] | None = None,
    engine: str = "local",
    address: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> StepReport:
    """QC of ``source`` (``kind="wells"``: PCA outliers; ``"images"``: image quality) into ``dest``.

    ``engine="ray"`` fits the PCA from exact per-plate moments and flags plate
    by plate on Ray (image QC: plate by plate); ``force`` recomputes plates a
    previous Ray run completed.
    """
    from cellframe.columns import PLATE
    from cellframe.profiles.qc import OUTLIER, flag_outlier_wells, image_qc

    t0 = time.perf_counter()
    if kind not in ("wells", "images"):
        raise InvalidChoiceError(
            f"unknown QC kind {kind!r} (run_qc kind=); valid: 'wells', 'images' "
            "(PCA outlier wells, or image quality)"
        )
    groups = (PLATE,) if by is None else tuple(by)
    if engine != "local":
        from cellframe.pipeline.plates import flag_outlier_wells_plates, image_qc_plates
        from cellframe.store import quote_identifier

        if kind == "wells":
            mapped = flag_outlier_wells_plates(
                store, source, dest, n_components=n_components, z_threshold=z_threshold,
                by=groups or None, engine=engine, address=address, force=force, progress=progress,
            )  # fmt: skip
        else:
            mapped = image_qc_plates(
                store, source, dest, focus_z=focus_z, max_saturated_percent=max_saturated_percent,
                by=groups or None, engine=engine, address=address, force=force, progress=progress,
            )  # fmt: skip
        flagged = store.sql(
            f"SELECT count(*) AS n FROM {quote_identifier(dest)} WHERE {quote_identifier(OUTLIER)}"
        )["n"][0]
        return _engine_step_report("qc", source, dest, mapped, t0, f"{int(flagged)} flagged")
    del progress
    lf = store.scan(source)
    if kind == "wells":
        out = flag_outlier_wells(
            lf, n_components=n_components, z_threshold=z_threshold, by=groups or None
        )
    else:
        out = image_qc(
            lf, focus_z=focus_z, max_saturated_percent=max_saturated_percent, by=groups or None
        )
    params = {
        "kind": kind,
        "n_components": n_components,
        "z_threshold": z_threshold,
        "focus_z": focus_z,
        "max_saturated_percent": max_saturated_percent,
        "by": list(groups),
    }
    n = store.write(dest, out, mode="replace", step="qc", parameters=params, source=source)
    return StepReport(
        "qc", source, dest, n, time.perf_counter() - t0, f"{int(out[OUTLIER].sum())} flagged"
    )


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
    """Algorithm 1 on ``source``: treatment strengths to ``dest``, per-well z-scores to ``<dest>_wells``."""
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
    n_folds: int = 2,
    seed: int = 0,
    null_size: int = 10000,
    threshold: float = 0.05,
    cross_fit: bool = True,
    progress: bool = True,
) -> StepReport:
    """Phenotypic activity of ``source`` with an honest null: ``dest`` and ``<dest>_per_query``.

    When ``source`` was made by steps fitted on the control wells (sphering,
    normalization), they are refitted by cross-fitting from the pre-correction
    table named in provenance (:func:`cellframe.pipeline.activity_from_store`),
    so the controls that form the null were not used to fit the correction.
    ``controls`` is the value of ``control_column`` (default ``Metadata_Control``)
    that marks negative controls.
    """
    import polars as pl

    from cellframe.columns import CONTROL, TREATMENT
    from cellframe.pipeline.activity import activity_from_store

    t0 = time.perf_counter()
    treatment = treatment or TREATMENT
    column = control_column or CONTROL
    result = activity_from_store(
        store,
        source,
        treatment=treatment,
        controls=pl.col(column) == controls,
        same_plate=same_plate,
        features=features,
        n_folds=n_folds,
        seed=seed,
        null_size=null_size,
        threshold=threshold,
        cross_fit=cross_fit,
        progress=progress,
    )
    params = {
        "treatment": treatment,
        "control_column": column,
        "controls": controls,
        "same_plate": same_plate,
        "n_folds": n_folds,
        "seed": seed,
        "null_size": null_size,
        "threshold": threshold,
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
        f"{n_active} of {n} treatments active (q < {threshold}); null {result.null}",
    )


#: Step runners by name (the ``run`` key of a config step and the CLI command).
STEPS: dict[str, Callable[..., StepReport]] = {
    "aggregate": run_aggregate,
    "normalize": run_normalize,
    "select": run_select,
    "sphere": run_sphere,
    "qc": run_qc,
    "strength": run_strength,
    "activity": run_activity,
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
