"""Feature selection and QC of a multi-plate screen on Ray, checked against the local engine.

Run:  python examples/engine_select_qc.py [store.duckdb]

Writes 8 plates of well profiles (384 wells x 200 features, some constant,
some correlated, some with many missing values, one odd well a plate) as per-plate
Parquet partitions, then runs ``select`` and ``qc`` with both engines: on Ray,
each plate is reduced to exact statistics (value counts, moments, X^T X) that
the driver combines, so the selected features and QC flags are the same.
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import polars as pl

from cellframe.profiles.pipeline import run_qc, run_select
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


def main(path: Path) -> None:
    rng = np.random.default_rng(0)
    with Store(path) as store:
        for p in range(8):
            store.write_partition("wells", f"P{p}", make_plate(rng, f"P{p}"), step="example")
        warnings.simplefilter("ignore")  # flag counts are printed below
        for engine in ("local", "ray"):
            suffix = "" if engine == "local" else "_ray"
            report = run_select(
                store, "wells", f"selected{suffix}", operations=OPERATIONS, engine=engine,
                progress=False,
            )  # fmt: skip
            print(f"select ({engine}): {report.note}")
            report = run_qc(
                store, f"selected{suffix}", f"qc{suffix}", engine=engine, progress=False
            )
            print(f"qc     ({engine}): {report.note}")
        same_drop = store.read("selected_dropped").equals(store.read("selected_ray_dropped"))
        keys = ["Metadata_Plate", "Metadata_Well"]
        a = store.read("qc").sort(keys)
        b = store.read("qc_ray").sort(keys).select(a.columns)
        pcs = ["PC1", "PC2", "PC3"]
        diff = np.abs(a.select(pcs).to_numpy() - b.select(pcs).to_numpy()).max()
        print(f"same dropped features and reasons: {same_drop}")
        print(f"same QC flags: {a['Metadata_QC_Outlier'].equals(b['Metadata_QC_Outlier'])}, "
              f"max |PC score difference| = {diff:.1e}")  # fmt: skip
        print(store.read("qc_ray").filter(pl.col("Metadata_QC_Outlier")).select(*keys).head(8))


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp) / "screen.duckdb")
