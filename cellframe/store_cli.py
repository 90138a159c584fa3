"""Subcommands over the store itself: ``tables`` and ``sql``."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``tables`` and ``sql`` to the command line."""
    p = subparsers.add_parser(
        "tables", parents=[common], help="list the store's tables with rows, columns, provenance"
    )
    p.set_defaults(func=_tables)

    p = subparsers.add_parser(
        "sql", parents=[common], help="run a SQL query on the store and print or save the result"
    )
    p.add_argument("query", help='DuckDB SQL, e.g. "SELECT * FROM wells LIMIT 5"')
    p.add_argument(
        "--format",
        choices=("table", "csv", "parquet"),
        default="table",
        help="output format (default: a printed table; csv/parquet need --output unless csv)",
    )
    p.add_argument("--output", metavar="FILE", help="write the result to FILE")
    p.add_argument("--limit", type=int, default=50, help="rows to print in table format")
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


def _sql(args: argparse.Namespace) -> int:
    import duckdb
    import polars as pl

    from cellframe.errors import InvalidInputError

    with _open(args, read_only=True) as store:
        try:
            df = store.sql(args.query)
        except duckdb.Error as exc:
            raise InvalidInputError(f"query failed on {args.store}: {exc}") from exc
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
