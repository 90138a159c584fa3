"""Ingest many sources (one per plate, typically) with the local engine or on Ray.

A screen arrives as one CellProfiler SQLite file (or CSV folder) per plate.
With ``engine="ray"`` each source is read by one Ray task, which streams its
single cells into the plate's Parquet partition
(``<db>.parts/<table>/Metadata_Plate=<plate>/``, written under a temporary name
and renamed, so a retried or killed task never leaves half a plate); the
driver then registers the partitions as one view, writes the platemap rows and
records provenance. The rows are those :func:`cellframe.io.ingest` writes with
``layout="parquet"``, which is what the local engine runs, source by source.

A re-run skips sources whose plates are already complete (their partition
markers name the same source), unless ``force``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from cellframe._progress import progress as progress_bar
from cellframe.engine.base import MapReport
from cellframe.engine.run import MAX_RETRIES, _check_engine, connect_ray, run_tasks
from cellframe.errors import InvalidInputError
from cellframe.partitions import (
    MARKER,
    check_partition_version,
    completed_plates,
    partition_dir,
    read_marker,
    remove_stale_temporaries,
    write_plate_partition,
)
from cellframe.store import Store

__all__ = ["IngestPlatesReport", "ingest_plates"]

STEP = "ingest"


@dataclass
class IngestPlatesReport(MapReport):
    """What :func:`ingest_plates` wrote.

    Attributes
    ----------
    sources : list of str
        Sources read by this run.
    skipped_sources : list of str
        Sources whose plates were already complete (resume).
    warnings : list of str
        Recoverable problems, each prefixed with its source.
    """

    sources: list[str] = field(default_factory=list)
    skipped_sources: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [
            f"ingested {self.rows:,} rows from {len(self.sources)} source(s) into {self.table!r} "
            f"({self.engine} engine): {len(self.computed)} plate(s) written"
            + (
                f", {len(self.skipped_sources)} source(s) already complete and skipped"
                if self.skipped_sources
                else ""
            )
        ]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def _source_key(source: str | os.PathLike[str]) -> str:
    return str(Path(source).resolve())


def _ingest_source(
    source: str,
    table_root: str,
    table: str,
    platemap: pl.DataFrame | None,
    reader_options: dict[str, Any],
    parameters: dict[str, Any],
) -> dict[str, Any]:
    """Body of one task: stream one source into its plates' partitions."""
    from cellframe.io.ingest import (
        annotated_batches,
        plate_runs,
        resolve_reader,
        unmatched_message,
    )

    options = dict(reader_options)
    reader_cls = resolve_reader(options.pop("format", "auto"), source)
    reader = reader_cls(source, progress=False, **options)
    if reader.level != "cell":
        raise InvalidInputError(
            f"{source} holds {reader.level}-level rows; ingest_plates writes single cells per "
            "plate: ingest image-level sources with cellframe.io.ingest"
        )
    state: dict[str, Any] = {}
    rows = 0
    plates: list[str] = []
    params = {**parameters, "format": reader_cls.format, "source": _source_key(source)}
    batches = annotated_batches(reader, platemap, state, table=table, progress=False)
    for plate, run in plate_runs(batches, source):
        rows += write_plate_partition(Path(table_root), plate, run, step=STEP, parameters=params)
        plates.append(plate)
    messages = reader.issues.summary()
    if state.get("unmatched"):
        messages.append(unmatched_message(state["unmatched"]))
    return {"source": str(source), "plates": plates, "rows": rows, "warnings": messages}


def _complete_sources(table_root: Path) -> dict[str, list[str]]:
    """Sources whose partitions are complete, with their plates (from the markers)."""
    out: dict[str, list[str]] = {}
    for plate in completed_plates(table_root):
        record = read_marker(partition_dir(table_root, plate)) or {}
        source = (record.get("parameters") or {}).get("source")
        if record.get("step") == STEP and source:
            out.setdefault(source, []).append(plate)
    return out


def ingest_plates(
    sources: Sequence[str | os.PathLike[str]],
    store: Store,
    *,
    table: str = "cells",
    platemap: str | os.PathLike[str] | pl.DataFrame | None = None,
    annotations: str | os.PathLike[str] | pl.DataFrame | None = None,
    format: str = "auto",
    engine: str = "local",
    address: str | None = None,
    force: bool = False,
    progress: bool = True,
    batch_rows: int | None = None,
    memory_limit: str = "512MB",
) -> IngestPlatesReport:
    """Ingest several sources into one per-plate Parquet table, locally or on Ray.

    Parameters
    ----------
    sources : sequence of path
        Files or folders, each holding whole plates (a plate must not be split
        across sources).
    store : Store
        Destination store; ``table`` becomes (or must already be) a
        partitioned view.
    table : str, default "cells"
    platemap, annotations : path or polars.DataFrame, optional
        As in :func:`cellframe.io.ingest`.
    format : str, default "auto"
        Format of every source (see :data:`cellframe.io.FORMATS`).
    engine : {"local", "ray"}
        ``"local"`` ingests the sources one after another in this process;
        ``"ray"`` runs one task per source.
    address : str, optional
        Ray cluster address (see :func:`cellframe.engine.connect_ray`).
    force : bool, default False
        Ray engine: re-read sources whose plates are already complete.
    progress : bool, default True
    batch_rows : int, optional
        Rows per batch while reading.
    memory_limit : str, default "512MB"
        DuckDB memory limit of a temporary staging database (unsorted sources).

    Returns
    -------
    IngestPlatesReport

    Raises
    ------
    InvalidInputError
        If no source is given, ``table`` is a native table, or two sources
        hold the same plate.
    EngineUnavailableError
        If Ray cannot be reached.
    cellframe.partitions.PartitionVersionError
        If a complete partition was written by another cellframe version.

    Examples
    --------
    >>> report = ingest_plates(sorted(Path("screen").glob("*.sqlite")), store,
    ...                        engine="ray")                    # doctest: +SKIP
    """
    from cellframe.io.ingest import IngestWarning, ingest, platemap_frame, write_platemap

    _check_engine(engine)
    if not sources:
        raise InvalidInputError("no sources to ingest: pass one or more files or folders")
    keys = [_source_key(s) for s in sources]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise InvalidInputError(f"sources listed more than once: {twice}")
    if store.has_table(table) and store.partition_root(table) is None:
        raise InvalidInputError(
            f"{table!r} is a native table in {store.path}; per-plate ingest writes Parquet "
            "partitions: choose another table name or ingest with cellframe.io.ingest"
        )
    report = IngestPlatesReport(table=table, engine=engine)
    pm = platemap_frame(platemap, annotations)
    options = {"format": format, "batch_rows": batch_rows, "memory_limit": memory_limit}
    parameters = {
        "platemap": None if platemap is None else str(platemap)[:200],
        "annotations": None if annotations is None else str(annotations)[:200],
        "layout": "parquet",
    }
    plate_source: dict[str, str] = {}

    def claim(result: dict[str, Any]) -> None:
        for plate in result["plates"]:
            if plate in plate_source and plate_source[plate] != result["source"]:
                raise InvalidInputError(
                    f"plate {plate!r} is in two sources, {plate_source[plate]} and "
                    f"{result['source']}; the second replaced the first's partition. Ingest a "
                    "plate from one source (or the sources into different tables)"
                )
            plate_source[plate] = result["source"]

    if engine == "local":
        for source in progress_bar(list(sources), desc="ingest", unit="source", enabled=progress):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", IngestWarning)
                one = ingest(
                    source,
                    store,
                    table=table,
                    platemap=pm,
                    format=format,
                    progress=False,
                    batch_rows=batch_rows,
                    memory_limit=memory_limit,
                    layout="parquet",
                )
            claim({"source": str(source), "plates": one.plates})
            report.rows += one.rows
            report.computed += one.plates
            report.sources.append(str(source))
            report.warnings += [f"{source}: {w.message}" for w in caught]
        return report  # ingest() wrote each source's platemap rows

    ray = connect_ray(address)
    table_root = store.parts_dir / table
    remove_stale_temporaries(table_root)
    done = _complete_sources(table_root)
    todo = []
    for source, key in zip(sources, keys, strict=True):
        if key in done and not force:
            for plate in done[key]:
                check_partition_version(table_root, plate, STEP)
                plate_source[plate] = str(source)
            report.skipped_sources.append(str(source))
            report.skipped += done[key]
        else:
            todo.append(source)
    task = ray.remote(max_retries=MAX_RETRIES)(_ingest_source)
    pm_ref = ray.put(pm)
    bar = progress_bar(range(len(todo)), desc="ingest (ray)", unit="source", enabled=progress)
    for source, result in run_tasks(
        ray,
        [str(s) for s in todo],
        lambda source: task.remote(source, str(table_root), table, pm_ref, options, parameters),
        describe=lambda source: f"while ingesting {source} (Ray engine)",
        bar=bar,
    ):
        claim(result)
        report.rows += result["rows"]
        report.computed += result["plates"]
        report.sources.append(source)
        report.warnings += [f"{source}: {w}" for w in result["warnings"]]
    remove_stale_temporaries(table_root)
    if not any(table_root.glob(f"*/{MARKER}")):
        raise InvalidInputError(f"no plate was written under {table_root}")
    store.register_partitions(table)
    store.record_provenance(
        table,
        STEP,
        {**parameters, "engine": "ray", "plates": report.computed, "sources": report.sources},
        n_rows=report.rows,
        source=", ".join(report.sources)[:1000] or None,
    )
    if pm is not None and report.computed:
        write_platemap(store, pm, sorted(report.computed), platemap)
    for message in report.warnings:
        warnings.warn(message, IngestWarning, stacklevel=2)
    return report
