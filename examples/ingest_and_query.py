"""Ingest CellProfiler output into a store, then query it with SQL and with Polars.

Run::

    python examples/ingest_and_query.py [--data SOURCE] [--platemap FILE] [--store STORE]

By default it reads the CellProfiler per-site CSV exports of JUMP plate
BR00121431 (two sites, wells A01 and A02) with the plate's compound platemap,
both shipped with cellframe (cellframe/data/demo/PROVENANCE.md). ``--data``
takes any source ``cellframe ingest`` reads: a CellProfiler SQLite file, a
folder of CellProfiler CSVs, CytoTable Parquet, DeepProfiler or IN Carta output.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import polars as pl

import cellframe as cf
from cellframe.columns import PLATE, TREATMENT, WELL, feature_columns
from cellframe.demo import demo_data_dir

DEMO = demo_data_dir()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=DEMO / "cellprofiler" / "BR00121431",
        help="CellProfiler SQLite, CSV folder, ... (default: the bundled JUMP plate BR00121431)",
    )
    parser.add_argument(
        "--platemap",
        type=Path,
        default=None,
        help="platemap CSV/TSV (default: the bundled one when --data is the bundled plate)",
    )
    parser.add_argument(
        "--store", type=Path, default=None, help="DuckDB file to write (default: a temporary one)"
    )
    args = parser.parse_args(argv)
    platemap = args.platemap
    if platemap is None and args.data == parser.get_default("data"):
        platemap = DEMO / "platemap_BR00121431.csv"
    store_path = args.store or Path(tempfile.mkdtemp()) / "example.duckdb"

    report = cf.ingest(args.data, store_path, platemap=platemap, progress=False)
    print(report)

    with cf.Store(store_path, read_only=True) as store:
        print(store.tables().select("table", "kind", "rows", "columns", "step"))

        # SQL: cells and mean nucleus area per well.
        per_well = store.sql(
            "SELECT Metadata_Well, count(*) AS n_cells, "
            "round(avg(Nuclei_AreaShape_Area), 1) AS mean_nucleus_area "
            "FROM cells GROUP BY 1 ORDER BY 1"
        )
        print(per_well)
        if TREATMENT in store.columns("cells"):
            print(store.sql(f"SELECT DISTINCT {WELL}, {TREATMENT} FROM cells ORDER BY 1"))

        # Polars: a lazy scan, one plate, a few features, the median per well.
        lf = store.scan("cells").filter(pl.col(PLATE) == report.plates[0])
        features = feature_columns(lf)[:3]
        medians = lf.group_by(WELL).agg(pl.col(features).median()).sort(WELL).collect()
        print(medians)
        for row in per_well.iter_rows(named=True):
            print(f"well {row[WELL]}: {row['n_cells']} cells")


if __name__ == "__main__":
    main()
