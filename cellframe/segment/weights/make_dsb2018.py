"""Recreate ``unet_dsb2018_nuclei.pt`` (run from the repository root).

    python -m cellframe.segment.weights.make_dsb2018 ../shared/data/nuclei-dsb2018

Trains on the top half (rows 0-255) of the DSB 2018 image only, so the bottom
half stays a held-out test set for examples/segment_dsb.py.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

from cellframe.io.images import read_labels, read_site
from cellframe.segment.train import UNetTrainConfig, train_unet
from cellframe.segment.unet import create_unet, save_unet

RECIPE = {
    "out_channels": 3,
    "depth": 4,
    "width": 8,
    "epochs": 30,
    "steps_per_epoch": 20,
    "batch_size": 8,
    "patch_size": 96,
    "lr": 1e-3,
    "seed": 0,
    "train_rows": [0, 256],
}


def main(data_dir: str) -> None:
    torch.set_num_threads(1)
    root = Path(data_dir)
    image = read_site(root / "img2d.tif").pixels[:, :256]
    labels = read_labels(root / "mask2d.tif")[:256]
    torch.manual_seed(RECIPE["seed"])
    model = create_unet(
        out_channels=RECIPE["out_channels"],
        depth=RECIPE["depth"],
        width=RECIPE["width"],
        device="cpu",
    )
    start = time.perf_counter()
    hist = train_unet(
        model,
        [image],
        [labels],
        progress=False,
        config=UNetTrainConfig(
            epochs=RECIPE["epochs"],
            steps_per_epoch=RECIPE["steps_per_epoch"],
            batch_size=RECIPE["batch_size"],
            patch_size=RECIPE["patch_size"],
            lr=RECIPE["lr"],
            seed=RECIPE["seed"],
        ),
    )
    out = Path(__file__).parent / "unet_dsb2018_nuclei.pt"
    save_unet(
        model,
        out,
        data="nuclei-dsb2018 img2d.tif/mask2d.tif rows 0-255 (stardist 0.9.2 wheel)",
        final_loss=hist.loss[-1],
        train_seconds=round(time.perf_counter() - start, 1),
        torch=torch.__version__,
        numpy=np.__version__,
        **RECIPE,
    )
    print(
        f"saved {out} ({out.stat().st_size / 1e6:.2f} MB), loss {hist.loss[0]:.3f} -> {hist.loss[-1]:.3f}"
    )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/nuclei-dsb2018")
