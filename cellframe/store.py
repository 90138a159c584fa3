"""The cellframe store: one DuckDB database holding every table of a screen.

This module is the only code that talks to DuckDB (ARCHITECTURE.md, layer 1).
Tables are read as Polars LazyFrames and written in one transaction each, so a
reader never sees half a write and a killed writer leaves the previous state.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import duckdb
import polars as pl
import pyarrow as pa

from cellframe._arrow import WriteInput, as_arrow_batches
from cellframe.columns import PLATE
from cellframe.errors import (
    REPLACE_IMAGES_HINT,
    InvalidInputError,
    KeyConflictError,
    NullKeyError,
    SchemaMismatchError,
    StoreLockedError,
    TableExistsError,
    TableNotFoundError,
    key_example,
)
from cellframe.partitions import DATA_GLOB, WriteChanges, glob_escape

__all__ = ["Store", "load_sql", "quote_identifier"]

#: Tables the store itself keeps; ``Store.tables()`` lists them after the data tables.
INTERNAL_TABLES = ("cellframe_provenance", "cellframe_info")

#: Schema version written to ``cellframe_info``; bump on incompatible schema changes.
SCHEMA_VERSION = "1"


_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def quote_identifier(name: str) -> str:
    """Quote an identifier for DuckDB SQL (double quotes, embedded quotes doubled).

    Examples
    --------
    >>> quote_identifier('Cells_AreaShape_Area')
    '"Cells_AreaShape_Area"'
    >>> quote_identifier('a"b')
    '"a""b"'
    """
    return '"' + name.replace('"', '""') + '"'


def _sql_root() -> Any:
    """The folder of ``.sql`` files shipped with the package."""
    return resources.files("cellframe") / "sql"


def load_sql(name: str) -> str:
    """Return the text of a SQL file shipped in ``sql/``.

    Parameters
    ----------
    name : str
        File name with or without the ``.sql`` suffix, e.g. ``"schema"``.

    Returns
    -------
    str

    Raises
    ------
    FileNotFoundError
        If no such file ships with the package; the message lists those that do.

    Examples
    --------
    >>> load_sql("schema").splitlines()[0]
    '-- cellframe store schema (applied on every open; every statement is idempotent).'
    >>> load_sql("schema.sql") == load_sql("schema")
    True
    """
    filename = name if name.endswith(".sql") else f"{name}.sql"
    root = _sql_root()
    path = root / filename
    if not path.is_file():
        available = sorted(p.name for p in root.iterdir() if p.name.endswith(".sql"))
        raise FileNotFoundError(
            f"no SQL file {filename!r} in cellframe/sql; available: {available}"
        )
    return path.read_text(encoding="utf-8")


def _version() -> str:
    from cellframe import __version__

    return __version__


def _check_table_name(name: str) -> str:
    if not _TABLE_NAME.match(name):
        raise InvalidInputError(
            f"invalid table name {name!r}: use letters, digits and underscores, "
            "starting with a letter or underscore"
        )
    if name in INTERNAL_TABLES:
        raise InvalidInputError(f"table name {name!r} is reserved for the store itself")
    return name


class Store:
    """One DuckDB database holding the tables of a screen.

    Parameters
    ----------
    path : str or os.PathLike, default ":memory:"
        Database file, created with its parent folder when absent, or
        ``":memory:"``.
    read_only : bool, default False
        Open without write access (several readers may share a file).
    memory_limit : str, optional
        DuckDB's memory limit, e.g. ``"4GB"``; larger work spills to disk.
    threads : int, optional
        DuckDB worker threads (default: all cores).

    Raises
    ------
    StoreLockedError
        If another process holds the database file.
    InvalidInputError
        If the file exists but is not a DuckDB database.

    Examples
    --------
    >>> import polars as pl
    >>> store = Store()
    >>> df = pl.DataFrame({"Metadata_Plate": ["P1"], "Metadata_Well": ["A01"], "f": [1.0]})
    >>> store.write("wells", df, step="example")
    1
    >>> store.sql("SELECT count(*) AS n FROM wells")["n"][0]
    1
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = ":memory:",
        *,
        read_only: bool = False,
        memory_limit: str | None = None,
        threads: int | None = None,
    ) -> None:
        # An absolute path: Ray workers and other processes that write this
        # store's Parquet partitions may run in another working directory.
        in_memory = str(path) == ":memory:"
        self.path = str(path) if in_memory else str(Path(path).resolve())
        self.read_only = read_only
        if not in_memory and "?" in self.path:
            # DuckDB reads "?" as the start of connection options and then
            # fails on its write-ahead log with an unrelated message.
            raise InvalidInputError(
                f"DuckDB cannot keep a database at {self.path}: the path holds '?'; "
                "choose a folder and file name without it"
            )
        if not in_memory:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {}
        if memory_limit is not None:
            config["memory_limit"] = memory_limit
        if threads is not None:
            config["threads"] = threads
        try:
            self._con = duckdb.connect(self.path, read_only=read_only, config=config)
        except duckdb.IOException as exc:
            text = str(exc)
            if "lock" in text.lower():
                raise StoreLockedError(
                    f"the store {self.path} is locked by another process ({text.strip()}); "
                    "close the other cellframe/DuckDB session or wait for it to finish, "
                    "then retry"
                ) from exc
            raise InvalidInputError(
                f"cannot open {self.path} as a DuckDB database: {text.strip()}"
            ) from exc
        except duckdb.Error as exc:
            raise InvalidInputError(
                f"cannot open {self.path} as a DuckDB database: {str(exc).strip()}"
            ) from exc
        if not read_only:
            self._con.execute(load_sql("schema"))
            self._con.execute(
                "INSERT OR REPLACE INTO cellframe_info VALUES ('schema_version', ?)",
                [SCHEMA_VERSION],
            )
        self._con.execute(load_sql("macros"))
        #: What the last :meth:`write` or :meth:`write_partition` added and replaced.
        self.last_write = WriteChanges()
        #: Partition views whose ``<db>.parts/<table>`` folder is absent (see _relocate_views).
        self._missing_parts: set[str] = set()
        #: Inside :meth:`transaction`: :meth:`write` joins it instead of committing.
        self._in_transaction = False
        if not in_memory:
            self._relocate_views()

    # ------------------------------------------------------------------ basics
    def __repr__(self) -> str:
        return f"Store({self.path!r}{', read_only=True' if self.read_only else ''})"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database connection (the file stays)."""
        self._con.close()

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The underlying DuckDB connection, for queries the store does not wrap."""
        return self._con

    @property
    def parts_dir(self) -> Path:
        """Folder beside the database holding per-plate Parquet partitions."""
        if self.path == ":memory:":
            raise InvalidInputError(
                "an in-memory store has no folder for Parquet partitions; open a file store"
            )
        p = Path(self.path)
        return p.with_name(p.stem + ".parts")

    # ------------------------------------------------------------------ reading
    def sql(
        self, query: str, params: Sequence[Any] | Mapping[str, Any] | None = None
    ) -> pl.DataFrame:
        """Run a query and return its result.

        Parameters
        ----------
        query : str
            DuckDB SQL; values go in ``params`` (``?`` or ``$name``), never
            formatted into the string.
        params : sequence or mapping, optional
            Query parameters.

        Returns
        -------
        polars.DataFrame
            Empty (no columns) for statements that return nothing.

        Raises
        ------
        InvalidInputError
            If a file the query reads is missing or unreadable (e.g. the
            ``<db>.parts`` folder was not copied with the database file).

        Examples
        --------
        >>> import polars as pl
        >>> store = Store()
        >>> _ = store.write("wells", pl.DataFrame({"Metadata_Plate": ["P1", "P1", "P2"],
        ...                                        "f": [1.0, 2.0, 3.0]}), step="example")
        >>> store.sql("SELECT Metadata_Plate, sum(f) AS total FROM wells WHERE f > ? "
        ...           "GROUP BY 1 ORDER BY 1", [1.5]).rows()
        [('P1', 2.0), ('P2', 3.0)]
        """
        try:
            rel = self._con.sql(query, params=params)
            if rel is None:  # a statement that returns no rows
                return pl.DataFrame()
            return rel.pl()
        except duckdb.InvalidInputException as exc:
            text = str(exc)
            if self._missing_parts and "which is missing: copy or move" in text:
                raise InvalidInputError(text.split("Error: ", 1)[-1].strip()) from exc
            raise
        except duckdb.IOException as exc:
            # Typically a partitioned table whose files did not travel with a
            # copied database file: say so instead of DuckDB's traceback.
            raise InvalidInputError(
                f"a query on store {self.path} could not read a file: {str(exc).strip()}; "
                f"a partitioned table's rows live in {Path(self.path).stem}.parts beside the "
                "database file: copy or move that folder together with it"
            ) from exc

    def has_table(self, name: str) -> bool:
        """Whether a table or view called ``name`` exists."""
        n_tables = self._scalar(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND schema_name = 'main'",
            [name],
        )
        n_views = self._scalar(
            "SELECT count(*) FROM duckdb_views() WHERE view_name = ? AND schema_name = 'main' "
            "AND NOT internal",
            [name],
        )
        return bool(n_tables) or bool(n_views)

    def _rows(self, query: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        # Always fetch everything: DuckDB refuses new work on a connection whose
        # previous result is unfinished.
        return self._con.execute(query, params or []).fetchall()

    def _scalar(self, query: str, params: Sequence[Any] | None = None) -> Any:
        rows = self._rows(query, params)
        return rows[0][0] if rows else None

    def _require(self, name: str) -> None:
        if not self.has_table(name):
            known = ", ".join(self.table_names()) or "none"
            raise TableNotFoundError(f"no table {name!r} in store {self.path}; tables: {known}")

    def _require_rows(self, name: str) -> None:
        """Like :meth:`_require`, and the files of a partitioned table must be present."""
        self._require(name)
        if name in self._missing_parts:
            raise InvalidInputError(self._missing_message(name))

    def _missing_message(self, name: str) -> str:
        return (
            f"table {name!r} of store {self.path} is kept as Parquet files in "
            f"{self.parts_dir / name}, which is missing: copy or move the "
            f"{self.parts_dir.name} folder together with the database file"
        )

    def table_names(self) -> list[str]:
        """Names of the data tables and views (internal tables excluded), sorted."""
        rows = self._rows(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' "
            "UNION SELECT view_name FROM duckdb_views() WHERE schema_name = 'main' "
            "AND NOT internal ORDER BY 1"
        )
        return [r[0] for r in rows if r[0] not in INTERNAL_TABLES]

    def columns(self, table: str) -> list[str]:
        """Column names of ``table`` in order."""
        self._require(table)
        rows = self._rows(
            "SELECT database_name = 'temp', column_name FROM duckdb_columns() "
            "WHERE table_name = ? AND schema_name = 'main' ORDER BY column_index",
            [table],
        )
        # A read-only store that was moved shadows a partition view with a
        # temporary one (see _relocate_views): take that one's columns.
        temp = any(r[0] for r in rows)
        return [r[1] for r in rows if r[0] == temp]

    def schema(self, table: str) -> pl.Schema:
        """Polars schema of ``table`` (no rows are read).

        For a partitioned table only the first data file's footer is read (a
        scan of the whole view would parse every file's footer: memory and
        time grow with the row groups of the screen).
        """
        self._require(table)
        root = self.partition_root(table)
        first = min(root.glob(f"{PLATE}=*/{DATA_GLOB}"), default=None) if root else None
        if first is not None:
            in_file = pl.scan_parquet(first, glob=False).collect_schema()
            return pl.Schema(
                {c: pl.String if c == PLATE else in_file[c] for c in self.columns(table)}
            )
        return self.scan(table).collect_schema()

    def partition_root(self, table: str) -> Path | None:
        """Folder of ``table``'s Parquet partitions, or None for a native table."""
        if self.path == ":memory:":
            return None
        root = self.parts_dir / table
        return root if root.is_dir() else None

    def scan(self, table: str, columns: Sequence[str] | None = None) -> pl.LazyFrame:
        """Read a table lazily.

        Filters and column selections are pushed down to DuckDB (or to the
        Parquet files of a partitioned table), so
        ``store.scan("cells").filter(pl.col("Metadata_Plate") == "P1")`` reads
        one plate only.

        Parameters
        ----------
        table : str
            Table or view name.
        columns : sequence of str, optional
            Columns to keep (all by default).

        Returns
        -------
        polars.LazyFrame

        Examples
        --------
        >>> import polars as pl
        >>> store = Store()
        >>> _ = store.write("wells", pl.DataFrame({"Metadata_Plate": ["P1", "P1", "P2"],
        ...                                        "f": [1.0, 2.0, 3.0]}), step="example")
        >>> store.scan("wells").filter(pl.col("Metadata_Plate") == "P1").collect()["f"].to_list()
        [1.0, 2.0]
        """
        self._require_rows(table)
        root = self.partition_root(table)
        if root is not None and any(root.glob(f"{PLATE}=*/{DATA_GLOB}")):
            lf = pl.scan_parquet(
                f"{glob_escape(root)}/{PLATE}=*/{DATA_GLOB}",
                hive_partitioning=True,
                hive_schema={PLATE: pl.String},
            )
            # Hive puts the partition key last; keep the view's column order.
            lf = lf.select(self.columns(table))
        else:
            lf = self._con.sql(f"SELECT * FROM {quote_identifier(table)}").pl(lazy=True)
        if columns is not None:
            lf = lf.select(list(columns))
        return lf

    def read(self, table: str, columns: Sequence[str] | None = None) -> pl.DataFrame:
        """Read a whole table into memory (use :meth:`scan` for large tables).

        Examples
        --------
        >>> import polars as pl
        >>> store = Store()
        >>> _ = store.write("wells", pl.DataFrame({"Metadata_Plate": ["P1"], "f": [1.0]}),
        ...                 step="example")
        >>> store.read("wells", columns=["f"]).rows()
        [(1.0,)]
        """
        self._require_rows(table)
        if self.partition_root(table) is not None:
            return self.scan(table, columns).collect()
        # Eager reads skip building a lazy DuckDB source, which costs about a
        # second on tables thousands of columns wide.
        cols = "*" if columns is None else ", ".join(quote_identifier(c) for c in columns)
        return self._con.sql(f"SELECT {cols} FROM {quote_identifier(table)}").pl()

    def plates(self, table: str) -> list[str]:
        """Distinct ``Metadata_Plate`` values of ``table``, sorted.

        Examples
        --------
        >>> import polars as pl
        >>> store = Store()
        >>> _ = store.write("wells", pl.DataFrame({"Metadata_Plate": ["P2", "P1", "P2"],
        ...                                        "f": [1.0, 2.0, 3.0]}), step="example")
        >>> store.plates("wells")
        ['P1', 'P2']
        """
        self._require(table)
        if PLATE not in self.columns(table):
            raise InvalidInputError(f"table {table!r} has no {PLATE} column")
        rows = self._rows(
            f"SELECT DISTINCT {quote_identifier(PLATE)} FROM {quote_identifier(table)} ORDER BY 1"
        )
        return [r[0] for r in rows]

    def iter_plates(
        self, table: str, columns: Sequence[str] | None = None
    ) -> Iterator[tuple[str, pl.LazyFrame]]:
        """Yield ``(plate, LazyFrame of that plate's rows)`` for each plate.

        Each frame reads only its plate, so work done plate by plate holds one
        plate in memory at a time.

        Examples
        --------
        >>> import polars as pl
        >>> store = Store()
        >>> _ = store.write("wells", pl.DataFrame({"Metadata_Plate": ["P2", "P1", "P2"],
        ...                                        "f": [1.0, 2.0, 3.0]}), step="example")
        >>> [(plate, rows.collect()["f"].sum()) for plate, rows in store.iter_plates("wells")]
        [('P1', 2.0), ('P2', 4.0)]
        """
        for plate in self.plates(table):
            yield plate, self.scan(table, columns).filter(pl.col(PLATE) == plate)

    def tables(self) -> pl.DataFrame:
        """One row per data table: rows, columns, kind and the provenance of its last write.

        Returns
        -------
        polars.DataFrame
            Columns ``table``, ``kind``, ``rows``, ``columns``, ``step``,
            ``parameters``, ``cellframe_version``, ``created_at``.

        Examples
        --------
        >>> import polars as pl
        >>> store = Store()
        >>> _ = store.write("wells", pl.DataFrame({"Metadata_Plate": ["P1"], "f": [1.0]}),
        ...                 step="aggregate")
        >>> store.tables().filter(pl.col("table") == "wells").select(
        ...     "table", "kind", "rows", "columns", "step").rows()
        [('wells', 'table', 1, 2, 'aggregate')]
        """
        records = []
        for name in self.table_names():
            kind = "view" if self._is_view(name) else "table"
            if self.partition_root(name) is not None:
                kind = "parquet"
            q = quote_identifier(name)
            if name in self._missing_parts:
                kind = "parquet (files missing)"
            n_rows = (
                None if name in self._missing_parts else self._scalar(f"SELECT count(*) FROM {q}")
            )
            n_cols = len(self.columns(name))
            prov = self._rows(
                "SELECT step, parameters::VARCHAR, cellframe_version, created_at "
                "FROM cellframe_provenance WHERE table_name = ? ORDER BY id DESC LIMIT 1",
                [name],
            )
            step, params, version, created = prov[0] if prov else (None, None, None, None)
            records.append(
                {
                    "table": name,
                    "kind": kind,
                    "rows": n_rows,
                    "columns": n_cols,
                    "step": step,
                    "parameters": params,
                    "cellframe_version": version,
                    "created_at": created,
                }
            )
        schema = {
            "table": pl.String,
            "kind": pl.String,
            "rows": pl.Int64,
            "columns": pl.Int64,
            "step": pl.String,
            "parameters": pl.String,
            "cellframe_version": pl.String,
            "created_at": pl.Datetime("us", "UTC"),
        }
        return pl.DataFrame(records, schema=schema)

    def provenance(self, table: str | None = None) -> pl.DataFrame:
        """Every provenance record (or those of one table), oldest first.

        Examples
        --------
        >>> import polars as pl
        >>> store = Store()
        >>> _ = store.write("wells", pl.DataFrame({"Metadata_Plate": ["P1"], "f": [1.0]}),
        ...                 step="aggregate", parameters={"method": "median"})
        >>> store.provenance("wells").select("table_name", "step", "parameters", "n_rows").rows()
        [('wells', 'aggregate', '{"method": "median"}', 1)]
        """
        if table is None:
            return self.sql("SELECT * FROM cellframe_provenance ORDER BY id")
        return self.sql(
            "SELECT * FROM cellframe_provenance WHERE table_name = ? ORDER BY id", [table]
        )

    def _is_view(self, name: str) -> bool:
        return bool(
            self._scalar(
                "SELECT count(*) FROM duckdb_views() WHERE view_name = ? AND NOT internal", [name]
            )
        )

    # ------------------------------------------------------------------ writing
    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """Make several :meth:`write` calls one transaction: all of them are kept, or none.

        Inside the block every :meth:`write` joins this transaction instead of
        committing its own; any exception in the block rolls all of them back
        (the database file is left as it was) and propagates. Only
        :meth:`write` joins; Parquet partitions are files, outside it.

        Yields
        ------
        Store
            This store.

        Raises
        ------
        InvalidInputError
            If the store is read-only, or a transaction is already open.

        Examples
        --------
        >>> import polars as pl
        >>> store = Store()
        >>> try:
        ...     with store.transaction():
        ...         _ = store.write("a", pl.DataFrame({"f": [1.0]}), step="example")
        ...         raise RuntimeError("a later step fails")
        ... except RuntimeError:
        ...     pass
        >>> store.has_table("a")
        False
        """
        if self.read_only:
            raise InvalidInputError(f"store {self.path} is open read-only; reopen it to write")
        if self._in_transaction:
            raise InvalidInputError("a transaction of this store is already open; they do not nest")
        self._con.begin()
        self._in_transaction = True
        try:
            yield self
        except BaseException:
            self._con.rollback()
            raise
        else:
            self._con.commit()
        finally:
            self._in_transaction = False

    def write(
        self,
        table: str,
        data: WriteInput,
        *,
        mode: Literal["append", "replace"] = "append",
        replace_plate: bool = False,
        replace_keys: Sequence[str] | None = None,
        conflict: Literal["replace", "error"] = "replace",
        new_columns: Literal["error", "add"] = "error",
        step: str = "write",
        parameters: Mapping[str, Any] | None = None,
        source: str | None = None,
    ) -> int:
        """Write rows to ``table`` in one transaction.

        Parameters
        ----------
        table : str
            Destination table; created from the first batch's schema when absent.
        data : DataFrame, LazyFrame, Arrow Table/RecordBatch/RecordBatchReader, or iterator
            The rows. An iterator is consumed batch by batch and never held whole.
        mode : {"append", "replace"}, default "append"
            ``"replace"`` drops the table's previous rows and columns first.
        replace_plate : bool, default False
            Delete the stored rows of every plate present in ``data`` before
            inserting, so re-ingesting a plate replaces it instead of
            duplicating it. Needs a ``Metadata_Plate`` column. Same as
            ``replace_keys=["Metadata_Plate"]``.
        replace_keys : sequence of str, optional
            Delete the stored rows whose values of these columns occur in
            ``data`` before inserting (e.g. plate, well, site to redo one site),
            in the same transaction. Rows of other key values stay.
        conflict : {"replace", "error"}, default "replace"
            What to do when rows of a key in ``data`` (``replace_keys``,
            ``replace_plate``) are already stored: delete them (replace), or
            raise :class:`KeyConflictError` and leave the store unchanged
            (append without ever duplicating). A key brought by several
            batches of one write is not a conflict.
        new_columns : {"error", "add"}, default "error"
            What to do with columns the stored table lacks: raise
            :class:`SchemaMismatchError`, or add them (NULL for earlier rows).
        step : str
            Name of the step that made the rows, recorded in provenance.
        parameters : mapping, optional
            Parameters of that step (JSON-serialisable), recorded in provenance.
        source : str, optional
            Input file or table the rows came from, recorded in provenance.

        Returns
        -------
        int
            Number of rows written.

        Raises
        ------
        SchemaMismatchError
            If the rows' columns differ from the stored table's.
        MissingColumnsError
            If ``replace_plate`` is set and there is no ``Metadata_Plate`` column.
        KeyConflictError
            If ``conflict="error"`` and a key of ``data`` is already stored.
        NullKeyError
            If rows leave null a column the stored table declares NOT NULL
            (the keys and locations of ``images``, ``objects``, ``platemap``).

        Notes
        -----
        Any exception (or the process being killed) before the commit leaves
        the store exactly as it was. Inside :meth:`transaction` the write joins
        that transaction (kept or rolled back with the others). What the write
        added and replaced is in :attr:`last_write` afterwards.

        Examples
        --------
        >>> import polars as pl
        >>> store = Store()
        >>> wells = pl.DataFrame({"Metadata_Plate": ["P1", "P1", "P2"],
        ...                       "Metadata_Well": ["A01", "A02", "A01"], "f": [1.0, 2.0, 3.0]})
        >>> store.write("wells", wells, step="example")
        3

        Redo plate P2 without duplicating it: its stored rows are replaced in the
        same transaction, plate P1 stays.

        >>> redo = pl.DataFrame({"Metadata_Plate": ["P2"], "Metadata_Well": ["A01"], "f": [30.0]})
        >>> store.write("wells", redo, replace_plate=True, step="example")
        1
        >>> store.last_write
        WriteChanges(rows=1, keys_added=0, keys_replaced=1, rows_removed=1)
        >>> store.read("wells").rows()
        [('P1', 'A01', 1.0), ('P1', 'A02', 2.0), ('P2', 'A01', 30.0)]
        """
        if self.read_only:
            raise InvalidInputError(f"store {self.path} is open read-only; reopen it to write")
        _check_table_name(table)
        if mode not in ("append", "replace"):
            raise InvalidInputError(f"mode must be 'append' or 'replace', not {mode!r}")
        if new_columns not in ("error", "add"):
            raise InvalidInputError(f"new_columns must be 'error' or 'add', not {new_columns!r}")
        if conflict not in ("replace", "error"):
            raise InvalidInputError(f"conflict must be 'replace' or 'error', not {conflict!r}")
        changes = WriteChanges()
        params_json = json.dumps(dict(parameters or {}), default=str, sort_keys=True)
        keys = list(replace_keys or [])
        if replace_plate and PLATE not in keys:
            keys = [PLATE, *keys]
        q = quote_identifier(table)
        con = self._con
        own = not self._in_transaction  # inside transaction(): that block commits
        if own:
            con.begin()
        try:
            if mode == "replace":
                if self._is_view(table):
                    con.execute(f"DROP VIEW {q}")
                con.execute(f"DROP TABLE IF EXISTS {q}")
            exists = self.has_table(table)
            if exists and self._is_view(table):
                raise InvalidInputError(
                    f"{table!r} is a view over Parquet partitions; write it with "
                    "Store.write_partition, or pass mode='replace' to turn it into a table"
                )
            stored_cols = self.columns(table) if exists else None
            not_null = self._not_null_columns(table) if exists else []
            n_rows = 0
            for i, batch in enumerate(as_arrow_batches(data)):
                cols = batch.column_names
                if not_null:
                    self._check_not_null(table, batch, not_null, n_rows, source)
                lowered = [c.lower() for c in cols]
                if len(set(lowered)) != len(cols):
                    # DuckDB identifiers are case-insensitive: "Metadata_Control"
                    # and "Metadata_control" are the same column there.
                    dup = sorted({c for c in cols if lowered.count(c.lower()) > 1})
                    raise SchemaMismatchError(
                        f"rows for {table!r} repeat column(s) {dup} (names are compared "
                        "case-insensitively); rename one of each pair"
                    )
                missing_keys = [k for k in keys if k not in cols]
                if missing_keys:
                    from cellframe.errors import MissingColumnsError

                    raise MissingColumnsError(
                        f"rows for table {table!r}",
                        missing_keys,
                        "replacing rows by key (replace_plate/replace_keys) needs those "
                        "columns in every batch",
                    )
                name = f"_cf_batch_{uuid.uuid4().hex}"
                con.register(name, batch)
                try:
                    if stored_cols is None:
                        con.execute(f"CREATE TABLE {q} AS SELECT * FROM {name} LIMIT 0")
                        stored_cols = list(cols)
                    else:
                        stored_cols = self._reconcile(
                            table, stored_cols, batch, name, new_columns, i
                        )
                    if keys:
                        self._delete_keys(table, keys, name, conflict, changes, source)
                    if batch.num_rows:
                        col_list = ", ".join(quote_identifier(c) for c in cols)
                        con.execute(f"INSERT INTO {q} ({col_list}) SELECT {col_list} FROM {name}")
                        n_rows += batch.num_rows
                finally:
                    try:
                        con.unregister(name)
                    except duckdb.Error:  # an aborted transaction; the original error matters
                        pass
            if stored_cols is None:
                raise InvalidInputError(
                    f"nothing to write to {table!r}: the input yielded no batches"
                )
            self._record(table, step, params_json, n_rows, source)
            con.execute("DROP TABLE IF EXISTS _cf_seen_keys")
            if own:
                con.commit()
        except BaseException:
            if own:
                con.rollback()
                con.execute("DROP TABLE IF EXISTS _cf_seen_keys")
            raise
        changes.rows = n_rows
        self.last_write = changes
        return n_rows

    def _not_null_columns(self, table: str) -> list[str]:
        """Columns of a stored table declared NOT NULL (the fixed tables of sql/schema.sql)."""
        return [
            name
            for (name,) in self._rows(
                "SELECT column_name FROM duckdb_columns() WHERE table_name = ? "
                "AND schema_name = 'main' AND NOT is_nullable ORDER BY column_index",
                [table],
            )
        ]

    @staticmethod
    def _check_not_null(
        table: str, batch: pa.Table, not_null: list[str], offset: int, source: str | None
    ) -> None:
        """Refuse a batch with nulls (or no column at all) where ``table`` declares NOT NULL.

        Checked before the batch reaches DuckDB, whose constraint error names
        neither the rows nor their count. ``offset`` is the number of rows of
        earlier batches, so row numbers count from the start of the input.
        """
        import pyarrow.compute as pc

        n = batch.num_rows
        if n == 0:
            return
        defects = []
        for col in not_null:
            if col not in batch.column_names:
                defects.append(f"{col!r} (absent: {n} of {n} rows)")
                continue
            values = batch.column(col)
            if values.null_count:
                first = pc.index(pc.is_null(values), True).as_py()
                defects.append(
                    f"{col!r} ({values.null_count} of {n} rows, first at row "
                    f"{offset + first + 1} of the input)"
                )
        if defects:
            raise NullKeyError(
                (f"{source}: " if source else "")
                + f"table {table!r} declares NOT NULL column(s) that the rows leave null: "
                + "; ".join(defects)
                + "; nothing was written. Drop or fill those rows (every row of "
                f"{table!r} needs its keys and location) before writing"
            )

    def _delete_keys(
        self,
        table: str,
        keys: list[str],
        batch_name: str,
        conflict: str,
        changes: WriteChanges,
        source: str | None = None,
    ) -> None:
        """Delete stored rows whose ``keys`` values occur in the batch (inside the write's transaction).

        Rows inserted earlier in the same write are protected: a key combination
        is deleted only the first time a batch brings it. With
        ``conflict="error"`` a stored key raises :class:`KeyConflictError` instead.
        """
        key_list = ", ".join(quote_identifier(k) for k in keys)
        q = quote_identifier(table)
        seen = "_cf_seen_keys"
        hits = "_cf_hit_keys"
        self._con.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {seen} AS SELECT DISTINCT {key_list} "
            f"FROM {batch_name} LIMIT 0"
        )
        self._con.execute(
            f"CREATE OR REPLACE TEMP TABLE _cf_new_keys AS SELECT DISTINCT {key_list} "
            f"FROM {batch_name} EXCEPT SELECT * FROM {seen}"
        )
        # Struct comparison: NULL key values match NULL (as the Parquet layout's anti-join).
        self._con.execute(
            f"CREATE OR REPLACE TEMP TABLE {hits} AS SELECT DISTINCT {key_list} FROM {q} "
            f"WHERE ({key_list}) IN (SELECT ({key_list}) FROM _cf_new_keys)"
        )
        n_new = self._scalar("SELECT count(*) FROM _cf_new_keys")
        n_hit = self._scalar(f"SELECT count(*) FROM {hits}")
        if n_hit and conflict == "error":
            example = self._con.sql(f"SELECT * FROM {hits} LIMIT 1").pl().row(0, named=True)
            raise KeyConflictError(
                (f"{source}: " if source else "")
                + f"table {table!r} of {self.path} already holds rows of {n_hit} of the "
                f"image(s) being appended (keys {keys}; e.g. {key_example(example)}); nothing "
                f"was written. {REPLACE_IMAGES_HINT} of the source"
            )
        if n_hit:
            deleted = self._con.execute(
                f"DELETE FROM {q} WHERE ({key_list}) IN (SELECT ({key_list}) FROM {hits})"
            ).fetchone()
            changes.rows_removed += int(deleted[0]) if deleted else 0
        changes.keys_replaced += n_hit
        changes.keys_added += n_new - n_hit
        self._con.execute(f"INSERT INTO {seen} SELECT * FROM _cf_new_keys")
        self._con.execute(f"DROP TABLE {hits}")
        self._con.execute("DROP TABLE _cf_new_keys")

    def _reconcile(
        self,
        table: str,
        stored: list[str],
        batch: pa.Table,
        batch_name: str,
        new_columns: str,
        index: int,
    ) -> list[str]:
        cols = batch.column_names
        extra = [c for c in cols if c not in set(stored)]
        missing = [c for c in stored if c not in set(cols)]
        if extra and new_columns == "error":
            raise SchemaMismatchError(
                f"rows for {table!r} (batch {index}) have {len(extra)} column(s) the stored "
                f"table lacks: {extra[:10]}{' ...' if len(extra) > 10 else ''}; "
                "write to a new table, pass mode='replace', or new_columns='add'"
            )
        if missing and new_columns == "error":
            raise SchemaMismatchError(
                f"rows for {table!r} (batch {index}) lack {len(missing)} column(s) of the "
                f"stored table: {missing[:10]}{' ...' if len(missing) > 10 else ''}; "
                "feature sets must agree across plates (select common features first)"
            )
        if extra:
            types = dict(
                self._rows(
                    f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {batch_name})"
                )
            )
            for c in extra:
                self._con.execute(
                    f"ALTER TABLE {quote_identifier(table)} ADD COLUMN {quote_identifier(c)} {types[c]}"
                )
            stored = [*stored, *extra]
        return stored

    def _record(
        self, table: str, step: str, params_json: str, n_rows: int, source: str | None
    ) -> None:
        self._con.execute(
            "INSERT INTO cellframe_provenance "
            "(table_name, step, parameters, cellframe_version, created_at, n_rows, source) "
            "VALUES (?, ?, ?::JSON, ?, ?, ?, ?)",
            [table, step, params_json, _version(), datetime.now(UTC), n_rows, source],
        )

    def record_provenance(
        self,
        table: str,
        step: str,
        parameters: Mapping[str, Any] | None = None,
        *,
        n_rows: int | None = None,
        source: str | None = None,
    ) -> None:
        """Add a provenance record for a table made outside :meth:`write`."""
        params_json = json.dumps(dict(parameters or {}), default=str, sort_keys=True)
        self._record(table, step, params_json, n_rows if n_rows is not None else 0, source)

    def drop(self, table: str) -> None:
        """Remove a table (or partitioned view with its files) and its provenance.

        Examples
        --------
        >>> import polars as pl
        >>> store = Store()
        >>> _ = store.write("scratch", pl.DataFrame({"f": [1.0]}), step="example")
        >>> store.drop("scratch")
        >>> store.has_table("scratch")
        False
        """
        self._require(table)
        q = quote_identifier(table)
        con = self._con
        con.begin()
        try:
            if self._is_view(table):
                con.execute(f"DROP VIEW {q}")
            else:
                con.execute(f"DROP TABLE {q}")
            con.execute("DELETE FROM cellframe_provenance WHERE table_name = ?", [table])
            con.commit()
        except BaseException:
            con.rollback()
            raise
        root = self.partition_root(table)
        if root is not None:
            shutil.rmtree(root)

    # ------------------------------------------------- per-plate Parquet layout
    def write_partition(
        self,
        table: str,
        plate: str,
        data: WriteInput,
        *,
        step: str = "write",
        parameters: Mapping[str, Any] | None = None,
        source: str | None = None,
        replace_keys: Sequence[str] | None = None,
        conflict: Literal["replace", "error"] = "replace",
    ) -> int:
        """Write one plate of a large table as a Parquet partition beside the database.

        The rows go to ``<db>.parts/<table>/Metadata_Plate=<plate>/part.parquet``
        (zstd; a large plate continues in ``part-1.parquet``, ...), first under a temporary name and then renamed, so a reader never
        sees half a plate; the table is a view over all partitions, so SQL and
        :meth:`scan` see one table. Re-writing a plate replaces it, unless
        ``replace_keys`` names the columns of an image: then only the images
        in ``data`` are replaced and the plate's other rows stay.

        Parameters
        ----------
        table : str
            View name.
        plate : str
            The plate these rows belong to.
        data : DataFrame, LazyFrame, Arrow data, or iterator of batches
            The plate's rows; a ``Metadata_Plate`` column, if present, must
            equal ``plate`` and is not stored in the file (it is the partition key).
        replace_keys : sequence of str, optional
            Columns identifying an image (e.g. plate, well, site): replace only
            the stored rows of the key values in ``data``.
        conflict : {"replace", "error"}, default "replace"
            With ``replace_keys``: replace stored images, or raise
            :class:`KeyConflictError` (partition unchanged) if any is stored.

        Returns
        -------
        int
            Number of rows written.
        """
        from cellframe.partitions import write_plate_partition

        _check_table_name(table)
        if self.has_table(table) and not self._is_view(table):
            raise InvalidInputError(
                f"{table!r} is a native table; partitions can only be added to a partitioned view"
            )
        if self.read_only:
            raise InvalidInputError(f"store {self.path} is open read-only; reopen it to write")
        changes = WriteChanges()
        try:
            n_rows = write_plate_partition(
                self.parts_dir / table,
                plate,
                data,
                step=step,
                parameters=parameters,
                replace_keys=replace_keys,
                conflict=conflict,
                changes=changes,
            )
        except KeyConflictError as exc:
            if source is None:
                raise
            raise KeyConflictError(f"{source}: {exc}") from exc
        self.last_write = changes
        self.register_partitions(table)
        params_json = json.dumps(
            {**dict(parameters or {}), "plate": plate}, default=str, sort_keys=True
        )
        self._record(table, step, params_json, n_rows, source)
        return n_rows

    def check_partition_target(self, table: str) -> None:
        """Refuse to write Parquet partitions for ``table`` when it is a native table or a plain view.

        The Ray engine writes a table as per-plate Parquet partitions under a
        view; DuckDB cannot turn a stored table into that view. Call this
        before any work so a run fails at once, with nothing written.

        Raises
        ------
        TableExistsError
            If ``table`` exists and is not a view over this store's partitions.
        """
        if not self.has_table(table) or self.partition_root(table) is not None:
            return
        kind = "view" if self._is_view(table) else "native DuckDB table"
        raise TableExistsError(
            f"table {table!r} exists in {self.path} as a {kind}, and the Ray engine writes "
            f"Parquet partitions (under {self.parts_dir / table}) that cannot replace it; "
            "write to another table (--output another name), drop it first "
            f"(Store.drop({table!r})), or use --engine local, which replaces it"
        )

    def register_partitions(self, table: str) -> None:
        """(Re)create the view of ``table`` over its Parquet partitions.

        The view reads the partitions beside this database file. On open, a
        store whose folder was copied or moved re-creates its views for the
        new location (see :meth:`_relocate_views`), so a store folder can be
        copied or moved.

        Raises
        ------
        TableExistsError
            If ``table`` is a native table or a plain view (see
            :meth:`check_partition_target`).
        TableNotFoundError
            If there are no partitions.
        """
        self.check_partition_target(table)
        root = self.parts_dir / table
        if not any(root.glob(f"{PLATE}=*/{DATA_GLOB}")):
            raise TableNotFoundError(f"no Parquet partitions under {root}")
        if table in self._missing_parts:  # its folder is back: drop the placeholder
            self._con.execute(f"DROP VIEW IF EXISTS temp.{quote_identifier(table)}")
            self._missing_parts.discard(table)
        self._con.execute(self._partition_view_sql(table, temporary=False))

    def _partition_pattern(self, table: str) -> str:
        return f"{glob_escape(self.parts_dir / table)}/{PLATE}=*/{DATA_GLOB}"

    def _partition_view_sql(self, table: str, *, temporary: bool) -> str:
        pattern = self._partition_pattern(table).replace("'", "''")
        # hive_types keeps plate names such as "0001" as strings.
        return (
            f"CREATE OR REPLACE {'TEMP ' if temporary else ''}VIEW {quote_identifier(table)} AS "
            # The plate first, as in native tables (hive puts the partition key last).
            f"SELECT CAST({quote_identifier(PLATE)} AS VARCHAR) AS {quote_identifier(PLATE)}, "
            f"* EXCLUDE ({quote_identifier(PLATE)}) "
            f"FROM read_parquet('{pattern}', hive_partitioning = true, "
            f"hive_types = {{'{PLATE}': VARCHAR}})"
        )

    def _relocate_views(self) -> None:
        """Point partition views at this database's own folder if it was copied or moved.

        A view's SQL holds the absolute glob of its partitions (DuckDB resolves
        relative paths against the process's working folder, not the database
        file). A view whose glob is not this store's ``<db>.parts/<table>`` is
        re-created for it: in the file when the store is writable (the next
        open then finds nothing to do), as a temporary view shadowing the
        stored one when it is read-only.
        """
        rows = self._rows(
            "SELECT view_name, sql FROM duckdb_views() WHERE schema_name = 'main' "
            "AND NOT internal AND NOT temporary AND sql LIKE '%read_parquet(%'"
        )
        for name, sql in rows:
            expected = self._partition_pattern(name).replace("'", "''")
            if f"'{expected}'" in sql:
                continue
            if not _stored_partition_view(sql, name):
                continue  # a view the user made; not ours to rewrite
            if not (self.parts_dir / name).is_dir():
                # Its partitions did not travel with the database file. The
                # stored view may still reach the original's files: shadow it
                # with a session-only view that names the missing folder, so
                # the copy never answers from another store's files.
                self._missing_parts.add(name)
                message = self._missing_message(name).replace("'", "''")
                self._con.execute(
                    f"CREATE OR REPLACE TEMP VIEW {quote_identifier(name)} AS "
                    f"SELECT error('{message}') AS {quote_identifier(PLATE)} FROM range(1) "
                    # The filter makes every query evaluate it (count(*) included).
                    f"WHERE error('{message}') IS NOT NULL"
                )
                continue
            self._con.execute(self._partition_view_sql(name, temporary=self.read_only))


def _stored_partition_view(sql: str, table: str) -> bool:
    """Whether a view's SQL is one :meth:`Store.register_partitions` made for ``table``."""
    tail = f".parts/{table}/{PLATE}=*/{DATA_GLOB}'"
    return "hive_partitioning" in sql and tail in sql
