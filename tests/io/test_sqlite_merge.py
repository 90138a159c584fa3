"""The streaming merge join of SQLite compartments, against the staged join on the same files.

When every object table stores its rows image by image, the reader merge-joins
the compartment streams (``SortedMerge``); otherwise it stages them in a
temporary DuckDB database. Both must give the same single cells, exactly.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

import cellframe.io.cellprofiler_sqlite as sqlite_reader
import cellframe.partitions as partitions
from cellframe.columns import IMAGE_NUMBER, OBJECT_NUMBER, PLATE
from cellframe.errors import InvalidInputError
from cellframe.io import CellProfilerSQLite, IngestOptions, ingest
from cellframe.io._synthetic import write_synthetic_sqlite
from cellframe.store import Store

KEYS = ["Metadata_TableNumber", IMAGE_NUMBER, OBJECT_NUMBER]


def _read(path: Path, *, merge: bool, monkeypatch: pytest.MonkeyPatch, **kwargs) -> pl.DataFrame:
    calls: list[object] = []
    original = CellProfilerSQLite._in_image_order

    def spy(self, con, image):  # type: ignore[no-untyped-def]
        result = original(self, con, image) if merge else None
        calls.append(result)
        return result

    with monkeypatch.context() as m:
        m.setattr(CellProfilerSQLite, "_in_image_order", spy)
        frames = list(CellProfilerSQLite(path, **kwargs).batches())
    assert calls and (calls[0] is not None) == merge, "the expected join path was not taken"
    df = pl.concat(frames, how="vertical")
    return df.sort([k for k in KEYS if k in df.columns])


@pytest.mark.parametrize("in_memory", [True, False], ids=["polars", "duckdb"])
def test_merge_equals_staged_join_on_cellprofiler_export(
    nf1_sqlite: Path, in_memory: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    merged = _read(nf1_sqlite, merge=True, monkeypatch=monkeypatch)
    staged = _read(nf1_sqlite, merge=False, monkeypatch=monkeypatch, in_memory=in_memory)
    assert merged.height == 242
    assert_frame_equal(merged, staged)


@pytest.mark.parametrize("name", ["data_a_sqlite/data_a.sqlite", "data_b_sqlite/data_b.sqlite"])
def test_merge_equals_staged_join_with_several_table_numbers(
    cytominer_db: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = cytominer_db / name
    con = sqlite3.connect(path)
    n_tables = con.execute("SELECT count(DISTINCT TableNumber) FROM Image").fetchone()[0]
    con.close()
    assert n_tables >= 2  # images are told apart by (TableNumber, ImageNumber)
    merged = _read(path, merge=True, monkeypatch=monkeypatch)
    staged = _read(path, merge=False, monkeypatch=monkeypatch, in_memory=False)
    assert merged.height > 0
    assert merged["Metadata_TableNumber"].n_unique() == n_tables
    assert_frame_equal(merged, staged)


def _order_check(path: Path) -> object:
    """What the reader's first pass says of a file's row order (None: unsorted)."""
    reader = CellProfilerSQLite(path)
    con = reader._connect()
    try:
        return reader._in_image_order(con, reader._image(con))
    finally:
        con[1].close()
        con[0].close()


def _shuffled_copy(src: Path, dst: Path, table: str, seed: int = 0) -> None:
    """Copy a SQLite file with the rows of one table stored in random order."""
    con = sqlite3.connect(dst)
    con.execute(f"ATTACH DATABASE '{src}' AS src")
    for name, sql in con.execute("SELECT name, sql FROM src.sqlite_master WHERE type='table'"):
        con.execute(sql)
        order = "ORDER BY random()" if name == table else ""
        con.execute(f'INSERT INTO "{name}" SELECT * FROM src."{name}" {order}')
    con.commit()
    con.execute("DETACH DATABASE src")
    con.close()


def test_unsorted_table_falls_back_to_staging_with_the_same_cells(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = write_synthetic_sqlite(
        tmp_path / "sorted.sqlite", n_cells=1_200, n_features=9, cells_per_image=40
    )
    shuffled = tmp_path / "shuffled.sqlite"
    _shuffled_copy(src, shuffled, "Per_Nuclei")
    assert _order_check(shuffled) is None
    sorted_cells = _read(src, merge=True, monkeypatch=monkeypatch)
    fallback = _read(shuffled, merge=False, monkeypatch=monkeypatch, in_memory=False)
    assert sorted_cells.height == 1_200
    assert_frame_equal(sorted_cells, fallback)


def test_an_index_does_not_hide_unsorted_storage(tmp_path: Path) -> None:
    # A covering index on ImageNumber returns it sorted; the check must read storage order.
    src = write_synthetic_sqlite(
        tmp_path / "s.sqlite", n_cells=400, n_features=6, cells_per_image=20
    )
    shuffled = tmp_path / "shuffled.sqlite"
    _shuffled_copy(src, shuffled, "Per_Cells")
    con = sqlite3.connect(shuffled)
    con.execute('CREATE INDEX idx ON "Per_Cells" (ImageNumber)')
    con.commit()
    con.close()
    assert _order_check(shuffled) is None


def test_merge_keeps_each_image_whole_and_batches_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = write_synthetic_sqlite(
        tmp_path / "s.sqlite", n_cells=3_000, n_features=12, cells_per_image=30
    )
    # Small SQLite batches that end mid-image, so images straddle batches.
    frames = list(CellProfilerSQLite(src, batch_rows=77).batches())
    assert sum(f.height for f in frames) == 3_000
    assert max(f.height for f in frames) <= 77
    per_batch = [set(f[IMAGE_NUMBER].to_list()) for f in frames]
    assert sum(len(s) for s in per_batch) == len(set().union(*per_batch)) == 100
    # Values equal the source's, row for row.
    con = sqlite3.connect(src)
    ref = np.array(
        con.execute(
            "SELECT Cells_Feature_0002 FROM Per_Cells ORDER BY ImageNumber, "
            "Cells_Number_Object_Number"
        ).fetchall(),
        dtype=np.float32,
    ).ravel()
    con.close()
    got = pl.concat(frames).sort(IMAGE_NUMBER, OBJECT_NUMBER)["Cells_Feature_0002"].to_numpy()
    np.testing.assert_array_equal(got, ref)


def test_large_plate_rolls_over_to_several_bounded_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = write_synthetic_sqlite(
        tmp_path / "s.sqlite", n_cells=5_000, n_features=30, cells_per_image=50
    )
    # Row groups of ~1,024 rows, two per file: the 5,000 cells need three files.
    monkeypatch.setattr(partitions, "ROW_GROUP_BYTES", 1_024 * 4 * 30)
    monkeypatch.setattr(partitions, "ROW_GROUPS_PER_FILE", 2)
    monkeypatch.setattr(sqlite_reader, "_BATCH_MB", 1)
    with Store(tmp_path / "p.duckdb") as st:
        report = ingest(
            src, st, layout="parquet", progress=False, options=IngestOptions(batch_rows=300)
        )
        files = partitions.partition_files(st.parts_dir / "cells", "SYN0001")
        parquet = st.read("cells").sort(IMAGE_NUMBER, OBJECT_NUMBER)
    assert report.rows == 5_000
    assert [f.name for f in files] == ["part.parquet", "part-1.parquet", "part-2.parquet"]
    groups = [
        pq.ParquetFile(f).metadata.row_group(i).num_rows
        for f in files
        for i in range(pq.ParquetFile(f).metadata.num_row_groups)
    ]
    assert sum(groups) == 5_000 and max(groups) <= 1_200
    # The plate's size comes from the footers of all three files.
    per_file = partitions.plate_file_rows(tmp_path / "p.parts" / "cells")
    assert [f for f, _ in per_file["SYN0001"]] == files
    assert sum(n for _, n in per_file["SYN0001"]) == 5_000
    # Measurements are LZ4 (fast to decode), keys and labels zstd.
    meta = pq.ParquetFile(files[0]).metadata
    codecs = {
        meta.schema.column(j).name: meta.row_group(0).column(j).compression
        for j in range(meta.num_columns)
    }
    assert codecs[IMAGE_NUMBER] == "ZSTD" and codecs["Metadata_Well"] == "ZSTD"
    assert {c for name, c in codecs.items() if name.startswith("Cells_")} == {"LZ4"}
    with Store(tmp_path / "t.duckdb") as st:
        ingest(src, st, layout="table", progress=False)
        table = st.read("cells").sort(IMAGE_NUMBER, OBJECT_NUMBER)
    assert parquet[PLATE].unique().to_list() == ["SYN0001"]
    assert_frame_equal(parquet.select(table.columns), table)


def test_auto_layout_keeps_an_existing_table_kind(tmp_path: Path) -> None:
    src = write_synthetic_sqlite(
        tmp_path / "s.sqlite", n_cells=200, n_features=6, cells_per_image=20
    )
    with Store(tmp_path / "a.duckdb") as st:
        ingest(src, st, layout="parquet", progress=False)
        report = ingest(src, st, progress=False)  # auto: the table is partitioned already
        assert st.partition_root("cells") is not None
        assert st.read("cells").height == report.rows == 200
    with Store(tmp_path / "b.duckdb") as st:
        ingest(src, st, progress=False)  # auto, small source: a native table
        assert st.partition_root("cells") is None


@pytest.mark.parametrize("merge", [True, False], ids=["merge", "staging"])
def test_objects_without_an_image_row_are_refused_by_both_joins(
    tmp_path: Path, merge: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = write_synthetic_sqlite(
        tmp_path / "s.sqlite", n_cells=200, n_features=6, cells_per_image=20
    )
    con = sqlite3.connect(src)
    con.execute("DELETE FROM Per_Image WHERE ImageNumber = 3")
    con.commit()
    con.close()
    with pytest.raises(
        InvalidInputError,
        match=r"20 Cytoplasm object\(s\) in .*have no row in the image table .*"
        r"first ImageNumber without one: 3\)",
    ):
        _read(src, merge=merge, monkeypatch=monkeypatch, in_memory=False)
