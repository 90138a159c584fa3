"""Crops: geometry against a padded float64 NumPy reference, masking, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cellframe.embed.crops import crop_boxes, crop_objects
from cellframe.errors import InvalidInputError


def reference_crop(image: np.ndarray, x: float, y: float, box: int) -> np.ndarray:
    """Pad the image with `box` zeros on every side, then slice (float64)."""
    padded = np.pad(image.astype(np.float64), ((0, 0), (box, box), (box, box)))
    top = int(np.floor(y)) - box // 2 + box
    left = int(np.floor(x)) - box // 2 + box
    return padded[:, top : top + box, left : left + box]


def test_box_is_centred_on_the_centre_pixel() -> None:
    boxes = crop_boxes(np.array([100.0, 100.99]), np.array([64.2, 0.0]), box_size=128)
    assert boxes.tolist() == [[0, 36, 128, 164], [-64, 36, 64, 164]]


@settings(max_examples=60, deadline=None)
@given(
    x=st.floats(0, 29.999),
    y=st.floats(0, 20.999),
    box=st.sampled_from([1, 4, 7, 16, 64]),
)
def test_crop_equals_padded_reference(x: float, y: float, box: int) -> None:
    image = np.arange(3 * 21 * 30, dtype=np.float64).reshape(3, 21, 30) + 1
    crop = crop_objects(image, np.array([x]), np.array([y]), box_size=box, dtype=np.float64)[0]
    np.testing.assert_array_equal(crop, reference_crop(image, x, y, box))
    # The centre pixel lands at (box // 2, box // 2).
    np.testing.assert_array_equal(crop[:, box // 2, box // 2], image[:, int(y), int(x)])


def test_zero_padding_counts_at_a_corner() -> None:
    image = np.ones((5, 200, 300), dtype=np.uint16)
    crop = crop_objects(image, np.array([3.5]), np.array([10.0]), box_size=128)[0]
    assert crop.shape == (5, 128, 128) and crop.dtype == np.float32
    # 64 - 10 = 54 zero rows above, 64 - 3 = 61 zero columns on the left.
    assert (crop[:, :54].sum(), crop[:, :, :61].sum()) == (0, 0)
    assert crop.sum() == 5 * (128 - 54) * (128 - 61)


def test_masking_keeps_only_the_object() -> None:
    image = np.full((2, 10, 10), 7.0)
    labels = np.zeros((10, 10), dtype=np.int32)
    labels[2:5, 2:5] = 1
    labels[5:8, 5:8] = 2
    crops = crop_objects(
        image,
        np.array([3.0, 6.0]),
        np.array([3.0, 6.0]),
        box_size=6,
        labels=labels,
        object_numbers=np.array([1, 2]),
    )
    assert crops[0].sum() == 2 * 9 * 7.0 and crops[1].sum() == 2 * 9 * 7.0
    expected = (labels[0:6, 0:6] == 1) * 7.0
    np.testing.assert_array_equal(crops[0, 0], expected)


def test_object_outside_the_image_is_an_error() -> None:
    image = np.zeros((5, 50, 40))
    with pytest.raises(
        InvalidInputError, match=r"1 of 2 object centre\(s\) lie outside the 50 x 40 image"
    ):
        crop_objects(image, np.array([10.0, 40.0]), np.array([10.0, 10.0]), where="site P/A01/1")
    with pytest.raises(InvalidInputError, match="outside"):
        crop_objects(image, np.array([np.nan]), np.array([1.0]))
    with pytest.raises(InvalidInputError, match="outside"):
        crop_objects(image, np.array([1.0]), np.array([-0.5]))


def test_bad_image_and_label_shapes() -> None:
    with pytest.raises(InvalidInputError, match="empty"):
        crop_objects(np.zeros((5, 0, 10)), np.array([0.0]), np.array([0.0]))
    with pytest.raises(InvalidInputError, match=r"\(channels, height, width\)"):
        crop_objects(np.zeros((1, 5, 10, 10)), np.array([0.0]), np.array([0.0]))
    with pytest.raises(InvalidInputError, match="does not match"):
        crop_objects(
            np.zeros((2, 10, 10)),
            np.array([1.0]),
            np.array([1.0]),
            labels=np.zeros((9, 10)),
            object_numbers=np.array([1]),
        )


def test_no_objects_give_an_empty_stack() -> None:
    out = crop_objects(np.zeros((5, 10, 10)), np.array([]), np.array([]), box_size=8)
    assert out.shape == (0, 5, 8, 8)
