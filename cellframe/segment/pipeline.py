"""Segment sites read from disk: label images to files, object rows to the store.

This is what ``cellframe segment run`` does; it composes
:func:`cellframe.io.images.read_site`, a segmenter (U-Net or Otsu) and
:func:`cellframe.segment.objects.objects_table`.
"""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from cellframe._progress import progress as _progress
from cellframe.columns import OBJECT_NUMBER, PLATE, SITE, WELL
from cellframe.errors import (
    EmptyInputError,
    InvalidChoiceError,
    InvalidInputError,
    MissingColumnsError,
)
from cellframe.io.images import (
    ImageWarning,
    check_pixels,
    count_sites,
    parse_site_keys,
    read_site,
    write_labels,
)
from cellframe.segment._checks import MIN_SEGMENT_SIDE
from cellframe.segment.objects import OBJECTS_SCHEMA, objects_table

__all__ = [
    "SEGMENTERS",
    "SiteSpec",
    "make_segmenter",
    "segment_sites",
    "sites_from_paths",
    "write_objects",
]


@dataclass(frozen=True)
class SiteSpec:
    """Where one site's pixels are and which plate/well/site they belong to."""

    path: Path
    index: int
    plate: str
    well: str
    site: int


def _pick(row: dict[str, str], *names: str) -> str | None:
    for n in names:
        for key in (n, f"Metadata_{n}", n.lower()):
            if key in row and row[key] != "":
                return row[key]
    return None


def sites_from_paths(
    paths: Sequence[str | os.PathLike[str]],
    *,
    sites_csv: str | os.PathLike[str] | None = None,
    pattern: str | None = None,
    plate: str | None = None,
    well: str | None = None,
    site: int | None = None,
) -> list[SiteSpec]:
    """Work out the keys of every site in the given files.

    In order of precedence: a ``sites_csv`` with columns ``Plate``, ``Well``,
    ``Site`` (``Metadata_`` prefix optional) and ``idx`` (index in a multi-site
    file) and/or ``path``; explicit ``plate``/``well``/``site`` for a single
    site; else the file name parsed with ``pattern`` (default
    ``<plate>_<well>_s<site>``, e.g. ``BR00123947_G01_s1.tif``).

    Raises
    ------
    MissingColumnsError
        If ``sites_csv`` lacks Plate, Well or Site.
    InvalidInputError
        If the keys of a site cannot be found.
    """
    files = [Path(p) for p in paths]
    for f in files:
        if not f.exists():
            raise FileNotFoundError(f"no image file or zarr store at {f}")
    specs: list[SiteSpec] = []
    if sites_csv is not None:
        with open(sites_csv, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        if not rows:
            raise EmptyInputError(f"sites file {sites_csv} has no rows")
        missing = [c for c in ("Plate", "Well", "Site") if _pick(rows[0], c) is None]
        if missing:
            raise MissingColumnsError(
                f"sites file {sites_csv}",
                missing,
                "give Plate, Well, Site and idx (or path) per site",
            )
        for row in rows:
            idx = int(_pick(row, "idx", "index") or 0)
            rpath = _pick(row, "path", "file")
            targets = [Path(rpath)] if rpath else files
            if rpath and not Path(rpath).is_absolute():
                targets = [Path(sites_csv).parent / rpath]
            for t in targets:
                specs.append(
                    SiteSpec(
                        t,
                        idx,
                        str(_pick(row, "Plate")),
                        str(_pick(row, "Well")),
                        int(str(_pick(row, "Site"))),
                    )
                )
        return specs
    for f in files:
        n = count_sites(f)
        if plate is not None and well is not None:
            if len(files) * n != 1 and site is not None:
                raise InvalidInputError(
                    "--plate/--well/--site name one site, but the input holds "
                    f"{len(files) * n}; use --sites CSV"
                )
            specs.extend(SiteSpec(f, i, plate, well, i if site is None else site) for i in range(n))
            continue
        keys = parse_site_keys(f.name, pattern)
        if keys is None or n != 1:
            raise InvalidInputError(
                f"cannot tell the plate, well and site of {f}: name the file like "
                "<plate>_<well>_s<site>.tif, pass a --pattern with groups plate/well/site, "
                "--plate/--well/--site, or a --sites CSV (Plate, Well, Site, idx)"
            )
        specs.append(SiteSpec(f, 0, keys["plate"], keys["well"], keys["site"]))
    return specs


def _unet_segmenter(
    checkpoint: str | os.PathLike[str] | None = None,
    *,
    tta: str | Sequence[str] = "none",
    device: str | None = None,
    **kwargs: Any,
) -> Callable[[np.ndarray], np.ndarray]:
    from cellframe.segment.predict import unet_segment
    from cellframe.segment.unet import create_unet, load_unet

    model = (
        load_unet(checkpoint, device=device)
        if checkpoint
        else create_unet(pretrained=True, device=device)
    )
    return lambda image: unet_segment(model, image, tta=tta, **kwargs)


def _otsu_segmenter(**kwargs: Any) -> Callable[[np.ndarray], np.ndarray]:
    from cellframe.segment.otsu import otsu_segment

    kwargs = {k: v for k, v in kwargs.items() if k not in ("checkpoint", "tta", "device")}
    return lambda image: otsu_segment(image, **kwargs)


#: ``method=`` names of :func:`segment_sites`: factories returning ``image -> labels``.
SEGMENTERS: dict[str, Callable[..., Callable[[np.ndarray], np.ndarray]]] = {
    "otsu": _otsu_segmenter,
    "unet": _unet_segmenter,
}


def make_segmenter(
    method: str | Callable[[np.ndarray], np.ndarray], **options: Any
) -> Callable[[np.ndarray], np.ndarray]:
    """Resolve ``method`` (a name in :data:`SEGMENTERS` or a callable) to ``image -> labels``."""
    if callable(method):
        return method
    if method not in SEGMENTERS:
        raise InvalidChoiceError(
            f"unknown segmentation method {method!r}; valid: {sorted(SEGMENTERS)}"
        )
    return SEGMENTERS[method](**options)


def segment_sites(
    sites: Sequence[SiteSpec],
    *,
    channel: str = "DNA",
    channel_names: Sequence[str] | None = None,
    method: str | Callable[[np.ndarray], np.ndarray] = "unet",
    labels_dir: str | os.PathLike[str] | None = None,
    object_name: str = "Nuclei",
    progress: bool = True,
    **options: Any,
) -> pl.DataFrame:
    """Segment one channel of every site; return the ``objects`` rows.

    Parameters
    ----------
    sites : sequence of SiteSpec
        From :func:`sites_from_paths`.
    channel : str, default "DNA"
        Channel to segment, by name.
    channel_names : sequence of str, optional
        Names of all channels, for files that do not store them.
    method : {"unet", "otsu"} or callable, default "unet"
        ``"unet"`` uses ``options["checkpoint"]`` or the shipped checkpoint and
        ``options["tta"]``; a callable maps a ``(1, H, W)`` image to labels.
    labels_dir : path, optional
        Folder for label TIFFs ``<plate>_<well>_s<site>_<object>.tif``.
    object_name : str, default "Nuclei"
        Value of the ``Object`` column.
    progress : bool
        Progress bar over sites.

    Returns
    -------
    polars.DataFrame
        Rows for the store's ``objects`` table. Sites whose channel is blank
        (all zeros, or one value everywhere) are skipped with a warning giving
        their count.

    Raises
    ------
    InvalidImageError
        If a site's channel has NaN or infinite pixels or is smaller than
        2 x 2 pixels (the message names the file and site).
    """
    segment = make_segmenter(method, **options)
    frames = [pl.DataFrame(schema=OBJECTS_SCHEMA)]
    blank: list[str] = []
    for spec in _progress(sites, desc="segment", unit="site", enabled=progress):
        pixels, _ = read_site(
            spec.path, site=spec.index, channels=channel, channel_names=channel_names
        )
        where = f"{spec.path} (site {spec.plate}/{spec.well}/s{spec.site}, channel {channel})"
        # NaN pixels or a thumbnail-sized image: a named error, not "0 objects".
        check_pixels(
            pixels,
            where=where,
            channels=[channel],
            min_side=MIN_SEGMENT_SIDE,
            purpose="what can hold a nucleus",
        )
        try:
            labels = segment(pixels)
        except EmptyInputError:
            blank.append(f"{spec.plate}/{spec.well}/s{spec.site}")
            continue
        if labels_dir is not None:
            write_labels(
                Path(labels_dir) / f"{spec.plate}_{spec.well}_s{spec.site}_{object_name}.tif",
                labels,
            )
        frames.append(
            objects_table(
                labels, plate=spec.plate, well=spec.well, site=spec.site, object_name=object_name
            )
        )
    if blank:
        warnings.warn(
            f"{len(blank)} site(s) skipped, their {channel} channel is blank: {blank}",
            ImageWarning,
            stacklevel=2,
        )
    return pl.concat(frames)


def write_objects(
    store: Any,
    objects: pl.DataFrame,
    *,
    replace: bool = False,
    parameters: dict[str, Any] | None = None,
    source: str | None = None,
) -> int:
    """Append object rows to the store's ``objects`` table.

    Parameters
    ----------
    store : cellframe.store.Store
    objects : polars.DataFrame
        From :func:`segment_sites` or :func:`~cellframe.segment.objects.objects_table`.
    replace : bool, default False
        Delete stored rows of the same (plate, well, site, Object) first. Without
        it, segmenting a site twice raises instead of duplicating its objects.

    Returns
    -------
    int
        Rows written.

    Raises
    ------
    InvalidInputError
        If some sites already have objects of that name and ``replace`` is False.
    """
    keys = objects.select(PLATE, WELL, SITE, "Object").unique()
    if keys.height and store.has_table("objects"):
        stored = store.sql(f"SELECT DISTINCT {PLATE}, {WELL}, {SITE}, Object FROM objects")
        clash = keys.join(stored.cast(keys.schema), on=[PLATE, WELL, SITE, "Object"], how="inner")
        if clash.height and not replace:
            raise InvalidInputError(
                f"the store {store.path} already holds objects for {clash.height} of these "
                f"site(s) (e.g. {clash.row(0)}); pass replace=True (CLI: --replace) to redo them"
            )
    # Old objects of these sites are deleted in the same transaction as the insert.
    return store.write(
        "objects",
        objects.sort(PLATE, WELL, SITE, OBJECT_NUMBER),
        replace_keys=[PLATE, WELL, SITE, "Object"] if replace else None,
        step="segment",
        parameters=parameters or {},
        source=source,
    )
