"""Benchmark: copairs-compatible AP + mAP p-values, cellframe against copairs 0.5.5.

Each tool runs in its own subprocess on the same synthetic screen (same seed),
so the peak RSS printed is per tool (``ru_maxrss`` of that process, data
included). Both compute per-profile AP and per-treatment mAP with permutation
p-values (null_size, seed) and BH-corrected p-values; the script checks that
the numbers agree (max |AP difference|, identical significant sets).

Scenarios (``--scenario``):

* ``activity``: phenotypic activity, copairs' recipe: positives = replicate
  wells of the same treatment, negatives = the negative-control wells (10% of
  the wells).
* ``retrieval``: positives = replicate wells, negatives = every well of every
  other treatment (the ``O(n^2)`` pair lists that exhaust copairs' memory).

Usage::

    python benchmarks/bench_evaluate.py                      # 3,000 and 9,216 with copairs, 50k and 100k alone
    python benchmarks/bench_evaluate.py --sizes 3000 --cellframe-only-sizes 50000
    python benchmarks/bench_evaluate.py --scenario retrieval --sizes 3000 --cellframe-only-sizes
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
print = functools.partial(print, flush=True)  # progress shows when piped


def make_screen(
    n: int, n_features: int, seed: int = 0, replicates: int = 4, control_fraction: float = 0.1
):
    """Metadata (treatment, control flag) and float32 features of a synthetic screen."""
    rng = np.random.default_rng(seed)
    n_ctrl = round(control_fraction * n)
    n_trt = (n - n_ctrl) // replicates
    n_ctrl = n - n_trt * replicates
    treatment = np.concatenate([np.repeat(np.arange(n_trt), replicates), np.full(n_ctrl, -1)])
    x = rng.standard_normal((n, n_features), dtype=np.float32)
    # Treatments have a centre of varying strength (some inactive).
    strength = rng.uniform(0.0, 0.5, size=n_trt).astype(np.float32)
    centres = rng.standard_normal((n_trt, n_features), dtype=np.float32) * strength[:, None]
    x[: n_trt * replicates] += np.repeat(centres, replicates, axis=0)
    names = np.array([f"T{t:06d}" if t >= 0 else "DMSO" for t in treatment])
    return names, x


def _rules(scenario: str):
    if scenario == "activity":
        ref = ["Metadata_Treatment", "Metadata_Ref"]
        return dict(pos_sameby=ref, pos_diffby=[], neg_sameby=[], neg_diffby=ref)
    t = ["Metadata_Treatment"]
    return dict(pos_sameby=t, pos_diffby=[], neg_sameby=[], neg_diffby=t)


def run_copairs(n, n_features, scenario, null_size, seed, out):
    import pandas as pd
    from copairs.map import average_precision, mean_average_precision

    names, x = make_screen(n, n_features)
    meta = pd.DataFrame({"Metadata_Treatment": names})
    meta["Metadata_Ref"] = np.where(names == "DMSO", np.arange(n), -1)
    if scenario == "retrieval":
        keep = names != "DMSO"
        meta, x = meta[keep].reset_index(drop=True), x[keep]
    t0 = time.perf_counter()
    ap = average_precision(meta, x, progress_bar=False, **_rules(scenario))
    with tempfile.TemporaryDirectory() as cache:
        m = mean_average_precision(
            ap,
            ["Metadata_Treatment"],
            null_size=null_size,
            threshold=0.05,
            seed=seed,
            progress_bar=False,
            cache_dir=cache,
        )
    elapsed = time.perf_counter() - t0
    m = m.sort_values("Metadata_Treatment")
    np.savez(
        out,
        ap=ap["average_precision"].to_numpy(dtype=np.float64),
        map=m["mean_average_precision"].to_numpy(),
        p=m["p_value"].to_numpy(),
        sig=m["below_corrected_p"].to_numpy(),
    )
    return elapsed


def run_cellframe(n, n_features, scenario, null_size, seed, out):
    sys.path.insert(0, str(ROOT))
    import polars as pl

    from cellframe.evaluate import (
        PairRules,
        average_precision,
        mean_average_precision,
        phenotypic_activity,
    )

    names, x = make_screen(n, n_features)
    frame = pl.DataFrame({"Metadata_Treatment": names}).hstack(
        pl.DataFrame(x, schema=[f"f{i:04d}" for i in range(n_features)])
    )
    del x
    t0 = time.perf_counter()
    if scenario == "activity":
        ap = phenotypic_activity(
            frame, treatment="Metadata_Treatment", controls=pl.col("Metadata_Treatment") == "DMSO"
        )
        ap_scored = ap.filter(~pl.col("is_control"))
    else:
        frame = frame.filter(pl.col("Metadata_Treatment") != "DMSO")
        ap = average_precision(frame, rules=PairRules(**_rules(scenario)))
        ap_scored = ap
    m = mean_average_precision(
        ap_scored, sameby="Metadata_Treatment", null_size=null_size, seed=seed
    )
    elapsed = time.perf_counter() - t0
    np.savez(
        out,
        ap=ap["average_precision"].fill_null(np.nan).to_numpy(),
        map=m["mean_average_precision"].to_numpy(),
        p=m["p_value"].to_numpy(),
        sig=m["below_corrected_p"].to_numpy(),
    )
    return elapsed


def child(args) -> None:
    import resource

    fn = run_copairs if args.tool == "copairs" else run_cellframe
    elapsed = fn(args.n, args.features, args.scenario, args.null_size, args.seed, args.out)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    print(json.dumps({"time_s": elapsed, "peak_rss_gb": rss}))


def measure(tool, n, args, workdir):
    out = Path(workdir) / f"{tool}_{n}.npz"
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--tool",
        tool,
        "--n",
        str(n),
        "--features",
        str(args.features),
        "--scenario",
        args.scenario,
        "--null-size",
        str(args.null_size),
        "--seed",
        str(args.seed),
        "--out",
        str(out),
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    if proc.returncode != 0:
        tail = (proc.stderr or "").strip().splitlines()[-1:] or ["no output"]
        return {"tool": tool, "n": n, "failed": f"exit {proc.returncode}: {tail[0][:120]}"}
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res.update(tool=tool, n=n, out=str(out))
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--sizes", type=int, nargs="*", default=[3000, 9216], help="sizes run with both tools"
    )
    p.add_argument("--cellframe-only-sizes", type=int, nargs="*", default=[50000, 100000])
    p.add_argument("--features", type=int, default=1000)
    p.add_argument("--scenario", choices=("activity", "retrieval"), default="activity")
    p.add_argument("--null-size", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=int, default=3600, help="seconds per tool run")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--tool", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args)
        return 0
    print(
        f"scenario={args.scenario} features={args.features} null_size={args.null_size} "
        f"seed={args.seed} cores={os.cpu_count()}"
    )
    header = f"{'n':>7} {'tool':>9} {'time s':>9} {'peak GB':>8} {'speedup':>8} {'RSS ratio':>9}  agreement"
    print(header)
    with tempfile.TemporaryDirectory() as workdir:
        for n in args.sizes:
            cf = measure("cellframe", n, args, workdir)
            cp = measure("copairs", n, args, workdir)
            for r in (cp, cf):
                if "failed" in r:
                    print(f"{n:>7} {r['tool']:>9}  FAILED ({r['failed']})")
            if "failed" in cf or "failed" in cp:
                if "failed" not in cf:
                    print(f"{n:>7} {'cellframe':>9} {cf['time_s']:9.2f} {cf['peak_rss_gb']:8.2f}")
                continue
            a, b = np.load(cf["out"]), np.load(cp["out"])
            both = ~np.isnan(a["ap"]) & ~np.isnan(b["ap"])
            same_nan = bool(np.array_equal(np.isnan(a["ap"]), np.isnan(b["ap"])))
            diff = float(np.max(np.abs(a["ap"][both] - b["ap"][both])))
            same_sig = bool(np.array_equal(a["sig"], b["sig"]))
            same_p = bool(np.array_equal(a["p"], b["p"]))
            print(f"{n:>7} {'copairs':>9} {cp['time_s']:9.2f} {cp['peak_rss_gb']:8.2f}")
            print(
                f"{n:>7} {'cellframe':>9} {cf['time_s']:9.2f} {cf['peak_rss_gb']:8.2f} "
                f"{cp['time_s'] / cf['time_s']:7.1f}x {cp['peak_rss_gb'] / cf['peak_rss_gb']:8.1f}x  "
                f"max|dAP|={diff:.1e} nulls-equal={same_nan} p-equal={same_p} "
                f"significant-set-equal={same_sig} ({int(a['sig'].sum())}/{len(a['sig'])})"
            )
        for n in args.cellframe_only_sizes:
            cf = measure("cellframe", n, args, workdir)
            if "failed" in cf:
                print(f"{n:>7} {'cellframe':>9}  FAILED ({cf['failed']})")
                continue
            sig = np.load(cf["out"])["sig"]
            print(
                f"{n:>7} {'cellframe':>9} {cf['time_s']:9.2f} {cf['peak_rss_gb']:8.2f}"
                f"{'':>19}  significant {int(sig.sum())}/{len(sig)}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
