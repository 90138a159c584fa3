"""Cost of test-time augmentation: one U-Net pass vs 6-fold (and 8-fold) batched TTA.

DOMAIN.md §4 / issue 5: the transforms are batched into the same forward pass,
so 6-fold TTA should cost at most ~6.5x one pass. The anchor is the naive way:
six separate predictions, each transformed and transformed back.

Each mode runs in its own subprocess, so peak RSS is per mode.

    .venv/bin/python benchmarks/bench_tta.py [--size 512] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

MODES = ("one_pass", "tta6_batched", "tta6_loop", "tta8_batched")


def worker(mode: str, size: int, repeats: int, threads: int, width: int) -> dict:
    import resource
    import time

    import numpy as np
    import torch

    from cellframe.segment.augment import DEFAULT_TTA, apply_transform, undo_transform
    from cellframe.segment.predict import predict_proba
    from cellframe.segment.unet import create_unet

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_unet(width=width, depth=4, device="cpu").eval()
    img = np.random.default_rng(0).random((size, size)).astype(np.float32)

    def run() -> np.ndarray:
        if mode == "one_pass":
            return predict_proba(model, img)
        if mode == "tta6_batched":
            return predict_proba(model, img, tta="default")
        if mode == "tta8_batched":
            return predict_proba(model, img, tta="dihedral")
        return np.mean(
            [
                undo_transform(
                    predict_proba(model, np.ascontiguousarray(apply_transform(img, t))), t
                )
                for t in DEFAULT_TTA
            ],
            axis=0,
        )

    run()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"mode": mode, "seconds": min(times), "peak_rss_mb": peak_mb}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--worker")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.size, args.repeats, args.threads, args.width)))
        return
    results = {}
    for mode in MODES:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--worker",
                mode,
                "--size",
                str(args.size),
                "--repeats",
                str(args.repeats),
                "--threads",
                str(args.threads),
                "--width",
                str(args.width),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    base = results["one_pass"]["seconds"]
    print(
        f"U-Net width {args.width}, depth 4, image {args.size}x{args.size}, tile 256, "
        f"{args.threads} torch thread(s), best of {args.repeats}"
    )
    print(f"{'mode':<14}{'seconds':>10}{'x one pass':>12}{'peak RSS MB':>13}")
    for mode, r in results.items():
        print(
            f"{mode:<14}{r['seconds']:>10.3f}{r['seconds'] / base:>12.2f}{r['peak_rss_mb']:>13.0f}"
        )
    ratio = results["tta6_batched"]["seconds"] / base
    print(
        f"6-fold batched TTA / one pass = {ratio:.2f} (target <= 6.5); "
        f"loop / batched = {results['tta6_loop']['seconds'] / results['tta6_batched']['seconds']:.2f}"
    )


if __name__ == "__main__":
    main()
