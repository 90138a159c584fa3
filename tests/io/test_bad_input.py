"""Bad input: each error names the file, table and column and says what to do; the store is untouched."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import cellframe
from cellframe.errors import (
    CorruptFileError,
    DanglingReferenceError,
    DuplicateColumnsError,
    DuplicateKeysError,
    EmptyInputError,
    IncompleteExportError,
    InvalidInputError,
    MissingColumnsError,
    StoreLockedError,
    TruncatedFileError,
    UnknownFormatError,
)
from cellframe.io import IngestOptions, IngestWarning, ingest
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
    report = ingest(src, stored[0], progress=False, options=IngestOptions(plate="P2"))
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
        ingest(
            bad,
            tmp_path / "s.duckdb",
            progress=False,
            options=IngestOptions(format="cellprofiler_sqlite"),
        )


def test_unknown_format_name_lists_valid_ones(tmp_path: Path) -> None:
    src = write_tree(tmp_path / "t")
    with pytest.raises(ValueError, match=r"unknown format 'xlsx'.*'cellprofiler_csv'"):
        ingest(src, tmp_path / "s.duckdb", progress=False, options=IngestOptions(format="xlsx"))


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
        from cellframe.io import IngestOptions, ingest

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
        ingest({str(db)!r}, {str(path)!r}, progress=False,
               options=IngestOptions(batch_rows=500, in_memory=False))
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


# ---------------------------------------------------------------------------
# The bad-input corpus: one defect per case, made from real CellProfiler files
# (the bundled JUMP site BR00121431-A02-1, 36 cells; and ../shared/data files
# where said), plus valid-but-unusual controls that must read like the clean
# files. Errors: the class, the file and the defect in the message, and a store
# whose bytes are unchanged. Successes: the warning's counts and exactly the
# expected rows.
# ---------------------------------------------------------------------------

DEMO_SITE = Path(cellframe.__file__).parent / "data/demo/cellprofiler/BR00121431/BR00121431-A02-1"
OBJECT_TABLES = ("Cells", "Cytoplasm", "Nuclei")


def _narrow(frame: pl.DataFrame, n_features: int = 12) -> pl.DataFrame:
    """Keys, links and the first features of a CellProfiler table (keeps the tests quick)."""
    keys = [
        c
        for c in frame.columns
        if c in ("ImageNumber", "ObjectNumber", "Number_Object_Number")
        or c.startswith(("Parent_", "Metadata_Plate", "Metadata_Well", "Metadata_Site"))
        or c in ("FileName_OrigDNA", "FileName_OrigRNA", "PathName_OrigDNA", "PathName_OrigRNA")
    ]
    features = [c for c in frame.columns if c.startswith(("AreaShape_", "Count_"))][:n_features]
    return frame.select(keys + features)


@pytest.fixture(scope="session")
def clean_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled JUMP site as plain CSV (LF line ends), narrowed to a few features."""
    root = tmp_path_factory.mktemp("corpus") / "clean"
    site = root / "BR00121431-A02-1"
    site.mkdir(parents=True)
    for name in ("Image", *OBJECT_TABLES):
        frame = pl.read_csv(DEMO_SITE / f"{name}.csv.gz", infer_schema=False)
        _narrow(frame).write_csv(site / f"{name}.csv")
    return root


@pytest.fixture(scope="session")
def clean_cells(clean_site: Path, tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    """The clean site as ingested, checked against a pandas join of its files."""
    path = tmp_path_factory.mktemp("clean-store") / "s.duckdb"
    ingest(clean_site, path, progress=False)
    with Store(path, read_only=True) as s:
        cells = s.read("cells").sort("Metadata_ObjectNumber")
    folder = clean_site / "BR00121431-A02-1"
    t = {n: pd.read_csv(folder / f"{n}.csv") for n in OBJECT_TABLES}
    ref = (
        t["Cytoplasm"]
        .merge(t["Cells"], left_on="Parent_Cells", right_on="ObjectNumber", suffixes=("", "_c"))
        .merge(t["Nuclei"], left_on="Parent_Nuclei", right_on="ObjectNumber", suffixes=("", "_n"))
        .sort_values("Parent_Cells")
    )
    assert cells.height == len(ref) == 36
    np.testing.assert_array_equal(
        cells["Cells_AreaShape_Area"].to_numpy(), ref["AreaShape_Area_c"].to_numpy(np.float32)
    )
    np.testing.assert_array_equal(
        cells["Nuclei_AreaShape_Area"].to_numpy(), ref["AreaShape_Area_n"].to_numpy(np.float32)
    )
    assert cells["Metadata_Well"].unique().to_list() == ["A02"]
    return cells


def make_case(clean_site: Path, tmp_path: Path, mutate) -> Path:
    """A copy of the clean tree with one defect made by ``mutate(site_folder)``."""
    root = tmp_path / "case"
    shutil.copytree(clean_site, root)
    mutate(root / "BR00121431-A02-1")
    return root


@pytest.fixture
def corpus_store(clean_site: Path, tmp_path: Path) -> tuple[Path, str]:
    """A store holding another plate already; returns its path and the SHA-256 of its bytes."""
    other = tmp_path / "other"
    shutil.copytree(clean_site, other)
    image = other / "BR00121431-A02-1" / "Image.csv"
    pl.read_csv(image, infer_schema=False).with_columns(
        pl.lit("OTHER").alias("Metadata_Plate")
    ).write_csv(image)
    path = tmp_path / "store.duckdb"
    ingest(other, path, progress=False)
    return path, sha256(path)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ingest_quietly(source: Path, store: Path, **kwargs) -> tuple[object, list[str]]:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        report = ingest(source, store, progress=False, **kwargs)
    return report, [str(w.message) for w in record if issubclass(w.category, IngestWarning)]


def stored_plate(store: Path, plate: str = "BR00121431") -> pl.DataFrame:
    with Store(store, read_only=True) as s:
        return s.sql(
            "SELECT * FROM cells WHERE Metadata_Plate = ? ORDER BY Metadata_ObjectNumber", [plate]
        )


def edit_lines(path: Path, edit) -> None:
    lines = path.read_text().split("\n")
    edit(lines)
    path.write_text("\n".join(lines))


def _cut_last_row(site: Path) -> None:
    data = (site / "Cells.csv").read_bytes()
    last = data.rstrip(b"\n").rfind(b"\n")
    (site / "Cells.csv").write_bytes(data[: last + 1 + (len(data) - last) // 2])


def _short_row_in_middle(site: Path) -> None:
    edit_lines(site / "Cells.csv", lambda L: L.__setitem__(5, ",".join(L[5].split(",")[:-4])))


def _cut_gzip(site: Path) -> None:
    data = gzip.compress((site / "Nuclei.csv").read_bytes())
    (site / "Nuclei.csv").unlink()
    (site / "Nuclei.csv.gz").write_bytes(data[: len(data) * 2 // 3])


def _header_only_nuclei(site: Path) -> None:
    edit_lines(site / "Nuclei.csv", lambda L: L.__delitem__(slice(1, None)))


def _duplicate_column(site: Path) -> None:
    def edit(lines: list[str]) -> None:
        header = lines[0].split(",")
        i = header.index("AreaShape_Compactness")
        header[i] = "AreaShape_Area"
        lines[0] = ",".join(header)

    edit_lines(site / "Cells.csv", edit)


def _prefixed_and_unprefixed(site: Path) -> None:
    edit_lines(
        site / "Nuclei.csv",
        lambda L: L.__setitem__(0, L[0].replace("AreaShape_Compactness", "Nuclei_AreaShape_Area")),
    )


def _duplicate_key(site: Path) -> None:
    edit_lines(site / "Nuclei.csv", lambda L: L.insert(3, L[2]))


def _no_object_number(site: Path) -> None:
    frame = pl.read_csv(site / "Cytoplasm.csv", infer_schema=False)
    frame.drop("ObjectNumber").write_csv(site / "Cytoplasm.csv")


def _dangling_parent(site: Path) -> None:
    frame = pl.read_csv(site / "Cytoplasm.csv", infer_schema=False)
    frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 4)
        .then(pl.lit("999"))
        .otherwise(pl.col("Parent_Cells"))
        .alias("Parent_Cells")
    ).write_csv(site / "Cytoplasm.csv")


def _duplicate_image_row(site: Path) -> None:
    edit_lines(site / "Image.csv", lambda L: L.insert(2, L[1]))


def _cut_at_row_boundary(site: Path) -> None:
    edit_lines(site / "Cytoplasm.csv", lambda L: L.__delitem__(slice(30, -1)))


def _no_cells_file(site: Path) -> None:
    second = site.parent / "BR00121431-A02-2"
    shutil.copytree(site, second)
    (second / "Cells.csv").unlink()


ERRORS = {
    # case: (mutate, exception class, file named, phrases of the message)
    "truncated_mid_row": (
        _cut_last_row,
        TruncatedFileError,
        "Cells.csv",
        [
            "line 37 (the last)",
            "fields of the header and no line break",
            "cut in the middle of a row",
        ],
    ),
    "short_row_inside": (
        _short_row_in_middle,
        TruncatedFileError,
        "Cells.csv",
        ["line 6 holds", "short row"],
    ),
    "gzip_cut_short": (
        _cut_gzip,
        TruncatedFileError,
        "Nuclei.csv.gz",
        ["(Nuclei table): the gzip stream is damaged or ends before its end marker", "cut short"],
    ),
    "header_only_compartment": (
        _header_only_nuclei,
        IncompleteExportError,
        "Nuclei.csv",
        ["holds a header but no rows", "Cells.csv holds 36", "Cytoplasm.csv holds 36"],
    ),
    "duplicate_column": (
        _duplicate_column,
        DuplicateColumnsError,
        "Cells.csv",
        ["names column 'AreaShape_Area' 2 times", "keep one of them"],
    ),
    "prefixed_and_plain_column": (
        _prefixed_and_unprefixed,
        DuplicateColumnsError,
        "Nuclei.csv",
        ["'AreaShape_Area' and 'Nuclei_AreaShape_Area'", "keep one of them"],
    ),
    "duplicate_key": (
        _duplicate_key,
        DuplicateKeysError,
        "Nuclei.csv",
        [
            "ImageNumber 10, ObjectNumber 2 names 2 Nuclei objects (lines 3, 4)",
            "remove the repeated rows",
        ],
    ),
    "duplicate_image_row": (
        _duplicate_image_row,
        DuplicateKeysError,
        "Image.csv (Image table)",
        ["ImageNumber 10 names 2 image rows", "counted twice", "remove the repeated rows"],
    ),
    "missing_object_number": (
        _no_object_number,
        MissingColumnsError,
        "Cytoplasm.csv",
        ["'ObjectNumber'", "'Number_Object_Number' is there", "re-export"],
    ),
    "dangling_parent": (
        _dangling_parent,
        DanglingReferenceError,
        "Cytoplasm.csv",
        [
            "column 'Parent_Cells'",
            "names Cells object 999",
            "Cells.csv",
            "export the object tables",
        ],
    ),
    "folder_without_a_compartment": (
        _no_cells_file,
        IncompleteExportError,
        "BR00121431-A02-2",
        ["has no Cells.csv", "compartments=['Cytoplasm', 'Nuclei']"],
    ),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_corpus_error_names_file_and_defect_and_leaves_store(
    case: str, clean_site: Path, clean_cells: pl.DataFrame, corpus_store, tmp_path: Path
) -> None:
    mutate, error, file, phrases = ERRORS[case]
    source = make_case(clean_site, tmp_path, mutate)
    path, digest = corpus_store
    with pytest.raises(error) as err:
        ingest(source, path, progress=False)
    msg = str(err.value)
    assert file in msg, msg
    for phrase in phrases:
        assert phrase in msg, msg
    assert sha256(path) == digest
    # The clean tree still goes in, beside the plate already there.
    ingest_quietly(clean_site, path)
    assert_frame_equal(stored_plate(path), clean_cells)
    assert stored_plate(path, "OTHER").height == 36


def _nan_inf_empty(site: Path) -> None:
    def edit(lines: list[str]) -> None:
        header = lines[0].split(",")
        row = lines[1].split(",")
        row[header.index("AreaShape_Area")] = "nan"
        row[header.index("AreaShape_Compactness")] = "inf"
        row[header.index("AreaShape_Eccentricity")] = ""
        lines[1] = ",".join(row)
        row = lines[2].split(",")
        row[header.index("AreaShape_Area")] = "-inf"
        lines[2] = ",".join(row)

    edit_lines(site / "Cells.csv", edit)


def test_corpus_nan_inf_and_empty_fields_counted_apart(
    clean_site: Path, clean_cells: pl.DataFrame, tmp_path: Path
) -> None:
    source = make_case(clean_site, tmp_path, _nan_inf_empty)
    report, messages = ingest_quietly(source, tmp_path / "s.duckdb")
    text = "\n".join(messages)
    assert "1 NaN and 2 infinite value(s) in 2 feature column(s) were stored as null" in text
    assert "1 empty field(s) in 1 feature column(s) are null" in text
    assert "Cells.csv" in text
    got = stored_plate(tmp_path / "s.duckdb")
    assert got.height == report.rows == 36  # no row dropped
    cells = clean_site / "BR00121431-A02-1" / "Cells.csv"
    first, second = pl.read_csv(cells)["ObjectNumber"][:2].to_list()
    changed = {
        "Cells_AreaShape_Area",
        "Cells_AreaShape_Compactness",
        "Cells_AreaShape_Eccentricity",
    }
    by_object = got.filter(pl.col("Metadata_ObjectNumber") == first)
    assert all(by_object[c][0] is None for c in changed)
    assert got.filter(pl.col("Metadata_ObjectNumber") == second)["Cells_AreaShape_Area"][0] is None
    # Every other value is the clean file's.
    rest = [c for c in got.columns if c not in changed]
    assert_frame_equal(got.select(rest), clean_cells.select(rest))


def _gzip_named_csv(site: Path) -> None:
    (site / "Cells.csv").write_bytes(gzip.compress((site / "Cells.csv").read_bytes()))


def _semicolons(site: Path) -> None:
    (site / "Nuclei.csv").write_text((site / "Nuclei.csv").read_text().replace(",", ";"))


def _tabs(site: Path) -> None:
    (site / "Cytoplasm.csv").write_text((site / "Cytoplasm.csv").read_text().replace(",", "\t"))


def _bom_crlf(site: Path) -> None:
    for f in site.glob("*.csv"):
        f.write_bytes(b"\xef\xbb\xbf" + f.read_bytes().replace(b"\n", b"\r\n"))


def _reordered(site: Path) -> None:
    for name in OBJECT_TABLES:
        frame = pl.read_csv(site / f"{name}.csv", infer_schema=False)
        frame.select(list(reversed(frame.columns))).write_csv(site / f"{name}.csv")


def _rows_shuffled(site: Path) -> None:
    frame = pl.read_csv(site / "Cells.csv", infer_schema=False)
    frame.reverse().write_csv(site / "Cells.csv")


RECOVERED = {
    # case: (mutate, phrases of the one warning expected; None: no warning at all)
    "gzip_named_csv": (
        _gzip_named_csv,
        [
            "1 file(s) named .csv hold gzip-compressed data and were read by their magic bytes",
            "Cells.csv",
        ],
    ),
    "semicolon_delimiter": (
        _semicolons,
        [
            "1 file(s) are not comma-separated; the delimiter was sniffed",
            "Nuclei.csv (semicolon ';')",
        ],
    ),
    "tab_delimiter": (_tabs, ["delimiter was sniffed", "Cytoplasm.csv (tab)"]),
    "bom_and_crlf": (_bom_crlf, None),
    "reordered_columns": (_reordered, None),
    "reordered_rows": (_rows_shuffled, None),
}


@pytest.mark.parametrize("case", sorted(RECOVERED))
def test_corpus_recovered_or_unusual_input_reads_like_the_clean_file(
    case: str, clean_site: Path, clean_cells: pl.DataFrame, tmp_path: Path
) -> None:
    mutate, phrases = RECOVERED[case]
    source = make_case(clean_site, tmp_path, mutate)
    _, messages = ingest_quietly(source, tmp_path / "s.duckdb")
    if phrases is None:
        assert messages == []
    else:
        assert len(messages) == 1, messages
        for phrase in phrases:
            assert phrase in messages[0], messages[0]
    got = stored_plate(tmp_path / "s.duckdb")
    # Columns keep the file's order in a new table; the values are the clean file's.
    assert sorted(got.columns) == sorted(clean_cells.columns)
    assert_frame_equal(got.select(clean_cells.columns), clean_cells)


def test_corpus_bom_crlf_on_the_full_width_site(tmp_path: Path) -> None:
    """The bundled files as they are (1,940 columns, CRLF, gzip) against a BOM + CRLF copy."""
    plain = tmp_path / "plain" / "BR00121431-A02-1"
    bom = tmp_path / "bom" / "BR00121431-A02-1"
    plain.mkdir(parents=True)
    bom.mkdir(parents=True)
    for name in ("Image", *OBJECT_TABLES):
        data = gzip.decompress((DEMO_SITE / f"{name}.csv.gz").read_bytes())
        assert b"\r\n" in data
        (plain / f"{name}.csv").write_bytes(data.replace(b"\r\n", b"\n"))
        (bom / f"{name}.csv").write_bytes(b"\xef\xbb\xbf" + data)
    _, m1 = ingest_quietly(plain.parent, tmp_path / "a.duckdb")
    _, m2 = ingest_quietly(bom.parent, tmp_path / "b.duckdb")
    assert m1 == m2 == []
    a, b = stored_plate(tmp_path / "a.duckdb"), stored_plate(tmp_path / "b.duckdb")
    assert a.height == 36 and a.width > 1900
    assert_frame_equal(a, b)


def _empty_site(site: Path) -> None:
    empty = site.parent / "BR00121431-A02-9"
    empty.mkdir()
    image = pl.read_csv(site / "Image.csv", infer_schema=False)
    counts = [c for c in image.columns if c.startswith("Count_")]
    assert {"Count_Cells", "Count_Cytoplasm", "Count_Nuclei"} <= set(counts)
    image.with_columns(
        pl.lit("9").alias("Metadata_Site"), *[pl.lit("0").alias(c) for c in counts]
    ).write_csv(empty / "Image.csv")
    for name in OBJECT_TABLES:
        header = (site / f"{name}.csv").read_text().split("\n")[0]
        (empty / f"{name}.csv").write_text(header + "\n")


def test_corpus_empty_site_is_recorded_with_zero_cells(
    clean_site: Path, clean_cells: pl.DataFrame, tmp_path: Path
) -> None:
    source = make_case(clean_site, tmp_path, _empty_site)
    store = tmp_path / "s.duckdb"
    _, messages = ingest_quietly(source, store)
    assert len(messages) == 1
    assert "1 image(s) in" in messages[0] and "hold no objects (empty sites" in messages[0]
    assert "site 9" in messages[0] and "recorded in the store's images table" in messages[0]
    assert_frame_equal(stored_plate(store), clean_cells)
    with Store(store, read_only=True) as s:
        per_site = s.sql(
            "SELECT i.Metadata_Site AS site, count(DISTINCT i.Channel) AS channels, "
            "(SELECT count(*) FROM cells c WHERE c.Metadata_Site = i.Metadata_Site) AS cells "
            "FROM images i GROUP BY i.Metadata_Site ORDER BY 1"
        )
        paths = s.sql("SELECT Path FROM images WHERE Metadata_Site = 9 ORDER BY Channel")["Path"]
    assert per_site.rows() == [(1, 2, 36), (9, 2, 0)]
    image = pl.read_csv(clean_site / "BR00121431-A02-1" / "Image.csv")
    assert paths.to_list() == [
        f"{image['PathName_OrigDNA'][0]}/{image['FileName_OrigDNA'][0]}",
        f"{image['PathName_OrigRNA'][0]}/{image['FileName_OrigRNA'][0]}",
    ]


def test_corpus_object_table_cut_between_rows_is_counted(
    clean_site: Path, clean_cells: pl.DataFrame, tmp_path: Path
) -> None:
    """Cytoplasm.csv cut after its 29th row: Image.csv's Count_Cytoplasm (36) disagrees."""
    source = make_case(clean_site, tmp_path, _cut_at_row_boundary)
    report, messages = ingest_quietly(source, tmp_path / "s.duckdb")
    assert report.rows == 29
    text = "\n".join(messages)
    assert "1 image(s) hold another number of Cytoplasm objects than the image table counts" in text
    assert "Cytoplasm.csv (Cytoplasm table) holds 29 of ImageNumber 10" in text
    assert "Image.csv (Image table) counts 36" in text and "interrupted copy" in text
    # The 7 Cells and 7 Nuclei objects without their Cytoplasm are counted too.
    assert "7 of 36 Cells objects" in text and "7 of 36 Nuclei objects" in text
    got = stored_plate(tmp_path / "s.duckdb")
    kept = clean_cells.filter(pl.col("Metadata_Cytoplasm_Number_Object_Number") <= 29)
    assert_frame_equal(got, kept.sort("Metadata_ObjectNumber"))


def test_corpus_nuclei_no_cell_names_are_counted(
    clean_site: Path, clean_cells: pl.DataFrame, tmp_path: Path
) -> None:
    """A Nuclei object that no Cytoplasm object names: left out, and counted."""

    def extra_nucleus(site: Path) -> None:
        edit_lines(
            site / "Nuclei.csv",
            lambda L: L.insert(len(L) - 1, ",".join(["10", "99", *L[1].split(",")[2:]])),
        )
        image = pl.read_csv(site / "Image.csv", infer_schema=False)
        image.with_columns(pl.lit("37").alias("Count_Nuclei")).write_csv(site / "Image.csv")

    source = make_case(clean_site, tmp_path, extra_nucleus)
    _, messages = ingest_quietly(source, tmp_path / "s.duckdb")
    assert len(messages) == 1
    assert "1 of 37 Nuclei objects in" in messages[0]
    assert "are named by no Cytoplasm object (Parent_Nuclei)" in messages[0]
    assert_frame_equal(stored_plate(tmp_path / "s.duckdb"), clean_cells)


def test_corpus_short_row_of_real_cytominer_data(
    cytominer_db: Path, tmp_path: Path, corpus_store
) -> None:
    """cytominer-database's data_b/J21-2/Cells.csv: its one row has 564 of 586 fields."""
    tree = tmp_path / "j21"
    shutil.copytree(cytominer_db / "data_b" / "J21-2", tree / "J21-2")
    path, digest = corpus_store
    with pytest.raises(
        TruncatedFileError,
        match=r"J21-2/Cells\.csv \(Cells table\): line 2 \(the last\) holds 564 of the 586 fields",
    ):
        ingest(tree, path, progress=False)
    assert sha256(path) == digest


# SQLite: the real NF1 CellProfiler database, damaged in one way each.


def _nf1_copy(nf1_sqlite: Path, tmp_path: Path) -> Path:
    db = tmp_path / "nf1.sqlite"
    shutil.copy(nf1_sqlite, db)
    db.chmod(0o644)
    return db


def test_corpus_corrupt_sqlite_page(nf1_sqlite: Path, tmp_path: Path, corpus_store) -> None:
    db = _nf1_copy(nf1_sqlite, tmp_path)
    data = bytearray(db.read_bytes())
    page = len(data) // 2 // 4096 * 4096
    data[page : page + 4096] = b"\xde\xad\xbe\xef" * 1024
    db.write_bytes(bytes(data))
    path, digest = corpus_store
    with pytest.raises(CorruptFileError) as err:
        ingest(db, path, progress=False)
    msg = str(err.value)
    assert "nf1.sqlite is a damaged SQLite database: PRAGMA quick_check reports" in msg
    assert "malformed" in msg and ".recover" in msg
    assert sha256(path) == digest


def test_corpus_sqlite_cut_short(nf1_sqlite: Path, tmp_path: Path, corpus_store) -> None:
    db = _nf1_copy(nf1_sqlite, tmp_path)
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])
    path, digest = corpus_store
    with pytest.raises(
        CorruptFileError, match=r"nf1\.sqlite is [\d,]+ bytes but its SQLite header records"
    ):
        ingest(db, path, progress=False)
    assert sha256(path) == digest


def test_corpus_sqlite_damage_found_while_reading_a_large_file(
    nf1_sqlite: Path, tmp_path: Path, corpus_store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above QUICK_CHECK_MAX_BYTES only the image table is checked first; damage met later is named."""
    from cellframe.io import cellprofiler_sqlite

    monkeypatch.setattr(cellprofiler_sqlite, "QUICK_CHECK_MAX_BYTES", 1)
    db = _nf1_copy(nf1_sqlite, tmp_path)
    con = sqlite3.connect(db)
    root = con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'Per_Nuclei'").fetchone()[0]
    page_size = con.execute("PRAGMA page_size").fetchone()[0]
    con.close()
    data = bytearray(db.read_bytes())
    start = (root - 1) * page_size
    data[start : start + page_size] = b"\xde\xad\xbe\xef" * (page_size // 4)
    db.write_bytes(bytes(data))
    path, digest = corpus_store
    with pytest.raises(
        CorruptFileError,
        match=r"nf1\.sqlite, table 'Per_Nuclei': SQLite reports a damaged database",
    ):
        ingest(db, path, progress=False)
    assert sha256(path) == digest


def test_corpus_sqlite_without_per_cells(nf1_sqlite: Path, tmp_path: Path, corpus_store) -> None:
    db = _nf1_copy(nf1_sqlite, tmp_path)
    con = sqlite3.connect(db)
    con.execute("DROP TABLE Per_Cells")
    con.commit()
    expected = con.execute(
        "SELECT count(*) FROM Per_Cytoplasm c JOIN Per_Nuclei n ON n.ImageNumber = c.ImageNumber "
        "AND n.Nuclei_Number_Object_Number = c.Cytoplasm_Parent_Nuclei"
    ).fetchone()[0]
    con.close()
    path, digest = corpus_store
    with pytest.raises(IncompleteExportError) as err:
        ingest(db, path, progress=False)
    msg = str(err.value)
    assert "nf1.sqlite has no table for the Cells compartment" in msg
    assert (
        "compartments=['Cytoplasm', 'Nuclei']" in msg and "--compartments Cytoplasm,Nuclei" in msg
    )
    assert sha256(path) == digest
    # Listing the compartments the file has takes exactly those.
    fresh = tmp_path / "fresh.duckdb"
    report, _ = ingest_quietly(
        db, fresh, options=IngestOptions(compartments=["Cytoplasm", "Nuclei"])
    )
    assert report.rows == expected == 242
    with Store(fresh, read_only=True) as s:
        cols = s.columns("cells")
    assert not any(c.startswith("Cells_") for c in cols)
    assert any(c.startswith("Cytoplasm_") for c in cols) and any(
        c.startswith("Nuclei_") for c in cols
    )


def _damage_sqlite(db: Path, sql: str, *, unordered: bool) -> None:
    """Apply ``sql``; with ``unordered``, move image 1's rows to the end of every object table."""
    con = sqlite3.connect(db)
    con.execute(sql)
    if unordered:
        for table in ("Per_Cells", "Per_Cytoplasm", "Per_Nuclei"):
            con.execute(f"CREATE TEMP TABLE moved AS SELECT * FROM {table} WHERE ImageNumber = 1")
            con.execute(f"DELETE FROM {table} WHERE ImageNumber = 1")
            con.execute(f"INSERT INTO {table} SELECT * FROM moved")
            con.execute("DROP TABLE moved")
    con.commit()
    con.close()


def _read_in_image_order(db: Path) -> bool:
    from cellframe.io import CellProfilerSQLite

    reader = CellProfilerSQLite(db)
    con = reader._connect()
    try:
        return reader._in_image_order(con, reader._image(con)) is not None
    finally:
        con[1].close()
        con[0].close()


@pytest.mark.parametrize(
    ("unordered", "in_memory"),
    [(False, None), (True, True), (True, False)],
    ids=["merged", "staged-polars", "staged-duckdb"],
)
def test_corpus_sqlite_duplicate_key_and_dangling_parent(
    tmp_path: Path, corpus_store, unordered: bool, in_memory: bool | None
) -> None:
    """Synthetic ExportToDatabase files (no ../shared needed): each defect named with its table."""
    path, digest = corpus_store
    db = write_synthetic_sqlite(tmp_path / "d.sqlite", n_cells=60, n_features=4, cells_per_image=10)
    _damage_sqlite(
        db,
        "UPDATE Per_Nuclei SET Nuclei_Number_Object_Number = 2 "
        "WHERE ImageNumber = 3 AND Nuclei_Number_Object_Number = 3",
        unordered=unordered,
    )
    assert _read_in_image_order(db) is not unordered
    with pytest.raises(
        DuplicateKeysError,
        match=r"d\.sqlite, table 'Per_Nuclei': ImageNumber 3, ObjectNumber 2 names 2 Nuclei objects",
    ):
        ingest(db, path, progress=False, options=IngestOptions(in_memory=in_memory))
    db = write_synthetic_sqlite(tmp_path / "p.sqlite", n_cells=60, n_features=4, cells_per_image=10)
    _damage_sqlite(
        db,
        "UPDATE Per_Cytoplasm SET Cytoplasm_Parent_Cells = 77 "
        "WHERE ImageNumber = 4 AND Cytoplasm_Number_Object_Number = 5",
        unordered=unordered,
    )
    with pytest.raises(DanglingReferenceError) as err:
        ingest(db, path, progress=False, options=IngestOptions(in_memory=in_memory))
    msg = str(err.value)
    assert "p.sqlite, table 'Per_Cytoplasm': column 'Parent_Cells'" in msg
    assert "ImageNumber 4, ObjectNumber 5 names Cells object 77" in msg and "'Per_Cells'" in msg
    assert sha256(path) == digest


def test_corpus_cli_error_is_one_line_exit_2(
    clean_site: Path, tmp_path: Path, corpus_store
) -> None:
    source = make_case(clean_site, tmp_path, _duplicate_key)
    path, digest = corpus_store
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cellframe.cli",
            "ingest",
            str(source),
            "--store",
            str(path),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Nuclei.csv" in lines[0] and "ObjectNumber 2 names 2 Nuclei objects" in lines[0]
    assert sha256(path) == digest


def test_empty_site_without_file_names_is_named_in_the_warning(tmp_path: Path) -> None:
    src = write_tree(tmp_path / "t")
    empty = src / "site2"
    empty.mkdir()
    (empty / "Image.csv").write_text(
        "ImageNumber,Metadata_Plate,Metadata_Well,Metadata_Site\n1,P1,B3,2\n"
    )
    for name in ("Cells", "Cytoplasm", "Nuclei"):
        header = (src / "site1" / f"{name}.csv").read_text().split("\n")[0]
        (empty / f"{name}.csv").write_text(header + "\n")
    report, messages = ingest_quietly(src, tmp_path / "s.duckdb")
    assert report.rows == 3
    assert len(messages) == 1
    assert "1 image(s) in" in messages[0] and "plate P1, well B03, site 2" in messages[0]
    assert "1 of them lack a plate, well, site or image file name" in messages[0]
    assert "this warning is their only record" in messages[0]


def test_sqlite_image_without_objects_is_recorded(tmp_path: Path) -> None:
    """An ExportToDatabase image row with no objects: in the images table, with 0 cells."""
    db = write_synthetic_sqlite(tmp_path / "e.sqlite", n_cells=40, n_features=3, cells_per_image=10)
    con = sqlite3.connect(db)
    con.execute("CREATE TEMP TABLE extra AS SELECT * FROM Per_Image WHERE ImageNumber = 1")
    con.execute("UPDATE extra SET ImageNumber = 99, Image_Metadata_Site = 99")
    con.execute("INSERT INTO Per_Image SELECT * FROM extra")
    con.commit()
    n_images = con.execute("SELECT count(*) FROM Per_Image").fetchone()[0]
    con.close()
    report, messages = ingest_quietly(db, tmp_path / "s.duckdb")
    assert report.rows == 40
    assert len(messages) == 1 and "1 image(s) in" in messages[0] and "site 99" in messages[0]
    with Store(tmp_path / "s.duckdb", read_only=True) as s:
        sites = s.sql(
            "SELECT i.Metadata_Well AS well, i.Metadata_Site AS site, (SELECT count(*) FROM "
            "cells c WHERE c.Metadata_Well = i.Metadata_Well AND c.Metadata_Site = "
            "i.Metadata_Site) AS n FROM images i ORDER BY well, site"
        )
    assert sites.height == n_images == 5
    assert sites.filter(pl.col("site") == 99)["n"].to_list() == [0]
    assert sites["n"].sum() == 40


def test_corpus_bundled_gzip_cut_after_its_header(tmp_path: Path, corpus_store) -> None:
    """The bundled Cells.csv.gz cut at two thirds: its start reads, the read names the cut."""
    site = tmp_path / "cut" / "BR00121431-A02-1"
    shutil.copytree(DEMO_SITE, site)
    data = (site / "Cells.csv.gz").read_bytes()
    (site / "Cells.csv.gz").write_bytes(data[: len(data) * 2 // 3])
    path, digest = corpus_store
    with pytest.raises(TruncatedFileError) as err:
        ingest(site.parent, path, progress=False)
    msg = str(err.value)
    assert "Cells.csv.gz (Cells table): the gzip stream is damaged or ends before" in msg
    assert "cut short" in msg
    assert sha256(path) == digest
