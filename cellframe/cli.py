"""The ``cellframe`` command line: one entry point, one subcommand per step.

Each layer contributes its subcommands from a small ``cli`` module with a
``register(subparsers, common)`` function (``cellframe/io/cli.py``,
``cellframe/profiles/cli.py``, ...). Those modules import only argparse at the
top, so ``cellframe --help`` stays fast; the work is imported when a command runs.
Listing a module imports its package (``find_spec`` of ``a.b.cli`` imports
``a.b``), so only packages that have a ``cli`` module are listed: the report
package has none (the demo writes the report), and importing it loads Altair.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence

#: Modules that add subcommands, in the order their commands are listed.
COMMAND_MODULES = (
    "cellframe.io.cli",
    "cellframe.store_cli",
    "cellframe.profiles.cli",
    "cellframe.evaluate.cli",
    "cellframe.segment.cli",
    "cellframe.embed.cli",
    "cellframe.activity.cli",
    "cellframe.demo",
)


def common_parser() -> argparse.ArgumentParser:
    """Options every subcommand takes: ``--store`` and ``--quiet``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--store",
        default="cellframe.duckdb",
        metavar="PATH",
        help="DuckDB store file (default: %(default)s)",
    )
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summaries")
    return common


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every available subcommand."""
    from cellframe import __version__

    parser = argparse.ArgumentParser(
        prog="cellframe",
        description="Image-based cell profiling: ingest, profile, evaluate, segment, embed, report.",
    )
    parser.add_argument("--version", action="version", version=f"cellframe {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = common_parser()
    for name in COMMAND_MODULES:
        try:
            if importlib.util.find_spec(name) is None:
                continue
        except ModuleNotFoundError:  # the layer's package itself is absent
            continue
        importlib.import_module(name).register(subparsers, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    Errors that cellframe raises for bad input are printed as one line
    (``cellframe: error: ...``) with exit status 2; anything else is a bug
    and keeps its traceback.
    """
    from cellframe.errors import CellframeError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        result = args.func(args)
    except (CellframeError, FileNotFoundError) as exc:
        print(f"cellframe: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cellframe: interrupted; stored tables keep their previous state", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
