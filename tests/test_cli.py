"""Tests of the store subcommands of the ``cellframe`` command line."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cellframe.cli import main
from cellframe.store import Store


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "s.duckdb"
    with Store(path) as s:
        s.write(
            "wells",
            pl.DataFrame(
                {"Metadata_Plate": ["P1", "P1"], "Metadata_Well": ["A01", "B02"], "f": [1.5, 2.5]}
            ),
            step="unit-test",
        )
    return path


def test_tables_lists_rows_columns_and_provenance(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tables", "--store", str(db)]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if " wells " in x)
    assert "unit-test" in line and " 2 " in line and " 3 " in line


def test_sql_prints_csv_and_writes_parquet(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "sql",
                "--store",
                str(db),
                "SELECT Metadata_Well, f FROM wells ORDER BY f",
                "--format",
                "csv",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out == "Metadata_Well,f\nA01,1.5\nB02,2.5\n"
    out_file = tmp_path / "o.parquet"
    assert (
        main(
            [
                "sql",
                "--store",
                str(db),
                "SELECT * FROM wells",
                "--format",
                "parquet",
                "--output",
                str(out_file),
                "-q",
            ]
        )
        == 0
    )
    with Store(db, read_only=True) as s:
        assert_frame_equal(pl.read_parquet(out_file).sort("f"), s.read("wells").sort("f"))


def test_cli_errors_are_one_line(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sql", "--store", str(tmp_path / "missing.duckdb"), "SELECT 1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cellframe: error: no store at") and "cellframe ingest" in err
    assert main(["sql", "--store", str(db), "SELECT 1", "--format", "parquet"]) == 2
    assert "--output" in capsys.readouterr().err
    assert main(["sql", "--store", str(db), "SELEC nonsense"]) == 2
    assert "query failed" in capsys.readouterr().err
