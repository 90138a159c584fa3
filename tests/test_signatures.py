"""No public function or method of cellframe has more than 10 parameters (issue 16).

Each module of ``cellframe/`` is parsed (``ast``); every public function and
every public method of a public class is counted (positional, keyword-only,
``*args`` and ``**kwargs`` each count one; ``self``/``cls`` do not). A longer
list gets a grouping object instead (``PairRules``, ``IngestOptions``,
``ThresholdSettings``, ``TrainConfig``, ...; docs/DEVELOPING.md lists them).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cellframe"

#: The most parameters a public function may take (self/cls excluded).
MAX_PARAMETERS = 10


def count_parameters(function: ast.FunctionDef | ast.AsyncFunctionDef, *, method: bool) -> int:
    """Count the parameters of ``function``, leaving out a method's ``self``/``cls``."""
    arguments = function.args
    names = [a.arg for a in arguments.posonlyargs + arguments.args + arguments.kwonlyargs]
    if arguments.vararg is not None:
        names.append(arguments.vararg.arg)
    if arguments.kwarg is not None:
        names.append(arguments.kwarg.arg)
    if method and names and names[0] in ("self", "cls"):
        names = names[1:]
    return len(names)


def public_functions(source: str) -> list[tuple[str, int]]:
    """``(qualified name, parameter count)`` of every public function and method in ``source``."""
    found: list[tuple[str, int]] = []

    def walk(node: ast.AST, prefix: str, in_class: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                if not child.name.startswith("_"):
                    found.append((prefix + child.name, count_parameters(child, method=in_class)))
            elif isinstance(child, ast.ClassDef) and not child.name.startswith("_"):
                walk(child, f"{prefix}{child.name}.", in_class=True)

    walk(ast.parse(source), "", in_class=False)
    return found


def offenders() -> list[str]:
    """``module:function (n parameters)`` for every public function over the limit."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE.parent).as_posix()
        for name, count in public_functions(path.read_text(encoding="utf-8")):
            if count > MAX_PARAMETERS:
                found.append(f"{module}:{name} ({count} parameters)")
    return found


def test_no_public_function_has_more_than_ten_parameters() -> None:
    found = offenders()
    assert not found, (
        f"{len(found)} public function(s) take more than {MAX_PARAMETERS} parameters; "
        "group related ones in a frozen dataclass (see docs/DEVELOPING.md):\n" + "\n".join(found)
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # 11 plain parameters: over; 10: at the limit.
        ("def f(" + ", ".join(f"a{i}" for i in range(11)) + "): pass", [("f", 11)]),
        ("def f(" + ", ".join(f"a{i}" for i in range(10)) + "): pass", [("f", 10)]),
        # keyword-only, *args and **kwargs count; a method's self does not.
        ("def f(a, *args, b, c=1, **kwargs): pass", [("f", 5)]),
        ("class C:\n    def m(self, a, b): pass\n    def _h(self, *a): pass", [("C.m", 2)]),
        # a module-level function whose first parameter is named self keeps it.
        ("def f(self, a): pass", [("f", 2)]),
        # private functions, private classes and nested helpers are not counted.
        ("def _f(a): pass\nclass _C:\n    def m(self): pass", []),
        (
            "def f(a):\n    def inner(" + ", ".join(f"b{i}" for i in range(12)) + "): pass",
            [("f", 1)],
        ),
    ],
)
def test_counting(source: str, expected: list[tuple[str, int]]) -> None:
    assert public_functions(source) == expected
