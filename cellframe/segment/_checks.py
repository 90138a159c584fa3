"""Input checks and intensity normalization shared by the segmentation functions."""

from __future__ import annotations

import numpy as np

from cellframe.errors import EmptyInputError, InvalidInputError


def as_image_stack(image: np.ndarray, *, name: str = "image") -> np.ndarray:
    """Return ``image`` as a ``(C, H, W)`` array, rejecting wrong or empty input.

    Parameters
    ----------
    image : array-like
        ``(H, W)`` or ``(C, H, W)``.
    name : str
        What to call the array in error messages.

    Raises
    ------
    InvalidInputError
        If the array is not 2-D or 3-D or not numeric.
    EmptyInputError
        If it has no pixels or every pixel is zero.
    """
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    if arr.ndim != 3:
        raise InvalidInputError(
            f"{name} has shape {arr.shape}; expected (H, W) or (C, H, W). For a volume, "
            "segment its 2-D planes one by one; for several sites, loop over them"
        )
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InvalidInputError(f"{name} has dtype {arr.dtype}; expected a numeric array")
    if arr.size == 0:
        raise EmptyInputError(f"{name} of shape {arr.shape} has no pixels")
    if not np.any(arr):
        raise EmptyInputError(
            f"{name} is all zeros: nothing to segment (a blank or failed acquisition?); "
            "skip this site"
        )
    return arr


def normalize_percentile(
    image: np.ndarray, low: float = 1.0, high: float = 99.8, eps: float = 1e-6
) -> np.ndarray:
    """Scale each channel so its ``low``/``high`` percentiles map to 0/1 (float32).

    The same normalization is used for training and prediction, so a model
    trained on 8-bit images applies to 16-bit ones.

    Parameters
    ----------
    image : numpy.ndarray
        ``(C, H, W)`` array.
    low, high : float
        Percentiles (0-100) mapped to 0 and 1; values outside are not clipped.

    Returns
    -------
    numpy.ndarray
        float32 array of the same shape.
    """
    x = np.asarray(image, dtype=np.float32)
    lo = np.percentile(x, low, axis=(-2, -1), keepdims=True)
    hi = np.percentile(x, high, axis=(-2, -1), keepdims=True)
    return ((x - lo) / np.maximum(hi - lo, eps)).astype(np.float32)
