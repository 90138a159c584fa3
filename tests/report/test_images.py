"""Report images: PNG data URIs decode to the pixels given, outlines and crops sit where the labels say."""

from __future__ import annotations

import base64
import io

import numpy as np
import polars as pl
import pytest
from PIL import Image
from skimage.segmentation import find_boundaries

from cellframe.errors import InvalidInputError, MissingColumnsError
from cellframe.report import crop_montage, outline_overlay, png_data_uri, scale_intensity
from cellframe.segment.objects import objects_table


def decode(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))


def test_png_data_uri_round_trips_grey_and_rgb() -> None:
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, size=(7, 11), dtype=np.uint8)
    rgb = rng.integers(0, 256, size=(5, 4, 3), dtype=np.uint8)
    np.testing.assert_array_equal(decode(png_data_uri(grey)), grey)
    np.testing.assert_array_equal(decode(png_data_uri(rgb)), rgb)
    with pytest.raises(InvalidInputError, match="uint8"):
        png_data_uri(grey.astype(np.uint16))
    with pytest.raises(InvalidInputError, match=r"\(H, W\)"):
        png_data_uri(np.zeros((2, 2, 4), dtype=np.uint8))


def test_scale_intensity_maps_percentiles_to_0_and_255() -> None:
    img = np.arange(101, dtype=np.uint16).reshape(1, 101) * 10  # 0 ... 1000
    out = scale_intensity(img, percentiles=(10, 90))  # 100 -> 0, 900 -> 255
    assert out[0, 10] == 0 and out[0, 0] == 0 and out[0, 90] == 255 and out[0, 100] == 255
    assert out[0, 50] == round((500 - 100) / 800 * 255)
    # a flat image is all zeros, not a division by zero
    assert scale_intensity(np.full((3, 3), 7.0)).max() == 0
    with pytest.raises(InvalidInputError, match="2-D"):
        scale_intensity(np.zeros((2, 2, 2)))
    with pytest.raises(InvalidInputError, match="finite"):
        scale_intensity(np.full((2, 2), np.nan))


def test_outline_overlay_colours_exactly_the_inner_boundaries() -> None:
    labels = np.zeros((20, 20), dtype=np.int32)
    labels[2:8, 2:8] = 1
    labels[10:18, 9:15] = 2
    image = np.random.default_rng(1).random((20, 20))
    rgb = outline_overlay(image, labels, color=(255, 0, 255))
    boundary = find_boundaries(labels, mode="inner")
    # 6x6 square: 20 boundary pixels; 8x6 rectangle: 24
    assert boundary.sum() == 20 + 24
    painted = np.all(rgb == (255, 0, 255), axis=2)
    np.testing.assert_array_equal(painted & boundary, boundary)
    grey = scale_intensity(image)
    np.testing.assert_array_equal(rgb[~boundary][:, 0], grey[~boundary])
    with pytest.raises(InvalidInputError, match="differs"):
        outline_overlay(image, labels[:10])


def site(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 4000, size=(2, 64, 64)).astype(np.uint16)
    labels = np.zeros((64, 64), dtype=np.int32)
    labels[20:27, 20:27] = 1  # 49 px, centre (23, 23)
    labels[30:41, 30:41] = 2  # 121 px, centre (35, 35)
    labels[0:4, 0:4] = 3  # at the corner: a 16 px crop around it leaves the image
    return pixels, labels


def test_crop_montage_places_each_cells_crop_per_channel() -> None:
    pixels, labels = site()
    objects = objects_table(labels, plate="P", well="A01", site=1, object_name="Nuclei")
    montage, cells = crop_montage(
        {("P", "A01", 1): pixels}, objects, channels=["DNA", "RNA"], n_cells=5, size=16, gap=2
    )
    # the corner object is left out; the other two, smallest area first
    assert cells["Metadata_ObjectNumber"].to_list() == [1, 2]
    assert cells["AreaShape_Area"].to_list() == [49.0, 121.0]
    step = 18
    left = montage.shape[1] - (2 * step - 2)  # label strip width
    assert montage.shape[0] == 2 * step - 2
    scaled = [scale_intensity(c) for c in pixels]
    for col, (cy, cx) in enumerate(((23, 23), (35, 35))):
        y0, x0 = cy - 8, cx - 8
        for ch in range(2):
            got = montage[ch * step : ch * step + 16, left + col * step : left + col * step + 16]
            np.testing.assert_array_equal(got, scaled[ch][y0 : y0 + 16, x0 : x0 + 16])
    # the channel names are written in the label strip
    assert (montage[:, :left] < 128).any()


def test_crop_montage_refuses_what_it_cannot_show() -> None:
    pixels, labels = site()
    objects = objects_table(labels, plate="P", well="A01", site=1, object_name="Nuclei")
    with pytest.raises(InvalidInputError, match="inside its image"):
        crop_montage({("P", "A01", 1): pixels}, objects, channels=["DNA", "RNA"], size=80)
    with pytest.raises(InvalidInputError, match="expected"):
        crop_montage({("P", "A01", 1): pixels}, objects, channels=["DNA"], size=16)
    with pytest.raises(MissingColumnsError, match="AreaShape_Area"):
        crop_montage(
            {("P", "A01", 1): pixels},
            objects.drop("AreaShape_Area"),
            channels=["DNA", "RNA"],
            size=16,
        )
    # a site with no objects inside contributes nothing; one with objects still works
    empty = pl.DataFrame(schema=objects.schema)
    with pytest.raises(InvalidInputError, match="inside its image"):
        crop_montage({("P", "A01", 1): pixels}, empty, channels=["DNA", "RNA"], size=16)
