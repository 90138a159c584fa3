"""MoleculeNet-style check of cellframe's activity models on Tox21 (or ToxCast).

Random 80/10/10 splits over three seeds and a Bemis-Murcko scaffold split
(groups largest first), mean test ROC-AUC over the assays that have both
classes in the test part (the others are skipped and counted). Every model is
selected on the validation part only (early stopping, best epoch); the test part
is scored once. Models:

* ``rf``          RandomForest (300 trees) on Morgan fingerprints (radius 2, 2048 bits)
* ``rf-tuned``    tree baseline: RandomForest (300 trees) per assay on count-based Morgan
                  fingerprints + RDKit 2D descriptors (CDF of the training part),
                  min_samples_leaf 1 or 3 chosen on the validation part
* ``lgbm``        tree baseline: LightGBM per assay on the same inputs, learning rate
                  0.05, early stopping on the validation readouts, num_leaves 15/63 x
                  colsample_bytree 0.1/0.3 chosen on the validation part
* ``ffn``         multitask network on Morgan fingerprints
* ``ffn-desc``    multitask network on Morgan + RDKit 2D descriptors
* ``dmpnn``       D-MPNN (hidden 300, depth 3) trained jointly with the task head,
                  constant learning rate 1e-3
* ``dmpnn-desc``  Chemprop's recipe: the D-MPNN encoding concatenated with RDKit 2D
                  descriptors (CDF-normalised on the training part), Noam learning-rate
                  schedule (warm-up 2 epochs 1e-4 -> 1e-3, decay to 1e-4), best epoch
                  by validation AUROC
* ``ensemble``    cellframe.activity.CalibratedEnsemble of ``rf-tuned``, ``lgbm`` and
                  ``dmpnn-desc``: each member's probabilities Platt-calibrated per assay
                  on the validation part, the subset of members with the best mean
                  validation ROC-AUC averaged (the test part is never looked at). Its
                  members are trained once: with ``--predictions-dir`` every model's
                  validation and test probabilities are kept per split and reused, so
                  the ensemble costs its members' time and nothing more

Reference (Wu et al. 2018; Yang et al. 2019): RF on Morgan 0.813 +- 0.007 on
Tox21 random splits; Chemprop's D-MPNN 0.851 +- 0.002.

Tox21 ships with cellframe (cellframe/data/demo/moleculenet, MIT license);
``--data`` reads any assay matrix of your own (CSV with a ``smiles`` column and
one 1 / 0 / blank column per assay, as MoleculeNet's ToxCast or MUV files).

Run (as docs/activity.md, "The default model": CPU time of one thread per split,
``rf-tuned`` about 280 s, ``lgbm`` 50-90 s, ``dmpnn-desc`` 230-250 s (30 epochs),
``ensemble`` the sum of its members, about 10 minutes; on 2 cores shared with other
jobs (load average 11-13) the wall time was 5-6 times that, 57-62 minutes per split
for the ensemble; much less on a GPU)::

    python examples/activity_tox21.py --quick        # RF, one random split, 1,000 compounds
    python examples/activity_tox21.py --models rf,dmpnn-desc --store tox21.duckdb
    python examples/activity_tox21.py --models dmpnn-desc --splits random:0 --ensemble 3
    python examples/activity_tox21.py --models lgbm,rf-tuned --splits random:0,scaffold:0 \\
        --descriptors-cache tox21_descriptors.npy      # the tuned tree baselines
    python examples/activity_tox21.py --data toxcast.csv.gz --models ffn --splits random:0
    python examples/activity_tox21.py --models rf,rf-tuned,lgbm,dmpnn-desc,ensemble \
        --splits random:0,random:1,random:2 --threads 1 \
        --descriptors-cache tox21_descriptors.npy --predictions-dir tox21_predictions

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
from cellframe.activity.descriptors import (
    DescriptorNormalizer,
    descriptor_names,
    rdkit_descriptors,
)
from cellframe.activity.ensemble import CalibratedEnsemble
from cellframe.activity.metrics import assay_fold_metrics
from cellframe.activity.model import mean_auroc
from cellframe.activity.trees import TreeBaseline
from cellframe.demo import demo_data_dir
from cellframe.store import Store

#: Tox21 as bundled with cellframe (cellframe/data/demo/PROVENANCE.md).
TOX21 = demo_data_dir() / "moleculenet" / "tox21.csv.gz"
MODELS = ("rf", "rf-tuned", "lgbm", "ffn", "ffn-desc", "dmpnn", "dmpnn-desc", "ensemble")
#: Members of ``ensemble`` (cellframe.activity.ensemble.CalibratedEnsemble), chosen on validation.
ENSEMBLE_MEMBERS = ("rf-tuned", "lgbm", "dmpnn-desc")
#: The tree baselines of issue #19 (cellframe.activity.trees).
TREES = ("rf-tuned", "lgbm")
#: Reference mean test ROC-AUC on Tox21 random splits (MoleculeNet; Chemprop).
REFERENCE = {"rf": 0.813, "dmpnn-desc": 0.851}


def network(model_name: str, *, epochs: int, seed: int) -> MultitaskClassifier:
    """The configured multitask network of a model name."""
    if model_name.startswith("ffn"):
        return MultitaskClassifier(
            hidden_sizes=(1024, 512), dropout=0.5, max_epochs=epochs, patience=8, seed=seed
        )
    schedule = "noam" if model_name == "dmpnn-desc" else "constant"
    return MultitaskClassifier(
        encoder="dmpnn",
        encoder_hidden=300,
        encoder_depth=3,
        hidden_sizes=(300,),
        dropout=0.0,
        lr=1e-3,
        lr_schedule=schedule,
        warmup_epochs=2.0,
        max_epochs=epochs,
        # The Noam schedule runs every epoch (Chemprop); the best epoch is kept.
        patience=epochs if schedule == "noam" else 10,
        seed=seed,
        progress=True,
    )


def member_predictions(matrix, inputs, part, model_name, *, epochs, seed, ensemble=1, trees=300):
    """Train on part 0 (model selection on part 1): probabilities of parts 1 and 2, seconds.

    Seconds are ``(wall, cpu)``: wall-clock and this process's CPU time.
    """
    train, val, test = (np.flatnonzero(part == k) for k in range(3))
    y = matrix.values
    t0, c0 = time.perf_counter(), time.process_time()
    if model_name == "rf":
        x = inputs["morgan"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = RandomForestBaseline(n_estimators=trees, n_jobs=1, seed=seed).fit(
                x[train], y[train]
            )
        val_prob, prob = model.predict_proba(x[val]), model.predict_proba(x[test])
    elif model_name in TREES:
        # Descriptors through the CDF of the training part only; grid chosen on validation.
        norm = DescriptorNormalizer(fill_value=np.nan).fit(inputs["descriptors"][train])
        x = np.hstack([inputs["counts"], norm.transform(inputs["descriptors"]).astype(np.float32)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            base = "rf" if model_name == "rf-tuned" else "lgbm"
            params = {"n_estimators": trees} if base == "rf" else {}  # 300 unless --quick
            model = TreeBaseline(base, params=params, seed=seed).fit(
                x[train], y[train], validation=(x[val], y[val])
            )
        print(f"  {model_name}: validation search {model.search_}", flush=True)
        val_prob, prob = model.predict_proba(x[val]), model.predict_proba(x[test])
    else:
        if model_name.endswith("-desc"):
            # CDF of the training part only: validation and test stay unseen.
            desc = DescriptorNormalizer().fit(inputs["descriptors"][train])
            extra = desc.transform(inputs["descriptors"])
        if model_name.startswith("ffn"):
            x = inputs["morgan"].astype(np.float32)
            if model_name.endswith("-desc"):
                x = np.hstack([x, extra])
            data = {k: x[idx] for k, idx in (("train", train), ("val", val), ("test", test))}
        else:
            g = inputs["graphs"]
            if model_name.endswith("-desc"):
                g = type(g)(**{**g.__dict__, "extra": extra})
            data = {k: g.subset(idx) for k, idx in (("train", train), ("val", val), ("test", test))}
        val_probs, probs = [], []
        for member in range(ensemble):
            model = network(model_name, epochs=epochs, seed=seed * 1000 + member)
            model.fit(data["train"], y[train], validation=(data["val"], y[val]))
            val_probs.append(model.predict_proba(data["val"]))
            probs.append(model.predict_proba(data["test"]))
        # ensemble of seeds: mean of the members' probabilities
        val_prob, prob = np.mean(val_probs, axis=0), np.mean(probs, axis=0)
    return val_prob, prob, (time.perf_counter() - t0, time.process_time() - c0)


def cached_member(cache_dir, key, part, compute):
    """``compute()`` -> (val, test, seconds), reused from ``cache_dir/key.npz`` for the same split."""
    path = None if cache_dir is None else Path(cache_dir) / f"{key}.npz"
    if path is not None and path.is_file():
        saved = np.load(path)
        if np.array_equal(saved["part"], part):
            print(f"  {key}: member predictions reused from {path}", flush=True)
            cpu = float(saved["cpu_seconds"]) if "cpu_seconds" in saved else float("nan")
            return saved["val"], saved["test"], (float(saved["seconds"]), cpu)
        print(f"  {path} holds another partition; recomputing", flush=True)
    val_prob, prob, seconds = compute()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, val=val_prob, test=prob, part=part, seconds=seconds[0],
                 cpu_seconds=seconds[1])  # fmt: skip
    return val_prob, prob, seconds


def evaluate_split(matrix, inputs, part, model_name, *, epochs, seed, ensemble=1, trees=300,
                   cache_dir=None, key=""):  # fmt: skip
    """Per-assay test metrics of one model on one split, and its seconds."""
    test = np.flatnonzero(part == 2)

    def member(name):
        tag = name if name in ("rf", *TREES) or ensemble == 1 else f"{name}x{ensemble}"
        if name in ("rf", "rf-tuned") and trees != 300:
            tag += f"_t{trees}"  # a --quick forest is not the full one
        return cached_member(
            cache_dir, f"{key}_{tag}", part,
            lambda: member_predictions(matrix, inputs, part, name, epochs=epochs, seed=seed,
                                       ensemble=1 if name in ("rf", *TREES) else ensemble,
                                       trees=trees),
        )  # fmt: skip

    if model_name == "ensemble":
        # Members trained once (or reused); members and calibration chosen on validation only.
        val_probs, test_probs, seconds = {}, {}, np.zeros(2)
        for name in ENSEMBLE_MEMBERS:
            val_probs[name], test_probs[name], s = member(name)
            seconds += s  # the ensemble costs its members' training
        t0, c0 = time.perf_counter(), time.process_time()
        combo = CalibratedEnsemble().select(val_probs, matrix.values[part == 1])
        prob, _ = combo.combine(test_probs)
        seconds += (time.perf_counter() - t0, time.process_time() - c0)
        val_auroc = combo.search_[0]["validation_auroc"]
        for c in combo.search_:  # every candidate, best first
            print(f"  ensemble candidate {'+'.join(c['members']):25s} validation ROC-AUC "
                  f"{c['validation_auroc']:.4f}{'  <- chosen' if c['chosen'] else ''}", flush=True)  # fmt: skip
    else:
        val_prob, prob, seconds = member(model_name)
        val_auroc = mean_auroc(matrix.values[part == 1], val_prob)
    preds = predictions_frame(matrix, prob, test, fold=0, modality=model_name)
    return assay_fold_metrics(preds), seconds, val_auroc


def descriptors(mols: list, *, cache: str | None) -> np.ndarray:
    """RDKit 2D descriptors of ``mols`` (about 20 ms each), reused from ``cache`` if it fits."""
    if cache and Path(cache).is_file():
        values = np.load(cache)
        if values.shape == (len(mols), len(descriptor_names())):
            return values
        print(f"{cache} holds {values.shape}, not these molecules; recomputing", flush=True)
    values = rdkit_descriptors(mols, progress=True)
    if cache:
        np.save(cache, values)
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=TOX21,
        help="assay matrix: CSV with smiles + one column per assay (default: bundled Tox21)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="short run: 1,000 compounds, RandomForests of 50 trees, networks of 3 epochs, "
        "and unless given, --models rf --splits random:0 (seconds)",
    )
    parser.add_argument(
        "--trees", type=int, default=300, help="trees of the RandomForests (rf, rf-tuned)"
    )
    parser.add_argument(
        "--models", default=None, help=f"comma-separated: {MODELS} (default rf,dmpnn-desc)"
    )
    parser.add_argument(
        "--splits",
        default=None,
        help="comma-separated kind:seed, kind random or scaffold "
        "(default random:0,random:1,random:2,scaffold:0)",
    )
    parser.add_argument("--epochs", type=int, default=None, help="maximum epochs (default 30)")
    parser.add_argument("--ensemble", type=int, default=1, help="networks averaged per split")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--max-compounds", type=int, default=None, help="subsample (quick runs)")
    parser.add_argument("--store", default=":memory:")
    parser.add_argument(
        "--descriptors-cache", default=None, help=".npy file to reuse RDKit descriptors across runs"
    )
    parser.add_argument(
        "--predictions-dir",
        default=None,
        help="folder keeping each model's validation and test probabilities per split "
        "(reused by later runs and by the ensemble instead of retraining)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.models = args.models or "rf"
        args.splits = args.splits or "random:0"
        args.max_compounds = args.max_compounds or 1000
        args.trees = min(args.trees, 50)
        args.epochs = min(args.epochs or 3, 3)  # the Noam warm-up takes 2
    args.models = args.models or "rf,dmpnn-desc"
    args.splits = args.splits or "random:0,random:1,random:2,scaffold:0"
    args.epochs = args.epochs or 30
    args.dataset = args.data.name.split(".")[0]  # tox21.csv.gz -> tox21
    models = args.models.split(",")
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; valid: {list(MODELS)}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    matrix = read_assay_matrix(args.data)
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
    inputs = {"morgan": morgan_fingerprints(mols)}
    trained = set(models) | (set(ENSEMBLE_MEMBERS) if "ensemble" in models else set())
    if any(m in TREES for m in trained):
        inputs["counts"] = morgan_fingerprints(mols, counts=True).astype(np.float32)
    if any(m.endswith("-desc") or m in TREES for m in trained):
        inputs["descriptors"] = descriptors(mols, cache=args.descriptors_cache)
    if any(m.startswith("dmpnn") for m in trained):
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
            metrics, seconds, val_auroc = evaluate_split(
                matrix,
                inputs,
                part,
                model_name,
                epochs=args.epochs,
                seed=seed,
                ensemble=1 if model_name in ("rf", *TREES) else args.ensemble,
                trees=args.trees,
                cache_dir=args.predictions_dir,
                key=f"{args.dataset}_{kind}_{seed}_e{args.epochs}",
            )
            evaluated = metrics.filter(pl.col("evaluated"))
            row = {
                "dataset": args.dataset,
                "split": kind,
                "seed": seed,
                "model": model_name,
                "mean_auroc": evaluated["auroc"].mean(),
                "validation_auroc": val_auroc,
                "mean_auprc": evaluated["auprc"].mean(),
                "n_assays_evaluated": evaluated.height,
                "n_assays_skipped": metrics.height
                - evaluated.height
                + (matrix.shape[1] - metrics.height),
                "seconds": seconds[0],
                "cpu_seconds": seconds[1],
            }
            rows.append(row)
            per_assay.append(
                metrics.with_columns(pl.lit(kind).alias("split"), pl.lit(seed).alias("seed"))
            )
            print(
                f"{args.dataset} {kind}:{seed} {model_name:10s} mean test ROC-AUC "
                f"{row['mean_auroc']:.4f} (validation {val_auroc:.4f}; "
                f"{row['n_assays_evaluated']} assays, "
                f"{row['n_assays_skipped']} skipped) in {seconds[0]:.0f} s ({seconds[1]:.0f} s CPU)",
                flush=True,
            )
    results = pl.DataFrame(rows)
    print_summary(results, dataset=args.dataset)
    with Store(args.store) as store:
        params = {
            "splits": args.splits,
            "epochs": args.epochs,
            "models": args.models,
            "ensemble": args.ensemble,
            "trees": args.trees,
            "max_compounds": args.max_compounds,
        }
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


def print_summary(results: pl.DataFrame, *, dataset: str) -> None:
    """One line per split kind and model: mean +- sd of the mean validation and test ROC-AUC."""
    summary = results.group_by("split", "model", maintain_order=True).agg(
        pl.len().alias("n"),
        pl.col("validation_auroc").mean().alias("val"),
        pl.col("validation_auroc").std().alias("val_sd"),
        pl.col("mean_auroc").mean().alias("auroc"),
        pl.col("mean_auroc").std().alias("sd"),
        pl.col("seconds").mean().alias("seconds"),
        pl.col("cpu_seconds").mean().alias("cpu"),
    )
    print(f"\n{dataset}: mean ROC-AUC over the evaluated assays (sd over the seeds)")
    print(
        f"{'split':9s} {'model':11s} {'n':>2s} {'validation':>16s} {'test':>16s} "
        f"{'s/split':>8s} {'CPU s':>6s}  reference"
    )
    for r in summary.iter_rows(named=True):
        many = r["n"] > 1
        vsd = f" +- {r['val_sd']:.3f}" if many else "         "
        sd = f" +- {r['sd']:.3f}" if many else "         "
        ref = REFERENCE.get(r["model"]) if dataset == "tox21" and r["split"] == "random" else None
        print(
            f"{r['split']:9s} {r['model']:11s} {r['n']:2d} {r['val']:7.3f}{vsd} "
            f"{r['auroc']:7.3f}{sd} {r['seconds']:8.0f} {r['cpu']:6.0f}  "
            f"{'' if ref is None else f'{ref:.3f}'}"
        )


if __name__ == "__main__":
    sys.exit(main())
