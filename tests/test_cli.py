"""Tests of the store subcommands of the ``cellframe`` command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
    assert main(["activity", "--config", "experiment.toml"]) == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --config" in err and err.count("\n") == 1


# ------------------------------------------------------ sql: macros and --write
def test_sql_defines_every_macro_file(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cellframe.cli.store import macro_files

    assert macro_files() == ["evaluate", "macros"]
    # cf_top_k_similar is in evaluate.sql, cf_cosine in macros.sql.
    query = (
        "SELECT Metadata_Well, round(similarity, 6) AS s "
        "FROM cf_top_k_similar('wells', 'Metadata_Well', 'A01', 1)"
    )
    assert main(["sql", "--store", str(db), query, "--format", "csv"]) == 0
    # Features (1.5,) and (2.5,): cosine of two positive scalars is 1.
    assert capsys.readouterr().out == "Metadata_Well,s\nB02,1.0\n"
    assert main(["sql", "--store", str(db), "SELECT cf_cosine([3.0, 4.0], [4.0, 3.0]) AS c",
                 "--format", "csv"]) == 0  # fmt: skip
    assert capsys.readouterr().out == "c\n0.96\n"  # 24 / 25


def test_sql_write_table_and_view_with_provenance(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["sql", "--store", str(db)]
    assert main([*base, "SELECT Metadata_Well, f * 2 AS g FROM wells", "--write", "doubled"]) == 0
    assert "wrote table doubled: 2 rows x 2 columns" in capsys.readouterr().out
    assert main([*base, "SELECT sum(f) AS total FROM wells", "--write", "tot", "--as", "view"]) == 0
    with Store(db, read_only=True) as s:
        assert s.read("doubled").sort("g")["g"].to_list() == [3.0, 5.0]
        assert s.read("tot")["total"].to_list() == [4.0]
        prov = s.provenance("doubled")
        assert prov["step"].to_list() == ["sql"]
        assert json.loads(prov["parameters"][0]) == {
            "as": "table",
            "query": "SELECT Metadata_Well, f * 2 AS g FROM wells",
        }
        assert s.provenance("tot")["n_rows"].to_list() == [1]
    # A view follows its source table; a table keeps the rows it was written with.
    with Store(db) as s:
        s.write("wells", pl.DataFrame({"Metadata_Plate": ["P1"], "Metadata_Well": ["C03"],
                                       "f": [6.0]}), step="unit-test")  # fmt: skip
        assert s.read("tot")["total"].to_list() == [10.0]
        assert s.read("doubled").height == 2


def test_sql_write_refuses_to_overwrite_and_leaves_the_store_unchanged(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["sql", "--store", str(db)]
    before = db.read_bytes()
    assert main([*base, "SELECT 1 AS a", "--write", "wells"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already has a table or view 'wells'" in err
    assert "--replace" in err
    assert main([*base, "SELECT 1 AS a", "--write", "cellframe_provenance", "--replace"]) == 2
    assert "schema" in capsys.readouterr().err
    assert main([*base, "SELEC 1", "--write", "new"]) == 2
    assert "store is unchanged" in capsys.readouterr().err
    # A view on a temporary macro would not read outside `cellframe sql`.
    topk = "FROM cf_top_k_similar('wells', 'Metadata_Well', 'A01', 1)"
    assert main([*base, topk, "--write", "v", "--as", "view"]) == 2
    assert "cf_top_k_similar (sql/evaluate.sql)" in capsys.readouterr().err
    assert db.read_bytes() == before
    with Store(db, read_only=True) as s:
        assert "new" not in s.table_names() and "v" not in s.table_names()
    # With --replace the table is replaced and its provenance restarts.
    assert main([*base, "SELECT 7 AS a", "--write", "wells", "--replace"]) == 0
    with Store(db, read_only=True) as s:
        assert s.read("wells")["a"].to_list() == [7]
        assert s.provenance("wells")["step"].to_list() == ["sql"]
    # A macro query stored as a table is fine (rows, not the query, are kept).
    assert (
        main([*base, "SELECT cf_cosine([1.0], [2.0]) AS c", "--write", "t", "--as", "table"]) == 0
    )


# ----------------------------------------------------- errors, warnings, Ctrl-C
@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["normalize", "--method", "standardise"],
         "method = 'standardise' is unknown; allowed values: standardize, robustize, "
         "mad_robustize"),
        (["select", "--operations", "variance_threshold,corr_threshold"],
         "operations = 'corr_threshold' is unknown; allowed values: variance_threshold, "
         "frequency_threshold, correlation_threshold, drop_na_columns, blocklist, drop_outliers"),
        (["sphere", "--lam", "-0.5"], "argument --lam: -0.5 is negative; give a value >= 0"),
        (["sphere", "--method", "zca"], "allowed values: regularized, ZCA, ZCA-cor, PCA, PCA-cor"),
        (["aggregate", "--method", "max"], "allowed values: median, mean"),
        (["evaluate", "--mode", "rank"], "invalid choice: 'rank'"),
        (["aggregate", "--level", "plate"],
         "argument --level: level = 'plate' is unknown; allowed values: image, well, treatment"),
        (["ingest", "x.csv", "--format", "cp_csv"],
         "argument --format: 'cp_csv' is not a source format; allowed values: auto, "
         "cellprofiler_csv, cellprofiler_sqlite"),
        (["normalize", "--engine", "dask"], "argument --engine: invalid choice: 'dask'"),
        (["strength", "--k", "-3"], "argument --k: -3 is below 1; give a whole number >= 1"),
        (["qc", "--n-components", "0"], "argument --n-components: 0 is below 1"),
        (["evaluate", "--n-folds", "two"], "argument --n-folds: 'two' is not a whole number"),
    ],
)  # fmt: skip
def test_bad_options_are_one_line_with_allowed_values(
    argv: list[str], expected: str, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--store", str(db)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err and "Traceback" not in err
    assert err.startswith(f"cellframe {argv[0]}: error:")


def test_registry_choices_accept_every_registered_name(db: Path) -> None:
    from cellframe.cli import build_parser
    from cellframe.engine.base import ENGINES
    from cellframe.profiles import AGGREGATIONS, NORMALIZATIONS, OPERATIONS, SPHERE_METHODS

    parser = build_parser()
    for step, registry in [("normalize", NORMALIZATIONS), ("sphere", SPHERE_METHODS),
                           ("aggregate", AGGREGATIONS)]:  # fmt: skip
        for name in registry:
            assert parser.parse_args([step, "--method", name]).method == name
    ops = ",".join(OPERATIONS)
    assert parser.parse_args(["select", "--operations", ops]).operations == list(OPERATIONS)
    assert parser.parse_args(["sphere", "--lam", "0"]).lam == 0.0  # zero is allowed
    for engine in ENGINES:
        assert parser.parse_args(["normalize", "--engine", engine]).engine == engine
    from cellframe.io import FORMATS
    from cellframe.profiles.aggregate import LEVELS

    for level in LEVELS:
        assert parser.parse_args(["aggregate", "--level", level]).level == level
    for fmt in ["auto", *FORMATS]:
        assert parser.parse_args(["ingest", "x", "--format", fmt]).format == fmt


CONFIG_OK = 'input = "wells"\n[[step]]\nrun = "normalize"\nmethod = "mad_robustize"\n'


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        ('run = "normalize"\nmethod = "zscore"',
         "step 1 (normalize): method = 'zscore' is unknown; allowed values: "
         "standardize, robustize, mad_robustize"),
        ('run = "select"\noperations = ["variance_threshold", "blocklst"]',
         "step 1 (select): operations = 'blocklst' is unknown; allowed values: "
         "variance_threshold"),
        ('run = "sphere"\nlam = -1e-3', "step 1 (sphere): lam = -0.001; give a number >= 0"),
        ('run = "whiten"', "step 1: run = 'whiten'; valid: aggregate, normalize"),
    ],
)  # fmt: skip
def test_pipeline_config_is_validated_on_load(
    step: str, expected: str, db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "pipeline.toml"
    config.write_text(f'input = "wells"\n[[step]]\n{step}\n')
    before = db.read_bytes()
    assert main(["profile", "--store", str(db), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{config}, {expected}" in err
    assert db.read_bytes() == before


def test_validate_config_passes_a_valid_config(tmp_path: Path) -> None:
    import tomllib

    from cellframe.pipeline.config import validate_config

    config = tomllib.loads(
        CONFIG_OK + '[[step]]\nrun = "select"\noperations = ["blocklist", "drop_outliers"]\n'
        '[[step]]\nrun = "sphere"\nmethod = "ZCA-cor"\nlam = 0\n'
    )
    assert validate_config(config, "p.toml") is None
    # The same config with one value off is refused at that step and key, so
    # the pass above is the check accepting these values, not a check that
    # accepts everything (lam = 0 and two operations are the unusual values).
    import copy

    from cellframe.errors import InvalidChoiceError

    for index, key, bad in (
        (1, "operations", ["blocklist", "drop_outlier"]),
        (2, "method", "ZCA-corr"),
        (2, "lam", -1),
    ):
        broken = copy.deepcopy(config)
        broken["step"][index][key] = bad
        with pytest.raises(InvalidChoiceError, match=rf"p\.toml, step {index + 1} .*{key} ="):
            validate_config(broken, "p.toml")


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
        check=False,
    )


def test_warnings_print_category_and_message_without_source_paths() -> None:
    code = """
import warnings
from cellframe import cli
from cellframe.cli import store as store_cli
from cellframe.errors import NaNExcludedWarning

def fake(args):
    warnings.warn("3 NaN values left out\\nof the ranking", NaNExcludedWarning, stacklevel=1)
    return 0

store_cli._tables = fake
code = cli.main(["tables"])
assert warnings.formatwarning is not cli.format_warning  # restored after the command
raise SystemExit(code)
"""
    proc = _run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "warning: NaNExcludedWarning: 3 NaN values left out; of the ranking\n"


def test_ctrl_c_exits_130_without_traceback(
    monkeypatch: pytest.MonkeyPatch, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cellframe.cli import store as store_cli

    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(store_cli, "_tables", interrupted)
    assert main(["tables", "--store", str(db)]) == 130
    err = capsys.readouterr().err
    assert err == "cellframe: interrupted; stored tables keep their previous state\n"


def test_cellframe_error_from_a_command_is_one_line_in_a_subprocess(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cellframe.cli",
            "normalize",
            "--store",
            str(tmp_path / "no.duckdb"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("cellframe: error: no store at") and proc.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["sphere", "--input", "wells", "--output", "s", "--lam", "inf"],
         "cellframe sphere: error: argument --lam: inf is not a finite number; give a value >= 0"),
        (["sphere", "--input", "wells", "--output", "s", "--lam", "nan"],
         "cellframe sphere: error: argument --lam: nan is not a finite number; give a value >= 0"),
        (["sphere", "--input", "wells", "--output", "s", "--method", "ZCA", "--epsilon", "nan"],
         "cellframe: error: Spherizer epsilon=nan"),
        (["profile", "--config", "missing.toml"],
         "cellframe: error: pipeline config missing.toml does not exist"),
    ],
)  # fmt: skip
def test_parameter_and_config_errors_are_one_line_and_change_nothing(
    argv: list[str], expected: str, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = db.read_bytes()
    assert main([*argv, "--store", str(db)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(expected), err
    assert "Traceback" not in err and "Errno" not in err
    assert db.read_bytes() == before


def test_a_config_lambda_of_infinity_is_one_line(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "p.toml"
    config.write_text('input = "wells"\n[[step]]\nrun = "sphere"\nlam = inf\ncontrols = "all"\n')
    before = db.read_bytes()
    assert main(["profile", "--config", str(config), "--store", str(db)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{config}, step 1 (sphere): lam = inf" in err
    assert "give a number >= 0 (finite: not nan or inf)" in err
    assert db.read_bytes() == before
    # Control: lam = 0 is valid and the same chain runs.
    config.write_text('input = "wells"\n[[step]]\nrun = "sphere"\nlam = 0.0\ncontrols = "all"\n')
    assert main(["profile", "--config", str(config), "--store", str(db), "-q"]) == 0
