"""Subcommands over the store itself: ``tables`` and ``sql``.

``cellframe sql`` defines every macro of ``sql/`` (``macros.sql``'s ``cf_cosine``,
``evaluate.sql``'s ``cf_top_k_similar``, ``cf_moa_summary``, ...) before the
query runs, and ``--write NAME --as table|view`` stores the result in one
transaction with a provenance record.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from cellframe.cli import positive_int

if TYPE_CHECKING:
    from cellframe.store import Store

#: Store tables of ``sql/schema.sql`` that ``cellframe sql --write`` never replaces.
FIXED_TABLES = ("cellframe_provenance", "cellframe_info", "platemap", "images", "objects")


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``tables`` and ``sql`` to the command line."""
    p = subparsers.add_parser(
        "tables", parents=[common], help="list the store's tables with rows, columns, provenance"
    )
    p.set_defaults(func=_tables)

    p = subparsers.add_parser(
        "sql",
        parents=[common],
        help="run a SQL query on the store (every sql/ macro defined); print, export or --write it",
    )
    p.add_argument("query", help='DuckDB SQL, e.g. "SELECT * FROM wells LIMIT 5"')
    p.add_argument(
        "--format",
        choices=("table", "csv", "parquet"),
        default="table",
        help="output format (default: a printed table; csv/parquet need --output unless csv)",
    )
    p.add_argument("--output", metavar="FILE", help="write the result to FILE")
    p.add_argument("--limit", type=positive_int, default=50, help="rows to print in table format")
    p.add_argument(
        "--write",
        metavar="NAME",
        help="store the result in the store as NAME (a table, or a view with --as view), "
        "with provenance, instead of printing it",
    )
    p.add_argument(
        "--as",
        dest="kind",
        choices=("table", "view"),
        default="table",
        help="--write: a table (the rows now) or a view (the query, re-run when read); "
        "default: %(default)s",
    )
    p.add_argument(
        "--replace", action="store_true", help="--write: replace NAME if it already exists"
    )
    p.set_defaults(func=_sql)


def _open(args: argparse.Namespace, *, read_only: bool):
    from pathlib import Path

    from cellframe.errors import InvalidInputError
    from cellframe.store import Store

    if not Path(args.store).exists():
        raise InvalidInputError(
            f"no store at {args.store}; create one with 'cellframe ingest SOURCE --store {args.store}'"
        )
    return Store(args.store, read_only=read_only)


def _tables(args: argparse.Namespace) -> int:
    import polars as pl

    with _open(args, read_only=True) as store:
        df = store.tables()
    with pl.Config(tbl_rows=-1, tbl_cols=-1, fmt_str_lengths=60, tbl_width_chars=160):
        print(df)
    return 0


def macro_files() -> list[str]:
    """Names of the ``sql/`` files that define macros: every one but ``schema.sql``.

    Returns
    -------
    list of str
        File names without ``.sql``, sorted (``["evaluate", "macros"]``).
    """
    from importlib import resources

    root = resources.files("cellframe") / "sql"
    return sorted(
        f.name.removesuffix(".sql")
        for f in root.iterdir()
        if f.name.endswith(".sql") and f.name != "schema.sql"
    )


def _load_macros(store: Store) -> None:
    from cellframe.store import load_sql

    for name in macro_files():
        store.connection.execute(load_sql(name))


def _sql(args: argparse.Namespace) -> int:
    import duckdb
    import polars as pl

    from cellframe.errors import InvalidInputError

    if args.write:
        if args.output:
            raise InvalidInputError("--write stores the result in the store; drop --output FILE")
        return _sql_write(args)
    with _open(args, read_only=True) as store:
        _load_macros(store)
        try:
            df = store.sql(args.query)
        except duckdb.Error as exc:
            raise InvalidInputError(f"query failed on {args.store}: {_first_line(exc)}") from exc
    if args.format == "parquet":
        if not args.output:
            raise InvalidInputError("--format parquet needs --output FILE")
        df.write_parquet(args.output, compression="zstd")
    elif args.format == "csv":
        if args.output:
            df.write_csv(args.output)
        else:
            print(df.write_csv(), end="")
    elif args.output:
        raise InvalidInputError("--output needs --format csv or parquet")
    else:
        with pl.Config(tbl_rows=args.limit, tbl_cols=12, tbl_width_chars=160):
            print(df)
    if args.output and not args.quiet:
        print(f"wrote {df.height} rows x {df.width} columns to {args.output}")
    return 0


def _check_view_macros(name: str, query: str) -> None:
    """Refuse a view calling a macro that a plain :class:`Store` does not define.

    ``Store`` defines ``macros.sql`` on every open; the other files' macros are
    temporary, so a view calling them would fail whenever read outside ``cellframe sql``.
    """
    import re

    from cellframe.errors import InvalidInputError
    from cellframe.store import load_sql

    for file in macro_files():
        if file == "macros":
            continue
        for macro in re.findall(
            r"(?i)CREATE\s+OR\s+REPLACE\s+TEMP\s+MACRO\s+(\w+)", load_sql(file)
        ):
            if re.search(rf"(?i)\b{macro}\s*\(", query):
                raise InvalidInputError(
                    f"--write {name} --as view: the query calls {macro} (sql/{file}.sql), a "
                    "temporary macro that a store opened elsewhere does not define, so the "
                    "view could not be read there; use --as table"
                )


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _sql_write(args: argparse.Namespace) -> int:
    import duckdb

    from cellframe.errors import InvalidInputError, TableExistsError
    from cellframe.store import quote_identifier

    name, kind = args.write, args.kind
    if name.lower() in FIXED_TABLES or name.lower().startswith("cellframe_"):
        raise InvalidInputError(
            f"--write {name}: {name} is a table of the store's schema; choose another name"
        )
    if kind == "view":
        _check_view_macros(name, args.query)
    with _open(args, read_only=False) as store:
        _load_macros(store)
        if store.has_table(name):
            if not args.replace:
                raise TableExistsError(
                    f"--write {name}: the store {args.store} already has a table or view "
                    f"{name!r}; pass --replace to overwrite it, or choose another name"
                )
            if store.partition_root(name) is not None:
                raise InvalidInputError(
                    f"--write {name}: {name} is a per-plate Parquet table; --replace "
                    "would orphan its files; write to another name"
                )
        q = quote_identifier(name)
        con = store.connection
        con.begin()
        try:
            if store.has_table(name):
                is_view = con.execute(
                    "SELECT count(*) FROM duckdb_views() WHERE view_name = ? "
                    "AND schema_name = 'main' AND NOT internal",
                    [name],
                ).fetchone()[0]
                con.execute(f"DROP {'VIEW' if is_view else 'TABLE'} {q}")
                con.execute("DELETE FROM cellframe_provenance WHERE table_name = ?", [name])
            con.execute(f"CREATE {kind.upper()} {q} AS {args.query}")
            rows = con.execute(f"SELECT count(*) FROM {q}").fetchone()[0]
            columns = len(con.execute(f"SELECT * FROM {q} LIMIT 0").description)
            store.record_provenance(
                name, "sql", {"query": args.query, "as": kind}, n_rows=int(rows)
            )
            con.commit()
        except duckdb.Error as exc:
            con.rollback()
            raise InvalidInputError(
                f"--write {name}: query failed on {args.store}: {_first_line(exc)}; "
                "the store is unchanged"
            ) from exc
        except BaseException:
            con.rollback()
            raise
    if not args.quiet:
        print(f"wrote {kind} {name}: {rows} rows x {columns} columns")
    return 0
