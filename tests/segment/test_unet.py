"""U-Net: shapes, tiling bookkeeping, checkpoints, training loop, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cellframe.errors import EmptyInputError, InvalidInputError
from cellframe.segment.predict import predict_proba, tile_starts, unet_segment
from cellframe.segment.train import UNetTrainConfig, targets_from_labels, train_unet
from cellframe.segment.unet import (
    CheckpointError,
    UNet,
    UNetConfig,
    create_unet,
    load_unet,
    save_unet,
)
from tests.segment.conftest import disks
from tests.segment.test_tta import PointwiseNet


@pytest.mark.parametrize(("depth", "width", "cin", "cout"), [(4, 4, 1, 1), (2, 3, 5, 3)])
@pytest.mark.parametrize("size", [(16, 16), (37, 23)])
def test_output_shape_any_size(depth, width, cin, cout, size):
    model = create_unet(in_channels=cin, out_channels=cout, depth=depth, width=width, device="cpu")
    x = torch.rand(2, cin, *size)
    assert model(x).shape == (2, cout, *size)
    # depth levels: one double-conv per level plus the bottleneck, widths doubling
    assert len(model.down) == depth and model.bottleneck[0].out_channels == width * 2**depth


def test_tile_starts_cover_the_image():
    assert tile_starts(500, 256, 32) == [0, 224, 244]
    for size in range(1, 300, 7):
        starts = tile_starts(size, 64, 16)
        covered = np.zeros(size, bool)
        for s in starts:
            covered[s : s + 64] = True
        assert covered.all() and starts[-1] + min(64, size) == size


@pytest.mark.parametrize("shape", [(50, 50), (70, 33), (129, 200)])
def test_tiled_prediction_of_pointwise_net_is_exact(shape):
    rng = np.random.default_rng(0)
    img = rng.random(shape).astype(np.float32)
    net = PointwiseNet()
    x = torch.from_numpy(
        (img - np.percentile(img, 1)) / (np.percentile(img, 99.8) - np.percentile(img, 1))
    )
    expected = torch.sigmoid(net(x[None, None].float()))[0].detach().numpy()
    for tile, overlap, batch in [(16, 4, 1), (32, 15, 3), (256, 32, 4)]:
        got = predict_proba(net, img, tile=tile, overlap=overlap, batch_size=batch)
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_tiled_unet_close_to_whole_image():
    torch.manual_seed(0)
    model = create_unet(width=4, depth=3, device="cpu").eval()
    img, _ = disks((150, 170))
    whole = predict_proba(model, img, tile=256)
    tiled = predict_proba(model, img, tile=64, overlap=24)
    # receptive field exceeds the overlap, so tiles differ a little near seams
    assert np.abs(tiled - whole).mean() < 0.02
    assert np.mean((tiled > 0.5) == (whole > 0.5)) > 0.97


def test_checkpoint_round_trip_and_other_architectures(tmp_path):
    torch.manual_seed(0)
    model = create_unet(in_channels=2, out_channels=3, depth=2, width=4, device="cpu").eval()
    path = save_unet(model, tmp_path / "m.pt", note="test")
    loaded = load_unet(path, device="cpu")
    assert loaded.config == UNetConfig(2, 3, 2, 4) and loaded.checkpoint_meta == {"note": "test"}
    x = torch.rand(1, 2, 20, 20)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    with pytest.raises(CheckpointError, match="in_channels: checkpoint 2, needed 1"):
        load_unet(path, expect={"in_channels": 1})
    # weights of another network
    torch.save(torch.nn.Conv2d(1, 1, 3).state_dict(), tmp_path / "conv.pt")
    with pytest.raises(CheckpointError, match="another architecture"):
        load_unet(tmp_path / "conv.pt")
    # a cellframe header whose weights belong to a different U-Net
    ckpt = torch.load(path, weights_only=True)
    ckpt["config"]["width"] = 8
    torch.save(ckpt, tmp_path / "lie.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_unet(tmp_path / "lie.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_unet(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError):
        load_unet(tmp_path / "absent.pt")


def test_targets_from_labels():
    lab = np.zeros((6, 8), np.int32)
    lab[1:5, 1:4] = 1
    lab[1:5, 4:7] = 2  # touching object 1
    fg = targets_from_labels(lab, 1)
    np.testing.assert_array_equal(fg[0], lab > 0)
    cls = targets_from_labels(lab, 3)
    assert cls[0, 0] == 0 and cls[2, 2] == 1 and cls[2, 3] == 2 and cls[2, 4] == 2
    assert set(np.unique(cls[lab > 0])) == {1, 2}


def test_training_learns_disks(tmp_path):
    torch.manual_seed(0)
    img, lab = disks((64, 64), centres=((20, 20, 8), (44, 40, 10)))
    img = img + np.random.default_rng(0).normal(0, 10, img.shape)
    model = create_unet(width=4, depth=2, device="cpu")
    hist = train_unet(
        model,
        [img],
        [lab],
        checkpoint=tmp_path / "ck.pt",
        progress=False,
        config=UNetTrainConfig(epochs=3, steps_per_epoch=15, batch_size=4, patch_size=32, lr=3e-3),
    )
    assert len(hist.loss) == 3 and hist.loss[-1] < hist.loss[0]
    assert (
        hist.checkpoints == [tmp_path / "ck.pt"]
        and load_unet(tmp_path / "ck.pt").checkpoint_meta["epoch"] == 3
    )
    labels = unet_segment(model, img, min_size=5)
    from cellframe.segment.metrics import jaccard

    assert jaccard(lab, labels) > 0.8


def test_bad_input_to_unet():
    model = create_unet(width=2, depth=1, device="cpu")
    with pytest.raises(InvalidInputError, match="expected"):
        predict_proba(model, np.ones((2, 3, 8, 8)))
    with pytest.raises(EmptyInputError, match="all zeros"):
        predict_proba(model, np.zeros((8, 8)))
    with pytest.raises(EmptyInputError, match="no pixels"):
        predict_proba(model, np.zeros((0, 8)))
    # Not constant: a constant image is refused as blank before any other check.
    ramp = np.arange(64.0).reshape(8, 8)
    with pytest.raises(InvalidInputError, match="reads 1"):
        predict_proba(model, np.stack([ramp] * 3))
    with pytest.raises(InvalidInputError, match="overlap"):
        predict_proba(model, ramp, tile=16, overlap=8)
    with pytest.raises(EmptyInputError, match=r"blank \(constant\)"):
        predict_proba(model, np.ones((8, 8)))
    with pytest.raises(InvalidInputError, match="out_channels"):
        UNet(UNetConfig(out_channels=2))
    with pytest.raises(InvalidInputError, match="as many label images"):
        train_unet(model, [np.ones((8, 8))], [], progress=False)


@pytest.mark.parametrize(
    ("field", "value"),
    [("epochs", 0), ("steps_per_epoch", -1), ("batch_size", 2.0), ("patch_size", True),
     ("lr", 0.0), ("lr", float("nan")), ("lr", float("inf"))],
)  # fmt: skip
def test_train_config_refuses_bad_settings(field, value):
    with pytest.raises(InvalidInputError, match=f"UNetTrainConfig: {field} must be a positive"):
        UNetTrainConfig(**{field: value})
    # The smallest valid run (one step of one patch of one pixel) is accepted.
    one = UNetTrainConfig(epochs=1, steps_per_epoch=1, batch_size=1, patch_size=1, lr=1e-9)
    assert (one.epochs, one.patch_size, one.lr) == (1, 1, 1e-9)
