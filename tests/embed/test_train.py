"""Weakly supervised training: splits, balancing, augmentations, a tiny run, checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from cellframe.embed.augment import Augmentation, augment_batch
from cellframe.embed.embedders import CellEmbedder, load_checkpoint
from cellframe.embed.train import (
    TrainConfig,
    balanced_indices,
    cell_labels,
    split_leave_cells_out,
    split_leave_plates_out,
    train_embedder,
)
from cellframe.embed.weights import WeightsMismatchError
from cellframe.errors import InvalidInputError


def cells_frame() -> pl.DataFrame:
    rows = [
        (p, w, i)
        for p in ("P1", "P2", "P3")
        for w, n in (("A01", 10), ("A02", 7))
        for i in range(n)
    ]
    return pl.DataFrame(
        rows, schema=["Metadata_Plate", "Metadata_Well", "Metadata_ObjectNumber"], orient="row"
    )


def test_leave_plates_out_is_disjoint() -> None:
    cells = cells_frame()
    split = split_leave_plates_out(cells, ["P2"])
    by_plate = cells.with_columns(split).group_by("Metadata_Plate").agg(pl.col("Split").unique())
    assert dict(by_plate.iter_rows()) == {"P1": ["train"], "P2": ["validation"], "P3": ["train"]}
    with pytest.raises(InvalidInputError, match=r"\['P9'\] are not among"):
        split_leave_plates_out(cells, ["P9"])
    with pytest.raises(InvalidInputError, match="leave at least one plate"):
        split_leave_plates_out(cells, ["P1", "P2", "P3"])


def test_leave_cells_out_splits_each_well_60_40() -> None:
    cells = cells_frame()
    split = split_leave_cells_out(cells, 0.6, seed=3)
    counts = (
        cells.with_columns(split)
        .group_by("Metadata_Plate", "Metadata_Well")
        .agg((pl.col("Split") == "train").sum().alias("train"), pl.len().alias("n"))
    )
    for row in counts.iter_rows(named=True):
        assert row["train"] == round(0.6 * row["n"])  # 6 of 10, 4 of 7
    assert split.to_list() != split_leave_cells_out(cells, 0.6, seed=4).to_list()


def test_balanced_indices_give_equal_classes() -> None:
    labels = np.array([0] * 90 + [1] * 8 + [2] * 2)
    idx = balanced_indices(labels, np.random.default_rng(0))
    assert len(idx) == 100
    counts = np.bincount(labels[idx], minlength=3)
    assert counts.max() - counts.min() <= 1  # 34/33/33 after cutting to 100
    assert set(idx[labels[idx] == 1]) == set(range(90, 98))  # every minority cell is used
    other = balanced_indices(labels, np.random.default_rng(1))
    assert not np.array_equal(idx, other)  # a new draw each epoch


def test_augmentations_keep_content_and_bounds() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, 16, 16)
    geometric = augment_batch(x, gen, Augmentation(crop_p=0, brightness=0, contrast=0))
    # Flips and 90-degree turns permute pixels: each crop keeps its sorted values.
    assert torch.equal(geometric.flatten(2).sort(-1).values, x.flatten(2).sort(-1).values)
    assert not torch.equal(geometric, x)
    photometric = augment_batch(x, gen, Augmentation(crop_p=0, flip_p=0, rotate90=False))
    shift = (photometric - x).mean(dim=(2, 3))
    assert shift.abs().max() <= 0.1 + 1e-5  # contrast keeps the mean; brightness moves it <= 10%
    spread = photometric.std(dim=(2, 3)) / x.std(dim=(2, 3))
    assert spread.min() >= 0.8 - 1e-4 and spread.max() <= 1.2 + 1e-4
    zoom = augment_batch(
        x, gen, Augmentation(crop_p=1.0, flip_p=0, rotate90=False, brightness=0, contrast=0)
    )
    assert zoom.shape == x.shape and not torch.equal(zoom, x)
    # A constant crop stays constant under a zoom.
    const = augment_batch(
        torch.ones(4, 1, 16, 16), gen, Augmentation(crop_p=1.0, brightness=0, contrast=0)
    )
    torch.testing.assert_close(const, torch.ones(4, 1, 16, 16))


def blob_crops(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class 'a' has a blob in channel 0, class 'b' in channel 1 (trivially separable)."""
    rng = np.random.default_rng(seed)
    crops = (rng.random((n, 2, size, size)) * 0.2).astype(np.float32)
    labels = np.array(["a", "b"] * (n // 2))
    yy, xx = np.mgrid[:size, :size]
    blob = np.exp(-((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (size * 1.0))
    crops[labels == "a", 0] += blob
    crops[labels == "b", 1] += blob
    return crops, labels


def test_tiny_run_fits_the_training_batch(tmp_path: Path) -> None:
    crops, labels = blob_crops(16, 16)
    split = np.array(["train"] * 8 + ["validation"] * 8)
    config = TrainConfig(arch="tinynet_e", epochs=6, batch_size=8, augmentation=None, seed=0)
    result = train_embedder(
        crops,
        labels,
        split,
        channels=["c0", "c1"],
        config=config,
        checkpoint_dir=tmp_path,
        progress=False,
    )
    h = result.history
    assert h["epoch"].to_list() == [1, 2, 3, 4, 5, 6]
    assert h.columns == [
        "epoch",
        "train_loss",
        "train_f1",
        "validation_loss",
        "validation_f1",
        "validation_accuracy",
        "seconds",
    ]
    # The zero classifier starts at uniform predictions: cross-entropy ln 2.
    assert h["train_loss"][0] == pytest.approx(np.log(2), abs=1e-6)
    # Full-batch SGD on 8 cells (lr 0.005 * 8 / 32): the loss falls (0.693 -> 0.448 here).
    assert h["train_loss"][-1] < 0.75 * h["train_loss"][0]
    assert h["validation_f1"].is_not_nan().all()
    assert result.classes == ["a", "b"]
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["epoch"] == 6 and ckpt["channels"] == ["c0", "c1"] and ckpt["arch"] == "tinynet_e"
    assert (tmp_path / "best.pt").is_file()
    # The checkpoint reproduces the trained network's block-6a features.
    emb = CellEmbedder(tmp_path / "last.pt", device="cpu")
    x = torch.from_numpy(crops[:4])
    feats = emb(x)
    assert feats.shape == (4, 336)  # tinynet_e's block 6a has 336 channels (B0: 672)
    from cellframe.embed.embedders import scale_per_channel_max, tap_layer

    with torch.inference_mode():
        want = tap_layer(result.model.cpu(), scale_per_channel_max(x)).mean(dim=(2, 3)).numpy()
    np.testing.assert_allclose(feats, want, rtol=1e-5, atol=1e-6)
    assert emb.feature_names()[:2] == ["wsl_tinynet_e_0", "wsl_tinynet_e_1"]


@pytest.mark.slow
def test_full_recipe_learns_a_separable_task() -> None:
    crops, labels = blob_crops(96, 32)
    split = np.where(np.arange(96) < 64, "train", "validation")
    config = TrainConfig(arch="tinynet_e", epochs=16, batch_size=16, max_steps_per_epoch=4)
    result = train_embedder(
        crops, labels, split, channels=["c0", "c1"], config=config, progress=False
    )
    h = result.history
    print(h)
    # With augmentations on and BatchNorm statistics still settling, single epochs are noisy:
    # the best of the last four epochs must separate the held-out cells.
    assert h["validation_accuracy"].tail(4).max() >= 0.9
    assert h["train_loss"].tail(4).mean() < h["train_loss"].head(4).mean()


def test_b0_five_channel_checkpoint_gives_672_features(tmp_path: Path) -> None:
    import timm

    from cellframe.embed.train import _checkpoint

    model = timm.create_model("efficientnet_b0", pretrained=False, in_chans=5, num_classes=3)
    meta = {
        "arch": "efficientnet_b0",
        "classes": ["x", "y", "z"],
        "channels": list("ABCDE"),
        "box_size": 128,
    }
    _checkpoint(model, tmp_path / "b0.pt", epoch=1, **meta)
    emb = CellEmbedder(tmp_path / "b0.pt", device="cpu")
    assert emb(torch.rand(2, 5, 64, 64)).shape == (2, 672)
    assert emb.provenance["weights_kind"] == "weakly supervised checkpoint"
    with pytest.raises(InvalidInputError, match="do not match the checkpoint's 5 channels"):
        emb(torch.rand(2, 3, 64, 64))
    # The same file with another architecture's tensors.
    bad = {**meta, "arch": "efficientnet_lite0"}
    _checkpoint(model, tmp_path / "bad.pt", epoch=1, **bad)
    with pytest.raises(WeightsMismatchError, match="do not fit timm 'efficientnet_lite0'"):
        CellEmbedder(tmp_path / "bad.pt")
    torch.save({"state_dict": {}}, tmp_path / "plain.pt")
    with pytest.raises(WeightsMismatchError, match="not a cellframe embedder checkpoint"):
        CellEmbedder(tmp_path / "plain.pt")


def test_bad_training_input() -> None:
    crops, labels = blob_crops(8, 16)
    split = ["train"] * 8
    with pytest.raises(InvalidInputError, match="do not hold 3 channels"):
        train_embedder(crops, labels, split, channels=["a", "b", "c"], progress=False)
    with pytest.raises(InvalidInputError, match="at least two classes"):
        train_embedder(crops, ["a"] * 8, split, channels=["a", "b"], progress=False)
    with pytest.raises(InvalidInputError, match="'train' or 'validation'"):
        train_embedder(crops, labels, ["test"] * 8, channels=["a", "b"], progress=False)


def test_cell_labels_join_the_platemap() -> None:
    cells = cells_frame()
    platemap = pl.DataFrame(
        {
            "Metadata_Plate": ["P1", "P1", "P2", "P2", "P3", "P3"],
            "Metadata_Well": ["A01", "A02"] * 3,
            "Metadata_Treatment": ["DMSO", "X", "DMSO", "Y", "DMSO", "X"],
        }
    )
    got = cell_labels(cells, platemap, "Metadata_Treatment")
    assert got.to_list()[:11] == ["DMSO"] * 10 + ["X"]
    with pytest.raises(InvalidInputError, match="7 of 51 cells sit in wells without"):
        cell_labels(cells, platemap.head(5), "Metadata_Treatment")
