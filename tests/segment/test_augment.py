"""Dihedral transforms: undo is the identity (Hypothesis), names mean what they say."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from cellframe.segment.augment import (
    DEFAULT_TTA,
    DIHEDRAL,
    TRANSFORMS,
    apply_transform,
    resolve_transforms,
    undo_transform,
)

images = arrays(
    np.float32,
    array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=7),
    elements=st.floats(-10, 10, width=32),
)


@settings(max_examples=80, deadline=None)
@given(x=images, name=st.sampled_from(sorted(TRANSFORMS)))
def test_undo_is_identity_numpy_and_torch(x, name):
    np.testing.assert_array_equal(undo_transform(apply_transform(x, name), name), x)
    t = torch.from_numpy(x.copy())
    assert torch.equal(undo_transform(apply_transform(t, name), name), t)
    # NumPy and torch agree exactly
    np.testing.assert_array_equal(apply_transform(t, name).numpy(), apply_transform(x, name))


def test_transform_meanings():
    x = np.arange(6).reshape(2, 3)
    np.testing.assert_array_equal(apply_transform(x, "hflip"), x[:, ::-1])
    np.testing.assert_array_equal(apply_transform(x, "vflip"), x[::-1, :])
    np.testing.assert_array_equal(apply_transform(x, "rot90"), np.rot90(x))
    np.testing.assert_array_equal(apply_transform(x, "rot180"), x[::-1, ::-1])
    np.testing.assert_array_equal(apply_transform(x, "rot270"), np.rot90(x, 3))
    np.testing.assert_array_equal(apply_transform(x, "transpose"), x.T)
    np.testing.assert_array_equal(apply_transform(x, "antitranspose"), x[::-1, ::-1].T)
    # the 8 elements are distinct: the full dihedral group
    y = np.arange(9).reshape(3, 3)
    assert len({apply_transform(y, t).tobytes() for t in DIHEDRAL}) == 8


def test_presets_and_unknown_names():
    assert (
        resolve_transforms("default")
        == DEFAULT_TTA
        == (
            "identity",
            "hflip",
            "vflip",
            "rot90",
            "rot180",
            "rot270",
        )
    )
    assert len(resolve_transforms("dihedral")) == 8
    assert resolve_transforms("none") == ("identity",)
    with pytest.raises(ValueError, match="unknown transform"):
        resolve_transforms(["hflip", "shear"])
