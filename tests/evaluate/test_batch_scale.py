"""The blocked passes of the batch panel: equal to full-matrix references, bounded memory.

References: scikit-learn's ``silhouette_samples`` / ``silhouette_score`` and
``NearestNeighbors``, harmonypy's ``compute_lisi``, and a full n x n distance
matrix sorted by (distance, index). Tolerance 1e-12 throughout; neighbour
indices exactly equal.
"""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import silhouette_samples, silhouette_score
from sklearn.neighbors import NearestNeighbors

from cellframe.errors import SkippedLabelsWarning
from cellframe.evaluate import batch as batch_module
from cellframe.evaluate import (
    batch_panel,
    clisi,
    graph_connectivity,
    ilisi,
    kbet,
    lisi,
    silhouette_batch,
    silhouette_label,
)
from cellframe.evaluate.batch import _knn, _scan

#: Block sizes: one row per block, a few rows (uneven last block), the default.
BLOCKS = [8, 8 * 700 * 7, None]


def full_knn(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference: the whole distance matrix, each row sorted by (distance, index)."""
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(axis=2))
    np.fill_diagonal(d, np.inf)
    cols = np.broadcast_to(np.arange(len(x)), d.shape)
    order = np.lexsort((cols, d), axis=1)[:, :k]
    return np.take_along_axis(d, order, axis=1), order


@pytest.fixture(scope="module")
def profiles():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(700, 25)) * 4
    x[:200] += 3.0
    labels = rng.integers(0, 6, size=700)
    labels[17] = 6  # a label of one row: silhouette 0
    batch = rng.integers(0, 3, size=700)
    return x, labels, batch


@pytest.mark.parametrize("block_bytes", BLOCKS)
def test_silhouettes_equal_sklearn_in_any_block_size(profiles, block_bytes):
    x, labels, _ = profiles
    _, _, sil = _scan(x, codes=labels, block_bytes=block_bytes)
    expected = silhouette_samples(x, labels)
    assert expected[17] == 0.0 and sil[17] == 0.0
    assert np.abs(sil - expected).max() < 1e-12
    assert np.abs(sil).max() > 0.01  # not a degenerate all-zero case


@pytest.mark.parametrize("block_bytes", BLOCKS)
def test_knn_equals_sklearn_and_full_matrix_in_any_block_size(profiles, block_bytes):
    x, _, _ = profiles
    dist, idx = _knn(x, 30, block_bytes=block_bytes)
    ref_dist, ref_idx = NearestNeighbors(n_neighbors=30).fit(x).kneighbors()
    full_dist, full_idx = full_knn(x, 30)
    assert np.array_equal(idx, ref_idx) and np.array_equal(idx, full_idx)
    assert np.abs(dist - ref_dist).max() < 1e-12
    assert np.abs(dist - full_dist).max() < 1e-12


@pytest.mark.parametrize("block_bytes", BLOCKS)
def test_equidistant_neighbours_lower_index_first(block_bytes):
    # 1-D lattice: row 20's neighbours are 19 and 21 (distance 1), then 18 and 22
    # (distance 2) of which only the lower is kept with k = 3
    x = np.arange(40, dtype=float)[:, None]
    dist, idx = _knn(x, 3, block_bytes=block_bytes)
    assert idx[20].tolist() == [19, 21, 18] and dist[20].tolist() == [1.0, 1.0, 2.0]
    assert idx[0].tolist() == [1, 2, 3] and idx[39].tolist() == [38, 37, 36]
    assert np.array_equal(idx, full_knn(x, 3)[1])
    # duplicated profiles (5 copies of 10 points): the copies first, by index
    rng = np.random.default_rng(2)
    dup = np.repeat(rng.normal(size=(10, 4)), 5, axis=0)
    dist, idx = _knn(dup, 6, block_bytes=block_bytes)
    assert idx[0].tolist()[:4] == [1, 2, 3, 4] and idx[7].tolist()[:4] == [5, 6, 8, 9]
    assert np.array_equal(dist[:, :4], np.zeros((50, 4)))
    assert np.array_equal(idx, full_knn(dup, 6)[1])
    # silhouettes of the duplicates: scikit-learn's, zero distances included
    codes = np.arange(50) % 3
    sil = _scan(dup, codes=codes, block_bytes=block_bytes)[2]
    assert np.abs(sil - silhouette_samples(dup, codes)).max() < 1e-12


def test_public_silhouettes_equal_sklearn_with_small_blocks(profiles, monkeypatch):
    x, labels, batch = profiles
    monkeypatch.setattr(batch_module, "BLOCK_BYTES", 8 * 700 * 3)
    assert silhouette_label(x, labels) == pytest.approx(
        (silhouette_score(x, labels) + 1) / 2, abs=1e-12
    )
    per_label = [
        np.mean(1 - np.abs(silhouette_samples(x[labels == g], batch[labels == g])))
        for g in range(6)
    ]
    with pytest.warns(SkippedLabelsWarning, match="1 of 7 labels skipped"):
        value = silhouette_batch(x, batch, labels)
    assert value == pytest.approx(np.mean(per_label), abs=1e-12)
    # batch codes that are not 0..c-1 within a label (label 0 has batches 0 and 2 only)
    two = np.where(batch == 1, 2, batch)
    expected = np.mean(
        [
            np.mean(1 - np.abs(silhouette_samples(x[labels == g], two[labels == g])))
            for g in range(6)
        ]
    )
    with pytest.warns(SkippedLabelsWarning):
        assert silhouette_batch(x, two, labels) == pytest.approx(expected, abs=1e-12)
    # another metric goes to scikit-learn
    assert silhouette_label(x, labels, metric="manhattan") == pytest.approx(
        (silhouette_score(x, labels, metric="manhattan") + 1) / 2, abs=1e-12
    )


def test_lisi_equals_harmonypy(profiles):
    from harmonypy.lisi import compute_lisi

    x, _, batch = profiles
    ref = compute_lisi(x, pd.DataFrame({"b": batch.astype(str)}), ["b"], perplexity=30)[:, 0]
    assert np.abs(lisi(x, batch, perplexity=30) - ref).max() < 1e-12
    assert ilisi(x, batch) == pytest.approx((np.median(ref) - 1) / 2, abs=1e-12)
    assert 0.2 < ilisi(x, batch) < 1.0  # random batches mix, not perfectly


def test_panel_shared_pass_equals_the_metric_functions(profiles, monkeypatch):
    import polars as pl

    x, labels, batch = profiles
    frame = pl.DataFrame(
        {
            "Metadata_Plate": [f"P{b}" for b in batch],
            "Metadata_Treatment": [f"t{t}" for t in labels],
            "Metadata_Control": ["negcon" if t == 0 else None for t in labels],
        }
    ).hstack(pl.DataFrame(x, schema=[f"f{i}" for i in range(x.shape[1])]))
    keys = dict(batch="Metadata_Plate", label="Metadata_Treatment")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedLabelsWarning)
        row = batch_panel(frame, **keys).row(0, named=True)
        monkeypatch.setattr(batch_module, "BLOCK_BYTES", 8 * 700 * 5)
        small = batch_panel(frame, **keys).row(0, named=True)
        b, lab = frame["Metadata_Plate"], frame["Metadata_Treatment"]
        expected = {
            "silhouette_label": (silhouette_score(x, labels) + 1) / 2,
            "silhouette_batch": silhouette_batch(x, b, lab),
            "ilisi": ilisi(x, b),
            "clisi": clisi(x, lab),
            "kbet": kbet(x, b, lab),
            "graph_connectivity": graph_connectivity(x, lab),
        }
    for name, value in expected.items():
        assert row[name] == pytest.approx(value, abs=1e-12), name
    assert small == pytest.approx(row, abs=1e-12)


def test_pass_memory_is_bounded_by_the_block_not_n_squared(monkeypatch):
    # 4,000 rows: a full distance matrix is 128 MB; with 1 MB blocks the pass's
    # temporaries (3 blocks, the n x k results, the per-row sums) stay under 8 MB
    n, k = 4000, 20
    x = np.random.default_rng(4).normal(size=(n, 10))
    codes = np.arange(n) % 50
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        _, idx, sil = _scan(x, k=k, codes=codes, block_bytes=2**20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20 < n * n * 8
    assert np.array_equal(idx, NearestNeighbors(n_neighbors=k).fit(x).kneighbors()[1])
    assert np.abs(sil - silhouette_samples(x, codes)).max() < 1e-12
