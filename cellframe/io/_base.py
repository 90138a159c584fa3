"""What every reader shares: its parameters, its warnings and numeric CSV reading."""

from __future__ import annotations

import csv
import gzip
import os
import re
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import polars as pl

from cellframe.errors import (
    DuplicateColumnsError,
    EmptyInputError,
    InvalidInputError,
    TruncatedFileError,
)
from cellframe.io._normalize import Issues

#: Sources smaller than this (bytes on disk) are joined in memory by default.
IN_MEMORY_BYTES = 128 * 2**20

_PARSE_ERROR = re.compile(r"could not parse `(.*?)` as dtype `\w+` at column '(.*?)'", re.S)


class Reader:
    """Base of the format readers: iterate over :meth:`batches` for single-cell frames.

    Parameters
    ----------
    path : str or os.PathLike
        File or folder to read.
    plate : str, optional
        Plate name for every row; replaces the source's plate column (needed
        where the source names no plate).
    well : str, optional
        Well for sources without one (a single-image CellProfiler run).
    batch_rows : int, optional
        Rows per yielded batch (default: about 64 MB of Float32 features).
    progress : bool, default False
        Show progress bars.
    staging_dir : str or os.PathLike, optional
        Folder for the temporary DuckDB database used to join compartments.
    memory_limit : str, default "512MB"
        DuckDB memory limit of that temporary database.
    in_memory : bool, optional
        Join compartments in memory with Polars (True) or in a temporary
        DuckDB database that streams (False). Default: in memory when the
        source files total less than :data:`IN_MEMORY_BYTES`.

    Attributes
    ----------
    level : {"cell", "image"}
        ``"image"`` when the source holds image-level measurements only.
    issues : Issues
        Recoverable problems met so far (reported by :func:`cellframe.io.ingest`
        as warnings).
    """

    #: Name of the format in :data:`cellframe.io.FORMATS`.
    format: ClassVar[str] = ""
    level: Literal["cell", "image"] = "cell"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        plate: str | None = None,
        well: str | None = None,
        batch_rows: int | None = None,
        progress: bool = False,
        staging_dir: str | os.PathLike[str] | None = None,
        memory_limit: str = "512MB",
        in_memory: bool | None = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"no such file or folder: {self.path}")
        self.plate = plate
        self.well = well
        if batch_rows is not None and batch_rows < 1:
            raise InvalidInputError(f"batch_rows must be positive, not {batch_rows}")
        self.batch_rows = batch_rows
        self.progress = progress
        self.staging_dir = staging_dir
        self.memory_limit = memory_limit
        self.in_memory = in_memory
        self.issues = Issues()

    #: Image keys and file columns of the images read (set while reading).
    _images: pl.DataFrame | None = None
    #: Images that hold no object (empty sites), set once :meth:`batches` is consumed.
    empty_images: pl.DataFrame | None = None

    def image_rows(self) -> pl.DataFrame | None:
        """Rows for the store's ``images`` table: every image read, one row per channel.

        Available once :meth:`batches` is consumed; None for formats without an
        image table. Empty sites (:attr:`empty_images`) are among them, so the
        store records them with 0 cells.
        """
        if self._images is None:
            return None
        from cellframe.io._compartments import images_table_rows

        return images_table_rows(self._images)

    def _note_empty_images(self, image: pl.DataFrame, seen: pl.DataFrame, source: str) -> None:
        """Set :attr:`empty_images` (images of ``image`` absent from ``seen``) and warn."""
        from cellframe.columns import IMAGE_NUMBER, PLATE, SITE, WELL
        from cellframe.io._compartments import IMAGE_KEY, TABLE_KEY

        keys = [TABLE_KEY, IMAGE_KEY]
        empty = image.with_columns(pl.col(TABLE_KEY).cast(pl.String)).join(
            seen, on=keys, how="anti"
        )
        self.empty_images = empty.select(PLATE, WELL, SITE, IMAGE_NUMBER)
        if not empty.height:
            return
        from cellframe.io._compartments import images_table_rows

        first = empty.row(0, named=True)
        recorded = images_table_rows(empty).select(PLATE, WELL, SITE).unique().height
        record = (
            "they are recorded in the store's images table, with no cells"
            if recorded == empty.height
            else f"{empty.height - recorded} of them lack a plate, well, site or image file "
            f"name (FileName_*) in {source}, so the store's images table cannot hold them and "
            "this warning is their only record"
        )
        self.issues.add(
            f"{empty.height} image(s) in {self.path} hold no objects (empty sites; e.g. plate "
            f"{first[PLATE]}, well {first[WELL]}, site {first[SITE]}, ImageNumber "
            f"{first[IMAGE_NUMBER]}): {record}"
        )

    def _use_memory(self, n_bytes: int) -> bool:
        return self.in_memory if self.in_memory is not None else n_bytes < IN_MEMORY_BYTES

    def batches(self) -> Iterator[pl.DataFrame]:
        """Yield the source's rows in bounded batches, keys renamed, features Float32."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[pl.DataFrame]:
        return self.batches()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


_GZIP_MAGIC = b"\x1f\x8b"
#: Delimiters a CSV file may use; the one giving the most header fields wins (comma on ties).
DELIMITERS = (",", ";", "\t", "|")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class CsvLayout:
    """What :func:`inspect_csv` found out about a CSV file before reading it.

    Attributes
    ----------
    path : Path
        The file.
    columns : list of str
        Header fields, in order (a UTF-8 byte-order mark removed).
    separator : str
        Field delimiter.
    compressed : bool
        Whether the file is gzip-compressed (by its magic bytes, whatever its name).
    """

    path: Path
    columns: list[str]
    separator: str
    compressed: bool


def _delimiter_name(sep: str) -> str:
    return {"\t": "tab", ";": "semicolon ';'", "|": "pipe '|'", ",": "comma ','"}[sep]


def _split(line: str, separator: str) -> list[str]:
    return next(csv.reader([line], delimiter=separator), [])


def _lines_before(path: Path, compressed: bool, n_bytes: int) -> int:
    """Line breaks in the first ``n_bytes`` bytes of the (decompressed) file."""
    opener = gzip.open if compressed else open
    count, left = 0, n_bytes
    with opener(path, "rb") as fh:
        while left > 0:
            chunk = fh.read(min(_CHUNK, left))
            if not chunk:
                break
            count += chunk.count(b"\n")
            left -= len(chunk)
    return count


def _head_and_tail(path: Path, compressed: bool, table: str) -> tuple[bytes, bytes | None, int]:
    """The first line, the last up to 1 MiB, and the size of a file.

    A plain file is read at its two ends only. Of a gzip stream only the
    start is decompressed (its end would cost a full decompression): the tail
    is None, and a stream cut short is named by :func:`scan_csv_batches`.
    """
    if not compressed:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(_CHUNK)
            while b"\n" not in head and len(head) < size:
                more = fh.read(_CHUNK)
                if not more:
                    break
                head += more
            fh.seek(max(0, size - _CHUNK))
            tail = fh.read()
        return head.split(b"\n", 1)[0], tail, size
    head = b""
    with gzip.open(path, "rb") as fh:
        try:
            while b"\n" not in head:
                more = fh.read(1 << 16)  # a wide header is ~80 KB: decompress no more
                if not more:
                    break
                head += more
        except (EOFError, OSError, zlib.error) as exc:
            if b"\n" not in head:
                raise _gzip_error(path, exc, table) from exc
    return head.split(b"\n", 1)[0], None, -1


def _gzip_error(path: Path, exc: BaseException, table: str = "") -> TruncatedFileError:
    where = f"{path} ({table})" if table else str(path)
    return TruncatedFileError(
        f"{where}: the gzip stream is damaged or ends before its end marker ({exc}): the file "
        "was cut short (an interrupted copy or download); copy it again from the source"
    )


def inspect_csv(path: Path, *, table: str, issues: Issues | None = None) -> CsvLayout | None:
    """Check a CSV file before it is read: compression, delimiter, header, last row.

    Cheap: a plain file is read at its two ends; of a gzip file only the
    start is decompressed.

    * gzip data is recognised by its magic bytes; a file so compressed whose
      name does not end in ``.gz`` is noted in ``issues`` (``"gzip"``).
    * The delimiter is the one of :data:`DELIMITERS` that splits the header
      into the most fields; anything but a comma is noted (``"delimiter"``).
    * A UTF-8 byte-order mark and CRLF line ends are accepted as they are.
    * A last line with fewer fields than the header (a copy interrupted in
      the middle of a row) raises; a last line without a line break but with
      every field is noted (``"no_final_newline"``). Only for plain files: a
      gzip stream is not decompressed to its end here (short rows are found
      while reading, see :func:`check_short_rows`; a cut stream by
      :func:`scan_csv_batches`).

    Parameters
    ----------
    path : Path
        The CSV file.
    table : str
        What the file holds (``"Cells"``), for messages.
    issues : Issues, optional
        Collects the notes above.

    Returns
    -------
    CsvLayout or None
        None for an empty file (0 bytes, or no header).

    Raises
    ------
    DuplicateColumnsError
        If the header names a column twice.
    TruncatedFileError
        If the file ends in the middle of a row or of its gzip stream.
    """
    if path.stat().st_size == 0:
        return None
    with open(path, "rb") as fh:
        compressed = fh.read(2) == _GZIP_MAGIC
    head, tail, size = _head_and_tail(path, compressed, table)
    header = head.decode("utf-8-sig", errors="replace").rstrip("\r")
    if not header.strip():
        return None
    counts = {sep: len(_split(header, sep)) for sep in DELIMITERS}
    separator = max(DELIMITERS, key=lambda sep: (counts[sep], sep == ","))
    columns = _split(header, separator)
    if compressed and not path.name.lower().endswith(".gz") and issues is not None:
        issues.note_file("gzip", str(path))
    if separator != "," and issues is not None:
        issues.note_file("delimiter", f"{path} ({_delimiter_name(separator)})")
    seen = Counter(columns)
    dupes = [c for c, n in seen.items() if n > 1]
    if dupes:
        first = dupes[0]
        where = [i + 1 for i, c in enumerate(columns) if c == first]
        raise DuplicateColumnsError(
            f"{path} ({table}): the header names column {first!r} {seen[first]} times (fields "
            f"{', '.join(map(str, where))})"
            + (f", and {len(dupes) - 1} other column name(s) too" if len(dupes) > 1 else "")
            + "; CellProfiler writes each column once, so the file was edited or concatenated: "
            "keep one of them (or rename the other) and ingest again"
        )
    if tail is not None:
        _check_last_row(path, compressed, tail, size, columns, separator, table, issues)
    return CsvLayout(path=path, columns=columns, separator=separator, compressed=compressed)


def _check_last_row(
    path: Path,
    compressed: bool,
    tail: bytes,
    size: int,
    columns: list[str],
    separator: str,
    table: str,
    issues: Issues | None,
) -> None:
    """Raise when the last line of a file holds fewer fields than its header."""
    body = tail.rstrip(b"\r\n")
    ends_with_newline = tail.endswith(b"\n")
    cut = body.rfind(b"\n")
    if cut < 0 and len(tail) >= size:
        return  # the header is the only line
    if cut < 0:
        return  # a last line longer than 1 MiB: left to the parser
    last = body[cut + 1 :].decode("utf-8", errors="replace")
    if not last.strip():
        return
    fields = _split(last, separator)
    if not ends_with_newline and last.count('"') % 2:
        line = _lines_before(path, compressed, size - len(tail) + cut + 1) + 1
        raise TruncatedFileError(
            f"{path} ({table}): line {line:,} (the last) ends inside a quoted value and without "
            "a line break: the file was cut in the middle of a row (an interrupted copy); copy "
            "it again from the source, or delete that line to ingest the rows before it"
        )
    if len(fields) < len(columns):
        line = _lines_before(path, compressed, size - len(tail) + cut + 1) + 1
        if ends_with_newline:
            raise _short_row_error(path, table, line, len(fields), len(columns), " (the last)")
        raise TruncatedFileError(
            f"{path} ({table}): line {line:,} (the last) holds {len(fields)} of the "
            f"{len(columns)} fields of the header and no line break: the file was cut in the "
            "middle of a row (an interrupted copy); copy it again from the source, or delete "
            "that line to ingest the rows before it"
        )
    if not ends_with_newline and issues is not None:
        issues.note_file("no_final_newline", str(path))


def _short_row_error(
    path: Path, table: str, line: int, n_fields: int, n_columns: int, which: str = ""
) -> TruncatedFileError:
    return TruncatedFileError(
        f"{path} ({table}): line {line:,}{which} holds {n_fields} of the {n_columns} fields of "
        "the header: a short row (cut by an interrupted copy or an incomplete write), whose "
        "missing values would be read as empty; copy the file again from the source, or fix "
        "or delete that line"
    )


def check_short_rows(layout: CsvLayout, rows: list[int], *, table: str) -> None:
    """Raise :class:`TruncatedFileError` if one of ``rows`` (0-based data rows) is short.

    Streams the file once with :mod:`csv` (quoted line breaks are part of
    their row), stopping after the last row asked about.
    """
    wanted = set(rows)
    opener = gzip.open if layout.compressed else open
    n_columns = len(layout.columns)
    with opener(layout.path, "rt", encoding="utf-8-sig", errors="replace", newline="") as fh:
        records = csv.reader(fh, delimiter=layout.separator)
        next(records, None)  # the header
        for i, fields in enumerate(records):
            if i in wanted:
                if len(fields) < n_columns:
                    line = records.line_num
                    raise _short_row_error(layout.path, table, line, len(fields), n_columns)
                wanted.discard(i)
                if not wanted:
                    return


def csv_header(path: Path, *, separator: str = ",") -> list[str] | None:
    """Column names of a CSV file, or None when the file is empty (0 bytes)."""
    if path.stat().st_size == 0:
        return None
    try:
        return pl.read_csv(
            path, n_rows=0, separator=separator, infer_schema=False, glob=False
        ).columns
    except pl.exceptions.NoDataError:
        return None


def scan_csv_batches(
    path: Path,
    schema: dict[str, pl.DataType],
    *,
    batch_rows: int,
    table: str,
    separator: str = ",",
) -> Iterator[pl.DataFrame]:
    """Read a CSV file in batches with a fixed schema.

    A value that does not parse as the column's type raises
    :class:`InvalidInputError` naming the file, table, column and value.
    """
    lf = pl.scan_csv(path, schema=schema, separator=separator, glob=False)
    try:
        yield from lf.collect_batches(chunk_size=batch_rows)
    except OSError as exc:
        with open(path, "rb") as fh:
            compressed = fh.read(2) == _GZIP_MAGIC
        if compressed:
            raise _gzip_error(path, exc, table) from exc
        raise InvalidInputError(
            f"cannot read {path} ({table}): {exc}; check that the file is readable and whole"
        ) from exc
    except pl.exceptions.SchemaError as exc:
        raise InvalidInputError(
            f"{path} ({table}): the header does not split into the columns found when the file "
            f"was inspected ({exc}); check its line ends and delimiter"
        ) from exc
    except pl.exceptions.ComputeError as exc:
        if "more fields than defined" in str(exc):
            raise InvalidInputError(
                f"{path} ({table}): a row holds more fields than the header's {len(schema)} "
                "(an unquoted delimiter in a value, or two files joined without their line "
                "break); fix that row"
            ) from exc
        m = _PARSE_ERROR.search(str(exc))
        if not m:
            raise InvalidInputError(f"cannot read {path} ({table}): {exc}") from exc
        value, column = m.group(1), m.group(2)
        raise InvalidInputError(
            f"{path} ({table}): column {column!r} holds a non-numeric value {value!r}; every "
            "column that is not a key or Metadata_ column is read as a feature and must be "
            "numeric: fix the value, or rename the column with a 'Metadata_' prefix to keep "
            "it as an annotation"
        ) from exc


def require_rows(n_rows: int, source: Path, what: str, issues: Issues | None = None) -> None:
    """Raise :class:`EmptyInputError` when a whole source yielded no rows."""
    if n_rows == 0:
        details = (
            f" ({'; '.join(issues.messages)})" if issues is not None and issues.messages else ""
        )
        raise EmptyInputError(
            f"{source} holds no {what}: every table is empty{details}; check that the export "
            "finished and that the path points at the right folder"
        )
