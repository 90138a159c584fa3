"""Profile a (synthetic) screen end to end: cells -> wells -> normalized -> selected -> sphered -> mAP.

Run:  python examples/profile_pipeline.py [store.duckdb]

Builds a small screen (2 plates x 24 wells x 3 sites x 20 cells x 30 features)
in a store, then chains the profiling transforms with the Polars ``cf``
namespace, saves the fitted sphering, ranks the strongest treatments and scores
phenotypic activity (copairs-compatible mAP with permutation p-values).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

import cellframe  # noqa: F401  (registers the lf.cf namespace)
from cellframe.evaluate import mean_average_precision
from cellframe.profiles import Spherizer, feature_select, strong_treatments
from cellframe.store import Store


def make_cells(seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(6, 30))  # each compound moves the features its own way
    rows = []
    for plate in ("P1", "P2"):
        for w in range(24):
            well = f"{'ABCD'[w // 6]}{w % 6 + 1:02d}"
            control = "negcon" if w < 6 else ""
            treatment = "DMSO" if control else f"cmpd{w % 6}"
            effect = 0.0 if control else (w % 6) * 0.1 * directions[w % 6]  # cmpd5 is the strongest
            for site in (1, 2, 3):
                x = rng.normal(size=(20, 30)) + effect
                for i, cell in enumerate(x):
                    rows.append(
                        {
                            "Metadata_Plate": plate,
                            "Metadata_Well": well,
                            "Metadata_Site": site,
                            "Metadata_ObjectNumber": i + 1,
                            "Metadata_Control": control,
                            "Metadata_Treatment": treatment,
                            **{f"Cells_F{j:02d}": float(v) for j, v in enumerate(cell)},
                        }
                    )
    return pl.DataFrame(rows).with_columns(
        pl.col("^Cells_.*$").cast(pl.Float32), pl.col("Metadata_Site").cast(pl.Int32)
    )


def main(path: str) -> None:
    store = Store(path)
    cells = make_cells()
    for (plate,), part in cells.group_by("Metadata_Plate", maintain_order=True):
        store.write_partition("cells", plate, part, step="example")  # one Parquet file per plate

    # Polars chains over the store table. The aggregated wells are small: collect
    # them once, so that the fitting steps below do not re-read every cell.
    wells = (
        store.scan("cells").cf.aggregate("well", path="thesis").collect()
    )  # image median -> well mean
    wells = wells.lazy().cf.normalize(
        "mad_robustize", controls="negcon"
    )  # per plate, against negcon
    selection = feature_select(
        wells, ["variance_threshold", "correlation_threshold", "drop_na_columns"]
    )
    print(f"kept {len(selection.kept)} features; dropped {selection.dropped.height}")
    selected = selection.apply(wells)

    sph = Spherizer("regularized", lam=1e-2).fit(selected)  # thesis ZCA on the negcon wells
    sph.save(store, "sphere_fit")  # apply later to new plates
    sphered = sph.transform(selected).collect()
    store.write(
        "wells_sphered", sphered, mode="replace", step="example", parameters=sph.parameters()
    )

    top = strong_treatments(sphered, k=3)
    print(top.select("Metadata_Treatment", "strength", "n_wells", "rank"))

    # Phenotypic activity: can each compound's wells be told apart from DMSO?
    # cmpd0 has no effect at all, yet it can come out "active": the sphering was
    # fitted on 12 control wells for 30 features (fewer controls than features),
    # which pulls the controls together and away from every other well. Check
    # such a null compound before trusting activity calls; use more controls
    # or a larger lambda.
    ap = sphered.lazy().cf.phenotypic_activity()
    activity = mean_average_precision(ap, sameby="Metadata_Treatment", null_size=1000)
    print(activity.select("Metadata_Treatment", "mean_average_precision", "corrected_p_value"))
    print(store.tables().select("table", "rows", "columns", "step"))
    store.close()


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(str(Path(tmp) / "example.duckdb"))
