"""User-facing errors are cellframe exceptions: no module raises a bare built-in error.

A bare ``ValueError`` reaches the command line as a traceback with exit code 1
instead of one line with exit code 2. Every cellframe error that replaces one
subclasses the built-in it replaces (``InvalidInputError`` is a ``ValueError``),
so callers catching the built-in still catch it.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cellframe"
#: Left out on purpose: ``FileNotFoundError`` (the command line prints it as one
#: line with exit code 2, like a cellframe error, and its message names the path)
#: and ``RuntimeError`` (an internal invariant broken: a bug to report, not bad input).
BARE = {"ValueError", "TypeError", "KeyError", "IndexError"}


def bare_raises(source: str) -> list[tuple[int, str]]:
    """(line, name) of every ``raise Name(...)`` / ``raise Name`` of a built-in in ``BARE``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name) and exc.id in BARE:
                found.append((node.lineno, exc.id))
    return sorted(found)


def test_the_check_finds_bare_raises_and_passes_cellframe_ones() -> None:
    source = (
        "def f(x):\n"
        "    if x:\n"
        "        raise ValueError('bad')\n"
        "    raise InvalidInputError('bad')\n"
        "def g():\n"
        "    raise KeyError\n"
    )
    assert bare_raises(source) == [(3, "ValueError"), (6, "KeyError")]


def test_no_module_raises_a_bare_builtin_error() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line} raises {name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line, name in bare_raises(path.read_text())
    ]
    assert not offenders, "raise a cellframe error instead:\n" + "\n".join(offenders)
