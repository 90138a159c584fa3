"""run_step: one function for every profiling step, engines as objects, refusals that name the fix."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from cellframe.engine import LocalEngine, RayEngine
from cellframe.errors import InvalidInputError
from cellframe.pipeline import (
    Aggregation,
    QualityControl,
    make_engine,
    run_pipeline,
    run_step,
)
from cellframe.profiles import FeatureSelector, Normalizer, Spherizer
from cellframe.store import Store


@pytest.fixture
def cells() -> pl.DataFrame:
    rng = np.random.default_rng(7)
    n = 2 * 6 * 4  # 2 plates x 6 wells x 4 cells
    return pl.DataFrame(
        {
            "Metadata_Plate": np.repeat(["P1", "P2"], 24),
            "Metadata_Well": np.tile(np.repeat([f"A0{i}" for i in range(1, 7)], 4), 2),
            "Metadata_Control": np.tile(np.repeat(["negcon"] * 3 + ["trt"] * 3, 4), 2),
            "f1": rng.normal(0, 1, n).astype(np.float32),
            "f2": rng.normal(5, 3, n).astype(np.float32),
        }
    )


def test_steps_give_the_numbers_computed_by_hand(cells: pl.DataFrame) -> None:
    with Store() as store:
        store.write("cells", cells, step="test")
        agg = run_step(store, Aggregation(), "cells", "wells", progress=False)
        norm = run_step(store, Normalizer(), "wells", "wells_n", progress=False)
        wells = store.read("wells").sort("Metadata_Plate", "Metadata_Well")
        got = store.read("wells_n").sort("Metadata_Plate", "Metadata_Well")
        params = json.loads(store.provenance("wells_n")["parameters"][-1])
    assert (agg.step, agg.rows, norm.step, norm.rows) == ("aggregate", 12, "normalize", 12)
    # Median of the 4 cells of well P1/A01, f2.
    first = cells.filter((pl.col("Metadata_Plate") == "P1") & (pl.col("Metadata_Well") == "A01"))
    assert wells["f2"][0] == pytest.approx(float(np.median(first["f2"].to_numpy())), rel=1e-6)
    # Standardize per plate on the 3 control wells (ddof = 0).
    p2 = wells.filter(pl.col("Metadata_Plate") == "P2")
    ctl = p2.filter(pl.col("Metadata_Control") == "negcon")["f1"].to_numpy().astype(np.float64)
    expected = (p2["f1"].to_numpy() - ctl.mean()) / ctl.std()
    np.testing.assert_allclose(got.filter(pl.col("Metadata_Plate") == "P2")["f1"], expected,
                               rtol=1e-5, atol=1e-5)  # fmt: skip
    assert params["method"] == "standardize" and params["by"] == ["Metadata_Plate"]
    assert params["source"] == "wells" and params["fit_from"] is None


def test_config_engine_options_reach_the_local_engine(cells: pl.DataFrame) -> None:
    config = {
        "input": "cells",
        "step": [{"run": "aggregate", "output": "wells_c", "chunk_rows": 5, "workers": 1}],
    }
    with Store() as store:
        store.write("cells", cells, step="test")
        run_step(store, Aggregation(), "cells", "wells", progress=False)
        run_pipeline(store, config, progress=False)
        chunked = json.loads(store.provenance("wells_c")["parameters"][0])
        whole = json.loads(store.provenance("wells")["parameters"][0])
        assert store.read("wells_c").equals(store.read("wells"))
    assert chunked["chunk_rows"] == 5 and whole["chunk_rows"] == 2**28 // 8


def test_refusals_name_the_step_and_leave_the_store_unchanged(cells, tmp_path) -> None:
    path = tmp_path / "s.duckdb"
    with Store(path) as store:
        store.write("wells", cells, step="test")
        run_step(store, Spherizer(), "wells", "sph", save_fit="sph_fit", progress=False)
    before = path.read_bytes()
    with Store(path) as store:
        with pytest.raises(InvalidInputError, match=r"cannot run a dict.*give one of: Aggregation"):
            run_step(store, {"run": "normalize"}, "wells", "x", progress=False)
        with pytest.raises(InvalidInputError, match="Aggregation takes no save_fit="):
            run_step(store, Aggregation(), "wells", "x", save_fit="fit", progress=False)
        with pytest.raises(InvalidInputError, match="FeatureSelector takes no fit_from="):
            run_step(store, FeatureSelector(), "wells", "x", fit_from="sph_fit", progress=False)
        with pytest.raises(
            InvalidInputError, match="'sph_fit' was not written by a saved Normalizer"
        ):
            run_step(store, Normalizer(), "wells", "x", fit_from="sph_fit", progress=False)
        with pytest.raises(
            InvalidInputError, match="unknown engine 'spark'; valid engines: local, ray"
        ):
            run_step(store, QualityControl(), "wells", "x", engine="spark", progress=False)
        assert "x" not in store.table_names()
    assert path.read_bytes() == before
    # Controls: the valid options are taken (a saved fit applied, a report table named).
    with Store(path) as store:
        run_step(store, Spherizer(), "wells", "sph2", fit_from="sph_fit", progress=False)
        assert store.read("sph2").equals(store.read("sph"))
        run_step(store, FeatureSelector(), "wells", "sel", report="sel_why", progress=False)
        assert store.has_table("sel_why")


def test_make_engine_builds_the_engine_objects() -> None:
    assert make_engine() == LocalEngine()
    assert make_engine("local", workers=2, chunk_rows=10, address="ignored") == LocalEngine(
        workers=2, chunk_rows=10
    )
    assert make_engine("ray", address="auto", force=True) == RayEngine(address="auto", force=True)
    with pytest.raises(InvalidInputError, match="valid engines: local, ray"):
        make_engine("dask")
