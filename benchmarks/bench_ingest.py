"""Ingest benchmark: cellframe vs CytoTable ``convert`` on one synthetic CellProfiler SQLite.

Generates a CellProfiler ExportToDatabase SQLite (``Per_Image``, ``Per_Cells``,
``Per_Cytoplasm``, ``Per_Nuclei``) with ``--cells`` cells and ``--features``
features, then joins its compartments into single cells with each tool, each in
its own subprocess, and prints wall time, peak memory (RSS summed over the
subprocess and all its children, sampled every 50 ms; and the same without
file-backed pages, i.e. the shared libraries' code, as "private") and the ratios. Both
outputs are checked to hold the same rows and the same values.

The issue's full size is ``--cells 2000000 --features 1000``; a modest run::

    .venv/bin/python benchmarks/bench_ingest.py --cells 100000 --features 1000

CytoTable 1.2.6 needs DuckDB 1.x with the sqlite_scanner extension, which
cannot be downloaded here; the script looks for a separate environment made with::

    python -m venv benchmarks/_work/ctvenv
    benchmarks/_work/ctvenv/bin/pip install duckdb==1.5.5 \\
        duckdb-extension-sqlite-scanner==1.5.5 duckdb-extension-httpfs==1.5.5 cytotable==1.2.6

and installs the extension files from it into DuckDB once (``INSTALL '<file>'``).
Its ``bin/`` goes first on PATH so Parsl finds its worker script.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "_work"

CELLFRAME = textwrap.dedent(
    """
    import json, sys, time
    from cellframe.io import IngestOptions, ingest
    t = time.perf_counter()
    options = IngestOptions(in_memory=False, memory_limit=sys.argv[3])
    report = ingest(sys.argv[1], sys.argv[2], progress=False, options=options,
                    layout=sys.argv[4])
    print(json.dumps({"rows": report.rows, "features": report.n_features,
                      "seconds": time.perf_counter() - t}))
    """
)

CYTOTABLE = textwrap.dedent(
    """
    import glob, json, os, sys, time
    import duckdb
    site = os.path.dirname(os.path.dirname(duckdb.__file__))
    con = duckdb.connect()
    for f in glob.glob(os.path.join(site, "duckdb_extension_*", "extensions", "*", "*.duckdb_extension")):
        con.execute(f"INSTALL '{f}'")
    con.close()
    import cytotable
    t = time.perf_counter()
    out = cytotable.convert(source_path=sys.argv[1], dest_path=sys.argv[2],
                            dest_datatype="parquet", preset="cellprofiler_sqlite")
    import pyarrow.parquet as pq
    meta = pq.read_metadata(out)
    print(json.dumps({"rows": meta.num_rows, "columns": meta.num_columns,
                      "seconds": time.perf_counter() - t}))
    """
)


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, float | str]:
    """Run ``cmd``; return its wall time, peak RSS of its process tree and last stdout line."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    parent = psutil.Process(proc.pid)
    peak = peak_private = 0
    while proc.poll() is None:
        rss = private = 0
        try:
            procs = [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for p in procs:
            try:
                info = p.memory_info()
            except psutil.NoSuchProcess:
                continue
            rss += info.rss
            private += info.rss - info.shared  # without file-backed pages (shared libraries)
        peak = max(peak, rss)
        peak_private = max(peak_private, private)
        time.sleep(0.05)
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}):\n{err[-3000:]}")
    last = out.strip().splitlines()[-1] if out.strip() else "{}"
    return {
        "wall_s": wall,
        "peak_rss_mb": peak / 2**20,
        "peak_private_mb": peak_private / 2**20,
        "result": last,
    }


def check_same(store_path: Path, parquet: Path) -> str:
    """Compare a sample of cells between the two outputs; return a one-line verdict."""
    import numpy as np

    from cellframe.store import Store

    store = Store(store_path, read_only=True)
    con = store.connection
    feats = [f"Cells_Feature_{i:04d}" for i in range(0, 5)] + [
        f"Nuclei_Feature_{i:04d}" for i in range(0, 5)
    ]
    cols = ", ".join(f'"{c}"' for c in feats)
    ours = con.execute(
        f"SELECT Metadata_ImageNumber, Metadata_ObjectNumber, {cols} FROM cells "
        "WHERE Metadata_ImageNumber <= 5 ORDER BY 1, 2"
    ).fetchnumpy()
    theirs = con.execute(
        f"SELECT Metadata_ImageNumber, Cytoplasm_Parent_Cells, {cols} "
        f"FROM read_parquet('{parquet}') WHERE Metadata_ImageNumber <= 5 ORDER BY 1, 2"
    ).fetchnumpy()
    store.close()
    for c in feats:
        np.testing.assert_allclose(ours[c], theirs[c].astype(np.float32), rtol=0, atol=0)
    return f"values agree on {len(ours[feats[0]])} cells x {len(feats)} features (float32-exact)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=100_000)
    ap.add_argument("--features", type=int, default=1_000)
    ap.add_argument("--cells-per-image", type=int, default=250)
    ap.add_argument("--memory-limit", default="512MB", help="cellframe DuckDB memory limit")
    ap.add_argument(
        "--layout",
        default="both",
        choices=("table", "parquet", "both"),
        help="cellframe output: DuckDB table, per-plate Parquet, or both (two runs)",
    )
    ap.add_argument("--workdir", type=Path, default=WORK / "ingest")
    ap.add_argument("--cytotable-venv", type=Path, default=WORK / "ctvenv")
    ap.add_argument("--skip-cytotable", action="store_true")
    ap.add_argument(
        "--skip-cellframe", action="store_true", help="run CytoTable only (memory scaling runs)"
    )
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    ap.add_argument(
        "--reuse", action="store_true", help="reuse a SQLite file of the same size in --workdir"
    )
    args = ap.parse_args(argv)

    from cellframe.io._synthetic import write_synthetic_sqlite

    work = args.workdir
    sqlite = work / f"synthetic-{args.cells}x{args.features}-{args.cells_per_image}.sqlite"
    if not (args.reuse and sqlite.exists()):
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        t = time.perf_counter()
        write_synthetic_sqlite(
            sqlite,
            n_cells=args.cells,
            n_features=args.features,
            cells_per_image=args.cells_per_image,
        )
        print(f"synthetic SQLite made in {time.perf_counter() - t:.0f} s")
    for old in work.glob("cellframe-*"):
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    size_mb = sqlite.stat().st_size / 2**20
    print(
        f"synthetic SQLite: {args.cells:,} cells x {args.features:,} features "
        f"({size_mb:,.0f} MB); load average {os.getloadavg()[0]:.1f}"
    )

    results: dict[str, dict] = {}
    layouts = ("table", "parquet") if args.layout == "both" else (args.layout,)
    layouts = () if args.skip_cellframe else layouts
    for layout in layouts:
        store = work / f"cellframe-{layout}.duckdb"
        name = f"cellframe ({layout})"
        results[name] = run_measured(
            [sys.executable, "-c", CELLFRAME, str(sqlite), str(store), args.memory_limit, layout]
        )
        print(f"{name}:", results[name])

    parquet = work / "cytotable.parquet"
    if parquet.exists():
        parquet.unlink()
    if not args.skip_cytotable:
        py = args.cytotable_venv / "bin" / "python"
        if not py.exists():
            print(f"CytoTable environment not found at {args.cytotable_venv}; see the docstring")
        else:
            env = dict(os.environ)
            env["PATH"] = f"{py.parent}{os.pathsep}{env.get('PATH', '')}"
            results["cytotable"] = run_measured(
                [str(py), "-c", CYTOTABLE, str(sqlite), str(parquet)], env
            )
            print("cytotable:", results["cytotable"])

    print()
    print(f"{'tool':<20}{'wall (s)':>10}{'peak RSS (MB)':>16}{'private (MB)':>14}   output")
    for name, r in results.items():
        print(
            f"{name:<20}{r['wall_s']:>10.1f}{r['peak_rss_mb']:>16.0f}"
            f"{r['peak_private_mb']:>14.0f}   {r['result']}"
        )
    if "cytotable" in results:
        ct = results["cytotable"]
        rows_ct = json.loads(ct["result"])["rows"]
        print()
        for layout in layouts:
            cf = results[f"cellframe ({layout})"]
            rows_cf = json.loads(cf["result"])["rows"]
            print(
                f"ratios cellframe ({layout}) / CytoTable: time {cf['wall_s'] / ct['wall_s']:.2f}, "
                f"peak RSS {cf['peak_rss_mb'] / ct['peak_rss_mb']:.2f}, private memory "
                f"{cf['peak_private_mb'] / ct['peak_private_mb']:.2f} "
                f"(goal: < 1 and < 0.5); rows {rows_cf:,} vs {rows_ct:,}"
            )
            print("  " + check_same(work / f"cellframe-{layout}.duckdb", parquet))
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    if not (args.keep or args.reuse):
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
