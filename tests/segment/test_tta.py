"""TTA: instance merge rules by hand, equivariant segmenters, batched semantic merge."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cellframe.errors import InvalidInputError
from cellframe.segment.augment import DEFAULT_TTA, apply_transform, undo_transform
from cellframe.segment.instances import relabel_sequential
from cellframe.segment.otsu import otsu_segment
from cellframe.segment.predict import predict_proba
from cellframe.segment.tta import merge_instances, tta_instances
from cellframe.segment.unet import UNetConfig, create_unet
from tests.segment.conftest import disks


def box(shape, y0, y1, x0, x1, value=1):
    a = np.zeros(shape, np.int32)
    a[y0:y1, x0:x1] = value
    return a


def test_majority_of_versions_keeps_objects():
    shape = (10, 20)
    a = box(shape, 1, 5, 1, 5)  # seen in all 6 versions
    b = box(shape, 1, 5, 10, 14, 2)  # seen in 4 of 6: kept
    c = box(shape, 6, 9, 15, 19, 3)  # seen in 3 of 6: dropped (majority of 6 is 4)
    versions = []
    for i in range(6):
        v = a.copy()
        if i < 4:
            v += b
        if i < 3:
            v += c
        versions.append(v)
    merged = merge_instances(versions)
    np.testing.assert_array_equal(merged, relabel_sequential(a + b))
    assert merge_instances(versions, min_votes=3).max() == 3


def test_pixelwise_majority_mask_and_iou_grouping():
    shape = (8, 8)
    base = box(shape, 2, 6, 2, 6)  # 16 px
    grown = base.copy()
    grown[1, 2:6] = 1  # +4 px, IoU with base = 16/20 = 0.8
    shrunk = base.copy()
    shrunk[5, 2:6] = 0  # 12 px, IoU 0.75
    merged = merge_instances([base, grown, shrunk])
    # row 1 is in 1 of 3 masks (dropped); row 5 in 2 of 3 (kept)
    np.testing.assert_array_equal(merged, base)
    far = box(shape, 2, 6, 4, 8)  # IoU with base = 8/24 < 0.5: another object
    assert merge_instances([base, far, far]).tolist() == far.tolist()
    assert merge_instances([base, far]).max() == 0  # each in 1 of 2: no majority


@settings(max_examples=40, deadline=None)
@given(lab=arrays(np.int32, (6, 7), elements=st.integers(0, 5)), n=st.integers(1, 6))
def test_identical_versions_merge_to_themselves(lab, n):
    # connected pieces of one id count as one object: the merge keeps each id whole
    np.testing.assert_array_equal(merge_instances([lab] * n), relabel_sequential(lab))


def test_tta_instances_with_equivariant_segmenter_is_exact():
    img, truth = disks()
    merged, versions = tta_instances(
        lambda x: otsu_segment(x, sigma=0, min_size=1), img, return_versions=True
    )
    assert len(versions) == 6
    for v in versions:  # Otsu + components commutes with flips and rotations
        np.testing.assert_array_equal(v > 0, truth > 0)
    np.testing.assert_array_equal(merged, relabel_sequential(truth))
    batched = tta_instances(
        lambda xs: [otsu_segment(x, sigma=0, min_size=1) for x in xs],
        img,
        batched=True,
        tta="dihedral",
    )
    np.testing.assert_array_equal(batched, merged)


def test_merge_rejects_bad_input():
    with pytest.raises(InvalidInputError, match="at least one"):
        merge_instances([])
    with pytest.raises(InvalidInputError, match="shape"):
        merge_instances([np.zeros((3, 3), int), np.zeros((3, 4), int)])


class PointwiseNet(torch.nn.Module):
    """A 1x1 convolution: commutes with every flip and rotation."""

    def __init__(self):
        super().__init__()
        self.config = UNetConfig(1, 1, depth=1, width=1)
        self.conv = torch.nn.Conv2d(1, 1, 1)
        with torch.no_grad():
            self.conv.weight.fill_(3.0)
            self.conv.bias.fill_(-1.0)

    def forward(self, x):
        return self.conv(x)


def test_semantic_tta_equivariant_model_changes_nothing():
    rng = np.random.default_rng(0)
    img = rng.random((37, 50)).astype(np.float32)
    net = PointwiseNet()
    plain = predict_proba(net, img, tile=16, overlap=4)
    merged = predict_proba(net, img, tile=16, overlap=4, tta="dihedral")
    np.testing.assert_allclose(merged, plain, atol=1e-6)


def test_semantic_tta_is_mean_of_deaugmented_passes():
    torch.manual_seed(0)
    model = create_unet(width=4, depth=2, device="cpu").eval()
    rng = np.random.default_rng(1)
    img = rng.random((40, 56)).astype(np.float32)  # not square: rotations change the shape
    merged = predict_proba(model, img, tile=64, overlap=8, tta="default")
    ref = np.mean(
        [
            undo_transform(
                predict_proba(
                    model, np.ascontiguousarray(apply_transform(img, t)), tile=64, overlap=8
                ),
                t,
            )
            for t in DEFAULT_TTA
        ],
        axis=0,
    )
    np.testing.assert_allclose(merged, ref, atol=1e-5)
    plain = predict_proba(model, img, tile=64, overlap=8)
    assert np.abs(merged - plain).max() > 1e-4  # the U-Net is not equivariant: TTA matters
