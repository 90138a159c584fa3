"""``cellframe correct --recipe``: the command line of :func:`cellframe.pipeline.recipe.run_recipe`."""

from __future__ import annotations

import argparse
from typing import Any

from cellframe.pipeline.recipe import DEFAULT_SOURCE

__all__ = ["register"]


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
    from cellframe.pipeline.recipe import run_recipe
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
