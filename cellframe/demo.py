"""``cellframe demo``: the whole path on real data bundled with the package.

The bundled data (``cellframe/data/demo``, see its PROVENANCE.md) are two
CellProfiler-exported sites of JUMP Target-2 plate BR00121431 with the plate's
platemap. The demo ingests them into ``cellframe-demo/cellframe.duckdb`` and
prints what it made.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["DemoResult", "demo_data_dir", "register", "run_demo"]


def demo_data_dir() -> Path:
    """Folder of the real data shipped for the demo."""
    return Path(str(resources.files("cellframe") / "data" / "demo"))


@dataclass
class DemoResult:
    """What :func:`run_demo` made."""

    store_path: Path
    tables: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def run_demo(output: str | Path = "cellframe-demo", *, progress: bool = True) -> DemoResult:
    """Run the demo and return where its results are.

    Parameters
    ----------
    output : str or Path, default "cellframe-demo"
        Folder for ``cellframe.duckdb``; created if absent. An existing demo
        store there is replaced.
    progress : bool, default True
        Show progress bars.

    Returns
    -------
    DemoResult
    """
    from cellframe.io import ingest
    from cellframe.store import Store

    start = time.perf_counter()
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    store_path = out / "cellframe.duckdb"
    for stale in (store_path, store_path.with_suffix(".duckdb.wal")):
        stale.unlink(missing_ok=True)
    data = demo_data_dir()
    with Store(store_path) as store:
        ingest(
            data / "cellprofiler" / "BR00121431",
            store,
            table="cells",
            platemap=data / "platemap_BR00121431.csv",
            progress=progress,
        )
        tables = {row["table"]: row["rows"] for row in store.tables().iter_rows(named=True)}
    return DemoResult(store_path=store_path, tables=tables, seconds=time.perf_counter() - start)


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add ``cellframe demo`` to the command line."""
    p = subparsers.add_parser(
        "demo", help="run cellframe end to end on the bundled real data (cellframe-demo/)"
    )
    p.add_argument(
        "--output",
        default="cellframe-demo",
        metavar="DIR",
        help="output folder (default: %(default)s)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summary")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    result = run_demo(args.output, progress=not args.quiet)
    if not args.quiet:
        print(f"cellframe demo finished in {result.seconds:.1f} s")
        print(f"  store: {result.store_path}")
        for name, rows in result.tables.items():
            print(f"    {name:<24} {rows:>8} rows")
        print(
            f'  query it: cellframe sql --store {result.store_path} "SELECT * FROM cells LIMIT 5"'
        )
    return 0
