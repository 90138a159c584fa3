"""The ``cellframe`` command line: one entry point, one module per command group.

Each command group is a module of this package with a
``register(subparsers, common)`` function (``cellframe/cli/io.py``,
``cellframe/cli/profiles.py``, ...), listed once in :data:`COMMAND_MODULES`:
adding a group is one line there. Those modules import only the standard
library (and this module) at the top, so ``cellframe --help`` stays fast; the
work is imported when a command runs.

User errors never end in a traceback: a :class:`~cellframe.errors.CellframeError`
(or a bad option) is one line on stderr with exit status 2, Ctrl-C exits with
130, and warnings print as ``warning: <Category>: message`` without source paths.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import NoReturn

#: Command groups, in the order their commands are listed: one module each, with
#: ``register(subparsers, common)``. A new group is one more line here.
COMMAND_MODULES = (
    "cellframe.cli.io",
    "cellframe.cli.store",
    "cellframe.cli.anndata",
    "cellframe.cli.profiles",
    "cellframe.cli.recipe",
    "cellframe.cli.evaluate",
    "cellframe.cli.compare",
    "cellframe.cli.segment",
    "cellframe.cli.embed",
    "cellframe.cli.measure",
    "cellframe.cli.activity",
    "cellframe.cli.demo",
)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: ``cellframe CMD: error: ...``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


class _Version(argparse.Action):
    """``--version``, reading the installed version only when asked (importlib.metadata is slow)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser, namespace, values, option_string=None) -> NoReturn:
        from cellframe import __version__

        parser.exit(0, f"cellframe {__version__}\n")


def registry_choice(
    module: str, attribute: str, *, what: str, extra: Sequence[str] = ()
) -> Callable[[str], str]:
    """An argparse ``type`` that checks a value against a registry when the option is parsed.

    The registry's module is imported only then, so ``--help`` does not pay for it.

    Parameters
    ----------
    module : str
        Module holding the registry (``"cellframe.io.ingest"``).
    attribute : str
        The registry: a mapping or sequence of names (``"FORMATS"``).
    what : str
        What a value is, for the message (``"source format"``).
    extra : Sequence[str]
        Values allowed besides the registry's names (``("auto",)``).

    Returns
    -------
    Callable[[str], str]
        Returns the value, or raises ``argparse.ArgumentTypeError`` naming the
        allowed values (one line at the command line, exit status 2).

    Examples
    --------
    >>> check = registry_choice("cellframe.engine.base", "ENGINES", what="engine")
    >>> check("ray")
    'ray'
    """

    def parse(text: str) -> str:
        allowed = [*extra, *getattr(importlib.import_module(module), attribute)]
        if text not in allowed:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a {what}; allowed values: {', '.join(allowed)}"
            )
        return text

    parse.__name__ = what
    return parse


def positive_int(text: str) -> int:
    """An argparse ``type``: a whole number >= 1 (counts, sizes), else a one-line error.

    Examples
    --------
    >>> positive_int("3")
    3
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is below 1; give a whole number >= 1")
    return value


def _one_line(message: object) -> str:
    return "; ".join(line.strip() for line in str(message).splitlines() if line.strip())


def format_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    line: str | None = None,
) -> str:
    """Format a warning for the command line: ``warning: <Category>: message``, no source path.

    Examples
    --------
    >>> format_warning(UserWarning("3 rows dropped"), UserWarning, "/x.py", 1)
    'warning: UserWarning: 3 rows dropped\\n'
    """
    return f"warning: {category.__name__}: {_one_line(message)}\n"


@contextlib.contextmanager
def _cli_warnings() -> Iterator[None]:
    # formatwarning, not showwarning: warnings recorded by catch_warnings(record=True)
    # (pytest.warns) are still recorded, and only the printed form changes.
    previous = warnings.formatwarning
    warnings.formatwarning = format_warning
    try:
        yield
    finally:
        warnings.formatwarning = previous


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
    parser = _Parser(
        prog="cellframe",
        description="Image-based cell profiling: ingest, profile, evaluate, segment, embed, report.",
    )
    parser.add_argument("--version", action=_Version)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    common = common_parser()
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    Errors that cellframe raises for bad input, and bad options, are printed
    as one line (``cellframe: error: ...``) with exit status 2; Ctrl-C exits
    with 130 and no traceback; warnings print as ``warning: <Category>:
    message``. Anything else is a bug and keeps its traceback.

    Parameters
    ----------
    argv : Sequence[str] or None
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status.
    """
    try:
        with _cli_warnings():
            return _main(argv)
    except KeyboardInterrupt:
        print("cellframe: interrupted; stored tables keep their previous state", file=sys.stderr)
        return 130


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a bad option (already printed)
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    from cellframe.errors import CellframeError

    try:
        result = args.func(args)
    except (CellframeError, FileNotFoundError) as exc:
        print(f"cellframe: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    return int(result or 0)
