"""Aggregate a store table into another, plate by plate (the store-to-store executor).

The transforms are :mod:`cellframe.profiles.aggregate`'s; this module only
reads a table in work units (a plate, or a few wells of a big plate), reduces
each with those transforms on worker threads and writes the result.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import polars as pl

from cellframe._progress import progress as _progress
from cellframe.columns import COUNT_CELLS, LEVEL_KEYS, PLATE, WELL
from cellframe.errors import InvalidInputError
from cellframe.profiles._common import GROUP_KERNELS, Workspace, resolve_features
from cellframe.profiles.aggregate import (
    LEVELS,
    THESIS_METHODS,
    Level,
    _aggregate_frame,
    _carry_columns,
    _level_strata,
    aggregate_by,
)

if TYPE_CHECKING:
    from cellframe.store import Store

__all__ = ["aggregate_table"]

#: Feature bytes :func:`aggregate_table` reads at once by default (256 MiB).
CHUNK_BYTES = 256 * 2**20
#: Memory the work units in flight may take together by default (4 GiB). Each
#: holds its chunk twice (as read, and feature-major), so on a machine with many
#: cores at most ``UNIT_MEMORY // (2 * chunk)`` units run at once (8 with the
#: default chunk) and the spare threads go to each unit's reduction.
UNIT_MEMORY = 4 * 2**30


class _Unit(NamedTuple):
    """One work unit of :func:`aggregate_table`: a plate, or a part of it."""

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
    """The work units of :func:`aggregate_table`.

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


def aggregate_table(
    store: Store,
    source: str,
    dest: str,
    level: Level = "well",
    *,
    path: Literal["direct", "thesis"] = "direct",
    strata: Sequence[str] | None = None,
    method: str | None = None,
    features: Sequence[str] | None = None,
    keep: Sequence[str] | str | None = "auto",
    chunk_rows: int | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> int:
    """Aggregate a store table into another, one plate (or a few wells) at a time.

    Parameters
    ----------
    store : cellframe.store.Store
        The store holding ``source``; ``dest`` is replaced.
    source, dest : str
        Input and output table names.
    level, path, strata, method, features, keep
        As in :func:`aggregate`.
    chunk_rows : int, optional
        A plate with more rows than this is read a few wells at a time, so
        peak memory follows ``chunk_rows`` and not the plate size (when every
        plate-level step groups by plate and well). Default: the rows that
        hold :data:`CHUNK_BYTES` (256 MiB) of float32 features.
    workers : int, optional
        Work units read and reduced at once on the per-plate Parquet layout;
        peak memory is about ``workers x 2 x chunk``. Default: as many as
        Polars has threads (``POLARS_MAX_THREADS``), at most as many as fit in
        :data:`UNIT_MEMORY` (4 GiB). A native table is read one unit at a time.
    progress : bool, default True
        Show a progress bar over work units.

    Returns
    -------
    int
        Rows written to ``dest``.

    Notes
    -----
    On the per-plate Parquet layout, ``workers`` work units are read and
    reduced at once, so peak memory is about that many chunks, each held
    twice (as read, and feature-major for the NumPy kernels, in a scratch
    matrix each worker thread reuses). A plate whose wells lie in blocks of rows (as ingest
    writes them) is cut into row ranges, each read from the files holding it
    without a filter; otherwise a unit is a run of sorted wells selected by a
    range filter. Plate sizes come from the Parquet footers. A native DuckDB
    table is read one unit at a time through the store's connection.
    """
    if path not in ("direct", "thesis"):
        raise InvalidInputError(f"unknown path {path!r}; valid: 'direct', 'thesis'")
    final_strata = _level_strata(level, strata)
    columns = store.columns(source)
    schema = store.schema(source)
    feats = resolve_features(schema, features, f"store table {source!r}")
    if chunk_rows is None:
        chunk_rows = max(10_000, CHUNK_BYTES // (4 * max(len(feats), 1)))
    if chunk_rows < 1:
        raise InvalidInputError("chunk_rows must be at least 1")
    if workers is not None and workers < 1:
        raise InvalidInputError("workers must be at least 1")
    # Which step strata does the chain use? The table can be split along any
    # key that every step groups by.
    steps = (
        [final_strata]
        if path == "direct"
        else [
            final_strata if s == level else list(LEVEL_KEYS[s])
            for s in LEVELS[: LEVELS.index(level) + 1]
        ]
    )
    # The chain runs chunk by chunk for the steps that group within a plate
    # (and within a well, for chunks smaller than a plate); the remaining
    # steps (e.g. wells -> treatments) run on the small aggregated result.
    n_split = 0
    while n_split < len(steps) and PLATE in steps[n_split] and PLATE in columns:
        n_split += 1
    by_well = n_split > 0 and WELL in columns and all(WELL in s for s in steps[:n_split])
    carry = _carry_columns(schema, [], keep)
    needed = list(
        dict.fromkeys(
            [*(c for s in steps for c in s if c in columns), *carry, *feats]
            + ([COUNT_CELLS] if COUNT_CELLS in columns else [])
        )
    )
    parameters: dict[str, Any] = {
        "source": source,
        "level": level,
        "path": path,
        "strata": final_strata,
        "method": method,
        "n_features": len(feats),
        "chunk_rows": chunk_rows,
    }
    step_methods = (
        [method if method is not None else ("mean" if level == "treatment" else "median")]
        if path == "direct"
        else [THESIS_METHODS[s] for s in LEVELS[: len(steps)]]
    )

    def run(lf: pl.LazyFrame, part: slice) -> pl.LazyFrame:
        for s, m in zip(steps[part], step_methods[part], strict=True):
            lf = aggregate_by(lf, s, method=m, features=feats, keep=keep)
        return lf

    def write(data: Any) -> int:
        return store.write(
            dest, data, mode="replace", step="aggregate", parameters=parameters, source=source
        )

    if n_split == 0:
        return write(run(store.scan(source, needed), slice(None)).collect(engine="streaming"))

    units = _chunks(store, source, by_well, chunk_rows)
    threads = max(1, pl.thread_pool_size())
    # Parquet partitions are read by Polars alone, so several work units can
    # run at once; a native table is read through the store's one DuckDB
    # connection, so its units run one at a time (threads inside the reduction).
    if store.partition_root(source) is not None:
        workers = _unit_workers(threads, 4 * max(len(feats), 1) * chunk_rows, workers)
        reduce_threads = max(1, threads // workers)
    else:
        workers, reduce_threads = 1, threads

    # Each worker thread keeps one scratch matrix for all the units it reduces.
    local = threading.local()

    def compute(scan: pl.LazyFrame) -> pl.DataFrame:
        if not hasattr(local, "workspace"):
            local.workspace = Workspace()
        frame = scan.collect()
        # The plate-level steps run eagerly on the NumPy kernels; a callable
        # method falls back to the Polars expressions.
        for s, m in zip(steps[:n_split], step_methods[:n_split], strict=True):
            if m in GROUP_KERNELS:
                s_feats = [f for f in feats if f not in s and f != COUNT_CELLS]
                carry_s = _carry_columns(frame.schema, s, keep)
                frame = _aggregate_frame(
                    frame, s, m, s_feats, carry_s, reduce_threads, local.workspace
                )
            else:
                frame = aggregate_by(frame.lazy(), s, method=m, features=feats, keep=keep).collect()
        return frame

    # ``workers`` work units run at once, each read and reduced by one worker
    # thread (Polars and NumPy release the GIL): reading one chunk overlaps
    # reducing another, and at most ``workers`` chunks are in memory.
    from concurrent.futures import Future, ThreadPoolExecutor

    def finished(pool: ThreadPoolExecutor) -> Iterator[pl.DataFrame]:
        queue: list[Future[pl.DataFrame]] = []
        try:
            for unit in units:
                # The lazy scan is built here: only this thread uses the store.
                scan = _scan_unit(store, source, needed, unit)
                queue.append(pool.submit(compute, scan))
                if len(queue) >= workers:
                    yield queue.pop(0).result()
            while queue:
                yield queue.pop(0).result()
        finally:
            for f in queue:
                f.cancel()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(
            _progress(
                finished(pool),
                total=len(units),
                desc=f"aggregate {source}",
                unit="chunk",
                enabled=progress,
            )
        )
    # Units hold whole groups; sorting their rows puts the groups in key order
    # (a plate's row-range units follow its storage order, not the key order).
    partial = (
        pl.concat(results, how="vertical").sort(steps[n_split - 1], nulls_last=True)
        if results
        else run(store.scan(source, needed).head(0), slice(0, n_split)).collect()
    )
    if n_split == len(steps):
        return write(partial)
    return write(run(partial.lazy(), slice(n_split, None)).collect())


def _unit_workers(threads: int, chunk_bytes: int, workers: int | None) -> int:
    """Work units to run at once: ``workers`` if given, else one per thread within :data:`UNIT_MEMORY`."""
    if workers is not None:
        return workers
    return max(1, min(threads, UNIT_MEMORY // max(1, 2 * chunk_bytes)))


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
