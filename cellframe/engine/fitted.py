"""Fit and apply any fitted step over the plates of a table, on any engine.

A fitted step (:mod:`cellframe.profiles._fitted`) says what it needs from some
rows (``statistics``), how those merge (``S.merge``), how to fit from them
(``from_statistics``) and how to apply the fit (``transform``). An engine only
runs that contract plate by plate (:meth:`~cellframe.engine.base.Engine.reduce`,
:meth:`~cellframe.engine.base.Engine.apply`); these are their function forms.
No step logic lives here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cellframe.engine.base import Engine, MapReport, Plates, resolve_engine

if TYPE_CHECKING:
    from cellframe.store import Store

__all__ = ["apply_plates", "fit_plates"]


def fit_plates(
    store: Store,
    source: str,
    step: Any,
    *,
    engine: Engine | str = "local",
    progress: bool = True,
    desc: str | None = None,
) -> Any:
    """Fit ``step`` on every plate of ``source``: per-plate statistics, merged, then fitted.

    ``engine.reduce(step, Plates(store, source))``.

    Parameters
    ----------
    store, source
        The store and the table (native or partitioned).
    step : FittedStep
        Any object with ``statistics(frame)``, ``from_statistics(S)`` whose
        statistics have ``merge``.
    engine : LocalEngine, RayEngine, "local" or "ray"
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

    Examples
    --------
    One normalizer over both plates (``by=()``), fitted from per-plate statistics:

    >>> import polars as pl
    >>> from cellframe.profiles import Normalizer
    >>> from cellframe.store import Store
    >>> store = Store()
    >>> _ = store.write("wells", pl.DataFrame({"Metadata_Plate": ["P1", "P1", "P2", "P2"],
    ...                                        "Metadata_Control": ["negcon"] * 4,
    ...                                        "f": [1.0, 3.0, 5.0, 7.0]}), step="example")
    >>> norm = fit_plates(store, "wells", Normalizer(by=()), progress=False)
    >>> norm.stats_.rows()  # (n controls, mean, population std) of f over all four wells
    [(4, 4.0, 2.23606797749979)]
    """
    return resolve_engine(engine).reduce(step, Plates(store, source), desc=desc, progress=progress)


def apply_plates(
    store: Store,
    source: str,
    dest: str,
    step: Any,
    *,
    name: str,
    parameters: Mapping[str, Any] | None = None,
    fit_each_plate: bool = False,
    engine: Engine | str = "local",
    progress: bool = True,
) -> MapReport:
    """Write ``step.transform`` of every plate of ``source`` to ``dest``.

    ``engine.apply(step, Plates(store, source), dest, ...)``.

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
    engine, progress
        As in :func:`cellframe.engine.map_plates`.

    Returns
    -------
    MapReport

    Examples
    --------
    >>> import polars as pl
    >>> from cellframe.profiles import Normalizer
    >>> from cellframe.store import Store
    >>> store = Store()
    >>> _ = store.write("wells", pl.DataFrame({"Metadata_Plate": ["P1", "P1", "P2", "P2"],
    ...                                        "Metadata_Control": ["negcon"] * 4,
    ...                                        "f": [1.0, 3.0, 5.0, 7.0]}), step="example")
    >>> apply_plates(store, "wells", "wells_normalized", Normalizer(), name="normalize",
    ...              fit_each_plate=True, progress=False)
    MapReport(table='wells_normalized', engine='local', computed=['P1', 'P2'], skipped=[], rows=4)
    >>> store.read("wells_normalized").sort("Metadata_Plate", "f")["f"].to_list()
    [-1.0, 1.0, -1.0, 1.0]
    """
    return resolve_engine(engine).apply(
        step, Plates(store, source), dest, name=name, parameters=parameters,
        fit_each_plate=fit_each_plate, progress=progress,
    )  # fmt: skip
