"""``cellframe correct --recipe``: run a JUMP-style recipe on a store table.

:func:`run_recipe` reads one store table, runs the recipe's steps on all its
rows (:func:`cellframe.profiles.recipe.apply_recipe`) and writes the result to
another table in one transaction, with one provenance record whose
parameters hold the recipe and every step's fitted parameters. Nothing is
written when a step fails: the store is left as it was.

Only the standard library is imported at module level (``cellframe --help``
stays fast); the work is imported when the command runs.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from cellframe.store import Store

__all__ = ["RecipeRun", "register", "run_recipe"]

#: Table a recipe reads by default (well profiles, before normalization: the recipe normalizes).
DEFAULT_SOURCE = "wells"


@dataclass(frozen=True)
class RecipeRun:
    """What :func:`run_recipe` did: the tables, the rows written and each step's provenance."""

    source: str
    dest: str
    rows: int
    steps: list[dict[str, Any]]


def _recipe_text(recipe: str | Path) -> tuple[str, str | None]:
    """The recipe text, and the file it came from (a ``.toml`` path) or None."""
    from cellframe.errors import ConfigNotFoundError

    if isinstance(recipe, Path) or str(recipe).endswith(".toml"):
        path = Path(recipe)
        if not path.is_file():
            raise ConfigNotFoundError(
                f"recipe file {str(path)!r} does not exist or is not a file; give a token "
                "string (e.g. var_mad_featselect_harmony) or an existing TOML file"
            )
        return path.read_text(encoding="utf-8"), str(path)
    return str(recipe), None


def run_recipe(
    store: Store,
    recipe: str | Path | Sequence[Any],
    source: str = DEFAULT_SOURCE,
    dest: str | None = None,
    *,
    parameters: Mapping[str, Mapping[str, Any]] | None = None,
) -> RecipeRun:
    """Run ``recipe`` on store table ``source`` and write the result to ``dest``.

    Parameters
    ----------
    store : Store
        The store holding ``source``.
    recipe : str, pathlib.Path or sequence
        A token string (``"var_mad_featselect_harmony"``), a TOML text, a path
        to a ``.toml`` file with ``[[step]]`` tables, or a list as
        :func:`~cellframe.profiles.recipe.parse_recipe` takes.
    source : str, default "wells"
        Table to read (all rows are read: Harmony and the sphering lambda
        choice need them together).
    dest : str, optional
        Table to write (replaced if present). Default: ``source`` plus ``_``
        and the recipe's tokens, as the JUMP recipe names its outputs
        (``wells_var_mad_featselect_harmony``).
    parameters : mapping, optional
        Per-token parameters, e.g. ``{"harmony": {"batch_key": "Metadata_Source"}}``.

    Returns
    -------
    RecipeRun

    Raises
    ------
    UnknownRecipeTokenError
        For a token outside the registry (nothing is read or written).
    InvalidInputError
        For ``dest`` equal to ``source``, a bad parameter, or input a step refuses.
    TableNotFoundError
        If ``source`` is not in the store.
    ConfigNotFoundError
        If a ``.toml`` recipe file does not exist.
    """
    from cellframe.errors import InvalidInputError
    from cellframe.profiles.recipe import apply_recipe, parse_recipe

    if isinstance(recipe, str | Path):
        text, path = _recipe_text(recipe)
    else:
        text, path = recipe, None
    steps = parse_recipe(text, parameters=parameters)
    tokens = "_".join(s.token for s in steps)
    dest = dest or f"{source}_{tokens}"
    if dest == source:
        raise InvalidInputError(
            f"the recipe would replace its source table {source!r}; name another --dest "
            f"(e.g. {source}_{tokens})"
        )
    frame = store.read(source)
    result = apply_recipe(frame, steps)
    params = {
        "recipe": tokens,
        "recipe_file": path,
        "source": source,
        "steps": result.provenance,
    }
    rows = store.write(
        dest, result.frame, mode="replace", step="recipe", parameters=params, source=source
    )
    return RecipeRun(source, dest, int(rows), result.provenance)


# ---------------------------------------------------------------- command line
def _param(text: str) -> tuple[str, str, Any]:
    """``TOKEN.KEY=VALUE`` with VALUE read as a TOML value (a bare word stays a string)."""
    import tomllib

    head, sep, raw = text.partition("=")
    token, dot, key = head.strip().partition(".")
    if not sep or not dot or not token or not key:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not TOKEN.KEY=VALUE (e.g. harmony.batch_key=Metadata_Source)"
        )
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return token, key.strip(), value


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``cellframe correct`` to the command line."""
    p = subparsers.add_parser(
        "correct",
        parents=[common],
        help="run a JUMP-style correction recipe (var_mad_featselect_harmony, ...) on a table",
    )
    p.add_argument(
        "--recipe",
        required=True,
        metavar="RECIPE",
        help="tokens joined by _ (wellpos, cc, var, mad, int, outlier, featselect, sphering, "
        "tvn, harmony, PCA), or a .toml file with one [[step]] table per step",
    )
    p.add_argument(
        "--source",
        default=DEFAULT_SOURCE,
        metavar="TABLE",
        help="table to read (default: %(default)s)",
    )
    p.add_argument(
        "--dest",
        default=None,
        metavar="TABLE",
        help="table to write, replaced if present (default: source_<tokens>)",
    )
    p.add_argument(
        "--param",
        action="append",
        type=_param,
        default=[],
        metavar="TOKEN.KEY=VALUE",
        help="a step parameter, e.g. harmony.batch_key=Metadata_Source (repeatable)",
    )
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from cellframe.store import Store

    parameters: dict[str, dict[str, Any]] = {}
    for token, key, value in args.param:
        parameters.setdefault(token, {})[key] = value
    with Store(args.store) as store:
        run = run_recipe(store, args.recipe, args.source, args.dest, parameters=parameters)
    if not args.quiet:
        for step in run.steps:
            note = ""
            params = step["parameters"]
            if "converged" in params:
                note = f", {params['n_iterations']} iterations, converged={params['converged']}"
            elif step["token"] == "sphering":
                note = f", lambda={params['lam']:g}"
            print(
                f"{step['position']}. {step['token']} ({step['step']}): {step['rows']} rows, "
                f"{step['features_in']} -> {step['features_out']} features{note}"
            )
        print(f"wrote {run.rows} rows to {run.dest!r} (from {run.source!r})")
    return 0
