"""Single-cell crops: fixed boxes centred on object centres (DOMAIN.md §5).

Pure NumPy: a site's image ``(C, H, W)`` and the centres of its objects give
one ``(C, box, box)`` crop per object, zero-padded where the box leaves the
image, optionally with the pixels of other objects (or background) set to zero.
"""

from __future__ import annotations

import numpy as np

from cellframe.errors import InvalidInputError

__all__ = ["BOX_SIZE", "crop_boxes", "crop_objects"]

#: Side of a crop in pixels (DeepProfiler ``box_size``; DOMAIN.md §5).
BOX_SIZE = 128


def crop_boxes(x: np.ndarray, y: np.ndarray, box_size: int = BOX_SIZE) -> np.ndarray:
    """Integer boxes ``(top, left, bottom, right)`` centred on object centres.

    The centre pixel is the one holding the centre (``floor(y)``, ``floor(x)``),
    and it lands at row and column ``box_size // 2`` of the crop, so an even box
    reaches ``box_size // 2`` pixels before the centre and ``box_size // 2 - 1``
    after it. This equals DeepProfiler's box ``[y - box/2, y + box/2]`` to
    within one pixel.

    Parameters
    ----------
    x, y : numpy.ndarray, shape (n,)
        Centres in pixels (``Location_Center_X`` / ``_Y``: column / row).
    box_size : int
        Side of the box.

    Returns
    -------
    numpy.ndarray of int64, shape (n, 4)
        ``top, left, bottom, right`` with ``bottom`` and
        ``right`` exclusive; they may lie outside the image.

    Examples
    --------
    >>> crop_boxes(np.array([10.7]), np.array([64.0]), box_size=4).tolist()
    [[62, 8, 66, 12]]
    """
    if box_size < 1:
        raise InvalidInputError(f"box_size must be a positive number of pixels, not {box_size}")
    cx = np.floor(np.asarray(x, dtype=np.float64)).astype(np.int64)
    cy = np.floor(np.asarray(y, dtype=np.float64)).astype(np.int64)
    half = box_size // 2
    top, left = cy - half, cx - half
    return np.stack([top, left, top + box_size, left + box_size], axis=1)


def check_centres(x: np.ndarray, y: np.ndarray, height: int, width: int, *, where: str) -> None:
    """Raise :class:`InvalidInputError` if a centre is not a finite point inside the image."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    bad = ~np.isfinite(x) | ~np.isfinite(y) | (x < 0) | (y < 0) | (x >= width) | (y >= height)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidInputError(
            f"{where}: {int(bad.sum())} of {len(x)} object centre(s) lie outside the "
            f"{height} x {width} image (first: x={x[i]:g}, y={y[i]:g}); check that "
            "Location_Center_X is the column and _Y the row, in pixels of this image, "
            "and that objects belong to this site"
        )


def crop_objects(
    image: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    box_size: int = BOX_SIZE,
    labels: np.ndarray | None = None,
    object_numbers: np.ndarray | None = None,
    dtype: np.dtype | type = np.float32,
    where: str = "image",
) -> np.ndarray:
    """Cut a ``box_size`` square around each object centre, all channels.

    Parameters
    ----------
    image : numpy.ndarray, shape (C, H, W)
        Pixels of one site (a 2-D image is taken as one channel).
    x, y : numpy.ndarray, shape (n,)
        Object centres (column, row) in pixels; each must lie inside the image.
    box_size : int
        Side of the crop (default 128).
    labels : numpy.ndarray, shape (H, W), optional
        Label image. With ``object_numbers`` given, every pixel of
        a crop whose label is not that object's number is set to zero
        (masking of pixels outside the object, DOMAIN.md §5).
    object_numbers : numpy.ndarray of int, shape (n,), optional
        Label value of each object in ``labels``; needed with ``labels``.
    dtype : numpy dtype
        Dtype of the crops (default float32).
    where : str
        Name of the site used in error messages.

    Returns
    -------
    numpy.ndarray, shape (n, C, box_size, box_size)
        Pixels of the box outside the image are 0.

    Raises
    ------
    InvalidInputError
        If ``image`` is not 2-D/3-D, a centre lies outside the image, or
        ``labels`` does not match the image or lacks ``object_numbers``.

    Examples
    --------
    >>> img = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    >>> crop_objects(img, np.array([0.0]), np.array([0.0]), box_size=2)[0, 0].tolist()
    [[0.0, 0.0], [0.0, 0.0]]
    >>> crop_objects(img, np.array([1.0]), np.array([1.0]), box_size=2)[0, 0].tolist()
    [[0.0, 1.0], [4.0, 5.0]]
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3:
        raise InvalidInputError(
            f"{where}: expected an image of shape (channels, height, width), got {image.shape}"
        )
    n_channels, height, width = image.shape
    if height == 0 or width == 0 or n_channels == 0:
        raise InvalidInputError(f"{where}: the image is empty (shape {image.shape})")
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise InvalidInputError(f"{where}: {len(x)} x centres but {len(y)} y centres")
    check_centres(x, y, height, width, where=where)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (height, width):
            raise InvalidInputError(
                f"{where}: label image of shape {labels.shape} does not match the "
                f"{height} x {width} image"
            )
        if object_numbers is None:
            raise InvalidInputError(f"{where}: masking with a label image needs the object numbers")
        object_numbers = np.asarray(object_numbers).ravel()
        if object_numbers.shape != x.shape:
            raise InvalidInputError(
                f"{where}: {len(object_numbers)} object numbers for {len(x)} centres"
            )
    boxes = crop_boxes(x, y, box_size)
    out = np.zeros((len(x), n_channels, box_size, box_size), dtype=dtype)
    for i, (top, left, bottom, right) in enumerate(boxes):
        t, l_ = max(top, 0), max(left, 0)
        b, r = min(bottom, height), min(right, width)
        patch = image[:, t:b, l_:r]
        if labels is not None:
            patch = patch * (labels[t:b, l_:r] == object_numbers[i])
        out[i, :, t - top : b - top, l_ - left : r - left] = patch
    return out
