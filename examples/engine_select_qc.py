"""Feature selection and QC of a multi-plate screen on Ray, checked against the local engine.

Run::

    python examples/engine_select_qc.py [--store screen.duckdb] [--plates 8]
    python examples/engine_select_qc.py --data my_screen.duckdb --input wells

Writes 8 plates of well profiles (384 wells x 200 features, some constant,
some correlated, some with many missing values, one odd well a plate) as per-plate
Parquet partitions, then runs ``select`` and ``qc`` with both engines: on Ray,
each plate is reduced to exact statistics (value counts, moments, X^T X) that
the driver combines, so the selected features and QC flags are the same.
``--data`` runs both engines on a well table of your own store instead (it adds
the tables ``<input>_selected``, ``<input>_selected_ray``, ``<input>_qc`` and
``<input>_qc_ray`` to it).
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import numpy as np
import polars as pl

from cellframe.pipeline import QualityControl, run_step
from cellframe.profiles import FeatureSelector
from cellframe.store import Store

OPERATIONS = ["variance_threshold", "correlation_threshold", "drop_na_columns", "drop_outliers"]


def make_plate(rng: np.random.Generator, plate: str, wells: int = 384, features: int = 200):
    latent = rng.normal(size=(wells, 20))
    x = latent @ rng.normal(size=(20, features)) + rng.normal(size=(wells, features))
    x[:, :5] = 1.0  # constant features
    x[:, 5:15] = x[:, 15:25] * 1.5 + rng.normal(0, 0.05, (wells, 10))  # near copies
    x[:, 190:][rng.random((wells, features - 190)) < 0.1] = np.nan  # dropped (> 5% missing)
    x[rng.integers(wells), :] += 60.0  # one odd well per plate
    frame = pl.DataFrame({f"Cells_f{j:03d}": x[:, j].astype(np.float32) for j in range(features)})
    return frame.with_columns(
        pl.lit(plate).alias("Metadata_Plate"),
        pl.Series("Metadata_Well", [f"{chr(65 + w // 24)}{w % 24 + 1:02d}" for w in range(wells)]),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--store", type=Path, default=None, help="DuckDB file to write (default: a temporary one)"
    )
    parser.add_argument(
        "--plates", type=int, default=8, help="synthetic plates of 384 wells (default 8)"
    )
    parser.add_argument(
        "--data", type=Path, default=None, help="your own store with per-plate well profiles"
    )
    parser.add_argument("--input", default="wells", help="the well table of --data")
    args = parser.parse_args(argv)
    if args.data is not None:
        run(args.data, args.input, plates=0)
    elif args.store is not None:
        run(args.store, "wells", plates=args.plates)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run(Path(tmp) / "screen.duckdb", "wells", plates=args.plates)


def run(path: Path, table: str, *, plates: int) -> None:
    """Select and QC ``table`` with both engines (after writing ``plates`` synthetic plates)."""
    rng = np.random.default_rng(0)
    prefix = "" if table == "wells" else f"{table}_"
    with Store(path) as store:
        for p in range(plates):
            store.write_partition(table, f"P{p}", make_plate(rng, f"P{p}"), step="example")
        warnings.simplefilter("ignore")  # flag counts are printed below
        for engine in ("local", "ray"):
            suffix = "" if engine == "local" else "_ray"
            report = run_step(
                store, FeatureSelector(OPERATIONS), table, f"{prefix}selected{suffix}",
                engine=engine, progress=False,
            )  # fmt: skip
            print(f"select ({engine}): {report.note}")
            report = run_step(
                store, QualityControl(), f"{prefix}selected{suffix}", f"{prefix}qc{suffix}",
                engine=engine, progress=False,
            )  # fmt: skip
            print(f"qc     ({engine}): {report.note}")
        same_drop = store.read(f"{prefix}selected_dropped").equals(
            store.read(f"{prefix}selected_ray_dropped")
        )
        keys = ["Metadata_Plate", "Metadata_Well"]
        a = store.read(f"{prefix}qc").sort(keys)
        b = store.read(f"{prefix}qc_ray").sort(keys).select(a.columns)
        pcs = ["PC1", "PC2", "PC3"]
        diff = np.abs(a.select(pcs).to_numpy() - b.select(pcs).to_numpy()).max()
        print(f"same dropped features and reasons: {same_drop}")
        print(f"same QC flags: {a['Metadata_QC_Outlier'].equals(b['Metadata_QC_Outlier'])}, "
              f"max |PC score difference| = {diff:.1e}")  # fmt: skip
        flagged = b.filter(pl.col("Metadata_QC_Outlier")).select(*keys)
        print(f"{flagged.height} wells flagged as outliers, e.g.")
        print(flagged.head(8))


if __name__ == "__main__":
    main()
