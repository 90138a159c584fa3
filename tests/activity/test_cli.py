"""``cellframe activity``: a configured experiment end to end on a small synthetic screen."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cellframe.activity.columns import ASSAY, COMPOUND, FOLD, MODALITY, SMILES
from cellframe.activity.metrics import assay_fold_metrics, assay_metrics, summary_table
from cellframe.activity.splits import scaffold_folds
from cellframe.cli import main
from cellframe.store import Store

CORES = ["c1ccccc1", "c1ccncc1", "C1CCCCC1", "c1ccc2ccccc2c1", "C1CCNCC1"]
TAILS = ["O", "N", "OC(=O)", "Cl", "CC", "CO", "F", "N#C", "S", "O=CN", "OCC", "Br"]


def _screen(tmp_path):
    smiles = [f"{t}{c}" for c in CORES for t in TAILS]
    rng = np.random.default_rng(0)
    n = len(smiles)
    tail = np.tile(np.arange(len(TAILS)), len(CORES))
    a0 = (tail % 2 == 0).astype(float)
    a1 = (tail < 4).astype(float)
    a2 = (rng.random(n) < 0.3).astype(float)
    y = np.stack([a0, a1, a2], axis=1)
    y[rng.random(y.shape) < 0.15] = np.nan
    wide = pl.DataFrame({"smiles": smiles}).with_columns(
        [pl.Series(f"assay{j}", y[:, j]) for j in range(3)]
    )
    wide = wide.with_columns(pl.col(f"assay{j}").fill_nan(None).cast(pl.Int8) for j in range(3))
    wide.write_csv(tmp_path / "matrix.csv")
    # MO profiles: informative for assay0, one compound missing.
    mo = pl.DataFrame(
        {
            COMPOUND: smiles[1:],
            "Cells_f1": (a0[1:] + rng.normal(0, 0.3, n - 1)).astype(np.float32),
            "Cells_f2": rng.normal(size=n - 1).astype(np.float32),
        }
    )
    mo.write_parquet(tmp_path / "mo.parquet")
    config = """
[data]
matrix = "matrix.csv"

[clean]
pains = true
frequent_hitter_fraction = 0.9

[split]
method = "scaffold"
n_folds = 5

[modalities]
CS = { kind = "morgan", n_bits = 256 }
CS_RF = { kind = "rf" }
MO = { path = "mo.parquet" }

[model]
max_epochs = 2
patience = 2
hidden_sizes = [16]
n_estimators = 10
grid = {}

[fusion]
late = [["CS", "MO"]]
retrospective = [["CS", "MO"]]
early = [["CS", "MO"]]

[output]
prefix = "tox"
"""
    (tmp_path / "exp.toml").write_text(config)
    return smiles, y


def test_cli_runs_experiment_end_to_end(tmp_path, capsys):
    smiles, _ = _screen(tmp_path)
    db = tmp_path / "s.duckdb"
    with pytest.warns(UserWarning, match=r"1 of \d+ compounds"):
        rc = main(["activity", str(tmp_path / "exp.toml"), "--store", str(db)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "tox" in out
    with Store(db, read_only=True) as store:
        names = store.table_names()
        for t in (
            "cleaning",
            "readouts",
            "folds",
            "predictions",
            "hyperparameters",
            "fold_metrics",
            "assay_metrics",
            "summary",
        ):
            assert f"tox_{t}" in names
        folds = store.read("tox_folds")
        preds = store.read("tox_predictions")
        fold_metrics = store.read("tox_fold_metrics")
        per_assay = store.read("tox_assay_metrics")
        summary = store.read("tox_summary")
        cleaning = store.read("tox_cleaning")
        readouts = store.read("tox_readouts")
        prov = store.provenance("tox_summary")
    # Folds are the scaffold folds of the cleaned compounds.
    np.testing.assert_array_equal(folds[FOLD].to_numpy(), scaffold_folds(folds[SMILES].to_list()))
    assert cleaning["step"].to_list()[0] == "invalid SMILES"
    # Every observed readout of the cleaned matrix predicted once per single modality;
    # MO lacks one compound (its readouts are not predicted).
    n_obs = readouts.height
    counts = dict(preds.group_by(MODALITY).len().iter_rows())
    assert counts["CS"] == counts["CS_RF"] == n_obs
    missing = smiles[0]
    assert missing in set(readouts[COMPOUND])
    assert counts["MO"] == n_obs - readouts.filter(pl.col(COMPOUND) == missing).height
    assert counts["late_CS+MO"] == counts["MO"] == counts["early_CS+MO"]
    assert missing not in set(preds.filter(pl.col(MODALITY) == "MO")[COMPOUND])
    # Stored metrics are what the metric functions give on the stored predictions.
    assert_frame_equal(
        assay_fold_metrics(preds).sort(MODALITY, ASSAY, FOLD),
        fold_metrics.sort(MODALITY, ASSAY, FOLD),
    )
    singles = assay_metrics(fold_metrics)
    assert_frame_equal(
        summary_table(per_assay).sort(MODALITY), summary.sort(MODALITY), check_dtypes=False
    )
    retro = per_assay.filter(pl.col(MODALITY) == "retro_CS+MO").sort(ASSAY)
    best = (
        singles.filter(pl.col(MODALITY).is_in(["CS", "MO"]))
        .group_by(ASSAY)
        .agg(pl.col("auroc").max())
        .sort(ASSAY)
    )
    np.testing.assert_allclose(retro["auroc"].to_numpy(), best["auroc"].to_numpy())
    assert set(summary[MODALITY]) == {
        "CS",
        "CS_RF",
        "MO",
        "late_CS+MO",
        "early_CS+MO",
        "retro_CS+MO",
    }
    assert not prov.is_empty()


def test_cli_bad_config(tmp_path, capsys):
    _screen(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text('[data]\nmatrix = "matrix.csv"\n[modalities]\nCS = { kind = "ecfp" }\n')
    assert main(["activity", str(bad), "--store", str(tmp_path / "x.duckdb"), "-q"]) == 2
    assert "unknown kind 'ecfp'" in capsys.readouterr().err
    bad.write_text('[data]\nmatrix = "matrix.csv"\n[fusion]\nlate = [["CS", "GE"]]\n')
    assert main(["activity", str(bad), "--store", str(tmp_path / "x.duckdb"), "-q"]) == 2
    assert "'GE'" in capsys.readouterr().err
    bad.write_text("[data]\n")
    assert main(["activity", str(bad), "--store", str(tmp_path / "x.duckdb"), "-q"]) == 2
    assert "matrix" in capsys.readouterr().err
    assert main(["activity", str(tmp_path / "none.toml"), "-q"]) == 2


def test_importing_activity_cli_is_cheap():
    import subprocess
    import sys

    code = (
        "import sys, cellframe.activity, cellframe.cli.activity; "
        "print(sorted(m for m in ('torch', 'rdkit', 'sklearn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
