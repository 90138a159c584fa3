"""Images for the HTML report: segmentation outlines and single-cell crop montages.

Images are embedded in the report as PNG data URIs (``data:image/png;base64,...``)
so the report stays one file that opens offline.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from cellframe.columns import OBJECT_NUMBER, PLATE, SITE, WELL
from cellframe.errors import InvalidInputError, MissingColumnsError

__all__ = [
    "ReportImage",
    "cell_crop_montage",
    "crop_montage",
    "outline_overlay",
    "png_data_uri",
    "scale_intensity",
]


@dataclass
class ReportImage:
    """An image shown in a report section.

    Attributes
    ----------
    src : str
        A ``data:image/png;base64,...`` URI (see :func:`png_data_uri`).
    caption : str
        What the image shows (shown under it and used as its ``alt`` text).
    width : int or None
        Display width in CSS pixels (default: the image's own width).
    """

    src: str
    caption: str
    width: int | None = None


def scale_intensity(
    image: np.ndarray, *, percentiles: tuple[float, float] = (1.0, 99.8)
) -> np.ndarray:
    """Stretch an image to 8 bits between two percentiles of its pixels.

    Parameters
    ----------
    image : numpy.ndarray, shape (H, W)
        An image of any numeric type.
    percentiles : (float, float), default (1.0, 99.8)
        Pixels at or below the first percentile become 0, at or above the
        second 255.

    Returns
    -------
    numpy.ndarray of uint8, shape (H, W)
        All zeros where the image is flat.

    Raises
    ------
    InvalidInputError
        If the image is not 2-D or holds no finite pixel.
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise InvalidInputError(f"scale_intensity needs a 2-D image, got shape {img.shape}")
    finite = img[np.isfinite(img)]
    if finite.size == 0:
        raise InvalidInputError("scale_intensity: the image holds no finite pixel")
    lo, hi = np.percentile(finite, percentiles)
    if hi <= lo:
        return np.zeros(img.shape, dtype=np.uint8)
    out = np.clip((np.nan_to_num(img, nan=lo) - lo) / (hi - lo), 0.0, 1.0)
    return np.round(out * 255).astype(np.uint8)


def png_data_uri(image: np.ndarray) -> str:
    """Encode an 8-bit grey ``(H, W)`` or RGB ``(H, W, 3)`` image as a PNG data URI.

    Raises
    ------
    InvalidInputError
        If the image is not ``uint8`` or has another shape.
    """
    from PIL import Image

    arr = np.asarray(image)
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise InvalidInputError(
            f"png_data_uri needs a uint8 (H, W) or (H, W, 3) image, got {arr.dtype} {arr.shape}; "
            "scale it first with scale_intensity"
        )
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def outline_overlay(
    image: np.ndarray,
    labels: np.ndarray,
    *,
    color: tuple[int, int, int] = (255, 221, 0),
) -> np.ndarray:
    """Draw the outline of every labelled object over a grey image.

    Parameters
    ----------
    image : numpy.ndarray, shape (H, W)
        Intensity image (scaled with :func:`scale_intensity`).
    labels : numpy.ndarray of int, shape (H, W)
        Label image (0 = background, 1..N = objects).
    color : (int, int, int)
        RGB colour of the outlines.

    Returns
    -------
    numpy.ndarray of uint8, shape (H, W, 3)
        RGB image; outline pixels are the inner
        boundary of each object (scikit-image ``find_boundaries(mode="inner")``).

    Raises
    ------
    InvalidInputError
        If the shapes differ.
    """
    from skimage.segmentation import find_boundaries

    lab = np.asarray(labels)
    if np.shape(image) != lab.shape:
        raise InvalidInputError(
            f"outline_overlay: image shape {np.shape(image)} differs from labels shape {lab.shape}"
        )
    rgb = np.repeat(scale_intensity(image)[..., None], 3, axis=2)
    rgb[find_boundaries(lab, mode="inner")] = color
    return rgb


def _pick_cells(areas: np.ndarray, n: int) -> np.ndarray:
    """Indices of ``n`` objects spread over the range of areas (smallest to largest)."""
    order = np.argsort(areas, kind="stable")
    if len(order) <= n:
        return order
    return order[np.unique(np.round(np.linspace(0, len(order) - 1, n)).astype(int))]


def _label_width(channels: Sequence[str]) -> int:
    return 8 + 6 * max(len(str(c)) for c in channels)


def _draw_labels(montage: np.ndarray, channels: Sequence[str], *, step: int, size: int) -> None:
    """Write each channel's name (black, PIL's built-in font) left of its row, in place."""
    from PIL import Image, ImageDraw

    img = Image.fromarray(montage)
    draw = ImageDraw.Draw(img)
    for ch, name in enumerate(channels):
        draw.text((2, ch * step + size // 2 - 5), str(name), fill=0)
    montage[:] = np.asarray(img)


def crop_montage(
    images: Mapping[tuple[str, str, int], np.ndarray],
    objects: pl.DataFrame,
    *,
    channels: Sequence[str],
    n_cells: int = 8,
    size: int = 48,
    gap: int = 2,
) -> tuple[np.ndarray, pl.DataFrame]:
    """Grid of single-cell crops: one row per channel (named at its left), one column per cell.

    Parameters
    ----------
    images : mapping
        ``(plate, well, site) -> (C, H, W)`` pixels of each site.
    objects : polars.DataFrame
        Rows of the ``objects`` table (plate, well, site, object number,
        ``Location_Center_X/Y``, ``AreaShape_Area``, bounding box).
    channels : sequence of str
        Names of the ``C`` channels, in array order (the column headings).
    n_cells : int, default 8
        Cells shown, spread from the smallest to the largest area.
    size : int, default 48
        Side of each square crop, in pixels, centred on the object's centroid.
        Objects whose crop would leave the image are not shown.
    gap : int, default 2
        White pixels between crops.

    Returns
    -------
    montage : numpy.ndarray of uint8, shape (C * (size + gap) - gap, label_width + n * (size + gap) - gap)
        Grey image of ``C`` rows x ``n`` columns of crops; each
        channel is scaled over its whole site (:func:`scale_intensity`), so
        brightness compares between cells of a site.
    cells : polars.DataFrame
        The cells shown, in column order (plate, well, site, object number, area).

    Raises
    ------
    MissingColumnsError
        If ``objects`` lacks a needed column.
    InvalidInputError
        If no object lies far enough from the image border, or a site's
        channel count differs from ``channels``.
    """
    need = [PLATE, WELL, SITE, "Metadata_ObjectNumber", "Location_Center_X",
            "Location_Center_Y", "AreaShape_Area"]  # fmt: skip
    missing = [c for c in need if c not in objects.columns]
    if missing:
        raise MissingColumnsError("the objects table for the crop montage", missing)
    half = size // 2
    scaled: dict[tuple[str, str, int], np.ndarray] = {}
    rows = []
    for key, pixels in images.items():
        if pixels.ndim != 3 or pixels.shape[0] != len(channels):
            raise InvalidInputError(
                f"crop_montage: site {key} has shape {pixels.shape}, expected "
                f"({len(channels)}, H, W) for channels {list(channels)}"
            )
        scaled[key] = np.stack([scale_intensity(c) for c in pixels])
        h, w = pixels.shape[1:]
        site = objects.filter(
            (pl.col(PLATE) == key[0]) & (pl.col(WELL) == key[1]) & (pl.col(SITE) == key[2])
        ).with_columns(
            pl.col("Location_Center_X").round().cast(pl.Int64).alias("__x"),
            pl.col("Location_Center_Y").round().cast(pl.Int64).alias("__y"),
        )
        inside = site.filter(
            (pl.col("__x") >= half) & (pl.col("__x") + size - half <= w)
            & (pl.col("__y") >= half) & (pl.col("__y") + size - half <= h)
        )  # fmt: skip
        rows.append(inside)
    cells = pl.concat(rows) if rows else pl.DataFrame()
    if cells.height == 0:
        raise InvalidInputError(
            f"crop_montage: no object lies at least {half} pixels inside its image; "
            "pass a smaller size="
        )
    pick = _pick_cells(cells["AreaShape_Area"].to_numpy(), n_cells)
    chosen = cells[pick]
    n, c = chosen.height, len(channels)
    step = size + gap
    label_w = _label_width(channels)
    montage = np.full((c * step - gap, label_w + n * step - gap), 255, dtype=np.uint8)
    for col, row in enumerate(chosen.iter_rows(named=True)):
        px = scaled[(row[PLATE], row[WELL], row[SITE])]
        y0, x0 = row["__y"] - half, row["__x"] - half
        left = label_w + col * step
        for ch in range(c):
            montage[ch * step : ch * step + size, left : left + size] = px[
                ch, y0 : y0 + size, x0 : x0 + size
            ]
    _draw_labels(montage, channels, step=step, size=size)
    return montage, chosen.select(PLATE, WELL, SITE, "Metadata_ObjectNumber", "AreaShape_Area")


#: Outline colours of :func:`cell_crop_montage`: the cell yellow, its nucleus cyan.
CELL_OUTLINES: dict[str, tuple[int, int, int]] = {"Cells": (255, 221, 0), "Nuclei": (0, 200, 255)}


def cell_crop_montage(
    images: Mapping[tuple[str, str, int], np.ndarray],
    labels: Mapping[tuple[str, str, int], Mapping[str, np.ndarray]],
    cells: pl.DataFrame,
    *,
    channels: Sequence[str],
    outlines: Mapping[str, tuple[int, int, int]] | None = None,
    size: int = 128,
    gap: int = 2,
    center: tuple[str, str] = ("Cells_Location_Center_X", "Cells_Location_Center_Y"),
) -> np.ndarray:
    """Crops of given cells with their mask outlines: one column per cell, one row per channel.

    Each crop is the box :func:`cellframe.embed.crops.crop_objects` cuts for
    the embedding model (``size`` pixels, centred on the cell, zero outside
    the image), so the montage shows what the network saw; drawn on it are the
    inner boundaries of that cell's objects (by default the cell in yellow and
    its nucleus in cyan), on every channel.

    Parameters
    ----------
    images : mapping
        ``(plate, well, site) -> (C, H, W)`` pixels of each site.
    labels : mapping
        ``(plate, well, site) -> {compartment: (H, W) label image}``; in each
        compartment the cell's object carries its ``Metadata_ObjectNumber``
        (as :func:`cellframe.pipeline.measure.measure_images` numbers a cell,
        its nucleus and its cytoplasm).
    cells : polars.DataFrame
        The cells to show, in column order: plate, well, site, object number
        and the centre columns.
    channels : sequence of str
        Names of the ``C`` channels, in array order (written left of each row).
    outlines : mapping of str to (int, int, int), optional
        Compartment -> RGB colour of its outline, drawn in this order
        (default :data:`CELL_OUTLINES`).
    size : int, default 128
        Side of each crop in pixels (the embedding's default box).
    gap : int, default 2
        White pixels between crops.
    center : (str, str)
        Columns holding each cell's centre (column, row in pixels).

    Returns
    -------
    numpy.ndarray of uint8, shape (C * (size + gap) - gap, label_width + n * (size + gap) - gap, 3)
        RGB montage; each channel is scaled over its whole site (:func:`scale_intensity`).

    Raises
    ------
    MissingColumnsError
        If ``cells`` lacks a key or centre column.
    InvalidInputError
        If ``cells`` is empty, a cell's site has no pixels or no label image
        of an outlined compartment, a site's channel count differs from
        ``channels``, or a cell's object is absent from a label image.
    """
    from skimage.segmentation import find_boundaries

    from cellframe.embed.crops import crop_objects

    outlines = dict(CELL_OUTLINES if outlines is None else outlines)
    need = [PLATE, WELL, SITE, OBJECT_NUMBER, *center]
    missing = [c for c in need if c not in cells.columns]
    if missing:
        raise MissingColumnsError("the cells for the crop montage", missing)
    if cells.height == 0:
        raise InvalidInputError("cell_crop_montage: no cells to show")
    scaled: dict[tuple[str, str, int], np.ndarray] = {}
    step = size + gap
    label_w = _label_width(channels)
    n_ch = len(channels)
    montage = np.full((n_ch * step - gap, label_w + cells.height * step - gap, 3), 255, np.uint8)
    for col, row in enumerate(cells.iter_rows(named=True)):
        key = (row[PLATE], row[WELL], row[SITE])
        where = f"cell {row[OBJECT_NUMBER]} of site {key}"
        if key not in images:
            raise InvalidInputError(f"cell_crop_montage: no pixels for the {where}")
        if key not in scaled:
            pixels = np.asarray(images[key])
            if pixels.ndim != 3 or pixels.shape[0] != n_ch:
                raise InvalidInputError(
                    f"cell_crop_montage: site {key} has shape {pixels.shape}, expected "
                    f"({n_ch}, H, W) for channels {list(channels)}"
                )
            scaled[key] = np.stack([scale_intensity(c) for c in pixels])
        x, y = np.array([row[center[0]]]), np.array([row[center[1]]])
        crop = crop_objects(scaled[key], x, y, box_size=size, dtype=np.uint8, where=where)[0]
        rgb = np.repeat(crop[..., None], 3, axis=3)  # (C, size, size, 3)
        for compartment, color in outlines.items():
            site_labels = labels.get(key, {})
            if compartment not in site_labels:
                raise InvalidInputError(
                    f"cell_crop_montage: no {compartment} label image for the {where}"
                )
            lab = np.asarray(site_labels[compartment])
            if not (lab == row[OBJECT_NUMBER]).any():
                raise InvalidInputError(
                    f"cell_crop_montage: the {compartment} label image of site {key} holds no "
                    f"object {row[OBJECT_NUMBER]}; pass the labels the cells were measured on"
                )
            box = crop_objects(lab[None], x, y, box_size=size, dtype=lab.dtype, where=where)
            edge = find_boundaries(box[0, 0] == row[OBJECT_NUMBER], mode="inner")
            rgb[:, edge] = color
        left = label_w + col * step
        for ch in range(n_ch):
            montage[ch * step : ch * step + size, left : left + size] = rgb[ch]
    _draw_labels(montage, channels, step=step, size=size)
    return montage
