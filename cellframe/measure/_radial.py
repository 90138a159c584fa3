"""CellProfiler's MeasureObjectIntensityDistribution (scaled rings), geometry computed once per label image.

The method (CellProfiler's MeasureObjectIntensityDistribution help):

* each object's centre is its point farthest from the object's edge (the
  first such pixel in row-major order when several tie);
* every pixel's distance from the centre is measured inside its object
  (CellProfiler propagates from the centres over the object, touching
  objects in separate passes so they never compete), and its normalized
  distance is ``d_centre / (d_centre + d_edge + 0.001)``, in [0, 1);
* ring ``b`` of ``n`` holds the pixels with ``floor(n * normalized) == b``;
  each ring is cut into 8 wedges by the pixel's position relative to the
  centre (below/right of it, and whether it lies more vertically than
  horizontally);
* per object and ring: ``FracAtD`` = the ring's share of the object's total
  intensity; ``MeanFrac`` = that share divided by the ring's share of the
  object's pixels (plus machine epsilon); ``RadialCV`` = the standard deviation
  over the occupied wedges of their mean intensities divided by the mean of
  those means (0 for a ring without pixels).

Everything but the three sums per (object, ring, wedge) depends on the labels
alone: :class:`RadialGeometry` holds it, built once per label image and
measured for every channel (CellProfiler caches the same parts per object set).
Distances come from CellProfiler's own library (``centrosome``), so values equal
cp-measure's ``get_radial_distribution`` (a port of the module) to rounding
(tests/measure/test_granularity_radial.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Wedges per ring for RadialCV.
WEDGES = 8


def _centres(distance: np.ndarray, labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of each object's farthest-from-edge pixel (first in row-major order on ties)."""
    flat = np.flatnonzero(labels)
    owner = labels.ravel()[flat]
    # Sort by object, then by distance (largest first), then by position: the first
    # pixel of each object's run is its centre.
    order = np.lexsort((flat, -distance.ravel()[flat], owner))
    first = np.ones(order.size, dtype=bool)
    first[1:] = owner[order][1:] != owner[order][:-1]
    centre = np.empty(n, dtype=np.int64)
    centre[owner[order][first] - 1] = flat[order][first]
    return np.divmod(centre, labels.shape[1])


@dataclass(frozen=True)
class RadialGeometry:
    """The label-only part of the radial distribution of one label image.

    Attributes
    ----------
    n_objects, bins : int
    pixels : numpy.ndarray of int64
        Flat indices of the measured pixels (those the propagation from the
        object's centre reaches).
    ring : numpy.ndarray of int64
        ``object * bins + ring`` of each measured pixel (object numbered from 0).
    wedge : numpy.ndarray of int64
        ``(object * bins + ring) * 8 + wedge`` of each measured pixel.
    ring_fraction : numpy.ndarray, shape (n_objects, bins)
        Each ring's share of the object's measured pixels.
    wedge_count : numpy.ndarray, shape (n_objects, bins, 8)
        Pixels per wedge.
    """

    n_objects: int
    bins: int
    pixels: np.ndarray
    ring: np.ndarray
    wedge: np.ndarray
    ring_fraction: np.ndarray
    wedge_count: np.ndarray

    @classmethod
    def of(cls, labels: np.ndarray, bins: int) -> RadialGeometry:
        """The geometry of a 2-D label image numbered ``1..N`` (no gaps), for ``bins`` rings."""
        import centrosome.cpmorphology
        import centrosome.propagate

        n = int(labels.max()) if labels.size else 0
        to_edge = centrosome.cpmorphology.distance_to_edge(labels)
        ci, cj = _centres(to_edge, labels, n)
        seeds = np.zeros(labels.shape, dtype=int)
        seeds[ci, cj] = np.arange(1, n + 1)
        # Distance from the centre inside each object. CellProfiler propagates touching
        # objects in separate passes over the whole image (one per colour of a map
        # colouring), so that they never compete: within a pass each object is a region
        # of its own, reached from its own centre only. Propagating each object in its
        # bounding box gives the same distances without 4-5 passes over the whole image
        # per label image (issue 17; tests/measure/test_granularity_radial.py).
        from scipy import ndimage as ndi

        from_centre = np.zeros(labels.shape)
        reached = np.zeros(labels.shape, dtype=int)
        for k, box in enumerate(ndi.find_objects(labels), start=1):
            if box is None:
                continue
            mask = labels[box] == k
            local_seeds = np.where(mask, seeds[box], 0)
            found, dist = centrosome.propagate.propagate(np.zeros(mask.shape), local_seeds, mask, 1)
            from_centre[box][mask] = dist[mask]
            reached[box][mask] = found[mask]
        flat = np.flatnonzero(reached > 0)
        owner = reached.ravel()[flat].astype(np.int64) - 1
        d = from_centre.ravel()[flat]
        normalized = d / (d + to_edge.ravel()[flat] + 0.001)
        # A normalized distance is below 1, so the ring is below ``bins``.
        ring = (normalized * bins).astype(np.int64)
        # Wedge: below the centre (1), right of it (2), more vertical than horizontal (4).
        row, col = np.divmod(flat, labels.shape[1])
        dr = row - ci[owner]
        dc = col - cj[owner]
        wedge = (dr > 0).astype(np.int64) + 2 * (dc > 0) + 4 * (np.abs(dr) > np.abs(dc))
        ring_index = owner * bins + ring
        wedge_index = ring_index * WEDGES + wedge
        ring_count = np.bincount(ring_index, minlength=n * bins).reshape(n, bins).astype(float)
        wedge_count = np.bincount(wedge_index, minlength=n * bins * WEDGES).reshape(n, bins, WEDGES)
        ring_fraction = ring_count / ring_count.sum(axis=1, keepdims=True)
        return cls(n, bins, flat, ring_index, wedge_index, ring_fraction, wedge_count)

    def measure(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        """FracAtD, MeanFrac and RadialCV of every object in one channel.

        Parameters
        ----------
        pixels : numpy.ndarray, shape of the labels

        Returns
        -------
        dict
            ``RadialDistribution_<FracAtD|MeanFrac|RadialCV>_<b>of<bins>`` ->
            values of objects 1..N, rings in order and features in that order
            within a ring (cp-measure's key order). An object without intensity
            has NaN FracAtD and MeanFrac.
        """
        n, bins = self.n_objects, self.bins
        values = np.asarray(pixels, dtype=np.float64).ravel()[self.pixels]
        ring_sum = np.bincount(self.ring, values, minlength=n * bins).reshape(n, bins)
        wedge_sum = np.bincount(self.wedge, values, minlength=n * bins * WEDGES).reshape(
            n, bins, WEDGES
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = ring_sum / ring_sum.sum(axis=1, keepdims=True)
            mean_frac = frac / (self.ring_fraction + np.finfo(float).eps)
            occupied = self.wedge_count > 0
            means = np.where(occupied, wedge_sum / np.where(occupied, self.wedge_count, 1), 0.0)
            k = occupied.sum(axis=2)
            centre = means.sum(axis=2) / k
            spread = np.sqrt(
                (np.where(occupied, means - centre[..., None], 0.0) ** 2).sum(axis=2) / k
            )
            # As numpy.ma divides: a mean that is 0 (to the smallest float) gives the
            # spread itself, not a division by zero.
            tiny = np.finfo(float).tiny
            cv = np.where(np.abs(centre) <= np.abs(spread) * tiny, spread, spread / centre)
            cv[k == 0] = 0.0
        out: dict[str, np.ndarray] = {}
        for b in range(bins):
            out[f"RadialDistribution_FracAtD_{b + 1}of{bins}"] = frac[:, b]
            out[f"RadialDistribution_MeanFrac_{b + 1}of{bins}"] = mean_frac[:, b]
            out[f"RadialDistribution_RadialCV_{b + 1}of{bins}"] = cv[:, b]
        return out
