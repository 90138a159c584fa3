"""Profiling subcommands: aggregate, normalize, select, sphere, qc, strength, profile.

Only argparse is imported at module level; each handler imports its work.
Every command reads one store table and writes another (with provenance).
Without ``--input``/``--output`` the commands chain: each reads the table the
previous one writes by default (:data:`CHAIN`), the names a ``pipeline.toml``
gives too (each step appends its suffix). Method and operation names are
checked against the registries (``NORMALIZATIONS``, ``OPERATIONS``, ...) when
an option is parsed, so ``--help`` imports none of them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from cellframe.cli import positive_int
from cellframe.engine.base import ENGINES

#: Default input table of each chained command: ingest writes ``cells``; each
#: later step reads what the step before it writes by default (its input's
#: name plus the step's suffix, as in a ``pipeline.toml``).
CHAIN: dict[str, str] = {
    "aggregate": "cells",  # writes wells (image_profiles, treatments by --level)
    "normalize": "wells",  # writes wells_normalized
    "select": "wells_normalized",  # writes wells_normalized_selected
    "sphere": "wells_normalized_selected",  # writes wells_normalized_selected_sphered
}

#: Table ``cellframe evaluate`` reads by default: the end of the chain.
CHAIN_END = "wells_normalized_selected_sphered"


def _choice(step: str, key: str) -> Callable[[str], str]:
    """An argparse ``type`` checking a value against the registry when it is parsed."""

    def parse(text: str) -> str:
        from cellframe.errors import InvalidChoiceError
        from cellframe.pipeline.config import check_value

        try:
            return check_value(step, key, text, f"cellframe {step}")
        except InvalidChoiceError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix(f"cellframe {step}: ")) from None

    parse.__name__ = key  # argparse names the type in some messages
    return parse


def _operations(text: str) -> list[str]:
    check = _choice("select", "operations")
    return [check(name) for name in _csv(text)]


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative; give a value >= 0")
    if not value < float("inf"):  # NaN or infinity
        raise argparse.ArgumentTypeError(f"{text} is not a finite number; give a value >= 0")
    return value


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _io(p: argparse.ArgumentParser, default_in: str, default_out: str | None) -> None:
    p.add_argument(
        "--input", default=default_in, metavar="TABLE", help="table to read (default: %(default)s)"
    )
    p.add_argument(
        "--output",
        default=default_out,
        metavar="TABLE",
        help="table to write, replaced if present"
        + (" (default: %(default)s)" if default_out else " (default: input name + suffix)"),
    )


def _engine(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--engine",
        choices=ENGINES,
        default="local",
        help="local (default) or ray: map the step over plates on a Ray cluster",
    )
    p.add_argument(
        "--address",
        default=None,
        metavar="ADDR",
        help="Ray cluster address (HOST:PORT or auto; default: start a local Ray)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="Ray engine: recompute plates a previous run already completed",
    )


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add the profiling commands to the command line."""
    p = subparsers.add_parser(
        "aggregate",
        parents=[common],
        help="aggregate cells to images, wells or treatments, plate by plate",
    )
    _io(p, CHAIN["aggregate"], None)
    p.add_argument(
        "--level",
        type=_choice("aggregate", "level"),
        default="well",
        help="a name of profiles.aggregate.LEVELS (image, well, treatment; default: %(default)s)",
    )
    p.add_argument(
        "--path",
        choices=("direct", "thesis"),
        default="direct",
        help="direct: one step (cell -> well median, pycytominer's default); "
        "thesis: cell -> image median -> well mean -> treatment mean",
    )
    p.add_argument(
        "--strata", type=_csv, help="comma-separated grouping columns (default: the level's keys)"
    )
    p.add_argument(
        "--method",
        type=_choice("aggregate", "method"),
        help="direct path's method: a name of profiles.AGGREGATIONS (median, mean)",
    )
    p.add_argument(
        "--chunk-rows",
        type=positive_int,
        default=None,
        help="read big plates a few wells at a time, about this many rows "
        "(default: 256 MiB of float32 features)",
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="chunks read and reduced at once (peak memory about workers x 2 x chunk; "
        "default: one per thread, within 4 GiB)",
    )
    _engine(p)
    p.set_defaults(func=_run, step="aggregate")

    p = subparsers.add_parser(
        "normalize",
        parents=[common],
        help="normalize profiles against negative controls, per plate",
    )
    _io(p, CHAIN["normalize"], None)
    p.add_argument(
        "--method",
        type=_choice("normalize", "method"),
        default="standardize",
        help="a name of profiles.NORMALIZATIONS (standardize, robustize, mad_robustize; "
        "default: %(default)s)",
    )
    p.add_argument(
        "--by", type=_csv, help="grouping columns (default: Metadata_Plate; '' for none)"
    )
    p.add_argument(
        "--controls",
        default="negcon",
        help="control rows: a Metadata_Control value, a SQL condition, or 'all' (default: %(default)s)",
    )
    p.add_argument("--zero-spread", choices=("center", "drop", "error"), default="center")
    p.add_argument("--epsilon", type=float, default=1e-18, help="mad_robustize epsilon")
    p.add_argument("--missing-controls", choices=("error", "drop"), default="error")
    p.add_argument("--save-fit", metavar="TABLE", help="save the fitted statistics to TABLE")
    p.add_argument(
        "--fit-from", metavar="TABLE", help="apply statistics saved in TABLE instead of fitting"
    )
    _engine(p)
    p.set_defaults(func=_run, step="normalize")

    p = subparsers.add_parser(
        "select", parents=[common], help="feature selection (pycytominer operations, in order)"
    )
    _io(p, CHAIN["select"], None)
    p.add_argument(
        "--operations",
        type=_operations,
        default=["variance_threshold"],
        help="comma-separated: variance_threshold, frequency_threshold, correlation_threshold, "
        "drop_na_columns, blocklist, drop_outliers, noise_removal: names of profiles.OPERATIONS "
        "(default: variance_threshold)",
    )
    p.add_argument("--samples", default="all", help="rows to compute on: SQL condition or 'all'")
    p.add_argument("--min-variance", type=float, default=1e-6)
    p.add_argument("--freq-cut", type=float, default=0.05)
    p.add_argument("--unique-cut", type=float, default=0.01)
    p.add_argument("--corr-threshold", type=float, default=0.9)
    p.add_argument("--corr-strategy", choices=("pycytominer", "iterative"), default="pycytominer")
    p.add_argument(
        "--corr-method",
        choices=("pearson", "spearman", "kendall"),
        default="pearson",
        help="correlation_threshold: correlation measure (default: %(default)s)",
    )
    p.add_argument("--na-cutoff", type=float, default=0.05)
    p.add_argument("--outlier-cutoff", type=float, default=500.0)
    p.add_argument(
        "--noise-removal-perturb-groups",
        metavar="COL",
        help="noise_removal: column grouping the replicates of a perturbation (required by it)",
    )
    p.add_argument(
        "--noise-removal-stdev-cutoff",
        type=float,
        default=0.8,
        help="noise_removal: largest mean within-group std kept (default: %(default)s)",
    )
    _engine(p)
    p.set_defaults(func=_run, step="select")

    p = subparsers.add_parser(
        "sphere", parents=[common], help="sphere (whiten) profiles on negative controls"
    )
    _io(p, CHAIN["sphere"], None)
    p.add_argument(
        "--method",
        type=_choice("sphere", "method"),
        default="regularized",
        help="a name of profiles.SPHERE_METHODS (regularized, ZCA, ZCA-cor, PCA, PCA-cor; "
        "default: %(default)s)",
    )
    p.add_argument(
        "--lam",
        type=_non_negative,
        default=1e-2,
        help="regularization lambda (default: %(default)s)",
    )
    p.add_argument("--epsilon", type=float, default=1e-6, help="pycytominer-mode epsilon")
    p.add_argument("--controls", default="negcon")
    p.add_argument("--save-fit", metavar="TABLE")
    p.add_argument("--fit-from", metavar="TABLE")
    _engine(p)
    p.set_defaults(func=_run, step="sphere")

    p = subparsers.add_parser(
        "qc", parents=[common], help="flag outlier wells (PCA) or images (image quality)"
    )
    _io(p, "wells", None)
    p.add_argument("--kind", choices=("wells", "images"), default="wells")
    p.add_argument("--n-components", type=positive_int, default=3)
    p.add_argument("--z-threshold", type=float, default=3.5)
    p.add_argument("--focus-z", type=float, default=4.0)
    p.add_argument("--max-saturated-percent", type=float, default=1.0)
    p.add_argument(
        "--by",
        type=_csv,
        help="groups of the robust z-scores (default: Metadata_Plate; '' for none)",
    )
    _engine(p)
    p.set_defaults(func=_run, step="qc")

    p = subparsers.add_parser(
        "strength",
        parents=[common],
        help="strong treatments (Algorithm 1): z-scored distance to controls",
    )
    _io(p, "wells_normalized", None)
    p.add_argument(
        "--treatment", default=None, help="treatment column (default: Metadata_Treatment)"
    )
    p.add_argument("--controls", default="negcon")
    p.add_argument(
        "--k",
        type=positive_int,
        default=None,
        help="keep the top K treatments (default: all, ranked)",
    )
    p.set_defaults(func=_run, step="strength")

    p = subparsers.add_parser(
        "profile", parents=[common], help="run a whole profiling chain from a TOML config"
    )
    p.add_argument(
        "--config", required=True, metavar="TOML", help="pipeline config (see docs/profiles.md)"
    )
    p.set_defaults(func=_profile)


_SKIP = {"func", "step", "store", "quiet", "input", "output", "command", "config"}


def _open(args: argparse.Namespace):
    from pathlib import Path

    from cellframe.errors import InvalidInputError
    from cellframe.store import Store

    if not Path(args.store).exists():
        raise InvalidInputError(
            f"no store at {args.store}; create one with 'cellframe ingest' first"
        )
    return Store(args.store)


def _run(args: argparse.Namespace) -> int:
    from cellframe.pipeline.steps import STEPS, _default_output

    params = {k: v for k, v in vars(args).items() if k not in _SKIP and v is not None}
    if args.step == "select":
        params["samples"] = None if params.get("samples") == "all" else params.get("samples")
    if "controls" in params and params["controls"] == "all":
        params["controls"] = None
    if "by" in params:
        params["by"] = [c for c in params["by"] if c]
    dest = args.output or _default_output(args.step, args.input, params)
    with _open(args) as store:
        report = STEPS[args.step](store, args.input, dest, progress=not args.quiet, **params)
    if not args.quiet:
        print(
            f"{report.step}: {report.input} -> {report.output}: {report.rows} rows "
            f"in {report.seconds:.1f} s ({report.note})"
        )
    return 0


def _profile(args: argparse.Namespace) -> int:
    from cellframe.pipeline import load_config, run_pipeline

    config = load_config(args.config)  # validated against the registries on load
    with _open(args) as store:
        reports = run_pipeline(store, config, progress=not args.quiet)
    if not args.quiet:
        for r in reports:
            print(
                f"{r.step:<10} {r.input} -> {r.output}: {r.rows} rows in {r.seconds:.1f} s  {r.note}"
            )
    return 0
