"""Otsu baseline against scikit-image and a hand-made image."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.filters import threshold_otsu
from skimage.measure import label as sk_label

from cellframe.errors import EmptyInputError, InvalidInputError
from cellframe.segment.otsu import otsu_segment, otsu_threshold


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_threshold_equals_skimage(seed):
    rng = np.random.default_rng(seed)
    img = np.concatenate([rng.normal(10, 2, 500), rng.normal(40, 5, 300)]).reshape(40, 20)
    assert otsu_threshold(img) == pytest.approx(threshold_otsu(img), rel=1e-12)
    u8 = rng.integers(0, 255, (30, 30)).astype(np.uint8)
    assert otsu_threshold(u8) == pytest.approx(threshold_otsu(u8), rel=1e-12)


def test_two_disks_and_reference_labels():
    yy, xx = np.mgrid[:40, :60]
    img = np.full((40, 60), 10.0)
    img[(yy - 12) ** 2 + (xx - 15) ** 2 <= 36] = 200
    img[(yy - 25) ** 2 + (xx - 45) ** 2 <= 49] = 180
    labels = otsu_segment(img, sigma=0, min_size=1)
    assert labels.max() == 2
    np.testing.assert_array_equal(labels == 1, (yy - 12) ** 2 + (xx - 15) ** 2 <= 36)
    np.testing.assert_array_equal(labels == 2, (yy - 25) ** 2 + (xx - 45) ** 2 <= 49)
    # smoothed: same objects as skimage's threshold + label pipeline
    from scipy import ndimage as ndi

    sm = ndi.gaussian_filter(img, 1.0)
    ref = sk_label(sm > threshold_otsu(sm), connectivity=1)
    np.testing.assert_array_equal(otsu_segment(img, sigma=1.0, min_size=1), ref)


def test_min_size_drops_small_components():
    img = np.zeros((10, 10))
    img[1:5, 1:5] = 5
    img[8, 8] = 5
    assert otsu_segment(img, sigma=0, min_size=2).max() == 1
    assert otsu_segment(img, sigma=0, min_size=1).max() == 2


def test_bad_images():
    with pytest.raises(EmptyInputError, match="all zeros"):
        otsu_segment(np.zeros((8, 8)))
    with pytest.raises(EmptyInputError, match="no pixels"):
        otsu_segment(np.zeros((0, 8)))
    with pytest.raises(EmptyInputError, match="constant"):
        otsu_segment(np.full((8, 8), 3.0), sigma=0)
    with pytest.raises(InvalidInputError, match=r"expected \(H, W\) or \(C, H, W\)"):
        otsu_segment(np.ones((2, 3, 4, 5)))
    with pytest.raises(InvalidInputError, match="channel 2 out of range"):
        otsu_segment(np.arange(50.0).reshape(2, 5, 5), channel=2)
