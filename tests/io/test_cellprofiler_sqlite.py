"""CellProfiler / cytominer-database SQLite ingest, checked against sqlite3, pandas and pycytominer."""

from __future__ import annotations

import sqlite3
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cellframe.columns import FEATURE_DTYPE, OBJECT_NUMBER, PLATE, SITE, WELL, feature_columns
from cellframe.errors import IncompleteExportError
from cellframe.io import CellProfilerSQLite, IngestOptions, ingest
from cellframe.store import Store

KEYS = [PLATE, WELL, SITE, OBJECT_NUMBER]


def read_all(path: Path, **kwargs) -> pl.DataFrame:
    reader = CellProfilerSQLite(path, **kwargs)
    return pl.concat(list(reader.batches())).sort(KEYS)


def columns(con: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in con.execute(f'PRAGMA table_info("{table}")')]


@pytest.mark.parametrize("in_memory", [True, False], ids=["polars-join", "duckdb-staging"])
def test_nf1_rows_columns_and_values_match_sqlite3(nf1_sqlite: Path, in_memory: bool) -> None:
    df = read_all(nf1_sqlite, in_memory=in_memory)
    con = sqlite3.connect(nf1_sqlite)
    # The reference join, written independently in SQLite: pycytominer's linking columns.
    ref = pd.read_sql(
        """
        SELECT i.Image_Metadata_Plate AS plate, i.Image_Metadata_Well AS well,
               i.Image_Metadata_Site AS site, ce.Cells_Number_Object_Number AS obj,
               ce.Cells_AreaShape_Area AS area, cy.Cytoplasm_Intensity_MeanIntensity_GFP AS cy_int,
               nu.Nuclei_AreaShape_Perimeter AS nu_perim, nu.Nuclei_Number_Object_Number AS nuc
        FROM Per_Cytoplasm cy
        JOIN Per_Cells ce ON ce.ImageNumber = cy.ImageNumber
             AND ce.Cells_Number_Object_Number = cy.Cytoplasm_Parent_Cells
        JOIN Per_Nuclei nu ON nu.ImageNumber = cy.ImageNumber
             AND nu.Nuclei_Number_Object_Number = cy.Cytoplasm_Parent_Nuclei
        JOIN Per_Image i ON i.ImageNumber = cy.ImageNumber
        """,
        con,
    )
    assert df.height == len(ref) == 242
    # Features: every compartment column but the keys, object numbers and parent links.
    expected_features = 0
    for table, comp in (
        ("Per_Cells", "Cells"),
        ("Per_Cytoplasm", "Cytoplasm"),
        ("Per_Nuclei", "Nuclei"),
    ):
        cols = columns(con, table)
        skip = {"ImageNumber", f"{comp}_Number_Object_Number"} | {
            c for c in cols if c.startswith(f"{comp}_Parent_")
        }
        expected_features += len([c for c in cols if c not in skip])
    assert len(feature_columns(df)) == expected_features == 1189
    assert set(df.select(feature_columns(df)).schema.values()) == {FEATURE_DTYPE}
    # Keys: plate '001' stays text, wells zero-padded, sites as int32.
    assert df[PLATE].unique().to_list() == ["001"]
    assert df.schema[SITE] == pl.Int32 and df.schema[OBJECT_NUMBER] == pl.Int64
    ref["well"] = ref["well"].str[0] + ref["well"].str[1:].str.zfill(2)
    ref = ref.sort_values(["plate", "well", "site", "obj"]).reset_index(drop=True)
    assert df[WELL].to_list() == ref["well"].tolist()
    assert df[SITE].to_list() == ref["site"].astype(int).tolist()
    assert df[OBJECT_NUMBER].to_list() == ref["obj"].tolist()
    assert df["Metadata_Nuclei_Number_Object_Number"].to_list() == ref["nuc"].tolist()
    for ours, theirs in (
        ("Cells_AreaShape_Area", "area"),
        ("Cytoplasm_Intensity_MeanIntensity_GFP", "cy_int"),
        ("Nuclei_AreaShape_Perimeter", "nu_perim"),
    ):
        # Exactly the float64 source rounded to float32.
        np.testing.assert_array_equal(df[ours].to_numpy(), ref[theirs].to_numpy(np.float32))


def test_cell_health_matches_pycytominer_single_cells(cytominer_db: Path) -> None:
    from pycytominer.cyto_utils.cells import SingleCells

    path = cytominer_db / "Cell-Health" / "test-SQ00014613.sqlite"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc = SingleCells(
            f"sqlite:///{path}",
            image_cols=[
                "TableNumber",
                "ImageNumber",
                "Image_Metadata_Plate",
                "Image_Metadata_Well",
            ],
            strata=["Image_Metadata_Plate", "Image_Metadata_Well"],
        )
        ref = pl.from_pandas(sc.merge_single_cells())
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        ours = read_all(path)
    assert ours.height == ref.height == 12
    ref = ref.rename({"Metadata_ObjectNumber_cells": "obj"}).sort("Metadata_TableNumber", "obj")
    ours = ours.sort("Metadata_TableNumber", OBJECT_NUMBER)
    assert ours["Metadata_TableNumber"].to_list() == ref["Metadata_TableNumber"].to_list()
    assert ours[OBJECT_NUMBER].to_list() == ref["obj"].to_list()
    assert ours[WELL].to_list() == ref["Image_Metadata_Well"].to_list()
    # pycytominer keeps object numbers and Cells_Parent_Nuclei among the features; cellframe
    # moves them to Metadata_ (they are identifiers). Every other feature is the same.
    features = feature_columns(ours)
    moved = {
        "Cells_Number_Object_Number",
        "Cytoplasm_Number_Object_Number",
        "Nuclei_Number_Object_Number",
        "Cells_Parent_Nuclei",
    }
    ref_features = [c for c in ref.columns if c.split("_")[0] in ("Cells", "Cytoplasm", "Nuclei")]
    assert set(ref_features) - set(features) == moved
    assert set(features) <= set(ref_features)
    expected = ref.select(features).to_numpy().astype(np.float32)
    got = ours.select(features).to_numpy().astype(np.float32)
    # NaN/inf in the source are null (NaN here) in cellframe; everything else equal.
    finite = np.isfinite(expected)
    assert np.array_equal(np.isnan(got), ~finite)
    np.testing.assert_array_equal(got[finite], expected[finite])


def test_cytominer_database_sqlite_equals_its_csv_tree(cytominer_db: Path) -> None:
    """data_a.sqlite was built by cytominer-database from the data_a CSV tree."""
    from cellframe.io import CellProfilerCSV

    db = read_all(cytominer_db / "data_a_sqlite" / "data_a.sqlite")
    csv = pl.concat(list(CellProfilerCSV(cytominer_db / "data_a").batches())).sort(KEYS)
    assert db.height == csv.height == 40
    assert feature_columns(db) == feature_columns(csv)
    assert_frame_equal(
        db.select(KEYS + feature_columns(db)), csv.select(KEYS + feature_columns(csv))
    )


def test_cell_locations_sqlite_with_text_columns(pct: Path) -> None:
    """All columns declared TEXT; numbers stored as text still parse, plate/well/site kept."""
    path = pct / "cell_locations_example_data" / "test_BR00126114.sqlite"
    # The file holds Nuclei only: refused by default, read when Nuclei is asked for.
    with pytest.raises(IncompleteExportError, match=r"no table for the Cells, Cytoplasm"):
        CellProfilerSQLite(path)
    df = read_all(path, compartments=["Nuclei"])
    con = sqlite3.connect(path)
    ref = pd.read_sql(
        "SELECT i.Metadata_Well AS well, CAST(i.Metadata_Site AS INT) AS site, "
        "CAST(n.ObjectNumber AS INT) AS obj, CAST(n.Nuclei_Location_Center_X AS REAL) AS x "
        "FROM Nuclei n JOIN Image i USING (TableNumber, ImageNumber) ORDER BY 1, 2, 3",
        con,
    )
    assert df.height == len(ref) == 20
    assert df[PLATE].unique().to_list() == ["BR00126114"]
    np.testing.assert_array_equal(
        df["Nuclei_Location_Center_X"].to_numpy(), ref["x"].to_numpy(np.float32)
    )


def test_ingest_streams_in_bounded_batches(tmp_path: Path) -> None:
    """Through DuckDB staging, batches hold whole images up to about batch_rows cells."""
    from cellframe.io._synthetic import write_synthetic_sqlite

    db = write_synthetic_sqlite(
        tmp_path / "s.sqlite", n_cells=2_000, n_features=12, cells_per_image=30
    )
    reader = CellProfilerSQLite(db, batch_rows=200, in_memory=False)
    frames = list(reader.batches())
    heights = [f.height for f in frames]
    assert sum(heights) == 2_010  # 67 images of 30 cells
    assert max(heights) <= 200 and len(heights) >= 10
    # Every image lies whole in one batch.
    images = [set(f["Metadata_ImageNumber"].to_list()) for f in frames]
    assert sum(len(i) for i in images) == len(set().union(*images)) == 67
    # The same rows as the in-memory join.
    keys = ["Metadata_ImageNumber", "Metadata_ObjectNumber"]
    streamed = pl.concat(frames).sort(keys)
    assert_frame_equal(streamed, read_all(db, in_memory=True).sort(keys))
    report = ingest(
        db,
        tmp_path / "s.duckdb",
        progress=False,
        options=IngestOptions(batch_rows=200, in_memory=False),
    )
    assert report.rows == 2_010


def test_cli_compartments_option_takes_the_ones_listed(tmp_path: Path) -> None:
    """A file without Per_Cells: refused by default (exit 2, one line), read with --compartments."""
    import subprocess
    import sys

    from cellframe.io._synthetic import write_synthetic_sqlite

    db = write_synthetic_sqlite(tmp_path / "s.sqlite", n_cells=50, n_features=3, cells_per_image=10)
    con = sqlite3.connect(db)
    con.execute("DROP TABLE Per_Cells")
    n_expected = con.execute("SELECT count(*) FROM Per_Cytoplasm").fetchone()[0]
    con.commit()
    con.close()
    repo = Path(__file__).resolve().parents[2]
    store = tmp_path / "s.duckdb"

    def cli(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "cellframe.cli",
                "ingest",
                str(db),
                "--store",
                str(store),
                "--quiet",
                *extra,
            ],
            capture_output=True,
            text=True,
            cwd=repo,
        )

    refused = cli()
    assert refused.returncode == 2
    assert refused.stderr.strip().count("\n") == 0
    assert "s.sqlite has no table for the Cells compartment" in refused.stderr
    if store.exists():
        with Store(store, read_only=True) as s:
            assert "cells" not in s.table_names()
    taken = cli("--compartments", "Cytoplasm,Nuclei")
    assert taken.returncode == 0, taken.stderr
    with Store(store, read_only=True) as s:
        assert s.sql("SELECT count(*) AS n FROM cells")["n"][0] == n_expected == 50
        cols = s.columns("cells")
    assert not any(c.startswith("Cells_") for c in cols)
    assert "Nuclei_Feature_0000" in cols and "Cytoplasm_Feature_0000" in cols
