"""Run a JUMP-style correction recipe on a store table (``cellframe correct --recipe``).

:func:`run_recipe` reads one store table, runs the recipe's steps on all its
rows (:func:`cellframe.profiles.recipe.apply_recipe`) and writes the result to
another table in one transaction, with one provenance record whose
parameters hold the recipe and every step's fitted parameters. Nothing is
written when a step fails: the store is left as it was.

Only the standard library is imported at module level (``cellframe --help``
stays fast); the work is imported when the command runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from cellframe.store import Store

__all__ = ["DEFAULT_SOURCE", "RecipeRun", "run_recipe"]

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
