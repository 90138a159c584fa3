"""``cellframe demo``: its options, without importing the demo (NumPy, Polars) for ``--help``."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add ``cellframe demo`` to the command line (the work is in :mod:`cellframe.demo`)."""
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
    from cellframe.demo import _main as run

    return run(args)
