"""Illumination correction, as CellProfiler's CorrectIlluminationCalculate/Apply do it (DOMAIN.md §8).

One function per plate and channel: average every site's image of that
channel ("Regular" intensities, "All" images), smooth the average heavily,
rescale it so its robust minimum is 1, and divide every image by it.

:class:`IlluminationFunction` is a fitted step (the contract of
:mod:`cellframe.profiles._fitted`): ``statistics(images)`` is the float64 sum
image and the number of images, which merge exactly over sites and plates, so
an engine fits one plate's channel from the statistics of its parts.
``statistic="median"`` (per-pixel median over sites) and ``"trimmed_mean"``
(the robust option) have no finite summary: their statistics keep the images
themselves (``needs_all_rows``), and merging concatenates them.

CellProfiler conventions followed (CorrectIlluminationCalculate, read in
CellProfiler's public source):

* rescale "Yes": the robust minimum is the value at the 2nd percentile of the
  function's positive pixels; values below it are raised to it, then the
  function is divided by it, so its minimum is exactly 1 and dividing an
  image by it never brightens a pixel;
* rescale "Median": divided by the median of the positive pixels (no clipping);
* smoothing "Median Filter" with a size in pixels, or "Fit Polynomial" (the
  second-degree polynomial in x and y of ``centrosome.smooth.fit_polynomial``);
* CorrectIlluminationApply "Divide": ``corrected = image / function``, with
  integer images scaled to [0, 1] by their dtype's maximum first, as
  CellProfiler loads them.

The robust option is a per-pixel trimmed mean over sites (the lowest and
highest ``trim`` fraction of each pixel's values dropped), not BaSiCPy:
BaSiCPy 2.0 on PyPI pins NumPy 1.26 and SciPy 1.12, older than this project's.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from scipy import ndimage as ndi

from cellframe.columns import PLATE
from cellframe.errors import (
    EmptyInputError,
    IlluminationWarning,
    InvalidChoiceError,
    InvalidImageError,
    InvalidInputError,
)

__all__ = [
    "CHANNEL",
    "IlluminationFunction",
    "IlluminationStatistics",
    "apply_illumination",
    "fit_illumination",
]

#: Column of the channel name in :meth:`IlluminationFunction.to_frame`.
CHANNEL = "Metadata_Channel"

#: CellProfiler's ROBUST_FACTOR: rescaling takes the 2nd percentile as the minimum.
ROBUST_FACTOR = 0.02

_STATISTICS = ("mean", "median", "trimmed_mean")
_SMOOTHING = ("median", "polynomial", "none")
_RESCALE = ("minimum", "median", "none")

#: The median filter runs on the average shrunk by an integer factor so its
#: window is at most this many pixels wide (a 500-pixel median filter at full
#: size takes minutes); the result is interpolated back to full size.
_MAX_MEDIAN_WINDOW = 31


def _as_float_image(image: Any, what: str) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise InvalidImageError(
            f"{what} has shape {arr.shape}; an illumination function needs 2-D grayscale "
            "images (one channel of one site): pass each channel separately"
        )
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InvalidImageError(f"{what} has dtype {arr.dtype}; expected a numeric image")
    if arr.size == 0:
        raise EmptyInputError(f"{what} of shape {arr.shape} has no pixels")
    out = arr.astype(np.float64, copy=False)
    if not np.isfinite(out).all():
        bad = int((~np.isfinite(out)).sum())
        raise InvalidImageError(
            f"{what} has {bad} NaN or infinite pixels; replace them (e.g. by the image median) "
            "before fitting or applying illumination correction"
        )
    return out


def _choice(value: str, valid: tuple[str, ...], name: str) -> str:
    if value not in valid:
        raise InvalidChoiceError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")
    return value


@dataclass
class IlluminationStatistics:
    """What an illumination fit needs from some sites of one plate and channel.

    Attributes
    ----------
    total : numpy.ndarray of float64, shape (height, width)
        Sum of the images.
    count : int
        Number of images summed.
    images : list of numpy.ndarray, each shape (height, width), optional
        The images themselves (in their own dtype: a uint16 site costs 2 bytes
        a pixel), kept for ``statistic="median"`` and
        ``"trimmed_mean"``; ``None`` for the mean.
    """

    total: np.ndarray
    count: int
    images: list[np.ndarray] | None = None
    needs_all_rows: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        self.needs_all_rows = self.images is not None

    @property
    def shape(self) -> tuple[int, int]:
        """Image shape, (height, width)."""
        return tuple(self.total.shape)  # type: ignore[return-value]

    def merge(self, other: IlluminationStatistics) -> IlluminationStatistics:
        """Statistics of both sets of images together (the sum is exact for integer images).

        Raises
        ------
        InvalidInputError
            If the images have different shapes, or one side kept its images
            and the other did not.
        """
        if self.shape != other.shape:
            raise InvalidImageError(
                f"cannot merge illumination statistics of {self.shape[0]} x {self.shape[1]} "
                f"images with {other.shape[0]} x {other.shape[1]} images; every site of a plate "
                "and channel must have the same image size"
            )
        if (self.images is None) != (other.images is None):
            raise InvalidInputError(
                "cannot merge illumination statistics computed with different statistic= "
                "(one kept the images for a median, the other only their sum)"
            )
        images = None if self.images is None else [*self.images, *other.images]  # type: ignore[misc]
        return IlluminationStatistics(self.total + other.total, self.count + other.count, images)


class IlluminationFunction:
    """An illumination function of one plate and channel (CorrectIlluminationCalculate).

    Parameters
    ----------
    statistic : {"mean", "median", "trimmed_mean"}
        How sites are combined per pixel: the mean (CellProfiler's "Regular"
        intensities, mergeable), the median, or the robust trimmed mean (both
        gather the images).
    smoothing : {"median", "polynomial", "none"}
        CellProfiler's "Median Filter", "Fit Polynomial" or "No smoothing".
    size : int, optional
        Median filter size in pixels; default 1/20 of the image's smaller side
        (DOMAIN.md §8; CellProfiler's "Automatic" is min(1/40, 30 px), Cell
        Painting pipelines set a large size manually, e.g. 500 for 1080 px).
    rescale : {"minimum", "median", "none"}
        CellProfiler's rescale "Yes" (robust 2nd-percentile minimum becomes 1),
        "Median" or "No".
    trim : float
        Fraction dropped at each end of every pixel's values for
        ``statistic="trimmed_mean"``.
    plate, channel : str, optional
        What the function belongs to (written by :meth:`to_frame`).

    Attributes
    ----------
    function_ : numpy.ndarray of float32, shape (height, width)
        The fitted function, > 0 everywhere (after :meth:`from_statistics`).
    n_images_ : int
        Images it was fitted on.

    Examples
    --------
    >>> y, x = np.mgrid[0:64, 0:64]
    >>> shading = 1 + x / 63.0                       # twice as bright on the right
    >>> sites = [shading * v for v in (100.0, 120.0, 80.0)]
    >>> f = fit_illumination(sites, smoothing="none")
    >>> round(float(f.function_.min()), 3), round(float(f.function_.max()), 3)
    (1.0, 1.969)
    >>> corrected = f.transform(sites[0])
    >>> round(float(corrected.max() / corrected.min()), 3)
    1.016
    """

    def __init__(
        self,
        *,
        statistic: str = "mean",
        smoothing: str = "median",
        size: int | None = None,
        rescale: str = "minimum",
        trim: float = 0.1,
        plate: str | None = None,
        channel: str | None = None,
    ) -> None:
        self.statistic = _choice(statistic, _STATISTICS, "statistic")
        self.smoothing = _choice(smoothing, _SMOOTHING, "smoothing")
        self.rescale = _choice(rescale, _RESCALE, "rescale")
        if size is not None and (int(size) != size or size < 1):
            raise InvalidInputError(f"size must be a positive whole number of pixels, got {size!r}")
        if not 0 <= trim < 0.5:
            raise InvalidInputError(f"trim must be in [0, 0.5), got {trim!r}")
        self.size = None if size is None else int(size)
        self.trim = float(trim)
        self.plate = plate
        self.channel = channel
        self.function_: np.ndarray | None = None
        self.n_images_ = 0

    def __repr__(self) -> str:
        return (
            f"IlluminationFunction(statistic={self.statistic!r}, smoothing={self.smoothing!r}, "
            f"size={self.size!r}, rescale={self.rescale!r}, plate={self.plate!r}, "
            f"channel={self.channel!r})"
        )

    # ------------------------------------------------------------ contract
    def parameters(self) -> dict[str, Any]:
        """The constructor's parameters, as :meth:`to_frame` stores them."""
        return {
            "statistic": self.statistic,
            "smoothing": self.smoothing,
            "size": self.size,
            "rescale": self.rescale,
            "trim": self.trim,
            "plate": self.plate,
            "channel": self.channel,
        }

    def statistics(self, images: Iterable[np.ndarray] | np.ndarray) -> IlluminationStatistics:
        """The sum image and count of ``images`` (and the images, for a median).

        Parameters
        ----------
        images : iterable of numpy.ndarray, each shape (height, width), or one such array
            Images of one channel, all the same shape; read one at a time.

        Returns
        -------
        IlluminationStatistics

        Raises
        ------
        EmptyInputError
            If there are no images.
        InvalidImageError
            If an image is not 2-D, not numeric, has NaN/inf pixels, or differs
            in shape from the first.
        """
        if isinstance(images, np.ndarray) and images.ndim == 2:
            images = [images]
        total: np.ndarray | None = None
        count = 0
        kept: list[np.ndarray] | None = None if self.statistic == "mean" else []
        for i, image in enumerate(images):
            arr = _as_float_image(image, f"image {i}")
            if total is None:
                total = np.zeros(arr.shape, dtype=np.float64)
            elif arr.shape != total.shape:
                raise InvalidImageError(
                    f"image {i} is {arr.shape[0]} x {arr.shape[1]} but image 0 is "
                    f"{total.shape[0]} x {total.shape[1]}; an illumination function needs "
                    "every site of a channel at the same size"
                )
            total += arr
            count += 1
            if kept is not None:
                kept.append(np.array(image, copy=True))
        if total is None:
            raise EmptyInputError(f"no images to fit an illumination function on{self._where()}")
        return IlluminationStatistics(total, count, kept)

    def from_statistics(self, stats: IlluminationStatistics) -> IlluminationFunction:
        """Fit from (merged) statistics and return ``self``.

        Raises
        ------
        InvalidInputError
            If the statistics lack the images a median needs, or every pixel of
            the combined image is zero or negative (a blank channel).
        """
        if self.statistic != "mean" and stats.images is None:
            raise InvalidInputError(
                f"statistic={self.statistic!r} needs the images themselves; these statistics "
                "only hold their sum (compute them with the same IlluminationFunction)"
            )
        if self.statistic == "mean":
            average = stats.total / stats.count
        elif self.statistic == "median":
            average = _by_rows(stats.images, np.median)  # type: ignore[arg-type]
        else:
            average = _by_rows(stats.images, lambda a, axis: _trimmed_mean(a, self.trim))  # type: ignore[arg-type]
        smoothed = self._smooth(average)
        self.function_ = self._rescale(smoothed).astype(np.float32)
        self.n_images_ = int(stats.count)
        return self

    def fit(self, images: Iterable[np.ndarray]) -> IlluminationFunction:
        """Fit on ``images`` in this process (``from_statistics(statistics(images))``)."""
        return self.from_statistics(self.statistics(images))

    def transform(self, image: np.ndarray) -> np.ndarray:
        """Divide ``image`` by the function (CorrectIlluminationApply "Divide").

        Parameters
        ----------
        image : numpy.ndarray, shape (height, width)
            Image of the same shape as the function. Integer images are
            first scaled to [0, 1] by their dtype's maximum, as CellProfiler
            loads them (a uint16 pixel of 6553.5 becomes 0.1), so corrected
            images feed :func:`cellframe.segment.segment_site` and
            CellProfiler-scaled measurements; float images are taken as they are.

        Returns
        -------
        numpy.ndarray of float32, shape (height, width)
            Corrected image.

        Raises
        ------
        InvalidInputError
            If the function is not fitted or the shapes differ.
        """
        function = self._require_fitted()
        arr = _as_float_image(image, "the image to correct")
        if arr.shape != function.shape:
            raise InvalidImageError(
                f"the image is {arr.shape[0]} x {arr.shape[1]} but the illumination function"
                f"{self._where()} is {function.shape[0]} x {function.shape[1]}; use the function "
                "fitted on this plate and channel"
            )
        raw = np.asarray(image)
        if np.issubdtype(raw.dtype, np.integer):
            arr = arr / float(np.iinfo(raw.dtype).max)
        return (arr / function).astype(np.float32)

    # ------------------------------------------------------------ storage
    def to_frame(self) -> pl.DataFrame:
        """The fit as a table: one row per image row, parameters repeated on every row.

        Columns: ``Metadata_Plate``, ``Metadata_Channel``, ``Row`` (int32),
        ``Values`` (array of float32, the function's row), ``NImages`` and the
        parameters (``Statistic``, ``Smoothing``, ``Size``, ``Rescale``, ``Trim``).
        """
        function = self._require_fitted()
        h = function.shape[0]
        return pl.DataFrame(
            {
                PLATE: pl.Series([self.plate] * h, dtype=pl.String),
                CHANNEL: pl.Series([self.channel] * h, dtype=pl.String),
                "Row": pl.Series(np.arange(h, dtype=np.int32)),
                "Values": pl.Series(function, dtype=pl.Array(pl.Float32, function.shape[1])),
                "NImages": pl.Series([self.n_images_] * h, dtype=pl.Int64),
                "Statistic": [self.statistic] * h,
                "Smoothing": [self.smoothing] * h,
                "Size": pl.Series([self.size] * h, dtype=pl.Int64),
                "Rescale": [self.rescale] * h,
                "Trim": pl.Series([self.trim] * h, dtype=pl.Float64),
            }
        )

    @classmethod
    def from_frame(cls, frame: pl.DataFrame) -> IlluminationFunction:
        """A fitted function from :meth:`to_frame`'s table (one plate and channel).

        Raises
        ------
        InvalidInputError
            If columns are missing, the table holds several plates/channels,
            rows are missing or repeated, or row lengths differ.
        """
        needed = [PLATE, CHANNEL, "Row", "Values", "NImages", "Statistic", "Smoothing", "Size",
                  "Rescale", "Trim"]  # fmt: skip
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise InvalidInputError(
                f"this table is not a saved illumination function: missing column(s) "
                f"{', '.join(missing)} (write it with IlluminationFunction.to_frame())"
            )
        if frame.height == 0:
            raise EmptyInputError("the saved illumination function table has no rows")
        keys = frame.select(PLATE, CHANNEL).unique()
        if keys.height != 1:
            raise InvalidInputError(
                f"the table holds {keys.height} plate/channel pairs; select one plate and "
                f"channel (filter on {PLATE} and {CHANNEL}) before IlluminationFunction.from_frame"
            )
        frame = frame.sort("Row")
        rows = frame["Row"].to_numpy()
        if not np.array_equal(rows, np.arange(frame.height)):
            raise InvalidInputError(
                f"the saved illumination function's Row column must be 0..{frame.height - 1} "
                "once each; some rows are missing or repeated"
            )
        values = frame["Values"]
        if isinstance(values.dtype, pl.Array):  # DuckDB and Parquet may return either
            values = values.cast(pl.List(values.dtype.inner))
        if not isinstance(values.dtype, pl.List):
            raise InvalidInputError(
                f"the saved illumination function's Values column is {values.dtype}; expected "
                "one list of floats per image row"
            )
        lengths = values.list.len().unique().to_list()
        if len(lengths) != 1:
            raise InvalidInputError(
                f"the saved illumination function's rows have different lengths {sorted(lengths)}"
            )
        first = frame.row(0, named=True)
        size = first["Size"]
        obj = cls(
            statistic=first["Statistic"],
            smoothing=first["Smoothing"],
            size=None if size is None else int(size),
            rescale=first["Rescale"],
            trim=float(first["Trim"]),
            plate=first[PLATE],
            channel=first[CHANNEL],
        )
        function = np.stack(values.to_list()).astype(np.float32)
        if not (np.isfinite(function).all() and (function > 0).all()):
            raise InvalidInputError(
                "the saved illumination function has values that are not finite and > 0; refit it"
            )
        obj.function_ = function
        obj.n_images_ = int(first["NImages"])
        return obj

    # ------------------------------------------------------------ internals
    def _where(self) -> str:
        parts = [f"plate {self.plate!r}" if self.plate is not None else "",
                 f"channel {self.channel!r}" if self.channel is not None else ""]  # fmt: skip
        text = ", ".join(p for p in parts if p)
        return f" ({text})" if text else ""

    def _require_fitted(self) -> np.ndarray:
        if self.function_ is None:
            raise InvalidInputError(
                f"the illumination function{self._where()} is not fitted; call fit() or "
                "from_statistics() first"
            )
        return self.function_

    def filter_size(self, shape: tuple[int, ...]) -> int:
        """The median filter size used for images of ``shape``."""
        return self.size if self.size is not None else max(1, min(shape[:2]) // 20)

    def _smooth(self, average: np.ndarray) -> np.ndarray:
        if self.smoothing == "none":
            return average
        if self.smoothing == "polynomial":
            from centrosome.smooth import fit_polynomial

            return fit_polynomial(average, np.ones(average.shape, bool), clip=False)
        return _median_smooth(average, self.filter_size(average.shape))

    def _rescale(self, smoothed: np.ndarray) -> np.ndarray:
        positive = smoothed[smoothed > 0]
        if positive.size == 0:
            raise InvalidInputError(
                f"the combined image{self._where()} has no pixel above zero (a blank channel); "
                "an illumination function cannot be fitted: check the channel's images"
            )
        values = np.sort(positive)
        if self.rescale == "minimum":
            robust_minimum = values[int(values.size * ROBUST_FACTOR)]
            return np.maximum(smoothed, robust_minimum) / robust_minimum
        scale = values[values.size // 2] if self.rescale == "median" else 1.0
        out = smoothed / scale
        low = out <= 0
        if low.any():
            floor = float(values[0] / scale)
            warnings.warn(
                f"{int(low.sum())} of {out.size} pixels of the illumination function"
                f"{self._where()} were <= 0 and were raised to its smallest positive value "
                f"{floor:.4g} (so division is defined)",
                IlluminationWarning,
                stacklevel=3,
            )
            out = np.where(low, floor, out)
        return out


def _by_rows(images: list[np.ndarray], reduce: Any, rows: int = 64) -> np.ndarray:
    """``reduce(stack, axis=0)`` over the stacked images, a band of ``rows`` rows at a time.

    Stacking a band at a time keeps the extra memory at one band of every
    image instead of a second copy of them all.
    """
    h, w = images[0].shape
    out = np.empty((h, w), dtype=np.float64)
    for r0 in range(0, h, rows):
        band = np.stack([im[r0 : r0 + rows] for im in images]).astype(np.float64, copy=False)
        out[r0 : r0 + rows] = reduce(band, axis=0)
    return out


def _trimmed_mean(stack: np.ndarray, trim: float) -> np.ndarray:
    """Per-pixel mean over axis 0 after dropping ``trim`` of the values at each end."""
    n = stack.shape[0]
    cut = int(np.floor(n * trim))
    if cut == 0:
        return stack.mean(axis=0)
    ordered = np.sort(stack, axis=0)
    return ordered[cut : n - cut].mean(axis=0)


def _median_smooth(average: np.ndarray, size: int) -> np.ndarray:
    """Median filter of window ``size`` (reflecting edges), on a shrunk copy when large.

    A window wider than ``_MAX_MEDIAN_WINDOW`` runs on the block-mean of the
    image shrunk by an integer factor, and the result is interpolated back
    (bilinear); illumination varies slowly, so the function differs from the
    full-size filter by far less than the shading it corrects.
    """
    if size <= 1:
        return average
    factor = max(1, int(np.ceil(size / _MAX_MEDIAN_WINDOW)))
    if factor == 1:
        return ndi.median_filter(average, size=size, mode="reflect")
    h, w = average.shape
    hp, wp = -(-h // factor) * factor, -(-w // factor) * factor
    padded = np.pad(average, ((0, hp - h), (0, wp - w)), mode="reflect")
    small = padded.reshape(hp // factor, factor, wp // factor, factor).mean(axis=(1, 3))
    window = max(1, round(size / factor))
    small = ndi.median_filter(small, size=window, mode="reflect")
    # Pixel centres of the shrunk image sit at (k + 0.5) * factor - 0.5 in full coordinates.
    yy = (np.arange(h) + 0.5) / factor - 0.5
    xx = (np.arange(w) + 0.5) / factor - 0.5
    coords = np.meshgrid(yy, xx, indexing="ij")
    return ndi.map_coordinates(small, coords, order=1, mode="nearest")


def fit_illumination(images: Iterable[np.ndarray], **params: Any) -> IlluminationFunction:
    """Fit an illumination function on the images of one plate and channel.

    Parameters
    ----------
    images : iterable of numpy.ndarray, each shape (height, width)
        Every site's image of the channel (read one at a time for the mean).
    **params
        :class:`IlluminationFunction`'s parameters (``statistic``,
        ``smoothing``, ``size``, ``rescale``, ``trim``, ``plate``, ``channel``).

    Returns
    -------
    IlluminationFunction
        Fitted.

    Raises
    ------
    EmptyInputError
        If there are no images.
    InvalidImageError
        If images are not 2-D numeric arrays of one shape.
    InvalidInputError
        If the channel is blank.
    """
    return IlluminationFunction(**params).fit(images)


def apply_illumination(image: np.ndarray, function: IlluminationFunction) -> np.ndarray:
    """Correct ``image`` by dividing it by a fitted illumination ``function`` (float32 out).

    Integer images are scaled to [0, 1] by their dtype's maximum first (as
    CellProfiler loads them); float images are divided as they are.

    Raises
    ------
    InvalidInputError
        If ``function`` is not fitted or the shapes differ.
    """
    return function.transform(image)
