"""Local vs Ray engine: aggregate, normalize, select and QC a synthetic multi-plate screen.

Each engine runs in its own subprocess on the same store (single cells written
once as per-plate Parquet partitions), so the driver's peak RSS is measured per
engine. Prints wall time, driver peak RSS, per-plate time and the ratios, and
checks that both engines wrote the same numbers. Feature selection (all six
operations) and QC (PCA outlier wells) run on the normalized wells: on Ray as
map-reduce over exact per-plate statistics.

    python benchmarks/bench_engine.py                       # 16 plates x 384 wells x 60 cells x 300 features
    python benchmarks/bench_engine.py --plates 32 --cells-per-well 100
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

HERE = Path(__file__).resolve().parent
SELECT_OPERATIONS = (
    "variance_threshold",
    "frequency_threshold",
    "correlation_threshold",
    "drop_na_columns",
    "blocklist",
    "drop_outliers",
)


def make_screen(path: Path, plates: int, wells: int, cells_per_well: int, features: int) -> None:
    from cellframe.store import Store

    rng = np.random.default_rng(0)
    with Store(path) as store:
        for p in range(plates):
            n = wells * cells_per_well
            x = rng.normal(loc=p * 0.1, size=(n, features)).astype(np.float32)
            # Something for feature selection to find: a constant and a near copy.
            x[:, 0] = 1.0
            x[:, 1] = 2 * x[:, 2] + rng.normal(scale=0.01, size=n).astype(np.float32)
            well_idx = np.repeat(np.arange(wells), cells_per_well)
            frame = pl.DataFrame({f"f{j:04d}": x[:, j] for j in range(features)}).with_columns(
                pl.Series(
                    "Metadata_Well", [f"{chr(65 + w // 24)}{w % 24 + 1:02d}" for w in well_idx]
                ),
                pl.Series("Metadata_Site", (np.arange(n) % 4 + 1).astype(np.int32)),
                pl.Series(
                    "Metadata_Control",
                    np.where(well_idx % 8 == 0, "negcon", None).tolist(),
                    dtype=pl.String,
                ),
            )
            store.write_partition("cells", f"Plate{p:03d}", frame, step="synthetic")


def worker(path: str, engine: str) -> None:
    import warnings

    from cellframe.pipeline import Aggregation, QualityControl, run_step
    from cellframe.profiles import FeatureSelector, Normalizer
    from cellframe.store import Store

    t0 = time.perf_counter()
    with Store(path) as store:
        suffix = "" if engine == "local" else "_ray"
        kwargs = {"engine": engine}
        if engine == "ray":
            from cellframe.engine.run import connect_ray

            connect_ray(None)  # start-up counted separately
        t_ready = time.perf_counter()
        run_step(store, Aggregation(), "cells", f"wells{suffix}", progress=False, **kwargs)
        t_agg = time.perf_counter()
        run_step(
            store,
            Normalizer("mad_robustize"),
            f"wells{suffix}",
            f"norm{suffix}",
            progress=False,
            **kwargs,
        )
        t_norm = time.perf_counter()
        run_step(
            store,
            FeatureSelector(list(SELECT_OPERATIONS)),
            f"norm{suffix}",
            f"sel{suffix}",
            progress=False,
            **kwargs,
        )
        t_sel = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "n of m well(s) flagged"
            run_step(
                store, QualityControl(), f"sel{suffix}", f"qc{suffix}", progress=False, **kwargs
            )
        t_qc = time.perf_counter()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "startup_s": t_ready - t0,
                "aggregate_s": t_agg - t_ready,
                "normalize_s": t_norm - t_agg,
                "select_s": t_sel - t_norm,
                "qc_s": t_qc - t_sel,
                "driver_peak_mb": peak_kb / 1024,
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--plates", type=int, default=16)
    ap.add_argument("--wells", type=int, default=384)
    ap.add_argument("--cells-per-well", type=int, default=60)
    ap.add_argument("--features", type=int, default=300)
    ap.add_argument("--workdir", default=str(HERE / "_work" / "engine"))
    ap.add_argument("--worker", nargs=2, metavar=("PATH", "ENGINE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    db = work / "screen.duckdb"
    t0 = time.perf_counter()
    make_screen(db, args.plates, args.wells, args.cells_per_well, args.features)
    n_cells = args.plates * args.wells * args.cells_per_well
    print(
        f"screen: {args.plates} plates, {n_cells:,} cells x {args.features} features "
        f"({n_cells * args.features * 4 / 1e9:.2f} GB float32), made in {time.perf_counter() - t0:.0f} s"
    )
    results = {}
    for engine in ("local", "ray"):
        out = subprocess.run(
            [sys.executable, __file__, "--worker", str(db), engine],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        results[engine] = json.loads(out.stdout.strip().splitlines()[-1])
    from cellframe.store import Store

    with Store(db, read_only=True) as store:
        a = store.read("norm").sort("Metadata_Plate", "Metadata_Well")
        b = store.read("norm_ray").sort("Metadata_Plate", "Metadata_Well").select(a.columns)
        feats = [c for c in a.columns if c.startswith("f")]
        diff = float(np.nanmax(np.abs(a.select(feats).to_numpy() - b.select(feats).to_numpy())))
        same_selection = store.read("sel_dropped").equals(store.read("sel_ray_dropped"))
        n_dropped = store.read("sel_dropped").height
        qa = store.read("qc").sort("Metadata_Plate", "Metadata_Well")
        qb = store.read("qc_ray").sort("Metadata_Plate", "Metadata_Well").select(qa.columns)
        same_flags = qa["Metadata_QC_Outlier"].equals(qb["Metadata_QC_Outlier"])
        pcs = [c for c in qa.columns if c.startswith("PC")]
        pc_diff = float(np.abs(qa.select(pcs).to_numpy() - qb.select(pcs).to_numpy()).max())
    print(
        f"\n{'engine':<8}{'start-up s':>12}{'aggregate s':>13}{'normalize s':>13}"
        f"{'select s':>10}{'qc s':>7}{'per plate s':>13}{'driver MB':>11}"
    )
    for engine, r in results.items():
        per_plate = (r["aggregate_s"] + r["normalize_s"] + r["select_s"] + r["qc_s"]) / args.plates
        print(
            f"{engine:<8}{r['startup_s']:>12.1f}{r['aggregate_s']:>13.1f}{r['normalize_s']:>13.1f}"
            f"{r['select_s']:>10.1f}{r['qc_s']:>7.1f}{per_plate:>13.2f}{r['driver_peak_mb']:>11.0f}"
        )
    loc, ray = results["local"], results["ray"]

    def total(r: dict, steps: tuple[str, ...]) -> float:
        return sum(r[f"{s}_s"] for s in steps)

    for steps in (("aggregate", "normalize"), ("select", "qc")):
        speed = total(loc, steps) / total(ray, steps)
        print(f"ray / local, {' + '.join(steps)}: {speed:.2f}x speed (excluding Ray start-up)")
    print(f"driver memory ray / local: {ray['driver_peak_mb'] / loc['driver_peak_mb']:.2f}x")
    print(f"max |local - ray| over normalized features: {diff:.2e}")
    print(f"feature selection: {n_dropped} dropped, identical on both engines: {same_selection}")
    print(f"QC: identical flags: {same_flags}, max |PC score difference|: {pc_diff:.2e}")


if __name__ == "__main__":
    main()
