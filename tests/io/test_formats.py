"""Parquet/CSV profiles, DeepProfiler .npz and IN Carta CSV, checked against pandas/numpy/pycytominer."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cellframe.columns import (
    FEATURE_DTYPE,
    IMAGE_NUMBER,
    OBJECT_NUMBER,
    PLATE,
    SITE,
    WELL,
    feature_columns,
)
from cellframe.io import (
    CellProfilerSQLite,
    DeepProfilerNPZ,
    InCartaCSV,
    ProfilesFile,
    detect_format,
)


def collect(reader) -> pl.DataFrame:
    return pl.concat(list(reader.batches()))


def test_sq00014613_parity_sqlite_parquet_csv(sq14613: Path) -> None:
    """The same two cells as cytominer-database SQLite, pycytominer Parquet and CSV.gz."""
    parquet = collect(ProfilesFile(sq14613.with_suffix(".parquet")))
    csv = collect(ProfilesFile(sq14613.with_suffix(".csv.gz")))
    db = collect(CellProfilerSQLite(sq14613.with_suffix(".sqlite")))
    assert parquet.height == csv.height == db.height == 2
    features = feature_columns(db)
    # Identical feature sets in all three (pandas' index column is dropped from the Parquet).
    assert feature_columns(parquet) == feature_columns(csv)
    assert sorted(feature_columns(parquet)) == sorted(features)
    schema = parquet.schema
    assert all(schema[c] == FEATURE_DTYPE for c in features)
    key = [IMAGE_NUMBER, OBJECT_NUMBER]
    for other in (parquet, csv):
        assert other[PLATE].to_list() == ["SQ00014613"] * 2
        assert other[WELL].to_list() == ["A01"] * 2
    # Values: Parquet == CSV exactly; SQLite == Parquet within the CSV/float32 rounding.
    assert_frame_equal(
        parquet.sort(key).select(key + features), csv.sort(key).select(key + features)
    )
    a = parquet.sort(key).select(features).to_numpy()
    b = db.sort(key).select(features).to_numpy()
    np.testing.assert_allclose(a, b, rtol=1e-6, equal_nan=True)
    # And the Parquet against pandas directly.
    ref = pd.read_parquet(sq14613.with_suffix(".parquet")).sort_values(["Metadata_ImageNumber"])
    np.testing.assert_array_equal(
        parquet.sort(key)["Cells_AreaShape_Area"].to_numpy(),
        ref["Cells_AreaShape_Area"].to_numpy(np.float32),
    )
    assert parquet.sort(key)[OBJECT_NUMBER].to_list() == ref["Metadata_ObjectNumber_cells"].tolist()


def test_files_in_a_folder_with_glob_characters(sq14613: Path, tmp_path: Path) -> None:
    """Polars reads a plain path as a glob by default; "[x]" in a folder name must not matter."""
    import shutil

    folder = tmp_path / "plate [1] *{a}"
    folder.mkdir()
    for suffix in (".parquet", ".csv.gz", ".sqlite"):
        shutil.copy(sq14613.with_suffix(suffix), folder / sq14613.with_suffix(suffix).name)
    moved = folder / sq14613.name
    for suffix, reader in ((".parquet", ProfilesFile), (".csv.gz", ProfilesFile)):
        assert_frame_equal(
            collect(reader(moved.with_suffix(suffix))),
            collect(reader(sq14613.with_suffix(suffix))),
        )
    assert_frame_equal(
        collect(CellProfilerSQLite(moved.with_suffix(".sqlite"))),
        collect(CellProfilerSQLite(sq14613.with_suffix(".sqlite"))),
    )


def test_deepprofiler_project_matches_numpy_and_pycytominer(pct: Path) -> None:
    from pycytominer.cyto_utils.load import load_npz_features

    root = pct / "DeepProfiler_example_data" / "SQ00014812_and_SQ00014813"
    assert detect_format(root) == "deepprofiler"
    df = collect(DeepProfilerNPZ(root)).sort(PLATE, WELL, SITE, OBJECT_NUMBER)
    files = sorted(root.rglob("*.npz"))
    arrays = [np.load(f, allow_pickle=True) for f in files]
    assert df.height == sum(a["features"].shape[0] for a in arrays) == 337
    assert len(feature_columns(df)) == 6400
    # Site 5 of A01 of SQ00014812: rows in file order, features as stored, locations kept.
    z = np.load(root / "outputs/results/features/SQ00014812/A01_5.npz", allow_pickle=True)
    site = df.filter(
        (pl.col(WELL) == "A01") & (pl.col(SITE) == 5) & (pl.col(PLATE) == "SQ00014812")
    )
    np.testing.assert_array_equal(site.select(feature_columns(df)).to_numpy(), z["features"])
    np.testing.assert_array_equal(
        site["Metadata_Location_Center_X"].to_numpy(), z["locations"][:, 0]
    )
    assert site[OBJECT_NUMBER].to_list() == list(range(1, z["features"].shape[0] + 1))
    # Feature names as pycytominer's load_npz_features names them.
    ref = load_npz_features(str(root / "outputs/results/features/SQ00014812/A01_5.npz"))
    ref_features = [c for c in ref.columns if not str(c).startswith("Metadata_")]
    assert feature_columns(df) == ref_features
    assert site["Metadata_Treatment"][0] == "DMSO@NA"


def test_deepprofiler_single_file_with_text_site(pct: Path) -> None:
    path = pct / "DeepProfiler_example_data" / "Week1_22123" / "Week1_22123_B02_s1.npz"
    df = collect(DeepProfilerNPZ(path))
    z = np.load(path, allow_pickle=True)
    assert df.shape == (206, 4 + 1 + 50)  # keys, Metadata_Model, cnn_0 ... cnn_49
    assert df[SITE].unique().to_list() == [1]  # "s1"
    np.testing.assert_array_equal(df.select(feature_columns(df)).to_numpy(), z["features"])


def test_incarta_files_are_plates(cpo: Path) -> None:
    root = cpo / "in-carta" / "colas-lab"
    assert detect_format(root) == "incarta"
    df = collect(InCartaCSV(root))
    files = sorted(root.glob("*.csv"))
    refs = [pd.read_csv(f) for f in files]
    assert df.height == sum(len(r) for r in refs) == 576
    assert sorted(df[PLATE].unique().to_list()) == sorted({r["Plate ID"][0] for r in refs})
    # "C - 3" -> "C03"
    labels = {label for r in refs for label in r["WELL LABEL"]}
    expected_wells = {f"{x.split(' - ')[0]}{int(x.split(' - ')[1]):02d}" for x in labels}
    assert set(df[WELL].unique().to_list()) == expected_wells
    assert "C03" in expected_wells
    measurements = [
        c
        for c in refs[0].columns
        if c
        not in (
            "OBJECT ID",
            "Row",
            "Column",
            "FOV",
            "WELL LABEL",
            "Z",
            "T",
            "Class Name",
            "Class Color",
            "Ancestry Path",
            "Plate ID",
            "Slice Algorithm",
            "Slice Indicator",
        )
    ]
    assert len(feature_columns(df)) == len(measurements)
    ref = refs[0]
    got = df.filter(pl.col(PLATE) == ref["Plate ID"][0]).sort(
        "Metadata_Row", "Metadata_Column", SITE, OBJECT_NUMBER
    )
    ref = ref.sort_values(["Row", "Column", "FOV", "OBJECT ID"])
    np.testing.assert_array_equal(
        got["Primary_Target_Area_wv1"].to_numpy(),
        ref["Primary Target Area wv1"].to_numpy(np.float32),
    )
    assert got[SITE].to_list() == ref["FOV"].tolist()


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        (
            "cellprofiler-outputs/tests/data/cellprofiler/NF1_SchwannCell_data/all_cellprofiler.sqlite",
            "cellprofiler_sqlite",
        ),
        ("cellprofiler-outputs/tests/data/cytominer-database/data_b", "cellprofiler_csv"),
        ("cellprofiler-outputs/tests/data/cellprofiler/ExampleHuman/Cells.csv", "cellprofiler_csv"),
        (
            "pycytominer-testdata/tests/test_data/cytominer_database_example_data/test_SQ00014613.parquet",
            "profiles",
        ),
        (
            "pycytominer-testdata/tests/test_data/cytominer_database_example_data/test_SQ00014613.csv.gz",
            "profiles",
        ),
        (
            "pycytominer-testdata/tests/test_data/DeepProfiler_example_data/Week1_22123/Week1_22123_B02_s1.npz",
            "deepprofiler",
        ),
    ],
)
def test_detect_format(shared_data: Path, relative: str, expected: str) -> None:
    assert detect_format(shared_data / relative) == expected


def test_sqlite_layout_detection(sq14613: Path, nf1_sqlite: Path) -> None:
    assert CellProfilerSQLite(nf1_sqlite).layout == "cellprofiler"
    assert CellProfilerSQLite(sq14613.with_suffix(".sqlite")).layout == "cytominer-database"
    con = sqlite3.connect(nf1_sqlite)
    assert {"Per_Image", "Per_Cells"} <= {
        r[0] for r in con.execute("SELECT name FROM sqlite_master")
    }


def test_incarta_cut_copy_and_gzip_are_named(cpo: Path, tmp_path: Path) -> None:
    """IN Carta files get the CSV checks of the CellProfiler reader: a cut row, gzip by magic."""
    import gzip

    from cellframe.errors import TruncatedFileError

    src = sorted((cpo / "in-carta" / "colas-lab").glob("*Day0*.csv"))[0]
    clean = collect(InCartaCSV(src))
    cut = tmp_path / "cut" / src.name
    cut.parent.mkdir()
    data = src.read_bytes()
    cut.write_bytes(data[: len(data) - 40])
    with pytest.raises(
        TruncatedFileError, match=r"cut/Test 0 Day0.*\(IN Carta objects\): line 145 \(the last\)"
    ):
        collect(InCartaCSV(cut))
    packed = tmp_path / "gz" / src.name
    packed.parent.mkdir()
    packed.write_bytes(gzip.compress(data))
    reader = InCartaCSV(packed)
    assert_frame_equal(collect(reader), clean)
    assert any(
        "1 file(s) named .csv hold gzip-compressed data" in m for m in reader.issues.summary()
    )
