"""Benchmark of cellframe.activity against plain RDKit / scikit-learn code, side by side.

Each measurement runs in its own subprocess so peak RSS is per tool. Tasks on the
real Tox21 matrix (../shared/data/assay-matrices-moleculenet/tox21.csv):

* ``featurize``: Morgan fingerprints + Bemis-Murcko scaffold folds
  (cellframe vs a direct RDKit loop); results must agree exactly.
* ``metrics``: per-assay AUROC/AUPRC of random predictions over 5 folds
  (cellframe's Polars table vs a scikit-learn loop); agreement to 1e-12.
* ``rf``: RandomForest per assay on one random 80/10/10 split (cellframe's
  baseline vs scikit-learn directly, same seeds); identical probabilities.

Usage::

    python benchmarks/bench_activity.py [--tasks featurize,metrics,rf] [--n-estimators 100]
"""

from __future__ import annotations

import argparse
import json
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="featurize,metrics,rf")
    parser.add_argument("--n-estimators", type=int, default=100)
    parser.add_argument("--child", nargs=3, metavar=("TASK", "TOOL", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
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
