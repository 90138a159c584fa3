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


def test_moa_mode_writes_nsc_and_nscb_equal_to_the_python_functions(store_path, capsys):
    from cellframe.evaluate import nsc_accuracy, nscb_accuracy

    assert main(["evaluate", "wells", "--store", str(store_path), "--mode", "moa"]) == 0
    out = capsys.readouterr().out
    frame = synthetic_screen(n_treatments=10, signal=1.5, seed=9)
    expected = {"NSC": nsc_accuracy(frame), "NSCB": nscb_accuracy(frame)}
    with Store(store_path, read_only=True) as s:
        summary = s.read("wells_moa_summary")
        per_moa = s.read("wells_moa_per_moa")
        per_query = s.read("wells_moa_per_query")
        prov = str(s.provenance("wells_moa_summary").row(-1, named=True))
    assert summary["protocol"].to_list() == ["NSC", "NSCB"]
    for name, result in expected.items():
        row = summary.filter(pl.col("protocol") == name).row(0, named=True)
        want = result.summary.row(0, named=True)
        assert (row["n_scored"], row["n_correct"]) == (want["n_scored"], want["n_correct"])
        assert row["accuracy"] == pytest.approx(want["accuracy"], abs=1e-12)
        assert per_moa.filter(pl.col("protocol") == name).height == result.per_moa.height
        assert per_query.filter(pl.col("protocol") == name).height == result.per_profile.height
        assert f"{name}: accuracy {want['accuracy']:.3f}" in out
    # NSCB leaves out more candidates than NSC, never fewer.
    nsc, nscb = summary["n_no_neighbour"].to_list()
    assert nscb >= nsc
    assert '"batch": "Metadata_Plate"' in prov and '"mode": "moa"' in prov
