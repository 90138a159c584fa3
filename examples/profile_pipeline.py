"""Profile a (synthetic) screen end to end: cells -> wells -> normalized -> selected -> sphered -> mAP.

Run::

    python examples/profile_pipeline.py [--store store.duckdb] [--data cells.parquet]

Builds a small screen (2 plates x 24 wells x 3 sites x 20 cells x 30 features;
12 DMSO wells, and compounds cmpd0 ... cmpd5 whose effect grows with their
number: cmpd0 has no effect at all) in a store, then chains the profiling
transforms with the Polars ``cf`` namespace, saves the fitted sphering, ranks
the strongest treatments and scores phenotypic activity (copairs-compatible mAP
with permutation p-values) before and after sphering; after sphering the test is
cross-fitted (the sphering is refitted without the DMSO wells that serve as the
null), so cmpd0 is not called active. ``--data`` takes your own
single cells instead (Parquet or CSV, with ``Metadata_Plate``, ``Metadata_Well``,
``Metadata_Site``, ``Metadata_Treatment`` and ``Metadata_Control`` = ``negcon``
on the negative-control wells).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

import cellframe  # noqa: F401  (registers the lf.cf namespace)
from cellframe.columns import TREATMENT
from cellframe.evaluate import CrossFit, mean_average_precision, phenotypic_activity
from cellframe.pipeline import save_step
from cellframe.profiles import Spherizer, feature_select, strong_treatments
from cellframe.store import Store

#: The compound with no effect: an honest null must not call it active.
NULL_COMPOUND = "cmpd0"
#: Regularization lambda of the sphering (thesis ZCA).
LAMBDA = 1e-2


def make_cells(seed: int = 0) -> pl.DataFrame:
    """A synthetic screen; each compound moves the features its own way, cmpd5 the most."""
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


def sphering(rows: pl.DataFrame | pl.LazyFrame) -> Spherizer:
    """The fitted correction: thesis ZCA (``lam`` = LAMBDA) fitted on the negcon wells of ``rows``.

    Defined once: it spheres the profiles below, and it is the ``correction``
    that an honest activity test refits without the held-out control wells
    (see the marked activity call in ``run``).
    """
    return Spherizer("regularized", lam=LAMBDA).fit(rows)  # fits on the negcon rows


def score(ap: pl.DataFrame, label: str) -> pl.DataFrame:
    """mAP and BH-corrected p-value of each compound from its wells' AP against DMSO."""
    result = mean_average_precision(
        ap.filter(~pl.col("is_control")), sameby=TREATMENT, null_size=1000, seed=0
    )
    return result.select(
        TREATMENT, "mean_average_precision", "corrected_p_value", "below_corrected_p"
    ).with_columns(pl.lit(label).alias("profiles"))


def read_cells(path: Path) -> pl.DataFrame:
    """Single cells from a Parquet or CSV file."""
    if path.suffix == ".parquet":
        return pl.read_parquet(path, glob=False)
    return pl.read_csv(path, glob=False, infer_schema_length=10000)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--store", type=Path, default=None, help="DuckDB file to write (default: a temporary one)"
    )
    parser.add_argument(
        "--data", type=Path, default=None, help="your single cells (default: a synthetic screen)"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        run(args.store or Path(tmp) / "example.duckdb", args.data)


def run(path: Path, data: Path | None) -> None:
    """The pipeline, writing to the store at ``path``."""
    store = Store(path)
    cells = make_cells() if data is None else read_cells(data)
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
    selected = selection.apply(wells).collect()

    sph = sphering(selected)
    save_step(store, sph, "sphere_fit")  # apply later to new plates (load_step)
    sphered = sph.transform(selected).collect()
    store.write(
        "wells_sphered", sphered, mode="replace", step="example", parameters=sph.parameters()
    )

    top = strong_treatments(sphered, k=3)
    print(top.select("Metadata_Treatment", "strength", "n_wells", "rank"))

    # Phenotypic activity: can each compound's wells be told apart from DMSO?
    # Check the null compound before trusting the calls.
    ap_normalized = phenotypic_activity(selected)
    # ----------------------------------------------------------------------------------
    # THE ACTIVITY CALL AFTER SPHERING. Sphering is fitted on the DMSO wells; tested
    # against those same wells (phenotypic_activity(sphered)) even NULL_COMPOUND
    # comes out "active", since the fit pulls the controls together and away from
    # every treated well. Cross-fitting refits `sphering` without one fold of the
    # DMSO wells and ranks each treated well against that held-out fold only:
    ap_sphered = phenotypic_activity(selected, cross_fit=CrossFit(correction=sphering))
    # ----------------------------------------------------------------------------------
    table = pl.concat([score(ap_normalized, "normalized"), score(ap_sphered, "sphered")])
    store.write("phenotypic_activity", table, mode="replace", step="example")
    with pl.Config(tbl_rows=20, float_precision=4):
        print(table.sort("profiles", TREATMENT))
    for row in table.filter(pl.col(TREATMENT) == NULL_COMPOUND).iter_rows(named=True):
        verdict = "ACTIVE (a false call)" if row["below_corrected_p"] else "not active"
        print(
            f"null compound {NULL_COMPOUND}, {row['profiles']} profiles: "
            f"mAP {row['mean_average_precision']:.3f}, q {row['corrected_p_value']:.3g} -> {verdict}"
        )
    print(store.tables().select("table", "rows", "columns", "step"))
    store.close()


if __name__ == "__main__":
    main()
