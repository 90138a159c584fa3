"""Profiling steps over the plates of a store, on any engine (Face layer).

This module composes pure steps (:mod:`cellframe.profiles`) with the store and
an engine (``LocalEngine``, ``RayEngine`` or their names; through
:func:`cellframe.engine.fit_plates`, :func:`~cellframe.engine.apply_plates`,
:func:`~cellframe.engine.map_plates`). No statistic is computed here: fitted
steps bring their own (``statistics``/``merge``/``from_statistics``).

* Aggregation, image QC and per-plate normalization are pure functions of one
  plate's rows: mapped over plates.
* Feature selection, sphering, a normalization whose groups span plates and
  the QC PCA are fitted from merged per-plate statistics, then applied plate by
  plate.
* A QC grouping that spans plates needs medians over several plates: the small
  per-plate results (scores, or the image-quality columns) are gathered and
  flagged on the driver.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import polars as pl

from cellframe.columns import LEVEL_KEYS, PLATE, is_metadata
from cellframe.engine.base import Engine, MapReport, resolve_engine
from cellframe.engine.fitted import apply_plates, fit_plates
from cellframe.engine.run import map_plates, reduce_plates
from cellframe.errors import InvalidInputError, MissingColumnsError
from cellframe.profiles._common import warn
from cellframe.profiles.qc import (
    OUTLIER,
    PCA,
    PCAResult,
    _flag_scores,
    _image_flags,
    image_quality_columns,
)
from cellframe.profiles.select import FeatureSelection, FeatureSelector

if TYPE_CHECKING:
    from cellframe.store import Store

__all__ = [
    "aggregate_plates",
    "apply_selection_plates",
    "feature_select_plates",
    "fit_pca_plates",
    "flag_outlier_wells_plates",
    "image_qc_plates",
    "pca_plates",
]


# --------------------------------------------------------------- aggregation
def _aggregate_one(frame: pl.DataFrame, **kwargs: Any) -> pl.DataFrame:
    from cellframe.profiles.aggregate import aggregate

    return aggregate(frame.lazy(), **kwargs).collect()


def aggregate_plates(
    store: Store,
    source: str,
    dest: str,
    *,
    level: str = "well",
    path: str = "direct",
    strata: Sequence[str] | None = None,
    method: str | None = None,
    features: Sequence[str] | None = None,
    engine: Engine | str = "local",
    progress: bool = True,
) -> MapReport:
    """Aggregate ``source`` into ``dest`` plate by plate on an engine.

    Parameters are those of :func:`cellframe.profiles.aggregate`; the output
    level's keys must include ``Metadata_Plate`` (treatment profiles span
    plates: aggregate the well table to treatments locally).

    Raises
    ------
    InvalidInputError
        If the output keys do not include ``Metadata_Plate``.
    """
    keys = list(strata) if strata is not None else list(LEVEL_KEYS.get(level, ()))
    if PLATE not in keys:
        raise InvalidInputError(
            f"per-plate aggregation needs {PLATE} among the output keys (level {level!r} has "
            f"{keys}); aggregate the well table to treatments with the local engine"
        )
    fn = functools.partial(
        _aggregate_one, level=level, path=path, strata=strata, method=method, features=features
    )
    params = {"level": level, "path": path, "strata": strata, "method": method}
    return map_plates(
        store, source, dest, fn, engine=engine,
        step="aggregate", parameters=params, progress=progress,
    )  # fmt: skip


# --------------------------------------------------------- feature selection
def feature_select_plates(
    store: Store,
    source: str,
    operation: Any = "variance_threshold",
    *,
    features: Sequence[str] | None = None,
    samples: Any = "all",
    engine: Engine | str = "local",
    progress: bool = True,
    **params: Any,
) -> FeatureSelection:
    """:class:`~cellframe.profiles.select.FeatureSelector` fitted over every plate of ``source``.

    Equals :func:`cellframe.profiles.feature_select` on the whole table (same
    kept features, same reasons). Parameters are checked before any plate is
    read.

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
    from cellframe.profiles._common import filter_columns, require_columns, resolve_features

    selector = FeatureSelector(operation, features=features, samples=samples, **params)
    schema = store.schema(source)
    where = f"table {source!r}"
    resolve_features(schema, features, where)
    require_columns(schema, filter_columns(samples), where, "check samples=")
    fit = fit_plates(
        store, source, selector, engine=engine, progress=progress,
        desc="selection statistics",
    )  # fmt: skip
    return fit.selection_


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
    engine: Engine | str = "local",
    progress: bool = True,
    parameters: Mapping[str, Any] | None = None,
) -> MapReport:
    """Write ``source`` without the features ``selection`` drops to ``dest``, plate by plate.

    Raises
    ------
    cellframe.partitions.PartitionVersionError
        On Ray without ``RayEngine(force=True)``, if a complete plate of ``dest`` was written
        by another cellframe version or with another feature selection.
    """
    dropped = selection.dropped_features
    engine = resolve_engine(engine)
    if engine.name != "local" and not getattr(engine, "force", False):
        _check_previous_selection(store, dest, dropped)
    step = FeatureSelector.from_selection(selection)
    params = {"n_kept": len(selection.kept), "dropped": dropped, **(parameters or {})}
    return apply_plates(
        store, source, dest, step, name="select", parameters=params, engine=engine,
        progress=progress,
    )  # fmt: skip


# ------------------------------------------------------------------------ QC
def fit_pca_plates(
    store: Store,
    source: str,
    n_components: int = 2,
    *,
    features: Sequence[str] | None = None,
    standardize: bool = False,
    engine: Engine | str = "local",
    progress: bool = True,
) -> PCA:
    """:class:`~cellframe.profiles.qc.PCA` fitted from every plate's merged moments.

    Equals :func:`cellframe.profiles.pca_profiles` on the whole table (to
    floating-point rounding).

    Raises
    ------
    InvalidInputError
        With fewer than 2 rows, no complete feature or ``n_components < 1``.
    """
    from cellframe.profiles._common import resolve_features

    feats = resolve_features(store.schema(source), features, f"table {source!r}")
    step = PCA(n_components, features=feats, standardize=standardize)
    return fit_plates(
        store, source, step, engine=engine, progress=progress,
        desc="PCA statistics",
    )  # fmt: skip


def _scores_one(frame: pl.DataFrame, *, pca: PCA) -> pl.DataFrame:
    return pca.scores(frame)


def _concat(parts: Iterable[pl.DataFrame]) -> pl.DataFrame:
    return pl.concat(list(parts), how="vertical_relaxed")


def pca_plates(
    store: Store,
    source: str,
    n_components: int = 2,
    *,
    features: Sequence[str] | None = None,
    standardize: bool = False,
    engine: Engine | str = "local",
    progress: bool = True,
) -> PCAResult:
    """:func:`cellframe.profiles.pca_profiles` of a whole table, fitted and scored plate by plate."""
    pca = fit_pca_plates(
        store, source, n_components, features=features, standardize=standardize,
        engine=engine, progress=progress,
    )  # fmt: skip
    scores = reduce_plates(
        store, source, functools.partial(_scores_one, pca=pca), _concat, engine=engine,
        progress=progress, desc="PCA scores",
    )  # fmt: skip
    return PCAResult(
        scores=scores,
        explained_variance_ratio=pca.explained_variance_ratio_,
        components=pca.components_,
        features=pca.features_,
    )


def _per_plate(by: Sequence[str] | None) -> bool:
    """True when the groups of ``by`` never span plates."""
    return bool(by) and PLATE in list(by or ())


def _flag_one(
    frame: pl.DataFrame, *, pca: PCA, z_threshold: float, by: Sequence[str] | None
) -> pl.DataFrame:
    return _flag_scores(pca.scores(frame), z_threshold=z_threshold, by=by)


def _count_flagged(store: Store, dest: str) -> tuple[int, int]:
    from cellframe.store import quote_identifier

    q = quote_identifier
    row = store.sql(
        f"SELECT count(*) FILTER (WHERE {q(OUTLIER)}) AS k, count(*) AS n FROM {q(dest)}"
    ).row(0)
    return int(row[0]), int(row[1])


def _write_on_driver(
    store: Store, source: str, dest: str, out: pl.DataFrame, *, engine: Engine,
    parameters: dict[str, Any],
) -> MapReport:  # fmt: skip
    rows = store.write(dest, out, mode="replace", step="qc", parameters=parameters, source=source)
    plates = out[PLATE].unique(maintain_order=True).to_list() if PLATE in out.columns else []
    return MapReport(table=dest, engine=engine.name, computed=plates, rows=rows)


def flag_outlier_wells_plates(
    store: Store,
    source: str,
    dest: str,
    *,
    n_components: int = 3,
    z_threshold: float = 3.5,
    by: Sequence[str] | None = (PLATE,),
    features: Sequence[str] | None = None,
    engine: Engine | str = "local",
    progress: bool = True,
) -> MapReport:
    """:func:`cellframe.profiles.flag_outlier_wells` of ``source`` into ``dest`` on an engine.

    The PCA is fitted over every plate (:func:`fit_pca_plates`); with ``by``
    holding ``Metadata_Plate`` (the default) scores and flags are computed
    plate by plate. Otherwise the scores are gathered and flagged on the
    driver, into a native table.

    Raises
    ------
    MissingColumnsError
        If a ``by`` column is not a metadata column of ``source``.
    """
    engine = resolve_engine(engine)
    schema = store.schema(source)
    missing = [c for c in (by or ()) if c not in schema or not is_metadata(c)]
    if missing:
        raise MissingColumnsError(f"table {source!r} (QC groups)", missing, "check by=")
    pca = fit_pca_plates(
        store, source, n_components, features=features, engine=engine,
        progress=progress,
    )  # fmt: skip
    params = {
        "kind": "wells",
        "n_components": n_components,
        "z_threshold": z_threshold,
        "by": list(by or []),
        "features": pca.features_,
    }
    if _per_plate(by):
        fn = functools.partial(_flag_one, pca=pca, z_threshold=z_threshold, by=by)
        report = map_plates(
            store, source, dest, fn, engine=engine, step="qc",
            parameters=params, progress=progress,
        )  # fmt: skip
    else:
        scores = reduce_plates(
            store, source, functools.partial(_scores_one, pca=pca), _concat, engine=engine,
            progress=progress, desc="PCA scores",
        )  # fmt: skip
        out = _flag_scores(scores, z_threshold=z_threshold, by=by)
        report = _write_on_driver(store, source, dest, out, engine=engine, parameters=params)
    n_out, n_total = _count_flagged(store, dest)
    if n_out:
        k = len(pca.components_)
        warn(f"{n_out} of {n_total} well(s) flagged as outliers on the first {k} PC(s)")
    return report


def _image_one(
    frame: pl.DataFrame, *, focus_z: float, max_saturated_percent: float, by: Sequence[str] | None
) -> pl.DataFrame:
    return _image_flags(frame, focus_z=focus_z, max_saturated_percent=max_saturated_percent, by=by)


def _image_columns(frame: pl.DataFrame, *, columns: Sequence[str]) -> pl.DataFrame:
    return frame.select(columns)


def image_qc_plates(
    store: Store,
    source: str,
    dest: str,
    *,
    focus_z: float = 4.0,
    max_saturated_percent: float = 1.0,
    by: Sequence[str] | None = (PLATE,),
    engine: Engine | str = "local",
    progress: bool = True,
) -> MapReport:
    """:func:`cellframe.profiles.image_qc` of ``source`` into ``dest`` on an engine.

    Per plate (the default ``by``): mapped over plates. With groups that span
    plates, the metadata and image-quality columns of every plate are gathered
    and flagged on the driver.

    Raises
    ------
    MissingColumnsError
        If ``source`` has no image-quality column.
    """
    engine = resolve_engine(engine)
    schema = store.schema(source)
    focus, satur = image_quality_columns(schema)
    params = {
        "kind": "images",
        "focus_z": focus_z,
        "max_saturated_percent": max_saturated_percent,
        "by": list(by or []),
    }
    if _per_plate(by):
        fn = functools.partial(
            _image_one, focus_z=focus_z, max_saturated_percent=max_saturated_percent, by=by
        )
        report = map_plates(
            store, source, dest, fn, engine=engine, step="qc",
            parameters=params, progress=progress,
        )  # fmt: skip
    else:
        columns = [c for c in schema if is_metadata(c)] + [c for c, _ in focus + satur]
        gathered = reduce_plates(
            store, source, functools.partial(_image_columns, columns=columns), _concat,
            engine=engine, progress=progress, desc="image QC columns",
        )  # fmt: skip
        out = _image_flags(
            gathered, focus_z=focus_z, max_saturated_percent=max_saturated_percent, by=by
        )
        report = _write_on_driver(store, source, dest, out, engine=engine, parameters=params)
    n_out, n_total = _count_flagged(store, dest)
    if n_out:
        warn(f"{n_out} of {n_total} image(s) flagged by image QC")
    return report
