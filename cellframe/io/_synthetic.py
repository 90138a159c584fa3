"""Synthetic CellProfiler ExportToDatabase SQLite files (benchmarks and tests).

The layout is CellProfiler's: ``Per_Image`` (``ImageNumber``,
``Image_Metadata_Plate/Well/Site``, file names) and ``Per_Cells``,
``Per_Cytoplasm``, ``Per_Nuclei`` keyed by ``ImageNumber`` and
``<Object>_Number_Object_Number``, with ``Cytoplasm_Parent_Cells`` and
``Cytoplasm_Parent_Nuclei`` linking them. Features are drawn from a fixed
seed, so a file is reproducible.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

_COMPARTMENTS = ("Cells", "Cytoplasm", "Nuclei")
_WELLS = [f"{r}{c:02d}" for r in "ABCDEFGHIJKLMNOP" for c in range(1, 25)]


def _chunks(
    n_images: int, cells_per_image: int, images_per_chunk: int
) -> Iterator[tuple[int, int]]:
    for start in range(0, n_images, images_per_chunk):
        yield start, min(n_images, start + images_per_chunk)


def write_synthetic_sqlite(
    path: str | os.PathLike[str],
    *,
    n_cells: int = 10_000,
    n_features: int = 300,
    cells_per_image: int = 100,
    sites_per_well: int = 4,
    plate: str = "SYN0001",
    seed: int = 0,
    chunk_cells: int = 50_000,
) -> Path:
    """Write a CellProfiler-like SQLite file with ``n_cells`` cells.

    Parameters
    ----------
    path : str or os.PathLike
        File to create (replaced if it exists).
    n_cells : int
        Cells in total (rounded up to whole images).
    n_features : int
        Features in total, split over Cells, Cytoplasm and Nuclei.
    cells_per_image : int
        Cells per site.
    sites_per_well : int
        Sites per well (wells run A01, A02, ... over a 384-well plate, then repeat).
    plate : str
        ``Image_Metadata_Plate`` of every image.
    seed : int
        Seed of the random features.
    chunk_cells : int
        Cells generated and written at a time (bounds memory).

    Returns
    -------
    pathlib.Path
    """
    import adbc_driver_sqlite.dbapi as adbc

    path = Path(path)
    if path.exists():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    n_images = -(-n_cells // cells_per_image)
    per = [n_features // 3 + (1 if i < n_features % 3 else 0) for i in range(3)]
    rng = np.random.default_rng(seed)
    images = np.arange(1, n_images + 1)
    wells = [_WELLS[((i - 1) // sites_per_well) % len(_WELLS)] for i in images]
    image_table = pa.table(
        {
            "ImageNumber": pa.array(images, pa.int64()),
            "Image_Metadata_Plate": pa.array([plate] * n_images),
            "Image_Metadata_Well": pa.array(wells),
            "Image_Metadata_Site": pa.array(((images - 1) % sites_per_well) + 1, pa.int64()),
            "Image_FileName_DNA": pa.array(
                [
                    f"{w}_s{(i - 1) % sites_per_well + 1}_DNA.tif"
                    for i, w in zip(images, wells, strict=True)
                ]
            ),
            "Image_Count_Cells": pa.array(np.full(n_images, cells_per_image), pa.int64()),
        }
    )
    con = adbc.connect(str(path))
    try:
        cur = con.cursor()
        cur.adbc_ingest("Per_Image", image_table, mode="create")
        images_per_chunk = max(1, chunk_cells // cells_per_image)
        first = True
        for lo, hi in _chunks(n_images, cells_per_image, images_per_chunk):
            n = (hi - lo) * cells_per_image
            image_number = np.repeat(np.arange(lo + 1, hi + 1), cells_per_image)
            object_number = np.tile(np.arange(1, cells_per_image + 1), hi - lo)
            for comp, k in zip(_COMPARTMENTS, per, strict=True):
                data: dict[str, pa.Array] = {
                    "ImageNumber": pa.array(image_number, pa.int64()),
                    f"{comp}_Number_Object_Number": pa.array(object_number, pa.int64()),
                }
                if comp == "Cytoplasm":
                    data["Cytoplasm_Parent_Cells"] = pa.array(object_number, pa.int64())
                    data["Cytoplasm_Parent_Nuclei"] = pa.array(object_number, pa.int64())
                if comp == "Cells":
                    data["Cells_Parent_Nuclei"] = pa.array(object_number, pa.int64())
                values = rng.standard_normal((n, k))
                for j in range(k):
                    data[f"{comp}_Feature_{j:04d}"] = pa.array(values[:, j])
                cur.adbc_ingest(f"Per_{comp}", pa.table(data), mode="create" if first else "append")
            first = False
        con.commit()
        cur.close()
    finally:
        con.close()
    return path
