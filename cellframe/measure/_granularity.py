"""CellProfiler's MeasureGranularity, with the image-level spectrum computed once per channel.

The method (CellProfiler's MeasureGranularity help, after Ravkin and Serra):

1. shrink the image to ``subsample`` of its size (bilinear);
2. remove the background: shrink that again by ``background_sample``, take its
   grey opening (erosion then dilation) by a disk of radius ``element_size``,
   enlarge it back (bilinear) and subtract it, negative values set to 0;
3. for each step ``k = 1 .. length`` of the spectrum, erode the previous
   erosion by a radius-1 disk and reconstruct it (grey reconstruction by
   dilation) under the background-free image; the reconstruction, enlarged
   back to full size, keeps the structures wider than ``k`` pixels;
4. per object, ``Granularity_k = (mean_{k-1} - mean_k) * 100 / mean_0``, where
   ``mean_k`` is the object's mean of the ``k``-th enlarged reconstruction and
   ``mean_0`` the object's mean of the original pixels (at least machine epsilon).

Steps 1-3 never look at the objects: they are the channel's spectrum
(:class:`GranularitySpectrum`), computed once and reused for every label
image of the site; step 4 is a per-object mean of each enlarged
reconstruction, taken for every label image of the site from one enlargement.
The array routines are those CellProfiler uses (``scipy.ndimage.map_coordinates``
with order 1 for both resamplings, scikit-image's erosion, dilation and
reconstruction), so values equal cp-measure's ``get_granularity`` (itself a port
of the module) to rounding (tests/measure/test_granularity_radial.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import ndimage as ndi

#: CellProfiler's defaults (and the JUMP pipelines'): subsampling factors for
#: the measurement and the background, and the background's disk radius.
SUBSAMPLE = 0.25
BACKGROUND_SAMPLE = 0.25
ELEMENT_SIZE = 10


@lru_cache(maxsize=8)
def _disk(radius: int) -> np.ndarray:
    import skimage.morphology

    return skimage.morphology.disk(radius, dtype=bool)


def _grid(
    shape: tuple[int, ...], scale: tuple[float, float], *, divide: bool = False
) -> np.ndarray:
    """Source coordinates ``(2, *shape)`` of a resampling: output pixel (i, j) reads (i*sy, j*sx).

    ``divide``: (i/sy, j/sx) instead, for a shrinking by a factor (the
    coordinates CellProfiler computes, to the last bit).
    """
    rows = np.arange(shape[0], dtype=np.float64)
    cols = np.arange(shape[1], dtype=np.float64)
    if divide:
        rows, cols = rows / scale[0], cols / scale[1]
    else:
        rows, cols = rows * scale[0], cols * scale[1]
    return np.stack(np.meshgrid(rows, cols, indexing="ij"))


@dataclass(frozen=True)
class GranularitySpectrum:
    """The object-independent part of one channel's granularity: its reconstructions.

    Attributes
    ----------
    pixels : numpy.ndarray, shape (H, W)
        The channel as measured (for each object's starting mean).
    reconstructions : tuple of numpy.ndarray
        The ``length`` reconstructions at the subsampled size; empty when the
        image is too small to subsample (every value is then NaN).
    length : int
        Length of the spectrum.
    """

    pixels: np.ndarray
    reconstructions: tuple[np.ndarray, ...]
    length: int

    @classmethod
    def of(
        cls,
        pixels: np.ndarray,
        length: int,
        *,
        subsample: float = SUBSAMPLE,
        background_sample: float = BACKGROUND_SAMPLE,
        element_size: int = ELEMENT_SIZE,
    ) -> GranularitySpectrum:
        """Steps 1-3 of the method (module docstring) for one 2-D channel."""
        shape = np.asarray(pixels.shape)
        small = (shape * subsample).astype(int) if subsample < 1 else shape
        if (small < 2).any():  # bilinear enlargement needs two samples per axis
            return cls(pixels, (), length)
        if subsample < 1:
            grid = _grid(tuple(small), (subsample, subsample), divide=True)
            image = ndi.map_coordinates(pixels, grid, order=1)
        else:
            image = pixels.copy()
        # Background: a grey opening of the image shrunk once more, enlarged back.
        if background_sample < 1:
            # CellProfiler keeps the shrunk size fractional (67.5 for 270 rows): it
            # samples rows 0, 1, .. below it and scales back by (size - 1) / (small - 1).
            back_size = small * background_sample
            back_rows = np.ceil(back_size).astype(int)
            grid = _grid(tuple(back_rows), (background_sample, background_sample), divide=True)
            back = ndi.map_coordinates(image, grid, order=1)
        else:
            back = image
        import skimage.morphology

        disk = _disk(int(element_size))
        back = skimage.morphology.dilation(
            skimage.morphology.erosion(back, footprint=disk), footprint=disk
        )
        if background_sample < 1:
            scale = ((back_size[0] - 1) / (small[0] - 1), (back_size[1] - 1) / (small[1] - 1))
            back = ndi.map_coordinates(back, _grid(tuple(small), scale), order=1)
        image = image - back
        image[image < 0] = 0
        # The spectrum: erosions by a radius-1 disk, each reconstructed under the image.
        cross = _disk(1)
        eroded = image
        recs = []
        for _ in range(length):
            eroded = skimage.morphology.erosion(eroded, footprint=cross)
            recs.append(skimage.morphology.reconstruction(eroded, image, footprint=cross))
        return cls(pixels, tuple(recs), length)


@dataclass(frozen=True)
class ObjectSampler:
    """The label-only part of step 4: each object's mean of a bilinearly enlarged image.

    Enlarging a small image ``r`` (h x w) bilinearly to the labels' size and
    averaging it over an object is linear in ``r``: every full-size pixel is
    a weighted sum of the four small pixels around the point it samples, so
    object ``L``'s mean is ``(A @ r.ravel())[L] / n_L`` with one sparse row of
    summed weights per object. ``A`` depends only on the labels and the two
    sizes, so it is built once per label image and applied to every channel's
    reconstructions at once. A full-size pixel whose sample point lies past the
    small image's last row or column (by rounding) reads 0, as
    ``scipy.ndimage.map_coordinates`` (mode "constant") gives it; it still
    counts in ``n_L``.

    Attributes
    ----------
    operator : scipy.sparse.csr_matrix, shape (N, h * w)
    counts : numpy.ndarray of float64, shape (N,)
        Pixels of objects 1..N.
    """

    operator: Any
    counts: np.ndarray

    @classmethod
    def of(cls, labels: np.ndarray, small: tuple[int, int]) -> ObjectSampler:
        """The sampler of a label image numbered ``1..N`` for reconstructions of size ``small``."""
        import scipy.sparse

        n = int(labels.max()) if labels.size else 0
        counts = np.bincount(labels.ravel(), minlength=n + 1)[1:].astype(np.float64)
        full = labels.shape
        rows, cols = np.nonzero(labels)
        owner = labels[rows, cols].astype(np.int64) - 1
        # The sample point of each object pixel in the small image (as map_coordinates gets it).
        y = rows * ((small[0] - 1) / (full[0] - 1))
        x = cols * ((small[1] - 1) / (full[1] - 1))
        inside = (y <= small[0] - 1) & (x <= small[1] - 1)
        y, x, owner = y[inside], x[inside], owner[inside]
        y0, x0 = np.floor(y).astype(np.int64), np.floor(x).astype(np.int64)
        dy, dx = y - y0, x - x0
        y1, x1 = np.minimum(y0 + 1, small[0] - 1), np.minimum(x0 + 1, small[1] - 1)
        corners = ((y0, x0, (1 - dy) * (1 - dx)), (y0, x1, (1 - dy) * dx),
                   (y1, x0, dy * (1 - dx)), (y1, x1, dy * dx))  # fmt: skip
        operator = scipy.sparse.csr_matrix(
            (
                np.concatenate([w for _, _, w in corners]),
                (np.tile(owner, 4), np.concatenate([r * small[1] + c for r, c, _ in corners])),
            ),
            shape=(n, small[0] * small[1]),
        )
        return cls(operator, counts)

    def means(self, small_images: np.ndarray) -> np.ndarray:
        """Object means ``(N, k)`` of ``k`` small images ``(h * w, k)``, enlarged."""
        return (self.operator @ small_images) / self.counts[:, None]


def granularity(
    spectrum: GranularitySpectrum,
    labels: Mapping[str, np.ndarray],
    samplers: Mapping[str, ObjectSampler] | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Step 4 of the method: the granularity spectrum of every object of several label images.

    Parameters
    ----------
    spectrum : GranularitySpectrum
        One channel's spectrum (:meth:`GranularitySpectrum.of`).
    labels : Mapping[str, numpy.ndarray]
        Name -> label image numbered ``1..N`` (no gaps), of the channel's shape.
    samplers : Mapping[str, ObjectSampler], optional
        Name -> :meth:`ObjectSampler.of` of that label image (built here when
        not given; pass them to reuse one per label image across channels).

    Returns
    -------
    dict
        Name -> ``{"Granularity_<k>": values of objects 1..N}`` for k = 1..length;
        all NaN when the image is too small to subsample.
    """
    keys = [f"Granularity_{k}" for k in range(1, spectrum.length + 1)]
    out: dict[str, dict[str, np.ndarray]] = {}
    recs = spectrum.reconstructions
    stack = np.stack([r.ravel() for r in recs], axis=1).astype(np.float64) if recs else None
    for name, lab in labels.items():
        n = int(lab.max()) if lab.size else 0
        if stack is None:
            out[name] = {key: np.full(n, np.nan) for key in keys}
            continue
        sampler = samplers[name] if samplers is not None else ObjectSampler.of(lab, recs[0].shape)
        start = np.bincount(lab.ravel(), weights=spectrum.pixels.ravel(), minlength=n + 1)[1:]
        start = start / sampler.counts
        means = np.concatenate([start[:, None], sampler.means(stack)], axis=1)
        drops = (
            (means[:, :-1] - means[:, 1:]) * 100 / np.maximum(start, np.finfo(float).eps)[:, None]
        )
        out[name] = {key: drops[:, k] for k, key in enumerate(keys)}
    return out
