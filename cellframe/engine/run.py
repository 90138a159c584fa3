"""Map a pure per-plate function over plates, locally or on Ray: the plumbing and the functions.

:func:`map_plates` and :func:`reduce_plates` are the function form of an
engine's ``map`` and ``gather`` (:class:`~cellframe.engine.LocalEngine`,
:class:`~cellframe.engine.RayEngine`); the helpers here (connecting to Ray,
the bounded task window, reading one plate) are shared by both engines and by
the per-source ingest.
"""

from __future__ import annotations

import socket
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import polars as pl

from cellframe._arrow import WriteInput
from cellframe.columns import PLATE
from cellframe.engine.base import (
    Engine,
    EngineUnavailableError,
    MapReport,
    Plates,
    resolve_engine,
)
from cellframe.partitions import (
    DATA_GLOB,
    glob_escape,
    partition_dir,
    write_plate_partition,
)

if TYPE_CHECKING:
    from cellframe.store import Store

__all__ = ["connect_ray", "map_plates", "reduce_plates"]

T = TypeVar("T")
PlateFunction = Callable[[pl.DataFrame], WriteInput]

#: How many times Ray re-runs a plate whose worker died (DOMAIN of issue 8: a
#: killed worker is retried and leaves no partial partition).
MAX_RETRIES = 3


def _reachable(address: str, timeout: float = 5.0) -> None:
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise EngineUnavailableError(
            f"Ray address {address!r} is not of the form HOST:PORT, ray://HOST:PORT or 'auto'"
        )
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise EngineUnavailableError(
            f"cannot reach a Ray cluster at {address} ({exc}); start one with "
            "'ray start --head' on the head node, check the address and firewall, "
            "or use --engine local"
        ) from exc


def connect_ray(address: str | None = None, *, num_cpus: int | None = None) -> Any:
    """Connect to (or start) Ray and return the ``ray`` module.

    Parameters
    ----------
    address : str, optional
        ``None`` or ``"local"`` starts a local instance (reusing one already
        running in this process); ``"auto"``, ``HOST:PORT`` or
        ``ray://HOST:PORT`` joins a cluster.
    num_cpus : int, optional
        CPUs of a local instance (default: all).

    Raises
    ------
    EngineUnavailableError
        If Ray is not installed or the cluster cannot be reached (checked with a
        5-second TCP connection first, since ``ray.init`` waits minutes on an
        unreachable address).
    """
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - ray is installed in CI
        raise EngineUnavailableError(
            "the Ray engine needs Ray: pip install 'cellframe[ray]'"
        ) from exc
    if address not in (None, "local", "auto"):
        _reachable(address)
    if ray.is_initialized():
        return ray
    if address in (None, "local"):
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    else:
        try:
            ray.init(address=address, log_to_driver=False)
        except (ConnectionError, RuntimeError) as exc:
            raise EngineUnavailableError(
                f"cannot join the Ray cluster at {address}: {exc}"
            ) from exc
    return ray


def _with_plate(frame: pl.DataFrame, plate: str) -> pl.DataFrame:
    if PLATE in frame.columns:
        return frame
    return frame.with_columns(pl.lit(plate, dtype=pl.String).alias(PLATE))


def _read_plate(store: Store, table: str, plate: str) -> pl.DataFrame:
    return store.scan(table).filter(pl.col(PLATE) == plate).collect()


def _plate_source(ray: Any, store: Store, table: str, plate: str) -> Any:
    """What a Ray task reads one plate from (see :func:`_load_plate`).

    A partitioned table: the (escaped) glob of the plate's Parquet files, read
    by the worker. A native table: the rows, read on the driver one plate at a
    time and put in the object store (the submit window bounds how many sit
    there at once).
    """
    root = store.partition_root(table)
    if root is not None:
        return f"{glob_escape(partition_dir(root, plate))}/{DATA_GLOB}"
    return ray.put(_read_plate(store, table, plate))


def _load_plate(source: str | pl.DataFrame, plate: str) -> pl.DataFrame:
    """Inside a Ray task: one plate's rows from what :func:`_plate_source` gave."""
    return _with_plate(pl.read_parquet(source), plate) if isinstance(source, str) else source


def _plate_task(
    fn: PlateFunction,
    source: str | pl.DataFrame,
    table_root: str,
    plate: str,
    step: str,
    parameters: dict[str, Any],
) -> int:
    """Body of one Ray task: read one plate, apply ``fn``, write its partition."""
    return write_plate_partition(
        Path(table_root), plate, fn(_load_plate(source, plate)), step=step, parameters=parameters
    )


def run_tasks(
    ray: Any,
    items: Sequence[Any],
    submit: Callable[[Any], Any],
    *,
    describe: Callable[[Any], str],
    ordered: bool = False,
    bar: Iterator[Any] | None = None,
) -> Iterator[tuple[Any, Any]]:
    """Run one Ray task per item, a bounded window at a time; yield (item, result).

    ``submit(item)`` starts the task and returns its object reference. At most
    twice as many tasks as the cluster has CPUs are in flight, which also
    bounds how many inputs put on the driver sit in the object store. Results
    come as tasks finish, or in the order of ``items`` when ``ordered`` (so
    combined floating-point sums do not depend on which worker finished
    first). A failed task cancels the others and raises the task's own error
    with the note ``describe(item)``; so does closing the iterator early (a
    caller that stops on its own error).
    """
    window = max(2, 2 * int(ray.available_resources().get("CPU", 1)))
    queue = deque(items)
    pending: deque[tuple[Any, Any]] = deque()
    while queue or pending:
        while queue and len(pending) < window:
            item = queue.popleft()
            pending.append((item, submit(item)))
        if ordered:
            item, ref = pending.popleft()
        else:
            ready, _ = ray.wait([r for _, r in pending], num_returns=1)
            index = next(i for i, (_, r) in enumerate(pending) if r == ready[0])
            item, ref = pending[index]
            del pending[index]
        try:
            value = ray.get(ref)
        except Exception as exc:
            for _, other in pending:
                ray.cancel(other)
            cause = getattr(exc, "cause", None) or exc
            cause.add_note(describe(item))
            raise cause from exc
        del ref
        if bar is not None:
            next(bar, None)
        try:
            yield item, value
        except GeneratorExit:  # the caller stopped (its own error): cancel the rest
            for _, other in pending:
                ray.cancel(other)
            raise


def map_plates(
    store: Store,
    source: str,
    dest: str,
    fn: PlateFunction,
    *,
    engine: Engine | str = "local",
    plates: Sequence[str] | None = None,
    step: str = "map",
    parameters: dict[str, Any] | None = None,
    progress: bool = True,
) -> MapReport:
    """Apply a pure per-plate function to every plate of ``source`` and store the result.

    The function form of ``engine.map(fn, Plates(store, source, plates), dest)``.

    Parameters
    ----------
    store : Store
        The store holding ``source``; ``dest`` is written there.
    source : str
        Input table (native or partitioned).
    dest : str
        Output table. The local engine writes a native table (each plate
        replaced in its own transaction); the Ray engine writes one Parquet
        partition per plate and registers them as a view.
    fn : callable
        ``fn(plate_rows: pl.DataFrame) -> DataFrame | LazyFrame | iterator of batches``;
        must depend on nothing but its input (it may run in another process).
    engine : LocalEngine, RayEngine, "local" or "ray"
        Where to run: ``RayEngine(address=..., force=...)`` for a cluster or
        to recompute plates a previous run completed.
    plates : sequence of str, optional
        Plates to process (default: all plates of ``source``).
    step, parameters
        Provenance of the output.
    progress : bool, default True
        Show a progress bar over plates.

    Returns
    -------
    MapReport

    Raises
    ------
    EngineUnavailableError
        If Ray cannot be reached.
    InvalidInputError
        For an unknown engine name.
    TableExistsError
        Ray engine: if ``dest`` exists as a native table (or a plain view),
        which Parquet partitions cannot replace; checked before any work.
    cellframe.partitions.PartitionVersionError
        If an existing partition was written by another cellframe version or
        step and the Ray engine's ``force`` is not set.

    Examples
    --------
    >>> import polars as pl
    >>> from cellframe.store import Store
    >>> store = Store()
    >>> _ = store.write("wells", pl.DataFrame({"Metadata_Plate": ["P1", "P1", "P2"],
    ...                                        "f": [1.0, 3.0, 5.0]}), step="example")
    >>> map_plates(store, "wells", "doubled", lambda df: df.with_columns(pl.col("f") * 2),
    ...            progress=False)
    MapReport(table='doubled', engine='local', computed=['P1', 'P2'], skipped=[], rows=3)
    >>> store.read("doubled").sort("f")["f"].to_list()
    [2.0, 6.0, 10.0]
    """
    return resolve_engine(engine).map(
        fn, Plates(store, source, plates), dest, step=step, parameters=parameters,
        progress=progress,
    )  # fmt: skip


def reduce_plates(
    store: Store,
    source: str,
    map_fn: Callable[[pl.DataFrame], T],
    combine: Callable[[Iterable[T]], Any],
    *,
    engine: Engine | str = "local",
    plates: Sequence[str] | None = None,
    progress: bool = True,
    desc: str = "statistics",
) -> Any:
    """Compute per-plate statistics and combine them on the driver.

    The function form of ``engine.gather(map_fn, Plates(store, source, plates), combine)``.
    Use exact sufficient statistics (counts, sums, cross-products, value
    counts) so the combined result equals the one computed on all rows at once.
    ``combine`` receives the statistics one plate at a time, in plate order on
    both engines (a streaming combine keeps one plate's statistics in memory
    at a time).

    Parameters
    ----------
    store, source
        Where the plates are.
    map_fn : callable
        ``map_fn(plate_rows) -> statistics`` (picklable).
    combine : callable
        ``combine(iterable of statistics) -> result``.
    engine, plates, progress
        As in :func:`map_plates`.
    desc : str
        Progress-bar label.

    Returns
    -------
    Whatever ``combine`` returns.

    Examples
    --------
    A row count and a sum per plate, added up on the driver:

    >>> import polars as pl
    >>> from cellframe.store import Store
    >>> store = Store()
    >>> _ = store.write("wells", pl.DataFrame({"Metadata_Plate": ["P1", "P1", "P2", "P2"],
    ...                                        "f": [1.0, 3.0, 5.0, 7.0]}), step="example")
    >>> reduce_plates(store, "wells", lambda rows: (rows.height, rows["f"].sum()),
    ...               lambda parts: [sum(values) for values in zip(*parts)], progress=False)
    [4, 16.0]
    """
    return resolve_engine(engine).gather(
        map_fn, Plates(store, source, plates), combine, desc=desc, progress=progress
    )
