"""Blocked cosine similarity and top-k neighbours against float64 NumPy."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from cellframe.errors import InvalidInputError
from cellframe.evaluate import (
    check_float32_similarity,
    cosine_similarity,
    iter_similarity_blocks,
    top_k_similar,
)


def _reference(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    return u @ u.T


def test_blocks_equal_float64_matrix():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(103, 20))
    ref = _reference(x)
    got = np.zeros_like(ref)
    seen = 0
    for rows, sims in iter_similarity_blocks(x, block_rows=17):
        assert sims.shape == (len(rows), 103)
        assert sims.dtype == np.float32
        got[rows] = sims
        seen += len(rows)
    assert seen == 103
    np.testing.assert_allclose(got, ref, atol=1e-6)
    np.testing.assert_allclose(cosine_similarity(x, dtype=np.float64), ref, atol=1e-12)


def test_zero_rows_give_zero_similarity():
    x = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    s = cosine_similarity(x, dtype=np.float64)
    assert s[1].tolist() == [0.0, 0.0, 0.0]
    assert s[0, 2] == pytest.approx(1 / np.sqrt(2), abs=1e-12)


def test_float32_check_quiet_on_normal_data_and_warns_on_huge_offsets():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 30))
    assert check_float32_similarity(x) < 1e-5
    # Profiles that differ only far below float32 resolution of their offset.
    y = 1e4 + rng.normal(size=(50, 30)) * 1e-3
    with pytest.warns(RuntimeWarning, match="float64"):
        assert check_float32_similarity(y, tolerance=1e-12) > 1e-12


def test_top_k_matches_brute_force():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 6))
    df = pl.DataFrame(x, schema=[f"f{i}" for i in range(6)]).with_columns(
        pl.Series("Metadata_Well", [f"W{i:02d}" for i in range(40)])
    )
    got = top_k_similar(df, k=5, id_columns=["Metadata_Well"], block_rows=7)
    ref = _reference(x)
    np.fill_diagonal(ref, -np.inf)
    for q in range(40):
        expected = np.argsort(-ref[q], kind="stable")[:5]
        sub = got.filter(pl.col("query_row") == q).sort("rank")
        assert sub["neighbor_row"].to_list() == expected.tolist()
        np.testing.assert_allclose(sub["similarity"].to_numpy(), ref[q, expected], atol=1e-6)
        assert sub["neighbor_Metadata_Well"].to_list() == [f"W{i:02d}" for i in expected]
    assert got.height == 200


def test_top_k_skips_zero_profiles_and_rejects_bad_k():
    df = pl.DataFrame({"f1": [1.0, 0.0, 0.9, 0.1], "f2": [0.0, 0.0, 0.1, 1.0]})
    with pytest.warns(RuntimeWarning, match="1 of 4 profiles rows are all zero"):
        got = top_k_similar(df, k=1)
    assert 1 not in got["neighbor_row"].to_list() and 1 not in got["query_row"].to_list()
    assert got.sort("query_row")["neighbor_row"].to_list() == [2, 0, 2]
    with pytest.raises(InvalidInputError, match="k must be at least 1"):
        top_k_similar(df, k=0)
