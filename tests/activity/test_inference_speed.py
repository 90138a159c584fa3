"""benchmarks/bench_activity.py without running Chemprop or a model: its command line,
the Chemprop CSVs and commands, the side-by-side table and the synthetic compounds."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cellframe.activity.matrix import AssayMatrix

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_activity.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_activity", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_activity"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("bench_activity", None)


def test_arguments_defaults_and_options(bench):
    args = bench.parse_args([])
    assert (args.tasks, args.split, args.epochs, args.threads) == (
        "featurize,metrics,rf",
        "random:0",
        30,
        1,
    )
    assert (args.models, args.chemprop_epochs, args.workers, args.n_compounds) == (
        None,
        None,
        0,
        100_000,
    )
    args = bench.parse_args(
        ["--tasks", "models", "--split", "scaffold", "--models", "default,lgbm,dmpnn-desc",
         "--chemprop-epochs", "5", "--descriptors-cache", "d.npy"]
    )  # fmt: skip
    assert (args.tasks, args.split, args.models, args.chemprop_epochs) == (
        "models", "scaffold", "default,lgbm,dmpnn-desc", 5
    )  # fmt: skip
    # The options a model child gets repeat the parent's.
    assert bench._passed_options(args) == [
        "--split", "scaffold", "--epochs", "30", "--threads", "1", "--workers", "0",
        "--descriptors-cache", "d.npy", "--chemprop-epochs", "5",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--tasks", "models,rf"], "runs alone"),
        (["--tasks", "inference,featurize"], "runs alone"),
        (["--tasks", "speed"], "unknown task"),
        (["--tasks", "models", "--models", "default,xgboost"], "unknown model 'xgboost'"),
    ],
)
def test_bad_arguments_are_usage_errors(bench, argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        bench.parse_args(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_model_names(bench):
    from cellframe.activity.holdout_experiment import HOLDOUT_KINDS
    from cellframe.errors import InvalidChoiceError

    assert bench.model_tools(None, chemprop=False) == ["default", "rf-tuned", "lgbm"]
    # Chemprop first when its venv is given; not twice when named.
    assert bench.model_tools(None, chemprop=True) == ["chemprop", "default", "rf-tuned", "lgbm"]
    assert bench.model_tools("lgbm, chemprop", chemprop=True) == ["lgbm", "chemprop"]
    assert bench.model_spec("default") == bench.DEFAULT_MODEL
    assert bench.model_spec("dmpnn-desc") == {"kind": "dmpnn", "descriptors": True}
    for kind in HOLDOUT_KINDS:  # a new kind of cellframe activity is benched by its name
        assert bench.model_spec(kind) == {"kind": kind}
    with pytest.raises(InvalidChoiceError, match=r"valid: .*'default'.*'rf-tuned'"):
        bench.model_spec("chemprop2")


def test_default_model_is_built_as_the_cli_builds_it(bench):
    from cellframe.activity.ensemble import CalibratedEnsemble
    from cellframe.activity.holdout import WithDescriptors
    from cellframe.activity.model import MultitaskClassifier
    from cellframe.activity.trees import TreeBaseline

    assert bench.DEFAULT_MODEL == {"kind": "ensemble"}
    assert isinstance(bench.build_model("default", epochs=2), CalibratedEnsemble)
    model = bench.build_model("dmpnn-desc", epochs=30)
    assert isinstance(model, WithDescriptors) and isinstance(model.model, MultitaskClassifier)
    net = model.model
    assert (net.encoder, net.encoder_hidden, net.encoder_depth, tuple(net.hidden_sizes)) == (
        "dmpnn", 300, 3, (300,)
    )  # fmt: skip
    assert (net.lr_schedule, net.warmup_epochs, net.max_epochs, net.patience) == ("noam", 2, 30, 30)
    assert bench.build_model("dmpnn-desc", epochs=2).model.warmup_epochs == 1
    tree = bench.build_model("lgbm", epochs=30, threads=2)
    assert isinstance(tree, TreeBaseline) and tree.n_jobs == 2


@pytest.fixture
def matrix() -> AssayMatrix:
    values = np.array([[1, 0], [0, np.nan], [np.nan, 1], [0, 0], [1, np.nan]], dtype=np.float32)
    smiles = ["CCO", "c1ccccc1O", "CC(=O)[O-].[Na+]", "C[C@H](N)C(=O)O", "CCN"]
    return AssayMatrix(
        compounds=[f"c{i}" for i in range(5)], assays=["NR-AR", "SR-p53"], values=values,
        smiles=smiles,
    )  # fmt: skip


def test_chemprop_csvs(bench, matrix, tmp_path):
    part = np.array([0, 2, 0, 1, 2])
    paths = bench.write_chemprop_csvs(matrix, part, tmp_path)
    assert [p.name for p in paths] == ["train.csv", "val.csv", "test.csv"]
    # Exactly the text Chemprop reads: SMILES first, blank where a compound was not measured.
    assert paths[0].read_text() == "smiles,NR-AR,SR-p53\nCCO,1,0\nCC(=O)[O-].[Na+],,1\n"
    assert paths[1].read_text() == "smiles,NR-AR,SR-p53\nC[C@H](N)C(=O)O,0,0\n"
    assert paths[2].read_text() == "smiles,NR-AR,SR-p53\nc1ccccc1O,0,\nCCN,1,\n"
    from cellframe.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="partition"):
        bench.write_chemprop_csvs(matrix, part[:3], tmp_path)


def test_chemprop_commands_and_predictions(bench, tmp_path):
    exe = Path("/venv/bin/chemprop")
    paths = [tmp_path / "train.csv", tmp_path / "val.csv", tmp_path / "test.csv"]
    train = bench.chemprop_train_command(exe, paths, ["NR-AR", "SR-p53"], tmp_path / "run")
    assert train == [
        "/venv/bin/chemprop", "train", "--task-type", "classification",
        "--data-path", *map(str, paths), "--smiles-columns", "smiles",
        "--target-columns", "NR-AR", "SR-p53", "--num-workers", "0", "--accelerator", "cpu",
        "--output-dir", str(tmp_path / "run"),
    ]  # fmt: skip
    assert bench.chemprop_train_command(exe, paths, ["a"], tmp_path, epochs=3)[-2:] == [
        "--epochs", "3"
    ]  # fmt: skip
    predict = bench.chemprop_predict_command(
        exe, paths[2], tmp_path / "best.pt", tmp_path / "p.csv"
    )
    assert predict[1:3] == ["predict", "--test-path"]
    assert predict[predict.index("--model-paths") + 1] == str(tmp_path / "best.pt")
    # chemprop predict writes the test file back with its target columns replaced by
    # probabilities; the assays are read by name, in the matrix's order.
    (tmp_path / "p.csv").write_text("smiles,SR-p53,NR-AR\nc1ccccc1O,0.25,0.5\nCCN,0.125,1.0\n")
    prob = bench.read_chemprop_predictions(tmp_path / "p.csv", ["NR-AR", "SR-p53"])
    np.testing.assert_array_equal(prob, [[0.5, 0.25], [1.0, 0.125]])


def test_side_by_side_table(bench):
    res = {
        "chemprop": {
            "auroc": 0.80,
            "seconds": 600.0,
            "cpu_s": 1100.0,
            "peak_mb": 1200.0,
            "features_s": 0.5,
        },
        "default": {
            "auroc": 0.85,
            "seconds": 200.0,
            "cpu_s": 190.0,
            "peak_mb": 1500.0,
            "features_s": 30.0,
        },
    }
    lines = bench.format_table(res, "scaffold", 1).splitlines()
    assert lines[0].endswith("ratios against chemprop")
    assert lines[2].split() == [
        "chemprop",
        "0.800",
        "600.0",
        "0.5",
        "1100.0",
        "1200",
        "+0.000",
        "1.00",
        "1.00",
    ]
    assert lines[3].split() == [
        "default",
        "0.850",
        "200.0",
        "30.0",
        "190.0",
        "1500",
        "+0.050",
        "0.33",
        "1.25",
    ]
    no_chemprop = bench.format_table({"default": res["default"]}, "random:0", 1)
    assert "ratios against default" in no_chemprop and "CHEMPROP_VENV" in no_chemprop


def test_synthetic_smiles_are_distinct_valid_molecules(bench):
    from rdkit import Chem

    base = ["c1ccccc1O", "CCO", "OCC", "C1CC", "[Na+].[Cl-]"]
    got = bench.synthetic_smiles(base, 9)
    # Round 0: the parseable ones whose molecule is new ("OCC" is ethanol again, "C1CC"
    # does not parse); round 1 prepends one carbon ("COCC" is an ether, new; "CC1CC"
    # still does not parse); round 2 two, until 9 are kept.
    assert got == ["c1ccccc1O", "CCO", "[Na+].[Cl-]", "Cc1ccccc1O", "CCCO", "COCC",
                   "C[Na+].[Cl-]", "CCc1ccccc1O", "CCCCO"]  # fmt: skip
    canonical = {Chem.MolToSmiles(Chem.MolFromSmiles(s)) for s in got}
    assert len(got) == 9 and len(canonical) == 9
    from cellframe.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="no base SMILES parses"):
        bench.synthetic_smiles(["C1CC"], 3)


def test_bench_reads_the_real_tox21_the_same_way(bench, moleculenet):
    """The CSVs for Chemprop hold every parseable Tox21 compound once, split 80/10/10."""
    import argparse
    import warnings

    args = argparse.Namespace(descriptors_cache=None, max_compounds=None, split="random:0",
                              workers=1)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m, desc, part = bench._split_data(args, descriptors=False)
    assert desc is None and np.bincount(part).tolist() == [6258, 782, 783]
    assert m.shape == (7823, 12)
    wide = m.to_wide()
    assert wide.height == 7823 and pl.Series(m.smiles).n_unique() == 7823


def test_inference_child_times_the_saved_model_path(bench, matrix, tmp_path):
    """The timed child loads a saved model and predicts a library file as activity-predict does."""
    import json
    import warnings

    from cellframe.activity import RandomForestBaseline, train_holdout
    from cellframe.activity.saved import load_activity_model, save_activity_model

    def fixed(smiles, fractions, seed):
        return np.array([0, 0, 1, 0, 2])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = train_holdout(matrix, {"rf": RandomForestBaseline(n_estimators=5)}, split=fixed)
    save_activity_model(run, tmp_path / "model")
    library = tmp_path / "lib.csv"
    library.write_text("compound,smiles\na,CCO\nb,C1CC\nc,c1ccccc1O\n")
    args = bench.parse_args(["--tasks", "inference", "--model", str(tmp_path / "model")])
    assert args.model == str(tmp_path / "model")
    bench._inference_child(str(tmp_path / "model"), str(library), str(tmp_path / "o.json"), args)
    res = json.loads((tmp_path / "o.json").read_text())
    assert (res["n_compounds"], res["n_rows"]) == (3, 6)  # 3 compounds x 2 assays, bad one kept
    stages = res["stages"]
    assert list(stages)[:1] == ["load model"]
    assert {"parse SMILES", "fingerprints + domain", "forward: rf", "write (DuckDB)"} <= set(stages)
    assert all(wall >= 0 and cpu >= 0 for wall, cpu in stages.values())
    assert res["wall"] >= sum(wall for wall, _ in stages.values()) - 1e-6
    # The model timed is the saved one: its assays and member, as the Python API loads it.
    model = load_activity_model(tmp_path / "model")
    assert model.assays == ["NR-AR", "SR-p53"] and model.name == "rf"
