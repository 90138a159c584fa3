"""Running a recipe on a store table: ``run_recipe`` and ``cellframe correct --recipe``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cellframe.cli import main
from cellframe.columns import CONTROL, PLATE
from cellframe.errors import (
    InvalidInputError,
    MissingColumnsError,
    TableNotFoundError,
    UnknownRecipeTokenError,
)
from cellframe.pipeline.recipe import run_recipe
from cellframe.profiles import apply_recipe
from cellframe.store import Store

NEGCON = "Metadata_control_type = 'negcon'"


@pytest.fixture(scope="module")
def nelisa(shared_data: Path) -> pl.DataFrame:
    path = shared_data / "profiles-nelisa" / "nelisa_profiles.parquet"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return pl.read_parquet(path)


def _synthetic(seed: int = 0) -> pl.DataFrame:
    """Three plates of 30 wells (10 negcon), 6 features, plate 'p2' offset by +3."""
    rng = np.random.default_rng(seed)
    n = 90
    x = rng.normal(size=(n, 6))
    plates = np.repeat(["p1", "p2", "p3"], 30)
    x[plates == "p2"] += 3.0
    return pl.DataFrame(
        {
            PLATE: plates,
            "Metadata_Well": [f"A{i:02d}" for i in range(n)],
            CONTROL: (["negcon"] * 10 + ["trt"] * 20) * 3,
            **{f"f{j}": x[:, j] for j in range(6)},
        }
    )


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_run_recipe_writes_the_recipe_output_with_provenance(
    store: Store, nelisa: pl.DataFrame
) -> None:
    store.write("wells", nelisa, mode="replace")
    params = {"mad": {"controls": NEGCON}, "harmony": {"n_components": 30}}
    run = run_recipe(store, "mad_featselect_harmony", parameters=params)
    assert (run.source, run.dest, run.rows) == ("wells", "wells_mad_featselect_harmony", 1525)
    expected = apply_recipe(store.read("wells"), "mad_featselect_harmony", parameters=params)
    assert_frame_equal(store.read(run.dest), expected.frame)
    prov = store.provenance(run.dest)
    assert prov["step"].to_list() == ["recipe"]
    recorded = json.loads(prov["parameters"][0])
    assert recorded["recipe"] == "mad_featselect_harmony"
    assert [s["token"] for s in recorded["steps"]] == ["mad", "featselect", "harmony"]
    assert recorded["steps"][0]["parameters"]["controls"] == NEGCON
    harmony = recorded["steps"][2]["parameters"]
    assert harmony["n_components_used"] == 30 and harmony["converged"] is True
    assert harmony["n_iterations"] >= 1


def test_run_recipe_from_a_toml_file(store: Store, tmp_path: Path) -> None:
    store.write("wells", _synthetic(), mode="replace")
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(
        '[[step]]\nrun = "mad"\n\n[[step]]\nrun = "harmony"\nn_components = 4\nn_clusters = 3\n'
    )
    run = run_recipe(store, recipe, dest="corrected")
    out = store.read("corrected")
    assert out.columns == [PLATE, "Metadata_Well", CONTROL, *[f"harmony_{i}" for i in range(4)]]
    recorded = json.loads(store.provenance("corrected")["parameters"][0])
    assert recorded["recipe"] == "mad_harmony" and recorded["recipe_file"] == str(recipe)
    assert run.steps[1]["parameters"]["n_clusters"] == 3
    # The per-plate MAD already removes the +3 offset of plate p2 before Harmony.
    means = out.group_by(PLATE).agg(pl.col("harmony_0").mean()).sort(PLATE)["harmony_0"]
    assert float(means.abs().max()) < 0.5


def test_run_recipe_refusals_leave_the_store_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with Store(path) as s:
        s.write("wells", _synthetic(), mode="replace")
    before = _digest(path)
    with Store(path) as s:
        with pytest.raises(UnknownRecipeTokenError, match="'robust'"):
            run_recipe(s, "var_robust")
        with pytest.raises(InvalidInputError, match="replace its source table 'wells'"):
            run_recipe(s, "var", dest="wells")
        with pytest.raises(TableNotFoundError):
            run_recipe(s, "var", source="profiles")
        # A step that fails on the data, after the earlier steps ran.
        with pytest.raises(MissingColumnsError, match="Metadata_Batch"):
            run_recipe(
                s, "var_mad_harmony", parameters={"harmony": {"batch_key": "Metadata_Batch"}}
            )
    assert _digest(path) == before
    with Store(path) as s:
        assert not [t for t in s.table_names() if t.startswith("wells_")]
        assert_frame_equal(s.read("wells"), _synthetic())


def test_cli_correct_runs_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.duckdb"
    with Store(path) as s:
        s.write("wells", _synthetic(), mode="replace")
    argv = [
        "correct", "--store", str(path), "--recipe", "var_mad_harmony",
        "--param", "harmony.n_components=3", "--param", "harmony.n_clusters=3",
        "--param", "mad.controls=negcon",
    ]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "1. var (FeatureSelector): 90 rows, 6 -> 6 features"
    assert out[2].startswith("3. harmony (Harmony): 90 rows, 6 -> 3 features, ")
    assert out[-1] == "wrote 90 rows to 'wells_var_mad_harmony' (from 'wells')"
    with Store(path) as s:
        assert s.read("wells_var_mad_harmony").height == 90
        params = json.loads(s.provenance("wells_var_mad_harmony")["parameters"][0])
        assert params["steps"][2]["parameters"]["n_components"] == 3


def test_cli_correct_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.duckdb"
    with Store(path) as s:
        s.write("wells", _synthetic(), mode="replace")
    before = _digest(path)
    for argv, message in [
        (["--recipe", "var_tvm"], "unknown recipe token 'tvm'"),
        (["--recipe", "missing.toml"], "recipe file 'missing.toml' does not exist"),
        (["--recipe", "var", "--param", "var.nope=1"], "has no parameter(s) ['nope']"),
        (["--recipe", "var", "--param", "nope"], "is not TOKEN.KEY=VALUE"),
        (["--recipe", "harmony", "--source", "cells"], "cells"),
    ]:
        assert main(["correct", "--store", str(path), *argv]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err, err
    assert _digest(path) == before


def test_evaluate_knows_a_recipe_table_is_not_cross_fitted(store: Store) -> None:
    from cellframe.pipeline import correction_from_provenance

    store.write("wells", _synthetic(), mode="replace")
    run_recipe(store, "mad_sphering", parameters={"sphering": {"label": CONTROL}})
    plan = correction_from_provenance(store, "wells_mad_sphering")
    assert plan.correction is None
    assert "made by the recipe 'mad_sphering'" in plan.problem
    # A table made otherwise keeps its plan (no problem without a correction).
    assert correction_from_provenance(store, "wells").problem is None
