"""CellProfiler SQLite databases: ExportToDatabase and cytominer-database layouts.

Two layouts are read:

* CellProfiler's ExportToDatabase: ``Per_Image`` and one ``Per_<Object>``
  table per compartment (``Per_Cells``, ...; an optional table prefix such as
  ``MyExpt_Per_Image`` is allowed). Objects are numbered by
  ``<Object>_Number_Object_Number``; columns carry the ``Image_`` or
  ``<Object>_`` prefix.
* cytominer-database: ``Image``, ``Cells``, ``Cytoplasm``, ``Nuclei`` with
  ``TableNumber``, ``ImageNumber`` and ``ObjectNumber`` keys (``TableNumber``
  tells apart the CSV folders the database was built from).

Tables are streamed with the Arrow-native ADBC SQLite driver
(``adbc-driver-sqlite``) in bounded batches. A quick first pass reads only the
image numbers of each object table: when every table stores its rows image by
image (as CellProfiler writes them), the compartments are merge-joined while
they stream, holding about one batch per compartment; otherwise they are
joined through a temporary DuckDB database (see
:mod:`cellframe.io._compartments`).
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from cellframe._progress import progress
from cellframe.errors import (
    CorruptFileError,
    IncompleteExportError,
    InvalidInputError,
    UnknownFormatError,
)
from cellframe.io._base import Reader, require_rows
from cellframe.io._compartments import (
    COMPARTMENTS,
    IMAGE_KEY,
    TABLE_KEY,
    SortedMerge,
    Staging,
    canonical_compartment,
    check_unique_images,
    columns_by_base,
    image_metadata,
    report_unreferenced,
)
from cellframe.io._normalize import default_batch_rows, normalize_keys

_SQLITE_MAGIC = b"SQLite format 3\x00"
_SORT_KEY = "_cf_sort_key"
#: Float64 megabytes per SQLite batch of an object table.
_BATCH_MB = 4
_MISMATCH = re.compile(r"column (\d+)", re.I)
#: Files up to this size get a full ``PRAGMA quick_check`` before they are read (about
#: 0.6 s at 200 MB/s); larger ones a cheap check (see :func:`check_integrity`).
QUICK_CHECK_MAX_BYTES = 128 * 2**20


def check_integrity(
    path: Path, *, full: bool | None = None, image_table: str | None = None
) -> None:
    """Check a SQLite file before reading it; raise :class:`CorruptFileError` if damaged.

    Files up to :data:`QUICK_CHECK_MAX_BYTES` (or any file with ``full=True``)
    get SQLite's ``PRAGMA quick_check``: every page of every table and index
    is read and its b-tree structure verified (O(file size), about 200 MB/s).
    Larger files get a cheap variant: the size the header records must match
    the file's (a file cut short by a copy fails it) and ``quick_check`` runs
    on the image table only. Their object tables are verified as they are read:
    a damaged page then raises :class:`CorruptFileError` in the middle of the
    read, and the store, written in one transaction, is left unchanged.

    Parameters
    ----------
    path : Path
        The SQLite file.
    full : bool, optional
        Force the full check (True) or the cheap one (False); default by size.
    image_table : str, optional
        Table checked by the cheap variant.

    Raises
    ------
    CorruptFileError
        If a check fails, naming the file and SQLite's first complaint.
    """
    size = check_size(path)
    if full is None:
        full = size <= QUICK_CHECK_MAX_BYTES
    pragma = "quick_check" if full or image_table is None else f"quick_check({_quote(image_table)})"
    con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        result = [r[0] for r in con.execute(f"PRAGMA {pragma}").fetchmany(5)]
    except sqlite3.DatabaseError as exc:
        result = [str(exc)]
    finally:
        con.close()
    if result != ["ok"]:
        raise CorruptFileError(
            f"{path} is a damaged SQLite database: PRAGMA {pragma} reports "
            f"{'; '.join(result)}; copy it again from the source, or recover what is readable "
            "with the sqlite3 shell ('.recover') into a new file and ingest that"
        )


def check_size(path: Path) -> int:
    """Raise :class:`CorruptFileError` when a SQLite file is shorter than its header says.

    Returns
    -------
    int
        The file's size in bytes.
    """
    size = path.stat().st_size
    with open(path, "rb") as fh:
        header = fh.read(100)
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    valid = header[24:28] == header[92:96] and pages > 0
    wal = Path(f"{path}-wal").exists()
    if valid and not wal and size < page_size * pages:
        raise CorruptFileError(
            f"{path} is {size:,} bytes but its SQLite header records {pages:,} pages of "
            f"{page_size:,} bytes ({page_size * pages:,} bytes): the file was cut short (an "
            "interrupted copy or download); copy it again from the source"
        )
    return size


def is_sqlite(path: Path) -> bool:
    """Whether ``path`` is a SQLite database file (by its header).

    Examples
    --------
    >>> import sqlite3
    >>> from pathlib import Path
    >>> sqlite3.connect("plate.sqlite").execute("CREATE TABLE t (x)").connection.commit()
    >>> _ = Path("notes.txt").write_text("not a database")
    >>> is_sqlite(Path("plate.sqlite")), is_sqlite(Path("notes.txt")), is_sqlite(Path("absent"))
    (True, False, False)
    """
    try:
        with open(path, "rb") as fh:
            return fh.read(16) == _SQLITE_MAGIC
    except OSError:
        return False


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sqlite_tables(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Tables of a SQLite file with their (column, declared type) lists.

    Raises
    ------
    UnknownFormatError
        If the file is not a SQLite database.
    """
    if not is_sqlite(path):
        raise UnknownFormatError(
            f"{path} is not a SQLite database (its header is not 'SQLite format 3'); "
            "pass the .sqlite file CellProfiler or cytominer-database wrote"
        )
    con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        names = [
            r[0]
            for r in con.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")
        ]
        return {
            n: [
                (r[1], (r[2] or "").upper()) for r in con.execute(f"PRAGMA table_info({_quote(n)})")
            ]
            for n in names
        }
    except sqlite3.DatabaseError as exc:
        raise CorruptFileError(
            f"cannot read the tables of {path}: {exc}; the file is a damaged SQLite database: "
            "copy it again from the source"
        ) from exc
    finally:
        con.close()


def detect_layout(
    path: Path, tables: dict[str, list[tuple[str, str]]]
) -> tuple[str, dict[str, str]]:
    """Which CellProfiler layout a SQLite file has, and its table names.

    Returns
    -------
    (layout, names)
        ``layout`` is ``"cellprofiler"`` or ``"cytominer-database"``; ``names``
        maps ``"Image"`` and each compartment found to its table.

    Raises
    ------
    UnknownFormatError
        If the file holds neither layout.
    """
    lower = {t.lower(): t for t in tables}
    per_image = [t for t in tables if t.lower().endswith("per_image")]
    if per_image:
        image = per_image[0]
        prefix = image[: -len("Per_Image")]
        names = {"Image": image}
        for comp in COMPARTMENTS:
            t = lower.get(f"{prefix}per_{comp}".lower())
            if t is not None:
                names[comp] = t
        if len(names) > 1:
            return "cellprofiler", names
    if "image" in lower:
        names = {"Image": lower["image"]}
        for comp in COMPARTMENTS:
            t = lower.get(comp.lower())
            if t is not None and any(c == "ObjectNumber" for c, _ in tables[t]):
                names[comp] = t
        if len(names) > 1:
            return "cytominer-database", names
    found = ", ".join(sorted(tables)) or "none"
    raise UnknownFormatError(
        f"{path} is a SQLite database but not a CellProfiler one: its tables are [{found}]; "
        "cellframe reads CellProfiler's ExportToDatabase layout (Per_Image with Per_Cells, "
        "Per_Cytoplasm, Per_Nuclei) and cytominer-database's (Image with Cells, Cytoplasm, "
        "Nuclei holding ImageNumber and ObjectNumber). Check the file, or convert it to "
        "Parquet/CSV single cells and ingest that"
    )


def _sentinel(column: str, declared: str, *, integers: bool = False) -> str:
    """A typed first-row value so the ADBC driver infers each column's type correctly.

    The driver infers types from the first batch: a column that is NULL there
    would become int64 and fail later on a float. Text columns get '', all
    others 0.0 (integers read as floats are cast back to Int64 by the reader).
    With ``integers``, columns declared INT get 0 (image tables: a barcode
    plate such as 110000106828 must not become '110000106828.0').
    """
    if column == "TableNumber" or any(k in declared for k in ("CHAR", "CLOB", "TEXT")):
        return "''"
    if integers and "INT" in declared:
        return "0"
    return "0.0"


def _drop_sentinel(batch: Any) -> Any:
    """Remove the typed sentinel row and column from a batch (a zero-copy slice)."""
    import pyarrow.compute as pc

    flag = batch.column(batch.num_columns - 1)
    n = pc.sum(flag).as_py() or 0
    batch = batch.drop_columns(["_cf_sentinel"])
    if n == 0:
        return batch
    if n == 1 and flag[0].as_py() == 1:
        return batch.slice(1)
    return batch.filter(pc.equal(flag, 0))


class CellProfilerSQLite(Reader):
    """Read a CellProfiler or cytominer-database SQLite file as single-cell batches.

    Examples
    --------
    A small CellProfiler-like file (200 cells over 4 sites, 2 features per compartment):

    >>> from cellframe.io._synthetic import write_synthetic_sqlite
    >>> path = write_synthetic_sqlite("plate.sqlite", n_cells=200, n_features=6,
    ...                               cells_per_image=50)
    >>> reader = CellProfilerSQLite(path)
    >>> frames = list(reader.batches())
    >>> sum(frame.height for frame in frames)
    200
    >>> [c for c in frames[0].columns if not c.startswith("Metadata_")]
    ['Cells_Feature_0000', 'Cells_Feature_0001', 'Cytoplasm_Feature_0000',
     'Cytoplasm_Feature_0001', 'Nuclei_Feature_0000', 'Nuclei_Feature_0001']
    """

    format = "cellprofiler_sqlite"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        compartments: Sequence[str] | None = None,
        integrity_check: bool | None = None,
        **kwargs: Any,
    ) -> None:
        """Open the file, check it and find its tables.

        Parameters
        ----------
        path : str or os.PathLike
            The SQLite file.
        compartments : sequence of str, optional
            Compartments to join (of Cells, Cytoplasm, Nuclei). Default: all
            three, and a file without one of them is refused
            (:class:`IncompleteExportError`); list the ones the file has to
            take only those.
        integrity_check : bool, optional
            Full ``PRAGMA quick_check`` (True) or the cheap variant (False)
            before reading; default by size (see :func:`check_integrity`).
        **kwargs
            As :class:`~cellframe.io._base.Reader`.
        """
        super().__init__(path, **kwargs)
        if is_sqlite(self.path):
            check_size(self.path)
        self.tables = sqlite_tables(self.path)
        self.layout, self.names = detect_layout(self.path, self.tables)
        check_integrity(self.path, full=integrity_check, image_table=self.names["Image"])
        self.names = _take_compartments(self.path, self.names, compartments)
        self.level = "cell"

    def _connect(self) -> Any:
        # The low-level ADBC API: the DB-API module would import pandas (~50 MB).
        import adbc_driver_manager
        import adbc_driver_sqlite

        db = adbc_driver_sqlite.connect(f"{self.path.resolve().as_uri()}?mode=ro")
        return db, adbc_driver_manager.AdbcConnection(db)

    def _stream(
        self,
        con: Any,
        table: str,
        columns: list[tuple[str, str]],
        batch_rows: int,
        *,
        integers: bool = False,
        not_indexed: bool = False,
    ) -> Iterator[Any]:
        """Yield Arrow batches of ``table`` (all ``columns``), typed by a sentinel row.

        The sentinel row (the first row of the first batch) is removed again
        without copying the batch.

        With ``not_indexed`` the table is scanned in storage order even when
        an index covers the columns (the order the full rows stream in).
        """
        import adbc_driver_manager
        import pyarrow as pa

        names = [c for c, _ in columns]
        first = ", ".join(
            [f"{_sentinel(c, t, integers=integers)} AS {_quote(c)}" for c, t in columns]
            + ["1 AS _cf_sentinel"]
        )
        rest = ", ".join([_quote(c) for c in names] + ["0"])
        hint = " NOT INDEXED" if not_indexed else ""
        sql = f"SELECT {first} UNION ALL SELECT {rest} FROM {_quote(table)}{hint}"
        stmt = adbc_driver_manager.AdbcStatement(con[1])
        try:
            stmt.set_options(**{"adbc.sqlite.query.batch_rows": str(batch_rows)})
            stmt.set_sql_query(sql)
            try:
                stream, _ = stmt.execute_query()
            except adbc_driver_manager.Error as exc:
                raise self._driver_error(table, exc) from exc
            reader = pa.RecordBatchReader._import_from_c(stream.address)
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    break
                except (OSError, adbc_driver_manager.Error) as exc:
                    if _is_damage(exc):
                        raise self._driver_error(table, exc) from exc
                    m = _MISMATCH.search(str(exc))
                    col = names[int(m.group(1))] if m and int(m.group(1)) < len(names) else "?"
                    raise InvalidInputError(
                        f"{self.path}, table {table!r}: column {col!r} holds a value of another "
                        f"type than its first rows ({exc}); a feature column must hold numbers "
                        "only: fix the values or drop the column"
                    ) from exc
                yield _drop_sentinel(batch)
            reader.close()
        finally:
            stmt.close()

    def _driver_error(self, table: str, exc: Exception) -> InvalidInputError:
        """A named error for what the SQLite driver raised while reading ``table``."""
        if _is_damage(exc):
            return CorruptFileError(
                f"{self.path}, table {table!r}: SQLite reports a damaged database while reading "
                f"it ({exc}); copy the file again from the source, or recover what is readable "
                "with the sqlite3 shell ('.recover') into a new file and ingest that"
            )
        return InvalidInputError(f"cannot read {self.path}, table {table!r}: {exc}")

    def _image(self, con: Any) -> pl.DataFrame:
        table = self.names["Image"]
        cols = [
            (c, t)
            for c, t in self.tables[table]
            if c in ("ImageNumber", "TableNumber")
            or re.match(r"^(Image_)?(Metadata_|FileName_|PathName_)", c)
        ]
        frames = [
            pl.from_arrow(b)
            for b in self._stream(
                con, table, cols, 100_000, integers=True
            )  # image tables are small
        ]
        df = pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()
        where = f"{self.path}, table {table!r}"
        meta = image_metadata(df, where=where)
        check_unique_images(meta, lambda _key: where)
        return normalize_keys(meta, where=where, plate=self.plate, well=self.well)

    def _key_columns(self, comp: str) -> tuple[str | None, str | None]:
        """The (TableNumber, ImageNumber) columns of a compartment's table, as stored."""
        names = columns_by_base([c for c, _ in self.tables[self.names[comp]]], comp)
        return names.get("TableNumber"), names.get("ImageNumber")

    def _sort_keys(self, frame: pl.DataFrame, ranks: dict[str, int]) -> pl.Series:
        """A non-decreasing integer per row when the rows come image by image.

        With TableNumber ranks, the key is (rank, ImageNumber) packed in one
        integer; without (an empty mapping), the image number itself.
        """
        image = frame[IMAGE_KEY]
        if not ranks:
            return image.alias(_SORT_KEY)
        rank = frame[TABLE_KEY].replace_strict(ranks, default=-1, return_dtype=pl.Int64)
        return (rank * (1 << 32) + image).alias(_SORT_KEY)

    def _in_image_order(self, con: Any, image: pl.DataFrame) -> dict[str, int] | None:
        """Whether every object table stores its rows ordered by image.

        Reads only the key columns of each table. Returns None when some
        table is not ordered (or its keys cannot be read), otherwise the rank
        of each TableNumber (empty when the layout has no TableNumber).
        """
        import numpy as np

        ranks: dict[str, int] = {}
        if any(self._key_columns(c)[0] for c in COMPARTMENTS if c in self.names):
            tables = image[TABLE_KEY].unique(maintain_order=True).to_list()
            ranks = {t: i for i, t in enumerate(tables)}
        for comp in COMPARTMENTS:
            if comp not in self.names:
                continue
            table_col, image_col = self._key_columns(comp)
            if image_col is None:
                return None  # canonical_compartment names the missing column
            types = dict(self.tables[self.names[comp]])
            cols = [(c, types[c]) for c in (table_col, image_col) if c is not None]
            previous = None
            try:
                for batch in self._stream(con, self.names[comp], cols, 1_000_000, not_indexed=True):
                    raw: pl.DataFrame = pl.from_arrow(batch)  # type: ignore[assignment]
                    if raw[image_col].null_count():
                        return None
                    keys = raw.select(
                        pl.col(image_col).cast(pl.Int64, strict=False).alias(IMAGE_KEY),
                        (pl.col(table_col).cast(pl.String) if table_col else pl.lit("")).alias(
                            TABLE_KEY
                        ),
                    )
                    values = self._sort_keys(keys, ranks).to_numpy()
                    if values.size == 0:
                        continue
                    if (ranks and bool((values < 0).any())) or bool((np.diff(values) < 0).any()):
                        return None
                    if previous is not None and values[0] < previous:
                        return None
                    previous = int(values[-1])
            except (InvalidInputError, OSError, pl.exceptions.PolarsError):
                return None
        return ranks

    def _compartment_frames(
        self, con: Any, comp: str, ranks: dict[str, int] | None
    ) -> Iterator[pl.DataFrame]:
        """Canonical batches of one compartment (with the sort key, given ``ranks``)."""
        table = self.names[comp]
        columns = self.tables[table]
        where = f"{self.path}, table {table!r}"
        # SQLite rows arrive as float64: bound each batch's size.
        batch_rows = self.batch_rows or default_batch_rows(2 * len(columns), mb=_BATCH_MB)
        for batch in progress(
            self._stream(con, table, columns, batch_rows),
            desc=f"reading {table}",
            unit="batch",
            enabled=self.progress and ranks is None,
        ):
            raw: pl.DataFrame = pl.from_arrow(batch)  # type: ignore[assignment]
            frame = canonical_compartment(
                raw, comp, where=where, issues=self.issues, object_column=self._object_column
            )
            if ranks is not None:
                frame = frame.with_columns(self._sort_keys(frame, ranks))
            yield frame

    def batches(self) -> Iterator[pl.DataFrame]:
        """Yield single-cell batches.

        Raises
        ------
        CorruptFileError
            SQLite reports a damaged page while a table is read.
        DuplicateKeysError
            Two objects (or image rows) with one (ImageNumber, object number).
        DanglingReferenceError
            A ``Parent_*`` number naming no object of its image.
        MissingColumnsError
            No ``ImageNumber`` or object-number column.
        """
        con = self._connect()
        try:
            image = self._image(con)
            self._images = image
            ranks = self._in_image_order(con, image)
            if ranks is not None:
                yield from self._merged(con, image, ranks)
            else:
                yield from self._staged(con, image)
        finally:
            con[1].close()
            con[0].close()

    def _merged(
        self, con: Any, image: pl.DataFrame, ranks: dict[str, int]
    ) -> Iterator[pl.DataFrame]:
        present = [c for c in COMPARTMENTS if c in self.names]
        streams = {c: self._compartment_frames(con, c, ranks) for c in present}
        merge = SortedMerge(
            streams,
            image,
            where={c: f"{self.path}, table {self.names[c]!r}" for c in present},
            image_where=f"{self.path}, table {self.names['Image']!r}",
            key=_SORT_KEY,
            batch_rows=self.batch_rows,
        )
        try:
            yield from progress(
                merge, desc=f"joining {', '.join(present)}", unit="batch", enabled=self.progress
            )
        finally:
            for stream in streams.values():
                stream.close()  # type: ignore[attr-defined]  # releases each SQLite statement
        for comp in present:
            if not merge.rows[comp]:
                self.issues.add(f"{self.path}, table {self.names[comp]!r} holds no rows")
        require_rows(sum(merge.rows.values()), self.path, "objects", self.issues)
        self._unmatched(merge.rows.get(merge.base, 0) - merge.joined, merge.rows, merge.base)
        report_unreferenced(self.issues, merge.unreferenced, merge.rows, merge.base, str(self.path))
        self._note_empty_images(image, merge.image_keys(), f"table {self.names['Image']!r}")

    def _unmatched(self, left: int, rows: dict[str, int], base: str) -> None:
        if left > 0:
            self.issues.add(
                f"{left} of {rows[base]} {base} objects in {self.path} had no "
                "matching object in the other compartments and were left out "
                "(pycytominer and CytoTable join compartments the same way)"
            )

    def _staged(self, con: Any, image: pl.DataFrame) -> Iterator[pl.DataFrame]:
        with Staging(
            self.staging_dir,
            memory_limit=self.memory_limit,
            flush_rows=self.batch_rows or 10_000,
            in_memory=self._use_memory(self.path.stat().st_size),
        ) as staging:
            n_objects = 0
            for comp in COMPARTMENTS:
                if comp not in self.names:
                    continue
                n_before = n_objects
                where = f"{self.path}, table {self.names[comp]!r}"
                for frame in self._compartment_frames(con, comp, None):
                    staging.append(comp, frame, where)
                    n_objects += frame.height
                if n_objects == n_before:
                    self.issues.add(f"{where} holds no rows")
            require_rows(n_objects, self.path, "objects", self.issues)
            staging.check_images(image, f"{self.path}, table {self.names['Image']!r}")
            staging.check_keys()
            unreferenced = staging.check_references()
            self._note_empty_images(image, staging.image_keys(), f"table {self.names['Image']!r}")
            n_out = 0
            for frame in staging.iter_joined(image, self.batch_rows):
                n_out += frame.height
                yield frame
            base = staging.base()
            self._unmatched(staging.rows.get(base, 0) - n_out, staging.rows, base)
            report_unreferenced(self.issues, unreferenced, staging.rows, base, str(self.path))

    @property
    def _object_column(self) -> str:
        """The object-number column: ExportToDatabase's own, or cytominer-database's."""
        return "Number_Object_Number" if self.layout == "cellprofiler" else "ObjectNumber"


def _is_damage(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(k in text for k in ("malformed", "not a database", "disk i/o", "corrupt"))


def _take_compartments(
    path: Path, names: dict[str, str], compartments: Sequence[str] | None
) -> dict[str, str]:
    """Keep the tables of the compartments asked for; raise when one is missing."""
    requested = list(COMPARTMENTS) if compartments is None else [str(c) for c in compartments]
    unknown = [c for c in requested if c not in COMPARTMENTS]
    if unknown or not requested:
        raise InvalidInputError(
            f"compartments must name some of {', '.join(COMPARTMENTS)}, not {requested}"
        )
    missing = [c for c in requested if c not in names]
    if missing:
        have = [c for c in COMPARTMENTS if c in names]
        how = (
            "taken by default (Cells, Cytoplasm and Nuclei)"
            if compartments is None
            else "asked for"
        )
        raise IncompleteExportError(
            f"{path} has no table for the {', '.join(missing)} compartment, which is {how}; the "
            f"file holds {', '.join(names[c] for c in have) or 'no object table'}. Cells joined "
            "without a compartment lack its features: if that is what you want, take the "
            f"compartments the file has: compartments={have} (command line: --compartments "
            f"{','.join(have)})"
        )
    return {"Image": names["Image"], **{c: names[c] for c in requested}}


__all__ = ["CellProfilerSQLite", "detect_layout", "is_sqlite", "sqlite_tables"]
