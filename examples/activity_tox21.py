"""MoleculeNet-style check of cellframe's activity models on Tox21 (or ToxCast).

Random 80/10/10 splits over three seeds and a Bemis-Murcko scaffold split
(groups largest first), mean test ROC-AUC over the assays that have both
classes in the test part (the others are skipped and counted). Models:

* ``rf``    RandomForest (300 trees) on Morgan fingerprints (radius 2, 2048 bits)
* ``ffn``   multitask network on Morgan fingerprints
* ``dmpnn`` multitask network over a jointly trained D-MPNN

Reference (../shared/data/README.md): RF on Morgan 0.813 +- 0.007 on Tox21 random
splits; Chemprop's D-MPNN 0.851 +- 0.002.

Run (a few minutes per model and split on 2 CPU cores; much less on a GPU)::

    python examples/activity_tox21.py --models rf,ffn,dmpnn --store tox21.duckdb
    python examples/activity_tox21.py --dataset toxcast --models ffn --splits random:0

Results go to the store table ``moleculenet_results`` (one row per dataset,
split, model) and ``moleculenet_assays`` (one row per assay).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import polars as pl

from cellframe.activity import (
    MultitaskClassifier,
    RandomForestBaseline,
    featurize_molecules,
    morgan_fingerprints,
    parse_smiles,
    random_partition,
    read_assay_matrix,
    scaffold_partition,
)
from cellframe.activity.crossval import predictions_frame
from cellframe.activity.metrics import assay_fold_metrics
from cellframe.store import Store

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "assay-matrices-moleculenet"
FILES = {"tox21": "tox21.csv", "toxcast": "toxcast.csv.gz", "muv": "muv.csv.gz"}


def evaluate_split(matrix, inputs, part, model_name, *, epochs, seed):
    """Train on part 0 (early stopping on part 1), predict part 2; per-assay metrics."""
    train, val, test = (np.flatnonzero(part == k) for k in range(3))
    y = matrix.values
    t0 = time.perf_counter()
    if model_name == "rf":
        x = inputs["morgan"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = RandomForestBaseline(n_estimators=300, n_jobs=1, seed=seed).fit(
                x[train], y[train]
            )
        prob = model.predict_proba(x[test])
    elif model_name == "ffn":
        x = inputs["morgan"].astype(np.float32)
        model = MultitaskClassifier(
            hidden_sizes=(1024, 512), dropout=0.5, max_epochs=epochs, patience=8, seed=seed
        ).fit(x[train], y[train], validation=(x[val], y[val]))
        prob = model.predict_proba(x[test])
    else:
        g = inputs["graphs"]
        model = MultitaskClassifier(
            encoder="dmpnn",
            encoder_hidden=300,
            encoder_depth=3,
            hidden_sizes=(300,),
            dropout=0.0,
            max_epochs=epochs,
            patience=10,
            seed=seed,
            progress=True,
        ).fit(g.subset(train), y[train], validation=(g.subset(val), y[val]))
        prob = model.predict_proba(g.subset(test))
    seconds = time.perf_counter() - t0
    preds = predictions_frame(matrix, prob, test, fold=0, modality=model_name)
    return assay_fold_metrics(preds), seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(FILES), default="tox21")
    parser.add_argument("--models", default="rf,ffn,dmpnn")
    parser.add_argument(
        "--splits",
        default="random:0,random:1,random:2,scaffold:0",
        help="comma-separated kind:seed (kind random or scaffold)",
    )
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--max-compounds", type=int, default=None, help="subsample (quick runs)")
    parser.add_argument("--store", default=":memory:")
    args = parser.parse_args(argv)

    matrix = read_assay_matrix(DATA / FILES[args.dataset])
    mols = parse_smiles(matrix.smiles, where=args.dataset)
    ok = np.array([m is not None for m in mols])
    matrix = matrix.subset(compounds=ok)
    mols = [m for m in mols if m is not None]
    if args.max_compounds and matrix.shape[0] > args.max_compounds:
        keep = np.sort(
            np.random.default_rng(0).choice(matrix.shape[0], args.max_compounds, replace=False)
        )
        matrix = matrix.subset(compounds=keep)
        mols = [mols[i] for i in keep]
    print(f"{args.dataset}: {matrix}; {int((~ok).sum())} unparseable SMILES skipped", flush=True)
    models = args.models.split(",")
    inputs = {"morgan": morgan_fingerprints(mols)}
    if "dmpnn" in models:
        inputs["graphs"] = featurize_molecules(mols)

    rows, per_assay = [], []
    for spec in args.splits.split(","):
        kind, seed = spec.split(":")
        seed = int(seed)
        part = (
            random_partition(matrix.shape[0], seed=seed)
            if kind == "random"
            else scaffold_partition(matrix.smiles)
        )
        for model_name in models:
            metrics, seconds = evaluate_split(
                matrix, inputs, part, model_name, epochs=args.epochs, seed=seed
            )
            evaluated = metrics.filter(pl.col("evaluated"))
            row = {
                "dataset": args.dataset,
                "split": kind,
                "seed": seed,
                "model": model_name,
                "mean_auroc": evaluated["auroc"].mean(),
                "mean_auprc": evaluated["auprc"].mean(),
                "n_assays_evaluated": evaluated.height,
                "n_assays_skipped": metrics.height
                - evaluated.height
                + (matrix.shape[1] - metrics.height),
                "seconds": seconds,
            }
            rows.append(row)
            per_assay.append(
                metrics.with_columns(pl.lit(kind).alias("split"), pl.lit(seed).alias("seed"))
            )
            print(
                f"{args.dataset} {kind}:{seed} {model_name:6s} mean test ROC-AUC {row['mean_auroc']:.4f} "
                f"({row['n_assays_evaluated']} assays, {row['n_assays_skipped']} skipped) in {seconds:.0f} s",
                flush=True,
            )
    results = pl.DataFrame(rows)
    summary = results.group_by("dataset", "split", "model", maintain_order=True).agg(
        pl.len().alias("n_splits"),
        pl.col("mean_auroc").mean().alias("auroc"),
        pl.col("mean_auroc").std().alias("auroc_sd"),
    )
    with pl.Config(tbl_rows=-1, tbl_cols=-1):
        print(summary)
    with Store(args.store) as store:
        params = {"splits": args.splits, "epochs": args.epochs, "models": args.models}
        store.write(
            "moleculenet_results",
            results,
            mode="replace",
            step="activity.moleculenet",
            parameters=params,
        )
        store.write(
            "moleculenet_assays",
            pl.concat(per_assay),
            mode="replace",
            step="activity.moleculenet",
            parameters=params,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
