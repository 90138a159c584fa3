"""Pipeline configs: read a ``pipeline.toml`` and check it against the step registries.

Imports only the standard library at the top, so the command line can use
:func:`allowed_values` and :func:`check_value` while parsing options without
loading Polars or DuckDB; a registry's module is imported when it is asked.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cellframe.errors import ConfigNotFoundError, InvalidInputError

__all__ = ["REGISTRIES", "allowed_values", "check_value", "load_config", "validate_config"]

#: Registry (module, attribute) holding the allowed values of a config key or option, per step.
REGISTRIES: dict[tuple[str, str], tuple[str, str]] = {
    ("aggregate", "method"): ("cellframe.profiles.aggregate", "AGGREGATIONS"),
    ("aggregate", "level"): ("cellframe.profiles.aggregate", "LEVELS"),
    ("normalize", "method"): ("cellframe.profiles.normalize", "NORMALIZATIONS"),
    ("select", "operations"): ("cellframe.profiles.select", "OPERATIONS"),
    ("sphere", "method"): ("cellframe.profiles.sphere", "SPHERE_METHODS"),
}


def allowed_values(step: str, key: str) -> list[str]:
    """The values a step's option may take, read from the step's registry.

    Parameters
    ----------
    step : str
        Step name (``"normalize"``, ``"select"``, ...).
    key : str
        Config key / option name (``"method"``, ``"operations"``).

    Returns
    -------
    list of str
        The registry's names, in registry order.

    Examples
    --------
    >>> allowed_values("normalize", "method")
    ['standardize', 'robustize', 'mad_robustize']
    """
    module, attribute = REGISTRIES[(step, key)]
    return list(getattr(importlib.import_module(module), attribute))


def check_value(step: str, key: str, value: str, where: str) -> str:
    """``value`` if the registry of ``step``'s ``key`` holds it, else a named error.

    Raises
    ------
    cellframe.errors.InvalidChoiceError
        Naming ``where``, the key, the value and the allowed values.
    """
    from cellframe.errors import InvalidChoiceError

    allowed = allowed_values(step, key)
    if value not in allowed:
        raise InvalidChoiceError(
            f"{where}: {key} = {value!r} is unknown; allowed values: {', '.join(allowed)}"
        )
    return value


def validate_config(config: Mapping[str, Any], path: str) -> None:
    """Check a pipeline config's step names, methods, operations and lambdas against the registries.

    Parameters
    ----------
    config : Mapping[str, Any]
        A parsed ``pipeline.toml`` (:func:`load_config` calls this).
    path : str
        The file, named in messages.

    Raises
    ------
    cellframe.errors.InvalidChoiceError
        A ``run``, ``method``, ``operations`` or ``engine`` value outside its
        registry, or a negative ``lam``; the message names the file, the step,
        the key and the allowed values.

    Examples
    --------
    >>> validate_config({"step": [{"run": "normalize", "method": "zscore"}]}, "my config")
    Traceback (most recent call last):
    ...
    cellframe.errors.InvalidChoiceError: my config, step 1 (normalize): method = 'zscore' is unknown; allowed values: standardize, robustize, mad_robustize
    >>> validate_config({"step": [{"run": "normalize", "method": "standardize"}]}, "my config")
    """
    from cellframe.engine.base import ENGINES
    from cellframe.errors import InvalidChoiceError
    from cellframe.pipeline.steps import STEPS

    if "engine" in config and config["engine"] not in ENGINES:
        raise InvalidChoiceError(
            f"{path}: engine = {config['engine']!r}; allowed values: {', '.join(ENGINES)}"
        )
    for i, step in enumerate(config.get("step", [])):
        name = step.get("run")
        where = f"{path}, step {i + 1}"
        if name not in STEPS:
            raise InvalidChoiceError(
                f"{where}: run = {name!r}; valid: {', '.join(STEPS)} (the step to run)"
            )
        where = f"{where} ({name})"
        for key, value in step.items():
            if (name, key) not in REGISTRIES:
                continue
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str):  # a callable from Python is the step's to check
                    check_value(name, key, item, where)
        lam = step.get("lam")
        if lam is not None and not (isinstance(lam, int | float) and 0 <= lam < float("inf")):
            raise InvalidChoiceError(
                f"{where}: lam = {lam!r}; give a number >= 0 (finite: not nan or inf)"
            )


def load_config(path: str | Path) -> dict[str, Any]:
    r"""Read a pipeline TOML file.

    Parameters
    ----------
    path : str or Path
        The ``pipeline.toml``.

    Returns
    -------
    dict
        The parsed config, validated (:func:`validate_config`).

    Raises
    ------
    ConfigNotFoundError
        If the file does not exist or is a folder (a ``FileNotFoundError`` too).
    InvalidInputError
        If it is not valid TOML or lacks ``[[step]]`` entries.
    InvalidChoiceError
        If a step name, method, operation, engine or lambda is not allowed
        (:func:`validate_config`): the message names the file, the step, the
        key and the allowed values.

    Examples
    --------
    >>> from pathlib import Path
    >>> _ = Path("pipeline.toml").write_text(
    ...     'input = "cells"\n'
    ...     '[[step]]\nrun = "aggregate"\noutput = "wells"\n'
    ...     '[[step]]\nrun = "normalize"\nmethod = "mad_robustize"\n')
    >>> load_config("pipeline.toml")
    {'input': 'cells', 'step': [{'run': 'aggregate', 'output': 'wells'},
                                {'run': 'normalize', 'method': 'mad_robustize'}]}

    A misspelt step is refused with the file, the step and the valid names:

    >>> _ = Path("typo.toml").write_text('input = "wells"\n[[step]]\nrun = "normalise"\n')
    >>> load_config("typo.toml")
    Traceback (most recent call last):
    ...
    cellframe.errors.InvalidChoiceError: typo.toml, step 1: run = 'normalise'; valid: aggregate, normalize, select, sphere, qc, strength, activity (the step to run)
    """
    import tomllib

    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise ConfigNotFoundError(
            f"pipeline config {path} {what} (working folder {Path.cwd()}); pass the path of a "
            "pipeline TOML file (see docs/profiles.md)"
        )
    try:
        config = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInputError(f"{path} is not valid TOML: {exc}") from exc
    if not config.get("step"):
        raise InvalidInputError(
            f"{path} has no [[step]] entries; see docs/profiles.md for the format"
        )
    validate_config(config, str(path))
    return config
