"""Ingest a CellProfiler SQLite into a store, then query it with SQL and with Polars.

Run from the repository root::

    .venv/bin/python examples/ingest_and_query.py [SOURCE] [STORE]

SOURCE defaults to the NF1 Schwann cell CellProfiler database in ../shared/data
(a synthetic CellProfiler file is made when that is absent).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import polars as pl

import cellframe as cf
from cellframe.columns import PLATE, WELL, feature_columns

NF1 = (
    Path(__file__).resolve().parents[1].parent
    / "shared/data/cellprofiler-outputs/tests/data/cellprofiler/NF1_SchwannCell_data/all_cellprofiler.sqlite"
)


def main(source: Path, store_path: Path) -> None:
    report = cf.ingest(source, store_path, progress=False)
    print(report)

    with cf.Store(store_path, read_only=True) as store:
        print(store.tables().select("table", "kind", "rows", "columns", "step"))

        # SQL: cells and mean nucleus area per well.
        print(
            store.sql(
                "SELECT Metadata_Well, count(*) AS n_cells, "
                "round(avg(Nuclei_AreaShape_Area), 1) AS mean_nucleus_area "
                "FROM cells GROUP BY 1 ORDER BY 1"
            )
        )

        # Polars: a lazy scan, one plate, a few features, the median per well.
        lf = store.scan("cells").filter(pl.col(PLATE) == report.plates[0])
        features = feature_columns(lf)[:3]
        medians = lf.group_by(WELL).agg(pl.col(features).median()).sort(WELL).collect()
        print(medians)


if __name__ == "__main__":
    args = sys.argv[1:]
    if args:
        source = Path(args[0])
    elif NF1.exists():
        source = NF1
    else:
        from cellframe.io._synthetic import write_synthetic_sqlite

        source = write_synthetic_sqlite(
            Path(tempfile.mkdtemp()) / "synthetic.sqlite", n_cells=2_000
        )
    store_path = Path(args[1]) if len(args) > 1 else Path(tempfile.mkdtemp()) / "example.duckdb"
    main(source, store_path)
