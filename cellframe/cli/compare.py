"""``cellframe compare``: the batch-correction metric panel of several profile tables, as a report.

Each TABLE is a store table (``wells_normalized``), or a Parquet/CSV file of
profiles; ``NAME=TABLE`` names its row (``cellprofiler/harmony=wells_harmony``:
feature source ``cellprofiler``, correction ``harmony``). The panel
(:func:`cellframe.evaluate.batch.compare`) is printed, written as an offline
HTML report (``--out``) and optionally as CSV (``--csv``). The store is only read.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from cellframe.cli import positive_int

if TYPE_CHECKING:
    import polars as pl

_FILE_SUFFIXES = (".parquet", ".csv", ".csv.gz", ".tsv")


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``compare`` to the command line."""
    p = subparsers.add_parser(
        "compare",
        parents=[common],
        help="batch-correction panel (scib metrics, mAP) of several tables, as an HTML report",
        description=(
            "Score each table with the batch-correction panel: batch removal (batch "
            "silhouette, iLISI, kBET, graph connectivity) and biology conservation "
            "(Leiden NMI/ARI, label silhouette, cLISI, mAP against controls and against "
            "non-replicates); overall = 0.4 x batch + 0.6 x biology. Prints one row per "
            "table and writes the report."
        ),
    )
    p.add_argument(
        "tables",
        nargs="+",
        metavar="TABLE",
        help="store table or .parquet/.csv file; NAME=TABLE names the row "
        "('source/correction=TABLE' fills both columns)",
    )
    p.add_argument("--batch", required=True, metavar="COL", help="batch column (plate, source)")
    p.add_argument(
        "--label", required=True, metavar="COL", help="biological label column (treatment, MoA)"
    )
    p.add_argument(
        "--control-column",
        default="Metadata_Control",
        metavar="COL",
        help="column marking negative controls (default: %(default)s)",
    )
    p.add_argument(
        "--control-value",
        default="negcon",
        help="value of negative controls (default: %(default)s)",
    )
    p.add_argument(
        "--n-neighbors",
        type=positive_int,
        default=15,
        help="neighbours of the graph metrics (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=0, help="Leiden seed (default: %(default)s)")
    p.add_argument("--out", required=True, metavar="FILE", help="HTML report to write")
    p.add_argument("--csv", metavar="FILE", help="also write the metric table as CSV")
    p.set_defaults(func=_compare)


def _split(arg: str) -> tuple[str, str]:
    name, sep, table = arg.partition("=")
    if not sep:
        return arg, arg
    if not name or not table:
        from cellframe.errors import InvalidInputError

        raise InvalidInputError(f"{arg!r}: write NAME=TABLE with both parts, or only TABLE")
    return name, table


def _read_file(path) -> pl.DataFrame:
    import polars as pl

    from cellframe.errors import InvalidInputError

    text = str(path)
    try:
        if text.endswith(".parquet"):
            return pl.read_parquet(path, glob=False)
        sep = "\t" if text.endswith(".tsv") else ","
        return pl.read_csv(path, glob=False, separator=sep, infer_schema_length=10000)
    except (pl.exceptions.PolarsError, OSError) as err:
        raise InvalidInputError(f"{text}: cannot read profiles ({err}); check the file") from err


def _load(args: argparse.Namespace) -> dict[str, pl.DataFrame]:
    from pathlib import Path

    from cellframe.errors import InvalidInputError, TableNotFoundError

    frames: dict[str, pl.DataFrame] = {}
    store = None
    try:
        for arg in args.tables:
            name, table = _split(arg)
            if name in frames:
                raise InvalidInputError(f"{name!r} is named twice; give each TABLE its own NAME=")
            path = Path(table)
            if table.endswith(_FILE_SUFFIXES):
                if not path.is_file():
                    raise InvalidInputError(
                        f"no file {table} (a TABLE ending in {', '.join(_FILE_SUFFIXES)} is "
                        "read as a file); check the path"
                    )
                frames[name] = _read_file(path)
                continue
            if store is None:
                from cellframe.cli.store import _open

                store = _open(args, read_only=True)
            if table not in store.table_names():
                raise TableNotFoundError(
                    f"no table {table!r} in {args.store} and no file of that name; "
                    f"tables: {', '.join(sorted(store.table_names()))}"
                )
            frames[name] = store.read(table)
    finally:
        if store is not None:
            store.close()
    return frames


def _check_writable(path: str) -> None:
    """Refuse an output path whose folder cannot be made or written, before any work."""
    import os
    from pathlib import Path

    from cellframe.errors import InvalidInputError

    folder = Path(path).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InvalidInputError(
            f"cannot write {path}: its folder cannot be created ({err.strerror or err}); "
            "choose another --out / --csv path"
        ) from err
    if Path(path).is_dir() or not os.access(folder, os.W_OK):
        raise InvalidInputError(
            f"cannot write {path}: a folder, or its folder is not writable; choose another path"
        )


def _compare(args: argparse.Namespace) -> int:
    import polars as pl

    from cellframe.evaluate.batch import compare
    from cellframe.report.compare import write_compare_report

    for path in (args.out, args.csv):
        if path:
            _check_writable(path)
    frames = _load(args)
    controls = pl.col(args.control_column) == args.control_value
    for name, frame in frames.items():
        if args.control_column not in frame.columns:
            from cellframe.errors import MissingColumnsError

            raise MissingColumnsError(
                f"table {name!r}", [args.control_column], "name it with --control-column"
            )
    table = compare(
        frames,
        batch=args.batch,
        label=args.label,
        controls=controls,
        n_neighbors=args.n_neighbors,
        seed=args.seed,
    )
    out = write_compare_report(
        table, args.out, subtitle=f"batch: {args.batch}; label: {args.label}"
    )
    if args.csv:
        table.write_csv(args.csv)
    if not args.quiet:
        shown = table.select(
            "method", *(pl.col(c).round(3) for c in ("batch_score", "bio_score", "overall_score"))
        )
        with pl.Config(tbl_rows=-1, tbl_hide_dataframe_shape=True):
            print(shown)
        print(f"report: {out}")
    return 0
