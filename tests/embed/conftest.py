"""Small synthetic sites shared by the embed tests."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

CHANNELS = ["DNA", "ER", "RNA", "AGP", "Mito"]


def make_objects(rows: list[tuple[str, str, int, int, float, float]]) -> pl.DataFrame:
    """Objects frame from (plate, well, site, object, x, y) tuples."""
    return pl.DataFrame(
        rows,
        schema={
            "Metadata_Plate": pl.String,
            "Metadata_Well": pl.String,
            "Metadata_Site": pl.Int32,
            "Metadata_ObjectNumber": pl.Int64,
            "Location_Center_X": pl.Float64,
            "Location_Center_Y": pl.Float64,
        },
        orient="row",
    )


@pytest.fixture(scope="session")
def two_sites() -> tuple[pl.DataFrame, dict]:
    """Two 5-channel 96 x 80 sites with 3 and 2 objects (one near a border)."""
    rng = np.random.default_rng(42)
    images = {
        ("P1", "A01", 1): rng.integers(0, 4000, (5, 96, 80)).astype(np.uint16),
        ("P1", "B02", 2): rng.integers(0, 4000, (5, 96, 80)).astype(np.uint16),
    }
    objects = make_objects(
        [
            ("P1", "B02", 2, 2, 70.2, 90.9),
            ("P1", "A01", 1, 1, 40.0, 48.0),
            ("P1", "A01", 1, 2, 3.5, 5.5),
            ("P1", "A01", 1, 3, 79.9, 95.9),
            ("P1", "B02", 2, 1, 10.0, 20.0),
        ]
    )
    return objects, images
