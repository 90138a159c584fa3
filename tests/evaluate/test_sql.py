"""The analyst macros of sql/evaluate.sql against the Python functions."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from cellframe.evaluate import retrieval_metrics, top_k_similar
from cellframe.pipeline import register_evaluate_sql
from cellframe.store import Store
from tests.evaluate._synthetic import synthetic_screen


@pytest.fixture
def store():
    s = Store()
    df = synthetic_screen(n_treatments=6, n_controls=0, seed=5).drop("Metadata_Control")
    s.write("wells", df, step="test")
    register_evaluate_sql(s)
    yield s, df
    s.close()


def test_top_k_macro_matches_python(store):
    s, df = store
    got = s.sql("FROM cf_top_k_similar('wells', 'Metadata_Well', 'A031', 5)")
    ref = top_k_similar(df, k=5, id_columns=["Metadata_Well"]).filter(
        pl.col("query_Metadata_Well") == "A031"
    )
    assert got["Metadata_Well"].to_list() == ref["neighbor_Metadata_Well"].to_list()
    np.testing.assert_allclose(got["similarity"], ref["similarity"], atol=1e-6)
    assert got["rank"].to_list() == [1, 2, 3, 4, 5]


def test_pair_similarity_macro(store):
    s, df = store
    got = s.sql("FROM cf_pair_similarity('wells', 'Metadata_Well', 'A000', 'A011')")
    x = df.select(pl.col("^f.*$")).to_numpy().astype(np.float64)
    i, j = df["Metadata_Well"].to_list().index("A000"), df["Metadata_Well"].to_list().index("A011")
    expected = x[i] @ x[j] / np.linalg.norm(x[i]) / np.linalg.norm(x[j])
    assert got["similarity"][0] == pytest.approx(expected, abs=1e-6)


def test_moa_summary_macro(store):
    s, df = store
    res = retrieval_metrics(df, keep=["Metadata_Well"])
    s.write("eval_per_query", res.per_query, step="test")
    got = s.sql("FROM cf_moa_summary('eval_per_query', 'Metadata_MoA')").sort("moa")
    long = res.per_query.with_columns(pl.col("Metadata_MoA").str.split("|")).explode("Metadata_MoA")
    ref = (
        long.group_by("Metadata_MoA")
        .agg(
            pl.len().alias("n"),
            pl.col("average_precision").mean().alias("m"),
            pl.col("hit_at_top").sum().alias("h"),
        )
        .sort("Metadata_MoA")
    )
    assert got["moa"].to_list() == ref["Metadata_MoA"].to_list()
    assert got["n_queries"].to_list() == ref["n"].to_list()
    np.testing.assert_allclose(got["mean_average_precision"], ref["m"], atol=1e-12)
    assert got["hits_at_top"].to_list() == ref["h"].to_list()


def test_moa_summary_macro_leaves_nan_out(store):
    s, _ = store
    per_query = pl.DataFrame(
        {
            "Metadata_MoA": ["x", "x", "y", "y|x"],
            "average_precision": [0.5, float("nan"), 0.25, 0.75],
            "folds_of_enrichment": [2.0, 3.0, float("nan"), 1.0],
            "hit_at_top": [True, None, False, True],
        }
    )
    s.write("nan_per_query", per_query, step="test")
    got = s.sql("FROM cf_moa_summary('nan_per_query', 'Metadata_MoA')")
    # x: APs 0.5, NaN, 0.75 -> 0.625 (NaN left out, counted); y: 0.25, 0.75 -> 0.5.
    assert got["moa"].to_list() == ["x", "y"]  # NaN no longer sorts first
    np.testing.assert_allclose(got["mean_average_precision"], [0.625, 0.5])
    np.testing.assert_allclose(got["mean_folds_of_enrichment"], [2.0, 1.0])
    assert got["n_queries"].to_list() == [3, 2]
    assert got["n_nan"].to_list() == [1, 1]
    assert got["hits_at_top"].to_list() == [2, 1]
