"""Benchmark: crop + embed throughput (cells/s) and the share of time outside the forward pass.

Runs the pre-trained per-channel EfficientNet path (5 channels x 224 x 224 per
cell, features at block 6a) on synthetic sites shaped like Cell Painting fields
(5 x 1080 x 1080 uint16, cells on a grid), on the CPU and, when one is
present, on a CUDA GPU (float16 autocast, bigger batches, worker processes).
Weights are random: speed does not depend on their values.

The anchor is DeepProfiler's published cost of the same pre-trained profiling,
0.58 h per plate on a V100 (Moshkov et al. 2024); converting it to cells/s
needs a plate size, by default 384 wells x 9 sites x 100 cells (about 346,000
cells; pass ``--cells-per-plate``). DeepProfiler itself (TensorFlow) is not
installed here, so it cannot run side by side.

    .venv/bin/python benchmarks/bench_embed.py --cells 64             # quick CPU run
    .venv/bin/python benchmarks/bench_embed.py --cells 20000 --gpu-only --workers 8
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np
import polars as pl
import torch

from cellframe.embed import (
    ChannelEmbedder,
    EmbedTiming,
    SiteCropDataset,
    crop_loader,
    embed_objects,
)

CHANNELS = ["DNA", "ER", "RNA", "AGP", "Mito"]
DEEPPROFILER_HOURS_PER_PLATE = 0.58  # pre-trained EfficientNet-B0, one V100


class SyntheticSites:
    """Picklable loader: a fixed random 5 x size x size uint16 image for every site."""

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size, self.seed = size, seed

    def __call__(self, key: tuple[str, str, int]) -> np.ndarray:
        rng = np.random.default_rng(self.seed + key[2])
        return rng.integers(0, 4096, (5, self.size, self.size), dtype=np.uint16)


def make_objects(n_cells: int, cells_per_site: int, size: int) -> pl.DataFrame:
    n_sites = -(-n_cells // cells_per_site)
    side = int(np.ceil(np.sqrt(cells_per_site)))
    step = size / side
    rows = []
    for s in range(n_sites):
        for i in range(min(cells_per_site, n_cells - s * cells_per_site)):
            rows.append(
                ("BENCH", "A01", s, i + 1, (i % side + 0.5) * step, (i // side + 0.5) * step)
            )
    return pl.DataFrame(
        rows,
        schema={
            "Metadata_Plate": pl.String,
            "Metadata_Well": pl.String,
            "Metadata_Site": pl.Int32,
            "Metadata_ObjectNumber": pl.Int64,
            "Location_Center_X": pl.Float64,
            "Location_Center_Y": pl.Float64,
        },
        orient="row",
    )


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(
    device: str, objects: pl.DataFrame, loader: SyntheticSites, batch: int, workers: int, arch: str
) -> dict:
    embedder = ChannelEmbedder(arch, "random", device=device)
    # Warm-up (kernel selection, allocator) on one batch, not timed.
    embedder(torch.rand(min(batch, 4), 5, 128, 128))
    embedder.forward_seconds = 0.0
    timing = EmbedTiming()
    embed_objects(
        objects,
        loader,
        embedder,
        channels=CHANNELS,
        batch_size=batch,
        num_workers=workers,
        progress=False,
        timing=timing,
    )
    return {
        "device": device,
        "arch": arch,
        "batch": batch,
        "workers": workers,
        "cells": timing.cells,
        "wall_s": round(timing.wall_seconds, 2),
        "cells_per_s": round(timing.cells_per_second, 2),
        "forward_s": round(timing.forward_seconds, 2),
        "outside_forward_%": round(100 * timing.outside_forward_share, 1),
    }


def crop_only(objects: pl.DataFrame, loader: SyntheticSites, batch: int, workers: int) -> dict:
    ds = SiteCropDataset(objects, loader, CHANNELS, batch_size=batch)
    start = time.perf_counter()
    n = sum(len(b["rows"]) for b in crop_loader(ds, num_workers=workers))
    wall = time.perf_counter() - start
    return {
        "device": "crop only",
        "cells": n,
        "wall_s": round(wall, 2),
        "cells_per_s": round(n / wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=64)
    parser.add_argument("--cells-per-site", type=int, default=100)
    parser.add_argument("--site-size", type=int, default=1080)
    parser.add_argument("--arch", default="efficientnet_b0")
    parser.add_argument("--cpu-batch", type=int, default=16)
    parser.add_argument("--gpu-batch", type=int, default=256)
    parser.add_argument(
        "--workers", type=int, default=0, help="DataLoader workers (GPU run; CPU run uses 0)"
    )
    parser.add_argument("--gpu-only", action="store_true")
    parser.add_argument("--cells-per-plate", type=int, default=384 * 9 * 100)
    args = parser.parse_args()

    objects = make_objects(args.cells, args.cells_per_site, args.site_size)
    loader = SyntheticSites(args.site_size)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {args.cells} cells, "
        f"{args.cells_per_site} per {args.site_size}x{args.site_size} site",
        file=sys.stderr,
    )
    rows = [crop_only(objects, loader, args.cpu_batch, 0)]
    if not args.gpu_only:
        rows.append(run("cpu", objects, loader, args.cpu_batch, 0, args.arch))
    if torch.cuda.is_available():
        rows.append(run("cuda", objects, loader, args.gpu_batch, args.workers, args.arch))
    table = pl.DataFrame(rows, infer_schema_length=None)
    dp_rate = args.cells_per_plate / (DEEPPROFILER_HOURS_PER_PLATE * 3600)
    table = table.with_columns(
        (args.cells_per_plate / pl.col("cells_per_s") / 3600).round(2).alias("h_per_plate"),
        (pl.col("cells_per_s") / dp_rate).round(3).alias("x_deepprofiler_v100"),
    )
    with pl.Config(tbl_cols=-1, tbl_width_chars=200):
        print(table)
    print(
        f"DeepProfiler (published): {DEEPPROFILER_HOURS_PER_PLATE} h per plate on a V100 = {dp_rate:.0f} cells/s "
        f"for {args.cells_per_plate} cells per plate; peak RSS here {peak_rss_mb():.0f} MB"
    )


if __name__ == "__main__":
    main()
