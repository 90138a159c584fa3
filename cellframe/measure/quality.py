"""Image-level quality, as CellProfiler's MeasureImageQuality names it (DOMAIN.md §8).

* :func:`power_log_log_slope` — the focus measure: the slope of the radial
  power spectrum on log-log axes (blurred images lose high frequencies, so
  their slope is steeper, more negative).
* :func:`image_quality` — one row per site with
  ``ImageQuality_<measure>_<channel>`` columns (PowerLogLogSlope, FocusScore,
  PercentMaximal, PercentMinimal, Mean/Median/Std/MAD/Min/Max/TotalIntensity,
  TotalArea, Scaling), the names :func:`cellframe.profiles.qc.image_qc` reads.
* :func:`quality_flags` — fixed-threshold flags: blurry (slope below a
  threshold) and saturated (percent of pixels at the maximum above one).

The formulas follow CellProfiler 4's ``measureimagequality.py`` and
centrosome's ``radial_power_spectrum.rps``; pixels are scaled to [0, 1] as
CellProfiler loads them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from cellframe.columns import PLATE, SITE, WELL
from cellframe.errors import InvalidImageError, MissingColumnsError

__all__ = [
    "BLURRY",
    "SATURATED",
    "image_quality",
    "power_log_log_slope",
    "quality_flags",
    "radial_power_spectrum",
]

BLURRY = "Metadata_QC_Blurry"
SATURATED = "Metadata_QC_Saturated"


def radial_power_spectrum(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Radii and summed power of the image's Fourier spectrum (centrosome's ``rps``).

    The image is divided by its median absolute deviation from the mean (so the
    spectrum does not depend on brightness); radii run from 2 (skipping the DC
    term) up to an eighth of the shorter side (beyond that, edge effects).

    Parameters
    ----------
    pixels : numpy.ndarray, shape (H, W)
        Image.

    Returns
    -------
    radii, power : numpy.ndarray, shape (n_radii,)
        Integer radii and the power summed over each ring.
    """
    img = np.asarray(pixels, dtype=np.float64)
    h, w = img.shape
    radii2 = (np.arange(h).reshape((h, 1)) ** 2) + (np.arange(w) ** 2)
    radii2 = np.minimum(radii2, np.flipud(radii2))
    radii2 = np.minimum(radii2, np.fliplr(radii2))
    max_width = min(h, w) / 8.0
    if np.ptp(img) > 0:
        mad = np.median(np.abs(img - img.mean()))
        if mad > 0:
            img = img / mad
    magnitude = np.abs(np.fft.fft2(img - img.mean()))
    power = magnitude**2
    radii = np.floor(np.sqrt(radii2)).astype(np.int64) + 1
    labels = np.arange(2, np.floor(max_width)).astype(np.int64)
    if labels.size == 0:
        return np.array([2]), np.array([0.0])
    sums = np.bincount(radii.ravel(), weights=power.ravel(), minlength=int(labels[-1]) + 1)
    return labels, sums[labels]


def power_log_log_slope(pixels: np.ndarray) -> float:
    """CellProfiler's ``PowerLogLogSlope``: slope of log(power) against log(radius).

    Sharp images keep power at high spatial frequencies (a shallow slope);
    blurring removes it, so the slope becomes more negative. A constant image
    has slope 0, as in CellProfiler.

    Parameters
    ----------
    pixels : numpy.ndarray, shape (H, W)
        Image.

    Returns
    -------
    float

    Examples
    --------
    >>> power_log_log_slope(np.zeros((64, 64)))
    0.0
    """
    img = np.asarray(pixels, dtype=np.float64)
    if np.unique(img).size <= 1:
        return 0.0
    radii, power = radial_power_spectrum(img)
    valid = power > 0
    if valid.sum() < 2:
        return 0.0
    x = np.log(radii[valid].astype(np.float64))
    y = np.log(power[valid])
    design = np.stack([x, np.ones_like(x)], axis=1)
    return float(np.linalg.lstsq(design, y, rcond=None)[0][0])


def _unit(pixels: np.ndarray) -> tuple[np.ndarray, float]:
    arr = np.asarray(pixels)
    if np.issubdtype(arr.dtype, np.integer):
        scale = float(np.iinfo(arr.dtype).max)
        return arr.astype(np.float64) / scale, scale
    return arr.astype(np.float64), 1.0


def _channel_quality(pixels: np.ndarray) -> dict[str, float]:
    img, scale = _unit(pixels)
    flat = img.ravel()
    n = flat.size
    mean = float(flat.mean())
    median = float(np.median(flat))
    # FocusScore: normalized variance, sum((x - mean)^2) / (n * mean) (Groen et al. 1985).
    focus = float(((flat - mean) ** 2).sum() / (n * mean)) if mean > 0 else 0.0
    return {
        "PowerLogLogSlope": power_log_log_slope(img),
        "FocusScore": focus,
        "PercentMaximal": 100.0 * float((flat == flat.max()).sum()) / n,
        "PercentMinimal": 100.0 * float((flat == flat.min()).sum()) / n,
        "TotalArea": float(n),
        "TotalIntensity": float(flat.sum()),
        "MeanIntensity": mean,
        "MedianIntensity": median,
        "StdIntensity": float(flat.std()),
        "MADIntensity": float(np.median(np.abs(flat - median))),
        "MinIntensity": float(flat.min()),
        "MaxIntensity": float(flat.max()),
        "Scaling": scale,
    }


def image_quality(
    images: Mapping[str, np.ndarray],
    *,
    plate: str,
    well: str,
    site: int,
) -> pl.DataFrame:
    """One site's image-quality row, named as CellProfiler's MeasureImageQuality names it.

    Parameters
    ----------
    images : Mapping[str, numpy.ndarray], each shape (H, W)
        Channel name -> image (integer images are scaled to [0, 1] by the
        maximum of their type, which is recorded as ``ImageQuality_Scaling_<ch>``).
    plate, well : str
        Keys of the site.
    site : int
        Site number.

    Returns
    -------
    polars.DataFrame
        One row: ``Metadata_Plate``, ``Metadata_Well``, ``Metadata_Site`` and
        ``ImageQuality_<measure>_<channel>`` (Float32) for every channel.
        ``PercentMaximal`` is the percent of pixels equal to the image's
        maximum (CellProfiler's definition: a saturated image has many).

    Raises
    ------
    InvalidImageError
        If an image is not 2-D, is empty, or holds NaN/infinite pixels.

    Examples
    --------
    >>> row = image_quality({"DNA": np.eye(64)}, plate="P", well="A01", site=1)
    >>> round(row["ImageQuality_PercentMaximal_DNA"][0], 4)
    1.5625
    """
    where = f"site {plate}/{well}/{site}"
    values: dict[str, pl.Series] = {
        PLATE: pl.Series([plate], dtype=pl.String),
        WELL: pl.Series([well], dtype=pl.String),
        SITE: pl.Series([int(site)], dtype=pl.Int32),
    }
    for channel, pixels in images.items():
        arr = np.asarray(pixels)
        if arr.ndim != 2 or arr.size == 0:
            raise InvalidImageError(
                f"{where}: channel {channel!r} has shape {arr.shape}; image quality needs a "
                "non-empty 2-D image per channel"
            )
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            raise InvalidImageError(
                f"{where}: channel {channel!r} has {int((~np.isfinite(arr)).sum())} NaN or "
                "infinite pixel(s); replace them or leave the site out"
            )
        for measure, value in _channel_quality(arr).items():
            values[f"ImageQuality_{measure}_{channel}"] = pl.Series([value], dtype=pl.Float32)
    return pl.DataFrame(values)


def quality_flags(
    frame: pl.DataFrame | pl.LazyFrame,
    *,
    min_slope: float = -3.0,
    max_saturated_percent: float = 1.0,
    channels: Sequence[str] | None = None,
) -> pl.DataFrame:
    """Flag blurry and saturated sites from their image-quality columns, by fixed thresholds.

    (:func:`cellframe.profiles.qc.image_qc` flags focus outliers relative to
    the other images of a plate instead; use it when a plate's focus drifts.)

    Parameters
    ----------
    frame : polars.DataFrame or LazyFrame
        Rows of :func:`image_quality`.
    min_slope : float, default -3.0
        A channel is blurry when its ``PowerLogLogSlope`` is below this.
        In-focus Cell Painting sites lie around -1 to -2.5 (the bundled JUMP sites:
        -1.8 to -2.5; blurring one with a Gaussian of sigma 2 gives about -3); the threshold is a
        starting point to check against a plate's distribution.
    max_saturated_percent : float, default 1.0
        A channel is saturated when more than this percent of its pixels
        equal its maximum.
    channels : sequence of str, optional
        Channels to check (default: every channel with both columns).

    Returns
    -------
    polars.DataFrame
        The ``Metadata_`` columns, ``Metadata_QC_Blurry`` and
        ``Metadata_QC_Saturated`` (Boolean: any checked channel), and
        ``Metadata_QC_Reason`` (which channel, which value; null when neither).

    Raises
    ------
    MissingColumnsError
        If a named channel lacks its columns, or no channel has them.
    """
    df = frame.lazy().collect()
    if channels is None:
        channels = [
            c[len("ImageQuality_PowerLogLogSlope_") :]
            for c in df.columns
            if c.startswith("ImageQuality_PowerLogLogSlope_")
            and f"ImageQuality_PercentMaximal_{c[len('ImageQuality_PowerLogLogSlope_') :]}"
            in df.columns
        ]
        if not channels:
            raise MissingColumnsError(
                "the image-quality table",
                [
                    "ImageQuality_PowerLogLogSlope_<channel>",
                    "ImageQuality_PercentMaximal_<channel>",
                ],
                "measure it with cellframe.measure.image_quality (or cellframe measure)",
            )
    needed = [
        f"ImageQuality_{m}_{ch}" for ch in channels for m in ("PowerLogLogSlope", "PercentMaximal")
    ]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise MissingColumnsError(
            "the image-quality table", missing, "measure those channels or leave them out"
        )
    reasons: list[list[str]] = [[] for _ in range(df.height)]
    blurry = np.zeros(df.height, dtype=bool)
    saturated = np.zeros(df.height, dtype=bool)
    for ch in channels:
        slope = df[f"ImageQuality_PowerLogLogSlope_{ch}"].cast(pl.Float64).to_numpy()
        sat = df[f"ImageQuality_PercentMaximal_{ch}"].cast(pl.Float64).to_numpy()
        for i in np.flatnonzero(slope < min_slope):
            blurry[i] = True
            reasons[i].append(f"blurry {ch}: PowerLogLogSlope {slope[i]:.3f} < {min_slope:g}")
        for i in np.flatnonzero(sat > max_saturated_percent):
            saturated[i] = True
            reasons[i].append(
                f"saturated {ch}: {sat[i]:.2f}% of pixels at maximum > {max_saturated_percent:g}%"
            )
    meta = df.select([c for c in df.columns if c.startswith("Metadata_")])
    return meta.with_columns(
        pl.Series(BLURRY, blurry),
        pl.Series(SATURATED, saturated),
        pl.Series(
            "Metadata_QC_Reason", ["; ".join(r) if r else None for r in reasons], dtype=pl.String
        ),
    )
