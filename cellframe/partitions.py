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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import polars as pl
import pyarrow as pa

from cellframe._arrow import WriteInput, as_arrow_batches
from cellframe.columns import PLATE
from cellframe.errors import InvalidInputError, SchemaMismatchError

__all__ = [
    "MARKER",
    "PartitionVersionError",
    "WriteChanges",
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
#: A stored file at least this large (uncompressed) that holds none of the
#: images being replaced joins the rewritten partition as it is (a hard link)
#: instead of being copied row by row; smaller files are merged with the new rows.
LINK_MIN_BYTES = 4 * ROW_GROUP_BYTES


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


@dataclass
class WriteChanges:
    """What a keyed write changed: rows written, keys new to the store, keys replaced.

    Attributes
    ----------
    rows : int
        Rows written.
    keys_added : int
        Distinct key combinations (images) the store did not hold before.
    keys_replaced : int
        Distinct key combinations the store held and the write replaced.
    rows_removed : int
        Stored rows deleted because their key was replaced.
    """

    rows: int = 0
    keys_added: int = 0
    keys_replaced: int = 0
    rows_removed: int = 0

    def add(self, other: WriteChanges) -> None:
        """Add another write's counts to these."""
        self.rows += other.rows
        self.keys_added += other.keys_added
        self.keys_replaced += other.keys_replaced
        self.rows_removed += other.rows_removed


def write_plate_partition(
    table_root: Path,
    plate: str,
    data: WriteInput,
    *,
    step: str = "write",
    parameters: Mapping[str, Any] | None = None,
    replace_keys: Sequence[str] | None = None,
    conflict: Literal["replace", "error"] = "replace",
    changes: WriteChanges | None = None,
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
    replace_keys : sequence of str, optional
        Key columns within the plate (e.g. ``["Metadata_Well", "Metadata_Site"]``).
        When given, the new partition holds the new rows plus the stored rows
        whose key combination the new rows do not bring: only the images in
        ``data`` are replaced. When None, the whole partition is replaced.
    conflict : {"replace", "error"}, default "replace"
        With ``replace_keys``: replace stored rows of the keys in ``data``, or
        raise :class:`~cellframe.errors.KeyConflictError` if any is stored.
    changes : WriteChanges, optional
        Filled with what the write added and replaced.

    Returns
    -------
    int
        Number of rows written (new rows only, not the stored rows kept).

    Raises
    ------
    SchemaMismatchError
        If the columns differ from the table's other plates, or from the
        plate's stored rows that are kept.
    KeyConflictError
        If ``conflict="error"`` and some keys are already stored.
    InvalidInputError
        If ``data`` holds other plates or no batches.

    Notes
    -----
    The new partition is written in a temporary folder and swapped in by
    renames, so an error or a killed process leaves the old partition.
    """
    table_root = Path(table_root)
    final_dir = partition_dir(table_root, plate)
    table_root.mkdir(parents=True, exist_ok=True)
    keys = list(replace_keys or [])
    if PLATE in keys:
        keys.remove(PLATE)  # the partition itself
    if conflict not in ("replace", "error"):
        raise InvalidInputError(f"conflict must be 'replace' or 'error', not {conflict!r}")
    tmp_dir = table_root / f".tmp-{uuid.uuid4().hex}"
    tmp_dir.mkdir()
    writer = _RollingWriter(tmp_dir, plate, table_root)
    new_keys: list[pl.DataFrame] = []
    summary = WriteChanges()
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
            if keys:
                missing = [k for k in keys if k not in batch.column_names]
                if missing:
                    from cellframe.errors import MissingColumnsError

                    raise MissingColumnsError(
                        f"rows for partition {plate!r} under {table_root}",
                        missing,
                        "replacing rows by key needs those columns in every batch",
                    )
                new_keys.append(pl.from_arrow(batch.select(keys)).unique())  # type: ignore[arg-type, union-attr]
            writer.add(batch)
        summary.rows = writer.rows
        if writer.schema is None:
            raise InvalidInputError(f"nothing to write for plate {plate!r} under {table_root}")
        old_files = _data_files(final_dir) if keys else []
        to_link: list[Path] = []
        if old_files:
            replaced = pl.concat(new_keys).unique()
            to_link = _keep_unreplaced(writer, old_files, replaced, keys, conflict, summary, plate)
        elif keys:
            summary.keys_added = pl.concat(new_keys).unique().height
        writer.close()
        _link_files(tmp_dir, to_link)
        n_rows = sum(_file_rows(f) for f in _data_files(tmp_dir))
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
            if not keys:  # the whole plate is replaced: count it as the key
                summary.rows_removed = sum(_file_rows(f) for f in _data_files(final_dir))
                summary.keys_replaced += 1
            old = table_root / f".old-{uuid.uuid4().hex}"
            final_dir.rename(old)
            tmp_dir.rename(final_dir)
            shutil.rmtree(old)
        else:
            summary.keys_added += 0 if keys else 1
            tmp_dir.rename(final_dir)
    except BaseException:
        writer.abort()
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    if changes is not None:
        changes.add(summary)
    return summary.rows


def _file_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def _keep_unreplaced(
    writer: _RollingWriter,
    old_files: list[Path],
    replaced: pl.DataFrame,
    keys: list[str],
    conflict: str,
    summary: WriteChanges,
    plate: str,
) -> list[Path]:
    """Carry a partition's stored rows whose keys are not in ``replaced`` into the new one.

    Rows of files holding a replaced key, and of small files, are copied into
    ``writer``. A large file (:data:`LINK_MIN_BYTES`) without a replaced key
    and with the new rows' exact schema is returned instead, to be linked
    into the new partition unchanged: adding a site to a large plate then
    costs the site, not the plate, while the plate's files stay few.
    """
    import pyarrow.parquet as pq

    from cellframe.errors import REPLACE_IMAGES_HINT, KeyConflictError, key_example

    file_keys: list[pl.DataFrame] = []
    for path in old_files:
        names = pq.read_schema(path).names
        missing = [k for k in keys if k not in names]
        if missing:
            raise SchemaMismatchError(
                f"stored partition {path} lacks key column(s) {missing}, so its images cannot "
                "be matched with the new rows; re-ingest the whole plate with "
                "mode='replace-plates'"
            )
        file_keys.append(pl.scan_parquet(path, glob=False).select(keys).unique().collect())
    stored = pl.concat(file_keys).unique()
    replaced = replaced.cast(stored.schema, strict=False)  # type: ignore[arg-type]
    clash = replaced.join(stored, on=keys, how="semi", nulls_equal=True)
    if clash.height and conflict == "error":
        raise KeyConflictError(
            f"plate {plate!r} under {writer.table_root} already holds {clash.height} of the "
            f"{replaced.height} image(s) being appended (e.g. "
            f"{key_example(clash.row(0, named=True))}); the store is unchanged. "
            + REPLACE_IMAGES_HINT
        )
    summary.keys_replaced += clash.height
    summary.keys_added += replaced.height - clash.height
    to_link = []
    for path, keys_in_file in zip(old_files, file_keys, strict=True):
        touched = bool(
            clash.height and keys_in_file.join(clash, on=keys, how="semi", nulls_equal=True).height
        )
        if not touched and _linkable(path, writer.schema):
            to_link.append(path)
        else:
            summary.rows_removed += _copy_rows(writer, path, clash if touched else None, keys)
    return to_link


def _linkable(path: Path, schema: Any) -> bool:
    """Whether a stored file can join the new partition as it is (large, same schema)."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    return size >= LINK_MIN_BYTES and meta.schema.to_arrow_schema().equals(
        schema, check_metadata=False
    )


def _link_files(folder: Path, files: list[Path]) -> None:
    """Add stored files to a new partition folder under the next free names (hard links)."""
    import os

    start = len(_data_files(folder))
    for i, path in enumerate(files):
        target = folder / _data_file(start + i)
        try:
            os.link(path, target)
        except OSError:  # a file system without hard links
            shutil.copy2(path, target)


def _copy_rows(
    writer: _RollingWriter, path: Path, drop: pl.DataFrame | None, keys: list[str]
) -> int:
    """Add the rows of one stored file to ``writer``, less those keyed in ``drop``; rows dropped."""
    import pyarrow.parquet as pq

    names = writer.schema.names
    file = pq.ParquetFile(path)
    if sorted(file.schema_arrow.names) != sorted(names):
        extra = [c for c in file.schema_arrow.names if c not in names]
        missing = [c for c in names if c not in file.schema_arrow.names]
        raise SchemaMismatchError(
            f"the new rows of plate {writer.plate!r} have columns that differ from its stored "
            f"rows in {path}: stored only {extra[:10]}, new only {missing[:10]}; every image "
            "of a plate needs the same columns: re-ingest the whole plate with "
            "mode='replace-plates', or write to a new table"
        )
    dropped = 0
    for batch in file.iter_batches(batch_size=writer.group_rows):
        table = pa.Table.from_batches([batch]).select(names)
        if drop is not None:
            frame = pl.from_arrow(table)
            kept = frame.join(drop, on=keys, how="anti", nulls_equal=True)  # type: ignore[union-attr]
            if kept.height < frame.height:  # type: ignore[union-attr]
                dropped += frame.height - kept.height  # type: ignore[union-attr]
                table = kept.to_arrow()
                if not table.num_rows:
                    continue
        writer.add(table)
    return dropped


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


def drop_plate_images(
    table_root: Path,
    plate: str,
    images: pl.DataFrame,
    *,
    step: str = "write",
    parameters: Mapping[str, Any] | None = None,
) -> tuple[int, int]:
    """Delete the stored rows of some images of one plate's partition, atomically.

    Used for images that now hold no objects (empty sites): re-ingesting such
    a site must remove its old cells although it brings no rows.

    Parameters
    ----------
    table_root : Path
        The table's folder (``<db>.parts/<table>``).
    plate : str
        The plate.
    images : DataFrame
        Key columns of the images to delete (e.g. well and site; a
        ``Metadata_Plate`` column is ignored). Key columns the partition lacks
        make the call delete nothing (the partition cannot tell those images
        apart); with only ``Metadata_Plate``, every row of the plate is deleted.
    step, parameters
        Recorded in the rewritten partition's ``_cellframe.json``.

    Returns
    -------
    tuple of int
        The number of images (key combinations) and of rows deleted.
    """
    files = partition_files(Path(table_root), plate)
    if not files:
        return 0, 0
    stored = pl.scan_parquet(files, glob=False)
    schema = stored.collect_schema()
    keys = [c for c in images.columns if c != PLATE]
    if any(k not in schema for k in keys):
        return 0, 0
    if keys:
        drop = images.select(keys).unique().cast({k: schema[k] for k in keys}, strict=False)
        hit = stored.select(keys).unique().join(drop.lazy(), on=keys, how="semi", nulls_equal=True)
        kept = stored.join(drop.lazy(), on=keys, how="anti", nulls_equal=True).collect()
        n_images = hit.collect().height
    else:
        kept = stored.head(0).collect()
        n_images = 1
    n_before = sum(_file_rows(f) for f in files)
    removed = n_before - kept.height
    if removed == 0:
        return 0, 0
    # A plate left without rows keeps a 0-row partition: the table keeps its
    # columns and its view (a table whose only plate is emptied stays readable).
    write_plate_partition(Path(table_root), plate, kept, step=step, parameters=parameters)
    return n_images, removed
