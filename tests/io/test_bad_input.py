"""Bad input: each error names the file, table and column and says what to do; the store is untouched."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cellframe.errors import (
    EmptyInputError,
    InvalidInputError,
    MissingColumnsError,
    StoreLockedError,
    UnknownFormatError,
)
from cellframe.io import IngestWarning, ingest
from cellframe.io._synthetic import write_synthetic_sqlite
from cellframe.store import Store

REPO = Path(__file__).resolve().parents[2]


def write_tree(root: Path, *, cells: str | None = None, image: str | None = None) -> Path:
    """A one-site CellProfiler CSV folder with 3 cells; pieces can be replaced."""
    site = root / "site1"
    site.mkdir(parents=True)
    (site / "Image.csv").write_text(
        image or "ImageNumber,Metadata_Plate,Metadata_Well,Metadata_Site\n1,P1,B3,1\n"
    )
    (site / "Cells.csv").write_text(
        cells
        or "ImageNumber,ObjectNumber,Parent_Nuclei,AreaShape_Area,Intensity_Mean_DNA\n"
        "1,1,1,100,0.5\n1,2,2,200,0.25\n1,3,3,300,0.125\n"
    )
    (site / "Cytoplasm.csv").write_text(
        "ImageNumber,ObjectNumber,Parent_Cells,Parent_Nuclei,AreaShape_Area\n1,1,1,1,10\n1,2,2,2,20\n1,3,3,3,30\n"
    )
    (site / "Nuclei.csv").write_text(
        "ImageNumber,ObjectNumber,AreaShape_Area\n1,1,5\n1,2,6\n1,3,7\n"
    )
    return root


@pytest.fixture
def stored(tmp_path: Path) -> tuple[Path, pl.DataFrame, pl.DataFrame]:
    """A store file holding one ingested plate; returns (path, its cells, its provenance)."""
    src = write_tree(tmp_path / "good")
    path = tmp_path / "store.duckdb"
    ingest(src, path, progress=False)
    with Store(path, read_only=True) as s:
        return path, s.read("cells"), s.provenance()


def assert_unchanged(path: Path, cells: pl.DataFrame, provenance: pl.DataFrame) -> None:
    with Store(path, read_only=True) as s:
        assert_frame_equal(s.read("cells"), cells)
        assert_frame_equal(s.provenance(), provenance)


def test_good_tree_values(stored) -> None:
    _, cells, _ = stored
    assert cells.height == 3
    assert cells["Metadata_Well"].to_list() == ["B03"] * 3
    assert cells["Cells_AreaShape_Area"].to_list() == [100.0, 200.0, 300.0]
    assert cells["Cytoplasm_AreaShape_Area"].to_list() == [10.0, 20.0, 30.0]


def test_missing_key_column_names_file_and_column(tmp_path: Path, stored) -> None:
    src = write_tree(tmp_path / "bad", cells="ObjectNumber,AreaShape_Area\n1,100\n")
    with pytest.raises(MissingColumnsError) as err:
        ingest(src, stored[0], progress=False)
    msg = str(err.value)
    assert "Cells.csv" in msg and "'ImageNumber'" in msg and "re-export" in msg
    assert_unchanged(*stored)


def test_missing_plate_says_pass_plate(tmp_path: Path, stored) -> None:
    src = write_tree(tmp_path / "bad", image="ImageNumber,Metadata_Well\n1,B3\n")
    with pytest.raises(MissingColumnsError, match=r"Metadata_Plate.*plate='NAME'"):
        ingest(src, stored[0], progress=False)
    assert_unchanged(*stored)
    # ... and with the plate given it works.
    report = ingest(src, stored[0], progress=False, plate="P2")
    assert report.plates == ["P2"] and report.rows == 3


def test_non_numeric_feature_in_csv(tmp_path: Path, stored) -> None:
    cells = (
        "ImageNumber,ObjectNumber,Parent_Nuclei,AreaShape_Area,Intensity_Mean_DNA\n"
        "1,1,1,100,0.5\n1,2,2,big,0.25\n1,3,3,300,0.125\n"
    )
    src = write_tree(tmp_path / "bad", cells=cells)
    with pytest.raises(InvalidInputError) as err:
        ingest(src, stored[0], progress=False)
    msg = str(err.value)
    assert (
        "Cells.csv" in msg and "'AreaShape_Area'" in msg and "'big'" in msg and "Metadata_" in msg
    )
    assert_unchanged(*stored)


def test_non_numeric_feature_in_sqlite(tmp_path: Path, stored) -> None:
    db = write_synthetic_sqlite(tmp_path / "s.sqlite", n_cells=40, n_features=6, cells_per_image=10)
    con = sqlite3.connect(db)
    con.execute("UPDATE Per_Nuclei SET Nuclei_Feature_0001 = 'n/a' WHERE ImageNumber = 3")
    con.commit()
    con.close()
    with pytest.raises(InvalidInputError) as err:
        ingest(db, stored[0], progress=False)
    msg = str(err.value)
    assert "s.sqlite" in msg and "'Per_Nuclei'" in msg and "'Nuclei_Feature_0001'" in msg
    assert_unchanged(*stored)


def test_non_numeric_feature_in_parquet(tmp_path: Path, stored) -> None:
    path = tmp_path / "p.parquet"
    pl.DataFrame(
        {"Metadata_Plate": ["P9"] * 2, "Metadata_Well": ["A1", "A2"], "Cells_X": ["1.5", "oops"]}
    ).write_parquet(path)
    with pytest.raises(InvalidInputError, match=r"p\.parquet.*'Cells_X'.*'oops'"):
        ingest(path, stored[0], progress=False)
    assert_unchanged(*stored)


def test_nan_and_inf_are_null_with_a_counted_warning(tmp_path: Path) -> None:
    cells = (
        "ImageNumber,ObjectNumber,Parent_Nuclei,AreaShape_Area,Intensity_Mean_DNA\n"
        "1,1,1,nan,0.5\n1,2,2,inf,-inf\n1,3,3,300,NaN\n"
    )
    src = write_tree(tmp_path / "nan", cells=cells)
    with pytest.warns(
        IngestWarning, match=r"2 NaN and 2 infinite value\(s\) in 2 feature column\(s\)"
    ):
        report = ingest(src, tmp_path / "s.duckdb", progress=False)
    assert report.rows == 3  # no row dropped
    with Store(tmp_path / "s.duckdb", read_only=True) as s:
        df = s.read("cells").sort("Metadata_ObjectNumber")
    assert df["Cells_AreaShape_Area"].to_list() == [None, None, 300.0]
    assert df["Cells_Intensity_Mean_DNA"].to_list() == [0.5, None, None]
    assert any("2 NaN and 2 infinite" in w for w in report.warnings)


def test_empty_csv_real_case_warns_and_keeps_the_rest(cytominer_db: Path, tmp_path: Path) -> None:
    """data_b/E17-4 has 0-byte Cells.csv and Nuclei.csv: skipped with a warning naming them."""
    tree = tmp_path / "data_b"
    shutil.copytree(cytominer_db / "data_b" / "E17-4", tree / "E17-4")
    shutil.copytree(cytominer_db / "data_b" / "A01-1", tree / "A01-1")
    with pytest.warns(IngestWarning) as record:
        report = ingest(tree, tmp_path / "s.duckdb", progress=False)
    text = "\n".join(str(w.message) for w in record)
    assert "E17-4/Cells.csv is empty (0 bytes)" in text
    assert "the folder's 10 Cytoplasm objects were left out" in text
    assert report.rows == 10


def test_only_empty_csvs_is_an_error(cytominer_db: Path, tmp_path: Path, stored) -> None:
    tree = tmp_path / "e"
    (tree / "s").mkdir(parents=True)
    shutil.copy(cytominer_db / "data_b" / "E17-4" / "Cells.csv", tree / "s" / "Cells.csv")
    shutil.copy(cytominer_db / "data_b" / "E17-4" / "Image.csv", tree / "s" / "Image.csv")
    with pytest.raises(
        EmptyInputError, match=r"holds no objects.*s/Cells.csv is empty \(0 bytes\)"
    ):
        ingest(tree, stored[0], progress=False)
    assert_unchanged(*stored)


def test_sqlite_that_is_not_cellprofiler(tmp_path: Path, stored) -> None:
    db = tmp_path / "shop.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE orders (id INTEGER, item TEXT)")
    con.execute("CREATE TABLE customers (id INTEGER, name TEXT)")
    con.commit()
    con.close()
    with pytest.raises(UnknownFormatError) as err:
        ingest(db, stored[0], progress=False)
    msg = str(err.value)
    assert "shop.sqlite" in msg and "customers, orders" in msg and "Per_Image" in msg
    assert_unchanged(*stored)


def test_file_that_is_not_sqlite(tmp_path: Path) -> None:
    bad = tmp_path / "x.sqlite"
    bad.write_bytes(b"not a database at all")
    with pytest.raises(UnknownFormatError, match=r"x\.sqlite.*not a SQLite database"):
        ingest(bad, tmp_path / "s.duckdb", progress=False, format="cellprofiler_sqlite")


def test_unknown_format_name_lists_valid_ones(tmp_path: Path) -> None:
    src = write_tree(tmp_path / "t")
    with pytest.raises(ValueError, match=r"unknown format 'xlsx'.*'cellprofiler_csv'"):
        ingest(src, tmp_path / "s.duckdb", format="xlsx", progress=False)


def test_store_locked_by_another_process(tmp_path: Path, stored) -> None:
    path = stored[0]
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from cellframe.store import Store
                s = Store({str(path)!r})
                print("ready", flush=True)
                time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        src = write_tree(
            tmp_path / "other", image="ImageNumber,Metadata_Plate,Metadata_Well\n1,P1,C1\n"
        )
        with pytest.raises(StoreLockedError, match="locked by another process"):
            ingest(src, path, progress=False)
    finally:
        holder.kill()
        holder.wait()
    assert_unchanged(*stored)


def test_ingest_killed_half_way_leaves_previous_state(tmp_path: Path) -> None:
    """SIGKILL a re-ingest while its transaction holds part of the rows: the plate is as before."""
    db = write_synthetic_sqlite(
        tmp_path / "big.sqlite", n_cells=3000, n_features=12, cells_per_image=50, plate="P1"
    )
    path = tmp_path / "store.duckdb"
    ingest(db, path, progress=False)
    with Store(path, read_only=True) as s:
        cells, provenance = s.read("cells"), s.provenance()
    assert cells.height == 3000
    marker = tmp_path / "half-way"
    script = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from cellframe.store import Store
        from cellframe.io import ingest

        original = Store.write

        def slow_write(self, table, data, **kwargs):
            def batches():
                for i, batch in enumerate(data):
                    yield batch
                    if i == 1:  # plate P1 deleted, two batches inserted, not committed
                        Path({str(marker)!r}).touch()
                        time.sleep(120)
            return original(self, table, batches(), **kwargs)

        Store.write = slow_write
        ingest({str(db)!r}, {str(path)!r}, progress=False, batch_rows=500, in_memory=False)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
    try:
        deadline = time.time() + 120
        while not marker.exists():
            assert proc.poll() is None, "the ingest ended before it was killed"
            assert time.time() < deadline, "the ingest never reached the middle of its write"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert_unchanged(path, cells, provenance)
    # The store is usable afterwards, and a finished re-ingest replaces the plate.
    report = ingest(db, path, progress=False)
    assert report.rows == 3000
    with Store(path, read_only=True) as s:
        assert s.sql("SELECT count(*) AS n FROM cells")["n"][0] == 3000
        assert len(s.provenance("cells")) == 2
