"""``cellframe compare``: the panel of store tables and files, the report, and one-line refusals."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cellframe.cli import main
from cellframe.errors import SkippedLabelsWarning
from cellframe.evaluate import compare
from cellframe.store import Store


def screen(shift: float = 0.0, seed: int = 0) -> pl.DataFrame:
    """2 plates x 5 treatments (one of them DMSO) x 6 wells; plate P1 shifted by ``shift``."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(5, 6)) * 3
    rows = [(p, t, r) for p in range(2) for t in range(5) for r in range(6)]
    x = np.array([centers[t] + rng.normal(size=6) + shift * p for p, t, _ in rows])
    return pl.DataFrame(
        {
            "Metadata_Plate": [f"P{p}" for p, _, _ in rows],
            "Metadata_Well": [f"{'ABCDE'[t]}{r + 1:02d}" for _, t, r in rows],
            "Metadata_Treatment": ["DMSO" if t == 0 else f"t{t}" for _, t, _ in rows],
            "Metadata_Control": ["negcon" if t == 0 else "" for _, t, _ in rows],
        }
    ).hstack(pl.DataFrame(x.astype(np.float32), schema=[f"f{i}" for i in range(6)]))


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    path = tmp_path / "screen.duckdb"
    with Store(path) as s:
        s.write("wells", screen(shift=8.0), step="test")
        s.write("wells_centered", screen(), step="test")
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_compare_writes_report_and_csv_matching_the_python_panel(store_path, tmp_path, capsys):
    parquet = tmp_path / "other.parquet"
    screen(shift=0.0, seed=0).write_parquet(parquet)
    before = digest(store_path)
    out, csv = tmp_path / "report.html", tmp_path / "panel.csv"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedLabelsWarning)
        code = main(
            [
                "compare",
                "cp/none=wells",
                "cp/center=wells_centered",
                str(parquet),
                "--batch",
                "Metadata_Plate",
                "--label",
                "Metadata_Treatment",
                "--store",
                str(store_path),
                "--out",
                str(out),
                "--csv",
                str(csv),
            ]
        )
        expected = compare(
            {"cp/none": screen(shift=8.0), "cp/center": screen(), str(parquet): screen()},
            batch="Metadata_Plate",
            label="Metadata_Treatment",
            controls=pl.col("Metadata_Control") == "negcon",
        )
    assert code == 0
    assert digest(store_path) == before  # the store is only read
    printed = capsys.readouterr().out
    assert "cp/center" in printed and f"report: {out}" in printed
    got = pl.read_csv(csv, schema=expected.schema)
    assert_frame_equal(got, expected, abs_tol=1e-9)
    # a plate shift of 8 SD lowers the batch score; the centred table keeps it high
    scores = dict(zip(got["method"], got["batch_score"], strict=True))
    assert scores["cp/none"] < scores["cp/center"] - 0.3
    html = out.read_text()
    assert "Best overall: " in html and "cp/center" in html


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "no table 'nope'"),
        (["wells", "--label", "Metadata_MoA"], "lacks required column(s) 'Metadata_MoA'"),
        (["wells", "--control-column", "Metadata_Kind"], "'Metadata_Kind'"),
        (["=wells"], "NAME=TABLE with both parts"),
        (["a=wells", "a=wells_centered"], "'a' is named twice"),
        (["missing.parquet"], "no file missing.parquet"),
        (["wells", "--csv", "/proc/no/such/panel.csv"], "cannot write /proc/no/such/panel.csv"),
    ],
)
def test_compare_refusals_are_one_line_and_leave_the_store(
    store_path, tmp_path, capsys, args, message
):
    before = digest(store_path)
    out = tmp_path / "r.html"
    argv = ["compare", *args, "--store", str(store_path), "--out", str(out)]
    if "--label" not in args:
        argv += ["--label", "Metadata_Treatment"]
    argv += ["--batch", "Metadata_Plate"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("cellframe: error: ") and message in err
    assert err.count("\n") == 1
    assert digest(store_path) == before and not out.exists()


def test_compare_refuses_single_batch_naming_the_table(store_path, tmp_path, capsys):
    one_plate = tmp_path / "one.parquet"
    screen().with_columns(pl.lit("P0").alias("Metadata_Plate")).write_parquet(one_plate)
    argv = ["compare", f"x={one_plate}", "--batch", "Metadata_Plate", "--label",
            "Metadata_Treatment", "--out", str(tmp_path / "r.html"), "--store", str(store_path)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "table 'x'" in err and "single value" in err
