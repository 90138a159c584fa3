"""Profiling pipeline benchmark: cellframe vs pycytominer 1.7 on the same synthetic screen.

Each (tool, task) runs in its own subprocess, so the peak RSS printed is that
tool's alone (``ru_maxrss`` of the worker, imports included; the RSS after
imports is printed too). Wall time is the task only (data read included,
imports excluded); CPU time is that of all the worker's threads over the same
span (a steadier measure than wall time on a shared machine). The load
average at start and end is printed with the ratios.

Tasks
-----
aggregate      single cells -> well medians. pycytominer: read the per-plate
               Parquet files into pandas, ``aggregate(operation="median")``.
               cellframe: ``aggregate_table`` over the store's per-plate
               partitions (float32, a few wells at a time). polars: one plain
               ``scan_parquet().group_by().median()`` for reference.
aggregate_thesis  the thesis path: cells -> image (site) medians -> well
               means. pycytominer: two ``aggregate`` calls; cellframe:
               ``aggregate_table(Aggregation(path="thesis"))``; polars: two group_bys.
               (Not in the default task list.)
normalize      well profiles, mad_robustize per plate against negcon
               (pycytominer has no grouping: a loop over plates).
feature_select all six operations in pycytominer's order.
spherize       fit of ZCA-cor on ``--sphere-rows`` negative-control profiles,
               pycytominer's ``Spherize`` vs cellframe's compatibility mode
               (and, cellframe only, the thesis's regularized ZCA).
export         the single-cell table (per-plate Parquet) to ``.h5ad``: cellframe's
               ``cellframe export cells --h5ad`` (X written block by block) vs
               the whole-table path (``store.read`` -> ``to_anndata`` ->
               anndata's ``write_h5ad``, gzip; cellframe's export before it
               streamed). The two files are read back and compared (X, obs,
               var). (Not in the default task list.)
export_native  the same with the rows in a native DuckDB table (``cells_native``,
               made once before the runs), read by DuckDB record batches.

Usage
-----
    python benchmarks/bench_profiles.py --cells 200000 --features 500        # modest, < 8 GB
    python benchmarks/bench_profiles.py --cells 1700000 --features 500 \\
        --tasks aggregate --repeat 3                                          # the issue's size, medians
    python benchmarks/bench_profiles.py --only cellframe --tasks aggregate \\
        --cells 5000000 --features 1000 --plates 14                            # 20 GB table, < 4 GB RSS
    nice -n 19 python benchmarks/bench_profiles.py --tasks export,export_native  # 200k x 500 to .h5ad
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PLATE, WELL, SITE, CONTROL = "Metadata_Plate", "Metadata_Well", "Metadata_Site", "Metadata_Control"
N_WELLS = 384
N_NEGCON = 64  # negative-control wells per plate


def _wells() -> list[str]:
    return [f"{'ABCDEFGHIJKLMNOP'[i // 24]}{i % 24 + 1:02d}" for i in range(N_WELLS)]


def _features(n: int) -> list[str]:
    comps = ("Cells", "Nuclei", "Cytoplasm")
    return [f"{comps[i % 3]}_Feature_{i}" for i in range(n)]


# ------------------------------------------------------------------ data
def make_data(
    root: Path,
    n_cells: int,
    n_features: int,
    n_plates: int,
    n_well_rows: int,
    n_sphere: int,
    seed: int,
) -> dict:
    """Write the synthetic cells (store partitions), well profiles and controls."""
    import numpy as np
    import polars as pl

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from cellframe.store import Store

    rng = np.random.default_rng(seed)
    feats = _features(n_features)
    wells = _wells()
    per_plate = n_cells // n_plates
    store = Store(root / "screen.duckdb")
    t0 = time.perf_counter()
    for p in range(n_plates):
        plate = f"P{p + 1:03d}"
        counts = rng.multinomial(per_plate, np.ones(N_WELLS) / N_WELLS)

        def batches(plate: str = plate, counts=counts):
            # About 32 wells per batch keeps generation memory small.
            for start in range(0, N_WELLS, 32):
                ws = wells[start : start + 32]
                cs = counts[start : start + 32]
                n = int(cs.sum())
                x = rng.standard_normal((n, n_features), dtype=np.float32)
                x += rng.standard_normal((len(ws), n_features), dtype=np.float32).repeat(cs, axis=0)
                frame = pl.DataFrame(x, schema=feats)
                # Cells come image by image, as CellProfiler exports them: each
                # well's cells in nine blocks, one per site.
                within = np.arange(n) - np.repeat(np.cumsum(cs) - cs, cs)
                site = within * 9 // np.maximum(np.repeat(cs, cs), 1) + 1
                meta = pl.DataFrame(
                    {WELL: np.repeat(ws, cs), SITE: pl.Series(site, dtype=pl.Int32)}
                )
                yield meta.hstack(frame)

        store.write_partition("cells", plate, batches(), step="bench")
    cells_s = time.perf_counter() - t0
    store.close()
    # Well-level profiles for normalize / feature_select / spherize.
    n_plates_w = max(1, n_well_rows // N_WELLS)
    x = rng.standard_normal((n_plates_w * N_WELLS, n_features)).astype(np.float32)
    mix = rng.standard_normal((n_features, n_features)).astype(np.float32) / np.sqrt(n_features)
    x = x @ (np.eye(n_features, dtype=np.float32) + 0.5 * mix)  # correlated features
    x[:, :3] = np.round(x[:, :3])  # a few low-frequency features
    wells_df = (
        pl.DataFrame(x, schema=feats)
        .insert_column(
            0, pl.Series(PLATE, np.repeat([f"P{p + 1:03d}" for p in range(n_plates_w)], N_WELLS))
        )
        .insert_column(1, pl.Series(WELL, wells * n_plates_w))
        .insert_column(
            2,
            pl.Series(CONTROL, (["negcon"] * N_NEGCON + [""] * (N_WELLS - N_NEGCON)) * n_plates_w),
        )
    )
    wells_df.write_parquet(root / "wells.parquet")
    # Negative-control profiles for the sphering fit (n_sphere x features).
    y = rng.standard_normal((n_sphere, n_features)).astype(np.float32)
    y = y @ (np.eye(n_features, dtype=np.float32) + 0.5 * mix)
    pl.DataFrame(y, schema=feats).with_columns(pl.lit("negcon").alias(CONTROL)).write_parquet(
        root / "controls.parquet"
    )
    return {
        "features": feats,
        "cells_seconds": cells_s,
        "well_rows": wells_df.height,
        "sphere_rows": n_sphere,
    }


# ------------------------------------------------------------------ workers
def _rss_mb() -> float:
    """Peak resident memory of this process in MB.

    ``VmHWM`` belongs to this process image; ``ru_maxrss`` can carry the
    parent's high-water mark over fork + exec, so it is only the fallback.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker(tool: str, task: str, root: Path) -> dict:
    """Run one task with one tool in this process; returns timings."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    meta = json.loads((root / "meta.json").read_text())
    feats = meta["features"]
    if tool == "pycytominer":
        import numpy as np
        import pandas as pd
        import pycytominer  # noqa: F401
        from pycytominer.operations.transform import Spherize
    else:
        import numpy as np  # noqa: F401
        import polars as pl

        import cellframe.profiles as cfp
        from cellframe.pipeline import Aggregation, aggregate_table
        from cellframe.store import Store
    base = _rss_mb()
    t0 = time.perf_counter()
    c0 = time.process_time()  # CPU seconds of every thread of this worker
    note = ""
    if task in ("aggregate", "aggregate_thesis"):
        thesis = task == "aggregate_thesis"
        # Every file of every plate: a big plate is written as several files.
        parts = sorted((root / "screen.parts" / "cells").glob(f"{PLATE}=*/*.parquet"))
        if tool == "pycytominer":
            from pycytominer import aggregate

            frames = [
                pd.read_parquet(p).assign(**{PLATE: p.parent.name.split("=", 1)[1]}) for p in parts
            ]
            df = pd.concat(frames, ignore_index=True)
            del frames
            note = f"cells in {len(df):,}"
            if thesis:
                images = aggregate(df, strata=[PLATE, WELL, SITE], features=feats)
                del df
                out = aggregate(images, strata=[PLATE, WELL], features=feats, operation="mean")
            else:
                out = aggregate(df, strata=[PLATE, WELL], features=feats, operation="median")
            rows = len(out)
        elif tool == "polars":
            lf = pl.scan_parquet([str(p) for p in parts], hive_partitioning=True)
            if thesis:
                lf = lf.group_by([PLATE, WELL, SITE]).agg(pl.col(feats).median())
                out = lf.group_by([PLATE, WELL]).agg(pl.col(feats).mean()).collect()
            else:
                out = lf.group_by([PLATE, WELL]).agg(pl.col(feats).median()).collect()
            rows = out.height
        else:
            with Store(root / "screen.duckdb") as store:
                rows = aggregate_table(
                    store,
                    "cells",
                    "wells",
                    Aggregation("well", path="thesis" if thesis else "direct"),
                    progress=False,
                )
    elif task == "normalize":
        if tool == "pycytominer":
            from pycytominer import normalize

            df = pd.read_parquet(root / "wells.parquet")
            meta_cols = [PLATE, WELL, CONTROL]
            out = pd.concat(
                [
                    normalize(
                        part,
                        features=feats,
                        meta_features=meta_cols,
                        method="mad_robustize",
                        samples=f"{CONTROL} == 'negcon'",
                    )
                    for _, part in df.groupby(PLATE, sort=True)
                ]
            )
            rows = len(out)
        else:
            lf = pl.scan_parquet(root / "wells.parquet")
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rows = cfp.normalize(lf, "mad_robustize").collect().height
    elif task == "feature_select":
        ops = [
            "variance_threshold",
            "frequency_threshold",
            "correlation_threshold",
            "drop_na_columns",
            "blocklist",
            "drop_outliers",
        ]
        if tool == "pycytominer":
            from pycytominer import feature_select

            df = pd.read_parquet(root / "wells.parquet")
            out = feature_select(df, features=feats, operation=ops)
            rows = len(out)
            note = f"kept {len([c for c in out.columns if c in set(feats)])}"
        else:
            lf = pl.scan_parquet(root / "wells.parquet")
            sel = cfp.feature_select(lf, ops)
            rows = sel.apply(lf).collect().height
            note = f"kept {len(sel.kept)}"
    elif task in ("spherize", "spherize_regularized"):
        if tool == "pycytominer":
            df = pd.read_parquet(root / "controls.parquet")
            ctrl = df.loc[df[CONTROL] == "negcon", feats]
            t0 = time.perf_counter()  # fit only
            c0 = time.process_time()
            Spherize(method="ZCA-cor", epsilon=1e-6).fit(ctrl)
            rows = len(ctrl)
        else:
            df = pl.read_parquet(root / "controls.parquet")
            t0 = time.perf_counter()
            c0 = time.process_time()
            method = "ZCA-cor" if task == "spherize" else "regularized"
            sph = cfp.Spherizer(method).fit(df)
            rows = sph.n_controls_
    elif task in ("export", "export_native"):
        table = "cells" if task == "export" else "cells_native"
        out = root / f"{task}_{tool}.h5ad"
        out.unlink(missing_ok=True)
        if tool == "anndata":
            from cellframe.io.anndata import to_anndata

            with Store(root / "screen.duckdb", read_only=True) as store:
                frame = store.read(table)
            rows = frame.height
            to_anndata(frame).write_h5ad(out, compression="gzip")
            del frame
        else:
            from cellframe.cli import main as cli

            db = str(root / "screen.duckdb")
            if cli(["export", table, "--h5ad", str(out), "--store", db, "--quiet"]) != 0:
                raise SystemExit("cellframe export failed")
        import h5py

        with h5py.File(out, "r") as f:
            rows = f["X"].shape[0]
        note = f"{out.stat().st_size / 2**20:,.0f} MB file"
    else:
        raise SystemExit(f"unknown task {task}")
    wall = time.perf_counter() - t0
    return {
        "tool": tool,
        "task": task,
        "wall_s": wall,
        "cpu_s": time.process_time() - c0,
        "peak_rss_mb": _rss_mb(),
        "rss_after_imports_mb": base,
        "rows": rows,
        "note": note,
    }


def _native_copy(root: Path) -> None:
    """``cells_native``: the cells as a native DuckDB table (for ``export_native``)."""
    import duckdb

    con = duckdb.connect(str(root / "screen.duckdb"))
    try:
        found = con.sql("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'cells_native'")
        if not found.fetchall()[0][0]:
            print("copying cells into the native table cells_native ...", flush=True)
            con.execute("CREATE TABLE cells_native AS SELECT * FROM cells")
    finally:
        con.close()


def _same_h5ad(root: Path, task: str) -> str:
    """Whether the two tools' files hold the same X, obs and var (read back by anndata)."""
    import anndata
    import numpy as np
    import pandas as pd

    a = anndata.read_h5ad(root / f"{task}_cellframe.h5ad")
    b = anndata.read_h5ad(root / f"{task}_anndata.h5ad")
    same_x = a.X.dtype == b.X.dtype and np.array_equal(a.X, b.X, equal_nan=True)
    shape = f"{a.n_obs:,} x {a.n_vars}"
    try:
        pd.testing.assert_frame_equal(a.obs, b.obs, check_exact=True)
        pd.testing.assert_frame_equal(a.var, b.var, check_exact=True)
        same_frames = True
    except AssertionError:
        same_frames = False
    return f"X equal {same_x}, obs and var equal {same_frames} ({shape})"


def _available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024.0
    return float("inf")


def _child_peak_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def run_worker(tool: str, task: str, root: Path, min_free_mb: float = 1024.0) -> dict:
    """Run one (tool, task) in a subprocess; stop it before the machine runs out of memory.

    The machine may be shared: when its available memory falls under
    ``min_free_mb`` the worker is killed (rather than leaving the kernel to
    pick a victim) and the error says how much memory it had reached.
    """
    import tempfile as _tempfile

    cmd = [sys.executable, __file__, "--worker", tool, "--task", task, "--data", str(root)]
    env = {**os.environ, "POLARS_MAX_THREADS": os.environ.get("POLARS_MAX_THREADS", "")}
    env = {k: v for k, v in env.items() if v != ""}
    with _tempfile.TemporaryFile("w+") as out, _tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env=env)
        peak, stopped, t0 = 0.0, False, time.perf_counter()
        while proc.poll() is None:
            peak = max(peak, _child_peak_mb(proc.pid))
            if _available_mb() < min_free_mb:
                proc.kill()
                stopped = True
                proc.wait()
                break
            time.sleep(0.1)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if stopped or proc.returncode != 0:
        why = (
            f"stopped after {time.perf_counter() - t0:.0f} s at {peak:,.0f} MB RSS: the machine "
            f"had under {min_free_mb:.0f} MB available"
            if stopped
            else f"exit code {proc.returncode} after {time.perf_counter() - t0:.0f} s, "
            f"peak RSS seen {peak:,.0f} MB"
        )
        return {
            "tool": tool,
            "task": task,
            "error": [why, *(stderr.strip().splitlines()[-1:])],
        }
    return json.loads(stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--cells", type=int, default=200_000)
    ap.add_argument("--features", type=int, default=500)
    ap.add_argument("--plates", type=int, default=4)
    ap.add_argument("--well-rows", type=int, default=384 * 8, help="rows of the well-level table")
    ap.add_argument(
        "--sphere-rows", type=int, default=5000, help="control profiles for the sphering fit"
    )
    ap.add_argument(
        "--tasks", default="aggregate,normalize,feature_select,spherize,spherize_regularized"
    )
    ap.add_argument(
        "--only", choices=("cellframe", "pycytominer", "polars", "anndata"), help="run one tool"
    )
    ap.add_argument(
        "--data", type=Path, help="data folder (made when absent; default: a temp folder)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs of each tool (interleaved); the median wall time is reported",
    )
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--task", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        print(json.dumps(worker(args.worker, args.task, args.data)))
        return

    tmp = None
    root = args.data
    if root is None:
        tmp = tempfile.TemporaryDirectory(prefix="cf-bench-")
        root = Path(tmp.name)
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "meta.json").exists():
        print(
            f"generating {args.cells:,} cells x {args.features} features on {args.plates} plates "
            f"and {args.well_rows:,} well profiles in {root} ...",
            flush=True,
        )
        meta = make_data(
            root,
            args.cells,
            args.features,
            args.plates,
            args.well_rows,
            args.sphere_rows,
            args.seed,
        )
        (root / "meta.json").write_text(json.dumps(meta))
    if "export_native" in args.tasks.split(","):
        _native_copy(root)
    tools = {
        "aggregate": ["cellframe", "pycytominer", "polars"],
        "aggregate_thesis": ["cellframe", "pycytominer", "polars"],
        "normalize": ["cellframe", "pycytominer"],
        "feature_select": ["cellframe", "pycytominer"],
        "spherize": ["cellframe", "pycytominer"],
        "spherize_regularized": ["cellframe"],
        "export": ["cellframe", "anndata"],
        "export_native": ["cellframe", "anndata"],
    }
    results = []
    load_start = os.getloadavg()
    for task in args.tasks.split(","):
        runs: dict[str, list[dict]] = {}
        # Repetitions go round the tools, so a slow spell of a shared machine
        # falls on every tool alike; each tool's median run is kept.
        for rep in range(args.repeat):
            for tool in tools[task]:
                if args.only and tool != args.only:
                    continue
                if runs.get(tool) and "error" in runs[tool][-1]:
                    continue  # a tool that failed once is not run again
                r = run_worker(tool, task, root)
                runs.setdefault(tool, []).append(r)
                tag = f"{task:<22} {tool:<12}" + (f" run {rep + 1}" if args.repeat > 1 else "")
                if "error" in r:
                    print(f"{tag} FAILED: {r['error']}", flush=True)
                else:
                    print(
                        f"{tag} wall {r['wall_s']:8.2f} s   CPU {r['cpu_s']:8.2f} s"
                        f"   peak RSS {r['peak_rss_mb']:8.0f} MB"
                        f"   (after imports {r['rss_after_imports_mb']:.0f} MB)"
                        f"  rows out {r['rows']:,}  {r['note']}",
                        flush=True,
                    )
        for tool, tool_runs in runs.items():
            ok = [r for r in tool_runs if "error" not in r]
            if not ok:
                results.append(tool_runs[-1])
                continue
            median = sorted(ok, key=lambda r: r["wall_s"])[(len(ok) - 1) // 2]
            summary = {**median, "peak_rss_mb": max(r["peak_rss_mb"] for r in ok)}
            results.append(summary)
            if len(ok) > 1:
                walls = ", ".join(f"{r['wall_s']:.2f}" for r in ok)
                print(
                    f"{task:<22} {tool:<12} median of {len(ok)}: wall {median['wall_s']:.2f} s"
                    f" (runs {walls}), CPU {median['cpu_s']:.2f} s,"
                    f" peak RSS {summary['peak_rss_mb']:.0f} MB",
                    flush=True,
                )
        if task.startswith("export") and len(runs) == 2:
            print(f"{task:<22} files: {_same_h5ad(root, task)}", flush=True)
    print(
        "\nratios (pycytominer or, for export, anndata / cellframe; higher is better for cellframe)"
        + (f", medians of {args.repeat} runs" if args.repeat > 1 else "")
    )
    by = {(r["task"], r["tool"]): r for r in results if "error" not in r}
    for task in args.tasks.split(","):
        ref_task = "spherize" if task == "spherize_regularized" else task
        ref_tool = "anndata" if task.startswith("export") else "pycytominer"
        a, b = by.get((task, "cellframe")), by.get((ref_task, ref_tool))
        if a and b:
            print(
                f"{task:<22} time x{b['wall_s'] / a['wall_s']:7.1f}   CPU x{b['cpu_s'] / a['cpu_s']:6.1f}"
                f"   peak RSS x{b['peak_rss_mb'] / a['peak_rss_mb']:5.2f}"
            )
    # The machine may be shared: the load average says how much of it the run had.
    print(
        "load average (1, 5, 15 min) at start {}, at end {}".format(
            " ".join(f"{x:.2f}" for x in load_start),
            " ".join(f"{x:.2f}" for x in os.getloadavg()),
        )
    )
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
