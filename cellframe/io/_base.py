"""What every reader shares: its parameters, its warnings and numeric CSV reading."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar, Literal

import polars as pl

from cellframe.errors import EmptyInputError, InvalidInputError
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

    def _use_memory(self, n_bytes: int) -> bool:
        return self.in_memory if self.in_memory is not None else n_bytes < IN_MEMORY_BYTES

    def batches(self) -> Iterator[pl.DataFrame]:
        """Yield the source's rows in bounded batches, keys renamed, features Float32."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[pl.DataFrame]:
        return self.batches()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


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
    except pl.exceptions.ComputeError as exc:
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
