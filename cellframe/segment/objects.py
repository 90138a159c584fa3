"""Rows of the store's ``objects`` table from a label image (DOMAIN.md §4, sql/schema.sql)."""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy import ndimage as ndi

from cellframe.columns import OBJECT_NUMBER, PLATE, SITE, WELL
from cellframe.errors import InvalidInputError

__all__ = ["OBJECTS_SCHEMA", "objects_table"]

#: Columns and dtypes of the ``objects`` table, in schema order (sql/schema.sql).
OBJECTS_SCHEMA: dict[str, pl.DataType] = {
    PLATE: pl.String(),
    WELL: pl.String(),
    SITE: pl.Int32(),
    OBJECT_NUMBER: pl.Int32(),
    "Object": pl.String(),
    "Location_Center_X": pl.Float64(),
    "Location_Center_Y": pl.Float64(),
    "AreaShape_Area": pl.Float64(),
    "BoundingBox_MinX": pl.Int32(),
    "BoundingBox_MinY": pl.Int32(),
    "BoundingBox_MaxX": pl.Int32(),
    "BoundingBox_MaxY": pl.Int32(),
}


def objects_table(
    labels: np.ndarray,
    *,
    plate: str,
    well: str,
    site: int,
    object_name: str = "Nuclei",
) -> pl.DataFrame:
    """One row per object of a label image, ready for ``store.write("objects", ...)``.

    Parameters
    ----------
    labels : numpy.ndarray of int, shape (H, W)
        Label image (0 = background). Ids need not be consecutive;
        ``Metadata_ObjectNumber`` is the object's id in the image.
    plate, well : str
        Keys of the site.
    site : int
        Site (field of view) number.
    object_name : str, default "Nuclei"
        Value of the ``Object`` column (the compartment).

    Returns
    -------
    polars.DataFrame
        Columns of :data:`OBJECTS_SCHEMA`. ``Location_Center_X/Y`` is the centroid
        in pixels (x = column, y = row); ``AreaShape_Area`` the pixel count; the
        bounding box is ``[MinX, MaxX) x [MinY, MaxY)``, so
        ``image[MinY:MaxY, MinX:MaxX]`` crops the object (scikit-image's and
        CellProfiler's convention).
    """
    lab = np.asarray(labels)
    if lab.ndim != 2 or not np.issubdtype(lab.dtype, np.integer):
        raise InvalidInputError(
            f"labels must be a 2-D integer image, got {lab.dtype} of shape {lab.shape}"
        )
    if lab.size and lab.min() < 0:
        raise InvalidInputError("labels must be >= 0 (0 = background)")
    n = int(lab.max(initial=0))
    ids: list[int] = []
    cx: list[float] = []
    cy: list[float] = []
    area: list[float] = []
    box: list[tuple[int, int, int, int]] = []
    if n:
        flat = lab.ravel()
        counts = np.bincount(flat, minlength=n + 1)
        rows, cols = np.indices(lab.shape)
        sum_y = np.bincount(flat, weights=rows.ravel(), minlength=n + 1)
        sum_x = np.bincount(flat, weights=cols.ravel(), minlength=n + 1)
        for i, sl in enumerate(ndi.find_objects(lab), start=1):
            if sl is None:
                continue
            ids.append(i)
            area.append(float(counts[i]))
            cx.append(sum_x[i] / counts[i])
            cy.append(sum_y[i] / counts[i])
            box.append((sl[1].start, sl[0].start, sl[1].stop, sl[0].stop))
    b = np.array(box, dtype=np.int32).reshape(-1, 4)
    return pl.DataFrame(
        {
            PLATE: [str(plate)] * len(ids),
            WELL: [str(well)] * len(ids),
            SITE: [int(site)] * len(ids),
            OBJECT_NUMBER: ids,
            "Object": [object_name] * len(ids),
            "Location_Center_X": cx,
            "Location_Center_Y": cy,
            "AreaShape_Area": area,
            "BoundingBox_MinX": b[:, 0],
            "BoundingBox_MinY": b[:, 1],
            "BoundingBox_MaxX": b[:, 2],
            "BoundingBox_MaxY": b[:, 3],
        },
        schema=OBJECTS_SCHEMA,
    )
