"""Aggregation: hand-computed cases, pycytominer 1.7.1 parity on real cells, store streaming."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cellframe.columns import COUNT_CELLS, PLATE, SITE, TREATMENT, WELL, feature_columns
from cellframe.errors import MissingColumnsError
from cellframe.profiles import aggregate, aggregate_by, aggregate_table

from ._helpers import assert_close
from .conftest import make_screen

TINY = pl.DataFrame(
    {
        PLATE: ["P"] * 7,
        WELL: ["A01"] * 5 + ["B01"] * 2,
        SITE: pl.Series([1, 1, 1, 2, 2, 1, 1], dtype=pl.Int32),
        TREATMENT: ["x"] * 5 + ["x"] * 2,
        "f": [1.0, 2.0, 9.0, 4.0, 6.0, 10.0, float("nan")],
    }
)


def test_direct_median_hand_computed():
    out = aggregate(TINY.lazy(), "well").collect()
    # A01: median(1, 2, 9, 4, 6) = 4; B01: NaN is skipped -> 10.
    assert out["f"].to_list() == [4.0, 10.0]
    assert out[COUNT_CELLS].to_list() == [5, 2]
    assert out.schema["f"] == pl.Float32


def test_thesis_path_hand_computed():
    wells = aggregate(TINY.lazy(), "well", path="thesis").collect()
    # A01: site medians 2 and 5 -> mean 3.5; B01: 10.
    assert wells["f"].to_list() == [3.5, 10.0]
    assert wells[COUNT_CELLS].to_list() == [5, 2]
    trt = aggregate(TINY.lazy(), "treatment", path="thesis").collect()
    # treatment x: mean of well profiles (3.5 + 10) / 2 over 7 cells.
    assert trt["f"].to_list() == [6.75]
    assert trt[COUNT_CELLS].to_list() == [7]
    images = aggregate(TINY.lazy(), "image").collect()
    assert images["f"].to_list() == [2.0, 5.0, 10.0]


def test_any_strata_and_methods():
    out = aggregate_by(TINY.lazy(), [TREATMENT], method="mean").collect()
    assert out["f"].to_list() == pytest.approx([32.0 / 6])
    custom = aggregate_by(TINY.lazy(), [WELL], method=lambda e: e.max()).collect()
    assert custom["f"].to_list() == [9.0, 10.0]
    with pytest.raises(ValueError, match="unknown aggregation method 'mode'"):
        aggregate_by(TINY.lazy(), [WELL], method="mode")
    with pytest.raises(MissingColumnsError, match="Metadata_Nope"):
        aggregate_by(TINY.lazy(), ["Metadata_Nope"])


def test_carried_metadata_null_when_not_constant():
    out = aggregate(TINY.lazy(), "treatment").collect()
    assert out[PLATE].to_list() == ["P"]
    assert out[WELL].to_list() == [None]  # two wells in one treatment


@pytest.mark.parametrize("operation", ["median", "mean"])
def test_pycytominer_parity_nf1(nf1_cells, operation):
    from pycytominer import aggregate as pyc_aggregate

    feats = feature_columns(nf1_cells)
    ref = pyc_aggregate(
        nf1_cells.to_pandas(),
        strata=[PLATE, WELL],
        features=feats,
        operation=operation,
        compute_object_count=True,
        object_feature="Metadata_ObjectNumber",
    )
    ours = aggregate(nf1_cells.lazy(), "well", method=operation).collect()
    assert ours[WELL].to_list() == ref[WELL].tolist()
    assert ours[COUNT_CELLS].to_list() == ref["Metadata_Object_Count"].tolist()
    assert_close(ours.select(feats).to_numpy(), ref[feats].to_numpy(), f"aggregate {operation} NF1")


def test_thesis_path_against_pandas_nf1(nf1_cells):
    feats = feature_columns(nf1_cells)
    pdf = nf1_cells.to_pandas()
    ref = pdf.groupby([PLATE, WELL, SITE])[feats].median().groupby(level=[0, 1]).mean()
    ours = aggregate(nf1_cells.lazy(), "well", path="thesis").collect()
    assert_close(
        ours.select(feats).to_numpy(), ref[feats].to_numpy(), "thesis cell->image->well NF1"
    )


def test_aggregate_table_streams_by_plate_and_well(store):
    cells = make_screen(n_plates=3, n_wells=10, n_sites=2, cells_per_site=4)
    for plate, part in cells.group_by(PLATE, maintain_order=True):
        store.write_partition("cells", plate[0], part, step="test")
    expected = aggregate(cells.lazy(), "well").collect()
    # chunk_rows=20 forces a few wells per chunk (each plate has 80 cells).
    n = aggregate_table(store, "cells", "wells", "well", chunk_rows=20, progress=False)
    assert n == expected.height
    got = store.read("wells")
    assert_frame_equal(got.select(expected.columns), expected, check_dtypes=False)
    prov = store.provenance("wells")
    assert prov["step"].to_list() == ["aggregate"]
    # The thesis chain up to treatments: per-plate wells, then one treatment step.
    aggregate_table(
        store, "cells", "treatments", "treatment", path="thesis", chunk_rows=20, progress=False
    )
    expected_t = aggregate(cells.lazy(), "treatment", path="thesis").collect()
    got_t = store.read("treatments")
    feats = feature_columns(expected_t)
    assert got_t[TREATMENT].to_list() == expected_t[TREATMENT].to_list()
    np.testing.assert_allclose(
        got_t.select(feats).to_numpy(), expected_t.select(feats).to_numpy(), rtol=1e-6
    )
    assert got_t[COUNT_CELLS].to_list() == expected_t[COUNT_CELLS].to_list()


def test_aggregate_table_native_table(store):
    cells = make_screen(n_plates=2, n_wells=4)
    store.write("cells_native", cells, step="test")
    aggregate_table(store, "cells_native", "wells", "image", progress=False)
    expected = aggregate(cells.lazy(), "image").collect()
    assert_frame_equal(store.read("wells").select(expected.columns), expected, check_dtypes=False)


def test_pandas_free_float32_output(nf1_cells):
    out = aggregate(nf1_cells.lazy(), "well").collect()
    assert all(out.schema[f] == pl.Float32 for f in feature_columns(nf1_cells))
    assert isinstance(out, pl.DataFrame) and not isinstance(out, pd.DataFrame)
