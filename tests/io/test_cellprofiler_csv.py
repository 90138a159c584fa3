"""CellProfiler CSV trees, checked against the CSV files read with pandas."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cellframe.columns import FEATURE_DTYPE, OBJECT_NUMBER, PLATE, SITE, WELL, feature_columns
from cellframe.errors import TruncatedFileError
from cellframe.io import CellProfilerCSV

KEYS = [PLATE, WELL, SITE, OBJECT_NUMBER]


def read_all(path: Path, **kwargs) -> tuple[pl.DataFrame, CellProfilerCSV]:
    reader = CellProfilerCSV(path, **kwargs)
    df = pl.concat(list(reader.batches()))
    return df.sort([k for k in KEYS if k in df.columns], nulls_last=True), reader


def expected_feature_count(folder: Path) -> int:
    """Columns of Cells/Cytoplasm/Nuclei.csv less keys, object numbers and parent links."""
    n = 0
    for name in ("Cells", "Cytoplasm", "Nuclei"):
        cols = pd.read_csv(folder / f"{name}.csv", nrows=0).columns
        n += sum(
            c not in ("ImageNumber", "ObjectNumber", "Number_Object_Number")
            and not c.startswith("Parent_")
            for c in cols
        )
    return n


def pandas_single_cells(folder: Path) -> pd.DataFrame:
    """The pycytominer join of one folder, with pandas."""
    files = {p.name.lower(): p for p in folder.iterdir()}
    t = {
        n: pd.read_csv(files[f"{n.lower()}.csv"]) for n in ("Image", "Cells", "Cytoplasm", "Nuclei")
    }
    t = {
        n: d.rename(columns=lambda c, n=n: c if c == "ImageNumber" else f"{n}_{c}")
        for n, d in t.items()
    }
    df = (
        t["Cytoplasm"]
        .merge(
            t["Cells"],
            left_on=["ImageNumber", "Cytoplasm_Parent_Cells"],
            right_on=["ImageNumber", "Cells_ObjectNumber"],
        )
        .merge(
            t["Nuclei"],
            left_on=["ImageNumber", "Cytoplasm_Parent_Nuclei"],
            right_on=["ImageNumber", "Nuclei_ObjectNumber"],
        )
    )
    return df.merge(t["Image"], on="ImageNumber")


@pytest.mark.parametrize("in_memory", [True, False], ids=["polars-join", "duckdb-staging"])
def test_data_a_per_site_tree(cytominer_db: Path, in_memory: bool) -> None:
    root = cytominer_db / "data_a"
    df, reader = read_all(root, in_memory=in_memory)
    assert reader.level == "cell"
    # 2 site folders x 4 images x 5 cells
    ref = pd.concat([pandas_single_cells(root / s) for s in ("1", "2")])
    assert df.height == len(ref) == 40
    assert len(feature_columns(df)) == expected_feature_count(root / "1")
    assert df[PLATE].unique().to_list() == ["110000106828"]  # Metadata_Barcode, an integer
    ref = ref.sort_values(["Image_Metadata_Well", "Image_Metadata_Site", "Cells_ObjectNumber"])
    assert "Nuclei_AreaShape_Solidity" in df.columns
    assert df[WELL].to_list() == ref["Image_Metadata_Well"].tolist()
    assert df[OBJECT_NUMBER].to_list() == ref["Cells_ObjectNumber"].tolist()
    for col in (
        "Cells_AreaShape_Area",
        "Cytoplasm_Intensity_MeanIntensity_DNA",
        "Nuclei_AreaShape_Solidity",
    ):
        if col in df.columns:
            np.testing.assert_array_equal(df[col].to_numpy(), ref[col].to_numpy(np.float32))
    assert "CSV files not read" in " ".join(reader.issues.messages)


def test_data_b_short_row_is_refused_with_file_and_line(cytominer_db: Path) -> None:
    """J21-2/Cells.csv's one row has 564 of the header's 586 fields: never stored with nulls."""
    with pytest.raises(TruncatedFileError) as err:
        read_all(cytominer_db / "data_b")
    msg = str(err.value)
    assert "J21-2/Cells.csv (Cells table): line 2 (the last) holds 564 of the 586 fields" in msg
    assert "short row" in msg


def test_data_b_empty_and_header_only_files_warn_with_counts(
    cytominer_db: Path, tmp_path: Path
) -> None:
    """E17-4 has 0-byte Cells.csv and Nuclei.csv; N23-5 an Image.csv without rows."""
    tree = tmp_path / "data_b"
    for site in ("A01-1", "A01-2", "B01-1", "B01-2", "E17-4", "N23-5"):
        shutil.copytree(cytominer_db / "data_b" / site, tree / site)
    df, reader = read_all(tree)
    messages = "\n".join(reader.issues.summary())
    assert "E17-4/Cells.csv is empty (0 bytes)" in messages
    assert "E17-4/Nuclei.csv is empty (0 bytes)" in messages
    assert "N23-5 has an Image.csv without rows" in messages
    # E17-4's 10 Cytoplasm objects have no partners: left out and counted, never silent.
    assert "Cells.csv and Nuclei.csv of " in messages
    assert "the folder's 10 Cytoplasm objects were left out" in messages
    # A01-1, A01-2, B01-1, B01-2 (10 cells each)
    assert df.height == 40
    assert df.group_by(WELL).len().sort(WELL).rows() == [("A01", 20), ("B01", 20)]
    # The one NaN of B01-2/Cells.csv is null, and counted.
    raw = pd.read_csv(cytominer_db / "data_b" / "B01-2" / "Cells.csv")
    n_nan = int(raw["AreaShape_Compactness"].isna().sum())
    n_inf = int(np.isinf(raw["AreaShape_Compactness"]).sum())
    assert (n_nan, n_inf) == (1, 0)
    assert df["Cells_AreaShape_Compactness"].null_count() == 1
    assert "1 NaN and 0 infinite value(s)" in messages


def test_data_c_image_only_tree_gives_image_rows(cytominer_db: Path) -> None:
    df, reader = read_all(cytominer_db / "data_c")
    assert reader.level == "image"
    images = pd.concat([pd.read_csv(cytominer_db / "data_c" / s / "Image.csv") for s in ("1", "2")])
    assert df.height == len(images) == 8
    assert OBJECT_NUMBER not in df.columns
    assert set(df.columns) >= {PLATE, WELL, SITE, "Image_Count_Cells"}
    got = df.sort("Metadata_ImageNumber")["Image_Count_Cells"].to_numpy()
    np.testing.assert_array_equal(
        got, images.sort_values("ImageNumber")["Count_Cells"].to_numpy(np.float32)
    )
    assert set(df.select(feature_columns(df)).schema.values()) == {FEATURE_DTYPE}


def test_example_human_single_image(cpo: Path) -> None:
    """CellProfiler's ExampleHuman: one image, 289 nuclei, no plate or well in Image.csv."""
    root = cpo / "cellprofiler" / "ExampleHuman"
    df, _ = read_all(root, plate="ExampleHuman", well="D03")
    nuclei = pd.read_csv(root / "Nuclei.csv")
    assert df.height == len(nuclei) == 289
    assert df[WELL].unique().to_list() == ["D03"]
    assert len(feature_columns(df)) == expected_feature_count(root)
    ref = pandas_single_cells(root).sort_values("Cells_ObjectNumber")
    np.testing.assert_array_equal(
        df["Nuclei_AreaShape_Area"].to_numpy(), ref["Nuclei_AreaShape_Area"].to_numpy(np.float32)
    )
    assert df["Metadata_FileName_DNA"][0] == pd.read_csv(root / "Image.csv")["FileName_DNA"][0]


def test_jump_collate_wide_tables(jump_collate: Path) -> None:
    """A real JUMP plate export: ~1,940 columns per table; two sites have Image.csv only."""
    df, reader = read_all(jump_collate)
    a01 = pandas_single_cells(jump_collate / "BR00121431-A01-1")
    a02 = pandas_single_cells(jump_collate / "BR00121431-A02-1")
    assert df.height == len(a01) + len(a02) == 125
    assert len(feature_columns(df)) == expected_feature_count(jump_collate / "BR00121431-A01-1")
    assert df[PLATE].unique().to_list() == ["BR00121431"]
    got = df.filter(pl.col(WELL) == "A02").sort(OBJECT_NUMBER)
    ref = a02.sort_values("Cells_ObjectNumber")
    for col in (
        "Cells_AreaShape_Area",
        "Nuclei_Intensity_MeanIntensity_DNA",
        "Cytoplasm_Texture_Contrast_RNA_10_01_256",
    ):
        np.testing.assert_allclose(
            got[col].to_numpy(), ref[col].to_numpy(np.float32), rtol=0, atol=0
        )
    # Sites without object tables (A01-2, A02-2) are left out, counted, not taken for empty sites.
    assert len(reader.issues.messages) == 1
    assert "2 folder(s) hold an Image.csv but no object table" in reader.issues.messages[0]
    assert "their 2 image(s) were left out" in reader.issues.messages[0]
    assert reader.empty_images.height == 0


@pytest.mark.slow
def test_memory_and_duckdb_joins_agree_on_jump(jump_collate: Path) -> None:
    a, _ = read_all(jump_collate, in_memory=True)
    b, _ = read_all(jump_collate, in_memory=False, batch_rows=40)
    assert_frame_equal(a, b)
