"""``cellframe evaluate``: retrieval or phenotypic-activity metrics of a stored profile table."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from cellframe.cli import positive_int
from cellframe.cli.profiles import CHAIN_END

if TYPE_CHECKING:
    import polars as pl


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``evaluate`` to the command line."""
    p = subparsers.add_parser(
        "evaluate",
        parents=[common],
        help="score a profile table: retrieval mAP / enrichment / hits, or phenotypic activity",
        description=(
            "Read a profile table from the store and write <output>_per_query and "
            "<output>_summary tables (and <output>_pr_curve for --mode retrieval), "
            "with provenance. retrieval: interpolated mAP, folds of enrichment and hits "
            "at the top fraction with positives sharing a --label value ('|' separates "
            "several). activity: copairs-compatible AP of replicates against negative "
            "controls, with permutation p-values and BH-corrected p-values per treatment. "
            "When the table's provenance shows normalize/sphere steps fitted on the controls, "
            "activity refits them by cross-fitting (--n-folds folds of the controls, each "
            "held out of the fit and used as the null) from the pre-correction table. "
            "moa: nearest-neighbour MoA accuracy of treatment profiles (--label is the MoA), "
            "leaving out the same compound (NSC) and also the same --batch (NSCB); writes "
            "<output>_per_query, <output>_per_moa and <output>_summary, one row per protocol."
        ),
    )
    p.add_argument(
        "table",
        nargs="?",
        default=CHAIN_END,
        help="profile table in the store (default: %(default)s, what 'cellframe sphere' writes)",
    )
    p.add_argument("--mode", choices=("retrieval", "activity", "moa"), default="retrieval")
    p.add_argument(
        "--label",
        default="Metadata_MoA",
        help="retrieval / moa: label (MoA) column (default: %(default)s)",
    )
    p.add_argument(
        "--treatment",
        default="Metadata_Treatment",
        help="activity: treatment column; moa: compound column (default: %(default)s)",
    )
    p.add_argument(
        "--batch",
        default="Metadata_Plate",
        help="moa: batch column NSCB leaves out (default: %(default)s)",
    )
    p.add_argument(
        "--control-column", default="Metadata_Control", help="activity: column marking controls"
    )
    p.add_argument(
        "--control-value",
        default="negcon",
        help="activity: value of negative controls (moa: controls are left out)",
    )
    p.add_argument(
        "--same-plate", action="store_true", help="activity: negatives from the query's plate only"
    )
    p.add_argument(
        "--top-fraction", type=float, default=0.01, help="retrieval: top fraction (default 0.01)"
    )
    p.add_argument(
        "--exclude-same",
        nargs="*",
        default=[],
        metavar="COL",
        help="retrieval: drop candidates equal to the query on these columns (image level: Metadata_Plate Metadata_Well)",
    )
    p.add_argument(
        "--null-size",
        type=positive_int,
        default=10000,
        help="activity: permutations per configuration",
    )
    p.add_argument("--seed", type=int, default=0, help="activity: random seed")
    p.add_argument(
        "--n-folds",
        type=positive_int,
        default=2,
        help="activity: folds of the controls when a correction fitted on them is refitted "
        "by cross-fitting (default: %(default)s)",
    )
    p.add_argument(
        "--as-is",
        action="store_true",
        help="activity: evaluate the table as it is even when its provenance shows a "
        "correction fitted on the controls (the null is then not independent; warns)",
    )
    p.add_argument("--threshold", type=float, default=0.05, help="activity: significance level")
    p.add_argument(
        "--features",
        nargs="*",
        metavar="COL",
        help="feature columns (default: all numeric non-Metadata_)",
    )
    p.add_argument("--output", metavar="PREFIX", help="table name prefix (default: <table>_<mode>)")
    p.set_defaults(func=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    import polars as pl

    from cellframe.cli.store import _open
    from cellframe.columns import metadata_columns

    with _open(args, read_only=False) as store:
        lf = store.scan(args.table)
        meta = metadata_columns(lf)
        prefix = args.output or f"{args.table}_{args.mode}"
        params: dict[str, object] = {"mode": args.mode, "table": args.table}
        if args.mode == "retrieval":
            from cellframe.evaluate.retrieval import retrieval_metrics
            from cellframe.evaluate.similarity import ComputeOptions

            params |= {
                "label": args.label,
                "top_fraction": args.top_fraction,
                "exclude_same": args.exclude_same,
            }
            res = retrieval_metrics(
                lf,
                label=args.label,
                features=args.features,
                top_fraction=args.top_fraction,
                exclude_same=args.exclude_same,
                keep=meta,
                compute=ComputeOptions(progress=not args.quiet),
            )
            per_query, summary = res.per_query, res.summary
            store.write(
                f"{prefix}_pr_curve",
                res.pr_curve,
                mode="replace",
                step="evaluate",
                parameters=params,
                source=args.table,
            )
        elif args.mode == "moa":
            per_query, summary = _moa(store, args, lf, meta, prefix, params)
        else:
            from cellframe.pipeline import NullSettings, activity_from_store

            params |= {
                "treatment": args.treatment,
                "control_column": args.control_column,
                "control_value": args.control_value,
                "same_plate": args.same_plate,
                "null_size": args.null_size,
                "seed": args.seed,
                "threshold": args.threshold,
                "n_folds": args.n_folds,
            }
            result = activity_from_store(
                store,
                args.table,
                treatment=args.treatment,
                controls=pl.col(args.control_column) == args.control_value,
                same_plate=args.same_plate,
                features=args.features,
                null=NullSettings(
                    n_folds=args.n_folds,
                    seed=args.seed,
                    null_size=args.null_size,
                    threshold=args.threshold,
                    cross_fit=not args.as_is,
                ),
                progress=not args.quiet,
            )
            per_query, summary = result.per_query, result.summary
            params |= result.provenance()
            if not args.quiet:
                print(f"null: {result.null} ({result.plan.describe()})")
        store.write(
            f"{prefix}_per_query",
            per_query,
            mode="replace",
            step="evaluate",
            parameters=params,
            source=args.table,
        )
        store.write(
            f"{prefix}_summary",
            summary,
            mode="replace",
            step="evaluate",
            parameters=params,
            source=args.table,
        )
    if not args.quiet:
        print(
            f"wrote {prefix}_per_query ({per_query.height} rows) and {prefix}_summary "
            f"({summary.height} rows)"
        )
        if args.mode == "activity":
            _print_activity(summary, args.treatment, args.threshold)
        elif args.mode == "moa":
            _print_moa(summary)
        else:
            with pl.Config(tbl_cols=10, tbl_width_chars=140):
                print(summary.head(10))
    return 0


def _print_activity(summary: pl.DataFrame, treatment: str, threshold: float) -> None:
    """Print every treatment's mAP, permutation p-value and BH q-value, most significant first."""
    table = summary.sort(["corrected_p_value", "p_value"], nulls_last=True)
    names = [str(v) for v in table[treatment]]
    width = max([len(treatment), *map(len, names)])
    print(f"{treatment:<{width}}  {'mAP':>8}  {'p_value':>10}  {'q_value':>10}  q < {threshold:g}")
    for name, row in zip(names, table.iter_rows(named=True), strict=True):
        cells = [
            "NA" if row[c] is None else f"{row[c]:.4g}"
            for c in ("mean_average_precision", "p_value", "corrected_p_value")
        ]
        mark = "yes" if row["below_corrected_p"] else "no"
        print(f"{name:<{width}}  {cells[0]:>8}  {cells[1]:>10}  {cells[2]:>10}  {mark}")
    hits = int(table["below_corrected_p"].fill_null(False).sum())
    print(f"{hits} of {table.height} treatments active at q < {threshold:g} (q: BH-corrected p)")


def _moa(store, args: argparse.Namespace, lf, meta: list[str], prefix: str, params: dict) -> tuple:
    """NSC and NSCB accuracy of the table's profiles; writes ``<prefix>_per_moa`` too."""
    import polars as pl

    from cellframe.evaluate.moa import nsc_accuracy, nscb_accuracy

    options = {
        "moa": args.label,
        "compound": args.treatment,
        "controls": pl.col(args.control_column) == args.control_value
        if args.control_column in meta
        else None,
        "features": args.features,
        "keep": [c for c in meta if c not in (args.label, args.treatment, args.batch)],
    }
    params |= {
        "label": args.label,
        "compound": args.treatment,
        "batch": args.batch,
        "control_column": args.control_column,
        "control_value": args.control_value,
    }
    results = {
        "NSC": nsc_accuracy(lf, **options),
        "NSCB": nscb_accuracy(lf, batch=args.batch, **options),
    }

    def stacked(part: str) -> pl.DataFrame:
        frames = [
            getattr(r, part)
            .with_columns(protocol=pl.lit(name))
            .select("protocol", pl.exclude("protocol"))
            for name, r in results.items()
        ]
        return pl.concat(frames, how="diagonal_relaxed")

    per_moa = stacked("per_moa")
    store.write(
        f"{prefix}_per_moa",
        per_moa,
        mode="replace",
        step="evaluate",
        parameters=params,
        source=args.table,
    )
    return stacked("per_profile"), stacked("summary")


def _print_moa(summary) -> None:
    """One line per protocol: accuracy with its counts."""
    for row in summary.iter_rows(named=True):
        accuracy = "NA" if row["accuracy"] is None else f"{row['accuracy']:.3f}"
        print(
            f"{row['protocol']}: accuracy {accuracy} ({row['n_correct']} of {row['n_scored']} "
            f"profiles scored; {row['n_no_neighbour']} without an eligible neighbour)"
        )
