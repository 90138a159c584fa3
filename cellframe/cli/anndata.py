"""Store tables to and from AnnData: ``cellframe export TABLE --h5ad FILE`` and ``import-anndata``.

``export`` writes one store table as an ``.h5ad`` file (``obs`` = metadata,
``X`` = float32 features; :func:`cellframe.io.anndata.write_h5ad`);
``import-anndata`` reads an ``.h5ad`` (its ``X``, a ``--layer`` or an ``--obsm``
embedding) into a new store table, in one transaction with provenance. A
refused import leaves the store unchanged.
"""

from __future__ import annotations

import argparse

#: Store tables of ``sql/schema.sql`` that ``import-anndata`` never writes.
_FIXED_TABLES = ("cellframe_provenance", "cellframe_info", "platemap", "images", "objects")


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``export`` and ``import-anndata`` to the command line."""
    p = subparsers.add_parser(
        "export",
        parents=[common],
        help="write a store table to a file: --h5ad FILE (AnnData: obs = metadata, X = features)",
    )
    p.add_argument("table", help="store table to export, e.g. wells_normalized")
    p.add_argument("--h5ad", required=True, metavar="FILE", help="AnnData file to write")
    p.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    p.set_defaults(func=_export)

    p = subparsers.add_parser(
        "import-anndata",
        parents=[common],
        help="read an .h5ad file (AnnData) into a store table",
    )
    p.add_argument("file", help="the .h5ad file")
    p.add_argument("--table", required=True, metavar="NAME", help="store table to create")
    p.add_argument("--layer", help="read the features from this layer instead of X")
    p.add_argument("--obsm", help="read the features from this embedding (e.g. X_pca) instead of X")
    p.add_argument("--replace", action="store_true", help="replace NAME if it already exists")
    p.set_defaults(func=_import)


def _store(path: str, *, must_exist: bool):
    from pathlib import Path

    from cellframe.errors import InvalidInputError
    from cellframe.store import Store

    if must_exist and not Path(path).exists():
        raise InvalidInputError(
            f"no store at {path}; create one with 'cellframe ingest SOURCE --store {path}'"
        )
    return Store(path, read_only=must_exist)


def _export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cellframe.errors import InvalidInputError, TableNotFoundError
    from cellframe.io.anndata import write_h5ad_batches

    dest = Path(args.h5ad)
    if dest.exists() and not args.overwrite:
        raise InvalidInputError(
            f"--h5ad {dest} exists; pass --overwrite to replace it, or choose another file"
        )
    if not dest.parent.is_dir():
        raise InvalidInputError(f"--h5ad {dest}: folder {dest.parent} does not exist")
    with _store(args.store, must_exist=True) as store:
        if not store.has_table(args.table):
            raise TableNotFoundError(
                f"the store {args.store} has no table {args.table!r}; its tables: "
                f"{', '.join(store.table_names()) or 'none'}"
            )
        schema = store.schema(args.table)
        rows = [0]
        write_h5ad_batches(_table_batches(store, args.table, schema, rows), dest, schema=schema)
    if not args.quiet:
        print(f"wrote {rows[0]} rows of {args.table} to {dest}")
    return 0


#: Bytes of one block of a table read for ``export`` (as float32; whole 2,048-row vectors).
_EXPORT_BLOCK_BYTES = 2**26


def _table_batches(store, table: str, schema, count: list[int]):
    """The rows of a store table in order, in blocks of about 64 MB; ``count[0]`` counts them.

    A native table streams from DuckDB (record batches, as ``Store.read``
    converts them); a per-plate Parquet table from Polars' streaming scan of the
    same files in the same order as ``Store.read``.
    """
    import polars as pl

    from cellframe.store import quote_identifier

    rows = max(2048, _EXPORT_BLOCK_BYTES // (4 * max(1, len(schema))) // 2048 * 2048)
    if store.partition_root(table) is not None:
        blocks = store.scan(table).collect_batches(chunk_size=rows, lazy=True)
    else:
        reader = store.connection.sql(f"SELECT * FROM {quote_identifier(table)}")
        blocks = (pl.from_arrow(b) for b in reader.to_arrow_reader(rows))
    for block in blocks:
        count[0] += block.height
        yield block


def _import(args: argparse.Namespace) -> int:

    from cellframe.columns import feature_columns
    from cellframe.errors import InvalidInputError, TableExistsError
    from cellframe.io.anndata import read_h5ad

    name = args.table
    if name.lower() in _FIXED_TABLES or name.lower().startswith("cellframe_"):
        raise InvalidInputError(
            f"--table {name}: {name} is a table of the store's schema; choose another name"
        )
    frame = read_h5ad(args.file, layer=args.layer, obsm=args.obsm)
    with _store(args.store, must_exist=False) as store:
        if store.has_table(name):
            if not args.replace:
                raise TableExistsError(
                    f"--table {name}: the store {args.store} already has a table {name!r}; "
                    "pass --replace to overwrite it, or choose another name"
                )
            if store.partition_root(name) is not None:
                raise InvalidInputError(
                    f"--table {name}: {name} is a per-plate Parquet table; --replace would "
                    "orphan its files; import into another name"
                )
        store.write(
            name,
            frame,
            mode="replace",
            step="import-anndata",
            parameters={"layer": args.layer, "obsm": args.obsm},
            source=str(args.file),
        )
    if not args.quiet:
        print(
            f"stored {frame.height} rows x {len(feature_columns(frame))} features "
            f"from {args.file} as {name}"
        )
    return 0
