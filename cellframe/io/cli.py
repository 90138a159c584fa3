"""``cellframe ingest``: read a CellProfiler / DeepProfiler / IN Carta source into the store."""

from __future__ import annotations

import argparse

_FORMATS = (
    "auto",
    "cellprofiler_csv",
    "cellprofiler_sqlite",
    "cytominer_sqlite",
    "profiles",
    "parquet",
    "csv",
    "deepprofiler",
    "incarta",
)


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``ingest`` to the command line."""
    p = subparsers.add_parser(
        "ingest",
        parents=[common],
        help="read single cells (CellProfiler SQLite/CSV, Parquet, DeepProfiler, IN Carta) into the store",
        description=(
            "Read SOURCE and write its rows to a table of the store, replacing the rows of "
            "every plate it holds (re-ingesting never duplicates). One transaction: an error "
            "or an interrupted run leaves the store as it was."
        ),
    )
    p.add_argument("source", metavar="SOURCE", help="file or folder to read")
    p.add_argument("--platemap", metavar="FILE", help="platemap CSV/TSV joined on plate and well")
    p.add_argument(
        "--annotations",
        metavar="FILE",
        help="perturbation table joined to the platemap on a shared column (e.g. broad_sample)",
    )
    p.add_argument(
        "--format", choices=_FORMATS, default="auto", help="source format (default: auto)"
    )
    p.add_argument("--table", metavar="NAME", help="destination table (default: cells)")
    p.add_argument("--plate", metavar="NAME", help="plate name for every row (sources without one)")
    p.add_argument("--well", metavar="WELL", help="well for single-well sources without one")
    p.add_argument(
        "--memory-limit",
        default="512MB",
        metavar="SIZE",
        help="DuckDB memory limit while joining compartments (default: %(default)s)",
    )
    p.add_argument(
        "--layout",
        choices=("table", "parquet"),
        default="table",
        help="DuckDB table (default) or one Parquet file per plate beside the store (large screens)",
    )
    p.set_defaults(func=_ingest)


def _ingest(args: argparse.Namespace) -> int:
    import warnings

    from cellframe.io.ingest import IngestWarning, ingest

    with warnings.catch_warnings():
        # The report prints the warnings once, in the summary.
        warnings.simplefilter("ignore", IngestWarning)
        report = ingest(
            args.source,
            args.store,
            table=args.table,
            platemap=args.platemap,
            annotations=args.annotations,
            format=args.format,
            plate=args.plate,
            well=args.well,
            progress=not args.quiet,
            memory_limit=args.memory_limit,
            layout=args.layout,
        )
    if not args.quiet:
        print(report)
        print(f"store: {args.store}")
    return 0
