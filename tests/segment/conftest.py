"""Shared fixtures for the segmentation tests."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """The test machine's cores are shared; one torch thread avoids oversubscription."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def disks(shape=(64, 80), centres=((16, 20, 7), (40, 55, 9), (45, 18, 5)), value=200.0):
    """A dark image with bright disks and its true label image."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = np.full(shape, 10.0)
    labels = np.zeros(shape, np.int32)
    for i, (cy, cx, r) in enumerate(centres, start=1):
        m = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        img[m] = value
        labels[m] = i
    return img, labels
