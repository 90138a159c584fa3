"""Build your own Altair chart from cellframe metric tables, next to cellframe's own charts.

Run after the demo (``cellframe demo``), or on its own::

    python examples/custom_chart.py [--data cellframe-demo/cellframe.duckdb] [--out FOLDER]

Reads the per-compound phenotypic-activity table and the sphering sweep the
demo wrote, draws mAP against -log10(q) per compound with plain Altair, puts it
beside a cellframe chart, and saves both as an offline HTML report and a PNG.
Without a demo store it computes the two tables itself from the LINCS plate
shipped with cellframe (normalize, lambda sweep, cross-fitted mAP; about 20 s).
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import altair as alt
import polars as pl

from cellframe.columns import CONTROL, MOA, TREATMENT
from cellframe.report import ReportSection, lambda_sweep_chart, save_png, write_report
from cellframe.store import Store

DEMO_STORE = Path("cellframe-demo/cellframe.duckdb")


def volcano(activity: pl.DataFrame) -> alt.Chart:
    """mAP vs significance per compound: a chart cellframe does not ship."""
    data = activity.with_columns(
        (-pl.col("corrected_p_value").clip(1e-6, 1.0).log10()).alias("minus_log10_q")
    )
    return (
        alt.Chart(data.to_pandas(), title="Phenotypic activity per compound")
        .mark_circle(size=60, opacity=0.7)
        .encode(
            x=alt.X("mean_average_precision:Q", title="mAP vs DMSO"),
            y=alt.Y("minus_log10_q:Q", title="-log10(q)"),
            color=alt.Color("source:N", title="Profiles"),
            tooltip=["Metadata_Treatment", "mean_average_precision", "corrected_p_value"],
        )
        .properties(width=340, height=260)
    )


def tables_from_demo(path: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The demo's ``phenotypic_activity`` and ``sphering_sweep`` tables."""
    with Store(path, read_only=True) as store:
        return store.read("phenotypic_activity"), store.read("sphering_sweep")


def tables_from_bundled_plate() -> tuple[pl.DataFrame, pl.DataFrame]:
    """The same two tables computed from the bundled LINCS plate SQ00015054."""
    from cellframe.demo import demo_data_dir
    from cellframe.evaluate import CrossFit, mean_average_precision, phenotypic_activity
    from cellframe.profiles import Normalizer, Spherizer, aggregate, lambda_sweep, normalize

    path = demo_data_dir() / "lincs" / "SQ00015054_normalized_feature_select.csv.gz"
    raw = pl.read_csv(path, infer_schema_length=10_000, glob=False)
    features = [c for c in raw.columns if not c.startswith("Metadata_")]
    wells = raw.select(
        "Metadata_Plate",
        "Metadata_Well",
        pl.col("Metadata_broad_sample").alias(TREATMENT),
        pl.col("Metadata_moa").alias(MOA),
        pl.when(pl.col("Metadata_broad_sample") == "DMSO").then(pl.lit("negcon")).alias(CONTROL),
        pl.col(features).cast(pl.Float32),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zero-spread features
        normalized = normalize(wells, "mad_robustize", controls="negcon").collect()

    def treatments(lf: pl.LazyFrame) -> pl.LazyFrame:
        annotated = lf.filter(pl.col(CONTROL).is_null() & pl.col(MOA).is_not_null())
        return aggregate(annotated, "treatment", keep=[MOA])

    sweep = lambda_sweep(normalized, (1e-3, 1e-2, 1e-1, 1.0), label=MOA, prepare=treatments)
    best = float(sweep.sort("score", descending=True)["lambda"][0])
    # Normalization and sphering are fitted on the DMSO wells, which are also the
    # activity test's null: the test is cross-fitted from the wells as read (each
    # fold of DMSO wells is held out of both fits and is the null for that fold).
    corrections = {
        "normalized": [Normalizer("mad_robustize")],
        f"sphered (lambda={best:g})": [Normalizer("mad_robustize"), Spherizer(lam=best)],
    }
    activity = []
    for name, correction in corrections.items():
        ap = phenotypic_activity(
            wells, cross_fit=CrossFit(correction=correction, n_folds=2, seed=0)
        )
        maps = mean_average_precision(
            ap.filter(~pl.col("is_control")), sameby=TREATMENT, null_size=1000, seed=0
        )
        activity.append(maps.with_columns(pl.lit(name).alias("source")))
    return pl.concat(activity, how="diagonal_relaxed"), sweep


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        "--store",
        dest="store",
        type=Path,
        default=None,
        help=f"a store written by `cellframe demo` (default: {DEMO_STORE} if it exists, "
        "else the tables are computed from the bundled LINCS plate)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="folder for the HTML and PNG (default: the store's)"
    )
    args = parser.parse_args(argv)
    store = args.store or (DEMO_STORE if DEMO_STORE.is_file() else None)
    if store is not None:
        activity, sweep = tables_from_demo(store)
        print(f"read the demo's tables from {store}")
    else:
        print(f"no demo store at {DEMO_STORE}: computing the tables from the bundled LINCS plate")
        activity, sweep = tables_from_bundled_plate()
    out = args.out or (store.parent if store is not None else Path("."))
    out.mkdir(parents=True, exist_ok=True)

    chart = volcano(activity)
    report = write_report(
        [
            ReportSection("Phenotypic activity", chart, "Each point is a compound."),
            ReportSection("Sphering sweep", lambda_sweep_chart(sweep), "cellframe's own chart."),
        ],
        out / "custom_report.html",
        title="My own charts",
    )
    png = save_png(chart, out / "activity.png")
    for source, part in activity.group_by("source", maintain_order=True):
        print(
            f"{source[0]}: {part.height} compounds, {part['below_corrected_p'].sum()} with q < 0.05"
        )
    print(f"wrote {report} and {png}")


if __name__ == "__main__":
    main()
