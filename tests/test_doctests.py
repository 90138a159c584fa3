"""Run the Examples sections of every cellframe docstring as doctests.

One test per module of ``cellframe/`` (ids are the module names). Each module's
examples run in a fresh temporary folder, so files they write (stores, CSVs)
never collide between modules or between ``pytest -n 2`` workers. A module whose
optional dependency is not installed is skipped, naming the dependency; an
example that needs Ray, a GPU, the network or minutes carries
``# doctest: +SKIP`` with the reason stated in the docstring.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil
import sys
from pathlib import Path

import pytest

import cellframe

OPTIONFLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _module_names() -> tuple[list[str], list[str]]:
    """Every module and package of cellframe, and the ``__main__`` entry points.

    A ``__main__`` module runs the program when imported, so it is not imported
    here; ``test_entry_points_have_no_examples`` checks it has nothing to run.
    """
    names, entry_points = ["cellframe"], []
    for info in pkgutil.walk_packages(cellframe.__path__, prefix="cellframe."):
        target = entry_points if info.name.endswith(".__main__") else names
        target.append(info.name)
    return sorted(names), sorted(entry_points)


MODULES, ENTRY_POINTS = _module_names()


def test_modules_found() -> None:
    """The walk reaches the nested packages, not only the top level."""
    assert "cellframe.store" in MODULES
    assert "cellframe.profiles.normalize" in MODULES
    assert "cellframe.engine.local" in MODULES
    assert "cellframe.cli" in MODULES
    assert len(MODULES) > 100


def test_entry_points_have_no_examples() -> None:
    """The ``__main__`` modules (not imported above) hold no doctest to miss."""
    assert "cellframe.cli.__main__" in ENTRY_POINTS
    for name in ENTRY_POINTS:
        spec = importlib.util.find_spec(name)
        source = Path(spec.origin).read_text(encoding="utf-8")
        assert ">>>" not in source, f"{name} has examples that test_doctests cannot run"


#: Optional dependencies (pyproject's extras) and the extra that installs each.
#: A module that fails to import for want of one of these is skipped; any other
#: missing module is a failure.
OPTIONAL_DEPENDENCIES = {"ray": "cellframe[ray]"}


def _import(name: str):
    """Import ``name``; skip (naming the dependency) when an optional one is missing."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        missing = (error.name or "").split(".")[0]
        if missing not in OPTIONAL_DEPENDENCIES:
            raise
        pytest.importorskip(
            missing,
            reason=f"{name} needs the optional dependency {missing!r} "
            f"(pip install {OPTIONAL_DEPENDENCIES[missing]})",
        )
        raise


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples(
    module_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The module's doctests pass (ELLIPSIS, NORMALIZE_WHITESPACE) in a temp folder."""
    module = _import(module_name)
    monkeypatch.chdir(tmp_path)
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = [t for t in finder.find(module, module_name) if t.examples]
    if not tests:
        return
    runner = doctest.DocTestRunner(optionflags=OPTIONFLAGS)
    report: list[str] = []
    for test in sorted(tests, key=lambda t: t.name):
        # A fresh namespace per docstring: examples never lean on each other.
        test.globs = dict(module.__dict__)
        runner.run(test, out=report.append)
    if runner.failures:
        pytest.fail(
            f"{runner.failures} of {runner.tries} examples failed in {module_name}:\n"
            + "".join(report),
            pytrace=False,
        )


def test_missing_optional_dependency_skips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A module lacking an optional dependency is skipped by name; any other lack fails."""
    (tmp_path / "cf_doctest_needs_ray.py").write_text("import ray\n", encoding="utf-8")
    (tmp_path / "cf_doctest_needs_other.py").write_text(
        "import cf_no_such_dependency\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "ray", None)  # ``import ray`` now fails
    with pytest.raises(pytest.skip.Exception, match="optional dependency 'ray'"):
        _import("cf_doctest_needs_ray")
    with pytest.raises(ModuleNotFoundError, match="cf_no_such_dependency"):
        _import("cf_doctest_needs_other")
