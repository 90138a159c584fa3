"""``cellframe activity`` on folds: all-or-nothing writes, and the held-out model kinds per fold."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cellframe.activity.columns import ASSAY, COMPOUND, FOLD, MODALITY, PROBABILITY, READOUT
from cellframe.activity.experiment import load_config, run_experiment
from cellframe.cli import main
from cellframe.store import Store
from tests.activity._screens import scaffold_screen

CONFIG = """
[data]
matrix = "screen.csv"
compound_column = "ID"

[clean]
enabled = false

[split]
method = "scaffold"
n_folds = 3

[modalities]
CS = { kind = "morgan", n_bits = 64 }
CS_RF = { kind = "rf", n_bits = 64 }

[model]
max_epochs = 2
patience = 2
hidden_sizes = [8]
n_estimators = 5
grid = {}
"""


def _screen(tmp_path: Path) -> pl.DataFrame:
    """The 60-compound screen without a split column (tests/activity/_screens.py)."""
    frame = scaffold_screen(split=False)
    frame.write_csv(tmp_path / "screen.csv")
    return frame


def _store_with_history(path: Path) -> str:
    """A store holding an earlier run's table and another table; returns its bytes' digest."""
    with Store(path) as store:
        store.write("other", pl.DataFrame({"x": [1.0, 2.0]}), step="test")
        store.write("activity_summary", pl.DataFrame({"old": ["run"]}), step="test")
    return _digest(path)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_model_failing_on_fold_3_leaves_the_store_byte_for_byte(tmp_path, monkeypatch):
    from cellframe.activity.model import MultitaskClassifier

    _screen(tmp_path)
    (tmp_path / "exp.toml").write_text(CONFIG)
    db = tmp_path / "s.duckdb"
    before = _store_with_history(db)
    fit = MultitaskClassifier.fit
    calls = []

    def failing_fit(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # readouts and folds are known by now
            raise RuntimeError("out of memory on fold 3")
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(MultitaskClassifier, "fit", failing_fit)
    config = load_config(tmp_path / "exp.toml")
    with Store(db) as store, pytest.raises(RuntimeError, match="fold 3"):
        run_experiment(config, store, progress=False)
    assert len(calls) == 3
    assert _digest(db) == before
    # control: the same run without the failure writes every table, replacing the old one
    monkeypatch.setattr(MultitaskClassifier, "fit", fit)
    with Store(db) as store:
        result = run_experiment(config, store, progress=False)
        assert store.read("activity_summary").columns == result["summary"].columns
        assert set(store.read("activity_summary")[MODALITY]) == {"CS", "CS_RF"}
        assert store.read("other")["x"].to_list() == [1.0, 2.0]
    assert _digest(db) != before


def test_a_write_failing_part_way_rolls_back_every_table(tmp_path, monkeypatch):
    _screen(tmp_path)
    (tmp_path / "exp.toml").write_text(CONFIG)
    db = tmp_path / "s.duckdb"
    before = _store_with_history(db)
    write = Store.write
    names = []

    def failing_write(self, table, *args, **kwargs):
        names.append(table)
        if len(names) == 4:
            raise OSError("disk full")
        return write(self, table, *args, **kwargs)

    monkeypatch.setattr(Store, "write", failing_write)
    rc = None
    with pytest.raises(OSError, match="disk full"):
        rc = main(["activity", str(tmp_path / "exp.toml"), "--store", str(db), "-q"])
    assert rc is None and names[:3] == [
        "activity_readouts",
        "activity_folds",
        "activity_predictions",
    ]
    assert _digest(db) == before
    assert not (tmp_path / "s.duckdb.wal").exists()
    with Store(db, read_only=True) as store:
        assert store.read("activity_summary")["old"].to_list() == ["run"]
        assert "activity_readouts" not in store.table_names()


def test_a_held_out_run_whose_write_fails_rolls_back_every_table(tmp_path, monkeypatch):
    frame = _screen(tmp_path)
    part = np.array(["train", "validation", "train", "test", "train"] * 12)
    frame.with_columns(pl.Series("set", part)).write_csv(tmp_path / "screen.csv")
    (tmp_path / "exp.toml").write_text(
        '[data]\nmatrix = "screen.csv"\ncompound_column = "ID"\n[split]\ncolumn = "set"\n'
        '[modalities]\nrf = { kind = "rf" }\n[model]\nn_estimators = 5\n'
    )
    db = tmp_path / "s.duckdb"
    before = _store_with_history(db)
    write = Store.write
    names = []

    def failing_write(self, table, *args, **kwargs):
        names.append(table)
        if table == "activity_metrics":  # readouts, partition, predictions came before it
            raise OSError("disk full")
        return write(self, table, *args, **kwargs)

    monkeypatch.setattr(Store, "write", failing_write)
    with pytest.raises(OSError, match="disk full"):
        main(["activity", str(tmp_path / "exp.toml"), "--store", str(db), "-q"])
    assert names.index("activity_metrics") == 3
    assert _digest(db) == before
    monkeypatch.setattr(Store, "write", write)  # control: the same run writes
    assert main(["activity", str(tmp_path / "exp.toml"), "--store", str(db), "-q"]) == 0
    with Store(db, read_only=True) as store:
        assert store.read("activity_partition").height == 60
        assert store.read("activity_summary")["model"].to_list() == ["rf"]


HELD_OUT_KINDS = """
[data]
matrix = "screen.csv"
compound_column = "ID"

[clean]
enabled = false

[split]
method = "scaffold"
n_folds = 3

[modalities]
lgbm = { kind = "lgbm" }
rf = { kind = "rf-tuned" }
best = { kind = "ensemble", members = ["rf-tuned", "lgbm"] }
net = { kind = "morgan", descriptors = true }

[model]
max_epochs = 2
patience = 2
hidden_sizes = [8]
seed = 4
tree_params = { lgbm = { n_estimators = 20, min_child_samples = 3 }, rf = { n_estimators = 15 } }
tree_grid = { lgbm = { num_leaves = [3, 7] }, rf = { min_samples_leaf = [1] } }

[fusion]
late = [["lgbm", "net"]]
"""


def test_tree_descriptor_and_ensemble_kinds_cross_validate_with_an_inner_split(tmp_path):
    from cellframe.activity.chem import parse_smiles
    from cellframe.activity.descriptors import rdkit_descriptors
    from cellframe.activity.trees import TreeBaseline, tree_features

    frame = _screen(tmp_path)
    (tmp_path / "exp.toml").write_text(HELD_OUT_KINDS)
    db = tmp_path / "s.duckdb"
    assert main(["activity", str(tmp_path / "exp.toml"), "--store", str(db), "-q"]) == 0
    with Store(db, read_only=True) as store:
        folds = store.read("activity_folds")
        preds = store.read("activity_predictions")
        hyper = store.read("activity_hyperparameters")
        summary = store.read("activity_summary")
    assert set(summary[MODALITY]) == {"lgbm", "rf", "best", "net", "late_lgbm+net"}
    # every readout predicted once per model, in the fold the folds table gives it
    n_readouts = 2 * frame.height
    fold_of = dict(zip(folds[COMPOUND], folds[FOLD], strict=True))
    for model in ("lgbm", "rf", "best", "net"):
        p = preds.filter(pl.col(MODALITY) == model)
        assert p.height == n_readouts
        assert p.select(COMPOUND, ASSAY).is_unique().all()
        assert [fold_of[c] for c in p[COMPOUND]] == p[FOLD].to_list()
    # each fold's tree grid searched on its inner validation part: one point chosen per fold
    chosen = hyper.filter((pl.col(MODALITY) == "lgbm") & pl.col("chosen"))
    assert sorted(chosen[FOLD]) == [0, 1, 2]
    assert hyper.filter(pl.col(MODALITY) == "lgbm").height == 6  # 2 grid points x 3 folds
    assert set(hyper.filter(pl.col(MODALITY) == "best")["params"]) == {
        '{"members": ["rf-tuned"]}',
        '{"members": ["lgbm"]}',
        '{"members": ["rf-tuned", "lgbm"]}',
    }
    # reference: fold 1 of lgbm by hand. Training part: the other folds less the inner
    # validation draw (seed 4 + fold, 10 %); descriptors normalized on that training part.
    smiles = frame["smiles"].to_list()
    mols = parse_smiles(smiles, warn=False)
    fold = np.array([fold_of[c] for c in frame["ID"]])
    y = frame.select("A", "B").to_numpy().astype(np.float32)
    k = 1
    train = np.flatnonzero(fold != k)
    perm = np.random.default_rng(4 + k).permutation(len(train))
    n_val = max(1, round(0.1 * len(train)))
    val, inner = train[np.sort(perm[:n_val])], train[np.sort(perm[n_val:])]
    test = np.flatnonzero(fold == k)
    x = tree_features(mols, train=inner, descriptors=rdkit_descriptors(mols))
    tree = TreeBaseline(
        "lgbm",
        params={"n_estimators": 20, "min_child_samples": 3},
        grid={"num_leaves": [3, 7]},
        seed=4 + k,
    )
    prob = tree.fit(x[inner], y[inner], validation=(x[val], y[val])).predict_proba(x[test])
    want = pl.DataFrame(
        {
            COMPOUND: np.repeat(frame["ID"].to_numpy()[test], 2),
            ASSAY: ["A", "B"] * len(test),
            READOUT: y[test].ravel().astype(np.int8),
            PROBABILITY: prob.ravel().astype(np.float32),
        }
    )
    got = preds.filter((pl.col(MODALITY) == "lgbm") & (pl.col(FOLD) == k))
    got = got.select(COMPOUND, ASSAY, READOUT, PROBABILITY).sort(COMPOUND, ASSAY)
    assert got[COMPOUND].to_list() == want[COMPOUND].to_list()
    assert got[READOUT].to_list() == want[READOUT].to_list()
    np.testing.assert_allclose(got[PROBABILITY], want[PROBABILITY], rtol=0, atol=1e-6)
    assert chosen.filter(pl.col(FOLD) == k)["params"].item() == (
        f'{{"num_leaves": {tree.best_params_["num_leaves"]}}}'
    )
