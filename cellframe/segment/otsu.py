"""The classical baseline (DOMAIN.md §4): Otsu threshold, then connected components."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from cellframe.errors import EmptyInputError, InvalidInputError
from cellframe.segment._checks import as_image_stack

__all__ = ["otsu_segment", "otsu_threshold"]


def otsu_threshold(image: np.ndarray, nbins: int = 256) -> float:
    """Otsu's threshold: the cut maximizing the between-class variance of the histogram.

    Same definition and binning as ``skimage.filters.threshold_otsu``: integer
    images use one bin per integer value, float images the centres of ``nbins``
    equal bins between the minimum and maximum.

    Raises
    ------
    EmptyInputError
        If the image is constant (no threshold separates anything).
    """
    arr = np.asarray(image)
    x = arr.astype(np.float64).ravel()
    lo, hi = x.min(), x.max()
    if lo == hi:
        raise EmptyInputError(f"the image is constant (every pixel is {lo}); nothing to threshold")
    if np.issubdtype(arr.dtype, np.integer):
        counts = np.bincount(arr.ravel().astype(np.int64) - int(lo))
        centres = np.arange(int(lo), int(hi) + 1, dtype=np.float64)
    else:
        counts, edges = np.histogram(x, bins=nbins, range=(lo, hi))
        centres = (edges[:-1] + edges[1:]) / 2
    w1 = np.cumsum(counts)  # weight of the class at or below each cut
    w2 = np.cumsum(counts[::-1])[::-1]  # weight of the class at or above
    m1 = np.cumsum(counts * centres) / np.maximum(w1, 1)
    m2 = (np.cumsum((counts * centres)[::-1]) / np.maximum(w2[::-1], 1))[::-1]
    between = w1[:-1] * w2[1:] * (m1[:-1] - m2[1:]) ** 2
    return float(centres[int(np.argmax(between))])


def otsu_segment(
    image: np.ndarray,
    *,
    channel: int = 0,
    sigma: float = 1.0,
    min_size: int = 10,
    connectivity: int = 1,
) -> np.ndarray:
    """Segment bright objects: Gaussian smoothing, Otsu threshold, connected components.

    Parameters
    ----------
    image : numpy.ndarray, shape (H, W) or (C, H, W)
        One channel is used.
    channel : int, default 0
        Channel of a ``(C, H, W)`` image to segment.
    sigma : float, default 1.0
        Standard deviation of the Gaussian smoothing in pixels (0 = none).
    min_size : int, default 10
        Components smaller than this many pixels are dropped.
    connectivity : {1, 2}, default 1
        1 = pixels touching by an edge are connected, 2 = also by a corner.

    Returns
    -------
    numpy.ndarray of int32, shape (H, W)
        Label image: 0 background, 1..N objects in raster order.

    Raises
    ------
    InvalidInputError
        For an image that is not 2-D/3-D or a channel out of range.
    EmptyInputError
        For an empty, all-zero or constant image.
    """
    stack = as_image_stack(image)
    if not 0 <= channel < stack.shape[0]:
        raise InvalidInputError(
            f"channel {channel} out of range for an image with {stack.shape[0]}"
        )
    x = stack[channel].astype(np.float64)
    if sigma > 0:
        x = ndi.gaussian_filter(x, sigma)
    mask = x > otsu_threshold(x)
    return label_components(mask, min_size=min_size, connectivity=connectivity)


def label_components(mask: np.ndarray, *, min_size: int = 0, connectivity: int = 1) -> np.ndarray:
    """Connected components of a boolean mask as an int32 label image, small ones removed."""
    if connectivity not in (1, 2):
        raise InvalidInputError(f"connectivity must be 1 or 2, not {connectivity}")
    structure = ndi.generate_binary_structure(2, connectivity)
    labels, n = ndi.label(mask, structure=structure)
    if min_size > 1 and n:
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        keep = sizes >= min_size
        keep[0] = False
        new_ids = np.zeros(n + 1, dtype=np.int32)
        new_ids[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
        labels = new_ids[labels]
    return labels.astype(np.int32)
