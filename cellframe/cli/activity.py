"""``cellframe activity``: run a configured compound-activity experiment end to end.

Only argparse is imported here; RDKit, PyTorch and scikit-learn load when the
command runs.
"""

from __future__ import annotations

import argparse
import logging
import sys


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``activity`` to the command line."""
    p = subparsers.add_parser(
        "activity",
        parents=[common],
        help="compound activity prediction: clean, featurize, split, train, evaluate, fuse",
        description=(
            "Run the experiment described by a TOML config (see docs/activity.md) and "
            "write its tables to the store: cross-validated over folds (<prefix>_cleaning, "
            "_folds, _predictions, _fold_metrics, _assay_metrics, _summary, ...), or on one "
            "held-out split when [split] names a column, train/validation/test files or "
            "holdout = true (<prefix>_partition, _predictions, _metrics, _summary). Models: "
            "morgan, dmpnn (descriptors = true for RDKit descriptors), rf, rf-tuned, lgbm, "
            "ensemble (calibrated average of rf-tuned, lgbm and dmpnn-desc, members chosen on "
            "the validation part)."
        ),
    )
    p.add_argument("config", help="experiment TOML file")
    p.add_argument("--prefix", help="table name prefix (overrides [output] prefix)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import polars as pl

    from cellframe.activity.experiment import load_config, run_experiment
    from cellframe.store import Store

    config = load_config(args.config)
    if args.prefix:
        config.prefix = args.prefix
    if args.device:
        config.model["device"] = args.device
    # What the matrix reader took (compounds, assays, identifier and ignored columns).
    log = logging.getLogger("cellframe.activity.matrix")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    level = log.level
    if not args.quiet:
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    try:
        with Store(args.store) as store:
            result = run_experiment(config, store, progress=not args.quiet)
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    if not args.quiet:
        with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=160):
            if "cleaning" in result.tables:
                print(result["cleaning"])
            if "ensemble" in result.tables:
                print(result["ensemble"])
            print(result["summary"])
        print(f"wrote {len(result.tables)} tables with prefix {config.prefix!r} to {args.store}")
    return 0
