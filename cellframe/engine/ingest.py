"""Ingest many sources (one per plate, site or well) with the local engine or on Ray.

A screen arrives as one CellProfiler SQLite file (or CSV folder) per plate, or
per site or well. Each source is read by one task (a Ray task with
``engine="ray"``, in this process with ``engine="local"``), which streams its
single cells into a staging partition of its own
(``<db>.parts/<table>/.staging-<run>/<i>/Metadata_Plate=<plate>/``), written
under a temporary name and renamed, so a retried or killed task never leaves
half a plate. When every task is done, the driver checks that no image (plate,
well, site) came from two sources and, in ``mode="append"``, that none is
stored yet; then it commits plate by plate: a plate's partition becomes its
stored rows minus the images the sources bring, plus the sources' rows (or,
with ``mode="replace-plates"``, the sources' rows only), written under a
temporary name and swapped in by renames. Tasks that share a plate therefore
never race for its partition. The driver then registers the view, writes the
platemap rows and records provenance.

A re-run on Ray skips sources already committed (the partition markers name
them), unless ``force``.
"""

from __future__ import annotations

import os
import shutil
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from cellframe._progress import progress as progress_bar
from cellframe.columns import PLATE
from cellframe.engine.base import Engine, MapReport, resolve_engine
from cellframe.engine.run import MAX_RETRIES, connect_ray, run_tasks
from cellframe.errors import InvalidInputError, key_example
from cellframe.partitions import (
    DATA_FILE,
    DATA_GLOB,
    MARKER,
    WriteChanges,
    _check_schema_against_siblings,
    check_partition_version,
    completed_plates,
    drop_plate_images,
    partition_dir,
    partition_files,
    read_marker,
    remove_stale_temporaries,
    write_plate_partition,
)
from cellframe.store import Store

__all__ = ["IngestPlatesReport", "ReadOptions", "ingest_plates"]

STEP = "ingest"


@dataclass(frozen=True)
class ReadOptions:
    """How :func:`ingest_plates` reads every source.

    Parameters
    ----------
    batch_rows : int, optional
        Rows per batch while reading.
    memory_limit : str, default "512MB"
        DuckDB memory limit of a temporary staging database (unsorted sources).
    compartments : sequence of str, optional
        CellProfiler sources: the compartments to join (of Cells, Cytoplasm,
        Nuclei), passed to every source's reader (see :func:`cellframe.io.ingest`).
        A source in another format is refused.
    """

    batch_rows: int | None = None
    memory_limit: str = "512MB"
    compartments: Sequence[str] | None = None


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
    images_added, images_replaced : int
        Images (plate, well, site) new to the table, and stored ones replaced
        (with ``mode="replace-plates"``: plates).
    rows_replaced : int
        Stored rows deleted by the replacement.
    """

    sources: list[str] = field(default_factory=list)
    skipped_sources: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    images_added: int = 0
    images_replaced: int = 0
    rows_replaced: int = 0

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
        lines.append(
            f"{self.images_added:,} image(s) added, {self.images_replaced:,} replaced "
            f"({self.rows_replaced:,} stored rows replaced)"
        )
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def _source_key(source: str | os.PathLike[str]) -> str:
    return str(Path(source).resolve())


def _ingest_source(
    source: str,
    staging_root: str,
    table: str,
    platemap: pl.DataFrame | None,
    reader_options: dict[str, Any],
    parameters: dict[str, Any],
) -> dict[str, Any]:
    """Body of one task: stream one source into staging partitions, one per plate.

    ``source`` is an absolute path (resolved on the driver), so a worker
    whose working folder differs reads the file the user named. Returns the
    source, its plates, rows, warnings, the image keys (well, site) of each
    plate, which the driver checks before committing, the rows of the
    ``images`` table (every image read, empty sites included), and the
    (plate, well) pairs read with the count of rows in wells the platemap
    lacks (for the driver's coverage messages).
    """
    from cellframe.io.cellprofiler_csv import CellProfilerCSV
    from cellframe.io.cellprofiler_sqlite import CellProfilerSQLite
    from cellframe.io.ingest import (
        annotated_batches,
        image_key_columns,
        plate_runs,
        resolve_reader,
    )

    options = dict(reader_options)
    reader_cls = resolve_reader(options.pop("format", "auto"), source)
    if options.get("compartments") is None:
        options.pop("compartments", None)
    elif not issubclass(reader_cls, (CellProfilerCSV, CellProfilerSQLite)):
        raise InvalidInputError(
            f"compartments= applies to CellProfiler CSV and SQLite sources, not {source} "
            f"({reader_cls.format}); leave it out or ingest that source on its own"
        )
    reader = reader_cls(source, progress=False, **options)
    if reader.level != "cell":
        raise InvalidInputError(
            f"{source} holds {reader.level}-level rows; ingest_plates writes single cells per "
            "plate: ingest image-level sources with cellframe.io.ingest"
        )
    state: dict[str, Any] = {}
    rows = 0
    plates: list[str] = []
    images: dict[str, pl.DataFrame] = {}
    params = {**parameters, "format": reader_cls.format, "source": _source_key(source)}
    batches = annotated_batches(reader, platemap, state, table=table, progress=False)

    def keyed(run: Any, plate: str) -> Any:
        for frame in run:
            keys = [k for k in image_key_columns(list(frame.columns)) if k != PLATE]
            seen = frame.select(keys).unique()
            images[plate] = pl.concat([images[plate], seen]) if plate in images else seen
            yield frame

    for plate, run in plate_runs(batches, source):
        rows += write_plate_partition(
            Path(staging_root), plate, keyed(run, plate), step=STEP, parameters=params
        )
        plates.append(plate)
    wells = state.get("wells")
    return {
        "source": str(source),
        "plates": plates,
        "rows": rows,
        "warnings": reader.issues.summary(),
        "images": {p: f.unique() for p, f in images.items()},
        "image_rows": reader.image_rows(),
        "empty": _empty_sites(reader.empty_images),
        "wells": pl.concat(wells).unique() if wells else None,
        "unmatched": int(state.get("unmatched") or 0),
        "staging": staging_root,
    }


def _empty_sites(empty: pl.DataFrame | None) -> pl.DataFrame | None:
    """(plate, well, site) of a source's images without objects, or None."""
    from cellframe.columns import SITE, WELL

    if empty is None or not empty.height:
        return None
    return empty.select(PLATE, WELL, SITE).unique()


def _stored_empty_sites(table_root: Path, empty: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """The empty sites ``empty`` whose rows ``table_root``'s partitions hold, by plate."""
    out: dict[str, pl.DataFrame] = {}
    for (plate,), frame in empty.group_by(PLATE, maintain_order=True):
        files = partition_files(table_root, str(plate))
        if not files:
            continue
        stored = pl.scan_parquet(files, glob=False)
        schema = stored.collect_schema()
        keys = [c for c in frame.columns if c != PLATE]
        if any(k not in schema for k in keys):
            continue
        drop = frame.select(keys).cast({k: schema[k] for k in keys}, strict=False)
        hit = stored.select(keys).unique().collect()
        hit = hit.join(drop, on=keys, how="semi", nulls_equal=True)
        if hit.height:
            out[str(plate)] = hit
    return out


def _drop_empty_sites(
    table_root: Path,
    results: list[dict[str, Any]],
    mode: str,
    parameters: dict[str, Any],
    changes: WriteChanges,
) -> None:
    """Delete the stored rows of the sources' empty sites (they bring no rows to replace them).

    ``replace-images`` deletes the rows of each empty (plate, well, site);
    ``replace-plates`` deletes the plates that hold only empty sites in the
    run (plates with rows were replaced whole by the commit).
    """
    written = {p for r in results for p in r["plates"]}
    for result in results:
        empty = result.get("empty")
        if empty is None:
            continue
        if mode == "replace-plates":
            for plate in sorted(set(empty[PLATE].cast(pl.String).to_list()) - written):
                k, n = drop_plate_images(
                    table_root,
                    plate,
                    pl.DataFrame({PLATE: [plate]}),
                    step=STEP,
                    parameters=parameters,
                )
                changes.keys_replaced += k
                changes.rows_removed += n
            continue
        for plate, keys in _stored_empty_sites(table_root, empty).items():
            k, n = drop_plate_images(table_root, plate, keys, step=STEP, parameters=parameters)
            changes.keys_replaced += k
            changes.rows_removed += n


def _complete_sources(table_root: Path) -> dict[str, list[str]]:
    """Sources committed to complete partitions, with their plates (from the markers)."""
    out: dict[str, list[str]] = {}
    for plate in completed_plates(table_root):
        record = read_marker(partition_dir(table_root, plate)) or {}
        if record.get("step") != STEP:
            continue
        params = record.get("parameters") or {}
        for source in params.get("sources") or [params.get("source")]:
            if source:
                out.setdefault(source, []).append(plate)
    return out


def _check_images(results: list[dict[str, Any]]) -> None:
    """Refuse a run in which two sources hold the same image (the second would hide the first)."""
    owner: dict[str, tuple[str, pl.DataFrame]] = {}
    for result in results:
        for plate, keys in result["images"].items():
            if plate in owner:
                other, stored = owner[plate]
                both = keys.join(stored, on=keys.columns, how="semi", nulls_equal=True)
                if both.height:
                    example = key_example(both.row(0, named=True))
                    raise InvalidInputError(
                        f"plate {plate!r} has {both.height} image(s) in two sources, {other} and "
                        f"{result['source']} (e.g. {example}); nothing was written. Ingest each "
                        "image from one source (or the sources into different tables)"
                    )
                owner[plate] = (f"{other}, {result['source']}", pl.concat([stored, keys]))
            else:
                owner[plate] = (result["source"], keys)


def _check_append(table_root: Path, results: list[dict[str, Any]]) -> None:
    """``mode="append"``: refuse (store unchanged) if any image of the sources is stored."""
    from cellframe.errors import REPLACE_IMAGES_HINT, KeyConflictError

    for result in results:
        for plate, keys in result["images"].items():
            files = partition_files(table_root, plate)
            if not files or not keys.columns:
                continue
            stored = pl.scan_parquet(files, glob=False).select(keys.columns).unique().collect()
            clash = keys.cast(stored.schema, strict=False).join(  # type: ignore[arg-type]
                stored, on=keys.columns, how="semi", nulls_equal=True
            )
            if clash.height:
                raise KeyConflictError(
                    f"{result['source']}: plate {plate!r} of {table_root} already holds "
                    f"{clash.height} of its image(s) (e.g. {key_example(clash.row(0, named=True))}"
                    f"); nothing was written. {REPLACE_IMAGES_HINT}"
                )
        empty = result.get("empty")
        for plate, clash in (
            _stored_empty_sites(table_root, empty) if empty is not None else {}
        ).items():
            raise KeyConflictError(
                f"{result['source']}: plate {plate!r} of {table_root} already holds rows of "
                f"{clash.height} of its image(s) that now hold no objects (empty sites; e.g. "
                f"{key_example(clash.row(0, named=True))}); nothing was written. "
                + REPLACE_IMAGES_HINT
            )


def _commit(
    table_root: Path,
    results: list[dict[str, Any]],
    mode: str,
    parameters: dict[str, Any],
    changes: WriteChanges,
) -> None:
    """Move the staged plates of ``results`` into the table, plate by plate."""
    by_plate: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        for plate in result["plates"]:
            by_plate.setdefault(plate, []).append(result)
    for plate, parts in sorted(by_plate.items()):
        staged = [partition_dir(Path(r["staging"]), plate) for r in parts]
        final = partition_dir(table_root, plate)
        if len(staged) == 1 and (mode == "replace-plates" or not final.exists()):
            # The common case (one source per plate, a new plate): a rename.
            _check_schema_against_siblings(table_root, plate, staged[0] / DATA_FILE)
            if final.exists():
                changes.rows_removed += sum(pq_rows(f) for f in partition_files(table_root, plate))
                changes.keys_replaced += 1
                old = table_root / f".old-{uuid.uuid4().hex}"
                final.rename(old)
                staged[0].rename(final)
                shutil.rmtree(old)
            else:
                images = parts[0]["images"].get(plate)
                changes.keys_added += images.height if images is not None else 0
                staged[0].rename(final)
            continue
        files = [f for folder in staged for f in sorted(folder.glob(DATA_GLOB))]
        record = read_marker(final) or {}
        before = (record.get("parameters") or {}) if mode != "replace-plates" else {}
        sources = [
            *(before.get("sources") or ([before["source"]] if before.get("source") else [])),
            *(_source_key(r["source"]) for r in parts),
        ]
        params = {**parameters, "sources": sorted(set(sources))}
        write_plate_partition(
            table_root,
            plate,
            (batch for f in files for batch in _file_batches(f)),
            step=STEP,
            parameters=params,
            replace_keys=None if mode == "replace-plates" else _image_keys(parts, plate),
            changes=changes,
        )


def _write_images(store: Store, results: list[dict[str, Any]]) -> None:
    """Write every image the sources read to the ``images`` table, as :func:`ingest` does.

    Empty sites are among them (they have no cells to show them); only the
    stored rows of the same (plate, well, site) are replaced.
    """
    from cellframe.columns import SITE, WELL

    parts = [r for r in results if r["image_rows"] is not None and r["image_rows"].height]
    if not parts:
        return
    store.write(
        "images",
        pl.concat([r["image_rows"] for r in parts], how="vertical_relaxed"),
        replace_keys=[PLATE, WELL, SITE],
        step=STEP,
        source=", ".join(r["source"] for r in parts)[:1000],
    )


def _image_keys(parts: list[dict[str, Any]], plate: str) -> list[str]:
    """The image key columns (within a plate) of the staged sources of ``plate``."""
    for result in parts:
        if plate in result["images"]:
            return list(result["images"][plate].columns)
    return []


def _file_batches(path: Path) -> Any:
    import pyarrow.parquet as pq

    yield from pq.ParquetFile(path).iter_batches(batch_size=65_536)


def pq_rows(path: Path) -> int:
    """Rows of one Parquet file (from its footer)."""
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def ingest_plates(
    sources: Sequence[str | os.PathLike[str]],
    store: Store,
    *,
    table: str = "cells",
    platemap: str | os.PathLike[str] | pl.DataFrame | None = None,
    annotations: str | os.PathLike[str] | pl.DataFrame | None = None,
    format: str = "auto",
    engine: Engine | str = "local",
    progress: bool = True,
    mode: str = "replace-images",
    reading: ReadOptions | None = None,
) -> IngestPlatesReport:
    """Ingest several sources into one per-plate Parquet table, locally or on Ray.

    Parameters
    ----------
    sources : sequence of path
        Files or folders: whole plates, or sites or wells of plates (a plate
        may be spread over several sources, an image may not).
    store : Store
        Destination store; ``table`` becomes (or must already be) a
        partitioned view.
    table : str, default "cells"
    platemap, annotations : path or polars.DataFrame, optional
        As in :func:`cellframe.io.ingest`.
    format : str, default "auto"
        Format of every source (see :data:`cellframe.io.FORMATS`).
    engine : LocalEngine, RayEngine, "local" or "ray", default "local"
        The local engine reads the sources one after another in this
        process; Ray runs one task per source (``RayEngine(address=...)`` for
        a cluster; ``RayEngine(force=True)`` re-reads sources already
        committed by an earlier run). Both commit the same way.
    progress : bool, default True
    mode : {"replace-images", "append", "replace-plates"}, default "replace-images"
        As in :func:`cellframe.io.ingest`: replace the stored rows of the
        images the sources hold (other images stay); refuse if any is stored;
        or replace the sources' plates whole.
    reading : ReadOptions, optional
        How every source is read: batch size, staging memory limit and (for
        CellProfiler sources) the compartments to join.

    Relative source paths are resolved against this process's working
    folder before any task starts, so Ray workers (whose working folder may
    differ) read the files named here.

    Besides the single cells, every image read (empty sites included, with
    no cells) is written to the store's ``images`` table, replacing only the
    stored rows of the same (plate, well, site), as :func:`cellframe.io.ingest`
    does. With a platemap, the data wells it lacks and its wells without
    data are named in the warnings (counts and the first few wells).

    Returns
    -------
    IngestPlatesReport

    Raises
    ------
    InvalidInputError
        If no source is given, ``table`` is a native table, ``mode`` is
        unknown, ``compartments`` is given for a source that is not
        CellProfiler output, or two sources hold the same image (nothing is
        written).
    KeyConflictError
        If ``mode="append"`` and an image is already stored (nothing is written).
    FileNotFoundError
        If a source does not exist (nothing is written).
    EngineUnavailableError
        If Ray cannot be reached.
    cellframe.partitions.PartitionVersionError
        If a complete partition was written by another cellframe version.

    Examples
    --------
    Two small CellProfiler-like plates, read on the local engine:

    >>> from pathlib import Path
    >>> from cellframe.io._synthetic import write_synthetic_sqlite
    >>> from cellframe.store import Store
    >>> Path("screen").mkdir()
    >>> for plate in ("P1", "P2"):
    ...     _ = write_synthetic_sqlite(f"screen/{plate}.sqlite", n_cells=100, n_features=3,
    ...                                cells_per_image=50, plate=plate)
    >>> store = Store("screen.duckdb")
    >>> report = ingest_plates(sorted(Path("screen").glob("*.sqlite")), store, progress=False)
    >>> print(report)
    ingested 200 rows from 2 source(s) into 'cells' (local engine): 2 plate(s) written
    4 image(s) added, 0 replaced (0 stored rows replaced)
    >>> store.plates("cells")
    ['P1', 'P2']

    The same on a Ray cluster, one task per source (skipped here: needs a
    running Ray cluster):

    >>> from cellframe.engine import RayEngine
    >>> report = ingest_plates(sorted(Path("screen").glob("*.sqlite")), store,
    ...                        engine=RayEngine(address="auto"))  # doctest: +SKIP
    """
    from cellframe.io.ingest import (
        MODES,
        IngestWarning,
        _platemap_with_messages,
        unmatched_message,
        write_platemap,
    )
    from cellframe.io.platemap import well_coverage_messages

    engine = resolve_engine(engine)
    reading = reading if reading is not None else ReadOptions()
    batch_rows, memory_limit, compartments = (
        reading.batch_rows,
        reading.memory_limit,
        reading.compartments,
    )
    if mode not in MODES:
        raise InvalidInputError(
            f"unknown ingest mode {mode!r}; valid: {', '.join(repr(m) for m in MODES)}"
        )
    if not sources:
        raise InvalidInputError("no sources to ingest: pass one or more files or folders")
    keys = [_source_key(s) for s in sources]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise InvalidInputError(f"sources listed more than once: {twice}")
    missing = [str(s) for s, k in zip(sources, keys, strict=True) if not Path(k).exists()]
    if missing:
        # Checked here, in the caller's working folder, before any task starts.
        raise FileNotFoundError(
            f"no such file or folder: {', '.join(missing[:5])}"
            + (f" (and {len(missing) - 5} more)" if len(missing) > 5 else "")
            + f" (relative to {Path.cwd()}); nothing was written"
        )
    if store.has_table(table) and store.partition_root(table) is None:
        raise InvalidInputError(
            f"{table!r} is a native table in {store.path}; per-plate ingest writes Parquet "
            "partitions: choose another table name or ingest with cellframe.io.ingest"
        )
    report = IngestPlatesReport(table=table, engine=engine.name)
    pm, pm_messages = _platemap_with_messages(platemap, annotations)
    options = {
        "format": format,
        "batch_rows": batch_rows,
        "memory_limit": memory_limit,
        "compartments": None if compartments is None else list(compartments),
    }
    parameters = {
        "platemap": None if platemap is None else str(platemap)[:200],
        "annotations": None if annotations is None else str(annotations)[:200],
        "layout": "parquet",
        "mode": mode,
        "engine": engine.name,
        "compartments": options["compartments"],
    }
    table_root = store.parts_dir / table
    new_folders = [p for p in (table_root.parent, table_root) if not p.exists()]
    table_root.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(table_root)
    # Absolute paths (resolved here, on the driver): a Ray worker's working
    # folder is not the caller's.
    todo = list(keys)
    if engine.name == "ray":
        done = _complete_sources(table_root)
        todo = []
        for source, key in zip(sources, keys, strict=True):
            if key in done and not getattr(engine, "force", False):
                for plate in done[key]:
                    check_partition_version(table_root, plate, STEP)
                report.skipped_sources.append(str(source))
                report.skipped += [p for p in done[key] if p not in report.skipped]
            else:
                todo.append(key)
    staging = table_root / f".tmp-staging-{uuid.uuid4().hex}"
    results: list[dict[str, Any]] = []
    try:
        folders = {str(s): str(staging / str(i)) for i, s in enumerate(todo)}
        if engine.name == "local":
            for source in progress_bar(todo, desc="ingest", unit="source", enabled=progress):
                results.append(
                    _ingest_source(
                        str(source), folders[str(source)], table, pm, options, parameters
                    )
                )
        else:
            ray = connect_ray(getattr(engine, "address", None))
            task = ray.remote(max_retries=MAX_RETRIES)(_ingest_source)
            pm_ref = ray.put(pm)
            bar = progress_bar(
                range(len(todo)), desc="ingest (ray)", unit="source", enabled=progress
            )
            for _, result in run_tasks(
                ray,
                [str(s) for s in todo],
                lambda source: task.remote(
                    source, folders[source], table, pm_ref, options, parameters
                ),
                describe=lambda source: f"while ingesting {source} (Ray engine)",
                bar=bar,
            ):
                results.append(result)
        _check_images(results)
        if mode == "append":
            _check_append(table_root, results)
        changes = WriteChanges()
        _commit(table_root, results, mode, parameters, changes)
        _drop_empty_sites(table_root, results, mode, parameters, changes)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in reversed(new_folders):  # leave no trace of a refused run
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    shutil.rmtree(staging, ignore_errors=True)
    for result in results:
        report.rows += result["rows"]
        report.computed += [p for p in result["plates"] if p not in report.computed]
        report.sources.append(result["source"])
        report.warnings += [f"{result['source']}: {w}" for w in result["warnings"]]
    wells = [r["wells"] for r in results if r["wells"] is not None]
    unmatched = sum(r["unmatched"] for r in results)
    if pm is not None and wells:
        report.warnings += well_coverage_messages(pl.concat(wells).unique(), pm, n_rows=unmatched)
    elif unmatched:
        report.warnings.append(unmatched_message(unmatched))
    report.warnings = pm_messages + report.warnings
    report.images_added = changes.keys_added
    report.images_replaced = changes.keys_replaced
    report.rows_replaced = changes.rows_removed
    remove_stale_temporaries(table_root)
    has_plates = any(table_root.glob(f"*/{MARKER}"))
    if not has_plates and not any(r.get("empty") is not None for r in results):
        raise InvalidInputError(f"no plate was written under {table_root}")
    if has_plates:
        # Sources of empty sites only, into a new table, write no cells (no table).
        store.register_partitions(table)
        store.record_provenance(
            table,
            STEP,
            {**parameters, "plates": report.computed, "sources": report.sources},
            n_rows=report.rows,
            source=", ".join(report.sources)[:1000] or None,
        )
    if pm is not None and report.computed:
        write_platemap(store, pm, sorted(report.computed), platemap)
    _write_images(store, results)
    for message in report.warnings:
        warnings.warn(message, IngestWarning, stacklevel=2)
    return report
