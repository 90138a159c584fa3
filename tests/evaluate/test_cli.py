"""``cellframe evaluate`` writes per-query and summary tables with provenance."""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import pytest

from cellframe.cli import main
from cellframe.evaluate import mean_average_precision, phenotypic_activity, retrieval_metrics
from cellframe.store import Store
from tests.evaluate._synthetic import synthetic_screen


@pytest.fixture
def store_path(tmp_path):
    path = tmp_path / "screen.duckdb"
    with Store(path) as s:
        s.write("wells", synthetic_screen(n_treatments=10, signal=1.5, seed=9), step="test")
    return path


def test_retrieval_mode(store_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert main(["evaluate", "wells", "--store", str(store_path), "--quiet"]) == 0
        expected = retrieval_metrics(
            synthetic_screen(n_treatments=10, signal=1.5, seed=9),
            keep=["Metadata_Treatment", "Metadata_Control", "Metadata_Plate", "Metadata_Well"],
        )
    with Store(store_path, read_only=True) as s:
        assert {
            "wells_retrieval_per_query",
            "wells_retrieval_summary",
            "wells_retrieval_pr_curve",
        } <= set(s.table_names())
        per_query = s.read("wells_retrieval_per_query").sort("row")
        summary = s.read("wells_retrieval_summary")
        prov = s.provenance("wells_retrieval_summary")
    np.testing.assert_allclose(
        per_query["average_precision"], expected.per_query.sort("row")["average_precision"]
    )
    assert summary["mean_average_precision"][0] == pytest.approx(
        expected.summary["mean_average_precision"][0], abs=1e-12
    )
    text = str(prov.row(-1, named=True))
    assert "evaluate" in text and "Metadata_MoA" in text


def test_activity_mode(store_path):
    code = main(
        [
            "evaluate",
            "wells",
            "--store",
            str(store_path),
            "--quiet",
            "--mode",
            "activity",
            "--null-size",
            "500",
            "--output",
            "act",
        ]
    )
    assert code == 0
    df = synthetic_screen(n_treatments=10, signal=1.5, seed=9)
    ap = phenotypic_activity(df)
    expected = mean_average_precision(
        ap.filter(~pl.col("is_control")), sameby="Metadata_Treatment", null_size=500
    )
    with Store(store_path, read_only=True) as s:
        summary = s.read("act_summary").sort("Metadata_Treatment")
        per_query = s.read("act_per_query")
    assert per_query.height == df.height
    np.testing.assert_allclose(summary["p_value"], expected["p_value"])
    assert summary["below_corrected_p"].to_list() == expected["below_corrected_p"].to_list()


def test_missing_table_is_one_line_error(store_path, capsys):
    assert main(["evaluate", "nope", "--store", str(store_path), "--quiet"]) == 2
    assert "no table 'nope'" in capsys.readouterr().err
