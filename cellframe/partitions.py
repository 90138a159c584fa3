"""Per-plate Parquet partitions: the on-disk layout shared by both engines.

A large table lives beside the database as one folder per plate::

    <db>.parts/<table>/Metadata_Plate=<plate>/part.parquet
    <db>.parts/<table>/Metadata_Plate=<plate>/part-1.parquet   (large plates)
    <db>.parts/<table>/Metadata_Plate=<plate>/_cellframe.json

A plate's rows are written in row groups of bounded size (about 16 MB), and a
large plate rolls over to further files (``part-1.parquet``, ...): a Parquet
writer keeps every row group's metadata in memory until the file is closed
(about 0.8 KB per column and row group), so one file per plate would make the
writer's memory grow with the plate.

Each plate is written under a temporary name and renamed into place, so a
reader (or a resumed run) never sees half a plate. ``_cellframe.json`` records
the cellframe version, step and parameters that wrote the plate; a run that
finds a partition written by another version stops with a clear error instead
of mixing outputs. This module only touches files; the store registers the
partitions as a DuckDB view.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from cellframe._arrow import WriteInput, as_arrow_batches
from cellframe.columns import PLATE
from cellframe.errors import InvalidInputError, SchemaMismatchError

__all__ = [
    "MARKER",
    "PartitionVersionError",
    "check_partition_version",
    "completed_plates",
    "glob_escape",
    "partition_dir",
    "partition_files",
    "plate_file_rows",
    "read_marker",
    "write_plate_partition",
]

MARKER = "_cellframe.json"
DATA_FILE = "part.parquet"
#: Glob matching every data file of a plate's partition.
DATA_GLOB = "part*.parquet"
#: Target bytes of one row group (before compression).
ROW_GROUP_BYTES = 16 * 2**20
#: Row groups per file before a plate rolls over to its next file.
ROW_GROUPS_PER_FILE = 16
#: Codec of measurement (floating-point) columns. LZ4 decodes about twice as
#: fast as zstd (measured: 0.054 vs 0.103 s per 100 MB plate of float32 with
#: Polars), and single-cell measurements compress little either way (a real
#: CellProfiler export: zstd 12% smaller than uncompressed, LZ4 6%); reading
#: the features is what every profiling step does, so decoding speed wins.
FLOAT_COMPRESSION = "lz4"
#: Codec of every other column (keys, labels, counts): small, and compressible.
OTHER_COMPRESSION = "zstd"


class PartitionVersionError(InvalidInputError):
    """A partition folder was written by another cellframe version or step."""


def _version() -> str:
    from cellframe import __version__

    return __version__


#: Characters of a plate name written percent-encoded in its folder name: path
#: separators, glob metacharacters (the view and scans glob the folders), the
#: hive separator, and "%" itself. DuckDB and Polars decode hive values, so the
#: plate reads back as written.
_ENCODED = frozenset("%*?[]{}/\\=")


def encode_plate(plate: str) -> str:
    """The folder-name form of a plate name (``P[1]`` -> ``P%5B1%5D``); plain names are unchanged."""
    return "".join(
        "".join(f"%{b:02X}" for b in c.encode()) if c in _ENCODED or not c.isprintable() else c
        for c in plate
    )


def decode_plate(folder_value: str) -> str:
    """The plate name of a partition folder's value (inverse of :func:`encode_plate`)."""
    from urllib.parse import unquote

    return unquote(folder_value)


def glob_escape(path: str | Path) -> str:
    """``path`` as a glob pattern matching itself only, for DuckDB and Polars.

    Each metacharacter becomes a one-character class (``[`` -> ``[[]``,
    ``*`` -> ``[*]``), which both readers' globs understand: a store kept in
    a folder such as ``screen [2024]`` is then read like any other.
    """
    return "".join(f"[{c}]" if c in "[]*?{}" else c for c in str(path))


def partition_dir(table_root: Path, plate: str) -> Path:
    """Folder of one plate's partition under a table's folder."""
    if plate in ("", ".", ".."):
        raise InvalidInputError(f"plate name {plate!r} cannot name a partition folder")
    return Path(table_root) / f"{PLATE}={encode_plate(plate)}"


def _folder_plate(folder: Path) -> str:
    return decode_plate(folder.name.split("=", 1)[1])


def partition_files(table_root: Path, plate: str) -> list[Path]:
    """The data files of one plate's partition, in order (empty if there is none)."""
    return _data_files(partition_dir(table_root, plate))


def _data_files(folder: Path) -> list[Path]:
    """The data files of a partition folder, in order (part, part-1, part-2, ...)."""
    return sorted(folder.glob(DATA_GLOB), key=_file_index)


def plate_file_rows(table_root: Path) -> dict[str, list[tuple[Path, int]]]:
    """Data files of every plate of a partitioned table, with their rows (from the footers).

    Parameters
    ----------
    table_root : pathlib.Path
        The table's folder (``<db>.parts/<table>``).

    Returns
    -------
    dict of str to list of (pathlib.Path, int)
        Each plate's files in order with their row counts, plates sorted by
        name; plates without a data file are left out (as the table's view
        leaves them out). Only file footers are read.
    """
    root = Path(table_root)
    found: dict[str, list[tuple[Path, int]]] = {}
    if not root.is_dir():
        return found
    for folder in root.glob(f"{PLATE}=*"):
        files = _data_files(folder)
        if files:
            found[_folder_plate(folder)] = [
                (f, int(pl.scan_parquet(f, glob=False).select(pl.len()).collect().item()))
                for f in files
            ]
    return dict(sorted(found.items()))


def _file_index(path: Path) -> int:
    stem = path.stem  # part, part-1, part-2, ...
    return int(stem.split("-", 1)[1]) if "-" in stem else 0


def _data_file(index: int) -> str:
    return DATA_FILE if index == 0 else f"part-{index}.parquet"


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The ``_cellframe.json`` record of a partition folder, or None when absent."""
    marker = Path(folder) / MARKER
    if not marker.is_file():
        return None
    return json.loads(marker.read_text())


def completed_plates(table_root: Path) -> list[str]:
    """Plates whose partition is complete (data file and marker present), sorted."""
    root = Path(table_root)
    if not root.is_dir():
        return []
    plates = []
    for folder in root.glob(f"{PLATE}=*"):
        if (folder / MARKER).is_file() and any(folder.glob(DATA_GLOB)):
            plates.append(_folder_plate(folder))
    return sorted(plates)


def check_partition_version(table_root: Path, plate: str, step: str | None = None) -> None:
    """Raise :class:`PartitionVersionError` if a plate was written by another version/step."""
    folder = partition_dir(table_root, plate)
    record = read_marker(folder)
    if record is None:
        return
    if record.get("cellframe_version") != _version() or (
        step is not None and record.get("step") != step
    ):
        raise PartitionVersionError(
            f"partition {folder} was written by cellframe {record.get('cellframe_version')} "
            f"(step {record.get('step')!r}); this is cellframe {_version()} (step {step!r}). "
            "Re-run with --force to recompute it, or point the output at a new table"
        )


def _check_schema_against_siblings(table_root: Path, plate: str, new_file: Path) -> None:
    import pyarrow.parquet as pq

    new_names = pq.read_schema(new_file).names
    for other in sorted(Path(table_root).glob(f"{PLATE}=*/{DATA_FILE}")):
        if other.parent == partition_dir(table_root, plate):
            continue
        old_names = pq.read_schema(other).names
        if old_names != new_names:
            extra = [c for c in new_names if c not in old_names]
            missing = [c for c in old_names if c not in new_names]
            raise SchemaMismatchError(
                f"plate {plate!r} under {table_root} has columns that differ from "
                f"{other.parent.name}: extra {extra[:10]}, missing {missing[:10]}; "
                "every plate of a table needs the same columns"
            )
        return


def write_plate_partition(
    table_root: Path,
    plate: str,
    data: WriteInput,
    *,
    step: str = "write",
    parameters: Mapping[str, Any] | None = None,
) -> int:
    """Write one plate's rows as a Parquet partition, atomically.

    Parameters
    ----------
    table_root : Path
        The table's folder (``<db>.parts/<table>``).
    plate : str
        The plate; a ``Metadata_Plate`` column in ``data``, if present, must
        hold only this value and is dropped (it is the partition key).
    data : DataFrame, LazyFrame, Arrow data, or iterator of batches
        The plate's rows, streamed batch by batch to the file.
    step, parameters
        Recorded in the partition's ``_cellframe.json``.

    Returns
    -------
    int
        Number of rows written.

    Raises
    ------
    SchemaMismatchError
        If the columns differ from the table's other plates.
    InvalidInputError
        If ``data`` holds other plates or no batches.
    """
    table_root = Path(table_root)
    final_dir = partition_dir(table_root, plate)
    table_root.mkdir(parents=True, exist_ok=True)
    tmp_dir = table_root / f".tmp-{uuid.uuid4().hex}"
    tmp_dir.mkdir()
    writer = _RollingWriter(tmp_dir, plate, table_root)
    try:
        for batch in as_arrow_batches(data):
            if PLATE in batch.column_names:
                values = set(pl.from_arrow(batch.select([PLATE]))[PLATE].unique().to_list())  # type: ignore[index, union-attr]
                if values - {plate}:
                    raise InvalidInputError(
                        f"rows for partition {plate!r} under {table_root} hold other plates: "
                        f"{sorted(map(str, values - {plate}))}"
                    )
                batch = batch.drop_columns([PLATE])
            writer.add(batch)
        n_rows = writer.close()
        if n_rows is None:
            raise InvalidInputError(f"nothing to write for plate {plate!r} under {table_root}")
        _check_schema_against_siblings(table_root, plate, tmp_dir / DATA_FILE)
        record = {
            "cellframe_version": _version(),
            "step": step,
            "parameters": dict(parameters or {}),
            "plate": plate,
            "rows": n_rows,
            "written_at": datetime.now(UTC).isoformat(),
        }
        (tmp_dir / MARKER).write_text(json.dumps(record, default=str, sort_keys=True))
        if final_dir.exists():
            old = table_root / f".old-{uuid.uuid4().hex}"
            final_dir.rename(old)
            tmp_dir.rename(final_dir)
            shutil.rmtree(old)
        else:
            tmp_dir.rename(final_dir)
    except BaseException:
        writer.abort()
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return n_rows


class _RollingWriter:
    """Write Arrow tables as bounded row groups, rolling over to a new file every few groups."""

    def __init__(self, folder: Path, plate: str, table_root: Path) -> None:
        self.folder = folder
        self.plate = plate
        self.table_root = table_root
        self.schema: Any = None
        self.pending: list[Any] = []
        self.pending_rows = 0
        self.group_rows = 0
        self.groups_in_file = 0
        self.file_index = 0
        self.rows = 0
        self._writer: Any = None

    def add(self, table: Any) -> None:
        if self.schema is None:
            self.schema = table.schema
            width = max(1, sum(_width(f.type) for f in table.schema))
            self.group_rows = max(1_024, ROW_GROUP_BYTES // width)
        elif table.schema != self.schema:
            if table.schema.names != self.schema.names:
                raise SchemaMismatchError(
                    f"batches for plate {self.plate!r} under {self.table_root} have different "
                    "columns"
                )
            try:
                table = table.cast(self.schema)
            except (ValueError, TypeError, NotImplementedError) as exc:
                raise SchemaMismatchError(
                    f"batches for plate {self.plate!r} under {self.table_root} have different "
                    f"column types: {exc}"
                ) from exc
        self.rows += table.num_rows
        while table.num_rows:
            take = min(table.num_rows, self.group_rows - self.pending_rows)
            self.pending.append(table.slice(0, take))
            self.pending_rows += take
            table = table.slice(take)
            if self.pending_rows >= self.group_rows:
                self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        group = pa.Table.from_batches(
            [b for t in self.pending for b in t.to_batches()], schema=self.schema
        )
        self.pending, self.pending_rows = [], 0
        if self._writer is None:
            self._writer = pq.ParquetWriter(
                self.folder / _data_file(self.file_index),
                self.schema,
                compression={
                    f.name: FLOAT_COMPRESSION if pa.types.is_floating(f.type) else OTHER_COMPRESSION
                    for f in self.schema
                },
                # Dictionaries suit keys and labels; for measurements they only
                # cost decoding time (each value is nearly unique).
                use_dictionary=[f.name for f in self.schema if not pa.types.is_floating(f.type)],
            )
        self._writer.write_table(group, row_group_size=max(1, group.num_rows))
        self.groups_in_file += 1
        if self.groups_in_file >= ROW_GROUPS_PER_FILE:
            self._writer.close()
            self._writer = None
            self.groups_in_file = 0
            self.file_index += 1

    def close(self) -> int | None:
        """Write what is pending and close; the number of rows, or None if nothing came."""
        if self.schema is None:
            return None
        if self.pending_rows or (self._writer is None and self.file_index == 0):
            self._flush()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        return self.rows

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _width(dtype: Any) -> int:
    """Rough bytes per value of an Arrow type (variable-width types count 16)."""
    try:
        return max(1, dtype.bit_width // 8)
    except ValueError:
        return 16


def remove_stale_temporaries(table_root: Path) -> int:
    """Delete ``.tmp-*``/``.old-*`` folders left by killed writers; returns how many."""
    root = Path(table_root)
    if not root.is_dir():
        return 0
    stale = [p for p in root.iterdir() if p.is_dir() and p.name.startswith((".tmp-", ".old-"))]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return len(stale)
