"""Aggregation: hand-computed cases, pycytominer 1.7.1 parity on real cells, store streaming."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cellframe.columns import COUNT_CELLS, PLATE, SITE, TREATMENT, WELL, feature_columns
from cellframe.engine import LocalEngine
from cellframe.errors import MissingColumnsError
from cellframe.pipeline import Aggregation, aggregate_table
from cellframe.profiles import aggregate, aggregate_by

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
    n = aggregate_table(
        store, "cells", "wells", "well", engine=LocalEngine(chunk_rows=20), progress=False
    )
    assert n == expected.height
    got = store.read("wells")
    assert_frame_equal(got.select(expected.columns), expected, check_dtypes=False)
    prov = store.provenance("wells")
    assert prov["step"].to_list() == ["aggregate"]
    # The thesis chain up to treatments: per-plate wells, then one treatment step.
    aggregate_table(
        store, "cells", "treatments", Aggregation("treatment", path="thesis"),
        engine=LocalEngine(chunk_rows=20), progress=False,
    )  # fmt: skip
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


def test_aggregate_table_native_table_by_wells(store):
    # A native table split into runs of wells: the counts come from DuckDB.
    cells = make_screen(n_plates=2, n_wells=10, n_sites=2, cells_per_site=4)
    store.write("cells_native", cells, step="test")
    expected = aggregate(cells.lazy(), "well").collect()
    aggregate_table(
        store, "cells_native", "wells", "well", engine=LocalEngine(chunk_rows=20), progress=False
    )
    assert_frame_equal(store.read("wells").select(expected.columns), expected, check_dtypes=False)


def test_work_units_cover_each_plate_once(store):
    from cellframe.engine.local import _chunks

    cells = make_screen(n_plates=2, n_wells=10, n_sites=2, cells_per_site=4)  # 80 per plate
    plates = sorted(set(cells[PLATE]))
    for plate, part in cells.group_by(PLATE, maintain_order=True):
        store.write_partition("cells", plate[0], part, step="test")
    store.write("cells_native", cells, step="test")
    for table in ("cells", "cells_native"):
        whole = _chunks(store, table, strata_wells=True, chunk_rows=1_000)
        assert [(u.plate, u.wells, u.rows) for u in whole] == [(p, None, 80) for p in plates]
        split = _chunks(store, table, strata_wells=True, chunk_rows=20)
        for plate in plates:
            units = [u for u in split if u.plate == plate]
            assert all(u.rows <= 20 for u in units) and sum(u.rows for u in units) == 80
            wells = [x for u in units for x in u.wells]
            assert wells == sorted(cells.filter(pl.col(PLATE) == plate)[WELL].unique())
            # Each partition holds its wells in blocks of rows: read as row ranges.
            offsets = [u.offset for u in units]
            if table == "cells":
                assert offsets == [sum(u.rows for u in units[:i]) for i in range(len(units))]
            else:
                assert offsets == [None] * len(units)


def test_aggregate_table_row_range_and_filtered_units(store):
    # Wells stored as blocks but out of key order: row-range units, output in key order.
    cells = make_screen(n_plates=2, n_wells=10, n_sites=2, cells_per_site=4)
    shuffled = cells.sort([PLATE, pl.col(WELL).hash(7)], maintain_order=True)
    for plate, part in shuffled.group_by(PLATE, maintain_order=True):
        store.write_partition("cells", plate[0], part, step="test")
    expected = aggregate(cells.lazy(), "well").collect()
    aggregate_table(
        store, "cells", "wells", "well", engine=LocalEngine(chunk_rows=20), progress=False
    )
    assert_frame_equal(store.read("wells").select(expected.columns), expected, check_dtypes=False)
    # Wells interleaved (no blocks): runs of sorted wells selected by a filter.
    from cellframe.engine.local import _chunks

    interleaved = cells.sort([PLATE, SITE, WELL])
    for plate, part in interleaved.group_by(PLATE, maintain_order=True):
        store.write_partition("cells_mixed", plate[0], part, step="test")
    units = _chunks(store, "cells_mixed", strata_wells=True, chunk_rows=20)
    assert {u.offset for u in units} == {None} and len(units) > 2
    aggregate_table(
        store,
        "cells_mixed",
        "wells_mixed",
        "well",
        engine=LocalEngine(chunk_rows=20),
        progress=False,
    )
    got = store.read("wells_mixed").select(expected.columns)
    assert_frame_equal(got, expected, check_dtypes=False)


def test_aggregate_table_row_ranges_across_files(store, monkeypatch):
    # A plate rolled over to several files: each row-range unit reads the
    # files holding its rows, with its offset counted from the first of them.
    from cellframe import partitions
    from cellframe.engine.local import _chunks

    cells = make_screen(n_plates=2, n_wells=12, n_sites=4, cells_per_site=50)  # 2,400 per plate
    monkeypatch.setattr(partitions, "ROW_GROUP_BYTES", 1)  # the minimum, 1,024 rows per group
    monkeypatch.setattr(partitions, "ROW_GROUPS_PER_FILE", 1)  # 3 files per plate
    for plate, part in cells.group_by(PLATE, maintain_order=True):
        store.write_partition("cells", plate[0], part, step="test")
    units = _chunks(store, "cells", strata_wells=True, chunk_rows=500)
    assert len(partitions.partition_files(store.parts_dir / "cells", units[0].plate)) == 3
    assert all(u.offset is not None and 0 < len(u.files) < 3 for u in units)
    assert any(u.offset > 0 for u in units) and any(
        u.files[0].name != "part.parquet" for u in units
    )
    expected = aggregate(cells.lazy(), "well").collect()
    aggregate_table(
        store, "cells", "wells", "well", engine=LocalEngine(chunk_rows=500), progress=False
    )
    assert_frame_equal(store.read("wells").select(expected.columns), expected, check_dtypes=False)


def test_feature_blocks_reuse_a_workspace():
    from cellframe.profiles._common import Workspace, feature_blocks

    ws = Workspace()
    big = pl.DataFrame({"a": np.arange(6, dtype=np.float32), "b": np.ones(6)})
    clean, clean_idx, missing, missing_idx = feature_blocks(big, ["a", "b"], None, ws)
    assert clean.tolist() == [list(range(6)), [1.0] * 6] and not len(missing_idx)
    # A smaller frame (two chunks, a null, an int column, a row order) over the same memory.
    small = pl.concat(
        [
            pl.DataFrame({"a": [1.0, None], "b": [3, 4], "c": [np.inf, 1.0]}),
            pl.DataFrame({"a": [5.0], "b": [6], "c": [-np.inf]}),
        ],
        rechunk=False,
    )
    assert small["a"].n_chunks() == 2
    clean, clean_idx, missing, missing_idx = feature_blocks(
        small, ["a", "b", "c"], np.array([2, 0, 1]), ws
    )
    assert clean_idx.tolist() == [1] and clean.tolist() == [[6.0, 3.0, 4.0]]
    # "a" has a null (NaN now); "c" has +inf and -inf, whose sum is NaN: both
    # take the NaN-aware kernel, which handles infinities like any value.
    assert missing_idx.tolist() == [0, 2]
    np.testing.assert_array_equal(missing, [[5.0, 1.0, np.nan], [-np.inf, np.inf, 1.0]])
    # Without a row order the chunks are copied one after the other.
    np.testing.assert_array_equal(feature_blocks(small, ["a"], None)[2], [[1.0, np.nan, 5.0]])


def test_pandas_free_float32_output(nf1_cells):
    out = aggregate(nf1_cells.lazy(), "well").collect()
    assert all(out.schema[f] == pl.Float32 for f in feature_columns(nf1_cells))
    assert isinstance(out, pl.DataFrame) and not isinstance(out, pd.DataFrame)


# ------------------------------------------------------------------ NumPy group kernels
def _messy_cells(n: int = 600, n_features: int = 7, seed: int = 3) -> pl.DataFrame:
    """Unsorted cells with NaN, nulls, an all-missing group, odd and even group sizes."""
    rng = np.random.default_rng(seed)
    wells = rng.choice(["A01", "A02", "B01", "B02", "C07"], size=n)
    plates = rng.choice(["P1", "P2"], size=n)
    x = rng.normal(size=(n, n_features)).astype(np.float32) * 10
    x[rng.random((n, n_features)) < 0.1] = np.nan
    x[(wells == "C07") & (plates == "P1"), 2] = np.nan  # a group without values
    data = {PLATE: plates.tolist(), WELL: wells.tolist()}
    data[WELL][5] = None  # a null key is a group of its own, sorted last
    data.update({f"Cells_F{j}": x[:, j] for j in range(n_features)})
    df = pl.DataFrame(data)
    # A null (not NaN) in one feature, and a float64 feature.
    return df.with_columns(
        pl.when(pl.int_range(pl.len()) % 17 == 0).then(None).otherwise(pl.col("Cells_F1"))
        .alias("Cells_F1"),
        pl.col("Cells_F3").cast(pl.Float64),
    )  # fmt: skip


@pytest.mark.parametrize("operation", ["median", "mean"])
def test_numpy_kernels_match_pandas_and_polars(operation):
    cells = _messy_cells()
    feats = feature_columns(cells)
    ours = aggregate_by(cells.lazy(), [PLATE, WELL], method=operation).collect()
    # Reference 1: pandas in float64 on the float32 values (skips NaN; NaN when none).
    pdf = cells.with_columns(pl.col(feats).cast(pl.Float32).cast(pl.Float64)).to_pandas()
    ref = (
        pdf.groupby([PLATE, WELL], dropna=False)[feats]
        .agg(operation)
        .reset_index()
        .sort_values([PLATE, WELL], na_position="last")
    )
    assert ours[PLATE].to_list() == ref[PLATE].tolist()
    assert ours[WELL].to_list() == [None if w is None or w != w else w for w in ref[WELL]]
    got = ours.select(feats).to_numpy().astype(np.float64)  # nulls -> NaN
    assert_close(got, ref[feats].to_numpy(), f"numpy {operation} vs pandas", rtol=1e-6)
    # Reference 2: the Polars expression path (a callable method forces it).
    polars_path = aggregate_by(
        cells.lazy(), [PLATE, WELL], method=lambda e: getattr(e, operation)()
    ).collect()
    assert_frame_equal(ours, polars_path, check_exact=False, rel_tol=1e-6)
    # Missing results are nulls, as on the Polars path; counts include missing values.
    assert (
        ours.filter((pl.col(PLATE) == "P1") & (pl.col(WELL) == "C07"))["Cells_F2"].null_count() == 1
    )
    assert ours[COUNT_CELLS].sum() == cells.height


@pytest.mark.filterwarnings("ignore:All-NaN slice")
def test_group_reduce_threads_and_even_odd_sizes():
    from cellframe.profiles._common import GroupRuns, group_reduce

    rng = np.random.default_rng(0)
    sizes = np.array([1, 2, 3, 4, 7, 8, 130, 131])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    n = int(sizes.sum())
    x = rng.normal(size=(5, n)).astype(np.float32)
    ref = np.stack(
        [
            np.median(x[:, a : a + k].astype(np.float64), axis=1)
            for a, k in zip(starts, sizes, strict=True)
        ]
    )
    xm = x.copy()
    xm[:, ::5] = np.nan
    ref_m = np.stack(
        [
            np.nanmedian(xm[:, a : a + k].astype(np.float64), axis=1)
            for a, k in zip(starts, sizes, strict=True)
        ]
    )
    empty = np.empty((0, n), dtype=np.float32)
    starts = GroupRuns.contiguous(starts, n)
    for threads in (1, 2, 3):
        got, _ = group_reduce(x.copy(), empty, starts, "median", n_threads=threads)
        # float64 midpoint of float32 values, rounded once to float32.
        np.testing.assert_allclose(got, ref, rtol=1e-7)
        _, got_m = group_reduce(empty, xm.copy(), starts, "median", n_threads=threads)
        np.testing.assert_allclose(got_m, ref_m, rtol=1e-7)
        mean, _ = group_reduce(x.copy(), empty, starts, "mean", n_threads=threads)
        ref_mean = np.stack(
            [
                x[:, a : a + k].astype(np.float64).mean(axis=1)
                for a, k in zip(starts.run_start, sizes, strict=True)
            ]
        )
        np.testing.assert_allclose(mean, ref_mean, rtol=1e-6)


def test_aggregate_table_unsorted_partitions_with_missing(store):
    cells = _messy_cells(n=900).filter(pl.col(WELL).is_not_null())
    for plate, part in cells.group_by(PLATE, maintain_order=True):
        store.write_partition("cells", plate[0], part.drop(PLATE), step="test")
    expected = aggregate(cells.lazy(), "well").collect()
    for chunk_rows in (None, 60):  # whole plates, then a few wells at a time
        aggregate_table(
            store,
            "cells",
            "wells",
            "well",
            engine=LocalEngine(chunk_rows=chunk_rows),
            progress=False,
        )
        got = store.read("wells").select(expected.columns)
        assert_frame_equal(got, expected, check_dtypes=False)


def test_aggregate_table_bad_chunk_rows(store):
    from cellframe.errors import InvalidInputError

    store.write_partition("cells", "P1", make_screen(n_plates=1).drop(PLATE), step="test")
    with pytest.raises(InvalidInputError, match=r"LocalEngine\(chunk_rows=0\): chunk_rows must"):
        aggregate_table(store, "cells", "wells", engine=LocalEngine(chunk_rows=0), progress=False)
    with pytest.raises(InvalidInputError, match=r"LocalEngine\(workers=0\): workers must"):
        aggregate_table(store, "cells", "wells", engine=LocalEngine(workers=0), progress=False)
    assert "wells" not in store.table_names()


def test_work_units_in_flight_fit_the_memory_budget(store):
    from cellframe.engine.local import UNIT_MEMORY, _unit_workers

    chunk = 256 * 2**20
    assert _unit_workers(2, chunk, None) == 2  # this machine: one per thread
    assert _unit_workers(64, chunk, None) == UNIT_MEMORY // (2 * chunk) == 8  # a big server
    assert _unit_workers(64, 4 * 2**30, None) == 1  # chunks larger than the budget: one
    assert _unit_workers(64, chunk, 20) == 20  # asked for explicitly
    # Any number of workers gives the same table.
    cells = make_screen(n_plates=3, n_wells=10, n_sites=2, cells_per_site=4)
    for plate, part in cells.group_by(PLATE, maintain_order=True):
        store.write_partition("cells", plate[0], part, step="test")
    expected = aggregate(cells.lazy(), "well").collect()
    for workers in (1, 3):
        aggregate_table(
            store, "cells", "wells", engine=LocalEngine(workers=workers, chunk_rows=20),
            progress=False,
        )  # fmt: skip
        got = store.read("wells").select(expected.columns)
        assert_frame_equal(got, expected, check_dtypes=False)


def test_groups_in_unsorted_runs_are_reduced_in_place():
    """Rows grouped in runs but not sorted (a plate written as several files), one well split."""
    from cellframe.profiles._common import group_layout

    rng = np.random.default_rng(5)
    wells = ["C01"] * 5 + ["A01"] * 4 + ["B01"] * 6 + ["C01"] * 3 + [None] * 2
    x = rng.normal(size=(len(wells), 3)).astype(np.float32)
    cells = pl.DataFrame({PLATE: ["P"] * len(wells), WELL: wells}).hstack(
        pl.DataFrame(x, schema=["Cells_a", "Cells_b", "Cells_c"])
    )
    order, runs = group_layout(cells.select(PLATE, WELL))
    assert order is None  # no copy into sorted order
    assert runs.n_groups == 4 and runs.group_sizes().tolist() == [4, 6, 8, 2]
    ours = aggregate(cells.lazy(), "well").collect()
    ref = cells.to_pandas().groupby(WELL, dropna=False)[["Cells_a", "Cells_b", "Cells_c"]].median()
    assert ours[WELL].to_list() == ["A01", "B01", "C01", None]
    assert ours[COUNT_CELLS].to_list() == [4, 6, 8, 2]
    assert_close(ours.select("Cells_a", "Cells_b", "Cells_c").to_numpy(), ref.to_numpy(), "runs")
