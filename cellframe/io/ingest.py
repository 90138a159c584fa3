"""``ingest``: read any supported source and write it to a store, one transaction per table."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from cellframe.columns import METADATA_PREFIX, PLATE, SITE, WELL, feature_columns
from cellframe.errors import InvalidInputError, UnknownFormatError
from cellframe.io._base import Reader
from cellframe.io.cellprofiler_csv import TABLE_FILES, CellProfilerCSV, find_table_folders
from cellframe.io.cellprofiler_sqlite import CellProfilerSQLite, is_sqlite
from cellframe.io.deepprofiler import DeepProfilerNPZ
from cellframe.io.incarta import InCartaCSV, is_incarta_csv
from cellframe.io.platemap import annotate, read_platemap
from cellframe.io.profiles import ProfilesFile
from cellframe.store import Store

#: Format names accepted by :func:`ingest` and the reader of each (aliases included).
FORMATS: dict[str, type[Reader]] = {
    "cellprofiler_csv": CellProfilerCSV,
    "cellprofiler_sqlite": CellProfilerSQLite,
    "cytominer_sqlite": CellProfilerSQLite,
    "profiles": ProfilesFile,
    "parquet": ProfilesFile,
    "csv": ProfilesFile,
    "deepprofiler": DeepProfilerNPZ,
    "incarta": InCartaCSV,
}

#: Default table for each level of data a reader yields.
DEFAULT_TABLES = {"cell": "cells", "image": "image_profiles"}


class IngestWarning(UserWarning):
    """A recoverable problem met while ingesting (the message gives counts)."""


@dataclass
class IngestReport:
    """What :func:`ingest` wrote.

    Attributes
    ----------
    table : str
        Table written.
    source : str
        The file or folder read.
    format : str
        Format it was read as.
    plates : list of str
        Plates written (each replaced any rows it had before).
    rows : int
        Rows written.
    n_features, n_metadata : int
        Feature and ``Metadata_*`` columns of the rows.
    warnings : list of str
        Recoverable problems (also issued as :class:`IngestWarning`).
    seconds : float
        Wall time.
    """

    table: str
    source: str
    format: str
    plates: list[str] = field(default_factory=list)
    rows: int = 0
    n_features: int = 0
    n_metadata: int = 0
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def __str__(self) -> str:
        lines = [
            f"ingested {self.rows:,} rows from {self.source} ({self.format}) into table "
            f"{self.table!r}: {len(self.plates)} plate(s), {self.n_features:,} features, "
            f"{self.n_metadata} metadata columns, in {self.seconds:.1f} s",
        ]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def _has(path: Path, predicate: Callable[[Path], bool], pattern: str = "*") -> bool:
    return any(predicate(p) for p in path.rglob(pattern) if p.is_file())


def detect_format(path: str | os.PathLike[str]) -> str:
    """Name the format of a file or folder (a key of :data:`FORMATS`).

    Parameters
    ----------
    path : str or os.PathLike
        A SQLite file, a CellProfiler CSV folder, a Parquet/CSV profile file,
        DeepProfiler ``.npz`` files or IN Carta CSVs.

    Returns
    -------
    str

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    UnknownFormatError
        If the format cannot be told; the message lists what is supported.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such file or folder: {p}")
    name = p.name.lower()
    if p.is_file():
        if is_sqlite(p):
            return "cellprofiler_sqlite"
        if name.endswith(".npz"):
            return "deepprofiler"
        if name.endswith((".parquet", ".pq")):
            return "profiles"
        if name in TABLE_FILES:
            return "cellprofiler_csv"
        if name.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt")):
            return "incarta" if is_incarta_csv(p) else "profiles"
    else:
        if next(p.rglob("*.npz"), None) is not None:
            return "deepprofiler"
        if find_table_folders(p):
            return "cellprofiler_csv"
        if _has(p, is_incarta_csv, "*.csv"):
            return "incarta"
        sqlite = [f for f in p.rglob("*") if f.is_file() and is_sqlite(f)]
        if sqlite:
            raise UnknownFormatError(
                f"{p} holds SQLite files ({', '.join(f.name for f in sqlite[:3])}); "
                "ingest each file on its own"
            )
        if _has(p, lambda f: f.name.lower().endswith((".parquet", ".csv", ".csv.gz"))):
            return "profiles"
    raise UnknownFormatError(
        f"cannot tell the format of {p}; supported: CellProfiler SQLite (.sqlite), CellProfiler "
        "CSV folders (Image.csv, Cells.csv, ...), CytoTable/pycytominer Parquet or CSV, "
        "DeepProfiler .npz, IN Carta CSV; pass format= one of "
        f"{sorted(FORMATS)}"
    )


def resolve_reader(format: str | type[Reader], path: str | os.PathLike[str]) -> type[Reader]:
    """The reader class for a format name (or ``"auto"``), or a reader class itself."""
    if isinstance(format, type) and issubclass(format, Reader):
        return format
    if format == "auto":
        format = detect_format(path)
    try:
        return FORMATS[str(format)]
    except KeyError:
        raise InvalidInputError(
            f"unknown format {format!r}; valid: 'auto', {', '.join(repr(f) for f in sorted(FORMATS))}"
        ) from None


def platemap_frame(
    platemap: str | os.PathLike[str] | pl.DataFrame | None,
    annotations: str | os.PathLike[str] | pl.DataFrame | None,
) -> pl.DataFrame | None:
    """The platemap (joined to its annotations) as one frame, or None."""
    if platemap is None:
        if annotations is not None:
            raise InvalidInputError("annotations= needs a platemap= to join to")
        return None
    if isinstance(platemap, pl.DataFrame) and WELL in platemap.columns and annotations is None:
        return platemap
    return read_platemap(platemap, annotations=annotations)


def ingest(
    source: str | os.PathLike[str],
    store: Store | str | os.PathLike[str],
    *,
    table: str | None = None,
    platemap: str | os.PathLike[str] | pl.DataFrame | None = None,
    annotations: str | os.PathLike[str] | pl.DataFrame | None = None,
    format: str | type[Reader] = "auto",
    plate: str | None = None,
    well: str | None = None,
    progress: bool = True,
    batch_rows: int | None = None,
    in_memory: bool | None = None,
    staging_dir: str | os.PathLike[str] | None = None,
    memory_limit: str = "512MB",
    layout: str = "auto",
    compartments: Sequence[str] | None = None,
) -> IngestReport:
    """Read single cells (or image profiles) from ``source`` and write them to a store.

    The rows stream from the reader into :meth:`Store.write` batch by batch,
    in one transaction with ``replace_plate=True``: re-ingesting a plate
    replaces its rows and never duplicates them, and an error (or a killed
    process) leaves the store exactly as it was.

    Parameters
    ----------
    source : str or os.PathLike
        File or folder to read (see :func:`detect_format`).
    store : Store, str or os.PathLike
        An open store, or the path of a DuckDB file to open (and close).
    table : str, optional
        Destination table (default ``"cells"``; ``"image_profiles"`` for
        sources with image-level measurements only).
    platemap : str, os.PathLike or polars.DataFrame, optional
        Platemap joined on plate and well (see :func:`read_platemap`); its
        rows for the ingested plates are also written to the ``platemap`` table.
    annotations : str, os.PathLike or polars.DataFrame, optional
        Perturbation table joined to the platemap (see :func:`read_platemap`).
    format : str or Reader subclass, default "auto"
        One of :data:`FORMATS`, or ``"auto"`` to detect it.
    plate : str, optional
        Plate name for every row (replaces the source's plate column; needed
        where the source has none).
    well : str, optional
        Well for sources without one (a single-image CellProfiler run).
    progress : bool, default True
        Show progress bars.
    batch_rows : int, optional
        Rows per batch (default: about 64 MB of features).
    in_memory : bool, optional
        Join CellProfiler compartments in memory (small sources) or through a
        temporary DuckDB database (streams; the default for sources over 128 MB).
    staging_dir : str or os.PathLike, optional
        Folder for that temporary database (default: the system temp folder).
    memory_limit : str, default "512MB"
        DuckDB memory limit of the temporary database, and of the store when
        ``store`` is a path.
    layout : {"auto", "table", "parquet"}, default "auto"
        ``"table"``: rows go into a DuckDB table in the store file (one
        transaction for the whole source). ``"parquet"``: one zstd Parquet
        file per plate beside the store, registered as a view
        (:meth:`Store.write_partition`; each plate is replaced atomically).
        ``"parquet"`` is the layout for large screens: DuckDB keeps a
        transaction's new rows in memory until it commits (about 0.9 GB
        for 40,000 cells x 1,000 Float32 features), while a Parquet file is
        written in bounded row groups, so memory stays flat however large
        the plate. ``"auto"`` keeps the layout of an existing table, and
        otherwise picks ``"parquet"`` for single cells from sources over
        1 GiB and ``"table"`` for the rest.
    compartments : sequence of str, optional
        CellProfiler sources: the compartments to join (of Cells, Cytoplasm,
        Nuclei). Default: all three for SQLite (a file without one is
        refused), those present for CSV trees.

    Returns
    -------
    IngestReport

    Raises
    ------
    UnknownFormatError
        If the source is in no supported format.
    MissingColumnsError
        If key columns (plate, well, image or object numbers) are missing.
    InvalidInputError
        If a feature column holds text, or the source is inconsistent.
    EmptyInputError
        If the source holds no rows.
    StoreLockedError
        If another process holds the store.
    SchemaMismatchError
        If the table exists with other columns.

    Warns
    -----
    IngestWarning
        NaN/inf values stored as null (with counts), empty files skipped,
        objects without partners in other compartments, wells missing from
        the platemap.

    Examples
    --------
    >>> report = ingest("plate1.sqlite", "screen.duckdb")   # doctest: +SKIP
    >>> print(report)                                        # doctest: +SKIP
    """
    t0 = time.perf_counter()
    reader_cls = resolve_reader(format, source)
    options: dict[str, Any] = {} if compartments is None else {"compartments": compartments}
    if options and not issubclass(reader_cls, (CellProfilerCSV, CellProfilerSQLite)):
        raise InvalidInputError(
            f"compartments= applies to CellProfiler CSV and SQLite sources, not {source} "
            f"({reader_cls.format})"
        )
    reader = reader_cls(
        source,
        **options,
        plate=plate,
        well=well,
        batch_rows=batch_rows,
        progress=progress,
        staging_dir=staging_dir,
        memory_limit=memory_limit,
        in_memory=in_memory,
    )
    table = table or DEFAULT_TABLES[reader.level]
    pm = platemap_frame(platemap, annotations)
    report = IngestReport(table=table, source=str(source), format=reader_cls.format)
    state: dict[str, Any] = {"plates": set(), "unmatched": 0, "columns": None}

    # Lazy: nothing is read until a writer consumes it.
    rows = annotated_batches(reader, pm, state, table=table, progress=progress)
    parameters: Mapping[str, Any] = {
        "format": reader_cls.format,
        "plate": plate,
        "well": well,
        "platemap": _describe(platemap),
        "annotations": _describe(annotations),
        "layout": layout,
        **options,
    }
    if layout not in ("auto", "table", "parquet"):
        raise InvalidInputError(f"layout must be 'auto', 'table' or 'parquet', not {layout!r}")
    own = not isinstance(store, Store)
    st = Store(store, memory_limit=memory_limit) if own else store
    try:
        if layout == "auto":
            layout = _auto_layout(st, table, reader.level, Path(source))
            parameters = {**parameters, "layout": layout}
        if layout == "table":
            n = st.write(
                table,
                rows,
                replace_plate=True,
                step="ingest",
                parameters=parameters,
                source=str(source),
            )
        else:
            n = 0
            for plate_name, run in plate_runs(rows, source):
                n += st.write_partition(
                    table, plate_name, run, step="ingest", parameters=parameters, source=str(source)
                )
        report.rows = n
        report.plates = sorted(state["plates"])
        cols: list[str] = state["columns"] or []
        # The schema of the rows read (reading the table's would open every
        # Parquet footer of a partitioned table).
        schema = state.get("schema") or pl.Schema()
        report.n_features = len(feature_columns(schema))
        report.n_metadata = sum(c.startswith(METADATA_PREFIX) for c in cols)
        if pm is not None and report.plates:
            write_platemap(st, pm, report.plates, platemap)
        images = reader.image_rows()
        if images is not None and images.height:
            # Every image read, empty sites included (they have no cells to show them).
            st.write(
                "images",
                images,
                replace_keys=[PLATE, WELL, SITE],
                step="ingest",
                source=str(source),
            )
    finally:
        if own:
            st.close()
    messages = reader.issues.summary()
    if state["unmatched"]:
        messages.append(unmatched_message(state["unmatched"]))
    for message in messages:
        warnings.warn(message, IngestWarning, stacklevel=2)
    report.warnings = messages
    report.seconds = time.perf_counter() - t0
    return report


#: Single-cell sources larger than this go to per-plate Parquet under layout="auto".
AUTO_PARQUET_BYTES = 2**30


def _auto_layout(store: Store, table: str, level: str, source: Path) -> str:
    """The layout ``layout="auto"`` picks (see :func:`ingest`)."""
    if store.has_table(table):
        return "parquet" if store.partition_root(table) is not None else "table"
    if level != "cell":
        return "table"
    size = (
        source.stat().st_size
        if source.is_file()
        else sum(p.stat().st_size for p in source.rglob("*") if p.is_file())
    )
    return "parquet" if size > AUTO_PARQUET_BYTES else "table"


def annotated_batches(
    reader: Reader,
    platemap: pl.DataFrame | None,
    state: dict[str, Any],
    *,
    table: str,
    progress: bool = True,
) -> Iterator[pl.DataFrame]:
    """A reader's batches, joined to the platemap and aligned to the first batch's columns.

    ``state`` collects what was seen: ``plates`` (a set), ``unmatched`` (rows
    in wells the platemap lacks), ``columns`` (of the first batch).
    """
    from cellframe._progress import progress as bar

    state.setdefault("plates", set())
    state.setdefault("unmatched", 0)
    state.setdefault("columns", None)
    for frame in bar(reader.batches(), desc=f"ingesting {table}", unit="batch", enabled=progress):
        if platemap is not None:
            if PLATE in platemap.columns:
                known = platemap.select(PLATE, WELL).unique()
                missing = frame.select(PLATE, WELL).join(known, on=[PLATE, WELL], how="anti")
            else:
                missing = frame.select(WELL).filter(~pl.col(WELL).is_in(platemap[WELL].to_list()))
            state["unmatched"] += missing.height
            frame = _metadata_first(annotate(frame, platemap))
        frame = _align(frame, state)
        state["plates"].update(frame[PLATE].unique().to_list())
        yield frame


def unmatched_message(n: int) -> str:
    """The warning for ``n`` rows in wells the platemap does not list."""
    return f"{n} row(s) are in wells the platemap does not list; their annotation columns are null"


def plate_runs(
    frames: Iterator[pl.DataFrame], source: object
) -> Iterator[tuple[str, Iterator[pl.DataFrame]]]:
    """Split a stream of batches into one stream per plate (plates must come one after another)."""
    parts = (part for frame in frames for part in frame.partition_by(PLATE, maintain_order=True))
    state: dict[str, Any] = {"next": next(parts, None)}
    done: set[str] = set()
    while state["next"] is not None:
        plate = str(state["next"][PLATE][0])
        if plate in done:
            raise InvalidInputError(
                f"{source}: the rows of plate {plate!r} are not contiguous, which the per-plate "
                "Parquet layout needs; ingest with layout='table', or one plate at a time"
            )

        def run(plate: str = plate) -> Iterator[pl.DataFrame]:
            while state["next"] is not None and str(state["next"][PLATE][0]) == plate:
                yield state["next"]
                state["next"] = next(parts, None)

        yield plate, run()
        done.add(plate)


def _describe(value: object) -> str | None:
    if value is None:
        return None
    return "DataFrame" if isinstance(value, pl.DataFrame) else str(value)


def _metadata_first(frame: pl.DataFrame) -> pl.DataFrame:
    from cellframe.io._normalize import order_columns

    return order_columns(frame)


def _align(frame: pl.DataFrame, state: dict[str, Any]) -> pl.DataFrame:
    """Give every batch of one ingest the columns of the first (missing ones null)."""
    cols: list[str] | None = state["columns"]
    if cols is None:
        state["columns"] = list(frame.columns)
        state["schema"] = frame.schema
        return frame
    if frame.columns == cols:
        return frame
    schema = state["schema"]
    missing = [pl.lit(None, schema[c]).alias(c) for c in cols if c not in frame.columns]
    extra = [c for c in frame.columns if c not in set(cols)]
    out = frame.with_columns(missing) if missing else frame
    return out.select([*cols, *extra])


def write_platemap(
    store: Store,
    pm: pl.DataFrame,
    plates: list[str],
    source: Any,
) -> None:
    """Write the platemap rows of ``plates`` to the store's ``platemap`` table."""
    if PLATE in pm.columns:
        rows = pm.filter(pl.col(PLATE).is_in(plates))
    else:
        rows = pl.DataFrame({PLATE: plates}).join(pm, how="cross")
    if rows.height == 0:
        return
    store.write(
        "platemap",
        rows,
        replace_plate=True,
        new_columns="add",
        step="ingest_platemap",
        source=None if isinstance(source, pl.DataFrame) else str(source),
    )


__all__ = ["FORMATS", "IngestReport", "IngestWarning", "detect_format", "ingest", "resolve_reader"]
