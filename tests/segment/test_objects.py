"""Objects rows against scikit-image regionprops and the store schema."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from skimage.measure import regionprops

from cellframe.errors import InvalidInputError
from cellframe.segment.objects import OBJECTS_SCHEMA, objects_table
from cellframe.segment.pipeline import write_objects


@pytest.fixture
def labels() -> np.ndarray:
    rng = np.random.default_rng(3)
    lab = np.zeros((30, 40), np.int32)
    for i in range(1, 8):
        y, x = rng.integers(0, 25), rng.integers(0, 35)
        lab[y : y + rng.integers(2, 6), x : x + rng.integers(2, 6)] = i
    lab[lab == 4] = 0  # a gap in the ids
    return lab


def test_matches_regionprops(labels):
    df = objects_table(labels, plate="P1", well="A01", site=2)
    props = regionprops(labels)
    expected = pl.DataFrame(
        {
            "Metadata_Plate": ["P1"] * len(props),
            "Metadata_Well": ["A01"] * len(props),
            "Metadata_Site": [2] * len(props),
            "Metadata_ObjectNumber": [p.label for p in props],
            "Object": ["Nuclei"] * len(props),
            "Location_Center_X": [p.centroid[1] for p in props],
            "Location_Center_Y": [p.centroid[0] for p in props],
            "AreaShape_Area": [float(p.area) for p in props],
            "BoundingBox_MinX": [p.bbox[1] for p in props],
            "BoundingBox_MinY": [p.bbox[0] for p in props],
            "BoundingBox_MaxX": [p.bbox[3] for p in props],
            "BoundingBox_MaxY": [p.bbox[2] for p in props],
        },
        schema=OBJECTS_SCHEMA,
    )
    assert_frame_equal(df, expected, rel_tol=1e-12)


def test_columns_are_the_store_schema_and_write(store, labels):
    assert list(OBJECTS_SCHEMA) == store.columns("objects")
    df = objects_table(labels, plate="P1", well="A01", site=1)
    assert write_objects(store, df) == df.height
    back = store.read("objects").sort("Metadata_ObjectNumber")
    assert_frame_equal(back, df, check_dtypes=False)
    with pytest.raises(InvalidInputError, match="already holds objects"):
        write_objects(store, df)
    write_objects(store, df.head(2), replace=True)
    assert store.read("objects").height == 2


def test_empty_and_bad_labels():
    df = objects_table(np.zeros((5, 5), np.int32), plate="P", well="A01", site=1)
    assert df.height == 0 and df.schema == pl.Schema(OBJECTS_SCHEMA)
    with pytest.raises(InvalidInputError, match="2-D integer"):
        objects_table(np.zeros((5, 5)), plate="P", well="A01", site=1)
