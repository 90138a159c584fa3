"""Metrics against a brute-force reference (Hypothesis) and hand-computed cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cellframe.errors import InvalidInputError
from cellframe.segment.metrics import (
    DSB_THRESHOLDS,
    dsb_score,
    iou_matrix,
    jaccard,
    match_counts,
    tta_delta,
)


def brute_iou(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """IoU of every pair by explicit pixel loops (float64)."""
    t_ids = sorted(set(truth.ravel()) - {0})
    p_ids = sorted(set(pred.ravel()) - {0})
    out = np.zeros((len(t_ids), len(p_ids)))
    for i, a in enumerate(t_ids):
        for j, b in enumerate(p_ids):
            inter = union = 0
            for x, y in zip(truth.ravel(), pred.ravel(), strict=True):
                inter += (x == a) and (y == b)
                union += (x == a) or (y == b)
            out[i, j] = inter / union
    return out


def brute_tp(iou: np.ndarray, t: float) -> int:
    """Largest one-to-one matching with IoU > t, by trying every assignment."""
    n_t, n_p = iou.shape
    best = 0
    if n_t <= n_p:
        for perm in itertools.permutations(range(n_p), n_t):
            best = max(best, sum(iou[i, perm[i]] > t for i in range(n_t)))
    else:
        for perm in itertools.permutations(range(n_t), n_p):
            best = max(best, sum(iou[perm[j], j] > t for j in range(n_p)))
    return best


labels = arrays(np.int32, (5, 6), elements=st.integers(0, 4))


@settings(max_examples=60, deadline=None)
@given(truth=labels, pred=labels)
def test_iou_and_matching_equal_brute_force(truth, pred):
    ref = brute_iou(truth, pred)
    np.testing.assert_allclose(iou_matrix(truth, pred), ref, rtol=0, atol=1e-12)
    for t in (0.0, 0.1, 0.25, 0.5, 0.7):
        c = match_counts(ref, t)
        tp = brute_tp(ref, t)
        assert (c.tp, c.fp, c.fn) == (tp, ref.shape[1] - tp, ref.shape[0] - tp)
    n_t, n_p = ref.shape
    per_t = []
    for t in DSB_THRESHOLDS:
        tp = brute_tp(ref, t)
        denom = tp + (n_p - tp) + (n_t - tp)
        per_t.append(1.0 if denom == 0 else tp / denom)
    expected = float(np.mean(per_t))
    assert dsb_score(truth, pred) == pytest.approx(expected, abs=1e-12)


def test_dsb_hand_computed():
    truth = np.zeros((4, 4), int)
    truth[:2, :2] = 1
    truth[2:, 2:] = 2
    pred = np.zeros((4, 4), int)
    pred[:2, :3] = 9  # IoU with object 1 = 4/6
    # thresholds 0.50..0.65 (4 of 10): TP=1, FP=0, FN=1 -> 1/2; above: TP=0, FP=1, FN=2 -> 0
    assert dsb_score(truth, pred) == pytest.approx(4 * 0.5 / 10)
    assert DSB_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
    # IoU exactly 0.5 does not match (strict >)
    a = np.array([[1, 1, 0, 0]])
    b = np.array([[0, 1, 0, 0]])
    assert match_counts(iou_matrix(a, b), 0.5).tp == 0
    assert dsb_score(np.zeros((3, 3), int), np.zeros((3, 3), int)) == 1.0
    assert dsb_score(truth, np.zeros_like(truth)) == 0.0


def test_jaccard_and_delta():
    a = np.array([[1, 1, 0, 0]])
    b = np.array([[0, 2, 2, 0]])
    assert jaccard(a, b) == pytest.approx(1 / 3)
    assert jaccard(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0
    with pytest.raises(InvalidInputError, match="shapes differ"):
        jaccard(a, np.zeros((2, 2)))
    truth = np.zeros((4, 4), int)
    truth[:2, :2] = 1
    df = tta_delta([truth, truth], [truth, np.zeros_like(truth)], [np.zeros_like(truth), truth])
    assert df["original"].to_list() == [1.0, 0.0]
    assert df["merged"].to_list() == [0.0, 1.0]
    assert df["delta"].to_list() == [-1.0, 1.0]
    with pytest.raises(ValueError, match="valid"):
        tta_delta([truth], [truth], [truth], metric="f1")
