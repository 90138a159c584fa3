"""The local engine: plates in this process, big tables in bounded chunks on threads.

:class:`LocalEngine` maps a per-plate function over plates one at a time in
this process (``map``, ``gather``; ``reduce`` and ``apply`` come from
:class:`~cellframe.engine.base.Engine`), and runs a store-to-store reduction
in work units (:meth:`LocalEngine.map_units`): a plate, or a few wells of a
big plate, read and reduced by worker threads, with at most ``workers`` units
in memory at once. No step logic lives here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import polars as pl

from cellframe._progress import progress as progress_bar
from cellframe.columns import PLATE, WELL
from cellframe.engine.base import Engine, MapReport, Plates
from cellframe.engine.run import _read_plate, _with_plate
from cellframe.errors import InvalidInputError

if TYPE_CHECKING:
    from cellframe.store import Store

__all__ = ["CHUNK_BYTES", "UNIT_MEMORY", "LocalEngine"]

#: Feature bytes a work unit holds by default (256 MiB).
CHUNK_BYTES = 256 * 2**20
#: Memory the work units in flight may take together by default (4 GiB). Each
#: holds its chunk twice (as read, and feature-major), so on a machine with many
#: cores at most ``UNIT_MEMORY // (2 * chunk)`` units run at once (8 with the
#: default chunk) and the spare threads go to each unit's reduction.
UNIT_MEMORY = 4 * 2**30


#: ``compute(frame, threads, scratch)`` of one work unit: ``threads`` for its
#: reduction, ``scratch`` a dict the worker thread keeps from unit to unit.
UnitFunction = Callable[[pl.DataFrame, int, dict[str, Any]], pl.DataFrame]


@dataclass(frozen=True)
class LocalEngine(Engine):
    """Run steps in this process: plate after plate, big tables in bounded chunks.

    Parameters
    ----------
    workers : int, optional
        Work units read and reduced at once by :meth:`map_units` on the
        per-plate Parquet layout; peak memory is about ``workers x 2 x chunk``.
        Default: as many as Polars has threads (``POLARS_MAX_THREADS``), at
        most as many as fit in ``memory_budget``. A native table is read one
        unit at a time.
    memory_budget : int, default 4 GiB
        Bytes the work units in flight may take together when ``workers`` is
        not given (each holds its chunk twice: as read, and feature-major).
    chunk_rows : int, optional
        A plate with more rows than this is read a few wells at a time, so
        peak memory follows ``chunk_rows`` and not the plate size. Default:
        the rows that hold :data:`CHUNK_BYTES` (256 MiB) of float32 features.

    Raises
    ------
    InvalidInputError
        If ``workers``, ``memory_budget`` or ``chunk_rows`` is below 1.

    Examples
    --------
    >>> import polars as pl
    >>> from cellframe.store import Store
    >>> store = Store()
    >>> _ = store.write("wells", pl.DataFrame({"Metadata_Plate": ["P1", "P1", "P2"],
    ...                 "f": [1.0, 3.0, 5.0]}), step="example")
    >>> LocalEngine().gather(lambda df: df["f"].sum(), Plates(store, "wells"), list,
    ...                      progress=False)
    [4.0, 5.0]
    """

    workers: int | None = None
    memory_budget: int = UNIT_MEMORY
    chunk_rows: int | None = None

    name: ClassVar[str] = "local"

    def __post_init__(self) -> None:
        for key in ("workers", "memory_budget", "chunk_rows"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise InvalidInputError(
                    f"LocalEngine({key}={value!r}): {key} must be a whole number >= 1"
                )

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
        """Apply ``fn`` to each plate in turn; each plate replaced in ``dest`` in its own transaction.

        See :meth:`cellframe.engine.base.Engine.map`.
        """
        store = plates.store
        params = dict(parameters or {})
        report = MapReport(table=dest, engine=self.name)
        for plate in progress_bar(plates.names(), desc=step, unit="plate", enabled=progress):
            out = fn(_read_plate(store, plates.table, plate))
            if isinstance(out, pl.LazyFrame):
                out = out.collect()
            if isinstance(out, pl.DataFrame):
                out = _with_plate(out, plate)
            report.rows += store.write(
                dest, out, replace_plate=True, step=step, parameters={**params, "plate": plate}
            )
            report.computed.append(plate)
        return report

    def gather(
        self,
        fn: Callable[[pl.DataFrame], Any],
        plates: Plates,
        combine: Callable[[Iterable[Any]], Any],
        *,
        desc: str = "statistics",
        progress: bool = True,
    ) -> Any:
        """``combine`` of ``fn`` of each plate, computed one plate at a time.

        See :meth:`cellframe.engine.base.Engine.gather`.
        """
        names = plates.names()
        results = (
            fn(_read_plate(plates.store, plates.table, p))
            for p in progress_bar(names, desc=desc, unit="plate", enabled=progress)
        )
        return combine(results)

    def unit_rows(self, row_bytes: int) -> int:
        """Rows of a work unit: ``chunk_rows``, or the rows holding :data:`CHUNK_BYTES`.

        Parameters
        ----------
        row_bytes : int
            Bytes of one row's features (4 per float32 feature).

        Returns
        -------
        int

        Examples
        --------
        >>> LocalEngine().unit_rows(4 * 1000), LocalEngine(chunk_rows=20).unit_rows(4)
        (67108, 20)
        """
        if self.chunk_rows is not None:
            return self.chunk_rows
        return max(10_000, CHUNK_BYTES // max(row_bytes, 1))

    def map_units(
        self,
        plates: Plates,
        columns: Sequence[str],
        compute: UnitFunction,
        *,
        by_well: bool,
        row_bytes: int,
        desc: str = "work units",
        progress: bool = True,
    ) -> list[pl.DataFrame]:
        """Read ``plates`` in work units and ``compute`` each on a worker thread.

        A unit is a plate, or (``by_well``, a plate over :meth:`unit_rows`
        rows) a run of its wells: every group of a computation that groups by
        plate and well lies in one unit. On the per-plate Parquet layout
        several units run at once (Polars and NumPy release the GIL: reading
        one overlaps reducing another); a native table is read through the
        store's one DuckDB connection, one unit at a time.

        Parameters
        ----------
        plates : Plates
        columns : sequence of str
            Columns to read.
        compute : callable
            ``compute(frame, threads, scratch) -> DataFrame`` of one unit:
            ``threads`` for its own reduction, ``scratch`` a dict the worker
            thread keeps across units (a reusable workspace).
        by_well : bool
            Whether units may be cut between wells.
        row_bytes : int
            Bytes per row, for the default unit size and the worker count.
        desc : str
            Progress-bar label.
        progress : bool, default True

        Returns
        -------
        list of polars.DataFrame
            ``compute``'s results, in unit order (plates, then wells).
        """
        store, table = plates.store, plates.table
        chunk_rows = self.unit_rows(row_bytes)
        units = _chunks(store, table, by_well, chunk_rows)
        if plates.only is not None:
            keep = set(plates.only)
            units = [u for u in units if u.plate in keep]
        threads = max(1, pl.thread_pool_size())
        if store.partition_root(table) is not None:
            workers = _unit_workers(
                threads, row_bytes * chunk_rows, self.workers, self.memory_budget
            )
            reduce_threads = max(1, threads // workers)
        else:
            workers, reduce_threads = 1, threads
        local = threading.local()

        def run(scan: pl.LazyFrame) -> pl.DataFrame:
            if not hasattr(local, "scratch"):
                local.scratch = {}
            return compute(scan.collect(), reduce_threads, local.scratch)

        def finished(pool: ThreadPoolExecutor) -> Iterator[pl.DataFrame]:
            queue: list[Future[pl.DataFrame]] = []
            try:
                for unit in units:
                    # The lazy scan is built here: only this thread uses the store.
                    queue.append(pool.submit(run, _scan_unit(store, table, columns, unit)))
                    if len(queue) >= workers:
                        yield queue.pop(0).result()
                while queue:
                    yield queue.pop(0).result()
            finally:
                for f in queue:
                    f.cancel()

        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(
                progress_bar(
                    finished(pool),
                    total=len(units),
                    desc=desc,
                    unit="chunk",
                    enabled=progress,
                )
            )


class _Unit(NamedTuple):
    """One work unit of :meth:`LocalEngine.map_units`: a plate, or a part of it."""

    plate: str
    #: Wells of the unit, or None for the whole plate: a block of rows (``offset``
    #: set) or a run of the plate's sorted wells (selected by a range filter).
    wells: list[str] | None
    rows: int
    #: First row of the unit in ``files`` when its wells lie there as one block
    #: of rows (read as a row range, no filter); else None.
    offset: int | None = None
    #: Parquet files to read (only those holding the unit's row range), or
    #: None for a native table.
    files: tuple[Path, ...] | None = None


def _cut(runs: Iterator[tuple[Any, int]], chunk_rows: int) -> Iterator[tuple[list[Any], int]]:
    """Group consecutive (well, rows) runs into pieces of at most ``chunk_rows`` rows.

    A single well with more rows than ``chunk_rows`` is a piece of its own.
    """
    wells: list[Any] = []
    n = 0
    for w, k in runs:
        if wells and n + k > chunk_rows:
            yield wells, n
            wells, n = [], 0
        wells.append(w)
        n += k
    if wells:
        yield wells, n


def _row_range_unit(
    plate: str, wells: list[Any], offset: int, rows: int, file_rows: list[tuple[Path, int]]
) -> _Unit:
    """A unit of rows ``offset:offset + rows`` of a plate, over the files holding them only.

    Each unit then reads the footers of one or two files, not of all the
    plate's files (footer parsing is a few percent of a big plate's read).
    """
    start = 0
    files: list[Path] = []
    first = None
    for f, n in file_rows:
        if start + n > offset and start < offset + rows:
            if first is None:
                first = start
            files.append(f)
        start += n
    return _Unit(plate, wells, rows, offset - (first or 0), tuple(files))


def _chunks(store: Store, table: str, strata_wells: bool, chunk_rows: int) -> list[_Unit]:
    """The work units of :meth:`LocalEngine.map_units`.

    A plate becomes one unit when it has at most ``chunk_rows`` rows (or when
    the steps cannot be split by well); a bigger plate is cut between wells.
    On the Parquet layout the plate sizes come from the file footers and only
    a big plate's well column is read: when each well's rows lie together
    (as ingest writes them, image after image) the plate is cut into row
    ranges, read without any filter; otherwise into runs of its sorted wells,
    selected by a filter. A native table is counted by DuckDB queries.
    """
    from cellframe.store import quote_identifier

    root = store.partition_root(table)
    units: list[_Unit] = []
    if root is not None:
        from cellframe.partitions import plate_file_rows

        for plate, file_rows in plate_file_rows(root).items():
            files = tuple(f for f, _ in file_rows)
            total = sum(n for _, n in file_rows)
            if not strata_wells or total <= chunk_rows:
                units.append(_Unit(plate, None, total, files=files))
                continue
            scan = pl.scan_parquet(list(files), hive_partitioning=False, glob=False)
            runs = scan.select(pl.col(WELL).rle()).collect().to_series().struct.unnest()
            if runs["value"].n_unique() == runs.height:  # every well in one block of rows
                offset = 0
                for wells, n in _cut(runs.select("value", "len").iter_rows(), chunk_rows):
                    units.append(_row_range_unit(plate, wells, offset, n, file_rows))
                    offset += n
                continue
            by_well = (
                runs.group_by("value")
                .agg(pl.col("len").sum())
                .sort("value", nulls_last=True)
                .iter_rows()
            )
            units.extend(_Unit(plate, w, n, files=files) for w, n in _cut(by_well, chunk_rows))
        return units
    q = quote_identifier(table)
    counted = store.sql(
        f"SELECT {quote_identifier(PLATE)} AS p, count(*) AS n FROM {q} GROUP BY 1 ORDER BY 1"
    )
    for plate, total in counted.iter_rows():
        if not strata_wells or total <= chunk_rows:
            units.append(_Unit(plate, None, total))
            continue
        by_well = store.sql(
            f"SELECT {quote_identifier(WELL)} AS w, count(*) AS n FROM {q} "
            f"WHERE {quote_identifier(PLATE)} IS NOT DISTINCT FROM ? GROUP BY 1 ORDER BY 1",
            [plate],
        ).iter_rows()
        units.extend(_Unit(plate, w, n) for w, n in _cut(by_well, chunk_rows))
    return units


def _unit_workers(
    threads: int, chunk_bytes: int, workers: int | None, memory_budget: int = UNIT_MEMORY
) -> int:
    """Work units to run at once: ``workers`` if given, else one per thread within ``memory_budget``."""
    if workers is not None:
        return workers
    return max(1, min(threads, memory_budget // max(1, 2 * chunk_bytes)))


def _scan_unit(store: Store, table: str, columns: Sequence[str], unit: _Unit) -> pl.LazyFrame:
    """Rows of one work unit: a plate, a row range of its files, or a run of its sorted wells."""
    if unit.files:
        # The plate's files directly: no footer reads of the other plates.
        lf = pl.scan_parquet(list(unit.files), hive_partitioning=False, glob=False)
        if unit.offset is not None:
            # The unit's wells are one block of rows: read exactly those rows.
            lf = lf.slice(unit.offset, unit.rows)
        lf = lf.with_columns(pl.lit(unit.plate, pl.String).alias(PLATE)).select(list(columns))
        if unit.offset is not None or unit.wells is None:
            return lf
        return lf.filter(_in_wells(unit.wells))
    cond = pl.col(PLATE).eq_missing(unit.plate)
    if unit.wells is not None:
        cond = cond & _in_wells(unit.wells)
    return store.scan(table, columns).filter(cond)


def _in_wells(wells: list[str]) -> pl.Expr:
    """Rows of a run of the sorted well list (see _chunks), as a range test the reader can push down."""
    named = [x for x in wells if x is not None]
    in_run = (
        pl.col(WELL).is_between(pl.lit(min(named)), pl.lit(max(named))) if named else pl.lit(False)
    )
    if len(named) < len(wells):
        in_run = in_run | pl.col(WELL).is_null()
    return in_run
