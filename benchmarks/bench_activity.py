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
  (``--split random:0`` or ``scaffold``), the models of ``--models`` (default:
  ``default``, i.e. :data:`DEFAULT_MODEL`, and the tuned tree baselines
  ``rf-tuned``, ``lgbm``; any held-out kind of ``cellframe activity`` by name)
  and, when ``CHEMPROP_VENV`` names a Chemprop 2.3.1 virtual environment
  (../shared/ANCHORS.md), ``chemprop train`` / ``chemprop predict`` on the same
  three CSV files, first: mean test ROC-AUC, wall and CPU time, peak RSS, and
  each one's ratios to Chemprop (to the first model without Chemprop).
  Wall and CPU time count reading the matrix and computing the descriptors
  (``features s``; near zero when ``--descriptors-cache`` gives them).
* ``inference`` (run alone): the default model (the calibrated ensemble)
  trained on Tox21 and saved (or loaded with ``--model DIR``), then
  ``--n-compounds`` (100,000) new compounds (:func:`synthetic_smiles`) predicted
  from a CSV file to a DuckDB table as ``cellframe activity-predict`` does, with
  the wall and CPU time of each stage and the peak RSS.

Usage::

    python benchmarks/bench_activity.py [--tasks featurize,metrics,rf] [--n-estimators 100]
    CHEMPROP_VENV=/path/to/venv python benchmarks/bench_activity.py --tasks models \\
        --split scaffold --descriptors-cache tox21_descriptors.npy
    python benchmarks/bench_activity.py --tasks models --max-compounds 800 --epochs 2 \\
        --chemprop-epochs 3                                  # quick check of the wiring
    python benchmarks/bench_activity.py --tasks inference [--n-compounds 100000] [--workers 1] \\
        [--model tox21_model]                       # trains and saves once, then loads
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


#: The model the benchmark calls ``default``: ``cellframe activity``'s recommended
#: held-out model, as a ``[modalities]`` entry and ``[model]`` settings of a held-out
#: config (:func:`cellframe.activity.holdout_experiment.holdout_models` builds it). The
#: one place to change when the recommended model changes; any other kind
#: (``HOLDOUT_KINDS``) is benched by name with ``--models``.
DEFAULT_MODEL: dict = {"kind": "ensemble"}


#: Models of ``--tasks models`` unless ``--models`` names others; ``chemprop`` is
#: added when ``CHEMPROP_VENV`` is set.
MODEL_TOOLS = ("default", "rf-tuned", "lgbm")

#: Model names that are not a ``HOLDOUT_KINDS`` kind: name -> ``[modalities]`` entry.
MODEL_ALIASES: dict = {"dmpnn-desc": {"kind": "dmpnn", "descriptors": True}}


def model_spec(tool: str) -> dict:
    """The ``[modalities]`` entry of a benched model name.

    ``default`` is :data:`DEFAULT_MODEL`; ``dmpnn-desc`` the D-MPNN with descriptors;
    any kind of ``cellframe.activity.holdout_experiment.HOLDOUT_KINDS`` itself.

    Raises
    ------
    InvalidChoiceError
        For another name (the message lists the valid ones).
    """
    from cellframe.activity.holdout_experiment import HOLDOUT_KINDS
    from cellframe.errors import InvalidChoiceError

    if tool == "default":
        return dict(DEFAULT_MODEL)
    if tool in MODEL_ALIASES:
        return dict(MODEL_ALIASES[tool])
    if tool in HOLDOUT_KINDS:
        return {"kind": tool}
    valid = ["default", "chemprop", *MODEL_ALIASES, *HOLDOUT_KINDS]
    raise InvalidChoiceError(f"--models: unknown model {tool!r}; valid: {valid}")


def build_model(tool: str, epochs: int, threads: int = 1):
    """The unfitted model of a benched name, as ``cellframe activity`` builds it."""
    from cellframe.activity.holdout_experiment import ENSEMBLE_NETWORK, holdout_models

    # The networks' recipe is the activity command's (Chemprop's: D-MPNN 300 x 3, one
    # hidden layer of 300, no dropout, Noam), seed 0, epochs from ``--epochs``; the
    # patience lets the schedule run (the best validation epoch is kept).
    epoch_settings = {"warmup_epochs": min(2, epochs - 1), "max_epochs": epochs, "patience": epochs}
    settings = {**ENSEMBLE_NETWORK, "seed": 0, **epoch_settings}
    model = holdout_models({tool: model_spec(tool)}, settings)[tool]
    for member in getattr(model, "members", [model]):
        if hasattr(member, "n_jobs"):
            member.n_jobs = threads
    return model


def _split_data(args: argparse.Namespace, *, descriptors: bool = True):
    """The Tox21 matrix (parseable compounds), its descriptors (or None) and the 0/1/2 partition."""
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
    if descriptors and cache and cache.is_file():
        desc = np.load(cache)
        if desc.shape[0] != len(mols):
            desc = None
    if descriptors and desc is None:
        desc = rdkit_descriptors(mols, workers=args.workers)
        if cache:
            np.save(cache, desc)
    if args.max_compounds and len(mols) > args.max_compounds:
        keep = np.sort(np.random.default_rng(0).choice(len(mols), args.max_compounds, False))
        m = m.subset(compounds=keep)
        desc = None if desc is None else desc[keep]
    kind, _, seed = args.split.partition(":")
    part = (
        scaffold_partition(m.smiles)
        if kind == "scaffold"
        else random_partition(m.shape[0], seed=int(seed or 0))
    )
    return m, desc, part


def _model_child(tool: str, args: argparse.Namespace, out: str) -> None:
    """Train one model on the split, score the test part; time, peak RSS and AUROC to ``out``."""
    import resource
    import tempfile

    # The clock starts before the data are read: both tools pay for reading the
    # matrix and featurizing (cellframe's descriptors, unless --descriptors-cache
    # gives them; Chemprop featurizes inside ``chemprop train``).
    from cellframe.activity.config_checks import needs_descriptors

    t0 = time.perf_counter()  # only the models that read descriptors compute them
    uses_descriptors = tool != "chemprop" and needs_descriptors(model_spec(tool))
    m, desc, part = _split_data(args, descriptors=uses_descriptors)
    features_s = time.perf_counter() - t0
    if tool == "chemprop":
        with tempfile.TemporaryDirectory() as tmp:
            auroc = run_chemprop(
                m, part, Path(os.environ["CHEMPROP_VENV"]), Path(tmp), epochs=args.chemprop_epochs
            )
        used = resource.getrusage(resource.RUSAGE_CHILDREN)  # Chemprop's processes
        peak = used.ru_maxrss / 1024
        used_cpu = used.ru_utime + used.ru_stime
    else:
        import torch

        from cellframe.activity import train_holdout
        from cellframe.activity.holdout import mean_auroc_per_model

        torch.set_num_threads(args.threads)
        model = build_model(tool, args.epochs, args.threads)
        split = _fixed_split(part, args.split)
        result = train_holdout(m, {tool: model}, split=split, descriptors=desc)
        auroc = float(mean_auroc_per_model(result.metrics)["mean_auroc"][0])
        used = resource.getrusage(resource.RUSAGE_SELF)
        workers = resource.getrusage(resource.RUSAGE_CHILDREN)  # descriptor processes
        peak = max(used.ru_maxrss, workers.ru_maxrss) / 1024
        used_cpu = _cpu_seconds()
    seconds = time.perf_counter() - t0
    record = {"seconds": seconds, "cpu_s": used_cpu, "peak_mb": peak, "auroc": auroc,
              "features_s": features_s}  # fmt: skip
    Path(out).write_text(json.dumps(record))


def write_chemprop_csvs(matrix, partition, folder: Path) -> list[Path]:
    """``train.csv``, ``val.csv``, ``test.csv`` of a 0/1/2 partition, as Chemprop reads them.

    Columns: ``smiles`` (the matrix's SMILES) then one column per assay, 1 / 0 per
    readout and blank where the compound was not measured (Chemprop masks it), rows
    in the matrix's order.

    Parameters
    ----------
    matrix : AssayMatrix
        With SMILES.
    partition : numpy.ndarray of int, shape (n_compounds,)
        0 train, 1 validation, 2 test.
    folder : Path
        Where to write the three files.

    Returns
    -------
    list of Path
        The train, validation and test files.
    """
    import numpy as np
    import polars as pl

    from cellframe.activity.columns import SMILES
    from cellframe.errors import InvalidInputError

    part = np.asarray(partition)
    if part.shape != (matrix.shape[0],):
        raise InvalidInputError(
            f"a partition of {part.shape} for {matrix.shape[0]} compounds; give one 0/1/2 each"
        )
    if matrix.smiles is None:
        raise InvalidInputError("Chemprop needs SMILES; the assay matrix has none")
    wide = matrix.to_wide().select(pl.col(SMILES).alias("smiles"), *matrix.assays)
    paths = []
    for k, name in enumerate(("train", "val", "test")):
        path = folder / f"{name}.csv"
        wide.filter(pl.Series(part == k)).write_csv(path)
        paths.append(path)
    return paths


def chemprop_train_command(
    exe: Path, paths: list[Path], assays: list[str], run_dir: Path, epochs: int | None = None
) -> list[str]:
    """``chemprop train`` on the three CSVs (classification, CPU, Chemprop's defaults)."""
    cmd = [str(exe), "train", "--task-type", "classification",
           "--data-path", *map(str, paths), "--smiles-columns", "smiles",
           "--target-columns", *assays,
           "--num-workers", "0", "--accelerator", "cpu", "--output-dir", str(run_dir)]  # fmt: skip
    return cmd + (["--epochs", str(epochs)] if epochs else [])


def chemprop_predict_command(exe: Path, test: Path, model: Path, preds: Path) -> list[str]:
    """``chemprop predict`` of the test CSV with one trained model file."""
    return [str(exe), "predict", "--test-path", str(test), "--smiles-columns", "smiles",
            "--model-paths", str(model), "--preds-path", str(preds),
            "--num-workers", "0", "--accelerator", "cpu"]  # fmt: skip


def _run_logged(cmd: list[str], log: Path) -> None:
    """Run a command with its output in ``log``; on failure raise with the log's tail."""
    with log.open("w") as handle:
        done = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, check=False)
    if done.returncode:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"{' '.join(cmd[:2])} exited {done.returncode}; last lines:\n{tail}")


def run_chemprop(matrix, partition, venv: Path, tmp: Path, *, epochs: int | None = None) -> float:
    """``chemprop train`` + ``chemprop predict`` on the split's CSVs; mean test ROC-AUC."""

    from cellframe.activity.model import mean_auroc

    paths = write_chemprop_csvs(matrix, partition, tmp)
    exe = venv / "bin" / "chemprop"
    run_dir = tmp / "run"
    _run_logged(
        chemprop_train_command(exe, paths, matrix.assays, run_dir, epochs), tmp / "train.log"
    )
    found = sorted(run_dir.rglob("best*.pt")) or sorted(run_dir.rglob("*.ckpt"))
    if not found:
        raise FileNotFoundError(f"chemprop train left no model file under {run_dir}")
    preds = tmp / "preds.csv"
    _run_logged(chemprop_predict_command(exe, paths[2], found[0], preds), tmp / "predict.log")
    return mean_auroc(
        matrix.values[partition == 2], read_chemprop_predictions(preds, matrix.assays)
    )


def read_chemprop_predictions(path: Path, assays: list[str]):
    """The assay columns of ``chemprop predict``'s CSV as float64, shape (n, n_assays)."""
    import numpy as np
    import polars as pl

    return pl.read_csv(path).select(assays).to_numpy().astype(np.float64)


def model_tools(models: str | None, chemprop: bool) -> list[str]:
    """The models of ``--tasks models``: ``--models`` (or :data:`MODEL_TOOLS`), Chemprop first.

    Chemprop runs first when ``CHEMPROP_VENV`` is set (it is the longest and the
    reference: a broken venv shows at once). Each name is checked by :func:`model_spec`.
    """
    names = [t.strip() for t in (models or ",".join(MODEL_TOOLS)).split(",") if t.strip()]
    for name in names:
        if name != "chemprop":
            model_spec(name)
    if chemprop and "chemprop" not in names:
        names.insert(0, "chemprop")
    return names


def _models(args: argparse.Namespace) -> None:
    import tempfile

    tools = model_tools(args.models, bool(os.environ.get("CHEMPROP_VENV")))
    if "chemprop" in tools and not os.environ.get("CHEMPROP_VENV"):
        raise SystemExit("--models chemprop needs CHEMPROP_VENV (../shared/ANCHORS.md)")
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        for tool in tools:
            out = str(Path(tmp) / f"{tool}.json")
            cmd = [sys.executable, __file__, *_passed_options(args), "--model-child", tool, out]
            subprocess.run(cmd, check=True)
            res[tool] = json.loads(Path(out).read_text())
            print(f"  {tool}: {res[tool]}", flush=True)
    print(format_table(res, args.split, args.threads))


def _passed_options(args: argparse.Namespace) -> list[str]:
    """The options a model child needs, as command-line words."""
    out = ["--split", args.split, "--epochs", str(args.epochs), "--threads", str(args.threads),
           "--workers", str(args.workers)]  # fmt: skip
    for flag, value in (("--max-compounds", args.max_compounds),
                        ("--descriptors-cache", args.descriptors_cache),
                        ("--chemprop-epochs", args.chemprop_epochs)):  # fmt: skip
        if value:
            out += [flag, str(value)]
    return out


def format_table(res: dict, split: str, threads: int) -> str:
    """Side-by-side table: ROC-AUC, wall, peak RSS and the differences / ratios to the reference.

    The reference is Chemprop when it ran, else the first model.
    """
    ref = "chemprop" if "chemprop" in res else next(iter(res))
    lines = [
        f"Tox21 {split} split, {threads} thread(s) per cellframe model; ratios against {ref}",
        f"{'model':12s} {'ROC-AUC':>8s} {'wall s':>8s} {'features s':>10s} {'CPU s':>8s} "
        f"{'peak MB':>8s} "
        f"{'AUROC diff':>10s} {'time ratio':>10s} {'RSS ratio':>9s}",
    ]
    for tool, r in res.items():
        lines.append(
            f"{tool:12s} {r['auroc']:8.3f} {r['seconds']:8.1f} "
            f"{r.get('features_s', float('nan')):10.1f} {r.get('cpu_s', float('nan')):8.1f} "
            f"{r['peak_mb']:8.0f} {r['auroc'] - res[ref]['auroc']:+10.3f} "
            f"{r['seconds'] / res[ref]['seconds']:10.2f} {r['peak_mb'] / res[ref]['peak_mb']:9.2f}"
        )
    if ref != "chemprop":
        lines.append("(set CHEMPROP_VENV to a Chemprop 2.3.1 venv to add it; ../shared/ANCHORS.md)")
    return "\n".join(lines)


def synthetic_smiles(base: list[str], n: int) -> list[str]:
    """``n`` distinct valid SMILES made from ``base`` (e.g. Tox21's), for timing inference.

    Round 0 takes the base SMILES as they are; round ``k`` prepends ``k`` carbons to
    each (a chain bonded to its first atom: ``"CC" + "c1ccccc1O"`` is 2-ethylphenol).
    A candidate is kept when RDKit parses it and its canonical SMILES is new, so no
    molecule repeats and no cache keyed by the molecule can help. Rounds go on until
    ``n`` are kept.

    Raises
    ------
    InvalidInputError
        If no base SMILES parses.
    """
    from rdkit import Chem, RDLogger

    from cellframe.errors import InvalidInputError

    RDLogger.DisableLog("rdApp.*")
    out: list[str] = []
    seen: set[str] = set()
    k = 0
    try:
        while len(out) < n:
            before = len(out)
            for s in base:
                candidate = "C" * k + s
                mol = Chem.MolFromSmiles(candidate)
                if mol is None:
                    continue
                canonical = Chem.MolToSmiles(mol)
                if canonical in seen:
                    continue
                seen.add(canonical)
                out.append(candidate)
                if len(out) == n:
                    break
            if k == 0 and not out:
                raise InvalidInputError("synthetic_smiles: no base SMILES parses")
            if len(out) == before and k > 200:
                raise InvalidInputError(f"synthetic_smiles: only {len(out)} of {n} could be made")
            k += 1
    finally:
        RDLogger.EnableLog("rdApp.*")
    return out


def _train_and_save(args: argparse.Namespace, tool: str, folder: Path) -> None:
    """Train ``tool`` on the Tox21 split of ``--split`` and save it to ``folder`` (activity --save-model)."""
    import torch

    from cellframe.activity import train_holdout
    from cellframe.activity.saved import save_activity_model

    torch.set_num_threads(args.threads)
    t0, c0 = time.perf_counter(), _cpu_seconds()
    m, desc, part = _split_data(args)
    model = build_model(tool, args.epochs, args.threads)
    result = train_holdout(m, {tool: model}, split=_fixed_split(part, args.split), descriptors=desc)
    saved = save_activity_model(
        result, folder, name=tool,
        provenance={"benchmark": "bench_activity.py --tasks inference", "epochs": args.epochs},
    )  # fmt: skip
    facts = saved.provenance
    print(f"trained {tool} on {facts['n_train']} Tox21 compounds ({args.split}, {args.epochs} "
          f"epochs) in {time.perf_counter() - t0:.0f} s wall, {_cpu_seconds() - c0:.0f} s CPU; "
          f"validation ROC-AUC {facts['validation_auroc']:.3f}, test {facts['test_auroc']:.3f}; "
          f"saved to {folder}", flush=True)  # fmt: skip


def _fixed_split(part, name: str):
    """``train_holdout``'s ``split=``: the benchmark's own 0/1/2 partition, named ``name``."""

    def fixed(smiles, fractions, seed):
        return part

    fixed.__name__ = name
    return fixed


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children: what activity-predict's timings use."""
    from cellframe.activity.saved import _cpu_seconds as cpu

    return cpu()


def _inference_child(model_dir: str, library: str, out: str, args: argparse.Namespace) -> None:
    """Load the saved model and predict the library file into a store, as activity-predict does."""
    import resource
    import tempfile
    import warnings

    import torch

    from cellframe.activity.library import open_library, predict_library
    from cellframe.activity.saved import load_activity_model
    from cellframe.store import Store

    torch.set_num_threads(args.threads)
    t0, c0 = time.perf_counter(), _cpu_seconds()
    lib = open_library(library)
    model = load_activity_model(model_dir, workers=args.workers or None)
    load = (time.perf_counter() - t0, _cpu_seconds() - c0)
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "p.duckdb") as store:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = predict_library(model, lib, store, progress=False)
        n_rows = store.sql("SELECT count(*) AS n FROM activity_library_predictions")["n"][0]
    used = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    record = {
        "stages": {"load model": load, **report.timings},
        "wall": time.perf_counter() - t0,
        "cpu": _cpu_seconds() - c0,
        "peak_mb": max(used.ru_maxrss, kids.ru_maxrss) / 1024,
        "n_compounds": report.n_compounds,
        "n_rows": int(n_rows),
        "members": getattr(model.model, "members_", None),
    }
    Path(out).write_text(json.dumps(record))


def _inference(args: argparse.Namespace) -> None:
    """Time predicting ``--n-compounds`` new compounds with the default model, end to end.

    The model (``--models``' first name, else ``default``: the calibrated ensemble)
    is loaded from ``--model DIR`` when that holds a saved model; otherwise it is
    trained on the training part of Tox21 (``--split``, ``--epochs``) and saved
    there (or to a temporary folder), as ``cellframe activity --save-model`` does.
    The compounds (:func:`synthetic_smiles`) are written to a CSV file, and a
    child process (so that its peak RSS and CPU time are the prediction's alone)
    runs what ``cellframe activity-predict MODEL LIBRARY`` runs: load the model,
    read the library in chunks, parse, fingerprints + nearest training neighbour,
    RDKit descriptors (``--workers``), each member's inputs and forward, the
    calibration, and the long table written to a DuckDB store.
    """
    import tempfile
    import warnings

    from cellframe.activity.saved import MODEL_FILE

    tool = model_tools(args.models, False)[0] if args.models else "default"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.model) if args.model else Path(tmp) / "model"
        if (folder / MODEL_FILE).is_file():
            print(f"loading the saved model in {folder} (not trained again)", flush=True)
        else:
            _train_and_save(args, tool, folder)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m, _, _ = _split_data(args, descriptors=False)
        smiles = synthetic_smiles(list(m.smiles), args.n_compounds)
        library = Path(tmp) / "library.csv"
        library.write_text(
            "compound,smiles\n" + "".join(f"c{i},{s}\n" for i, s in enumerate(smiles))
        )
        print(f"{len(smiles)} synthetic compounds; {args.threads} torch thread(s), descriptor "
              f"workers {args.workers or 'auto'}", flush=True)  # fmt: skip
        out = Path(tmp) / "inference.json"
        cmd = [sys.executable, __file__, *_passed_options(args), "--inference-child",
               str(folder), str(library), str(out)]  # fmt: skip
        subprocess.run(cmd, check=True)
        res = json.loads(out.read_text())
    wall, cpu = res["wall"], res["cpu"]
    n = res["n_compounds"]
    print(f"model members averaged: {res['members'] or tool}")
    print(f"{n} compounds -> {res['n_rows']} prediction rows; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")  # fmt: skip
    load_wall, load_cpu = res["stages"]["load model"]
    pred_wall, pred_cpu = wall - load_wall, cpu - load_cpu
    print(f"total {wall:.1f} s wall, {cpu:.1f} s CPU, of which loading the model {load_wall:.1f} s "
          f"wall, {load_cpu:.1f} s CPU; predicting {pred_wall:.1f} s wall, {pred_cpu:.1f} s CPU "
          f"({n / pred_wall:.0f} compounds/s; {1000 * pred_cpu / max(n, 1):.2f} ms CPU a "
          f"compound; goal 100,000 in 120 s); peak RSS {res['peak_mb']:.0f} MB")  # fmt: skip
    for name, (seconds, cpu_s) in res["stages"].items():
        print(f"  {name:28s} {seconds:8.1f} s {100 * seconds / wall:5.1f}%  {cpu_s:8.1f} s CPU")
    # The one-time cost of loading (imports, the forests) is not a per-compound cost.
    per = sum(c for k, (_, c) in res["stages"].items() if k != "load model") / max(n, 1)
    print(
        f"100,000 compounds at this CPU cost: {per * 1e5:.0f} s of CPU "
        f"({per * 1e5 / (os.cpu_count() or 1):.0f} s on {os.cpu_count()} idle cores if it all "
        "spread over them; only the descriptors do)"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The benchmark's command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="featurize,metrics,rf",
                        help="featurize,metrics,rf; or models; or inference (each alone)")  # fmt: skip
    parser.add_argument("--n-estimators", type=int, default=100)
    parser.add_argument("--child", nargs=3, metavar=("TASK", "TOOL", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--split", default="random:0", help="random:SEED or scaffold (models)")
    parser.add_argument("--models", default=None,
                        help=f"comma list (models; default {','.join(MODEL_TOOLS)}): default, "
                        "dmpnn-desc or a held-out kind of cellframe activity")  # fmt: skip
    parser.add_argument("--epochs", type=int, default=30, help="the networks' epochs (models)")
    parser.add_argument("--chemprop-epochs", type=int, default=None,
                        help="Chemprop's epochs (default: Chemprop's own, 50)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1, help="threads per model (models)")
    parser.add_argument("--workers", type=int, default=0,
                        help="descriptor processes (0: one per core)")  # fmt: skip
    parser.add_argument("--max-compounds", type=int, default=None, help="subsample (models)")
    parser.add_argument("--descriptors-cache", default=None, help=".npy of the descriptors")
    parser.add_argument("--n-compounds", type=int, default=100_000, help="compounds (inference)")
    parser.add_argument("--model-child", nargs=2, metavar=("TOOL", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--model", default=None,
                        help="saved model directory (inference): loaded when it holds one, "
                        "else the trained model is saved there")  # fmt: skip
    parser.add_argument("--inference-child", nargs=3, metavar=("MODEL", "LIBRARY", "OUT"),
                        help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args(argv)
    tasks = args.tasks.split(",")
    alone = {"models", "inference"} & set(tasks)
    if alone and len(tasks) > 1:
        parser.error(f"--tasks {sorted(alone)[0]} runs alone (minutes); give it by itself")
    unknown = set(tasks) - {"featurize", "metrics", "rf", "models", "inference"}
    if unknown:
        parser.error(
            f"unknown task(s) {sorted(unknown)}; valid: featurize, metrics, rf, models, inference"
        )
    if args.models is not None:
        try:
            model_tools(args.models, False)
        except Exception as err:  # InvalidChoiceError, reported as a usage error
            parser.error(str(err))
    return args


def main() -> int:
    args = parse_args()
    if args.model_child:
        _model_child(args.model_child[0], args, args.model_child[1])
        return 0
    if args.inference_child:
        _inference_child(*args.inference_child, args)
        return 0
    if args.tasks == "models":
        _models(args)
        return 0
    if args.tasks == "inference":
        _inference(args)
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
