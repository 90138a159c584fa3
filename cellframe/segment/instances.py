"""From U-Net probabilities to instance label images (DOMAIN.md §4)."""

from __future__ import annotations

import numpy as np

from cellframe.errors import InvalidInputError
from cellframe.segment.otsu import label_components

__all__ = [
    "labels_from_foreground",
    "labels_from_probabilities",
    "labels_from_three_class",
    "relabel_sequential",
]


def labels_from_foreground(
    probability: np.ndarray, *, threshold: float = 0.5, min_size: int = 10
) -> np.ndarray:
    """Threshold a foreground probability map and cut objects by connected components.

    Parameters
    ----------
    probability : numpy.ndarray, shape (H, W) or (1, H, W)
        Foreground probabilities.
    threshold : float, default 0.5
        Pixels with probability > threshold are foreground.
    min_size : int, default 10
        Components smaller than this are dropped.

    Returns
    -------
    numpy.ndarray of int32, shape (H, W)
        Label image.
    """
    p = np.asarray(probability)
    if p.ndim == 3 and p.shape[0] == 1:
        p = p[0]
    if p.ndim != 2:
        raise InvalidInputError(f"expected a (H, W) probability map, got shape {p.shape}")
    return label_components(p > threshold, min_size=min_size)


def labels_from_three_class(probabilities: np.ndarray, *, min_size: int = 10) -> np.ndarray:
    """Instances from background / interior / boundary probabilities.

    Seeds are the connected components of the interior class (argmax == 1); each
    seed then grows by a watershed over the background probability into every
    pixel that is not background (argmax != 0), so touching nuclei separated by
    a predicted boundary stay apart.

    Parameters
    ----------
    probabilities : numpy.ndarray, shape (3, H, W)
        Background, interior, boundary (they sum to 1 per pixel).
    min_size : int, default 10
        Seeds and final objects smaller than this are dropped.

    Returns
    -------
    numpy.ndarray of int32, shape (H, W)
        Label image.
    """
    from skimage.segmentation import watershed

    p = np.asarray(probabilities)
    if p.ndim != 3 or p.shape[0] != 3:
        raise InvalidInputError(
            f"expected (3, H, W) background/interior/boundary probabilities, got shape {p.shape}"
        )
    cls = np.argmax(p, axis=0)
    seeds = label_components(cls == 1, min_size=max(1, min_size // 2))
    foreground = cls != 0
    labels = watershed(p[0], markers=seeds, mask=foreground | (seeds > 0))
    labels = labels.astype(np.int32)
    if min_size > 1 and labels.max():
        sizes = np.bincount(labels.ravel())
        small = np.flatnonzero(sizes < min_size)
        labels[np.isin(labels, small[small > 0])] = 0
    return relabel_sequential(labels)


def relabel_sequential(labels: np.ndarray) -> np.ndarray:
    """Renumber object ids to 1..N in order of first appearance in raster order."""
    lab = np.asarray(labels)
    ids, first = np.unique(lab.ravel(), return_index=True)
    keep = ids != 0
    ids, first = ids[keep], first[keep]
    order = ids[np.argsort(first)]
    lut = np.zeros(int(lab.max(initial=0)) + 1, dtype=np.int32)
    lut[order] = np.arange(1, len(order) + 1, dtype=np.int32)
    return lut[lab]


def labels_from_probabilities(
    probabilities: np.ndarray, *, threshold: float = 0.5, min_size: int = 10
) -> np.ndarray:
    """Dispatch on the number of output channels: 1 -> threshold + components, 3 -> watershed."""
    p = np.asarray(probabilities)
    if p.ndim == 2 or p.shape[0] == 1:
        return labels_from_foreground(p, threshold=threshold, min_size=min_size)
    if p.shape[0] == 3:
        return labels_from_three_class(p, min_size=min_size)
    raise InvalidInputError(
        f"probabilities have {p.shape[0]} channels; expected 1 (foreground) or 3 "
        "(background/interior/boundary)"
    )
