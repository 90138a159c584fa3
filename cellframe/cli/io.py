"""``cellframe ingest``: read a CellProfiler / DeepProfiler / IN Carta source into the store."""

from __future__ import annotations

import argparse
from typing import Any

from cellframe.cli import registry_choice
from cellframe.engine.base import ENGINES


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``ingest`` to the command line."""
    p = subparsers.add_parser(
        "ingest",
        parents=[common],
        help="read single cells (CellProfiler SQLite/CSV, Parquet, DeepProfiler, IN Carta) into the store",
        description=(
            "Read SOURCE and write its rows to a table of the store. By default "
            "(--mode replace-images) the stored rows of exactly the images (plate, well, site) "
            "in SOURCE are replaced: other sites, wells and plates stay, so a plate can be "
            "ingested one site or well folder at a time and re-ingesting never duplicates. "
            "--dry-run says what would be added and replaced. One transaction (or an atomic "
            "swap of each plate's Parquet files): an error or an interrupted run leaves the "
            "store as it was."
        ),
    )
    p.add_argument(
        "source",
        metavar="SOURCE",
        nargs="+",
        help="file or folder to read; several (whole plates, or sites or wells of plates) are "
        "written as per-plate Parquet, each plate committed once",
    )
    p.add_argument("--platemap", metavar="FILE", help="platemap CSV/TSV joined on plate and well")
    p.add_argument(
        "--annotations",
        metavar="FILE",
        help="perturbation table joined to the platemap on a shared column (e.g. broad_sample)",
    )
    p.add_argument(
        "--format",
        type=registry_choice(
            "cellframe.io.ingest", "FORMATS", what="source format", extra=["auto"]
        ),
        default="auto",
        help="source format: auto or a name of io.FORMATS (cellprofiler_csv, "
        "cellprofiler_sqlite, cytominer_sqlite, profiles, parquet, csv, deepprofiler, incarta; "
        "default: auto)",
    )
    p.add_argument(
        "--case-duplicates",
        choices=["error", "rename"],
        help="profile files: columns equal up to case with different values are refused "
        "(error, the default) or the later one kept as <name>_2 (rename); equal ones are merged",
    )
    p.add_argument("--table", metavar="NAME", help="destination table (default: cells)")
    p.add_argument("--plate", metavar="NAME", help="plate name for every row (sources without one)")
    p.add_argument("--well", metavar="WELL", help="well for single-well sources without one")
    p.add_argument(
        "--compartments",
        metavar="LIST",
        type=lambda v: [c.strip() for c in v.split(",") if c.strip()],
        help="CellProfiler sources: compartments to join, comma-separated (default: Cells, "
        "Cytoplasm and Nuclei for SQLite, a file without one is refused; those present for CSV)",
    )
    p.add_argument(
        "--memory-limit",
        default="512MB",
        metavar="SIZE",
        help="DuckDB memory limit while joining compartments (default: %(default)s)",
    )
    p.add_argument(
        "--layout",
        choices=("auto", "table", "parquet"),
        default="auto",
        help="DuckDB table, or Parquet files per plate beside the store (flat memory for large "
        "screens); auto (default): the existing table's layout, else parquet for sources "
        "over 1 GiB",
    )
    p.add_argument(
        "--mode",
        choices=("replace-images", "append", "replace-plates"),
        default="replace-images",
        help="replace-images (default): replace the stored rows of the images (plate, well, "
        "site) in SOURCE, keep every other image; append: add the rows, refuse (store "
        "unchanged) if any image is already stored; replace-plates: delete every stored row "
        "of SOURCE's plates first, including images SOURCE does not hold",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="read SOURCE and print what would be added and replaced (plates, images, rows); "
        "write nothing",
    )
    p.add_argument(
        "--engine",
        choices=ENGINES,
        default="local",
        help="local (default) or ray: one Ray task per SOURCE, each staging its plates' rows; "
        "the driver then commits each plate",
    )
    p.add_argument(
        "--address",
        metavar="ADDR",
        help="Ray cluster address (HOST:PORT or auto; default: start a local Ray)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="Ray engine: re-read sources a previous run already committed",
    )
    p.set_defaults(func=_ingest)


def _ingest(args: argparse.Namespace) -> int:
    import warnings

    from cellframe.errors import InvalidInputError
    from cellframe.io.ingest import IngestWarning, ingest

    many = len(args.source) > 1 or args.engine == "ray"
    if args.dry_run:
        return _dry_run(args)

    if many and (args.plate or args.well):
        raise InvalidInputError(
            "cellframe ingest: --plate/--well apply to a single SOURCE (local engine); "
            "ingest the sources one at a time to name their plates"
        )
    if many and args.layout == "table":
        raise InvalidInputError(
            "cellframe ingest: several SOURCEs (or --engine ray) are written as per-plate "
            "Parquet partitions; --layout table needs one SOURCE at a time"
        )
    with warnings.catch_warnings():
        # The report prints the warnings once, in the summary.
        warnings.simplefilter("ignore", IngestWarning)
        if many:
            from cellframe.engine.ingest import ReadOptions, ingest_plates
            from cellframe.pipeline import make_engine
            from cellframe.store import Store

            engine = make_engine(args.engine, address=args.address, force=args.force)
            reading = ReadOptions(memory_limit=args.memory_limit, compartments=args.compartments)
            with Store(args.store, memory_limit=args.memory_limit) as store:
                report = ingest_plates(
                    args.source,
                    store,
                    table=args.table or "cells",
                    platemap=args.platemap,
                    annotations=args.annotations,
                    format=args.format,
                    engine=engine,
                    progress=not args.quiet,
                    mode=args.mode,
                    reading=reading,
                )
        else:
            report = ingest(args.source[0], args.store, **_single_source_options(args))
    if not args.quiet:
        print(report)
        print(f"store: {args.store}")
    return 0


def _single_source_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options of one ``ingest`` call, the same for a real run and a dry run."""
    from cellframe.io.ingest import IngestOptions

    options = IngestOptions(
        format=args.format,
        plate=args.plate,
        well=args.well,
        memory_limit=args.memory_limit,
        reader_options=(
            {"case_duplicates": args.case_duplicates} if args.case_duplicates else None
        ),
        compartments=args.compartments,
    )
    return {
        "table": args.table,
        "platemap": args.platemap,
        "annotations": args.annotations,
        "options": options,
        "progress": not args.quiet,
        "layout": args.layout,
        "mode": args.mode,
    }


def _dry_run(args: argparse.Namespace) -> int:
    """``--dry-run``: read every SOURCE and print what would change; the store is not written."""
    import warnings

    from cellframe.io.ingest import IngestWarning, ingest

    if len(args.source) > 1 and (args.plate or args.well):
        from cellframe.errors import InvalidInputError

        raise InvalidInputError(
            "cellframe ingest: --plate/--well apply to a single SOURCE; "
            "ingest the sources one at a time to name their plates"
        )
    for source in args.source:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", IngestWarning)
            report = ingest(source, args.store, dry_run=True, **_single_source_options(args))
        print(report)
    return 0
