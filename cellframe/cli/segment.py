"""``cellframe segment``: run, train, assist and advise.

Only argparse is imported here; the work (and torch) is imported when a
command runs.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def _set_threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


def _run(args: argparse.Namespace) -> int:
    from cellframe.segment.pipeline import segment_sites, sites_from_paths, write_objects
    from cellframe.store import Store

    _set_threads(args.threads)
    sites = sites_from_paths(
        args.paths,
        sites_csv=args.sites,
        pattern=args.pattern,
        plate=args.plate,
        well=args.well,
        site=args.site,
    )
    options: dict[str, Any] = {}
    if args.method == "unet":
        options = {"checkpoint": args.checkpoint, "tta": args.tta, "device": args.device}
    names = args.channel_names.split(",") if args.channel_names else None
    objects = segment_sites(
        sites,
        channel=args.channel,
        channel_names=names,
        method=args.method,
        labels_dir=args.labels_dir,
        object_name=args.object,
        progress=not args.quiet,
        **options,
    )
    params = {
        "method": args.method,
        "channel": args.channel,
        "tta": args.tta,
        "checkpoint": args.checkpoint
        or ("shipped dsb2018-nuclei" if args.method == "unet" else None),
        "object": args.object,
    }
    with Store(args.store) as store:
        n = write_objects(
            store,
            objects,
            replace=args.replace,
            parameters=params,
            source=",".join(str(p) for p in args.paths),
        )
    if not args.quiet:
        print(
            f"{n} {args.object} object(s) from {len(sites)} site(s) written to {args.store}:objects"
            + (f"; label images in {args.labels_dir}" if args.labels_dir else "")
        )
    return 0


def _train(args: argparse.Namespace) -> int:
    from cellframe.io.images import read_labels, read_site
    from cellframe.segment.train import UNetTrainConfig, train_unet
    from cellframe.segment.unet import create_unet, save_unet

    _set_threads(args.threads)
    image, _ = read_site(args.image, channels=args.channel)
    labels = read_labels(args.labels)
    model = create_unet(
        in_channels=image.shape[0],
        out_channels=args.outputs,
        depth=args.depth,
        width=args.width,
        device=args.device,
    )
    hist = train_unet(
        model,
        [image],
        [labels],
        checkpoint=args.out,
        progress=not args.quiet,
        config=UNetTrainConfig(
            epochs=args.epochs,
            steps_per_epoch=args.steps,
            batch_size=args.batch_size,
            patch_size=args.patch_size,
            seed=args.seed,
        ),
    )
    save_unet(
        model,
        args.out,
        image=str(args.image),
        labels=str(args.labels),
        epochs=args.epochs,
        steps_per_epoch=args.steps,
        final_loss=hist.loss[-1],
    )
    if not args.quiet:
        print(f"trained {args.epochs} epoch(s), final loss {hist.loss[-1]:.4f}; saved {args.out}")
    return 0


def _assist(args: argparse.Namespace) -> int:
    from cellframe.io.images import read_site, write_labels
    from cellframe.segment.contour import rois_to_labels
    from cellframe.segment.predict import unet_segment
    from cellframe.segment.unet import create_unet, load_unet

    _set_threads(args.threads)
    image, _ = read_site(args.image, channels=args.channel)
    model = load_unet(args.checkpoint) if args.checkpoint else create_unet(pretrained=True)
    labels = rois_to_labels(
        image,
        args.rois,
        segmenter=lambda crop: unet_segment(model, crop, min_size=1, normalize=False),
    )
    write_labels(args.out, labels)
    if not args.quiet:
        print(f"{int(labels.max())} object(s) refined from {args.rois}; label image {args.out}")
    return 0


def _advise(args: argparse.Namespace) -> int:
    from cellframe.errors import InvalidInputError
    from cellframe.segment.advise import advise

    try:
        table = advise(
            modality=args.modality,
            dim=args.dim,
            challenges=args.challenge or [],
            need_code=args.need_code,
            need_tutorial=args.need_tutorial,
        )
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from exc
    out = sys.stdout
    if table.height == 0:
        print("no method in the table matches; relax the filters", file=out)
        return 0
    for row in table.iter_rows(named=True):
        flags = ", ".join(
            f
            for f, on in (
                ("code", row["code"]),
                ("tutorial", row["tutorial"]),
                ("cloud", row["cloud"]),
            )
            if on
        )
        where = f"  [cellframe: {row['cellframe']}]" if row["implemented"] else ""
        print(
            f"{row['method']} ({row['approach']}, {row['output']}; {'/'.join(row['dims'])}; "
            f"handles: {', '.join(row['challenges']) or '-'}; {flags or 'no code'}){where}",
            file=out,
        )
    return 0


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add ``cellframe segment {run,train,assist,advise}``."""
    parser = subparsers.add_parser(
        "segment",
        help="segment nuclei/cells: U-Net, Otsu, TTA, contour assist, method advice",
        description="Segment images into objects (label images + rows of the store's objects table).",
    )
    parser.set_defaults(func=lambda _a: parser.print_help() or 1)
    sub = parser.add_subparsers(dest="segment_command", metavar="SUBCOMMAND")

    run = sub.add_parser("run", parents=[common], help="images -> label images + objects rows")
    run.add_argument("paths", nargs="+", metavar="IMAGE", help="TIFF files or zarr stores")
    run.add_argument("--channel", default="DNA", help="channel to segment, by name (default: DNA)")
    run.add_argument(
        "--channel-names", help="comma-separated names of all channels, for files without them"
    )
    run.add_argument(
        "--sites", metavar="CSV", help="Plate, Well, Site and idx (or path) of each site"
    )
    run.add_argument("--pattern", help="regex with groups plate, well, site to parse file names")
    run.add_argument("--plate")
    run.add_argument("--well")
    run.add_argument("--site", type=int)
    run.add_argument("--method", choices=["unet", "otsu"], default="unet")
    run.add_argument(
        "--checkpoint", help="U-Net checkpoint (default: the shipped DSB 2018 nuclei model)"
    )
    run.add_argument(
        "--tta",
        choices=["none", "default", "dihedral"],
        default="none",
        help="test-time augmentation for the U-Net (default: none)",
    )
    run.add_argument("--labels-dir", help="write label TIFFs here")
    run.add_argument("--object", default="Nuclei", help="name of the objects (default: Nuclei)")
    run.add_argument("--replace", action="store_true", help="redo sites already in the store")
    run.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    run.add_argument("--threads", type=int, help="torch CPU threads")
    run.set_defaults(func=_run)

    train = sub.add_parser(
        "train", parents=[common], help="train a U-Net on an image + label image"
    )
    train.add_argument("image")
    train.add_argument("labels", help="instance label image (TIFF)")
    train.add_argument("--out", required=True, help="checkpoint file to write")
    train.add_argument("--channel", help="channel name(s) of the image to use")
    train.add_argument("--outputs", type=int, choices=[1, 3], default=1)
    train.add_argument("--depth", type=int, default=4)
    train.add_argument("--width", type=int, default=16)
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--steps", type=int, default=20, help="steps per epoch")
    train.add_argument("--batch-size", type=int, default=8)
    train.add_argument("--patch-size", type=int, default=128)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device")
    train.add_argument("--threads", type=int)
    train.set_defaults(func=_train)

    assist = sub.add_parser(
        "assist", parents=[common], help="rough ROIs (ImageJ zip or CSV) -> refined label image"
    )
    assist.add_argument("image")
    assist.add_argument("rois", help="ImageJ .roi/.zip or CSV (roi,x,y[,kind])")
    assist.add_argument("--out", required=True, help="label TIFF to write")
    assist.add_argument("--channel", help="channel name to use")
    assist.add_argument("--checkpoint")
    assist.add_argument("--threads", type=int)
    assist.set_defaults(func=_assist)

    adv = sub.add_parser("advise", parents=[common], help="which segmentation methods suit my data")
    adv.add_argument("--modality", help="e.g. fluorescence, brightfield, he, phase contrast")
    adv.add_argument("--dim", choices=["2d", "3d"])
    adv.add_argument(
        "--challenge", action="append", help="e.g. touching, overlapping, irregular (repeatable)"
    )
    adv.add_argument("--need-code", action="store_true")
    adv.add_argument("--need-tutorial", action="store_true")
    adv.set_defaults(func=_advise)
