"""Objects the way CellProfiler defines them (DOMAIN.md §8): nuclei, cells, cytoplasm.

* :func:`identify_primary` - IdentifyPrimaryObjects: threshold the
  (Gaussian-smoothed) image by minimum cross-entropy or Otsu, fill holes,
  split touching objects by a watershed from suppressed local maxima of the
  smoothed intensity (or of the distance transform), drop objects touching
  the border and those outside the diameter range.
* :func:`identify_secondary` - IdentifySecondaryObjects: grow every nucleus
  over the cell-body channel inside that channel's own threshold mask, by
  CellProfiler's Propagation (``centrosome.propagate``, CellProfiler's own
  library: a distance mixing image gradient and pixel distance weighted by
  the regularization factor) or a gradient watershed; cell i keeps nucleus
  i's number.
* :func:`identify_tertiary` - IdentifyTertiaryObjects: cytoplasm i is cell i
  minus nucleus i, the nucleus shrunk by its one-pixel outline first.
* :func:`segment_site` runs the three and relates them as CellProfiler
  writes it (``Parent_Nuclei``, ``Children_Cytoplasm_Count``, ...).

The conventions are those of CellProfiler's public source (IdentifyPrimaryObjects,
Threshold, IdentifySecondaryObjects, IdentifyTertiaryObjects): integer images
are divided by their dtype's maximum, as CellProfiler does for images without
other metadata (float images are used as they are), threshold smoothing
sigma = scale / 0.6744 / 2, declumping smoothing filter 2.35 x min diameter /
3.5, maxima suppressed within min diameter / 1.5 (on an image shrunk to
10 / min diameter when the minimum diameter exceeds 10 px), size limits on
area pi d^2 / 4. The default threshold smoothing, sigma 1, is CellProfiler's
default scale 1.3488; CellProfiler 5 without advanced settings uses scale 1
(sigma 0.74). On CellProfiler's ExampleHuman site, with its pipeline's
settings, the objects are CellProfiler's own (tests/segment/test_classical.py).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy import ndimage as ndi

from cellframe.columns import OBJECT_NUMBER
from cellframe.errors import (
    BlankImageError,
    EmptyInputError,
    InvalidChoiceError,
    InvalidImageError,
    InvalidInputError,
    NoObjectsWarning,
    SizeRangeWarning,
)

__all__ = [
    "COMPARTMENTS",
    "THRESHOLD_METHODS",
    "DeclumpSettings",
    "SiteObjects",
    "ThresholdSettings",
    "identify_primary",
    "identify_secondary",
    "identify_tertiary",
    "relate_objects",
    "save_labels",
    "segment_site",
    "threshold_image",
]

#: The three compartments, in CellProfiler's order of identification.
COMPARTMENTS = ("Nuclei", "Cells", "Cytoplasm")

_EIGHT = np.ones((3, 3), bool)


def _li(pixels: np.ndarray) -> float:
    from skimage.filters import threshold_li

    return float(threshold_li(pixels))


def _otsu(pixels: np.ndarray) -> float:
    from skimage.filters import threshold_otsu

    return float(threshold_otsu(pixels))


def _otsu_three_class(pixels: np.ndarray, middle: int) -> float:
    from skimage.filters import threshold_multiotsu

    # CellProfiler bins three-class Otsu in 128 levels; the middle class goes to the
    # foreground (the lower cut, CellProfiler's default) or the background (the upper).
    return float(threshold_multiotsu(pixels, classes=3, nbins=128)[middle])


#: Threshold methods: CellProfiler's "Minimum Cross-Entropy", two-class "Otsu", and
#: three-class Otsu with the middle class in the foreground or the background.
THRESHOLD_METHODS: dict[str, Callable[[np.ndarray], float]] = {
    "minimum_cross_entropy": _li,
    "otsu": _otsu,
    "otsu_three_class": lambda pixels: _otsu_three_class(pixels, 0),
    "otsu_three_class_background": lambda pixels: _otsu_three_class(pixels, 1),
}

#: A threshold: a registry name, a callable ``pixels -> float``, or a manual value.
Threshold = str | float | Callable[[np.ndarray], float]


# ------------------------------------------------------------------ inputs
def _as_image(image: Any, name: str) -> np.ndarray:
    """``image`` as float64 in CellProfiler's scale (integers divided by their dtype's max)."""
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise InvalidImageError(
            f"{name} has shape {arr.shape}; objects are identified on 2-D grayscale images "
            "(one channel of one site)"
        )
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InvalidImageError(f"{name} has dtype {arr.dtype}; expected a numeric image")
    if arr.size == 0 or min(arr.shape) < 2:
        raise EmptyInputError(f"{name} of shape {arr.shape} has too few pixels to hold objects")
    if np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(arr.dtype)
        out = arr.astype(np.float64) / float(info.max)
    else:
        out = arr.astype(np.float64)
        if not np.isfinite(out).all():
            bad = int((~np.isfinite(out)).sum())
            raise InvalidImageError(
                f"{name} has {bad} NaN or infinite pixels; replace them (e.g. by the image "
                "median) before identifying objects"
            )
    if out.min() == out.max():
        raise BlankImageError(
            f"{name} is blank (every pixel is {out.flat[0]!r}): no objects can be identified "
            "on it; check that the channel's file is the right one, or skip this site"
        )
    return out


def _as_labels(labels: Any, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise InvalidImageError(
            f"{name} must be a 2-D integer label image (0 = background), got shape {arr.shape} "
            f"and dtype {arr.dtype}"
        )
    if shape is not None and arr.shape != shape:
        raise InvalidImageError(
            f"{name} is {arr.shape[0]} x {arr.shape[1]} but the image is {shape[0]} x "
            f"{shape[1]}; labels and images of a site must have the same size"
        )
    if arr.size and arr.min() < 0:
        raise InvalidImageError(f"{name} has negative labels; labels are 0 (background) or > 0")
    return arr.astype(np.int32, copy=False)


def _resolve_threshold(method: Threshold) -> Callable[[np.ndarray], float]:
    if callable(method):
        return method
    if isinstance(method, int | float) and not isinstance(method, bool):
        value = float(method)
        return lambda _pixels: value
    if isinstance(method, str) and method in THRESHOLD_METHODS:
        return THRESHOLD_METHODS[method]
    raise InvalidChoiceError(
        f"unknown threshold method {method!r}; valid: {', '.join(THRESHOLD_METHODS)}, "
        "a number (manual threshold) or a callable pixels -> threshold"
    )


# --------------------------------------------------------------- threshold
def threshold_image(
    image: np.ndarray,
    *,
    method: Threshold = "minimum_cross_entropy",
    smoothing_sigma: float = 1.0,
    correction: float = 1.0,
    bounds: tuple[float, float] | None = None,
    strategy: str = "global",
    window: int = 50,
) -> tuple[np.ndarray, float]:
    """Foreground mask of ``image`` by a threshold, as CellProfiler's Threshold computes it.

    The threshold is computed on the unsmoothed pixels, multiplied by
    ``correction`` and clipped to ``bounds``; the mask is the Gaussian-smoothed
    image (edges normalized for the missing neighbours) at or above it.

    Parameters
    ----------
    image : numpy.ndarray of float, shape (H, W)
        Image on CellProfiler's [0, 1] scale.
    method : str, float or callable
        ``"minimum_cross_entropy"`` (``skimage.filters.threshold_li``),
        ``"otsu"``, ``"otsu_three_class"`` (middle class to the foreground),
        ``"otsu_three_class_background"``, a manual value, or
        ``pixels -> threshold``.
    smoothing_sigma : float
        Gaussian sigma; CellProfiler's "threshold smoothing scale" s gives
        sigma = s / 0.6744 / 2 (its default 1.3488 is sigma 1); 0 for none.
    correction : float
        Threshold correction factor.
    bounds : (float, float), optional
        Lower and upper bounds on the threshold (CellProfiler's default
        (0, 1) is the range of its scaled images; none by default, so float
        images in other units threshold as well).
    strategy : {"global", "adaptive"}
        One threshold for the image, or CellProfiler's "Adaptive": a threshold
        per block of ``window`` x ``window`` px, blended by a cubic spline
        through the block centres and kept within 0.7-1.5 x the global one.
    window : int
        Adaptive block size in pixels (CellProfiler's default 50).

    Returns
    -------
    (numpy.ndarray of bool, shape (H, W), float)
        Mask and the final threshold (the mean of the local
        thresholds for ``"adaptive"``, as CellProfiler reports it).

    Raises
    ------
    InvalidChoiceError
        For an unknown method or strategy.
    InvalidInputError
        If the adaptive window is more than half the image's side.
    """
    fn = _resolve_threshold(method)
    if strategy not in ("global", "adaptive"):
        raise InvalidChoiceError(
            f"unknown threshold strategy {strategy!r}; valid: global, adaptive"
        )
    lo, hi = (-np.inf, np.inf) if bounds is None else (float(bounds[0]), float(bounds[1]))
    guide = min(max(_one_threshold(image.ravel(), fn) * correction, lo), hi)
    level: float | np.ndarray = guide
    reported = guide
    if strategy == "adaptive":
        local = _block_thresholds(image, fn, window) * correction
        level = np.clip(local, max(lo, 0.7 * guide), min(hi, 1.5 * guide))
        reported = float(level.mean())
    if smoothing_sigma <= 0:
        return image >= level, reported
    from centrosome.smooth import smooth_with_function_and_mask

    blurred = smooth_with_function_and_mask(
        image,
        lambda x: ndi.gaussian_filter(x, smoothing_sigma, mode="constant", cval=0),
        np.ones(image.shape, bool),
    )
    return blurred >= level, reported


def _one_threshold(pixels: np.ndarray, fn: Callable[[np.ndarray], float]) -> float:
    """``fn(pixels)``, or the value itself where every pixel has it (CellProfiler's shortcut)."""
    return float(pixels[0]) if np.all(pixels == pixels[0]) else float(fn(pixels))


def _block_thresholds(
    image: np.ndarray, fn: Callable[[np.ndarray], float], window: int
) -> np.ndarray:
    """Per-block thresholds blended into a smooth surface (CellProfiler's adaptive strategy)."""
    from scipy.interpolate import RectBivariateSpline

    shape = np.array(image.shape)
    blocks = shape // int(window)
    if (blocks < 2).any():
        raise InvalidInputError(
            f"the adaptive window of {window} px is more than half of the {shape[0]} x "
            f"{shape[1]} image; use a window of at most {int(shape.min()) // 2} px"
        )
    step = shape / blocks  # float steps share the remainder between blocks
    values = np.empty(tuple(blocks))
    for i in range(blocks[0]):
        for j in range(blocks[1]):
            block = image[
                int(i * step[0]) : int((i + 1) * step[0]), int(j * step[1]) : int((j + 1) * step[1])
            ]
            values[i, j] = _one_threshold(block.ravel(), fn)
    order = int(min(3, blocks.min() - 1))
    centres = [(np.arange(n) + 0.5) * st for n, st in zip(blocks, step, strict=True)]
    spline = RectBivariateSpline(
        centres[0], centres[1], values, kx=order, ky=order,
        bbox=[0, float(shape[0]), 0, float(shape[1])],
    )  # fmt: skip
    return spline(np.arange(shape[0]) + 0.5, np.arange(shape[1]) + 0.5)


# ----------------------------------------------------------------- primary
@dataclass
class _Primary:
    labels: np.ndarray  # final objects, numbered 1..n
    unedited: np.ndarray  # after declumping, before the border and size filters
    threshold: float


def _smooth_for_declumping(image: np.ndarray, filter_size: float) -> np.ndarray:
    """IdentifyPrimaryObjects' declumping blur: Gaussian sigma size / 2.35, cut at +-size / 2."""
    if filter_size <= 0:
        return image
    sigma = filter_size / 2.35
    half = max(int(filter_size / 2.0), 1)
    taps = np.exp(-0.5 * np.arange(-half, half + 1) ** 2 / sigma**2) / (np.sqrt(2 * np.pi) * sigma)

    def blur(x: np.ndarray) -> np.ndarray:
        x = ndi.convolve1d(x, taps, axis=0, mode="constant")
        return ndi.convolve1d(x, taps, axis=1, mode="constant")

    return blur(image) / blur(np.ones(image.shape))


def _maxima(image: np.ndarray, labels: np.ndarray, suppression: float, resize: float) -> np.ndarray:
    """Local maxima within ``suppression`` px inside each object, each blob shrunk to a point."""
    from centrosome.cpmorphology import binary_shrink, is_local_maximum, strel_disk

    footprint = strel_disk(max(1, suppression - 0.5))
    if resize < 1.0:
        shape = np.array(image.shape) * resize
        grid = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float) / resize
        small = ndi.map_coordinates(image, grid)
        small_labels = ndi.map_coordinates(labels, grid, order=0).astype(labels.dtype)
        peaks = is_local_maximum(small, small_labels, footprint)
        peaks[small <= 0] = False
        back = np.mgrid[0 : image.shape[0], 0 : image.shape[1]].astype(float)
        back /= float(image.shape[0]) / float(peaks.shape[0])
        peaks = ndi.map_coordinates(peaks.astype(float), back) > 0.5
    else:
        peaks = is_local_maximum(image, labels, footprint)
        peaks[image <= 0] = False
    return binary_shrink(peaks)


def _declump(
    image: np.ndarray,
    labels: np.ndarray,
    *,
    method: str,
    min_diameter: float,
    smoothing: float | None,
    maxima_distance: float | None,
) -> np.ndarray:
    """Split touching objects by a watershed from suppressed maxima (IdentifyPrimaryObjects)."""
    from skimage.segmentation import watershed

    if min_diameter > 10 and maxima_distance is None:
        resize, suppression = 10.0 / min_diameter, 7.0
    else:
        resize = 1.0
        suppression = min_diameter / 1.5 if maxima_distance is None else maxima_distance
    if method == "intensity":
        filter_size = 2.35 * min_diameter / 3.5 if smoothing is None else smoothing
        peaks = _maxima(_smooth_for_declumping(image, filter_size), labels, suppression, resize)
        surface = 1.0 - image
    else:  # shape
        distance = ndi.distance_transform_edt(labels > 0)
        # CellProfiler jitters the distances (seed 0) so plateaus have one maximum.
        distance += np.random.default_rng(0).uniform(0, 0.001, distance.shape)
        peaks = _maxima(distance, labels, suppression, resize)
        surface = distance.max() - distance
    markers, _ = ndi.label(peaks, _EIGHT)
    # Negative markers make the watershed's queue FIFO among equal levels (fair boundaries).
    split = watershed(surface, markers=-markers, connectivity=_EIGHT, mask=labels != 0)
    return (-split).astype(np.int32)


def _drop_border(labels: np.ndarray) -> np.ndarray:
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    edge = edge[edge > 0]
    if edge.size:
        labels = np.where(np.isin(labels, edge), 0, labels)
    return labels


def _drop_by_size(labels: np.ndarray, size_range: tuple[float, float]) -> np.ndarray:
    areas = np.bincount(labels.ravel())
    lo, hi = (np.pi * d * d / 4 for d in size_range)
    per_pixel = areas[labels]
    return np.where((per_pixel < lo) | (per_pixel > hi), 0, labels)


def _warn_size_range(labels: np.ndarray, size_range: tuple[float, float], name: str) -> None:
    """Warn when the diameter range drops most of the objects found (a range that does not fit).

    The warning carries its counts as ``counts`` (objects considered, smaller,
    larger, their diameters' median, the range), so a caller measuring many
    sites can sum them into one line.
    """
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas > 0]
    if not areas.size:
        return
    lo, hi = (np.pi * d * d / 4 for d in size_range)
    small, large = int((areas < lo).sum()), int((areas > hi).sum())
    if 2 * (small + large) <= areas.size:
        return
    median = float(2 * np.sqrt(np.median(areas) / np.pi))
    low, high = (f"{d:g}" for d in size_range)
    warning = SizeRangeWarning(
        f"{name}: {small + large} of {areas.size} objects lie outside the diameter range "
        f"{low}-{high} px ({small} smaller, {large} larger; median diameter {median:.1f} px) "
        "and were dropped; set size_range=(min, max) to the objects' diameters in pixels "
        "(cellframe measure: --nuclei-diameter MIN,MAX) or check the image (threshold, "
        "illumination correction)"
    )
    warning.counts = {  # type: ignore[attr-defined]
        "objects": int(areas.size), "smaller": small, "larger": large,
        "median_diameter": median, "size_range": (size_range[0], size_range[1]),
    }  # fmt: skip
    warnings.warn(warning, stacklevel=4)


def _check_size_range(size_range: tuple[float, float]) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in size_range)
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"size_range must be (min_diameter, max_diameter) in pixels, got {size_range!r}"
        ) from None
    if not 0 <= lo <= hi:
        raise InvalidInputError(
            f"size_range {size_range!r}: need 0 <= min_diameter <= max_diameter (pixels)"
        )
    return lo, hi


def _primary(
    image: np.ndarray,
    *,
    threshold: Threshold = "minimum_cross_entropy",
    smoothing_sigma: float = 1.0,
    threshold_correction: float = 1.0,
    threshold_strategy: str = "global",
    adaptive_window: int = 50,
    size_range: tuple[float, float] = (10, 40),
    declump: str = "intensity",
    declump_smoothing: float | None = None,
    maxima_distance: float | None = None,
    exclude_border: bool = True,
    exclude_size: bool = True,
    fill_holes: bool = True,
    name: str = "the primary image",
) -> _Primary:
    from centrosome.cpmorphology import fill_labeled_holes, relabel

    if declump not in ("intensity", "shape", "none"):
        raise InvalidChoiceError(
            f"unknown declump method {declump!r}; valid: intensity, shape, none"
        )
    lo, hi = _check_size_range(size_range)
    img = _as_image(image, name)
    mask, final = threshold_image(
        img,
        method=threshold,
        smoothing_sigma=smoothing_sigma,
        correction=threshold_correction,
        strategy=threshold_strategy,
        window=adaptive_window,
    )
    if fill_holes:
        # Holes smaller than the largest object's bounding square are filled (CellProfiler).
        mask = fill_labeled_holes(mask, size_fn=lambda size, _fg: size < hi * hi)
    labels, _ = ndi.label(mask, _EIGHT)
    if declump != "none" and labels.max() > 0:
        labels = _declump(
            img,
            labels,
            method=declump,
            min_diameter=lo,
            smoothing=declump_smoothing,
            maxima_distance=maxima_distance,
        )
    unedited = labels.astype(np.int32)
    out = _drop_border(unedited) if exclude_border else unedited.copy()
    if exclude_size:
        _warn_size_range(out, (lo, hi), name)
        out = _drop_by_size(out, (lo, hi))
    if fill_holes:
        out = fill_labeled_holes(out)
    out, _ = relabel(out)
    return _Primary(out.astype(np.int32), unedited, final)


@dataclass(frozen=True)
class ThresholdSettings:
    """How an image is thresholded: the Threshold settings of CellProfiler's Identify modules.

    Parameters
    ----------
    method : str, float or callable, default "minimum_cross_entropy"
        ``"minimum_cross_entropy"`` (CellProfiler's default, Li's method) or
        ``"otsu"`` (two classes), a manual value on the [0, 1] scale, or a
        callable ``pixels -> threshold``.
    smoothing_sigma : float, default 1.0
        Gaussian sigma applied before thresholding (CellProfiler's smoothing
        scale 1.3488 = sigma 1.0); 0 for none.
    correction : float, default 1.0
        Multiplies the computed threshold.
    strategy : {"global", "adaptive"}
        One threshold, or CellProfiler's adaptive blocks (see :func:`threshold_image`).
    window : int, default 50
        Adaptive block size in pixels.

    Raises
    ------
    InvalidChoiceError
        For an unknown method or strategy.

    Examples
    --------
    >>> ThresholdSettings(method="otsu", smoothing_sigma=0).strategy
    'global'
    """

    method: Threshold = "minimum_cross_entropy"
    smoothing_sigma: float = 1.0
    correction: float = 1.0
    strategy: str = "global"
    window: int = 50

    def __post_init__(self) -> None:
        _resolve_threshold(self.method)
        if self.strategy not in ("global", "adaptive"):
            raise InvalidChoiceError(
                f"unknown threshold strategy {self.strategy!r}; valid: global, adaptive"
            )

    def apply(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """Foreground mask and final threshold of ``image`` (:func:`threshold_image`)."""
        return threshold_image(
            image,
            method=self.method,
            smoothing_sigma=self.smoothing_sigma,
            correction=self.correction,
            strategy=self.strategy,
            window=self.window,
        )


@dataclass(frozen=True)
class DeclumpSettings:
    """How touching primary objects are split: IdentifyPrimaryObjects' declumping settings.

    Parameters
    ----------
    method : {"intensity", "shape", "none"}
        Split touching objects from maxima of the smoothed intensity (dividing
        lines along dim valleys) or of the distance transform (along necks).
    smoothing : float, optional
        Declumping filter size (default 2.35 x min diameter / 3.5).
    maxima_distance : float, optional
        Maxima closer than this are suppressed (default min diameter / 1.5).

    Raises
    ------
    InvalidChoiceError
        For an unknown method.
    """

    method: str = "intensity"
    smoothing: float | None = None
    maxima_distance: float | None = None

    def __post_init__(self) -> None:
        if self.method not in ("intensity", "shape", "none"):
            raise InvalidChoiceError(
                f"unknown declump method {self.method!r}; valid: intensity, shape, none"
            )


def identify_primary(
    image: np.ndarray,
    *,
    threshold: ThresholdSettings | None = None,
    size_range: tuple[float, float] = (10, 40),
    declump: DeclumpSettings | None = None,
    exclude_border: bool = True,
    exclude_size: bool = True,
    fill_holes: bool = True,
) -> np.ndarray:
    """Nuclei (or any primary objects) as IdentifyPrimaryObjects finds them.

    Parameters
    ----------
    image : numpy.ndarray
        2-D image; integer images are divided by their dtype's maximum.
    threshold : ThresholdSettings, optional
        Threshold method, smoothing, correction and strategy;
        ``ThresholdSettings()`` (minimum cross-entropy, sigma 1, global) by default.
    size_range : (float, float)
        Typical diameter (min, max) in pixels: objects with an area below
        pi min^2 / 4 or above pi max^2 / 4 are dropped, and the minimum sets
        the declumping scales.
    declump : DeclumpSettings, optional
        How touching objects are split; ``DeclumpSettings()`` (by intensity) by default.
    exclude_border : bool
        Drop objects touching the image border.
    exclude_size : bool
        Drop objects outside ``size_range``.
    fill_holes : bool
        Fill holes after thresholding and after declumping.

    Returns
    -------
    numpy.ndarray
        int32 labels, 0 background, objects 1..n in raster order of their first pixel.

    Raises
    ------
    InvalidImageError
        If the image is not 2-D numeric or has NaN/inf pixels.
    BlankImageError
        If the image is constant.
    InvalidChoiceError
        For an unknown threshold or declump method.

    Examples
    --------
    >>> yy, xx = np.mgrid[0:64, 0:64]
    >>> img = np.zeros((64, 64))
    >>> for cy, cx in [(20, 20), (40, 44)]:
    ...     img[(yy - cy) ** 2 + (xx - cx) ** 2 <= 36] = 0.8
    >>> labels = identify_primary(
    ...     img, size_range=(5, 30), threshold=ThresholdSettings(smoothing_sigma=0)
    ... )
    >>> int(labels.max()), np.bincount(labels.ravel())[1:].tolist()
    (2, [113, 113])

    With the default smoothing (sigma 1), the blurred edge of these
    sharp-edged disks stays above the threshold one pixel further out:

    >>> np.bincount(identify_primary(img, size_range=(5, 30)).ravel())[1:].tolist()
    [177, 177]
    """
    threshold = ThresholdSettings() if threshold is None else threshold
    declump = DeclumpSettings() if declump is None else declump
    return _primary(
        image,
        threshold=threshold.method,
        smoothing_sigma=threshold.smoothing_sigma,
        threshold_correction=threshold.correction,
        threshold_strategy=threshold.strategy,
        adaptive_window=threshold.window,
        size_range=size_range,
        declump=declump.method,
        declump_smoothing=declump.smoothing,
        maxima_distance=declump.maxima_distance,
        exclude_border=exclude_border,
        exclude_size=exclude_size,
        fill_holes=fill_holes,
        name="the primary image",
    ).labels


# --------------------------------------------------------------- secondary
def _seed_labels(nuclei: np.ndarray, unfiltered: np.ndarray | None) -> np.ndarray:
    """IdentifySecondaryObjects' seeds: the nuclei, plus unfiltered objects touching the border.

    Border objects still claim the pixels around them (so no neighbouring cell
    grows into them); they are dropped from the output afterwards.
    """
    if unfiltered is None:
        return nuclei
    edge = np.unique(
        np.concatenate([unfiltered[0], unfiltered[-1], unfiltered[:, 0], unfiltered[:, -1]])
    )
    touching = np.zeros(int(unfiltered.max()) + 1, bool)
    touching[edge] = True
    touching[0] = False
    seeds = unfiltered.copy()
    seeds[~touching[unfiltered] & (nuclei == 0)] = 0
    return seeds


def _keep_nucleus_numbers(grown: np.ndarray, nuclei: np.ndarray) -> np.ndarray:
    """Renumber grown regions by the nucleus inside them; regions without one are dropped."""
    top = int(grown.max())
    if top == 0:
        return grown.astype(np.int32)
    lookup = np.zeros(top + 1, np.int64)
    inside = nuclei > 0
    np.maximum.at(lookup, grown[inside], nuclei[inside])  # CellProfiler's ndi.maximum lookup
    lookup[0] = 0
    return lookup[grown].astype(np.int32)


def identify_secondary(
    image: np.ndarray,
    nuclei_labels: np.ndarray,
    *,
    method: str = "propagation",
    regularization: float = 0.05,
    threshold: ThresholdSettings | None = None,
    fill_holes: bool = True,
    unfiltered_nuclei: np.ndarray | None = None,
) -> np.ndarray:
    """Cells grown from the nuclei over a cell-body image (IdentifySecondaryObjects).

    Parameters
    ----------
    image : numpy.ndarray
        2-D cell-body image (AGP or RNA in Cell Painting).
    nuclei_labels : numpy.ndarray
        The primary objects, labels 1..n.
    method : {"propagation", "watershed"}
        CellProfiler's Propagation (``centrosome.propagate``: distance mixing
        the image gradient and pixel distance, weighted by ``regularization``)
        or "Watershed - Gradient" (a watershed of the Sobel gradient).
    regularization : float
        Propagation's lambda: small follows intensity edges, large grows
        evenly (0.05 in the Cell Painting pipelines).
    threshold : ThresholdSettings, optional
        The cell-body channel's own threshold; ``ThresholdSettings()`` by default.
    fill_holes : bool
        Fill holes in the cells.
    unfiltered_nuclei : numpy.ndarray, optional
        The primary labels before the border and size filters; objects of it
        touching the border then claim their pixels, as in CellProfiler.

    Returns
    -------
    numpy.ndarray
        int32 labels: cell i has nucleus i's number and contains it.

    Raises
    ------
    InvalidImageError
        If shapes differ or inputs are not 2-D.
    BlankImageError
        If the cell-body image is constant.
    InvalidChoiceError
        For an unknown method.
    """
    threshold = ThresholdSettings() if threshold is None else threshold
    return _secondary(
        image,
        nuclei_labels,
        method=method,
        regularization=regularization,
        threshold=threshold.method,
        smoothing_sigma=threshold.smoothing_sigma,
        threshold_correction=threshold.correction,
        threshold_strategy=threshold.strategy,
        adaptive_window=threshold.window,
        fill_holes=fill_holes,
        unfiltered_nuclei=unfiltered_nuclei,
        name="the cell-body image",
    )[0]


def _secondary(
    image: np.ndarray,
    nuclei_labels: np.ndarray,
    *,
    method: str = "propagation",
    regularization: float = 0.05,
    threshold: Threshold = "minimum_cross_entropy",
    smoothing_sigma: float = 1.0,
    threshold_correction: float = 1.0,
    threshold_strategy: str = "global",
    adaptive_window: int = 50,
    fill_holes: bool = True,
    unfiltered_nuclei: np.ndarray | None = None,
    name: str = "the cell-body image",
) -> tuple[np.ndarray, float]:
    if method not in ("propagation", "watershed"):
        raise InvalidChoiceError(
            f"unknown secondary method {method!r}; valid: propagation, watershed"
        )
    img = _as_image(image, name)
    nuclei = _as_labels(nuclei_labels, "nuclei_labels", img.shape)
    unfiltered = (
        None
        if unfiltered_nuclei is None
        else _as_labels(unfiltered_nuclei, "unfiltered_nuclei", img.shape)
    )
    mask, final = threshold_image(
        img,
        method=threshold,
        smoothing_sigma=smoothing_sigma,
        correction=threshold_correction,
        strategy=threshold_strategy,
        window=adaptive_window,
    )
    if nuclei.max() == 0:
        return np.zeros(img.shape, np.int32), final
    seeds = _seed_labels(nuclei, unfiltered)
    if method == "propagation":
        from centrosome.propagate import propagate

        grown, _ = propagate(img, seeds, mask, float(regularization))
    else:
        from skimage.filters import sobel
        from skimage.segmentation import watershed

        grown = watershed(sobel(img), markers=seeds, connectivity=_EIGHT, mask=mask | (seeds > 0))
    cells = _keep_nucleus_numbers(grown, nuclei)
    if fill_holes:
        from centrosome.cpmorphology import fill_labeled_holes

        cells = fill_labeled_holes(cells).astype(np.int32)
    return cells, final


# ---------------------------------------------------------------- tertiary
def identify_tertiary(cells: np.ndarray, nuclei: np.ndarray, *, shrink: bool = True) -> np.ndarray:
    """Cytoplasm: each cell minus its nucleus (IdentifyTertiaryObjects).

    Parameters
    ----------
    cells, nuclei : numpy.ndarray of int, shape (H, W)
        Secondary and primary labels of the same site.
    shrink : bool
        Shrink the nuclei by their one-pixel outline before subtracting, so
        every cytoplasm keeps a ring touching its nucleus (CellProfiler's
        default, and what Cell Painting pipelines use).

    Returns
    -------
    numpy.ndarray of int32, shape (H, W)
        Labels: cytoplasm i lies in cell i.

    Examples
    --------
    >>> cells = np.zeros((7, 7), np.int32); cells[1:6, 1:6] = 1
    >>> nuclei = np.zeros((7, 7), np.int32); nuclei[2:5, 2:5] = 1
    >>> int((identify_tertiary(cells, nuclei) > 0).sum()), int((identify_tertiary(cells, nuclei, shrink=False) > 0).sum())
    (24, 16)
    """
    cells = _as_labels(cells, "cells")
    nuclei = _as_labels(nuclei, "nuclei", cells.shape)
    if shrink:
        from centrosome.outline import outline

        removed = (nuclei > 0) & (outline(nuclei) == 0)
    else:
        removed = nuclei > 0
    return np.where(removed, 0, cells).astype(np.int32)


# ----------------------------------------------------------- relationships
def relate_objects(parents: np.ndarray, children: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Parent of each child and children per parent, as CellProfiler relates objects.

    A child's parent is the parent label it overlaps most (0 where it overlaps
    none; ties go to the smaller label).

    Returns
    -------
    (numpy.ndarray, shape (n_children,), numpy.ndarray, shape (n_parents,))
        ``parent_of_child`` and ``children_per_parent``; ``n_children`` and
        ``n_parents`` are the largest child and parent labels.
    """
    n_parents, n_children = int(parents.max(initial=0)), int(children.max(initial=0))
    both = (parents > 0) & (children > 0)
    # Overlap counts of the (child, parent) pairs that occur: memory grows with the
    # pairs, not with children x parents (10,000 objects would need 800 MB dense).
    pairs = children[both].astype(np.int64) * (n_parents + 1) + parents[both]
    keys, counts = np.unique(pairs, return_counts=True)
    child, parent = np.divmod(keys, n_parents + 1)
    # Per child: the largest count, then the smallest parent label.
    order = np.lexsort((parent, -counts, child))
    first = np.ones(order.size, bool)
    first[1:] = child[order][1:] != child[order][:-1]
    best = order[first]
    parent_of_child = np.zeros(n_children + 1, np.int64)
    parent_of_child[child[best]] = parent[best]
    parent_of_child = parent_of_child[1:]
    children_per_parent = np.bincount(parent_of_child, minlength=n_parents + 1)[1:]
    return parent_of_child.astype(np.int32), children_per_parent.astype(np.int32)


def _relationships(nuclei: np.ndarray, cells: np.ndarray, cytoplasm: np.ndarray) -> pl.DataFrame:
    n = int(max(nuclei.max(initial=0), cells.max(initial=0), cytoplasm.max(initial=0)))

    def padded(values: np.ndarray) -> np.ndarray:
        out = np.zeros(n, np.int32)
        out[: values.size] = values
        return out

    cell_parent, nucleus_cells = relate_objects(nuclei, cells)
    cyto_cell, cell_cytos = relate_objects(cells, cytoplasm)
    cyto_nucleus, nucleus_cytos = relate_objects(nuclei, cytoplasm)
    return pl.DataFrame(
        {
            OBJECT_NUMBER: pl.Series(np.arange(1, n + 1, dtype=np.int64)),
            "Nuclei_Children_Cells_Count": padded(nucleus_cells),
            "Nuclei_Children_Cytoplasm_Count": padded(nucleus_cytos),
            "Cells_Parent_Nuclei": padded(cell_parent),
            "Cells_Children_Cytoplasm_Count": padded(cell_cytos),
            "Cytoplasm_Parent_Cells": padded(cyto_cell),
            "Cytoplasm_Parent_Nuclei": padded(cyto_nucleus),
        }
    )


# -------------------------------------------------------------------- site
@dataclass
class SiteObjects:
    """The three compartments of one site and how they relate.

    Attributes
    ----------
    nuclei, cells, cytoplasm : numpy.ndarray of int32, shape (H, W)
        Labels; object i of each compartment belongs to nucleus i.
    relationships : polars.DataFrame
        One row per object number (``Metadata_ObjectNumber``) with
        CellProfiler's relationship columns, prefixed by compartment:
        ``Nuclei_Children_Cells_Count``, ``Nuclei_Children_Cytoplasm_Count``,
        ``Cells_Parent_Nuclei``, ``Cells_Children_Cytoplasm_Count``,
        ``Cytoplasm_Parent_Cells``, ``Cytoplasm_Parent_Nuclei``.
    thresholds : dict of str to float
        Final thresholds (``Threshold_FinalThreshold_Nuclei``, ``..._Cells``)
        of the objects identified here.
    """

    nuclei: np.ndarray
    cells: np.ndarray
    cytoplasm: np.ndarray
    relationships: pl.DataFrame
    thresholds: dict[str, float] = field(default_factory=dict)

    @property
    def count(self) -> int:
        """Number of objects (nuclei)."""
        return int(self.nuclei.max(initial=0))

    def labels(self) -> dict[str, np.ndarray]:
        """``{"Nuclei": ..., "Cells": ..., "Cytoplasm": ...}``."""
        return {"Nuclei": self.nuclei, "Cells": self.cells, "Cytoplasm": self.cytoplasm}


_PRIMARY_KEYS = {
    "threshold", "smoothing_sigma", "threshold_correction", "threshold_strategy",
    "adaptive_window", "size_range", "declump",
    "declump_smoothing", "maxima_distance", "exclude_border", "exclude_size", "fill_holes",
}  # fmt: skip
_SECONDARY_KEYS = {
    "method", "regularization", "threshold", "smoothing_sigma", "threshold_correction",
    "threshold_strategy", "adaptive_window", "fill_holes",
}  # fmt: skip


def _check_keys(params: Mapping[str, Any] | None, valid: set[str], what: str) -> dict[str, Any]:
    params = dict(params or {})
    unknown = sorted(set(params) - valid)
    if unknown:
        raise InvalidInputError(
            f"unknown {what} parameter(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}"
        )
    return params


def segment_site(
    channels: Mapping[str, np.ndarray],
    *,
    nuclei: str = "DNA",
    cells: str = "AGP",
    primary: Mapping[str, Any] | None = None,
    secondary: Mapping[str, Any] | None = None,
    shrink: bool = True,
    site: str = "the site",
    nuclei_labels: np.ndarray | None = None,
) -> SiteObjects:
    """Nuclei, cells and cytoplasm of one site, related as CellProfiler writes them.

    Parameters
    ----------
    channels : mapping of str to numpy.ndarray, each shape (H, W)
        The site's images by channel name.
    nuclei, cells : str
        Channels for the nuclei (DNA) and the cell bodies (AGP or RNA).
    primary : mapping, optional
        Settings of :func:`identify_primary`, flat (config-file) keys:
        ``threshold`` (the method), ``smoothing_sigma``, ``threshold_correction``,
        ``threshold_strategy``, ``adaptive_window`` (:class:`ThresholdSettings`),
        ``declump``, ``declump_smoothing``, ``maxima_distance``
        (:class:`DeclumpSettings`), ``size_range``, ``exclude_border``,
        ``exclude_size``, ``fill_holes``.
    secondary : mapping, optional
        Settings of :func:`identify_secondary`, flat keys: ``method``,
        ``regularization``, ``fill_holes`` and the five threshold keys above.
    shrink : bool
        Shrink nuclei before subtracting them (:func:`identify_tertiary`).
    site : str
        How to name the site in messages (e.g. ``"plate P1 well A01 site 1"``).
    nuclei_labels : numpy.ndarray of int, shape (H, W), optional
        Nuclei found another way (e.g. :func:`cellframe.segment.unet_segment`):
        cells are grown from them and keep their numbers; ``nuclei`` and
        ``primary`` are then not used.

    Returns
    -------
    SiteObjects

    Raises
    ------
    InvalidInputError
        If a named channel is missing or a parameter is unknown.
    InvalidImageError
        If the site's images differ in shape.
    BlankImageError
        If the nuclei or cell-body channel is constant.

    Warns
    -----
    NoObjectsWarning
        If no nucleus is found (the labels are then all zero).
    """
    p_args = _check_keys(primary, _PRIMARY_KEYS, "primary")
    s_args = _check_keys(secondary, _SECONDARY_KEYS, "secondary")
    if nuclei_labels is not None and p_args:
        raise InvalidInputError(
            "pass either nuclei_labels= (nuclei found another way) or primary= parameters "
            "(to identify them here), not both"
        )
    needed = (cells,) if nuclei_labels is not None else (nuclei, cells)
    missing = [c for c in needed if c not in channels]
    if missing:
        raise InvalidInputError(
            f"{site} has no channel {' or '.join(repr(m) for m in missing)}; its channels are "
            f"{', '.join(map(repr, channels)) or 'none'}: pass nuclei=/cells= naming one of them"
        )
    shapes = {name: np.shape(img) for name, img in channels.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(
            f"{k} {v[0]} x {v[1]}" if len(v) == 2 else f"{k} {v}" for k, v in shapes.items()
        )
        raise InvalidImageError(
            f"{site} has images of different shapes ({listed}); every channel of a site "
            "must have the same size"
        )
    if nuclei_labels is None:
        p = _primary(channels[nuclei], name=f"channel {nuclei!r} of {site}", **p_args)
    else:
        given = _as_labels(nuclei_labels, f"nuclei_labels of {site}", np.shape(channels[cells]))
        p = _Primary(given, given, float("nan"))
    shape = p.labels.shape
    if p.labels.max() == 0:
        source = (
            "in nuclei_labels"
            if nuclei_labels is not None
            else f"in channel {nuclei!r} (threshold {p.threshold:.4g})"
        )
        warnings.warn(
            f"{site}: 0 nuclei found {source}; its cells and cytoplasm are empty",
            NoObjectsWarning,
            stacklevel=2,
        )
        # The cell-body channel is still checked, so a blank one is reported.
        _as_image(channels[cells], f"channel {cells!r} of {site}")
        empty = np.zeros(shape, np.int32)
        return SiteObjects(
            p.labels, empty, empty.copy(), _relationships(p.labels, empty, empty),
            _thresholds(p.threshold, None),
        )  # fmt: skip
    cell_labels, threshold_cells = _secondary(
        channels[cells],
        p.labels,
        unfiltered_nuclei=p.unedited,
        name=f"channel {cells!r} of {site}",
        **s_args,
    )
    cytoplasm = identify_tertiary(cell_labels, p.labels, shrink=shrink)
    return SiteObjects(
        p.labels,
        cell_labels,
        cytoplasm,
        _relationships(p.labels, cell_labels, cytoplasm),
        _thresholds(p.threshold, threshold_cells),
    )


def _thresholds(nuclei: float, cells: float | None) -> dict[str, float]:
    """CellProfiler's ``Threshold_FinalThreshold_<objects>`` of the thresholds computed here."""
    out = {}
    if not np.isnan(nuclei):
        out["Threshold_FinalThreshold_Nuclei"] = nuclei
    if cells is not None:
        out["Threshold_FinalThreshold_Cells"] = cells
    return out


# ------------------------------------------------------------------ saving
_SAFE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=-]*$")


def save_labels(
    objects: SiteObjects, folder: str | os.PathLike[str], site_key: str
) -> dict[str, Path]:
    """Write a site's label images as TIFF: ``{folder}/{site_key}_{Compartment}.tif``.

    Labels are stored as uint16 (int32 when a site has 65,536 objects or more),
    zlib-compressed; each file is written to a temporary name and renamed, so
    a file is never half-written. The suffix is ``.tif``, as
    :func:`cellframe.segment.segment_sites` and
    :func:`cellframe.io.images.write_labels` write (releases before this one
    wrote ``.tiff`` here; :func:`cellframe.io.images.read_labels` reads both).

    Parameters
    ----------
    objects : SiteObjects
    folder : path
        Created if missing.
    site_key : str
        A file-name-safe key of the site, e.g. ``"P1_A01_1"`` (letters, digits,
        ``._+=-``).

    Returns
    -------
    dict of str to pathlib.Path
        Compartment -> file written.

    Raises
    ------
    InvalidInputError
        If ``site_key`` is not file-name safe.
    """
    import tifffile

    if not _SAFE_KEY.match(site_key):
        raise InvalidInputError(
            f"site_key {site_key!r} is not a safe file name: use letters, digits and ._+=- only "
            "(e.g. 'P1_A01_1')"
        )
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for compartment, labels in objects.labels().items():
        dtype = np.uint16 if labels.max(initial=0) < 65536 else np.int32
        path = out / f"{site_key}_{compartment}.tif"
        tmp = path.with_name(f".{path.name}.tmp")
        tifffile.imwrite(tmp, labels.astype(dtype), compression="zlib")
        os.replace(tmp, path)
        written[compartment] = path
    return written
