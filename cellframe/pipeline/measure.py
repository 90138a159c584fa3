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
* the label TIFFs to a folder, registered in ``object_labels`` (one row per
  site and compartment, with the path and the object count). That table is
  written last and is what a rerun reads to skip sites already measured.

Every site is read and checked (channels present, one shape, a nuclei and a
cell-body channel that are not blank) before anything is written, so bad input
leaves the store as it was. The work is imported when the function runs.
"""

from __future__ import annotations

import numbers
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["MeasureOptions", "MeasureReport", "ObjectOptions", "SiteLayout", "measure_images"]

SITE_KEYS = ("Metadata_Plate", "Metadata_Well", "Metadata_Site")
LABELS_TABLE = "object_labels"
QUALITY_TABLE = "image_quality"
ILLUMINATION_TABLE = "illumination"


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
        File-name pattern with groups plate/well/site.
    channel_names : sequence of str, optional
        Names of every channel in the files, for files that do not carry them.

    Raises
    ------
    InvalidInputError
        For ``channel_names`` given as one string.
    """

    sites_csv: str | os.PathLike[str] | None = None
    pattern: str | None = None
    channel_names: Sequence[str] | None = None

    def __post_init__(self) -> None:
        from cellframe.errors import InvalidInputError

        if isinstance(self.channel_names, str):
            raise InvalidInputError(
                f"SiteLayout: channel_names must be a sequence of names, got the string "
                f"{self.channel_names!r}; write channel_names=[{self.channel_names!r}, ...]"
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

    Raises
    ------
    InvalidInputError
        For a texture scale that is not a positive integer, or a saturation
        threshold outside [0, 100] percent.
    """

    families: Sequence[str] | None = None
    texture_scales: Sequence[int] = (3, 5, 10)
    illumination: bool = True
    illumination_params: dict[str, Any] | None = None
    min_slope: float = -3.0
    max_saturated_percent: float = 1.0
    embed: Any | None = None

    def __post_init__(self) -> None:
        from cellframe.errors import InvalidInputError

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
    """

    table: str
    sites_measured: int = 0
    sites_skipped: int = 0
    cells: int = 0
    flagged: int = 0
    seconds: float = 0.0
    labels: dict[tuple[str, str, int], dict[str, Path]] = field(default_factory=dict)

    @property
    def sites_per_second(self) -> float:
        """Sites measured per second."""
        return self.sites_measured / self.seconds if self.seconds else 0.0

    @property
    def cells_per_second(self) -> float:
        """Cells measured per second."""
        return self.cells / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        """One line for the command line."""
        return (
            f"measured {self.sites_measured} site(s), {self.cells} cell(s) into {self.table!r} "
            f"({self.sites_per_second:.2f} sites/s, {self.cells_per_second:.1f} cells/s); "
            f"skipped {self.sites_skipped} site(s) measured before; "
            f"{self.flagged} flagged blurry or saturated (image_quality)"
        )


def _site_paths(images: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files to read: zarr stores and TIFFs as given, a folder expanded to its TIFFs."""
    from cellframe.errors import EmptyInputError
    from cellframe.io.images import _is_zarr

    out: list[Path] = []
    for item in images:
        path = Path(item)
        if not path.exists():
            raise FileNotFoundError(f"no image file, folder or zarr store at {path}")
        if path.is_dir() and not _is_zarr(path):
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in (".tif", ".tiff"))
            if not found:
                raise EmptyInputError(f"folder {path} holds no .tif/.tiff files to measure")
            out.extend(found)
        else:
            out.append(path)
    return out


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


def _read(spec: Any, channels: list[str], channel_names: Sequence[str] | None) -> dict[str, Any]:
    from cellframe.io.images import read_site

    pixels, names = read_site(
        spec.path, site=spec.index, channels=channels, channel_names=channel_names
    )
    return dict(zip(names, pixels, strict=True))


def _check_site(
    spec: Any, images: dict[str, Any], nuclei: str, cells: str, shape: tuple[int, int] | None
) -> tuple[int, int]:
    """Refuse a site no measurement can use, before anything is written."""
    import numpy as np

    from cellframe.errors import BlankImageError, InvalidImageError
    from cellframe.io.images import check_pixels

    where = f"{spec.path} (plate {spec.plate}, well {spec.well}, site {spec.site})"
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
    warned: list[tuple[type[Warning], str]]
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
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            shape = None
            for spec in task.sites:
                images = _read(spec, task.channels, task.channel_names)
                site_shape = _check_site(spec, images, task.nuclei, task.cells, shape)
                shape = site_shape if params is not None else None  # one size per plate
                if task.fit:
                    for ch, px in images.items():
                        s = makers[ch].statistics(to_unit_range(px))
                        stats[ch] = s if ch not in stats else stats[ch].merge(s)
            if task.fit:
                functions = {ch: makers[ch].from_statistics(stats[ch]) for ch in task.channels}
        except Exception as exc:  # raised by the caller, after the warnings before it
            error = exc
    # Developer-facing categories (hidden by default) stay here; the rest go to the caller.
    hidden = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)
    warned = [(w.category, str(w.message)) for w in caught if not issubclass(w.category, hidden)]
    return _PlateFit(task.plate, functions, warned, error)


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
        Zarr stores, multi-channel TIFFs, or folders of TIFFs.
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

    Raises
    ------
    ChannelNotFoundError
        If a channel is missing from a site's file.
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
    sites_csv, pattern, channel_names = layout.sites_csv, layout.pattern, layout.channel_names
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
    from cellframe.errors import InvalidInputError
    from cellframe.measure.features import DEFAULT_FAMILIES
    from cellframe.measure.quality import BLURRY, SATURATED, quality_flags
    from cellframe.segment.classical import save_labels
    from cellframe.segment.pipeline import sites_from_paths

    engine = resolve_engine(engine)
    channels = list(dict.fromkeys(channels))
    for role, ch in (("nuclei", nuclei), ("cells", cells)):
        if ch not in channels:
            raise InvalidInputError(
                f"the {role} channel {ch!r} is not among the channels to measure "
                f"({', '.join(channels)}); add it to --channels"
            )
    if store.path == ":memory:" and labels_dir is None:
        raise InvalidInputError(
            "an in-memory store has no folder for the label images; pass labels_dir"
        )
    _check_target(store, table)
    paths = _site_paths(images)
    if sites_csv is None and len(images) == 1 and pattern is None:
        # a sites.csv beside a zarr store or file, or inside a folder of TIFFs
        given = Path(images[0])
        folder_of_tiffs = given.is_dir() and paths and paths[0].parent == given
        beside = (given if folder_of_tiffs else given.parent) / "sites.csv"
        sites_csv = beside if beside.is_file() else None
    specs = sites_from_paths(paths, sites_csv=sites_csv, pattern=pattern)
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

    # Pass 1: read and check every site (and fit illumination) before writing anything:
    # one engine task per plate (on Ray, where the plate's images are read), the plate's
    # functions fitted from its sites' statistics merged in site order.
    plates: dict[str, list[Any]] = {}
    for spec in todo:
        plates.setdefault(spec.plate, []).append(spec)
    illum_params = (illumination_params or {}) if illumination else None
    functions: dict[str, dict[str, Any]] = {}
    tasks = []
    for plate, plate_specs in plates.items():
        functions[plate] = _stored_illumination(store, plate, channels, illum_params, force)
        fit = illum_params is not None and len(functions[plate]) < len(channels)
        every = [s for s in specs if s.plate == plate]
        task = _PlateIllumination(
            plate, every if fit else plate_specs, fit, channels, channel_names, nuclei, cells,
            illum_params,
        )  # fmt: skip
        tasks.append(task)
    fitted: dict[str, Any] = {}

    def collect(results: Iterator[_PlateFit]) -> None:
        # Plate by plate, in order: a plate's error stops the run (the local engine
        # then reads no further plate), after the warnings raised before it.
        for result in results:
            for category, message in result.warned:
                warnings.warn(message, category, stacklevel=4)
            if result.error is not None:
                raise result.error
            if result.functions is not None:
                functions[result.plate] = result.functions
                fitted[result.plate] = pl.concat([f.to_frame() for f in result.functions.values()])

    engine.gather_tasks(
        _plate_illumination, tasks, collect, desc="check sites, fit illumination", progress=progress
    )

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
    start = time.perf_counter()
    try:
        for spec, raw, objects, frame, quality in results:
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
            report.labels[(spec.plate, spec.well, spec.site)] = written
            report.seconds = time.perf_counter() - start
            if bar is not None:
                bar.set_postfix_str(f"{report.cells_per_second:.1f} cells/s", refresh=False)
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    report.seconds = time.perf_counter() - start
    return report


def _measure_sites(
    specs: Sequence[Any],
    functions: dict[str, dict[str, Any]],
    work: dict[str, Any],
    segmenter: Any = None,
) -> Iterator[tuple[Any, dict[str, Any], Any, Any, Any]]:
    """Measure sites one at a time: ``(spec, raw images, objects, cells frame, quality row)``."""
    from cellframe.measure.features import measure_site, to_unit_range
    from cellframe.measure.quality import image_quality
    from cellframe.segment.classical import segment_site

    if segmenter is None and work["nuclei_method"] != "classical":
        from cellframe.segment.pipeline import make_segmenter

        segmenter = make_segmenter(work["nuclei_method"], **work["nuclei_options"])
    for spec in specs:
        where = f"plate {spec.plate} well {spec.well} site {spec.site}"
        raw = _read(spec, work["channels"], work["channel_names"])
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
        yield spec, raw, objects, frame, quality


def _ray_sites(
    plates: dict[str, list[Any]],
    functions: dict[str, dict[str, Any]],
    work: dict[str, Any],
    address: str | None,
) -> Iterator[tuple[Any, dict[str, Any], Any, Any, Any]]:
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
        [{**site_rows, "Channel": ch, "Path": str(Path(spec.path).resolve()),
          "Frame": spec.index, "Height": height, "Width": width} for ch in raw],
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
        embedded = embed_objects(
            rows.filter(pl.col("Object") == "Cells"),
            {(spec.plate, spec.well, spec.site): stack},
            embedder,
            channels=params["channels"],
            progress=False,
        )
        write_embeddings(
            store, embedded, embedder, parameters={"objects": "cellframe measure cells"},
            source=source,
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
    # Written last: a site is "measured" (skipped on a rerun) once this row is stored.
    store.write(LABELS_TABLE, labels, replace_keys=keys, step="measure_labels", source=source)


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
