"""Mask R-CNN wrapper: detections -> label images, TTA merge; training (slow)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cellframe.segment.maskrcnn import MaskRCNNSegmenter, create_maskrcnn, train_maskrcnn
from cellframe.segment.tta import tta_instances
from tests.segment.conftest import disks


class FakeDetector(torch.nn.Module):
    """Returns fixed detections (as torchvision does in eval mode) for each input image."""

    def __init__(self, masks, scores):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.masks = torch.as_tensor(masks, dtype=torch.float32)[:, None]
        self.scores = torch.as_tensor(scores, dtype=torch.float32)
        self.seen = []

    def forward(self, images):
        self.seen.append(len(images))
        return [{"masks": self.masks, "scores": self.scores} for _ in images]


def test_detections_become_label_images():
    m = np.zeros((3, 6, 6))
    m[0, 0:3, 0:3] = 0.9  # score 0.6
    m[1, 1:4, 1:4] = 0.8  # score 0.95: painted first, keeps the overlap
    m[2, 4:6, 4:6] = 0.9  # score 0.3: below threshold
    seg = MaskRCNNSegmenter(FakeDetector(m, [0.6, 0.95, 0.3]))
    # Any non-constant image: the fake detector ignores the pixels (a constant one is blank).
    image = np.arange(36.0).reshape(6, 6)
    lab = seg(image)
    expected = np.zeros((6, 6), np.int32)
    expected[0:3, 0:3] = 2
    expected[1:4, 1:4] = 1
    np.testing.assert_array_equal(lab, expected)
    labs = seg([image, image])
    assert len(labs) == 2 and seg.model.seen[-1] == 2  # one forward pass for the batch


def test_tta_merge_of_a_detector_runs_batched():
    m = np.zeros((1, 8, 8))
    m[0, 2:6, 2:6] = 1.0  # symmetric object: the same under every transform
    det = FakeDetector(m, [0.9])
    image = np.arange(64.0).reshape(8, 8)
    merged = tta_instances(MaskRCNNSegmenter(det), image, batched=True)
    assert det.seen == [6]
    np.testing.assert_array_equal(merged, (m[0] > 0.5).astype(np.int32))


@pytest.mark.slow
def test_maskrcnn_trains_without_downloads():
    torch.manual_seed(0)
    model = create_maskrcnn(min_size=96, max_size=96, device="cpu")
    img, lab = disks((96, 96), centres=((30, 30, 10), (65, 60, 12)))
    img = img + np.random.default_rng(0).normal(0, 5, img.shape)
    hist = train_maskrcnn(model, [img], [lab], steps=40, lr=1e-4, progress=False)
    assert np.mean(hist.loss[-5:]) < np.mean(hist.loss[:5])
    labels = MaskRCNNSegmenter(model, score_threshold=0.05)(img)
    assert labels.shape == img.shape and labels.dtype == np.int32
