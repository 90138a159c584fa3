"""Segment nuclei of the DSB 2018 image: U-Net (with and without TTA) vs Otsu.

Train a small U-Net on the top half of the image, predict the bottom half and
report the pixel Jaccard index and the DSB 2018 score of each method, plus the
shipped checkpoint (also trained on the top half only) with and without TTA.

    python examples/segment_dsb.py [--data FOLDER] [--steps 80] [--quick]

The image and its ground truth ship with cellframe (cellframe/data/demo/dsb2018);
``--data`` names a folder of your own with ``img2d.tif`` (one channel) and
``mask2d.tif`` (its label image), split into a top half for training and a
bottom half for testing. ``--quick`` trains 10 steps and skips the
instance-merge TTA (about a quarter of the time).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

import cellframe.segment as seg
from cellframe.demo import demo_data_dir
from cellframe.io.images import read_labels, read_site


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data",
        type=Path,
        default=demo_data_dir() / "dsb2018",
        help="folder with img2d.tif and mask2d.tif (default: the bundled DSB 2018 image)",
    )
    ap.add_argument("--steps", type=int, default=80, help="training steps of the small U-Net")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--quick", action="store_true", help="10 training steps, no instance-merge TTA")
    args = ap.parse_args(argv)
    if args.quick:
        args.steps = min(args.steps, 10)
    torch.set_num_threads(args.threads)

    image = read_site(Path(args.data) / "img2d.tif").pixels[0]
    truth = read_labels(Path(args.data) / "mask2d.tif")
    train_img, train_lab = image[:256], truth[:256]
    test_img, test_lab = image[256:], truth[256:]

    torch.manual_seed(0)
    small = seg.create_unet(width=8, depth=3, device="cpu")
    t0 = time.perf_counter()
    seg.train_unet(
        small,
        [train_img],
        [train_lab],
        config=seg.UNetTrainConfig(
            epochs=args.steps // 10, steps_per_epoch=10, batch_size=8, patch_size=64
        ),
        progress=True,
    )
    print(f"trained a small U-Net ({args.steps} steps) in {time.perf_counter() - t0:.0f} s")
    shipped = seg.create_unet(pretrained=True, device="cpu")

    predictions = {
        "otsu": seg.otsu_segment(test_img),
        "unet_small": seg.unet_segment(small, test_img),
        "unet_small_tta": seg.unet_segment(small, test_img, tta="default"),
        "unet_shipped": seg.unet_segment(shipped, test_img),
        "unet_shipped_tta": seg.unet_segment(shipped, test_img, tta="default"),
    }
    if not args.quick:
        # instance merge (IoU >= 0.5, majority of 6 versions) instead of averaging probabilities
        predictions["unet_shipped_tta_instances"] = seg.tta_instances(
            lambda x: seg.unet_segment(shipped, x), test_img, tta="default"
        )
    rows = [
        {
            "method": name,
            "objects": int(lab.max()),
            "jaccard": seg.jaccard(test_lab, lab),
            "dsb_score": seg.dsb_score(test_lab, lab),
        }
        for name, lab in predictions.items()
    ]
    with pl.Config(tbl_rows=20, float_precision=3):
        print(f"held-out bottom half: {len(np.unique(test_lab)) - 1} true nuclei")
        print(pl.DataFrame(rows))
        for model in ("unet_small", "unet_shipped"):
            delta = seg.tta_delta([test_lab], [predictions[model]], [predictions[f"{model}_tta"]])
            print(f"TTA effect on the DSB score, {model}: delta = {delta['delta'][0]:+.3f}")
        if "unet_shipped_tta_instances" in predictions:
            delta = seg.tta_delta(
                [test_lab],
                [predictions["unet_shipped"]],
                [predictions["unet_shipped_tta_instances"]],
            )
            print(f"instance-merge TTA, unet_shipped: delta = {delta['delta'][0]:+.3f}")


if __name__ == "__main__":
    main()
