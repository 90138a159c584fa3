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
* ``batch`` (the batch task): the batch panel's all-pairs metrics on synthetic
  wells (300 features, plates of 384, 10% DMSO, treatments in 4 replicates on
  two plates, a plate effect): label silhouette, batch silhouette, iLISI, kBET.
  cellframe's public functions against the code a user would pick:
  scikit-learn's ``silhouette_score``, scib's per-label ``silhouette_samples``
  loop, scib's LISI (``NearestNeighbors`` and its per-row Simpson bisection;
  harmonypy's C++ ``compute_lisi``, brute force at 11 s for 3,000 wells, is the
  tests' reference instead), scib's kBET recipe on ``NearestNeighbors``. ``--before-root DIR`` adds a third row, cellframe from
  another checkout (the code before a change). Wall, CPU (``process_time``, all
  threads) and peak RSS per tool; every metric's value is printed, with the
  largest difference between tools.

Usage::

    python benchmarks/bench_evaluate.py                      # 3,000 and 9,216 with copairs, 50k and 100k alone
    python benchmarks/bench_evaluate.py --sizes 3000 --cellframe-only-sizes 50000
    python benchmarks/bench_evaluate.py --scenario retrieval --sizes 3000 --cellframe-only-sizes
    nice -n 19 python benchmarks/bench_evaluate.py --scenario batch --before-root ../main   # 5k, 20k, 100k
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

    if args.scenario == "batch":
        elapsed = BATCH_TOOLS[args.tool](args.n, args.features, args.root, args.out, args.metrics)
    else:
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


# ------------------------------------------------------------------ batch task


def make_batch_screen(n: int, n_features: int, seed: int = 0):
    """Plates of 384 wells, 10% DMSO, treatments in 4 replicates over two plates, a plate effect.

    Returns ``(x, batch, labels)``: float32 profiles and integer plate / label
    codes (label -1 = DMSO). Each treatment has two replicates on each of two
    plates, so the batch silhouette of every label is defined; only DMSO has
    the 10 rows kBET needs.
    """
    rng = np.random.default_rng(seed)
    n_plates = max(2, -(-n // 384))
    n_ctrl = round(0.1 * n)
    n_trt = (n - n_ctrl) // 4
    n_ctrl = n - 4 * n_trt
    t = np.repeat(np.arange(n_trt), 4)
    plate_trt = np.where(np.arange(4 * n_trt) % 4 < 2, t % n_plates, (t + 1) % n_plates)
    labels = np.concatenate([t, np.full(n_ctrl, -1)])
    batch = np.concatenate([plate_trt, np.arange(n_ctrl) % n_plates])
    x = rng.standard_normal((n, n_features), dtype=np.float32)
    strength = rng.uniform(0.0, 1.0, size=n_trt).astype(np.float32)
    centres = rng.standard_normal((n_trt, n_features), dtype=np.float32) * strength[:, None]
    x[: 4 * n_trt] += np.repeat(centres, 4, axis=0)
    x += 0.3 * rng.standard_normal((n_plates, n_features), dtype=np.float32)[batch]
    return x, batch, labels


def _timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    value = fn()
    return value, time.perf_counter() - t0, time.process_time() - c0


def run_batch_cellframe(n, n_features, root, out, metrics=None):
    """The four metrics through cellframe's public functions (each its own neighbour search)."""
    sys.path.insert(0, str(root))
    import warnings

    # imported before the clock, as in the reference
    import scipy.stats  # noqa: F401
    import sklearn.metrics
    import sklearn.neighbors  # noqa: F401

    from cellframe.evaluate import ilisi, kbet, silhouette_batch, silhouette_label

    x, batch, labels = make_batch_screen(n, n_features)
    x = x.astype(np.float64)  # what the panel hands the metrics (float64 profiles)
    steps = {
        "silhouette_label": lambda: silhouette_label(x, labels),
        "silhouette_batch": lambda: silhouette_batch(x, batch, labels),
        "ilisi": lambda: ilisi(x, batch),
        "kbet": lambda: kbet(x, batch, labels),
    }
    return _run_steps({m: steps[m] for m in metrics or steps}, out, warnings)


def run_batch_reference(n, n_features, root, out, metrics=None):
    """The code a user would write: scikit-learn, harmonypy's LISI, scib's per-label loops."""
    import warnings

    from scipy.stats import chi2
    from sklearn.metrics import silhouette_samples, silhouette_score
    from sklearn.neighbors import NearestNeighbors

    x, batch, labels = make_batch_screen(n, n_features)
    x = x.astype(np.float64)

    def asw_batch():  # scib.metrics.silhouette_batch: per label, mean 1 - |s|
        means = []
        for g in np.unique(labels):
            rows = labels == g
            nb = len(np.unique(batch[rows]))
            if nb == 1 or nb == rows.sum():
                continue
            means.append(np.mean(1 - np.abs(silhouette_samples(x[rows], batch[rows]))))
        return float(np.mean(means))

    def lisi_batch():  # scib: (median LISI - 1) / (n_batches - 1), 90 neighbours
        dist, idx = NearestNeighbors(n_neighbors=90).fit(x).kneighbors()
        values = 1 / np.array(
            [_scib_simpson(d, batch[i], 30.0) for d, i in zip(dist, idx, strict=True)]
        )
        return float((np.nanmedian(values) - 1) / (len(np.unique(batch)) - 1))

    def kbet_scib():  # per label, k0 = mean rows per batch / 4 in [10, 70], chi-square
        rates = []
        for g in np.unique(labels):
            rows = np.flatnonzero(labels == g)
            sub = np.unique(batch[rows], return_inverse=True)[1]
            if len(rows) < 10 or sub.max() == 0:
                continue
            k = min(int(np.clip(np.floor(np.bincount(sub).mean() / 4), 10, 70)), len(rows) - 1)
            idx = NearestNeighbors(n_neighbors=k).fit(x[rows]).kneighbors()[1]
            nb = sub.max() + 1
            expected = np.bincount(sub, minlength=nb) / len(sub) * k
            observed = np.zeros((len(rows), nb))
            np.add.at(observed, (np.repeat(np.arange(len(rows)), k), sub[idx].ravel()), 1.0)
            stat = ((observed - expected) ** 2 / expected).sum(axis=1)
            rates.append(np.mean(chi2.sf(stat, df=nb - 1) >= 0.05))
        return float(np.mean(rates))

    steps = {
        "silhouette_label": lambda: (silhouette_score(x, labels) + 1) / 2,
        "silhouette_batch": asw_batch,
        "ilisi": lisi_batch,
        "kbet": kbet_scib,
    }
    return _run_steps({m: steps[m] for m in metrics or steps}, out, warnings)


def _scib_simpson(d, codes, perplexity, tol=1e-5, max_iter=50):
    """scib's ``compute_simpson`` for one row (beta bisection on plain distances)."""
    beta, lo, hi, target = 1.0, -np.inf, np.inf, np.log(perplexity)

    def entropy(beta):
        p = np.exp(-(d - d[0]) * beta)
        s = p.sum()
        return np.log(s) + beta * ((d - d[0]) * p).sum() / s, p / s

    h, p = entropy(beta)
    for _ in range(max_iter):
        diff = h - target
        if abs(diff) <= tol:
            break
        if diff > 0:
            lo = beta
            beta = beta * 2 if np.isinf(hi) else (beta + hi) / 2
        else:
            hi = beta
            beta = beta / 2 if np.isinf(lo) else (beta + lo) / 2
        h, p = entropy(beta)
    return float((np.bincount(codes, weights=p) ** 2).sum())


def _run_steps(steps, out, warnings):
    result = {"steps": {}}
    t0, c0 = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, fn in steps.items():
            value, wall, cpu = _timed(fn)
            result["steps"][name] = {"value": float(value), "wall_s": wall, "cpu_s": cpu}
    result["time_s"] = time.perf_counter() - t0
    result["cpu_s"] = time.process_time() - c0
    Path(out).write_text(json.dumps(result))
    return result["time_s"]


BATCH_METRIC_NAMES = ("silhouette_label", "silhouette_batch", "ilisi", "kbet")
BATCH_TOOLS = {
    "before": run_batch_cellframe,
    "cellframe": run_batch_cellframe,
    "reference": run_batch_reference,
}


def measure_batch(tool, n, args, workdir):
    out = Path(workdir) / f"batch_{tool}_{n}.json"
    root = args.before_root if tool == "before" else str(ROOT)
    cmd = [sys.executable, __file__, "--child", "--scenario", "batch", "--tool", tool,
           "--n", str(n), "--features", str(args.features), "--root", root, "--out", str(out),
           "--metrics", *args.metrics]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=root)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"tool": tool, "n": n, "failed": f"over {args.timeout} s"}
    if proc.returncode != 0:
        tail = (proc.stderr or "").strip().splitlines()[-1:] or ["no output"]
        return {"tool": tool, "n": n, "failed": f"exit {proc.returncode}: {tail[0][:120]}"}
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res.update(json.loads(out.read_text()), tool=tool, n=n)
    return res


def main_batch(args) -> int:
    tools = ["cellframe", "reference"] + (["before"] if args.before_root else [])
    print(
        f"task=batch features={args.features} cores={os.cpu_count()} "
        f"load={os.getloadavg()[0]:.1f} before={args.before_root or '-'}"
    )
    print(
        f"{'n':>7} {'tool':>10} {'wall s':>8} {'CPU s':>8} {'peak GB':>8} "
        f"{'ref/cf wall':>11} {'ref/cf RSS':>10}  per metric wall s (value)"
    )
    names = args.metrics
    with tempfile.TemporaryDirectory() as workdir:
        for n in args.sizes:
            rows = {t: measure_batch(t, n, args, workdir) for t in tools}
            cf = rows["cellframe"]
            for tool in ("before", "cellframe", "reference"):
                r = rows.get(tool)
                if r is None:
                    continue
                if "failed" in r:
                    print(f"{n:>7} {tool:>10}  FAILED ({r['failed']})")
                    continue
                ratio = ""
                if tool != "cellframe" and "failed" not in cf:
                    ratio = (
                        f"{r['time_s'] / cf['time_s']:10.1f}x "
                        f"{r['peak_rss_gb'] / cf['peak_rss_gb']:9.1f}x"
                    )
                per = " ".join(
                    f"{m}={r['steps'][m]['wall_s']:.1f}({r['steps'][m]['value']:.6f})"
                    for m in names
                )
                print(
                    f"{n:>7} {tool:>10} {r['time_s']:8.1f} {r['cpu_s']:8.1f} "
                    f"{r['peak_rss_gb']:8.2f} {ratio:>22}  {per}"
                )
            ok = [r for r in rows.values() if "failed" not in r]
            if len(ok) > 1:
                diff = {
                    m: max(
                        abs(a["steps"][m]["value"] - b["steps"][m]["value"]) for a in ok for b in ok
                    )
                    for m in names
                }
                print(f"{n:>7} {'agreement':>10}  max |difference| between tools: "
                      + " ".join(f"{m}={d:.1e}" for m, d in diff.items()))  # fmt: skip
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--sizes",
        type=int,
        nargs="*",
        help="sizes run with both tools (default 3000 9216; batch: 5000 20000 100000)",
    )
    p.add_argument("--cellframe-only-sizes", type=int, nargs="*", default=[50000, 100000])
    p.add_argument("--features", type=int, help="default 1000 (batch: 300)")
    p.add_argument("--scenario", choices=("activity", "retrieval", "batch"), default="activity")
    p.add_argument("--before-root", help="batch: also run cellframe from this checkout")
    p.add_argument(
        "--metrics",
        nargs="+",
        choices=BATCH_METRIC_NAMES,
        default=list(BATCH_METRIC_NAMES),
        help="batch: the metrics to run (default all four)",
    )
    p.add_argument("--root", help=argparse.SUPPRESS)
    p.add_argument("--null-size", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=int, default=3600, help="seconds per tool run")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--tool", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    batch = args.scenario == "batch"
    if args.sizes is None:
        args.sizes = [5000, 20000, 100000] if batch else [3000, 9216]
    if args.features is None:
        args.features = 300 if batch else 1000
    if args.child:
        child(args)
        return 0
    if batch:
        return main_batch(args)
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
