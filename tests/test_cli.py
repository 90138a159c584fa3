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


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["activity", "missing.toml"], "no experiment config at missing.toml"),
        (["ingest", "missing.sqlite"], "no such file or folder: missing.sqlite"),
        (["segment", "run", "missing.tif"], "no image file or zarr store at missing.tif"),
        (["profile", "--config", "missing.toml"], "missing.toml"),
    ],
)
def test_documented_commands_on_missing_input_fail_in_one_line(
    args: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "screen.duckdb"
    if args[0] == "profile":  # profile reads an existing store
        Store(store).close()
    before = store.read_bytes() if store.exists() else None
    assert main([*args, "--store", str(store)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cellframe: error: ") and message in err
    assert err.count("\n") == 1  # one line, no traceback
    # The store is left as it was (absent, or byte-for-byte the same).
    assert (store.read_bytes() if store.exists() else None) == before


def test_activity_config_is_positional(capsys: pytest.CaptureFixture[str]) -> None:
    # README once showed `cellframe activity --config experiment.toml`.
    with pytest.raises(SystemExit) as exc:
        main(["activity", "--config", "experiment.toml"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --config" in capsys.readouterr().err
