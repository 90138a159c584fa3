"""Cleaning: IoU, redundant assays, frequent hitters, PAINS, the per-step report."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cellframe.activity.clean import (
    clean_assay_matrix,
    frequent_hitters,
    hit_set_iou,
    redundant_assay_clusters,
)
from cellframe.activity.matrix import AssayMatrix
from cellframe.errors import EmptyInputError

# A PAINS_A match (an ene_rhod-like rhodanine) from RDKit's catalogue.
PAINS_SMILES = "S=C1SC(=Cc2ccccc2)C(=O)N1"


def test_hit_set_iou_brute_force():
    rng = np.random.default_rng(1)
    hits = rng.random((40, 6)) < 0.3
    hits[:, 5] = False  # an empty hit set
    iou = hit_set_iou(hits)
    for a, b in itertools.product(range(6), repeat=2):
        sa, sb = set(np.flatnonzero(hits[:, a])), set(np.flatnonzero(hits[:, b]))
        expected = len(sa & sb) / len(sa | sb) if sa | sb else 0.0
        assert iou[a, b] == pytest.approx(expected, abs=1e-12)


def test_redundant_clusters_complete_linkage():
    base = np.zeros((20, 5), dtype=bool)
    base[:10, 0] = True
    base[:9, 1] = True  # IoU with 0: 9/10 = 0.9 -> redundant
    base[:7, 2] = True  # IoU with 0: 0.7 exactly -> not redundant (strictly greater)
    base[10:15, 3] = True
    base[12:18, 4] = True  # IoU with 3: 3/8
    labels = redundant_assay_clusters(base)
    assert labels.tolist() == [0, 0, 1, 2, 3]
    # Every pair inside a cluster has IoU > 0.7 (complete linkage), checked by brute force.
    iou = hit_set_iou(base)
    for a, b in itertools.combinations(range(5), 2):
        if labels[a] == labels[b]:
            assert iou[a, b] > 0.7


def test_frequent_hitters_threshold():
    hits = np.zeros((3, 20), dtype=bool)
    hits[0, :2] = True  # 10% -> frequent (>=)
    hits[1, :1] = True  # 5%
    assert frequent_hitters(hits).tolist() == [True, False, False]


def test_clean_report_counts_each_step():
    nan = np.nan
    smiles = ["CCO", "CCN", "CCC", "CCCl", "c1ccccc1O", "not_a_smiles", PAINS_SMILES, "CCBr"]
    # assays: a0 ~ a1 redundant (a1 has fewer readouts), a2 no hits, a3 all missing, a4 normal
    values = np.array(
        [
            [1, 1, 0, nan, 0],
            [1, 1, 0, nan, 0],
            [1, nan, 0, nan, 0],
            [0, 0, 0, nan, 1],
            [0, 0, 0, nan, 0],
            [1, 0, 0, nan, 1],
            [1, 1, 0, nan, 1],
            [0, 0, 0, nan, 0],
        ],
        dtype=np.float32,
    )
    m = AssayMatrix([f"c{i}" for i in range(8)], [f"a{j}" for j in range(5)], values, smiles=smiles)
    with pytest.warns(UserWarning, match="1 of 8 SMILES"):
        result = clean_assay_matrix(m, frequent_hitter_fraction=0.5)
    report = {r["step"]: r for r in result.report.iter_rows(named=True)}
    assert report["invalid SMILES"]["compounds_removed"] == 1
    assert report["PAINS"]["compounds_removed"] == 1
    assert result.removed["PAINS"] == ["c6"]
    assert report["assays without readouts"]["assays_removed"] == 1
    assert result.removed["assays without readouts"] == ["a3"]
    assert result.removed["assays without hits"] == ["a2"]
    # a0 hits {c0,c1,c2}, a1 hits {c0,c1}: IoU 2/3 < 0.7 -> both kept here.
    assert report["redundant assays"]["assays_removed"] == 0
    # Left: a0, a1, a4. >= 50% of 3 assays means 2 hits: c0 and c1 (c2 and c3 hit one).
    assert sorted(result.removed["frequent hitters"]) == ["c0", "c1"]
    # a1's only remaining readouts (c3, c4, c7) are no-hits: removed at the last step.
    assert result.removed["assays left without hits"] == ["a1"]
    assert result.matrix.compounds == ["c2", "c3", "c4", "c7"]
    assert result.matrix.assays == ["a0", "a4"]
    assert result.report["compounds_left"].to_list() == [7, 6, 6, 6, 6, 4, 4]
    assert result.report["assays_left"].to_list() == [5, 5, 4, 3, 3, 3, 2]


def test_clean_redundant_keeps_best_measured():
    values = np.zeros((12, 3), dtype=np.float32)
    values[:4, 0] = 1
    values[:4, 1] = 1  # same hit set as a0 -> IoU 1
    values[6:8, 2] = 1
    values[10:, 0] = np.nan  # a0 has fewer readouts: a1 is kept
    m = AssayMatrix([f"c{i}" for i in range(12)], ["a0", "a1", "a2"], values)
    with pytest.warns(UserWarning, match="no SMILES"):
        result = clean_assay_matrix(m, frequent_hitter_fraction=None)
    assert result.matrix.assays == ["a1", "a2"]
    assert result.removed["redundant assays"] == ["a0"]


def test_clean_everything_removed_raises():
    m = AssayMatrix(["c0"], ["a0"], np.zeros((1, 1)))
    with pytest.raises(EmptyInputError, match="cleaning left"), pytest.warns(UserWarning):
        clean_assay_matrix(m)
