"""``cellframe activity`` configs as a new user writes them: each mistake is one line, exit 2.

Every wrong config names the key and the fix on one line of stderr, exits 2 and
leaves the store byte-for-byte as it was; valid but unusual configs run.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl
import pytest

from cellframe.activity.experiment import UnusedSettingWarning
from cellframe.cli import main
from cellframe.store import Store
from tests.activity._screens import scaffold_screen

FOLDS = """
[data]
matrix = "screen.csv"
compound_column = "ID"
identifier_columns = ["set"]

[clean]
enabled = false

[split]
method = "scaffold"
n_folds = 3

[modalities]
CS = { kind = "rf", n_bits = 64 }

[model]
n_estimators = 5
"""

HELD_OUT = """
[data]
matrix = "screen.csv"
compound_column = "ID"
identifier_columns = ["set"]

[split]
column = "set"

[modalities]
rf = { kind = "rf" }

[model]
n_estimators = 5
"""


def _screen(tmp_path: Path) -> None:
    """The 60-compound screen with a train/validation/test column (tests/activity/_screens.py)."""
    scaffold_screen().write_csv(tmp_path / "screen.csv")


def _run(tmp_path: Path, config: str, capsys: pytest.CaptureFixture) -> tuple[int, list, bool]:
    """Exit status, stderr lines, and whether the (non-empty) store kept its bytes."""
    db = tmp_path / "s.duckdb"
    with Store(db) as store:
        store.write("activity_summary", pl.DataFrame({"old": ["run"]}), mode="replace", step="t")
    before = hashlib.sha256(db.read_bytes()).digest()
    (tmp_path / "exp.toml").write_text(config)
    capsys.readouterr()
    rc = main(["activity", str(tmp_path / "exp.toml"), "--store", str(db), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    return rc, err, hashlib.sha256(db.read_bytes()).digest() == before


FOLD_MISTAKES = [
    # unknown keys and tables, with the likely meant one
    ("n_folds = 3", "n_folds = 3\nnfolds = 4", "[split] unknown key(s) ['nfolds']", "'n_folds'"),
    ("[model]", "[models]", "unknown table(s) ['models']", "'model'"),
    ("n_estimators = 5", "n_estimators = 5\nlearning_rate = 0.1", "[model] unknown key(s)", "lr,"),
    ("n_bits = 64 }", "nbits = 64 }", "unknown key(s) ['nbits'] for kind 'rf'", "'n_bits'"),
    ("enabled = false", "enabled = false\npain = true", "[clean] unknown key(s) ['pain']", "pains"),
    ("n_estimators = 5", 'n_estimators = 5\n[output]\nprefx = "a"', "[output] unknown", "prefix"),
    # wrong types and values
    ("n_folds = 3", 'n_folds = "3"', "[split] n_folds = '3'", "whole number >= 2"),
    ("n_folds = 3", "n_folds = 3\nseed = 1.5", "[split] seed = 1.5", "whole number"),
    ("n_estimators = 5", 'n_estimators = "5"', "[model] n_estimators = '5'", "whole number"),
    ("n_estimators = 5", "n_estimators = 5\nhidden_sizes = 8", "hidden_sizes=8", "e.g. [512]"),
    ("n_estimators = 5", "n_estimators = 5\ndropout = 1.5", "dropout=1.5", "[0, 1)"),
    ("n_estimators = 5", "n_estimators = 5\ngrid = { drop = [0.1] }", "[model] grid", "'dropout'"),
    ("enabled = false", 'enabled = "no"', "[clean] enabled = 'no'", "true or false"),
    ('CS = { kind = "rf", n_bits = 64 }', 'CS = "rf"', "CS = 'rf' is not a table", "{ kind = "),
    ("[data]", '[output]\nprefix = "my-run"\n[data]', "[output] prefix = 'my-run'", "underscores"),
    # kinds and the options each takes
    ('kind = "rf"', 'kind = "xgboost"', "unknown kind 'xgboost'", "'lgbm'"),
    ('kind = "rf"', 'kind = "lgbm"', "n_bits apply to a plain kind morgan or rf", "remove n_bits"),
    (
        "n_bits = 64 }",
        "n_bits = 64, descriptors = true }",
        "['descriptors'] for kind 'rf'",
        "valid",
    ),
    ('kind = "rf", n_bits = 64', 'kind = "rf-tuned", descriptors = true', "descriptors", "always"),
    ("n_bits = 64 }", "n_bits = 64, ensemble = 0 }", "ensemble = 0", ">= 1"),
    ("n_bits = 64 }", "n_bits = 64, ensemble = 1.0 }", "ensemble = 1.0", ">= 1"),
    # split and fusion
    ('"scaffold"', '"kmeans"', 'method = "kmeans" needs features', "['CS']"),
    ("n_folds = 3", "n_folds = 3\nfractions = [0.8, 0.1, 0.1]", "['fractions']", "holdout = true"),
    ("n_folds = 3", "n_folds = 100", "[split] n_folds = 100", "lower n_folds"),
    (
        'CS = { kind = "rf", n_bits = 64 }',
        'CS = { kind = "rf", n_bits = 64 }\nT = { kind = "lgbm" }\n[fusion]\nearly = [["CS", "T"]]',
        "['T'] have no feature table",
        "fuse them late",
    ),
    # the data
    ('"screen.csv"', '"nope.csv"', "no assay matrix at", "nope.csv"),
    ('identifier_columns = ["set"]', "", "column 'set' was read as an assay", "identifier"),
    (
        "n_estimators = 5",
        'n_estimators = 5\n[output]\nmodel = "kept"',
        "saving a model needs a held-out split",
        "holdout = true",
    ),
]


@pytest.mark.parametrize(("old", "new", "message", "fix"), FOLD_MISTAKES)
def test_fold_config_mistakes(tmp_path, capsys, old, new, message, fix):
    _screen(tmp_path)
    assert old in FOLDS
    rc, err, unchanged = _run(tmp_path, FOLDS.replace(old, new, 1), capsys)
    assert rc == 2 and len(err) == 1, err
    assert message in err[0] and fix in err[0], err[0]
    assert unchanged


HELD_OUT_MISTAKES = [
    (
        'column = "set"',
        "holdout = true\nfractions = [0.5, 0.2, 0.2]",
        "[split] fractions = [0.5, 0.2, 0.2] (they sum to 0.9)",
        "e.g. fractions = [0.8, 0.1, 0.1]",
    ),
    ('column = "set"', "holdout = true\nfractions = [0.9, 0.1]", "[split] fractions", "three"),
    ('column = "set"', 'column = "set"\nn_folds = 5', "['n_folds']", "apply to a fold split"),
    ('column = "set"', 'column = "set"\nfractions = [1, 0, 0]', "fractions apply", "remove"),
    ('column = "set"', 'column = "ID"', "line 2, column 'ID': 'T000' names no", "'validation'"),
    ("n_estimators = 5", "n_estimators = 5\nlearning_rate = 0.1", "[model] unknown", "valid"),
    ('rf = { kind = "rf" }', 'rf = { kind = "rf", n_bits = 64 }', "['n_bits']", "valid"),
    ('rf = { kind = "rf" }', 'MO = { table = "mo" }', "chemical-structure models only", "kind"),
    ('"screen.csv"', '"nope.csv"', "no assay matrix at", "nope.csv"),
    ("n_estimators = 5", "n_estimators = 5\n[output]\nmodel = 5", "[output] model = 5", "string"),
]


@pytest.mark.parametrize(("old", "new", "message", "fix"), HELD_OUT_MISTAKES)
def test_held_out_config_mistakes(tmp_path, capsys, old, new, message, fix):
    _screen(tmp_path)
    assert old in HELD_OUT
    rc, err, unchanged = _run(tmp_path, HELD_OUT.replace(old, new, 1), capsys)
    assert rc == 2 and len(err) == 1, err
    assert message in err[0] and fix in err[0], err[0]
    assert unchanged


def test_a_bad_split_value_names_the_line(tmp_path, capsys):
    _screen(tmp_path)
    lines = (tmp_path / "screen.csv").read_text().splitlines()
    lines[4] = lines[4].replace(",test,", ",tset,")  # T003 on line 5
    (tmp_path / "screen.csv").write_text("\n".join(lines) + "\n")
    rc, err, unchanged = _run(tmp_path, HELD_OUT, capsys)
    assert rc == 2 and len(err) == 1
    assert "line 5, column 'set': 'tset' names no part" in err[0] and unchanged


def test_unusual_but_valid_fold_config_runs(tmp_path, capsys):
    # two folds, a seed, explicit defaults, a prefix starting with "_", 1-bit-radius prints
    _screen(tmp_path)
    config = (
        FOLDS.replace("n_folds = 3", 'n_folds = 2\nseed = 7\nmethod = "random"')
        .replace('method = "scaffold"\n', "")
        .replace("n_bits = 64 }", "n_bits = 32, radius = 1, ensemble = 1 }")
        + 'grid = {}\n[output]\nprefix = "_r2"\n'
    )
    rc, err, unchanged = _run(tmp_path, config, capsys)
    assert rc == 0 and err == [] and not unchanged
    with Store(tmp_path / "s.duckdb", read_only=True) as store:
        folds = store.read("_r2_folds")
        preds = store.read("_r2_predictions")
    assert sorted(folds["Metadata_Fold"].value_counts()["count"]) == [30, 30]
    assert preds.height == 120  # 60 compounds x 2 assays, each predicted once


def test_unusual_but_valid_held_out_config_runs(tmp_path, capsys):
    # 0.7 + 0.2 + 0.1 is 0.9999999999999999 in floating point: accepted
    _screen(tmp_path)
    config = HELD_OUT.replace(
        'column = "set"', 'holdout = true\nmethod = "random"\nfractions = [0.7, 0.2, 0.1]\nseed = 3'
    )
    rc, err, _ = _run(tmp_path, config, capsys)
    assert rc == 0 and err == []
    with Store(tmp_path / "s.duckdb", read_only=True) as store:
        part = store.read("activity_partition")
    assert sorted(part["part"].value_counts()["count"]) == [6, 12, 42]


def test_settings_no_model_uses_warn_with_a_count(tmp_path, capsys):
    _screen(tmp_path)
    config = FOLDS.replace(
        "n_estimators = 5",
        "n_estimators = 5\nmax_epochs = 3\ntree_params = { lgbm = { n_estimators = 10 } }",
    )
    with pytest.warns(UnusedSettingWarning, match=r"^2 \[model\] setting\(s\) have no effect") as w:
        rc, _, _ = _run(tmp_path, config, capsys)
    assert rc == 0
    message = str(w[0].message)
    assert "max_epochs, tree_params.lgbm" in message and "kind lgbm" in message
    # the same settings with models that read them: no warning
    config = config.replace(
        'CS = { kind = "rf", n_bits = 64 }',
        'CS = { kind = "rf", n_bits = 64 }\nT = { kind = "lgbm" }\nN = { kind = "morgan" }',
    ).replace(
        "max_epochs = 3", "max_epochs = 1\nhidden_sizes = [4]\ngrid = {}\ntree_grid = { lgbm = {} }"
    )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UnusedSettingWarning)
        rc, err, _ = _run(tmp_path, config, capsys)
    assert rc == 0, err


def test_fewer_scaffolds_than_folds_warn_with_the_count(tmp_path, capsys):
    from cellframe.activity.experiment import EmptyFoldsWarning

    _screen(tmp_path)  # 5 scaffolds
    config = FOLDS.replace("n_folds = 3", "n_folds = 8")
    with pytest.warns(EmptyFoldsWarning, match=r"n_folds = 8: .* fills 5 folds only \(3 empty"):
        rc, _, _ = _run(tmp_path, config, capsys)
    assert rc == 0
    with Store(tmp_path / "s.duckdb", read_only=True) as store:
        folds = store.read("activity_folds")
    # each fold is one scaffold: the 12 compounds T000-T011 of the first core, ...
    core = folds["Metadata_Compound"].str.slice(1).cast(pl.Int64) // 12
    assert folds.with_columns(core=core).group_by("Metadata_Fold").agg(
        pl.col("core").n_unique().alias("cores"), pl.len()
    ).sort("Metadata_Fold").rows() == [(k, 1, 12) for k in range(5)]
