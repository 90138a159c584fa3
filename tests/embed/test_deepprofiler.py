"""Crop geometry and feature naming against DeepProfiler's own outputs (real data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cellframe.embed.crops import BOX_SIZE, crop_boxes, crop_objects
from cellframe.embed.deepprofiler import deepprofiler_feature_names, to_deepprofiler_names

DP = "pycytominer-testdata/tests/test_data/DeepProfiler_example_data/SQ00014812_and_SQ00014813"


@pytest.fixture(scope="module")
def dp(shared_data: Path) -> dict:
    root = shared_data / DP
    if not root.is_dir():
        pytest.skip(f"{root} absent")
    config = json.loads((root / "inputs/config/config.json").read_text())
    npz = np.load(root / "outputs/results/features/SQ00014812/A01_5.npz", allow_pickle=True)
    return {
        "config": config,
        "npz": npz,
        "file": root / "outputs/results/features/SQ00014812/A01_5.npz",
    }


def test_box_size_and_geometry_match_deepprofiler(dp: dict) -> None:
    cfg = dp["config"]["dataset"]
    assert cfg["locations"]["box_size"] == BOX_SIZE == 128
    height, width = cfg["images"]["height"], cfg["images"]["width"]
    loc = dp["npz"]["locations"]  # (cells, 2): Nuclei_Location_Center_X, _Y
    assert loc.shape == (158, 2)
    x, y = loc[:, 0], loc[:, 1]
    ours = crop_boxes(x, y, BOX_SIZE)
    # DeepProfiler (deepprofiler/imaging/boxes.py): [y - box/2, x - box/2, y + box/2, x + box/2],
    # sampled by crop_and_resize into box x box pixels with zeros outside the image.
    half = BOX_SIZE / 2
    theirs = np.stack([y - half, x - half, y + half, x + half], axis=1)
    assert np.abs(ours[:, :2] - theirs[:, :2]).max() <= 1.0
    assert (ours[:, 2] - ours[:, 0] == BOX_SIZE).all() and (
        ours[:, 3] - ours[:, 1] == BOX_SIZE
    ).all()
    # Zero padding: a cell at y = 16.02 has about 64 - 16 = 48 rows of zeros above it in both tools.
    image = np.ones((1, height, width), dtype=np.float32)
    crops = crop_objects(image, x, y)
    zero_rows = (crops[:, 0].sum(axis=2) == 0).sum(axis=1)
    zero_cols = (crops[:, 0].sum(axis=1) == 0).sum(axis=1)
    dp_rows = np.clip(half - y, 0, None) + np.clip(y + half - height, 0, None)
    dp_cols = np.clip(half - x, 0, None) + np.clip(x + half - width, 0, None)
    assert np.abs(zero_rows - dp_rows).max() <= 1.0 and np.abs(zero_cols - dp_cols).max() <= 1.0
    assert zero_rows.max() >= 40  # the file has cells at the border


def test_feature_layout_and_names_match_pycytominer(dp: dict) -> None:
    from pycytominer.cyto_utils.load import load_npz_features

    from cellframe.embed.embedders import ChannelEmbedder

    channels = dp["config"]["dataset"]["images"]["channels"]
    features = dp["npz"]["features"]
    model = dp["npz"]["metadata"].item()["Metadata_Model"]
    assert model == "efficientnet"
    # DeepProfiler's feature_layer "avg_pool" is EfficientNet-B0's pooled head: 1,280 per channel.
    emb = ChannelEmbedder("efficientnet_b0", "random", layer="bn2", name=model, device="cpu")
    assert emb.n_layer_features == 1280
    assert features.shape == (158, len(channels) * 1280)
    ours = emb.feature_names(channels)
    mapping = to_deepprofiler_names(ours, model, channels)
    df = load_npz_features(str(dp["file"]))
    their_features = [c for c in df.columns if not c.startswith("Metadata_")]
    assert (
        [mapping[c] for c in ours]
        == their_features
        == deepprofiler_feature_names(model, len(channels), 1280)
    )
    assert mapping["efficientnet_RNA_0"] == "efficientnet_1280"  # RNA is DeepProfiler's 2nd channel
    # And the default (block 6a) layer keeps the same channel-major order with 672 per channel.
    names = ChannelEmbedder("efficientnet_b0", "random", name=model, device="cpu").feature_names(
        channels
    )
    assert (
        to_deepprofiler_names(names, model, channels)["efficientnet_Mito_671"]
        == "efficientnet_3359"
    )


def test_names_reject_foreign_columns() -> None:
    with pytest.raises(ValueError, match="is not m_<channel>_<i>"):
        to_deepprofiler_names(["m_XX_0"], "m", ["DNA"])
    with pytest.raises(ValueError, match="different numbers of features"):
        to_deepprofiler_names(["m_DNA_0", "m_DNA_1", "m_ER_0"], "m", ["DNA", "ER"])
