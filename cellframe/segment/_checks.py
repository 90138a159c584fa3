"""Input checks and intensity normalization shared by the segmentation functions."""

from __future__ import annotations

import numpy as np

from cellframe.errors import EmptyInputError, InvalidInputError

#: Fewest pixels along a side of an image to segment: one row or column of pixels holds
#: no object outline (a 1 x 1 "image" is a failed export, not a site).
MIN_SEGMENT_SIDE = 2


def as_image_stack(
    image: np.ndarray, *, name: str = "image", min_side: int = MIN_SEGMENT_SIDE
) -> np.ndarray:
    """Return ``image`` as a ``(C, H, W)`` array, rejecting wrong or empty input.

    Parameters
    ----------
    image : array-like, shape (H, W) or (C, H, W)
    name : str
        What to call the array in error messages (the file and site, where known).
    min_side : int, default 2
        Fewest pixels along each side.

    Raises
    ------
    InvalidInputError
        If the array is not 2-D or 3-D or not numeric.
    InvalidImageError
        If a pixel is NaN or infinite, or a side is shorter than ``min_side``.
    EmptyInputError
        If it has no pixels, or every channel is blank (all zeros or constant).

    Warns
    -----
    ImageWarning
        If some, not all, channels are blank (the count and names).
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
    from cellframe.io.images import ImageWarning, check_pixels

    blank = check_pixels(arr, where=name, min_side=min_side, purpose="what can hold a nucleus")
    if len(blank) == arr.shape[0]:
        raise EmptyInputError(
            f"{name} is blank (constant): every pixel of its {arr.shape[0]} channel(s) has one "
            f"value ({arr.reshape(-1)[0].item()!r}); nothing to segment (a failed "
            "acquisition?); skip this site"
        )
    if blank:
        import warnings

        warnings.warn(
            f"{name}: {len(blank)} of {arr.shape[0]} channel(s) are blank (constant): "
            f"{', '.join(blank)}",
            ImageWarning,
            stacklevel=3,
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
    image : numpy.ndarray, shape (C, H, W)
    low, high : float
        Percentiles (0-100) mapped to 0 and 1; values outside are not clipped.

    Returns
    -------
    numpy.ndarray of float32, shape (C, H, W)
        The normalized image.
    """
    x = np.asarray(image, dtype=np.float32)
    lo = np.percentile(x, low, axis=(-2, -1), keepdims=True)
    hi = np.percentile(x, high, axis=(-2, -1), keepdims=True)
    return ((x - lo) / np.maximum(hi - lo, eps)).astype(np.float32)
