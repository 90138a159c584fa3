"""``cellframe measure``: the command line of :func:`cellframe.pipeline.measure.measure_images`."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


# ------------------------------------------------------------------ command line
def _split(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def _run(args: argparse.Namespace) -> int:
    from cellframe.errors import InvalidInputError
    from cellframe.io.channel_files import parse_channel_map
    from cellframe.pipeline.measure import (
        MeasureOptions,
        ObjectOptions,
        SiteLayout,
        make_embedder,
        measure_images,
    )
    from cellframe.pipeline.steps import make_engine
    from cellframe.store import Store

    scales = [int(s) for s in _split(args.texture_scales) or []] if args.texture_scales else []
    primary = None
    if args.nuclei_diameter:
        if args.nuclei_method != "classical":
            raise InvalidInputError(
                f"--nuclei-diameter sets the size range of the classical nuclei; --nuclei-method "
                f"{args.nuclei_method} finds nuclei without it: drop one of the two"
            )
        low, high = (float(v) for v in args.nuclei_diameter.split(","))
        primary = {"size_range": (low, high)}
    embed_only = [
        opt
        for opt, value in (("--crop-size", args.crop_size), ("--embed-batch-size",
                           args.embed_batch_size), ("--device", args.device))
        if value is not None
    ]  # fmt: skip
    if embed_only and not args.embed:
        raise InvalidInputError(
            f"{', '.join(embed_only)} set(s) how cells are embedded, but no --embed MODEL is given; "
            "add --embed efficientnet_lite0 or drop the option"
        )
    embedder = make_embedder(args.embed, device=args.device) if args.embed else None
    embedding = {
        k: v
        for k, v in (("crop_size", args.crop_size), ("embed_batch_size", args.embed_batch_size))
        if v is not None
    }
    layout = SiteLayout(
        sites_csv=args.sites,
        pattern=args.pattern,
        channel_names=_split(args.channel_names),
        load_data=args.load_data,
        channel_files=args.channel_files,
        channel_map=parse_channel_map(args.channel_map) if args.channel_map else None,
    )
    with Store(args.store) as store:
        report = measure_images(
            store,
            args.images,
            channels=_split(args.channels) or [],
            engine=make_engine(args.engine, address=args.address),
            table=args.table,
            force=args.force,
            progress=not args.quiet,
            layout=layout,
            objects=ObjectOptions(
                nuclei=args.nuclei,
                cells=args.cells,
                nuclei_method=args.nuclei_method,
                primary=primary,
                labels_dir=args.labels_dir,
            ),
            measurements=MeasureOptions(
                families=_split(args.families),
                texture_scales=scales,
                illumination=not args.no_illumination,
                embed=embedder,
                **embedding,
            ),
        )
    if not args.quiet:
        print(report.summary())
    return 0


def _scales(text: str) -> str:
    parts = [t.strip() for t in text.split(",") if t.strip()]
    if not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of whole numbers >= 1 (e.g. 3,5,10)"
        )
    return text


def _diameters(text: str) -> str:
    parts = [t.strip() for t in text.split(",")]
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        low = high = -1.0
    if len(parts) != 2 or not 0 <= low <= high:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not MIN,MAX nucleus diameters in pixels with 0 <= MIN <= MAX (e.g. 20,80)"
        )
    return text


def _positive(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return int(text)


def _families(text: str) -> str:
    from cellframe.measure.features import FAMILIES

    unknown = [t for t in (_split(text) or []) if t not in FAMILIES]
    if unknown or not _split(text):
        raise argparse.ArgumentTypeError(
            f"unknown measurement family {', '.join(unknown) or repr(text)}; "
            f"allowed values: {', '.join(FAMILIES)}"
        )
    return text


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add ``cellframe measure``."""
    from cellframe.cli import registry_choice

    p = subparsers.add_parser(
        "measure",
        parents=[common],
        help="images -> illumination, nuclei/cells/cytoplasm, CellProfiler measurements",
        description=(
            "Measure Cell Painting sites as CellProfiler does: illumination correction per "
            "plate, nuclei, cells and cytoplasm, and per-object measurements with CellProfiler's "
            "names, written to the per-plate single-cell table (replacing exactly the sites "
            "measured). Sites measured before are skipped unless --force."
        ),
    )
    p.add_argument(
        "images", nargs="*", metavar="IMAGES",
        help="zarr stores, TIFFs or folders (none with --load-data)",
    )  # fmt: skip
    p.add_argument(
        "--channels", required=True, help="channels to measure, e.g. DNA,ER,RNA,AGP,Mito"
    )
    p.add_argument("--nuclei", default="DNA", help="nuclei channel (default: %(default)s)")
    p.add_argument("--cells", default="AGP", help="cell-body channel (default: %(default)s)")
    p.add_argument("--sites", metavar="CSV", help="Plate,Well,Site[,idx|path] per site")
    p.add_argument(
        "--pattern",
        help="file-name regex with groups plate, well, site (and channel: one file per channel)",
    )
    p.add_argument("--channel-names", help="names of every channel of files that carry none")
    p.add_argument(
        "--load-data", metavar="CSV",
        help="CellProfiler LoadData CSV: FileName_<Channel>, PathName_<Channel>, "
             "Metadata_Plate/Well/Site; one file per channel and site",
    )  # fmt: skip
    p.add_argument(
        "--channel-files", action="store_true",
        help="IMAGES hold one file per channel and site, named as --pattern says (default: "
             "Opera Phenix / JUMP names, <plate>/Images/r01c01f01p01-ch1sk1fk1fl1.tiff)",
    )  # fmt: skip
    p.add_argument(
        "--channel-map", metavar="OLD=NEW,...",
        help="rename the channels of --load-data or --channel-files, e.g. "
             "OrigDNA=DNA,OrigER=ER or ch1=DNA,ch2=ER",
    )  # fmt: skip
    p.add_argument(
        "--no-illumination",
        action="store_true",
        help="skip illumination correction (it needs many sites per plate: a plate's "
        "function is the average of its sites given)",
    )
    p.add_argument(
        "--nuclei-method", default="classical",
        type=registry_choice("cellframe.segment.pipeline", "SEGMENTERS", what="nuclei method",
                             extra=("classical",)),
        help="classical (CellProfiler's IdentifyPrimaryObjects, default), unet or otsu",
    )  # fmt: skip
    p.add_argument(
        "--nuclei-diameter", type=_diameters, metavar="MIN,MAX",
        help="typical nucleus diameter range in pixels, classical nuclei (default: "
             "CellProfiler's 10,40; the bundled JUMP sites need 20,80)",
    )  # fmt: skip
    p.add_argument(
        "--families", type=_families, help="measurement families (default: all JUMP ones)"
    )
    p.add_argument("--texture-scales", type=_scales, default="3,5,10",
                   help="texture scales (default: %(default)s)")  # fmt: skip
    p.add_argument(
        "--embed", metavar="MODEL",
        type=registry_choice("cellframe.pipeline.measure", "EMBED_MODELS", what="model for --embed"),
        help="also embed every cell with MODEL (efficientnet_lite0: the shipped ImageNet "
             "weights) into cells_<MODEL>, keyed as the measured cells",
    )  # fmt: skip
    p.add_argument("--crop-size", type=_positive, metavar="PX",
                   help="--embed: crop side in pixels around each cell (default: 128)")  # fmt: skip
    p.add_argument("--embed-batch-size", type=_positive, metavar="N",
                   help="--embed: cells per forward pass (default: 64)")  # fmt: skip
    p.add_argument("--device", help="--embed: cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--table", default="cells", help="single-cell table (default: %(default)s)")
    p.add_argument("--labels-dir", help="folder for the label TIFFs (default: <store>.labels)")
    p.add_argument("--force", action="store_true", help="measure sites measured before again")
    p.add_argument(
        "--engine", default="local",
        type=registry_choice("cellframe.engine.base", "ENGINES", what="engine"),
        help="local (default) or ray: one Ray task per plate",
    )  # fmt: skip
    p.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    p.set_defaults(func=_run)
