"""Benchmark of cellframe.activity against plain RDKit / scikit-learn code, side by side.

Each measurement runs in its own subprocess so peak RSS is per tool. Tasks on the
real Tox21 matrix (../shared/data/assay-matrices-moleculenet/tox21.csv):

* ``featurize``: Morgan fingerprints + Bemis-Murcko scaffold folds
  (cellframe vs a direct RDKit loop); results must agree exactly.
* ``metrics``: per-assay AUROC/AUPRC of random predictions over 5 folds
  (cellframe's Polars table vs a scikit-learn loop); agreement to 1e-12.
* ``rf``: RandomForest per assay on one random 80/10/10 split (cellframe's
  baseline vs scikit-learn directly, same seeds); identical probabilities.
* ``models`` (issue #19, run alone: minutes): on one 80/10/10 split
  (``--split random:0`` or ``scaffold``), cellframe's default model (D-MPNN +
  RDKit descriptors, Noam schedule, ``--epochs`` 30, best validation epoch),
  the tuned tree baselines (``rf-tuned``, ``lgbm``: count Morgan + descriptors,
  grid on the validation part) and, when ``CHEMPROP_VENV`` names a Chemprop
  2.3.1 virtual environment (../shared/ANCHORS.md), ``chemprop train`` /
  ``chemprop predict`` on the same three CSV files: mean test ROC-AUC, wall
  time, peak RSS, and each one's ratios to Chemprop (to the default model
  without Chemprop). Descriptor time is not counted (``--descriptors-cache``).

Usage::

    python benchmarks/bench_activity.py [--tasks featurize,metrics,rf] [--n-estimators 100]
    CHEMPROP_VENV=/path/to/venv python benchmarks/bench_activity.py --tasks models \\
        --split scaffold --descriptors-cache tox21_descriptors.npy
    python benchmarks/bench_activity.py --tasks models --max-compounds 800 --epochs 2  # quick
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "assay-matrices-moleculenet"


def _child(task: str, tool: str, n_estimators: int, out: str) -> None:
    import resource

    import numpy as np

    from cellframe.activity.matrix import read_assay_matrix

    m = read_assay_matrix(DATA / "tox21.csv")
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    ok = np.array([Chem.MolFromSmiles(s) is not None for s in m.smiles])
    m = m.subset(compounds=ok)
    t0 = time.perf_counter()
    if task == "featurize":
        if tool == "cellframe":
            from cellframe.activity.chem import morgan_fingerprints, parse_smiles
            from cellframe.activity.splits import scaffold_folds

            mols = parse_smiles(m.smiles)
            fps = morgan_fingerprints(mols)
            folds = scaffold_folds(mols)
        else:
            from collections import defaultdict

            from rdkit.Chem import rdFingerprintGenerator
            from rdkit.Chem.Scaffolds import MurckoScaffold

            gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
            mols = [Chem.MolFromSmiles(s) for s in m.smiles]
            fps = np.stack([gen.GetFingerprintAsNumPy(x) for x in mols]).astype(np.uint8)
            groups = defaultdict(list)
            for i, x in enumerate(mols):
                groups[MurckoScaffold.MurckoScaffoldSmiles(mol=x, includeChirality=False)].append(i)
            folds = np.zeros(len(mols), dtype=np.int64)
            sizes = [0] * 5
            for g in sorted(groups.values(), key=len, reverse=True):
                k = sizes.index(min(sizes))
                folds[g] = k
                sizes[k] += len(g)
        result = np.concatenate([fps.sum(axis=1), folds]).astype(np.float64)
    elif task == "metrics":
        rng = np.random.default_rng(0)
        prob = rng.random(m.values.shape).astype(np.float32)
        folds = rng.integers(0, 5, m.shape[0])
        if tool == "cellframe":
            import polars as pl

            from cellframe.activity.crossval import predictions_frame
            from cellframe.activity.metrics import assay_fold_metrics

            frames = [
                predictions_frame(
                    m, prob[folds == k], np.flatnonzero(folds == k), fold=k, modality="X"
                )
                for k in range(5)
            ]
            fm = assay_fold_metrics(pl.concat(frames)).sort("Metadata_Fold", "Metadata_Assay")
            result = np.concatenate([fm["auroc"].to_numpy(), fm["auprc"].to_numpy()])
        else:
            from sklearn.metrics import average_precision_score, roc_auc_score

            au, ap = [], []
            for k in range(5):
                for j in sorted(range(m.shape[1]), key=lambda j: m.assays[j]):
                    rows = (folds == k) & ~np.isnan(m.values[:, j])
                    y = m.values[rows, j]
                    au.append(roc_auc_score(y, prob[rows, j]))
                    ap.append(average_precision_score(y, prob[rows, j]))
            result = np.array(au + ap)
    else:
        from cellframe.activity.chem import morgan_fingerprints
        from cellframe.activity.splits import random_partition

        x = morgan_fingerprints(m.smiles)
        part = random_partition(m.shape[0], seed=0)
        train, test = part == 0, part == 2
        t0 = time.perf_counter()
        if tool == "cellframe":
            from cellframe.activity.model import RandomForestBaseline

            rf = RandomForestBaseline(n_estimators=n_estimators, seed=0).fit(
                x[train], m.values[train]
            )
            result = rf.predict_proba(x[test]).ravel().astype(np.float64)
        else:
            from sklearn.ensemble import RandomForestClassifier

            cols = []
            for j in range(m.shape[1]):
                obs = train & ~np.isnan(m.values[:, j])
                clf = RandomForestClassifier(n_estimators=n_estimators, random_state=j)
                clf.fit(x[obs], m.values[obs, j].astype(int))
                cols.append(clf.predict_proba(x[test])[:, 1])
            result = np.stack(cols, axis=1).astype(np.float32).ravel().astype(np.float64)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    np.save(out + ".npy", result)
    Path(out).write_text(json.dumps({"seconds": seconds, "peak_mb": peak}))


MODEL_TOOLS = ("default", "rf-tuned", "lgbm")


def _split_data(args: argparse.Namespace):
    """The Tox21 matrix (parseable compounds), its descriptors and the 0/1/2 partition."""
    import warnings

    import numpy as np

    from cellframe.activity import parse_smiles, random_partition, scaffold_partition
    from cellframe.activity.descriptors import rdkit_descriptors
    from cellframe.activity.matrix import read_assay_matrix

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 8 SMILES RDKit cannot parse, reported by the reader
        m = read_assay_matrix(DATA / "tox21.csv")
        mols = parse_smiles(m.smiles, warn=False, binaries=m.binaries)
    ok = np.array([x is not None for x in mols])
    m, mols = m.subset(compounds=ok), [x for x in mols if x is not None]
    desc = None
    cache = Path(args.descriptors_cache) if args.descriptors_cache else None
    if cache and cache.is_file():
        desc = np.load(cache)
        if desc.shape[0] != len(mols):
            desc = None
    if desc is None:
        desc = rdkit_descriptors(mols)
        if cache:
            np.save(cache, desc)
    if args.max_compounds and len(mols) > args.max_compounds:
        keep = np.sort(np.random.default_rng(0).choice(len(mols), args.max_compounds, False))
        m, mols, desc = m.subset(compounds=keep), [mols[i] for i in keep], desc[keep]
    kind, _, seed = args.split.partition(":")
    part = (
        scaffold_partition(m.smiles)
        if kind == "scaffold"
        else random_partition(len(mols), seed=int(seed or 0))
    )
    return m, desc, part


def _model_child(tool: str, args: argparse.Namespace, out: str) -> None:
    """Train one model on the split, score the test part; time, peak RSS and AUROC to ``out``."""
    import resource
    import tempfile

    m, desc, part = _split_data(args)
    t0 = time.perf_counter()
    if tool == "chemprop":
        auroc = _chemprop(m, part, Path(os.environ["CHEMPROP_VENV"]), Path(tempfile.mkdtemp()))
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    else:
        import torch

        from cellframe.activity import MultitaskClassifier, TreeBaseline, train_holdout
        from cellframe.activity.holdout import WithDescriptors, mean_auroc_per_model

        torch.set_num_threads(args.threads)
        if tool == "default":
            model = WithDescriptors(
                MultitaskClassifier(
                    encoder="dmpnn", encoder_hidden=300, encoder_depth=3, hidden_sizes=(300,),
                    dropout=0.0, lr=1e-3, lr_schedule="noam", warmup_epochs=min(2, args.epochs - 1),
                    max_epochs=args.epochs, patience=args.epochs, seed=0,
                )
            )  # fmt: skip
        else:
            model = TreeBaseline("rf" if tool == "rf-tuned" else "lgbm", n_jobs=args.threads)

        def fixed(smiles, fractions, seed):
            return part

        result = train_holdout(m, {tool: model}, split=fixed, descriptors=desc)
        auroc = float(mean_auroc_per_model(result.metrics)["mean_auroc"][0])
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    seconds = time.perf_counter() - t0
    Path(out).write_text(json.dumps({"seconds": seconds, "peak_mb": peak, "auroc": auroc}))


def _chemprop(m, part, venv: Path, tmp: Path) -> float:
    """``chemprop train`` + ``chemprop predict`` on the split's CSVs; mean test ROC-AUC."""
    import numpy as np
    import polars as pl

    from cellframe.activity.model import mean_auroc

    wide = m.to_wide().drop("Metadata_Compound")
    paths = []
    for k, name in enumerate(("train", "val", "test")):
        path = tmp / f"{name}.csv"
        wide.filter(pl.Series(part == k)).write_csv(path)
        paths.append(str(path))
    exe = venv / "bin" / "chemprop"
    run_dir = tmp / "run"
    subprocess.run(
        [str(exe), "train", "--task-type", "classification", "--data-path", *paths,
         "--num-workers", "0", "--accelerator", "cpu", "--output-dir", str(run_dir)],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    found = sorted(run_dir.rglob("best*.pt")) or sorted(run_dir.rglob("*.ckpt"))
    if not found:
        raise FileNotFoundError(f"chemprop train left no model file under {run_dir}")
    preds = tmp / "preds.csv"
    subprocess.run(
        [str(exe), "predict", "--test-path", paths[2], "--model-paths", str(found[0]),
         "--preds-path", str(preds), "--num-workers", "0", "--accelerator", "cpu"],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    prob = pl.read_csv(preds).select(m.assays).to_numpy().astype(np.float64)
    return mean_auroc(m.values[part == 2], prob)


def _models(args: argparse.Namespace) -> None:
    import tempfile

    tools = list(MODEL_TOOLS) + (["chemprop"] if os.environ.get("CHEMPROP_VENV") else [])
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        for tool in tools:
            out = str(Path(tmp) / f"{tool}.json")
            cmd = [sys.executable, __file__, "--split", args.split, "--epochs", str(args.epochs),
                   "--threads", str(args.threads), "--model-child", tool, out]  # fmt: skip
            if args.max_compounds:
                cmd += ["--max-compounds", str(args.max_compounds)]
            if args.descriptors_cache:
                cmd += ["--descriptors-cache", args.descriptors_cache]
            subprocess.run(cmd, check=True)
            res[tool] = json.loads(Path(out).read_text())
            print(f"  {tool}: {res[tool]}", flush=True)
    ref = "chemprop" if "chemprop" in res else "default"
    print(f"Tox21 {args.split} split, {args.threads} thread(s); ratios against {ref}")
    print(f"{'model':10s} {'ROC-AUC':>8s} {'wall s':>8s} {'peak MB':>8s} "
          f"{'AUROC diff':>10s} {'time ratio':>10s} {'RSS ratio':>9s}")  # fmt: skip
    for tool, r in res.items():
        print(
            f"{tool:10s} {r['auroc']:8.3f} {r['seconds']:8.1f} {r['peak_mb']:8.0f} "
            f"{r['auroc'] - res[ref]['auroc']:+10.3f} {r['seconds'] / res[ref]['seconds']:10.2f} "
            f"{r['peak_mb'] / res[ref]['peak_mb']:9.2f}",
            flush=True,
        )
    if ref == "default":
        print("(set CHEMPROP_VENV to a Chemprop 2.3.1 venv to add it; ../shared/ANCHORS.md)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="featurize,metrics,rf")
    parser.add_argument("--n-estimators", type=int, default=100)
    parser.add_argument("--child", nargs=3, metavar=("TASK", "TOOL", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--split", default="random:0", help="random:SEED or scaffold (models)")
    parser.add_argument("--epochs", type=int, default=30, help="default model's epochs (models)")
    parser.add_argument("--threads", type=int, default=1, help="threads per model (models)")
    parser.add_argument("--max-compounds", type=int, default=None, help="subsample (models)")
    parser.add_argument("--descriptors-cache", default=None, help=".npy of the descriptors")
    parser.add_argument("--model-child", nargs=2, metavar=("TOOL", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.model_child:
        _model_child(args.model_child[0], args, args.model_child[1])
        return 0
    if args.tasks == "models":
        _models(args)
        return 0
    if args.child:
        _child(args.child[0], args.child[1], args.n_estimators, args.child[2])
        return 0
    import tempfile

    import numpy as np

    tol = {"featurize": 0.0, "metrics": 1e-12, "rf": 1e-6}
    for task in args.tasks.split(","):
        res = {}
        with tempfile.TemporaryDirectory() as tmp:
            for tool in ("cellframe", "anchor"):
                out = str(Path(tmp) / f"{task}_{tool}.json")
                subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--n-estimators",
                        str(args.n_estimators),
                        "--child",
                        task,
                        tool,
                        out,
                    ],
                    check=True,
                )
                res[tool] = json.loads(Path(out).read_text()) | {"values": np.load(out + ".npy")}
        a, b = res["cellframe"], res["anchor"]
        diff = float(np.max(np.abs(a["values"] - b["values"]))) if a["values"].size else 0.0
        print(
            f"{task:10s} cellframe {a['seconds']:7.2f} s {a['peak_mb']:7.0f} MB | "
            f"anchor {b['seconds']:7.2f} s {b['peak_mb']:7.0f} MB | "
            f"time ratio {a['seconds'] / b['seconds']:.2f} | max |diff| {diff:.2e} "
            f"({'ok' if diff <= tol[task] else 'MISMATCH'})",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
