"""Shared types of the execution engines: what they run on, what they report, what they are.

An engine is an object (:class:`~cellframe.engine.LocalEngine`,
:class:`~cellframe.engine.RayEngine`) with the same four methods:

* ``map(fn, plates, dest)``: a pure per-plate function over the plates of a
  table, each plate's output written to ``dest``;
* ``gather(fn, plates, combine)``: per-plate results combined on the driver,
  in plate order;
* ``reduce(step, plates)``: a fitted step fitted on every plate, from its
  per-plate statistics merged in plate order (``statistics`` / ``merge`` /
  ``from_statistics``, :mod:`cellframe.profiles._fitted`);
* ``apply(step, plates, dest)``: ``step.transform`` of every plate into ``dest``;
* ``gather_tasks(fn, tasks, combine)``: like ``gather``, over task descriptions
  of work outside the store (one plate's image files, say) instead of a table.

No step logic lives in an engine. This module imports only the standard
library at the top (the command line reads :data:`ENGINES` from it).
"""

from __future__ import annotations

import copy
import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from cellframe.errors import CellframeError, EmptyInputError, InvalidInputError

if TYPE_CHECKING:
    import polars as pl

    from cellframe.store import Store

__all__ = ["ENGINES", "Engine", "EngineUnavailableError", "MapReport", "Plates", "resolve_engine"]

#: Engine names accepted by ``--engine`` and ``engine=``.
ENGINES = ("local", "ray")


class EngineUnavailableError(CellframeError, RuntimeError):
    """The requested engine cannot run (Ray missing, cluster unreachable)."""


@dataclass
class MapReport:
    """What a per-plate map wrote.

    Attributes
    ----------
    table : str
        Destination table.
    engine : str
        ``"local"`` or ``"ray"``.
    computed : list of str
        Plates computed by this run.
    skipped : list of str
        Plates already complete and left as they were (resume).
    rows : int
        Rows written by this run.
    """

    table: str
    engine: str
    computed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    rows: int = 0


@dataclass(frozen=True)
class Plates:
    """The plates of one store table that an engine works on.

    Parameters
    ----------
    store : cellframe.store.Store
        The store holding ``table``.
    table : str
        A native or partitioned (per-plate Parquet) table.
    only : sequence of str, optional
        These plates only (default: every plate of ``table``).

    Examples
    --------
    >>> import polars as pl
    >>> from cellframe.store import Store
    >>> store = Store()
    >>> _ = store.write("wells", pl.DataFrame({"Metadata_Plate": ["P2", "P1"], "f": [1.0, 2.0]}),
    ...                 step="example")
    >>> Plates(store, "wells").names()
    ['P1', 'P2']
    """

    store: Store
    table: str
    only: Sequence[str] | None = None

    def names(self) -> list[str]:
        """The plate names, in the store's (sorted) order or as given in ``only``."""
        return list(self.only) if self.only is not None else self.store.plates(self.table)


def _merge(parts: Iterable[Any]) -> Any:
    total = None
    for part in parts:
        total = part if total is None else total.merge(part)
    return total


def _apply_one(frame: pl.DataFrame, *, step: Any, fit_each_plate: bool) -> pl.DataFrame:
    import polars as pl

    if fit_each_plate:
        step = copy.deepcopy(step)
        step = step.from_statistics(step.statistics(frame))
    out = step.transform(frame)
    return out.collect() if isinstance(out, pl.LazyFrame) else out


class Engine(ABC):
    """What every engine does: map, gather, reduce and apply over the plates of a table.

    Subclasses implement :meth:`map` and :meth:`gather`; :meth:`reduce` and
    :meth:`apply` run the fitted-step contract through them, so a step is
    written once for every engine.
    """

    #: The engine's name (``"local"``, ``"ray"``), recorded in reports.
    name: ClassVar[str]

    @abstractmethod
    def map(
        self,
        fn: Callable[[pl.DataFrame], Any],
        plates: Plates,
        dest: str,
        *,
        step: str = "map",
        parameters: Mapping[str, Any] | None = None,
        progress: bool = True,
    ) -> MapReport:
        """Apply a pure per-plate function to every plate and write the results to ``dest``.

        Parameters
        ----------
        fn : callable
            ``fn(plate_rows: pl.DataFrame) -> DataFrame | LazyFrame | iterator of batches``;
            depends on nothing but its input (it may run in another process).
        plates : Plates
            The table (and plates) to read.
        dest : str
            Output table, in the same store.
        step, parameters
            Provenance of the output.
        progress : bool, default True
            A progress bar over plates.

        Returns
        -------
        MapReport
        """

    @abstractmethod
    def gather(
        self,
        fn: Callable[[pl.DataFrame], Any],
        plates: Plates,
        combine: Callable[[Iterable[Any]], Any],
        *,
        desc: str = "statistics",
        progress: bool = True,
    ) -> Any:
        """Compute ``fn`` of every plate and ``combine`` the results on the driver, in plate order.

        Parameters
        ----------
        fn : callable
            ``fn(plate_rows) -> result`` (picklable).
        plates : Plates
        combine : callable
            ``combine(iterable of results) -> value``; gets the results one
            plate at a time, so a streaming combine holds one at a time.
        desc : str
            Progress-bar label.
        progress : bool, default True

        Returns
        -------
        Whatever ``combine`` returns.
        """

    def gather_tasks(
        self,
        fn: Callable[[Any], Any],
        tasks: Sequence[Any],
        combine: Callable[[Iterable[Any]], Any],
        *,
        desc: str = "tasks",
        progress: bool = True,
    ) -> Any:
        """``combine`` of ``fn(task)`` for each task, in task order: work that is not a table's rows.

        A task describes one plate's work on inputs outside the store (a
        plate's image files, say); ``fn`` reads them itself. This default runs
        the tasks one at a time in this process; :class:`~cellframe.engine.RayEngine`
        runs each as a Ray task. Either way ``combine`` receives the results in
        the order of ``tasks``, so results merged from them do not depend on
        the engine. A task's error propagates with its own class.

        Parameters
        ----------
        fn : callable
            ``fn(task) -> result``; picklable, depending on nothing but ``task``
            (and files it names).
        tasks : sequence
            Picklable task descriptions, one per plate.
        combine : callable
            ``combine(iterable of results) -> value``, e.g. ``list``.
        desc : str
            Progress-bar label.
        progress : bool, default True

        Returns
        -------
        Whatever ``combine`` returns.

        Examples
        --------
        >>> from cellframe.engine import LocalEngine
        >>> LocalEngine().gather_tasks(len, [[1, 2], [3]], list, progress=False)
        [2, 1]
        """
        from cellframe._progress import progress as progress_bar

        items = progress_bar(list(tasks), desc=desc, unit="plate", enabled=progress)
        return combine(fn(task) for task in items)

    def reduce(
        self, step: Any, plates: Plates, *, desc: str | None = None, progress: bool = True
    ) -> Any:
        """Fit ``step`` on every plate: per-plate ``statistics``, merged in plate order, fitted.

        Parameters
        ----------
        step : FittedStep
            Any object with ``statistics(frame)`` and ``from_statistics(S)``
            whose statistics have ``merge`` (:mod:`cellframe.profiles._fitted`).
        plates : Plates
        desc : str, optional
            Progress-bar label (default: the step's class name).
        progress : bool, default True

        Returns
        -------
        FittedStep
            ``step.from_statistics`` of the merged statistics.

        Raises
        ------
        EmptyInputError
            If the table has no plate.
        """
        label = desc or f"{type(step).__name__} fit"
        stats = self.gather(step.statistics, plates, _merge, desc=label, progress=progress)
        if stats is None:
            raise EmptyInputError(f"table {plates.table!r} has no plates to fit {step!r} on")
        return step.from_statistics(stats)

    def apply(
        self,
        step: Any,
        plates: Plates,
        dest: str,
        *,
        name: str,
        parameters: Mapping[str, Any] | None = None,
        fit_each_plate: bool = False,
        progress: bool = True,
    ) -> MapReport:
        """Write ``step.transform`` of every plate to ``dest``.

        Parameters
        ----------
        step : FittedStep
            A fitted step, or (``fit_each_plate``) an unfitted one.
        plates : Plates
        dest : str
        name : str
            Step name recorded in provenance (``"normalize"``, ``"sphere"``, ...).
        parameters : mapping, optional
            Recorded in provenance (and in each partition's marker on Ray).
        fit_each_plate : bool, default False
            Fit a copy of ``step`` on each plate's own rows first (a step whose
            groups never span plates, e.g. per-plate normalization).
        progress : bool, default True

        Returns
        -------
        MapReport
        """
        fn = functools.partial(_apply_one, step=step, fit_each_plate=fit_each_plate)
        return self.map(
            fn, plates, dest, step=name, parameters=dict(parameters or {}), progress=progress
        )


def resolve_engine(engine: Engine | str | None) -> Engine:
    """An engine object from an engine or its name.

    Parameters
    ----------
    engine : Engine, {"local", "ray"} or None
        ``None`` and ``"local"`` give ``LocalEngine()``; ``"ray"`` gives
        ``RayEngine()`` (a local Ray instance, or the cluster Ray is already
        connected to).

    Returns
    -------
    Engine

    Raises
    ------
    InvalidInputError
        For another name or object.

    Examples
    --------
    >>> resolve_engine("local")
    LocalEngine(workers=None, memory_budget=4294967296, chunk_rows=None)
    """
    if isinstance(engine, Engine):
        return engine
    if engine is None or engine == "local":
        from cellframe.engine.local import LocalEngine

        return LocalEngine()
    if engine == "ray":
        from cellframe.engine.ray import RayEngine

        return RayEngine()
    raise InvalidInputError(
        f"unknown engine {engine!r}; valid engines: {', '.join(ENGINES)} "
        "(or a LocalEngine / RayEngine object)"
    )
