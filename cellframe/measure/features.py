"""CellProfiler measurements of one site's objects, named as CellProfiler names them (DOMAIN.md §8).

The numbers come from `cp-measure <https://github.com/afermg/cp_measure>`_, a
BSD reimplementation of CellProfiler's MeasureObjectIntensity,
MeasureObjectSizeShape, MeasureTexture, MeasureGranularity,
MeasureObjectIntensityDistribution and MeasureColocalization modules; this
module runs them per compartment and channel and names every column exactly as
a CellProfiler export does (``Cells_Intensity_MeanIntensity_DNA``,
``Nuclei_Texture_Contrast_DNA_3_00_256``,
``Cytoplasm_Correlation_Correlation_DNA_RNA``, ...), so a measured table looks
like an ingested CellProfiler one. Granularity and radial distribution are
computed here from CellProfiler's method (:mod:`cellframe.measure._granularity`,
:mod:`cellframe.measure._radial`) so that a site's image-level and label-only
work is done once, with cp-measure's values (tests/measure/test_granularity_radial.py).

* :func:`measure_objects` — one label image, every channel: a frame of
  ``ObjectNumber`` and unprefixed CellProfiler names.
* :func:`measure_site` — the three compartments of one site joined into one row
  per cell, with the ``Metadata_`` keys and the ``Parent_``/``Children_``
  relationships of a CellProfiler export.

Pixels are measured as CellProfiler loads them: integer images divided by the
maximum of their type (so intensities lie in [0, 1]); float images are used as
they are.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from itertools import combinations
from typing import Any

import numpy as np
import polars as pl

from cellframe.columns import OBJECT_NUMBER, PLATE, SITE, WELL
from cellframe.errors import InvalidImageError, InvalidInputError

__all__ = [
    "COMPARTMENTS",
    "DEFAULT_FAMILIES",
    "FAMILIES",
    "measure_objects",
    "measure_site",
    "to_unit_range",
]

#: The compartments of a Cell Painting profile, in pycytominer's order.
COMPARTMENTS = ("Cells", "Cytoplasm", "Nuclei")

#: Measurement families (CellProfiler module -> feature prefix). Shape families
#: are measured once per compartment, the others once per channel (correlation:
#: once per pair of channels).
FAMILIES: dict[str, str] = {
    "sizeshape": "AreaShape (MeasureObjectSizeShape)",
    "zernike": "AreaShape_Zernike (MeasureObjectSizeShape)",
    "feret": "AreaShape_Min/MaxFeretDiameter (MeasureObjectSizeShape)",
    "intensity": "Intensity and Location (MeasureObjectIntensity)",
    "texture": "Texture (MeasureTexture, Haralick)",
    "granularity": "Granularity (MeasureGranularity)",
    "radial_distribution": "RadialDistribution FracAtD/MeanFrac/RadialCV",
    "radial_zernikes": "RadialDistribution_Zernike (not in the JUMP profiles)",
    "correlation": "Correlation (MeasureColocalization)",
}

#: The families of the JUMP Cell Painting profiles (all but the radial Zernikes).
DEFAULT_FAMILIES: tuple[str, ...] = tuple(f for f in FAMILIES if f != "radial_zernikes")


def to_unit_range(pixels: np.ndarray) -> np.ndarray:
    """Pixels as CellProfiler loads them: integer types divided by their maximum, as float32.

    Parameters
    ----------
    pixels : numpy.ndarray, any shape
        An image of any integer or float type.

    Returns
    -------
    numpy.ndarray of float32, same shape as ``pixels``
        Integer input scaled to [0, 1], float input unchanged.

    Examples
    --------
    >>> to_unit_range(np.array([0, 255], dtype=np.uint8)).tolist()
    [0.0, 1.0]
    """
    arr = np.asarray(pixels)
    if np.issubdtype(arr.dtype, np.integer):
        return (arr.astype(np.float64) / np.iinfo(arr.dtype).max).astype(np.float32)
    if arr.dtype == bool:
        return arr.astype(np.float32)
    return arr.astype(np.float32, copy=False)


def _check_families(families: Sequence[str]) -> list[str]:
    from cellframe.errors import InvalidChoiceError

    chosen = list(dict.fromkeys(families))
    unknown = [f for f in chosen if f not in FAMILIES]
    if unknown:
        raise InvalidChoiceError(
            f"unknown measurement famil{'y' if len(unknown) == 1 else 'ies'} {unknown}; "
            f"valid: {sorted(FAMILIES)}"
        )
    if not chosen:
        raise InvalidChoiceError(f"no measurement family chosen; valid: {sorted(FAMILIES)}")
    return chosen


def _check_labels(labels: np.ndarray, shape: tuple[int, ...], where: str) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise InvalidInputError(
            f"{where}: labels have dtype {arr.dtype}; give an integer label image "
            "(0 = background, 1..N = objects)"
        )
    if arr.shape != shape:
        raise InvalidImageError(
            f"{where}: the label image is {arr.shape} but the channels are {shape}; "
            "segment the same site's pixels"
        )
    if arr.size and arr.min() < 0:
        raise InvalidInputError(
            f"{where}: {int((arr < 0).sum())} label pixel(s) are negative; labels are 0 "
            "(background) or positive object numbers"
        )
    return arr


def _check_images(images: Mapping[str, np.ndarray], where: str) -> dict[str, np.ndarray]:
    if not images:
        raise InvalidInputError(f"{where}: no channel to measure; give at least one image")
    shapes = {name: np.shape(px) for name, px in images.items()}
    bad = {n: s for n, s in shapes.items() if len(s) != 2}
    if bad:
        raise InvalidImageError(
            f"{where}: channel(s) {bad} are not 2-D images; give one (H, W) array per channel"
        )
    if len(set(shapes.values())) > 1:
        raise InvalidImageError(
            f"{where}: the channels have different shapes ({shapes}); every channel of a "
            "site must cover the same pixels"
        )
    out = {}
    for name, px in images.items():
        unit = to_unit_range(px)
        nonfinite = int((~np.isfinite(unit)).sum())
        if nonfinite:
            raise InvalidImageError(
                f"{where}: channel {name!r} has {nonfinite} NaN or infinite pixel(s); "
                "replace them or leave the site out"
            )
        out[name] = unit
    return out


def _relabel(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels renumbered 1..N (cp-measure indexes its results by label) and the original ids."""
    from skimage.segmentation import relabel_sequential

    ids = np.unique(labels)
    ids = ids[ids > 0].astype(np.int64)
    if ids.size and ids[-1] == ids.size:
        return labels.astype(np.int32, copy=False), ids
    clean, _, _ = relabel_sequential(labels)
    return clean.astype(np.int32, copy=False), ids


def _channel_name(key: str, channel: str, family: str) -> str:
    """CellProfiler's name of one cp-measure result for one channel."""
    if (
        family == "texture"
    ):  # AngularSecondMoment_3_00_256 -> Texture_AngularSecondMoment_DNA_3_00_256
        feature, rest = key.split("_", 1)
        return f"Texture_{feature}_{channel}_{rest}"
    if family in ("radial_distribution", "radial_zernikes"):
        # RadialDistribution_FracAtD_1of4 -> RadialDistribution_FracAtD_DNA_1of4
        prefix, feature, rest = key.split("_", 2)
        return f"{prefix}_{feature}_{channel}_{rest}"
    return f"{key}_{channel}"  # Intensity_MeanIntensity -> Intensity_MeanIntensity_DNA


# cp-measure's correlation keys -> (CellProfiler feature, channel order): "ab" names the
# pair in the order measured, "ba" reversed (CellProfiler writes M1 as
# Manders_<first>_<second> and M2 as Manders_<second>_<first>).
_CORRELATION_NAMES = {
    "Correlation_Pearson": ("Correlation", "ab"),
    "Correlation_Manders_1": ("Manders", "ab"),
    "Correlation_Manders_2": ("Manders", "ba"),
    "Correlation_RWC_1": ("RWC", "ab"),
    "Correlation_RWC_2": ("RWC", "ba"),
    "Correlation_Overlap": ("Overlap", "ab"),
    "Correlation_K_1": ("K", "ab"),
    "Correlation_K_2": ("K", "ba"),
    "Correlation_Costes_1": ("Costes", "ab"),
    "Correlation_Costes_2": ("Costes", "ba"),
}


def _measure_functions() -> tuple[dict[str, Callable[..., Any]], dict[str, Callable[..., Any]]]:
    from cp_measure.bulk import get_core_measurements, get_correlation_measurements
    from cp_measure.core.measurecolocalization import get_correlation_overlap

    # legacy=True: CellProfiler's own n*q quartile convention (cp-measure's docs).
    core = get_core_measurements(legacy=True, sanitize=False)
    corr = dict(get_correlation_measurements(sanitize=False))
    corr["overlap"] = get_correlation_overlap
    corr["rwc"] = _rank_weighted_colocalization
    return core, corr


def _rank_weighted_colocalization(
    pixels_1: np.ndarray, pixels_2: np.ndarray, labels: np.ndarray, thr: float = 15
) -> dict[str, np.ndarray]:
    """CellProfiler 5's per-object RWC (MeasureColocalization, "Within objects").

    cp-measure ranks each object's pixels on their own; CellProfiler ranks the
    pixels of all objects of the image together (dense ranks of the values,
    ``R`` = the larger maximum rank + 1, weight ``(R - |rank_1 - rank_2|) / R``),
    then sums per object over the pixels at or above ``thr`` % of the object's
    maximum in both channels, divided by the object's sum above its threshold
    in that channel. On ExampleHuman this equals CellProfiler 5's exported
    values exactly (cp-measure's differed by a median 20-45%); issue 17.
    """
    objects = _ObjectPixels.of(labels)
    return objects.rwc(objects.ranked(pixels_1, thr), objects.ranked(pixels_2, thr))


class _Ranked:
    """One channel's pixels inside a label image's objects, ranked for RWC."""

    __slots__ = ("above", "rank", "top", "total", "values")

    def __init__(self, values: np.ndarray, lab: np.ndarray, n: int, thr: float) -> None:
        self.values = values.astype(np.float64)
        # dense ranks over all objects' pixels; the float64 copy ranks the same
        inverse = np.unique(values, return_inverse=True)[1].reshape(-1)
        self.rank = inverse.astype(np.int64, copy=False)
        self.top = int(self.rank.max()) + 1 if self.rank.size else 0
        peak = np.full(n + 1, -np.inf)
        np.maximum.at(peak, lab, self.values)
        self.above = self.values >= (thr / 100) * peak[lab]
        self.total = np.bincount(lab, self.values * self.above, n + 1)


class _ObjectPixels:
    """A label image's object pixels, extracted once for every channel pair (issue 17).

    The correlation family compares every pair of channels in every object:
    cp-measure's per-pair functions find each object's bounding box and mask
    again for each pair and measure (30 times per compartment for 5 channels),
    and the RWC ranks each channel's pixels again for each pair. Here each
    object's mask is found once per label image, each channel's pixels per
    object once, and each channel's RWC ranks and thresholds once; the per-object
    statistics are cp-measure's own (``_pearson_pair``, ``_manders_pair``,
    ``_overlap_pair``) on the same pixel arrays, so the values are the same bits.
    """

    def __init__(self, labels: np.ndarray, boxes: list, masks: list) -> None:
        self.labels = labels
        self.boxes = boxes
        self.masks = masks
        inside = labels > 0
        self.inside = inside
        self.lab = labels[inside].astype(np.int64)
        self.n = int(labels.max()) if self.lab.size else 0

    @classmethod
    def of(cls, labels: np.ndarray) -> _ObjectPixels:
        """Bounding boxes and masks of the objects of a label image numbered ``1..N``."""
        from scipy import ndimage as ndi

        boxes = ndi.find_objects(labels)
        masks = [None if box is None else labels[box] == k for k, box in enumerate(boxes, 1)]
        return cls(labels, boxes, masks)

    def per_object(self, pixels: np.ndarray) -> list[np.ndarray | None]:
        """Each object's pixels of one channel (cp-measure's ``_iter_label_pixels`` order)."""
        return [
            None if box is None else pixels[box][mask]
            for box, mask in zip(self.boxes, self.masks, strict=True)
        ]

    def ranked(self, pixels: np.ndarray, thr: float = 15) -> _Ranked:
        """One channel's RWC ranks, thresholds and per-object sums above threshold."""
        return _Ranked(pixels[self.inside], self.lab, self.n, thr)

    def rwc(self, first: _Ranked, second: _Ranked) -> dict[str, np.ndarray]:
        """CellProfiler 5's RWC of two ranked channels (see :func:`_rank_weighted_colocalization`)."""
        n = self.n
        if self.lab.size == 0:
            return {"Correlation_RWC_1": np.zeros(n), "Correlation_RWC_2": np.zeros(n)}
        top = max(first.top, second.top)
        weight = (top - np.abs(first.rank - second.rank)) / top
        both = first.above & second.above
        with np.errstate(invalid="ignore", divide="ignore"):
            rwc_1 = np.bincount(self.lab, first.values * weight * both, n + 1) / first.total
            rwc_2 = np.bincount(self.lab, second.values * weight * both, n + 1) / second.total
        return {"Correlation_RWC_1": rwc_1[1:], "Correlation_RWC_2": rwc_2[1:]}

    def pairwise(
        self,
        first: list[np.ndarray | None],
        second: list[np.ndarray | None],
        measures: Sequence[str],
    ) -> dict[str, list[float]]:
        """cp-measure's Pearson, Manders and overlap of two channels' per-object pixels.

        The same values as cp-measure's ``get_correlation_pearson``,
        ``get_correlation_manders_fold`` and ``get_correlation_overlap`` (0 for a
        missing or empty object; ``thr`` their default 15).
        """
        from cp_measure.core.measurecolocalization import (
            _manders_pair,
            _overlap_pair,
            _pearson_pair,
        )

        keys = {
            "pearson": ("Correlation_Pearson", "Correlation_Slope"),
            "manders_fold": ("Correlation_Manders_1", "Correlation_Manders_2"),
            "overlap": ("Correlation_Overlap", "Correlation_K_1", "Correlation_K_2"),
        }
        out: dict[str, list[float]] = {key: [] for m in measures for key in keys[m]}
        for fi, si in zip(first, second, strict=True):
            empty = fi is None or si is None or fi.size == 0
            for measure in measures:
                if empty:
                    values: tuple[float, ...] = (0.0,) * len(keys[measure])
                elif measure == "pearson":
                    values = _pearson_pair(fi, si)
                elif measure == "manders_fold":
                    values = _manders_pair(fi, si, 15)
                else:
                    values = _overlap_pair(fi, si, 15)
                for key, value in zip(keys[measure], values, strict=True):
                    out[key].append(value)
        return out


# The 13 Haralick features, in mahotas' (and cp-measure's) order.
_HARALICK = (
    "AngularSecondMoment Contrast Correlation Variance InverseDifferenceMoment SumAverage "
    "SumVariance SumEntropy Entropy DifferenceVariance DifferenceEntropy InfoMeas1 InfoMeas2"
).split()


def _entropy(p: np.ndarray) -> float:
    """Entropy in bits, zeros contributing nothing (mahotas' ``_entropy``)."""
    return float(-np.dot(np.log2(p + (p == 0)), p))


#: mahotas' 2-D co-occurrence directions as (row, column) steps: horizontal, diagonal
#: (nw-se), vertical, diagonal (ne-sw).
_DIRECTIONS = ((0, 1), (1, 1), (1, 0), (1, -1))


def _cooccurrences(
    crop: np.ndarray, distances: Sequence[int], levels: int
) -> list[tuple[np.ndarray, np.ndarray] | None]:
    """Symmetric co-occurrences of a crop's non-zero pixels, every distance and direction at once.

    For each distance and each of mahotas' four directions (in that order),
    the occupied cells of mahotas' ``cooccurence(crop, direction,
    symmetric=True, distance=d)`` matrix with row and column 0 cleared
    (``haralick(..., ignore_zeros=True)``): their flat indices ``i * levels + j``
    in increasing order (as ``np.flatnonzero`` gives them) and their counts;
    ``None`` where no pair of non-zero pixels lies at that step. ``levels``
    must exceed ``crop.max()``. mahotas visits the crop pixel by pixel once per
    distance and direction (12 calls per object and channel at the JUMP scales,
    most of the texture time, issue 17); here the pair codes of all 12 are
    counted together, by one ``np.bincount`` when the matrices are small
    (few grey levels) or by sorting the codes when the pairs are fewer than
    the cells (a small object at 256 levels). Equal count for count
    (tests/measure/test_features_speed_equality.py).
    """
    h, w = crop.shape
    size = levels * levels
    groups = len(distances) * len(_DIRECTIONS)
    values = crop.astype(np.int64)
    pairs = []
    for group, (distance, (dy, dx)) in enumerate(
        (d, step) for d in distances for step in _DIRECTIONS
    ):
        dy, dx = dy * distance, dx * distance
        x0, x1 = max(0, -dx), w - max(0, dx)
        if h - dy > 0 and x1 > x0:  # else no pair at this step
            pairs.append(
                (group, values[: h - dy, x0:x1].ravel(), values[dy:, x0 + dx : x1 + dx].ravel())
            )
    if 2 * sum(first.size for _, first, _ in pairs) >= groups * size:
        # few grey levels: count every pair into the dense matrices, then clear row and
        # column 0 and add the transpose (mahotas' M + M.T: equal values count twice)
        codes = [group * size + first * levels + second for group, first, second in pairs]
        flat = np.concatenate(codes) if codes else np.empty(0, np.int64)
        dense = np.bincount(flat, minlength=groups * size).reshape(groups, levels, levels)
        dense[:, 0] = 0
        dense[:, :, 0] = 0
        dense = dense + dense.transpose(0, 2, 1)
        keys = np.flatnonzero(dense)
        counts = dense.ravel()[keys]
    else:
        # fewer pairs than cells (a small object at 256 levels): sort the codes of the
        # pairs of non-zero pixels, in both orders
        codes = []
        for group, first, second in pairs:
            keep = (first > 0) & (second > 0)
            first, second = first[keep], second[keep]
            codes.append(group * size + first * levels + second)
            codes.append(group * size + second * levels + first)
        flat = np.concatenate(codes) if codes else np.empty(0, np.int64)
        keys, counts = np.unique(flat, return_counts=True)
    bounds = np.searchsorted(keys, np.arange(groups + 1) * size)
    out: list[tuple[np.ndarray, np.ndarray] | None] = []
    for group in range(groups):
        lo, hi = bounds[group], bounds[group + 1]
        out.append((keys[lo:hi] - group * size, counts[lo:hi]) if hi > lo else None)
    return out


def _haralick(crop: np.ndarray, distance: int | Sequence[int]) -> np.ndarray:
    """mahotas' ``haralick(crop, distance, ignore_zeros=True)``, from the non-zero entries only.

    mahotas computes every feature over the dense ``(max + 1)²`` co-occurrence
    matrix (65 536 cells for a bright object at 256 grey levels), with
    ``np.dot`` calls long enough for OpenBLAS to run them on several threads:
    on a busy 2-core machine that made texture 89% of a site's measurement time
    (issue 17). An object of n pixels fills at most
    about 2n of those cells, so this computes the same sums (Haralick 1973, as
    mahotas implements them, including its choices: ``DifferenceVariance`` is
    the variance of the ``|i-j|`` distribution vector of length max + 1,
    ``Correlation`` is 1 when a marginal has no spread) over the occupied
    cells, from the same co-occurrence counts (:func:`_cooccurrences`, all
    distances at once). Values equal mahotas' to rounding (tests/measure/
    test_features_speed_equality.py). Returns ``(4, 13)`` features for one
    distance, ``(len(distance), 4, 13)`` for a sequence; a distance's are all
    NaN when one of its directions has no pair of non-zero pixels (mahotas
    raises there and cp-measure writes NaN).
    """
    single = np.ndim(distance) == 0
    distances = [int(distance)] if single else [int(d) for d in distance]
    maxv = int(crop.max()) + 1
    k = np.arange(maxv, dtype=np.float64)
    k2 = k**2
    tk = np.arange(2 * maxv, dtype=np.float64)
    # ignore_zeros: pairs with a background (or zero) pixel are left out
    occupied = _cooccurrences(crop, distances, maxv)
    result = np.empty((len(distances), 4, 13))
    for index in range(len(distances)):
        out = result[index]
        for direction in range(4):
            cells = occupied[index * 4 + direction]
            if cells is None:
                out[:] = np.nan
                break
            flat, counts = cells
            pv = counts / float(counts.sum())
            i, j = np.divmod(flat, maxv)
            px = np.bincount(j, pv, minlength=maxv)  # mahotas: p.sum(0)
            py = np.bincount(i, pv, minlength=maxv)  # mahotas: p.sum(1)
            ux, uy = np.dot(px, k), np.dot(py, k)
            vx = np.dot(px, k2) - ux**2
            vy = np.dot(py, k2) - uy**2
            sx, sy = np.sqrt(vx), np.sqrt(vy)
            plus = np.bincount(i + j, pv, minlength=2 * maxv)
            minus = np.bincount(np.abs(i - j), pv, minlength=maxv)
            feats = out[direction]
            # Sums over the occupied cells with np.sum, not np.dot: OpenBLAS threads a dot
            # of more than ~10 000 values, and on a busy machine those threads made
            # mahotas' dense version 15-20x slower (issue 17).
            feats[0] = (pv * pv).sum()
            feats[1] = np.dot(k2, minus)
            if sx == 0.0 or sy == 0.0:
                feats[2] = 1.0
            else:
                feats[2] = (1.0 / sx / sy) * (((i * j) * pv).sum() - ux * uy)
            feats[3] = vx
            feats[4] = (pv / ((i - j) ** 2 + 1.0)).sum()
            feats[5] = np.dot(tk, plus)
            feats[7] = _entropy(plus)
            feats[6] = np.dot(tk**2, plus) - feats[5] ** 2
            feats[8] = -(np.log2(pv) * pv).sum()
            feats[9] = minus.var()
            feats[10] = _entropy(minus)
            hx, hy = _entropy(px), _entropy(py)
            hxy1 = -(pv * np.log2(px[i] * py[j])).sum()
            # mahotas: the entropy of outer(px, py) = HX * sum(py) + HY * sum(px)
            hxy2 = hx * py.sum() + hy * px.sum()
            hmax = max(hx, hy)
            feats[11] = (feats[8] - hxy1) if hmax == 0.0 else (feats[8] - hxy1) / hmax
            feats[12] = np.sqrt(max(0.0, 1.0 - np.exp(-2.0 * (hxy2 - feats[8]))))
    return result[0] if single else result


def _texture(
    labels: np.ndarray, pixels: np.ndarray, scale: int | Sequence[int], gray_levels: int
) -> dict[str, np.ndarray]:
    """cp-measure's ``get_texture`` (2-D) with :func:`_haralick` in place of mahotas' features.

    Quantization is cp-measure's (and CellProfiler 4.2.8's): the whole image
    once, ``img_as_ubyte`` then a fixed rescale to ``gray_levels``, never per
    object; each object is then measured on its bounding-box crop with the
    pixels outside it set to 0. ``scale`` may be a sequence: the image is
    quantized and cropped once for all of them (the columns come scale by
    scale, each as ``get_texture`` names them).
    """
    import skimage.exposure
    import skimage.measure
    import skimage.util

    scales = [int(scale)] if np.ndim(scale) == 0 else [int(s) for s in scale]
    quantized = skimage.util.img_as_ubyte(pixels, force_copy=True)
    quantized[labels == 0] = 0
    if gray_levels != 256:
        quantized = skimage.exposure.rescale_intensity(
            quantized, in_range=(0, 255), out_range=(0, gray_levels - 1)
        ).astype(np.uint8)
    props = skimage.measure.regionprops(labels, quantized)
    features = np.empty((len(scales), 4, 13, len(props)))
    for index, prop in enumerate(props):
        features[..., index] = _haralick(prop.image_intensity, scales)
    return {
        f"{name}_{s:d}_{direction:02d}_{gray_levels:d}": features[n_scale, direction, n]
        for n_scale, s in enumerate(scales)
        for direction in range(4)
        for n, name in enumerate(_HARALICK)
    }


def _granularity_radial(
    labels: Mapping[str, np.ndarray],
    pixels: Mapping[str, np.ndarray],
    chosen: Sequence[str],
    granularity_spectrum: int,
    radial_bins: int,
) -> dict[str, dict[str, dict[str, dict[str, np.ndarray]]]]:
    """Granularity and radial distribution of several label images of one site.

    Each channel's granularity spectrum (image-level: background removal,
    erosions and reconstructions) is computed once and each label image's
    geometry (its bilinear sampler for granularity; centres, rings and wedges
    for the radial distribution) once, whatever the number of channels and
    label images (:mod:`cellframe.measure._granularity`,
    :mod:`cellframe.measure._radial`; equal to cp-measure's ``get_granularity``
    and ``get_radial_distribution`` per label image and channel).

    Parameters
    ----------
    labels : Mapping[str, numpy.ndarray]
        Name -> label image numbered ``1..N`` (see :func:`_relabel`); images
        without objects are left out of the result.
    pixels : Mapping[str, numpy.ndarray]
        Channel -> image (as :func:`_check_images` returns it).
    chosen : sequence of str
        The families measured (others are ignored).
    granularity_spectrum, radial_bins : int
        As in :func:`measure_objects`.

    Returns
    -------
    dict
        ``name -> channel -> family -> {CellProfiler column: values}``.
    """
    from cellframe.measure._granularity import GranularitySpectrum, ObjectSampler, granularity
    from cellframe.measure._radial import RadialGeometry

    present = {name: lab for name, lab in labels.items() if lab.size and lab.max() > 0}
    out: dict[str, dict[str, dict[str, dict[str, np.ndarray]]]] = {
        name: {channel: {} for channel in pixels} for name in present
    }
    if not present:
        return out
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        if "granularity" in chosen:
            samplers: dict[str, ObjectSampler] = {}
            for channel, px in pixels.items():
                spectrum = GranularitySpectrum.of(px, int(granularity_spectrum))
                if spectrum.reconstructions and not samplers:
                    small = spectrum.reconstructions[0].shape
                    samplers = {n: ObjectSampler.of(lab, small) for n, lab in present.items()}
                by_name = granularity(spectrum, present, samplers or None)
                for name, result in by_name.items():
                    out[name][channel]["granularity"] = {
                        _channel_name(key, channel, "granularity"): v for key, v in result.items()
                    }
        if "radial_distribution" in chosen:
            for name, lab in present.items():
                geometry = RadialGeometry.of(lab, int(radial_bins))
                for channel, px in pixels.items():
                    out[name][channel]["radial_distribution"] = {
                        _channel_name(key, channel, "radial_distribution"): v
                        for key, v in geometry.measure(px).items()
                    }
    return out


def measure_objects(
    labels: np.ndarray,
    images: Mapping[str, np.ndarray],
    *,
    families: Sequence[str] = DEFAULT_FAMILIES,
    texture_scales: Sequence[int] = (3, 5, 10),
    gray_levels: int = 256,
    granularity_spectrum: int = 16,
    radial_bins: int = 4,
    costes: bool = False,
    costes_scale_max: int = 65535,
    where: str = "site",
) -> pl.DataFrame:
    """Measure every object of one label image in every channel, with CellProfiler's names.

    Parameters
    ----------
    labels : numpy.ndarray of int, shape (H, W)
        Label image (0 = background); object numbers need not be
        consecutive.
    images : Mapping[str, numpy.ndarray], each shape (H, W)
        Channel name -> image of the label image's shape. Integer images
        are scaled to [0, 1] as CellProfiler does (see :func:`to_unit_range`).
    families : sequence of str, default DEFAULT_FAMILIES
        Which of :data:`FAMILIES` to measure. Granularity and texture (three
        scales) take most of the time, then shape, correlation and radial
        distribution (docs/measure.md, Speed).
    texture_scales : sequence of int, default (3, 5, 10)
        Haralick co-occurrence distances (JUMP's Cell Painting pipeline).
    gray_levels : int, default 256
        Grey levels of the texture co-occurrence matrices.
    granularity_spectrum : int, default 16
        Length of the granularity spectrum.
    radial_bins : int, default 4
        Number of radial distribution rings.
    costes : bool, default False
        Also measure Costes' thresholded Manders coefficients (slow; not in
        the JUMP profiles).
    costes_scale_max : int, default 65535
        Intensity grid of the Costes threshold search (the acquisition's
        maximum grey value; 65535 for 16-bit images).
    where : str
        The site, for messages.

    Returns
    -------
    polars.DataFrame
        One row per object, ordered by object number: ``ObjectNumber``
        (Int64) and one Float32 column per measurement, named as CellProfiler
        names it without the compartment prefix (``AreaShape_Area``,
        ``Intensity_MeanIntensity_DNA``, ``Correlation_Correlation_DNA_RNA``,
        plus ``Location_Center_X/Y/Z``). Channel pairs are taken in sorted
        name order, as in the JUMP exports. No objects: a frame with
        ``ObjectNumber`` only and no rows.

    Raises
    ------
    InvalidImageError
        If the channels and labels differ in shape, or a pixel is NaN.
    InvalidInputError
        If the labels are not integers or are negative.
    InvalidChoiceError
        If a family name is unknown (a ``ValueError`` too).

    Examples
    --------
    >>> labels = np.zeros((20, 20), dtype=np.int32)
    >>> labels[2:8, 2:8] = 1
    >>> frame = measure_objects(labels, {"DNA": np.full((20, 20), 0.5)}, families=["intensity"])
    >>> frame["Intensity_MeanIntensity_DNA"].to_list()
    [0.5]
    """
    chosen = _check_families(families)
    pixels = _check_images(images, where)
    shape = next(iter(pixels.values())).shape
    arr = _check_labels(labels, shape, where)
    clean, ids = _relabel(arr)
    if ids.size == 0:
        return pl.DataFrame({"ObjectNumber": pl.Series([], dtype=pl.Int64)})
    core, corr = _measure_functions()
    spectral = _granularity_radial(
        {"": clean}, pixels, chosen, granularity_spectrum, radial_bins
    ).get("", {})
    columns: dict[str, np.ndarray] = {}
    with warnings.catch_warnings():
        # Undefined values (a one-pixel object's texture, an empty radial ring)
        # come back as NaN; the caller counts them (measure_site warns with counts).
        warnings.simplefilter("ignore", RuntimeWarning)
        if "sizeshape" in chosen:
            shape_values = core["sizeshape"](clean, None, calculate_advanced=False)
            for key, values in shape_values.items():
                columns[f"AreaShape_{key}"] = values
            # cp-measure reports degrees; the CellProfiler 4 exports (JUMP, ExampleHuman)
            # hold radians in [-pi/2, pi/2], and measured tables should join them.
            columns["AreaShape_Orientation"] = np.deg2rad(shape_values["Orientation"])
            columns["Location_Center_X"] = shape_values["Center_X"]
            columns["Location_Center_Y"] = shape_values["Center_Y"]
            columns["Location_Center_Z"] = np.zeros(ids.size)  # 2-D: CellProfiler writes 0
        for family in ("zernike", "feret"):
            if family in chosen:
                for key, values in core[family](clean, None).items():
                    columns[f"AreaShape_{key}"] = values
        for channel, px in pixels.items():
            if "intensity" in chosen:
                for key, values in core["intensity"](clean, px).items():
                    columns[_channel_name(key, channel, "intensity")] = values
            if "granularity" in chosen:
                columns.update(spectral[channel]["granularity"])
            if "texture" in chosen:
                if len(texture_scales):
                    result = _texture(clean, px, [int(s) for s in texture_scales], gray_levels)
                    for key, values in result.items():
                        columns[_channel_name(key, channel, "texture")] = values
            if "radial_distribution" in chosen:
                columns.update(spectral[channel]["radial_distribution"])
            if "radial_zernikes" in chosen:
                for key, values in core["radial_zernikes"](clean, px).items():
                    columns[_channel_name(key, channel, "radial_zernikes")] = values
        if "correlation" in chosen:
            names = sorted(pixels)
            objects = _ObjectPixels.of(clean)
            per_object = {name: objects.per_object(pixels[name]) for name in names}
            ranked = {name: objects.ranked(pixels[name]) for name in names}
            for first, second in combinations(names, 2):
                a, b = per_object[first], per_object[second]
                results = objects.pairwise(a, b, ["pearson", "manders_fold"])
                results.update(objects.rwc(ranked[first], ranked[second]))
                results.update(objects.pairwise(a, b, ["overlap"]))
                if costes:
                    results.update(
                        corr["costes"](
                            pixels[first], pixels[second], clean, scale_max=costes_scale_max
                        )
                    )
                for key, values in results.items():
                    if key not in _CORRELATION_NAMES:
                        continue  # the slope of the regression: image-level in CellProfiler
                    feature, order = _CORRELATION_NAMES[key]
                    pair = (first, second) if order == "ab" else (second, first)
                    columns[f"Correlation_{feature}_{pair[0]}_{pair[1]}"] = values
    frame = {"ObjectNumber": pl.Series(ids, dtype=pl.Int64)}
    for name, values in columns.items():
        series = np.asarray(values, dtype=np.float64)
        if series.shape != (ids.size,):
            raise AssertionError(f"cp-measure returned {series.shape} values for {name}")
        frame[name] = pl.Series(series.astype(np.float32), dtype=pl.Float32)
    return pl.DataFrame(frame)


def _measure_compartments(
    compartments: Mapping[str, np.ndarray],
    pixels: Mapping[str, np.ndarray],
    kwargs: dict[str, Any],
) -> dict[str, pl.DataFrame]:
    """:func:`measure_objects` of each compartment, granularity and radial distribution shared.

    Those two families are measured for the compartments together
    (:func:`_granularity_radial`: each channel's granularity spectrum and each
    compartment's geometry once) and appended to each compartment's frame;
    the site's table sorts its columns, so their place does not matter.
    """
    chosen = _check_families(kwargs["families"])
    shared = [f for f in ("granularity", "radial_distribution") if f in chosen]
    rest = [f for f in chosen if f not in shared]
    cleans = {name: _relabel(lab) for name, lab in compartments.items()}
    spectral = _granularity_radial(
        {name: clean for name, (clean, _) in cleans.items()},
        pixels,
        shared,
        kwargs.get("granularity_spectrum", 16),
        kwargs.get("radial_bins", 4),
    )
    measured = {}
    for name, lab in compartments.items():
        if rest:
            frame = measure_objects(lab, pixels, **{**kwargs, "families": rest})
        else:
            frame = pl.DataFrame({"ObjectNumber": pl.Series(cleans[name][1], dtype=pl.Int64)})
        extra = {
            column: pl.Series(column, np.asarray(values, np.float64).astype(np.float32))
            for channel in pixels
            for family in shared
            for column, values in spectral.get(name, {}).get(channel, {}).get(family, {}).items()
        }
        measured[name] = frame.hstack(list(extra.values())) if extra else frame
    return measured


def _parents(children: np.ndarray, parents: np.ndarray) -> dict[int, int]:
    """For each child label, the parent label covering most of its pixels (0: none)."""
    inside = (children > 0) & (parents > 0)
    if not inside.any():
        return {}
    pairs = np.stack([children[inside], parents[inside]], axis=1).astype(np.int64)
    uniq, counts = np.unique(pairs, axis=0, return_counts=True)
    best: dict[int, tuple[int, int]] = {}
    for (child, parent), n in zip(uniq.tolist(), counts.tolist(), strict=True):
        if child not in best or n > best[child][1]:
            best[child] = (parent, n)
    return {child: parent for child, (parent, _) in best.items()}


def measure_site(
    images: Mapping[str, np.ndarray],
    *,
    nuclei: np.ndarray,
    cells: np.ndarray,
    cytoplasm: np.ndarray | None = None,
    plate: str,
    well: str,
    site: int,
    families: Sequence[str] = DEFAULT_FAMILIES,
    texture_scales: Sequence[int] = (3, 5, 10),
    **options: Any,
) -> pl.DataFrame:
    """Measure the nuclei, cells and cytoplasm of one site: one row per cell.

    Every cell is a row keyed by ``Metadata_Plate/Well/Site`` and
    ``Metadata_ObjectNumber`` (the cell's number). Its nucleus is the
    ``nuclei`` object covering most of the cell (``Metadata_Cells_Parent_Nuclei``),
    its cytoplasm the ``cytoplasm`` object lying mostly inside it
    (``Metadata_Cytoplasm_Parent_Cells``), as CellProfiler's RelateObjects
    and IdentifyTertiaryObjects record them. Columns are
    ``<Compartment>_<CellProfiler name>``, as :func:`cellframe.io.ingest`
    names an exported CellProfiler table, plus ``Nuclei_Children_Cells_Count``,
    ``Nuclei_Children_Cytoplasm_Count`` and ``Cells_Children_Cytoplasm_Count``.

    Parameters
    ----------
    images : Mapping[str, numpy.ndarray], each shape (H, W)
        Channel name -> image (illumination-corrected, if wanted).
    nuclei, cells : numpy.ndarray of int, shape (H, W)
        Label images of the primary and secondary objects.
    cytoplasm : numpy.ndarray of int, shape (H, W), optional
        Label image of the tertiary objects; default ``cells`` with the
        nuclei removed (CellProfiler's IdentifyTertiaryObjects without
        shrinking).
    plate, well : str
        Keys of the site.
    site : int
        Site number.
    families : sequence of str, default DEFAULT_FAMILIES
        Measurement families (see :data:`FAMILIES`).
    texture_scales : sequence of int, default (3, 5, 10)
        Texture scales (see :func:`measure_objects`).
    **options
        Passed to :func:`measure_objects` (``gray_levels``, ``costes``, ...).

    Returns
    -------
    polars.DataFrame
        One row per cell; no rows (and only the key columns) when the site
        has no cells.

    Warns
    -----
    UnmatchedObjectsWarning
        With the counts of nuclei that are the nucleus of no cell (not in the
        table) and of cells without a nucleus or cytoplasm (their columns of
        that compartment are null).
    UndefinedMeasurementWarning
        With the number of NaN values (a texture of a one-pixel object, ...).

    Raises
    ------
    InvalidImageError, InvalidInputError
        As :func:`measure_objects`.
    """
    from cellframe.errors import UndefinedMeasurementWarning, UnmatchedObjectsWarning

    where = f"site {plate}/{well}/{site}"
    pixels = _check_images(images, where)
    shape = next(iter(pixels.values())).shape
    nuclei = _check_labels(nuclei, shape, f"{where} (Nuclei)")
    cells = _check_labels(cells, shape, f"{where} (Cells)")
    if cytoplasm is None:
        cytoplasm = np.where(nuclei > 0, 0, cells)
    cytoplasm = _check_labels(cytoplasm, shape, f"{where} (Cytoplasm)")
    kwargs = {"families": families, "texture_scales": texture_scales, "where": where, **options}
    compartments = {"Nuclei": nuclei, "Cells": cells, "Cytoplasm": cytoplasm}
    measured = _measure_compartments(compartments, pixels, kwargs)
    cell_ids = measured["Cells"]["ObjectNumber"]
    nucleus_of = _parents(cells, nuclei)
    cell_of_cyto = _parents(cytoplasm, cells)
    cyto_of_cell = {cell: cyto for cyto, cell in sorted(cell_of_cyto.items(), reverse=True)}
    parent_nuclei = [nucleus_of.get(int(c), 0) for c in cell_ids]
    keys = pl.DataFrame(
        {
            OBJECT_NUMBER: cell_ids,
            "Metadata_Cells_Parent_Nuclei": pl.Series(parent_nuclei, dtype=pl.Int64),
            "_cyto": pl.Series([cyto_of_cell.get(int(c), 0) for c in cell_ids], dtype=pl.Int64),
        }
    )
    children_cells = (
        pl.DataFrame({"ObjectNumber": pl.Series(parent_nuclei, dtype=pl.Int64)})
        .group_by("ObjectNumber")
        .agg(pl.len().cast(pl.Int64).alias("Children_Cells_Count"))
    )
    children_cyto = (
        pl.DataFrame(
            {
                "ObjectNumber": pl.Series(list(cell_of_cyto.values()), dtype=pl.Int64),
                "Children_Cytoplasm_Count": pl.Series([1] * len(cell_of_cyto), dtype=pl.Int64),
            }
        )
        .group_by("ObjectNumber")
        .agg(pl.col("Children_Cytoplasm_Count").sum())
    )

    def count(frame: pl.DataFrame, counts: pl.DataFrame, name: str) -> pl.DataFrame:
        out = frame.join(counts.filter(pl.col("ObjectNumber") > 0), on="ObjectNumber", how="left")
        return out.with_columns(pl.col(name).fill_null(0).cast(pl.Float32))

    nuc = count(measured["Nuclei"], children_cells, "Children_Cells_Count")
    cyto_per_nucleus = (
        keys.filter(pl.col("_cyto") > 0)
        .group_by("Metadata_Cells_Parent_Nuclei")
        .agg(pl.len().cast(pl.Int64).alias("Children_Cytoplasm_Count"))
        .rename({"Metadata_Cells_Parent_Nuclei": "ObjectNumber"})
    )
    nuc = count(nuc, cyto_per_nucleus, "Children_Cytoplasm_Count")
    cel = count(measured["Cells"], children_cyto, "Children_Cytoplasm_Count")

    def prefixed(frame: pl.DataFrame, compartment: str) -> pl.DataFrame:
        return frame.rename({c: f"{compartment}_{c}" for c in frame.columns if c != "ObjectNumber"})

    out = (
        keys.join(
            prefixed(cel, "Cells").rename({"ObjectNumber": OBJECT_NUMBER}),
            on=OBJECT_NUMBER,
            how="left",
        )
        .join(
            prefixed(measured["Cytoplasm"], "Cytoplasm").rename({"ObjectNumber": "_cyto"}),
            on="_cyto",
            how="left",
        )
        .join(
            prefixed(nuc, "Nuclei").rename({"ObjectNumber": "Metadata_Cells_Parent_Nuclei"}),
            on="Metadata_Cells_Parent_Nuclei",
            how="left",
        )
        .with_columns(
            pl.when(pl.col("_cyto") > 0)
            .then(pl.col(OBJECT_NUMBER))
            .alias("Metadata_Cytoplasm_Parent_Cells"),
            pl.when(pl.col("_cyto") > 0)
            .then(pl.col("Metadata_Cells_Parent_Nuclei"))
            .alias("Metadata_Cytoplasm_Parent_Nuclei"),
        )
        .drop("_cyto")
    )
    meta = [
        pl.lit(plate, pl.String).alias(PLATE),
        pl.lit(well, pl.String).alias(WELL),
        pl.lit(int(site), pl.Int32).alias(SITE),
    ]
    out = out.with_columns(meta).with_columns(
        pl.when(pl.col(c) > 0).then(pl.col(c)).alias(c) for c in ("Metadata_Cells_Parent_Nuclei",)
    )
    key_cols = [
        PLATE,
        WELL,
        SITE,
        OBJECT_NUMBER,
        "Metadata_Cells_Parent_Nuclei",
        "Metadata_Cytoplasm_Parent_Cells",
        "Metadata_Cytoplasm_Parent_Nuclei",
    ]
    out = out.select(*key_cols, *sorted(c for c in out.columns if c not in key_cols))

    orphan_nuclei = nuc.height - len({p for p in parent_nuclei if p > 0})
    no_nucleus = sum(p == 0 for p in parent_nuclei)
    no_cyto = out["Metadata_Cytoplasm_Parent_Cells"].null_count()
    if orphan_nuclei or no_nucleus or no_cyto:
        warnings.warn(
            f"{where}: {orphan_nuclei} of {nuc.height} nuclei are the nucleus of no cell (not "
            f"in the table); {no_nucleus} of {out.height} cells have no nucleus and {no_cyto} "
            "no cytoplasm (those compartments' columns are null); check the segmentation",
            UnmatchedObjectsWarning,
            stacklevel=2,
        )
    features = [c for c in out.columns if not c.startswith("Metadata_")]
    if features and out.height:
        n_nan = int(
            out.select(pl.sum_horizontal(pl.col(features).is_nan().cast(pl.Int64)).sum()).item()
            or 0
        )
        if n_nan:
            per = (
                out.select(pl.col(features).is_nan().sum())
                .transpose(include_header=True, column_names=["n"])
                .filter(pl.col("n") > 0)
                .sort("n", descending=True)
            )
            top = ", ".join(f"{r['column']} ({r['n']})" for r in per.head(3).iter_rows(named=True))
            warnings.warn(
                f"{where}: {n_nan} of {out.height * len(features)} measured values are NaN "
                f"(undefined for those objects, in {per.height} columns, e.g. {top}); they are "
                "kept as NaN",
                UndefinedMeasurementWarning,
                stacklevel=2,
            )
    return out
