"""Segmentation metrics (DOMAIN.md §4): Jaccard index and the Data Science Bowl 2018 score.

For instance output, a predicted and a true object match at threshold ``t`` when
their IoU is strictly greater than ``t``, one-to-one. Then
``TP / (TP + FP + FN)`` is averaged over ``t`` in 0.50, 0.55, ..., 0.95 (the DSB
2018 score, Caicedo et al. 2019). The TTA effect on an image is
``delta = merged - original``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import sparse
from scipy.sparse.csgraph import maximum_bipartite_matching

from cellframe.errors import InvalidChoiceError, InvalidInputError

__all__ = [
    "DSB_THRESHOLDS",
    "MatchCounts",
    "dsb_score",
    "iou_matrix",
    "jaccard",
    "match_counts",
    "tta_delta",
]

#: IoU thresholds of the DSB 2018 score: 0.50, 0.55, ..., 0.95.
DSB_THRESHOLDS: tuple[float, ...] = tuple(np.round(np.arange(0.5, 1.0, 0.05), 2))


def _same_shape(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if a.shape != b.shape:
        raise InvalidInputError(f"{what}: shapes differ, {a.shape} vs {b.shape}")
    if a.ndim != 2:
        raise InvalidInputError(f"{what}: expected 2-D images, got shape {a.shape}")


def jaccard(truth: np.ndarray, prediction: np.ndarray) -> float:
    """Jaccard index (IoU) of two foreground masks; nonzero pixels are foreground.

    Two empty masks score 1.0 (nothing to find, nothing found).

    Examples
    --------
    >>> import numpy as np
    >>> jaccard(np.array([[1, 1, 0, 0]]), np.array([[0, 1, 1, 0]]))
    0.3333333333333333
    """
    a = np.asarray(truth) != 0
    b = np.asarray(prediction) != 0
    _same_shape(a, b, "jaccard")
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else float(np.count_nonzero(a & b) / union)


def _relabel(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Map the object ids of ``labels`` to 1..n (0 stays background)."""
    ids, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.reshape(labels.shape)
    if ids[0] == 0:
        return inverse, len(ids) - 1
    return inverse + 1, len(ids)


def iou_matrix(truth: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """IoU of every pair (true object, predicted object) of two label images.

    Parameters
    ----------
    truth, prediction : numpy.ndarray of int, shape (H, W)
        Integer label images of the same 2-D shape (0 = background). Object ids
        need not be consecutive; rows and columns follow the sorted ids.

    Returns
    -------
    numpy.ndarray of float64, shape (n_true, n_pred)
        IoU of each true object (row) with each predicted object (column).
    """
    t = np.asarray(truth)
    p = np.asarray(prediction)
    _same_shape(t, p, "iou_matrix")
    t, nt = _relabel(t)
    p, np_ = _relabel(p)
    # contingency[i, j] = pixels with true id i and predicted id j (0 = background)
    contingency = np.bincount(
        (t.ravel().astype(np.int64) * (np_ + 1) + p.ravel()), minlength=(nt + 1) * (np_ + 1)
    ).reshape(nt + 1, np_ + 1)
    inter = contingency[1:, 1:].astype(np.float64)
    area_t = contingency[1:, :].sum(axis=1, dtype=np.float64)
    area_p = contingency[:, 1:].sum(axis=0, dtype=np.float64)
    union = area_t[:, None] + area_p[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


@dataclass(frozen=True)
class MatchCounts:
    """True positives, false positives and false negatives at one IoU threshold."""

    threshold: float
    tp: int
    fp: int
    fn: int

    @property
    def score(self) -> float:
        """``TP / (TP + FP + FN)``; 1.0 when both images are empty."""
        denom = self.tp + self.fp + self.fn
        return 1.0 if denom == 0 else self.tp / denom


def match_counts(iou: np.ndarray, threshold: float) -> MatchCounts:
    """Count one-to-one matches with ``IoU > threshold`` in an IoU matrix.

    The matching has the most pairs possible (a maximum bipartite matching); for
    thresholds >= 0.5 each object can overlap at most one other by that much, so
    this equals the greedy count used by the DSB evaluation.
    """
    n_true, n_pred = iou.shape
    if n_true == 0 or n_pred == 0:
        return MatchCounts(float(threshold), 0, n_pred, n_true)
    graph = sparse.csr_array(iou > threshold)
    if graph.nnz == 0:
        tp = 0
    else:
        tp = int(np.count_nonzero(maximum_bipartite_matching(graph, perm_type="column") >= 0))
    return MatchCounts(float(threshold), tp, n_pred - tp, n_true - tp)


def dsb_score(
    truth: np.ndarray,
    prediction: np.ndarray,
    thresholds: Sequence[float] = DSB_THRESHOLDS,
    *,
    return_counts: bool = False,
) -> float | tuple[float, list[MatchCounts]]:
    """Data Science Bowl 2018 score of one image: mean over thresholds of TP/(TP+FP+FN).

    Parameters
    ----------
    truth, prediction : numpy.ndarray of int, shape (H, W)
        Integer label images (0 = background).
    thresholds : sequence of float
        IoU thresholds (default 0.50, 0.55, ..., 0.95).
    return_counts : bool
        Also return the :class:`MatchCounts` of each threshold.

    Returns
    -------
    float, or (float, list of MatchCounts)

    Examples
    --------
    >>> import numpy as np
    >>> t = np.zeros((4, 4), int); t[:2, :2] = 1
    >>> dsb_score(t, t)
    1.0
    """
    iou = iou_matrix(truth, prediction)
    counts = [match_counts(iou, t) for t in thresholds]
    score = float(np.mean([c.score for c in counts]))
    return (score, counts) if return_counts else score


def tta_delta(
    truths: Sequence[np.ndarray],
    originals: Sequence[np.ndarray],
    merged: Sequence[np.ndarray],
    *,
    metric: str = "dsb",
) -> pl.DataFrame:
    """Per-image effect of test-time augmentation: ``delta = merged - original``.

    Parameters
    ----------
    truths, originals, merged : sequences of numpy.ndarray, each shape (H, W)
        Ground truth, prediction without TTA and prediction with TTA, per image.
    metric : {"dsb", "jaccard"}
        DSB 2018 score of label images or Jaccard index of foreground masks.

    Returns
    -------
    polars.DataFrame
        Columns ``image`` (index), ``original``, ``merged``, ``delta``.
    """
    scorers = {"dsb": dsb_score, "jaccard": jaccard}
    if metric not in scorers:
        raise InvalidChoiceError(f"unknown metric {metric!r}; valid: {sorted(scorers)}")
    if not len(truths) == len(originals) == len(merged):
        raise InvalidInputError(
            f"tta_delta needs one original and one merged prediction per truth image; got "
            f"{len(truths)}, {len(originals)}, {len(merged)}"
        )
    fn = scorers[metric]
    before = [float(fn(t, o)) for t, o in zip(truths, originals, strict=True)]
    after = [float(fn(t, m)) for t, m in zip(truths, merged, strict=True)]
    return pl.DataFrame(
        {
            "image": list(range(len(before))),
            "original": before,
            "merged": after,
            "delta": [a - b for a, b in zip(after, before, strict=True)],
        }
    )
