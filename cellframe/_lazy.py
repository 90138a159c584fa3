"""Lazy loading of a package's public names (the scikit-image ``lazy_loader`` pattern).

A package ``__init__`` declares which module defines each public name and calls
:func:`attach`; a name's module is imported the first time the name is used, so
importing the package stays cheap (no DuckDB, pyarrow, torch, Altair or RDKit).
``dir(package)`` and ``__all__`` list every name; ``CELLFRAME_EAGER_IMPORT=1``
imports everything at once (useful to surface import errors in CI).

:func:`when_imported` runs a hook once a module has been imported, whoever
imports it: ``import cellframe`` registers the Polars ``.cf`` namespace that
way without importing Polars itself (Polars costs ~0.1-0.5 s to load, more
than the rest of ``cellframe --help``).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import ModuleType
from typing import Any

__all__ = ["attach", "when_imported"]


def attach(
    package: str,
    names: Mapping[str, str],
    submodules: Iterable[str] = (),
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """Module-level ``__getattr__``, ``__dir__`` and ``__all__`` for a lazy package.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    names : Mapping[str, str]
        Public name -> module defining it, relative to the package (``"select"``)
        or absolute (``"cellframe.store"``).
    submodules : Iterable[str]
        Submodule names also reachable as attributes (``package.io``).

    Returns
    -------
    tuple of (callable, callable, list of str)
        ``(__getattr__, __dir__, __all__)``, to assign in the package namespace.

    Examples
    --------
    >>> getattr_, dir_, all_ = attach("cellframe", {"Store": "cellframe.store"}, ["io"])
    >>> all_
    ['Store', 'io']
    """
    modules = {name: m if "." in m else f"{package}.{m}" for name, m in names.items()}
    subs = set(submodules)
    all_names = sorted({*modules, *subs})

    def __getattr__(name: str) -> Any:
        if name in modules:
            value = getattr(importlib.import_module(modules[name]), name)
        elif name in subs:
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(importlib.import_module(package), name, value)  # later lookups skip this hook
        return value

    def __dir__() -> list[str]:
        return list(all_names)

    # A function named like its module (profiles.normalize, io.ingest): importing
    # the submodule sets the package attribute to the module; keep the function.
    shadowed = {name for name, module in modules.items() if module == f"{package}.{name}"}
    if shadowed:
        package_module = sys.modules[package]

        class _Package(type(package_module)):  # type: ignore[misc]
            def __setattr__(self, key: str, value: Any) -> None:
                if key in shadowed and isinstance(value, ModuleType):
                    value = getattr(value, key)
                super().__setattr__(key, value)

        package_module.__class__ = _Package

    if os.environ.get("CELLFRAME_EAGER_IMPORT", "") not in ("", "0"):
        for name in all_names:
            __getattr__(name)
    return __getattr__, __dir__, all_names


class _PostImportFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself; wraps the loader of one module to run hooks after it executes.

    It stays in ``sys.meta_path`` until the module has executed (a bare
    ``importlib.util.find_spec`` check does not use it up) and runs its hooks once.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.hooks: list[Callable[[ModuleType], None]] = []
        self.fired = False

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.name or self.fired:
            return None
        spec = None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _HookLoader(spec.loader, self)
        return spec

    def fire(self, module: ModuleType) -> None:
        if self.fired:
            return
        self.fired = True
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        for hook in self.hooks:
            hook(module)


class _HookLoader(importlib.abc.Loader):
    """A module's own loader, then the hooks; anything else is the loader's."""

    def __init__(self, loader: Any, finder: _PostImportFinder) -> None:
        self._loader = loader
        self._finder = finder

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        # The module sees its own loader, before and after: only the hooks are added.
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        self._finder.fire(module)

    def __getattr__(self, name: str) -> Any:  # get_resource_reader, is_package, ...
        return getattr(self._loader, name)


def when_imported(name: str, hook: Callable[[ModuleType], None]) -> None:
    """Call ``hook(module)`` once the top-level module ``name`` is imported.

    Parameters
    ----------
    name : str
        A top-level module name (``"polars"``).
    hook : Callable[[ModuleType], None]
        Called with the module: now if it is already imported, else right
        after its first import finishes, by whichever code imports it.

    Examples
    --------
    >>> seen = []
    >>> when_imported("json", lambda m: seen.append(m.__name__))
    >>> import json
    >>> seen
    ['json']
    """
    if name in sys.modules:
        hook(sys.modules[name])
        return
    for finder in sys.meta_path:
        if isinstance(finder, _PostImportFinder) and finder.name == name and not finder.fired:
            finder.hooks.append(hook)
            return
    finder = _PostImportFinder(name)
    finder.hooks.append(hook)
    sys.meta_path.insert(0, finder)
