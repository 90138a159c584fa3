"""``cellframe activity`` on a held-out split: the user's column or files, every model kind."""

from __future__ import annotations

import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from cellframe.cli import main
from cellframe.store import Store
from tests.activity._screens import scaffold_screen


def _challenge(tmp_path):
    """A challenge-style CSV: ID, SMILES, a split column, two assays."""
    frame = scaffold_screen(validation="Validation")  # split labels are case-insensitive
    frame.write_csv(tmp_path / "challenge.csv")
    return frame


CONFIG = """
[data]
matrix = "challenge.csv"
compound_column = "ID"

[split]
column = "set"

[modalities]
chemprop = { kind = "dmpnn", descriptors = true, ensemble = 2 }
lgbm = { kind = "lgbm" }
rf = { kind = "rf-tuned" }

[model]
lr_schedule = "noam"
warmup_epochs = 1
max_epochs = 2
patience = 2
hidden_sizes = [32]
tree_params = { lgbm = { n_estimators = 30 }, rf = { n_estimators = 20 } }
tree_grid = { lgbm = { num_leaves = [7] } }
"""


def test_user_split_column_runs_every_recommended_model(tmp_path, capsys):
    frame = _challenge(tmp_path)
    (tmp_path / "exp.toml").write_text(CONFIG)
    store = tmp_path / "s.duckdb"
    assert main(["activity", str(tmp_path / "exp.toml"), "--store", str(store), "-q"]) == 0
    with Store(store, read_only=True) as s:
        part = s.read("activity_partition")
        preds = s.read("activity_predictions")
        metrics = s.read("activity_metrics")
        summary = s.read("activity_summary")
    # the user's parts, by ID, exactly
    want = dict(zip(frame["ID"], frame["set"].str.to_lowercase(), strict=True))
    names = {0: "train", 1: "validation", 2: "test"}
    assert {c: names[p] for c, p in part.iter_rows()} == want
    assert set(preds["compound"]) == {c for c, p in want.items() if p == "test"}
    assert set(summary["model"]) == {"chemprop", "lgbm", "rf"}
    for row in metrics.iter_rows(named=True):  # AUROC recomputed from the stored predictions
        p = preds.filter((pl.col("model") == row["model"]) & (pl.col("assay") == row["assay"]))
        assert row["auroc"] == pytest.approx(roc_auc_score(p["readout"], p["probability"]))
    assert {"train_similarity", "in_domain", "ensemble_spread"} <= set(preds.columns)
    assert (preds["n_models"] == 3).all()
    # the two-seed ensemble carries its members' spread; single models carry 0
    spread = dict(preds.group_by("model").agg(pl.col("member_spread").max()).iter_rows())
    assert spread["chemprop"] > 0 and spread["lgbm"] == spread["rf"] == 0


def test_train_validation_test_files(tmp_path):
    frame = _challenge(tmp_path)
    for name, value in (("train", "train"), ("val", "validation"), ("test", "test")):
        frame.filter(pl.col("set").str.to_lowercase() == value).drop("set").write_csv(
            tmp_path / f"{name}.csv"
        )
    (tmp_path / "exp.toml").write_text(
        '[data]\ncompound_column = "ID"\n'
        '[split]\nfiles = { train = "train.csv", validation = "val.csv", test = "test.csv" }\n'
        '[modalities]\nrf = { kind = "rf" }\n[model]\nn_estimators = 10\n'
    )
    store = tmp_path / "s.duckdb"
    assert main(["activity", str(tmp_path / "exp.toml"), "--store", str(store), "-q"]) == 0
    with Store(store, read_only=True) as s:
        part = s.read("activity_partition")
        preds = s.read("activity_predictions")
    assert part.height == frame.height and sorted(part["part"].value_counts()["count"]) == [
        12, 12, 36,
    ]  # fmt: skip
    test_ids = set(frame.filter(pl.col("set") == "test")["ID"])
    assert set(preds["compound"]) == test_ids


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (('lgbm = { kind = "lgbm" }', 'lgbm = { kind = "xgb" }'), "unknown kind 'xgb'"),
        (('kind = "lgbm" }', 'kind = "lgbm", descriptors = true }'), "descriptors = true"),
        (('column = "set"', 'column = "fold"'), "'fold'"),
        (("ensemble = 2", "ensemble = 0"), "ensemble = 0"),
        (('column = "set"', 'holdout = true\nmethod = "kmeans"'), "'kmeans' with holdout"),
        (('lr_schedule = "noam"', 'lr_schedule = "cosine"'), "cosine"),
        (
            ('compound_column = "ID"', 'compound_column = "ID"\nassay_colums = ["A"]'),
            "assay_colums",
        ),
    ],
)
def test_config_errors_are_one_line_exit_2(tmp_path, capsys, edit, message):
    _challenge(tmp_path)
    (tmp_path / "exp.toml").write_text(CONFIG.replace(*edit))
    store = tmp_path / "s.duckdb"
    assert main(["activity", str(tmp_path / "exp.toml"), "--store", str(store), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    if store.exists():  # nothing written
        with Store(store, read_only=True) as s:
            assert not [t for t in s.table_names() if t.startswith("activity_")]


def test_bad_split_value_names_the_line(tmp_path, capsys):
    frame = _challenge(tmp_path)
    frame.with_columns(pl.col("set").replace({"test": "tset"})).write_csv(
        tmp_path / "challenge.csv"
    )
    (tmp_path / "exp.toml").write_text(CONFIG)
    assert main(["activity", str(tmp_path / "exp.toml"), "--store", str(tmp_path / "s.duckdb"),
                 "-q"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "line 5, column 'set': 'tset' names no part" in err


def test_cli_prints_what_the_reader_took(tmp_path, capsys):
    _challenge(tmp_path)
    (tmp_path / "exp.toml").write_text(
        '[data]\nmatrix = "challenge.csv"\ncompound_column = "ID"\nassay_columns = ["B"]\n'
        '[split]\ncolumn = "set"\n[modalities]\nrf = { kind = "rf" }\n[model]\nn_estimators = 5\n'
    )
    assert (
        main(["activity", str(tmp_path / "exp.toml"), "--store", str(tmp_path / "s.duckdb")]) == 0
    )
    out = capsys.readouterr().out
    assert "60 compounds x 1 assays (B)" in out and "1 identifier column(s) ['set']" in out
    assert "1 column(s) ignored ('A': not named in assay_columns)" in out


def test_cleaned_split_that_fails_leaves_the_store_unchanged(tmp_path, capsys):
    frame = _challenge(tmp_path)
    # cleaning runs and succeeds, then the split fails (no test part): nothing is written
    frame.with_columns(pl.col("set").replace({"test": "train"})).write_csv(
        tmp_path / "challenge.csv"
    )
    (tmp_path / "exp.toml").write_text(
        CONFIG.split("[modalities]")[0]
        + "[clean]\nfrequent_hitter_fraction = 1.0\n"
        + '[modalities]\nrf = { kind = "rf" }\n'
    )
    store = tmp_path / "s.duckdb"
    assert main(["activity", str(tmp_path / "exp.toml"), "--store", str(store), "-q"]) == 2
    assert "leaves the test part empty" in capsys.readouterr().err
    with Store(store, read_only=True) as s:
        assert not [t for t in s.table_names() if t.startswith("activity_")]
