"""``ingest``: read any supported source and write it to a store, one transaction per table."""

from __future__ import annotations

import itertools
import numbers
import os
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import polars as pl

from cellframe.columns import METADATA_PREFIX, PLATE, SITE, WELL, feature_columns
from cellframe.errors import (
    REPLACE_IMAGES_HINT,
    InvalidInputError,
    KeyConflictError,
    UnknownFormatError,
    key_example,
)
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

#: Write modes of :func:`ingest`, the safe one first (the default).
MODES = ("replace-images", "append", "replace-plates")

#: The columns that identify an image, in the order they are looked for.
IMAGE_KEYS = (PLATE, WELL, SITE)


def image_key_columns(columns: list[str]) -> list[str]:
    """The columns identifying an image among ``columns``: plate, well and site.

    ``Metadata_ImageNumber`` is not used: CellProfiler numbers images per run,
    so every per-site or per-well output folder starts again at 1 and two
    folders' images could not be told apart. Rows without a site column are
    keyed by plate and well, rows without a well by plate. The plate is always
    part of the key (a write then needs the column), so a replacement never
    reaches into another plate.

    Examples
    --------
    >>> image_key_columns(["Metadata_Plate", "Metadata_Well", "Metadata_Site", "f"])
    ['Metadata_Plate', 'Metadata_Well', 'Metadata_Site']
    >>> image_key_columns(["Metadata_Plate", "Metadata_Well", "f"])
    ['Metadata_Plate', 'Metadata_Well']
    """
    return [PLATE, *(c for c in IMAGE_KEYS[1:] if c in columns)]


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
        Plates written to.
    rows : int
        Rows written (or, for a dry run, that would be written).
    mode : str
        Write mode (see :func:`ingest`).
    dry_run : bool
        Whether nothing was written (the counts say what would be).
    images_added : int
        Images (plate, well, site) the store did not hold before.
    images_replaced : int
        Images the store held whose rows were replaced by the source's. A dry
        run with ``mode="replace-plates"`` counts every stored image of the
        source's plates.
    plates_replaced : int
        ``mode="replace-plates"``: stored plates whose rows were all replaced.
    rows_replaced : int
        Stored rows deleted by the replacement.
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
    mode: str = "replace-images"
    dry_run: bool = False
    images_added: int = 0
    images_replaced: int = 0
    plates_replaced: int = 0
    rows_replaced: int = 0
    n_features: int = 0
    n_metadata: int = 0
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def __str__(self) -> str:
        if self.dry_run:
            lines = [
                f"dry run, nothing written: {self.source} ({self.format}) holds {self.rows:,} "
                f"rows of {len(self.plates)} plate(s) ({', '.join(self.plates)}), "
                f"{self.n_features:,} features",
                f"mode {self.mode}: would add {self.images_added:,} image(s) and replace "
                f"{self.images_replaced:,} stored image(s)"
                + (
                    f" of {self.plates_replaced:,} plate(s)"
                    if self.mode == "replace-plates"
                    else ""
                )
                + f" ({self.rows_replaced:,} stored rows) in table {self.table!r}",
            ]
            if self.mode == "append" and self.images_replaced:
                lines.append(
                    f"append would be refused: {self.images_replaced:,} image(s) are already "
                    "stored (use --mode replace-images to replace them)"
                )
        else:
            lines = [
                f"ingested {self.rows:,} rows from {self.source} ({self.format}) into table "
                f"{self.table!r}: {len(self.plates)} plate(s), {self.n_features:,} features, "
                f"{self.n_metadata} metadata columns, in {self.seconds:.1f} s",
                f"mode {self.mode}: "
                + (
                    f"{self.plates_replaced:,} plate(s) replaced"
                    if self.mode == "replace-plates"
                    else f"{self.images_added:,} image(s) added, {self.images_replaced:,} replaced"
                )
                + f" ({self.rows_replaced:,} stored rows replaced)",
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

    Examples
    --------
    >>> import polars as pl
    >>> from cellframe.demo import demo_data_dir
    >>> detect_format(demo_data_dir() / "cellprofiler" / "BR00121431")
    'cellprofiler_csv'
    >>> pl.DataFrame({"Metadata_Plate": ["P1"], "f": [1.0]}).write_parquet("wells.parquet")
    >>> detect_format("wells.parquet")
    'profiles'
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


@dataclass(frozen=True)
class IngestOptions:
    """How :func:`ingest` reads its source: format, naming, batching and staging.

    Parameters
    ----------
    format : str or Reader subclass, default "auto"
        One of :data:`FORMATS`, or ``"auto"`` to detect it.
    plate : str, optional
        Plate name for every row (replaces the source's plate column; needed
        where the source has none).
    well : str, optional
        Well for sources without one (a single-image CellProfiler run).
    batch_rows : int, optional
        Rows per batch (default: about 64 MB of features).
    in_memory : bool, optional
        Join CellProfiler compartments in memory (small sources) or through a
        temporary DuckDB database (streams; the default for sources over 128 MB).
    staging_dir : str or os.PathLike, optional
        Folder for that temporary database (default: the system temp folder).
    memory_limit : str, default "512MB"
        DuckDB memory limit of the temporary database, and of the store when
        :func:`ingest` opens it from a path.
    reader_options : mapping, optional
        Options only one reader has, e.g. ``{"case_duplicates": "rename"}``
        for profile files (see :class:`~cellframe.io.ProfilesFile`).
    compartments : sequence of str, optional
        CellProfiler sources: the compartments to join (of Cells, Cytoplasm,
        Nuclei). Default: all three for SQLite (a file without one is
        refused), those present for CSV trees.

    Raises
    ------
    InvalidInputError
        For a ``batch_rows`` that is not a positive integer, or
        ``compartments`` given as one string.

    Examples
    --------
    >>> IngestOptions(format="cellprofiler_sqlite", compartments=["Cells", "Nuclei"]).plate is None
    True
    """

    format: str | type[Reader] = "auto"
    plate: str | None = None
    well: str | None = None
    batch_rows: int | None = None
    in_memory: bool | None = None
    staging_dir: str | os.PathLike[str] | None = None
    memory_limit: str = "512MB"
    reader_options: Mapping[str, Any] | None = None
    compartments: Sequence[str] | None = None

    def __post_init__(self) -> None:
        if self.batch_rows is not None and (
            isinstance(self.batch_rows, bool)
            or not isinstance(self.batch_rows, numbers.Integral)
            or self.batch_rows < 1
        ):
            raise InvalidInputError(
                f"IngestOptions: batch_rows must be a positive integer or None (automatic), "
                f"got {self.batch_rows!r}"
            )
        if isinstance(self.compartments, str):
            raise InvalidInputError(
                f"IngestOptions: compartments must be a sequence of names, got the string "
                f"{self.compartments!r}; write compartments=[{self.compartments!r}]"
            )


def ingest(
    source: str | os.PathLike[str],
    store: Store | str | os.PathLike[str],
    *,
    table: str | None = None,
    platemap: str | os.PathLike[str] | pl.DataFrame | None = None,
    annotations: str | os.PathLike[str] | pl.DataFrame | None = None,
    options: IngestOptions | None = None,
    progress: bool = True,
    layout: str = "auto",
    mode: str = "replace-images",
    dry_run: bool = False,
) -> IngestReport:
    """Read single cells (or image profiles) from ``source`` and write them to a store.

    The rows stream from the reader into :meth:`Store.write` batch by batch,
    in one transaction. Which stored rows the new ones replace is ``mode``'s
    choice; by default exactly the images (plate, well, site) in ``source``,
    so ingesting a plate's sites one folder at a time gives the same table
    as one ingest of the whole plate, and re-ingesting never duplicates. An
    error (or a killed process) leaves the store exactly as it was.

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
    options : IngestOptions, optional
        How the source is read: format, plate and well names, batch size,
        staging of CellProfiler joins, memory limit, reader-specific options
        and compartments; ``IngestOptions()`` (format detected) by default.
    progress : bool, default True
        Show progress bars.
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
    mode : {"replace-images", "append", "replace-plates"}, default "replace-images"
        ``"replace-images"``: the stored rows of every image in ``source`` are
        replaced; other images, wells and plates stay. ``"append"``: add the
        rows, and raise :class:`~cellframe.errors.KeyConflictError` (store
        unchanged) if any image of ``source`` is already stored.
        ``"replace-plates"``: every stored row of the plates in ``source`` is
        deleted first, including images the source does not hold.
        Images are identified by :func:`image_key_columns`.
    dry_run : bool, default False
        Read ``source`` and report what would be added and replaced (plates,
        images, rows) without writing anything; the store is opened
        read-only (and not created when absent).

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
        If a feature column holds text, the source is inconsistent, or
        ``mode`` is unknown.
    KeyConflictError
        If ``mode="append"`` and an image of ``source`` is already stored.
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
    options = IngestOptions() if options is None else options
    format, plate, well = options.format, options.plate, options.well
    batch_rows, in_memory, staging_dir = options.batch_rows, options.in_memory, options.staging_dir
    memory_limit, reader_options = options.memory_limit, options.reader_options
    compartments = options.compartments
    if mode not in MODES:
        raise InvalidInputError(
            f"unknown ingest mode {mode!r}; valid: {', '.join(repr(m) for m in MODES)}"
        )
    if layout not in ("auto", "table", "parquet"):
        raise InvalidInputError(f"layout must be 'auto', 'table' or 'parquet', not {layout!r}")
    reader_cls = resolve_reader(format, source)
    joined: dict[str, Any] = {} if compartments is None else {"compartments": compartments}
    if joined and not issubclass(reader_cls, (CellProfilerCSV, CellProfilerSQLite)):
        raise InvalidInputError(
            f"compartments= applies to CellProfiler CSV and SQLite sources, not {source} "
            f"({reader_cls.format})"
        )
    reader = reader_cls(
        source,
        **joined,
        plate=plate,
        well=well,
        batch_rows=batch_rows,
        progress=progress,
        staging_dir=staging_dir,
        memory_limit=memory_limit,
        in_memory=in_memory,
        **_reader_options(reader_cls, reader_options),
    )
    table = table or DEFAULT_TABLES[reader.level]
    pm, pm_messages = _platemap_with_messages(platemap, annotations)
    report = IngestReport(
        table=table, source=str(source), format=reader_cls.format, mode=mode, dry_run=dry_run
    )
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
        "mode": mode,
        **joined,
    }
    if dry_run:
        _dry_run(rows, store, report)
    else:
        _write(
            rows,
            store,
            report,
            parameters,
            source,
            reader.level,
            pm,
            platemap,
            memory_limit,
            state,
            reader.image_rows,
            lambda: reader.empty_images,
        )
    report.plates = sorted(state["plates"])
    cols: list[str] = state["columns"] or []
    # The schema of the rows read (reading the table's would open every
    # Parquet footer of a partitioned table).
    schema = state.get("schema") or pl.Schema()
    report.n_features = len(feature_columns(schema))
    report.n_metadata = sum(c.startswith(METADATA_PREFIX) for c in cols)
    messages = pm_messages + reader.issues.summary()
    if pm is not None and state.get("wells"):
        from cellframe.io.platemap import well_coverage_messages

        wells = pl.concat(state["wells"]).unique()
        messages += well_coverage_messages(wells, pm, n_rows=state["unmatched"])
    elif state["unmatched"]:
        messages.append(unmatched_message(state["unmatched"]))
    for message in messages:
        warnings.warn(message, IngestWarning, stacklevel=2)
    report.warnings = messages
    report.seconds = time.perf_counter() - t0
    return report


def _platemap_with_messages(
    platemap: str | os.PathLike[str] | pl.DataFrame | None,
    annotations: str | os.PathLike[str] | pl.DataFrame | None,
) -> tuple[pl.DataFrame | None, list[str]]:
    """:func:`platemap_frame`, its platemap warnings returned as report lines (others re-issued)."""
    from cellframe.io.platemap import PlatemapWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pm = platemap_frame(platemap, annotations)
    messages = []
    for w in caught:
        if issubclass(w.category, PlatemapWarning):
            messages.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return pm, messages


def _reader_options(reader_cls: type[Reader], options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``options``, checked against the parameters of ``reader_cls``."""
    import inspect

    if not options:
        return {}
    known = set(inspect.signature(reader_cls.__init__).parameters)
    unknown = sorted(set(options) - known)
    if unknown:
        raise InvalidInputError(
            f"the {reader_cls.format!r} reader has no option(s) {unknown}; "
            "drop them or pass format= for a reader that has them"
        )
    return dict(options)


def _peek(frames: Iterator[pl.DataFrame]) -> tuple[pl.DataFrame | None, Iterator[pl.DataFrame]]:
    """The first frame of a stream, and the whole stream (that frame included)."""
    first = next(frames, None)
    if first is None:
        return None, iter(())
    return first, itertools.chain([first], frames)


def _write(
    rows: Iterator[pl.DataFrame],
    store: Store | str | os.PathLike[str],
    report: IngestReport,
    parameters: Mapping[str, Any],
    source: str | os.PathLike[str],
    level: str,
    pm: pl.DataFrame | None,
    platemap: Any,
    memory_limit: str,
    state: dict[str, Any],
    image_rows: Callable[[], pl.DataFrame | None],
    empty_images: Callable[[], pl.DataFrame | None] = lambda: None,
) -> None:
    """Write the rows in ``report.mode`` and fill the report's counts.

    Images without objects (empty sites, ``empty_images``, known once the
    first frame is read) bring no rows, so their stored rows are handled
    here: ``append`` refuses them, ``replace-images`` deletes them (a site
    re-exported with zero objects loses its old cells).
    """
    from cellframe.partitions import WriteChanges

    mode = report.mode
    table = report.table
    layout = str(parameters["layout"])
    conflict: Literal["replace", "error"] = "error" if mode == "append" else "replace"
    own = not isinstance(store, Store)
    st = Store(store, memory_limit=memory_limit) if own else store
    try:
        if layout == "auto":
            layout = _auto_layout(st, table, level, Path(source))
            parameters = {**parameters, "layout": layout}
        first, rows = _peek(rows)
        keys = image_key_columns(list(first.columns) if first is not None else [])
        whole_plates = mode == "replace-plates"
        changes = WriteChanges()
        empty = empty_images()
        stored_empty = (
            _stored_empty_sites(st, table, empty, whole_plates)
            if empty is not None and empty.height and st.has_table(table)
            else None
        )
        if mode == "append" and stored_empty is not None and stored_empty.height:
            raise KeyConflictError(
                f"{source}: table {table!r} of {st.path} already holds rows of "
                f"{stored_empty.height} of the image(s) being appended, which now hold no "
                f"objects (empty sites; e.g. {key_example(stored_empty.row(0, named=True))}); "
                f"nothing was written. {REPLACE_IMAGES_HINT} of the source"
            )
        if first is None and empty is not None and empty.height:
            n = 0  # empty sites only: no cell rows (the table is not created)
        elif layout == "table":
            n = st.write(
                table,
                rows,
                replace_keys=[PLATE] if whole_plates else keys,
                conflict=conflict,
                step="ingest",
                parameters=parameters,
                source=str(source),
            )
            changes.add(st.last_write)
        else:
            n = 0
            for plate_name, run in plate_runs(rows, source):
                n += st.write_partition(
                    table,
                    plate_name,
                    run,
                    step="ingest",
                    parameters=parameters,
                    source=str(source),
                    replace_keys=None if whole_plates else keys,
                    conflict=conflict,
                )
                changes.add(st.last_write)
        report.rows = n
        if stored_empty is not None and whole_plates:
            # Plates whose rows were all replaced above are not deleted again.
            written = pl.Series(sorted(state["plates"]), dtype=pl.String)
            stored_empty = stored_empty.filter(~pl.col(PLATE).cast(pl.String).is_in(written))
        if stored_empty is not None and stored_empty.height:
            n_keys, n_removed = _drop_stored(st, table, layout, stored_empty, parameters)
            changes.keys_replaced += n_keys
            changes.rows_removed += n_removed
        if whole_plates:
            # The keys replaced are plates: each write counts whole plates.
            report.plates_replaced = changes.keys_replaced
        else:
            report.images_added = changes.keys_added
            report.images_replaced = changes.keys_replaced
        report.rows_replaced = changes.rows_removed
        if pm is not None and state["plates"]:
            write_platemap(st, pm, sorted(state["plates"]), platemap)
        images = image_rows()
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


def _stored_empty_sites(
    st: Store, table: str, empty: pl.DataFrame, whole_plates: bool
) -> pl.DataFrame:
    """Keys of ``table``'s stored rows that belong to the empty images ``empty``.

    With ``whole_plates`` the keys are plates; otherwise (plate, well, site),
    and none when the table lacks one of them (it cannot tell sites apart).
    """
    have = set(st.columns(table))
    keys = [PLATE] if whole_plates else [PLATE, WELL, SITE]
    if any(k not in have or k not in empty.columns for k in keys):
        return pl.DataFrame(schema={k: pl.String for k in keys})
    stored = st.scan(table, keys).unique().collect()
    drop = empty.select(keys).unique().cast(dict(stored.schema), strict=False)  # type: ignore[arg-type]
    return stored.join(drop, on=keys, how="semi", nulls_equal=True)


def _drop_stored(
    st: Store, table: str, layout: str, drop: pl.DataFrame, parameters: Mapping[str, Any]
) -> tuple[int, int]:
    """Delete ``table``'s rows of the keys in ``drop``; the images and rows deleted."""
    from cellframe.partitions import drop_plate_images
    from cellframe.store import quote_identifier

    if layout == "table":
        keys = drop.columns
        key_list = ", ".join(quote_identifier(k) for k in keys)
        name = f"_cf_drop_{uuid.uuid4().hex}"
        con = st.connection
        con.register(name, drop.to_arrow())
        try:
            deleted = con.execute(
                f"DELETE FROM {quote_identifier(table)} WHERE ({key_list}) IN "
                f"(SELECT ({key_list}) FROM {name})"
            ).fetchone()
        finally:
            con.unregister(name)
        return drop.height, int(deleted[0]) if deleted else 0
    root = st.parts_dir / table
    n_keys = n_rows = 0
    for (plate,), frame in drop.group_by(PLATE, maintain_order=True):
        k, r = drop_plate_images(
            root, str(plate), frame, step="ingest", parameters=dict(parameters)
        )
        n_keys += k
        n_rows += r
    st.register_partitions(table)
    return n_keys, n_rows


def _dry_run(
    rows: Iterator[pl.DataFrame],
    store: Store | str | os.PathLike[str],
    report: IngestReport,
) -> None:
    """Read the rows and count what :func:`ingest` would add and replace; write nothing."""
    counts: list[pl.DataFrame] = []
    keys: list[str] | None = None
    n_rows = 0
    for frame in rows:
        if keys is None:
            keys = image_key_columns(list(frame.columns))
        counts.append(frame.group_by(keys).len())
        n_rows += frame.height
    report.rows = n_rows
    if keys is None:
        return
    incoming = pl.concat(counts).group_by(keys).agg(pl.col("len").sum())
    plates = incoming[PLATE].unique().to_list()
    stored = _stored_image_rows(store, report.table, keys, plates)
    stored = stored.cast({k: incoming.schema[k] for k in keys})  # type: ignore[arg-type]
    hit = stored.join(incoming.select(keys), on=keys, how="semi", nulls_equal=True)
    if report.mode == "replace-plates":
        report.plates_replaced = stored[PLATE].n_unique()
        report.images_replaced = stored.height
        report.rows_replaced = int(stored["len"].sum())
        report.images_added = incoming.height - hit.height
    else:
        report.images_replaced = hit.height
        report.images_added = incoming.height - hit.height
        report.rows_replaced = int(hit["len"].sum())


def _stored_image_rows(
    store: Store | str | os.PathLike[str], table: str, keys: list[str], plates: list[str]
) -> pl.DataFrame:
    """Rows per image (``keys`` + ``len``) stored in ``table`` for ``plates``; read-only."""
    empty = pl.DataFrame(schema={**{k: pl.String for k in keys}, "len": pl.UInt32})
    if isinstance(store, Store):
        st, own = store, False
    elif Path(store).exists():
        st, own = Store(store, read_only=True), True
    else:
        return empty
    try:
        if not st.has_table(table):
            return empty
        have = st.columns(table)
        cols = [k for k in keys if k in have]
        lf = st.scan(table, cols).filter(pl.col(PLATE).is_in(plates))
        out = lf.group_by(cols).len().collect()
        for k in keys:
            if k not in out.columns:
                out = out.with_columns(pl.lit(None, pl.String).alias(k))
        return out.select([*keys, pl.col("len").cast(pl.UInt32)])
    finally:
        if own:
            st.close()


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
            state.setdefault("wells", []).append(frame.select(PLATE, WELL).unique())
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
    # The wells of this platemap replace their stored rows; other wells stay.
    store.write(
        "platemap",
        rows,
        replace_keys=[PLATE, WELL],
        new_columns="add",
        step="ingest_platemap",
        source=None if isinstance(source, pl.DataFrame) else str(source),
    )


__all__ = [
    "FORMATS",
    "MODES",
    "IngestOptions",
    "IngestReport",
    "IngestWarning",
    "detect_format",
    "image_key_columns",
    "ingest",
    "resolve_reader",
]
