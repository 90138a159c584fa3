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
    p.add_argument(
        "--save-model",
        metavar="DIR",
        help="keep the trained model in this directory for activity-predict (held-out split "
        'only; overrides [output] model = "DIR")',
    )
    p.add_argument(
        "--save-model-name",
        metavar="NAME",
        help="which [modalities] model to keep when there are several ([output] model_name)",
    )
    p.set_defaults(func=_run)

    q = subparsers.add_parser(
        "activity-predict",
        parents=[common],
        help="predict a compound library with a model saved by cellframe activity --save-model",
        description=(
            "Predict every compound of LIBRARY (CSV, TSV, Parquet with a SMILES column, or a "
            ".smi file) with the saved MODEL, in chunks, and write one row per compound and "
            "assay to a store table: compound, smiles, assay, probability, member_spread, "
            "train_similarity, in_domain. Unparseable SMILES are kept with a null probability "
            "and counted in one warning."
        ),
    )
    q.add_argument("model", help="model directory (cellframe activity CONFIG --save-model DIR)")
    q.add_argument("library", help="compounds: .csv, .tsv, .parquet or .smi")
    q.add_argument(
        "--table",
        default="activity_library_predictions",
        help="store table to write (replaced; default activity_library_predictions)",
    )
    q.add_argument("--smiles-column", help="SMILES column (default: detected, e.g. smiles)")
    q.add_argument("--id-column", help="identifier column kept (default: detected, e.g. ID)")
    q.add_argument("--chunk-size", type=int, default=10_000, help="compounds per chunk")
    q.add_argument(
        "--workers", type=int, default=None, help="descriptor processes (default: cores)"
    )
    q.add_argument("--device", help="cpu or cuda for the networks (default: cuda when present)")
    q.add_argument(
        "--descriptors-cache",
        help="Parquet file keeping the library's RDKit descriptors across runs (created if absent)",
    )
    q.set_defaults(func=_predict)


def _run(args: argparse.Namespace) -> int:
    import polars as pl

    from cellframe.activity.experiment import check_save_request, load_config, run_experiment
    from cellframe.store import Store

    config = load_config(args.config)
    if args.prefix:
        config.prefix = args.prefix
    if args.device:
        config.model["device"] = args.device
    save_model, model_name = _model_output(args, config)
    check_save_request(config, save_model, model_name)  # before the store is opened
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
            result = run_experiment(
                config, store, progress=not args.quiet, save_model=save_model,
                model_name=model_name,
            )  # fmt: skip
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
        if save_model is not None:
            print(
                f"saved the model to {save_model} (cellframe activity-predict {save_model} LIBRARY)"
            )
    return 0


def _model_output(args: argparse.Namespace, config: object) -> tuple[str | None, str | None]:
    """Where to save the model (``--save-model`` or ``[output] model``) and which one.

    Only read here (from the loaded config's ``[output]``); checked by
    :func:`~cellframe.activity.experiment.check_save_request`.
    """
    output = config.output  # type: ignore[attr-defined]
    path = args.save_model
    if path is None and isinstance(output.get("model"), str):  # validate_config refuses others
        path = str(config.resolve(output["model"]))  # type: ignore[attr-defined]
    return path, args.save_model_name or output.get("model_name")


def _predict(args: argparse.Namespace) -> int:
    from cellframe.activity.library import open_library, predict_library
    from cellframe.activity.saved import load_activity_model
    from cellframe.store import Store

    library = open_library(
        args.library, smiles_column=args.smiles_column, id_column=args.id_column
    )  # checked before the model loads
    model = load_activity_model(
        args.model, device=args.device, workers=args.workers,
        descriptor_cache=args.descriptors_cache,
    )  # fmt: skip
    with Store(args.store) as store:
        report = predict_library(
            model, library, store, table=args.table, chunk_size=args.chunk_size,
            progress=not args.quiet,
        )  # fmt: skip
        in_domain = store.sql(
            f"SELECT avg(CAST(in_domain AS DOUBLE)) AS f FROM "
            f"{_quote(args.table)} WHERE in_domain IS NOT NULL"
        )["f"][0]
    if not args.quiet:
        share = "" if in_domain is None else f"; {100 * in_domain:.0f}% in the training domain"
        print(
            f"predicted {report.n_compounds} compounds x {len(model.assays)} assays = "
            f"{report.n_rows} rows into {args.table} of {args.store} in {report.seconds:.1f} s "
            f"({report.n_unparsed} unparseable, null){share}"
        )
    return 0


def _quote(name: str) -> str:
    from cellframe.store import quote_identifier

    return quote_identifier(name)
