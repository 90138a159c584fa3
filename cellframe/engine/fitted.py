"""Fit and apply any fitted step over the plates of a table, locally or on Ray.

A fitted step (:mod:`cellframe.profiles._fitted`) says what it needs from some
rows (``statistics``), how those merge (``S.merge``), how to fit from them
(``from_statistics``) and how to apply the fit (``transform``). The engine
only runs that contract plate by plate: :func:`fit_plates` maps
``step.statistics`` over plates and merges the results in plate order on the
driver; :func:`apply_plates` maps ``step.transform`` over plates into a
destination table. No step logic lives here.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import polars as pl

from cellframe.engine.base import MapReport
from cellframe.engine.run import map_plates, reduce_plates
from cellframe.errors import EmptyInputError

if TYPE_CHECKING:
    from cellframe.store import Store

__all__ = ["apply_plates", "fit_plates"]


def _merge(parts: Iterable[Any]) -> Any:
    total = None
    for part in parts:
        total = part if total is None else total.merge(part)
    return total


def fit_plates(
    store: Store,
    source: str,
    step: Any,
    *,
    engine: str = "local",
    address: str | None = None,
    progress: bool = True,
    desc: str | None = None,
) -> Any:
    """Fit ``step`` on every plate of ``source``: per-plate statistics, merged, then fitted.

    Parameters
    ----------
    store, source
        The store and the table (native or partitioned).
    step : FittedStep
        Any object with ``statistics(frame)``, ``from_statistics(S)`` whose
        statistics have ``merge``.
    engine : {"local", "ray"}
    address : str, optional
        Ray cluster address.
    progress : bool, default True
    desc : str, optional
        Progress-bar label (default: the step's class name).

    Returns
    -------
    FittedStep
        ``step``, fitted (``step.from_statistics``'s return value).

    Raises
    ------
    EmptyInputError
        If ``source`` has no plate.
    """
    label = desc or f"{type(step).__name__} fit"
    stats = reduce_plates(
        store, source, step.statistics, _merge, engine=engine, address=address, progress=progress,
        desc=label,
    )  # fmt: skip
    if stats is None:
        raise EmptyInputError(f"table {source!r} has no plates to fit {step!r} on")
    return step.from_statistics(stats)


def _apply_one(frame: pl.DataFrame, *, step: Any, fit_each_plate: bool) -> pl.DataFrame:
    if fit_each_plate:
        step = copy.deepcopy(step)
        step = step.from_statistics(step.statistics(frame))
    out = step.transform(frame)
    return out.collect() if isinstance(out, pl.LazyFrame) else out


def apply_plates(
    store: Store,
    source: str,
    dest: str,
    step: Any,
    *,
    name: str,
    parameters: Mapping[str, Any] | None = None,
    fit_each_plate: bool = False,
    engine: str = "local",
    address: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> MapReport:
    """Write ``step.transform`` of every plate of ``source`` to ``dest``.

    Parameters
    ----------
    store, source, dest
        The store, the table read and the table written.
    step : FittedStep
        A fitted step, or (``fit_each_plate``) an unfitted one.
    name : str
        Step name recorded in provenance (``"normalize"``, ``"sphere"``, ...).
    parameters : mapping, optional
        Recorded in provenance and in each partition's marker.
    fit_each_plate : bool, default False
        Fit a copy of ``step`` on each plate's own rows first (a step whose
        groups never span plates, e.g. per-plate normalization).
    engine, address, force, progress
        As in :func:`cellframe.engine.map_plates`.

    Returns
    -------
    MapReport
    """
    fn = functools.partial(_apply_one, step=step, fit_each_plate=fit_each_plate)
    return map_plates(
        store, source, dest, fn, engine=engine, address=address, force=force, step=name,
        parameters=dict(parameters or {}), progress=progress,
    )  # fmt: skip
