"""Site-by-site crop streaming: each site read once, batches, workers, bad input."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from cellframe.embed.crops import crop_objects
from cellframe.embed.dataset import SiteCropDataset, crop_loader
from cellframe.errors import EmptyInputError, InvalidInputError, MissingColumnsError

from .conftest import CHANNELS


class CountingLoader:
    """Picklable loader that counts reads per site (in this process)."""

    def __init__(self, images: dict) -> None:
        self.images = images
        self.calls: dict = {}

    def __call__(self, key: tuple) -> np.ndarray:
        self.calls[key] = self.calls.get(key, 0) + 1
        return self.images[key]


def expected_crops(objects: pl.DataFrame, images: dict, box: int) -> dict:
    out = {}
    for row in objects.iter_rows(named=True):
        key = (row["Metadata_Plate"], row["Metadata_Well"], row["Metadata_Site"])
        crop = crop_objects(
            images[key],
            np.array([row["Location_Center_X"]]),
            np.array([row["Location_Center_Y"]]),
            box_size=box,
        )[0]
        out[(*key, row["Metadata_ObjectNumber"])] = crop
    return out


def collect(ds: SiteCropDataset, loader) -> dict:
    got = {}
    for batch in loader:
        for crop, row in zip(batch["crops"].numpy(), batch["rows"].numpy(), strict=True):
            key = ds.objects.row(int(row))[:4]
            assert key not in got
            got[key] = crop
    return got


def test_each_site_is_read_once_and_batches_span_sites(two_sites) -> None:
    objects, images = two_sites
    counting = CountingLoader(images)
    ds = SiteCropDataset(objects, counting, CHANNELS, box_size=32, batch_size=2)
    batches = list(ds)
    assert [len(b["rows"]) for b in batches] == [2, 2, 1]
    assert counting.calls == {("P1", "A01", 1): 1, ("P1", "B02", 2): 1}
    # The second batch holds the last A01 object and the first B02 object.
    assert batches[1]["rows"].tolist() == [2, 3]
    got = collect(ds, [*batches])
    want = expected_crops(objects, images, 32)
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])


def test_workers_give_the_same_crops(two_sites) -> None:
    objects, images = two_sites
    ds = SiteCropDataset(objects, images, CHANNELS, box_size=16, batch_size=3)
    serial = collect(ds, crop_loader(ds, num_workers=0))
    parallel = collect(ds, crop_loader(ds, num_workers=2))
    assert serial.keys() == parallel.keys() and len(serial) == 5
    for key in serial:
        np.testing.assert_array_equal(serial[key], parallel[key])
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in serial.values())


def test_objects_are_sorted_by_keys(two_sites) -> None:
    objects, images = two_sites
    ds = SiteCropDataset(objects, images, CHANNELS)
    assert ds.objects["Metadata_ObjectNumber"].to_list() == [1, 2, 3, 1, 2]
    assert [s[0] for s in ds.sites] == [("P1", "A01", 1), ("P1", "B02", 2)]
    assert len(ds) == 5


def test_channel_count_mismatch(two_sites) -> None:
    objects, images = two_sites
    ds = SiteCropDataset(objects, images, CHANNELS[:3])
    with pytest.raises(
        InvalidInputError,
        match=r"site P1/A01/1: image of shape \(5, 96, 80\) has 5 channel\(s\) but 3",
    ):
        next(iter(ds))


def test_missing_site_image_and_columns(two_sites) -> None:
    objects, images = two_sites
    ds = SiteCropDataset(
        objects, {("P1", "A01", 1): images[("P1", "A01", 1)]}, CHANNELS, batch_size=100
    )
    with pytest.raises(InvalidInputError, match=r"no image for site \('P1', 'B02', 2\)"):
        list(ds)
    with pytest.raises(MissingColumnsError, match="Location_Center_X"):
        SiteCropDataset(objects.drop("Location_Center_X"), images, CHANNELS)


def test_empty_objects_is_an_error(two_sites) -> None:
    objects, images = two_sites
    with pytest.raises(EmptyInputError, match="holds no objects"):
        SiteCropDataset(objects.clear(), images, CHANNELS)


def test_masking_needs_labels(two_sites) -> None:
    objects, images = two_sites
    ds = SiteCropDataset(objects, images, CHANNELS, mask_objects=True)
    with pytest.raises(InvalidInputError, match="needs a label image"):
        next(iter(ds))
    labelled = {k: (v, np.ones(v.shape[1:], dtype=np.int32)) for k, v in images.items()}
    ds = SiteCropDataset(objects, labelled, CHANNELS, mask_objects=True, box_size=8, batch_size=10)
    batch = next(iter(ds))
    # Only the object numbered 1 in each site keeps its pixels.
    kept = batch["crops"].flatten(1).abs().sum(1) > 0
    numbers = ds.objects["Metadata_ObjectNumber"].to_numpy()[batch["rows"].numpy()]
    assert torch.equal(kept, torch.from_numpy(numbers == 1))
