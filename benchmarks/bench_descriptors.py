"""RDKit 2D descriptors: cellframe's ``rdkit_descriptors`` against the plain RDKit loop.

Issue #19 asks for inference of 100,000 compounds in under 2 minutes on 2 cores;
the 217 RDKit descriptors of the default models dominate it. On ``--n`` Tox21-derived
molecules (default 5,000: Tox21's SMILES, then, past its ~7,800, the same molecules
with carbon chains prepended, ``bench_activity.synthetic_smiles``), each in its own
subprocess so peak RSS is per tool, side by side in one run:

* ``rdkit``: the loop a user writes, ``Descriptors.CalcMolDescriptors(mol)`` per
  molecule (one BLAS thread, as cellframe uses: with several, RDKit's own ``Ipc`` of
  large molecules moves by ~1e-6 relative between runs);
* ``cellframe w=1``: ``rdkit_descriptors(mols, workers=1)``;
* ``cellframe w=N``: ``rdkit_descriptors(mols)`` over one worker process per core;
* ``cache cold`` / ``cache warm``: ``rdkit_descriptors(mols, cache=file)`` on an
  empty cache file (computed and written), then again (read);
* ``--baseline-tree PATH`` adds ``baseline w=1``: another checkout's cellframe
  (e.g. the main branch) with ``workers=1``, for a before/after in the same run.

Molecules are the canonical SMILES of the set (parsed before the clock starts), so
every tool, the cache included, computes the same molecules. Printed: ms of CPU per
molecule (the process and its worker processes), wall seconds, peak RSS, the ratio
to the RDKit loop, and the largest difference from RDKit's values (``0
(identical)``: equal bit for bit, NaN in the same places). Then the estimate for
100,000 compounds on 2 cores: descriptor CPU plus ``--other-cpu-s`` (130 s: parsing,
fingerprints, nearest-neighbour domain and model forward, measured by
``bench_activity.py --tasks inference``), divided over 2 cores, against 120 s.

Usage::

    nice -n 19 python benchmarks/bench_descriptors.py [--n 5000] [--workers 2]
    nice -n 19 python benchmarks/bench_descriptors.py --n 2000 --baseline-tree ../main
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "assay-matrices-moleculenet" / "tox21.csv"
#: CPU seconds of the non-descriptor stages of a 100,000-compound inference.
OTHER_CPU_S = 130.0
GOAL_S = 120.0


def tox21_smiles() -> list[str]:
    """Tox21's SMILES: the shared copy, else the one bundled with cellframe."""
    import polars as pl

    if DATA.is_file():
        return pl.read_csv(DATA, glob=False)["smiles"].to_list()
    from cellframe.demo import demo_data_dir

    return pl.read_csv(demo_data_dir() / "moleculenet" / "tox21.csv.gz")["smiles"].to_list()


def benchmark_smiles(n: int) -> list[str]:
    """``n`` distinct canonical SMILES derived from Tox21 (see the module docstring)."""
    from rdkit import Chem, RDLogger

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_activity import synthetic_smiles

    RDLogger.DisableLog("rdApp.*")
    return [Chem.MolToSmiles(Chem.MolFromSmiles(s)) for s in synthetic_smiles(tox21_smiles(), n)]


def _child(tool: str, smiles_file: str, out: str, workers: int, cache: str) -> None:
    """One measurement, in this (sub)process; writes the values and its numbers."""
    import resource

    import numpy as np
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    smiles = Path(smiles_file).read_text().split("\n")
    mols = [Chem.MolFromSmiles(s) for s in smiles]
    # Imports before the clock (RDKit's Descriptors parses its SMARTS tables once).
    import pyarrow.parquet  # noqa: F401  (the cache's reader)
    from rdkit.Chem import Descriptors
    from threadpoolctl import threadpool_limits

    import cellframe.activity.chem  # noqa: F401  (Polars, imported on first use)
    from cellframe.activity.descriptors import rdkit_descriptors

    start_cpu = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    if tool == "rdkit":
        names = [n for n, _ in Descriptors.descList]
        values = np.full((len(mols), len(names)), np.nan)
        with threadpool_limits(limits=1, user_api="blas"):
            for i, mol in enumerate(mols):
                row = Descriptors.CalcMolDescriptors(mol)
                values[i] = [np.nan if row[k] is None else row[k] for k in names]
        values[~np.isfinite(values)] = np.nan
    else:
        cached = {"cache": cache} if cache else {}  # a baseline tree may predate it
        values = rdkit_descriptors(mols, workers=workers, **cached)
    wall = time.perf_counter() - t0
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # worker processes
    cpu = me.ru_utime + me.ru_stime - start_cpu.ru_utime - start_cpu.ru_stime
    cpu += kids.ru_utime + kids.ru_stime
    np.save(out + ".npy", values)
    numbers = {"wall": wall, "cpu": cpu, "peak_mb": max(me.ru_maxrss, kids.ru_maxrss) / 1024}
    Path(out + ".json").write_text(json.dumps(numbers))


def _run(tool: str, smiles_file: str, out: str, workers: int, cache: str, tree: Path) -> dict:
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(tree), os.environ.get("PYTHONPATH", "")])
    )
    cmd = [sys.executable, __file__, "--child", tool, smiles_file, out, str(workers), cache]
    subprocess.run(cmd, check=True, env=env)
    return json.loads(Path(out + ".json").read_text())


def _difference(values, reference) -> str:
    """``0 (identical)``, or the largest difference and how many values differ."""
    import numpy as np

    differ = ~((values == reference) | (np.isnan(values) & np.isnan(reference)))
    if not differ.any():
        return "0 (identical)"
    both = ~np.isnan(values) & ~np.isnan(reference)
    diff = float(np.max(np.abs(values[both] - reference[both]), initial=0.0))
    return f"{diff:.3g} ({int(differ.sum())} values differ, NaN included)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="molecules (default 5,000)")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parser.add_argument("--workers", type=int, default=cores or 1, help="processes of w=N")
    parser.add_argument("--baseline-tree", type=Path, help="another cellframe checkout")
    parser.add_argument("--other-cpu-s", type=float, default=OTHER_CPU_S)
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        tool, smiles_file, out, workers, cache = args.child
        _child(tool, smiles_file, out, int(workers), cache)
        return

    import numpy as np

    smiles = benchmark_smiles(args.n)
    n = len(smiles)
    runs = [
        ("rdkit", "rdkit", 1, "", ROOT),
        ("cellframe w=1", "cellframe", 1, "", ROOT),
        (f"cellframe w={args.workers}", "cellframe", args.workers, "", ROOT),
    ]
    if args.baseline_tree:
        runs.insert(1, ("baseline w=1", "cellframe", 1, "", args.baseline_tree.resolve()))
    with tempfile.TemporaryDirectory() as tmp:
        smiles_file = str(Path(tmp) / "smiles.txt")
        Path(smiles_file).write_text("\n".join(smiles))
        cache = str(Path(tmp) / "descriptors.parquet")
        runs += [
            ("cache cold", "cellframe", args.workers, cache, ROOT),
            ("cache warm", "cellframe", args.workers, cache, ROOT),
        ]
        results = {}
        for label, tool, workers, cache_file, tree in runs:
            out = str(Path(tmp) / label.replace(" ", "_").replace("=", ""))
            numbers = _run(tool, smiles_file, out, workers, cache_file, tree)
            numbers["values"] = np.load(out + ".npy")
            results[label] = numbers
            print(f"  {label}: {numbers['wall']:.1f} s wall", file=sys.stderr, flush=True)
    ref = results["rdkit"]
    print(f"RDKit 2D descriptors ({ref['values'].shape[1]}) of {n} Tox21-derived molecules")
    print(f"{'tool':<16}{'ms CPU/mol':>11}{'wall s':>9}{'peak MB':>9}{'CPU ratio':>10}"
          f"{'wall ratio':>11}  max |diff| vs RDKit")  # fmt: skip
    for label, r in results.items():
        print(
            f"{label:<16}{1000 * r['cpu'] / n:>11.2f}{r['wall']:>9.1f}{r['peak_mb']:>9.0f}"
            f"{r['cpu'] / ref['cpu']:>10.2f}{r['wall'] / ref['wall']:>11.2f}  "
            f"{_difference(r['values'], ref['values'])}"
        )
    print(f"\n100,000 compounds on 2 cores (+ {args.other_cpu_s:.0f} s CPU of the other stages):")
    for label in ("rdkit", "cellframe w=1", "cache warm"):
        per_mol = results[label]["cpu"] / n
        cpu = 100_000 * per_mol + args.other_cpu_s
        wall = cpu / 2
        verdict = "meets" if wall <= GOAL_S else "misses"
        print(
            f"  {label:<14} descriptors {100_000 * per_mol:6.0f} s CPU -> {cpu:6.0f} s CPU, "
            f">= {wall:5.0f} s wall: {verdict} the {GOAL_S:.0f} s goal"
        )


if __name__ == "__main__":
    main()
