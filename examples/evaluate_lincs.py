"""Evaluate the real LINCS Cell Painting plate SQ00015054 with cellframe.evaluate.

Run (the plate ships with cellframe; ``--data`` reads your own well profiles,
a CSV or Parquet file with ``Metadata_broad_sample`` (``DMSO`` for the
controls), ``Metadata_moa`` and ``Metadata_mg_per_ml`` columns)::

    python examples/evaluate_lincs.py [--data PLATE.csv.gz] [--quick]

It prints phenotypic activity (copairs-compatible mAP with p-values), replicate
metrics (percent replicating, grit) and MoA retrieval (interpolated mAP, folds
of enrichment, hits in the top 1%), then stores the tables in a DuckDB store and
summarises them per MoA with the SQL macros of sql/evaluate.sql.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import polars as pl

from cellframe.demo import demo_data_dir
from cellframe.evaluate import (
    grit,
    mean_average_precision,
    percent_replicating,
    phenotypic_activity,
    retrieval_metrics,
    top_k_similar,
)
from cellframe.pipeline import register_evaluate_sql
from cellframe.store import Store

#: The plate as bundled with cellframe (cellframe/data/demo/PROVENANCE.md).
PLATE = demo_data_dir() / "lincs" / "SQ00015054_normalized_feature_select.csv.gz"


def read_wells(path: Path) -> pl.DataFrame:
    """Well profiles from a CSV (optionally gzip-compressed) or Parquet file."""
    if path.suffix == ".parquet":
        return pl.read_parquet(path, glob=False)
    return pl.read_csv(path, infer_schema_length=10000, glob=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=PLATE, help="well profiles (default: the bundled LINCS plate)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="1,000 permutations instead of 10,000 (seconds)"
    )
    args = parser.parse_args(argv)
    null_size = 1000 if args.quick else 10000
    wells = read_wells(args.data)
    compound = "Metadata_broad_sample"

    # 1. Phenotypic activity: replicates of a compound against DMSO wells.
    ap = phenotypic_activity(
        wells,
        treatment=compound,
        controls=pl.col(compound) == "DMSO",
        keep=["Metadata_Well", "Metadata_moa"],
    )
    activity = mean_average_precision(
        ap.filter(~pl.col("is_control")), sameby=compound, null_size=null_size, seed=0
    )
    print(
        f"phenotypic activity: mAP {activity['mean_average_precision'].mean():.3f} over "
        f"{activity.height} compounds, {activity['below_corrected_p'].mean():.1%} significant "
        "(BH-corrected p < 0.05)"
    )

    # 2. Replicate metrics as cytominer-eval reports them.
    for q in (0.5, 0.95):
        pr = percent_replicating(
            wells, replicate_groups=[compound, "Metadata_mg_per_ml"], quantile=q
        )
        print(f"percent replicating (Pearson, quantile {q}): {pr.percent_replicating:.3f}")
    g = grit(wells, profile_col=compound, group_col="Metadata_moa", control_perts=["DMSO"])
    print("top grit:", g.row(0, named=True))

    # 3. MoA retrieval at the treatment level (mean of each compound's wells).
    treatments = (
        wells.filter(pl.col("Metadata_moa").is_not_null())
        .group_by(compound)
        .agg(pl.col("Metadata_moa").first(), pl.exclude("^Metadata_.*$").mean())
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # MoAs with one compound are not scored
        moa = retrieval_metrics(treatments, label="Metadata_moa", keep=[compound])
    print(moa.summary)

    # 4. Nearest neighbours of one compound.
    print(top_k_similar(treatments, k=3, id_columns=[compound, "Metadata_moa"]).head(3))

    # 5. Tables in a store, summarised per MoA in SQL.
    store = Store()
    store.write(
        "lincs_moa_per_query", moa.per_query, step="evaluate", parameters={"label": "Metadata_moa"}
    )
    store.write(
        "lincs_activity", activity, step="evaluate", parameters={"null_size": null_size, "seed": 0}
    )
    register_evaluate_sql(store)
    print(store.sql("FROM cf_moa_summary('lincs_moa_per_query', 'Metadata_moa') LIMIT 5"))


if __name__ == "__main__":
    main()
