"""ingest() into a store, platemaps, provenance, the per-plate Parquet layout and the CLI."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cellframe.cli import main
from cellframe.columns import CONTROL, MOA, PLATE, TREATMENT, WELL
from cellframe.io import ingest, read_platemap
from cellframe.io._synthetic import write_synthetic_sqlite
from cellframe.store import Store


@pytest.fixture(scope="module")
def small_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("db")
    return write_synthetic_sqlite(
        root / "p1.sqlite", n_cells=400, n_features=9, cells_per_image=20, plate="P1"
    )


def test_reingest_replaces_a_plate_and_never_duplicates(small_db: Path, tmp_path: Path) -> None:
    other = write_synthetic_sqlite(
        tmp_path / "p2.sqlite", n_cells=100, n_features=9, cells_per_image=20, plate="P2"
    )
    path = tmp_path / "s.duckdb"
    r1 = ingest(small_db, path, progress=False)
    r2 = ingest(other, path, progress=False)
    r3 = ingest(small_db, path, progress=False)
    assert (r1.rows, r2.rows, r3.rows) == (400, 100, 400)
    assert r1.plates == ["P1"] and r1.n_features == 9 and r1.table == "cells"
    with Store(path, read_only=True) as s:
        counts = s.sql("SELECT Metadata_Plate, count(*) AS n FROM cells GROUP BY 1 ORDER BY 1")
        assert counts.rows() == [("P1", 400), ("P2", 100)]
        prov = s.provenance("cells")
        assert prov["step"].to_list() == ["ingest"] * 3
        assert prov["source"].to_list() == [str(small_db), str(other), str(small_db)]
        assert '"format": "cellprofiler_sqlite"' in str(prov["parameters"][0])


def test_in_memory_and_store_agree_with_the_reader(small_db: Path) -> None:
    from cellframe.io import CellProfilerSQLite

    store = Store()
    ingest(small_db, store, progress=False)
    keys = ["Metadata_Well", "Metadata_Site", "Metadata_ObjectNumber"]
    stored = store.read("cells").sort(keys)
    direct = pl.concat(list(CellProfilerSQLite(small_db).batches())).sort(keys)
    assert_frame_equal(stored, direct)
    store.close()


def test_parquet_layout_equals_table_layout(small_db: Path, tmp_path: Path) -> None:
    a = tmp_path / "a.duckdb"
    b = tmp_path / "b.duckdb"
    ingest(small_db, a, progress=False)
    ingest(small_db, b, progress=False, layout="parquet")
    keys = ["Metadata_Well", "Metadata_Site", "Metadata_ObjectNumber"]
    with Store(a, read_only=True) as sa, Store(b, read_only=True) as sb:
        assert sb.tables().filter(pl.col("table") == "cells")["kind"][0] == "parquet"
        table = sa.read("cells").sort(keys)
        assert_frame_equal(table, sb.read("cells").select(table.columns).sort(keys))
    assert (b.parent / "b.parts" / "cells" / "Metadata_Plate=P1" / "part.parquet").is_file()


def test_read_platemap_renames_and_maps_controls() -> None:
    pm = read_platemap(
        pl.DataFrame(
            {
                "well_position": ["A1", "A02", "p24"],
                "broad_sample": ["BRD-1", None, "BRD-3"],
                "pert_iname": ["taxol", "DMSO", "poscon drug"],
                "control_type": ["trt", "negcon", "poscon_cp"],
                "moa": ["tubulin inhibitor", None, "a|b"],
            }
        )
    )
    assert pm[WELL].to_list() == ["A01", "A02", "P24"]
    assert pm[TREATMENT].to_list() == ["taxol", "DMSO", "poscon drug"]
    assert pm[CONTROL].to_list() == [None, "negcon", "poscon"]
    assert pm[MOA].to_list() == ["tubulin inhibitor", None, "a|b"]
    assert pm["Metadata_broad_sample"].to_list() == ["BRD-1", None, "BRD-3"]
    assert PLATE not in pm.columns


def test_read_platemap_duplicate_wells_is_an_error() -> None:
    from cellframe.errors import DuplicateWellsError

    with pytest.raises(DuplicateWellsError, match=r"more than once.*'A01' \(row 1, row 2\)"):
        read_platemap(pl.DataFrame({"well": ["A1", "A01"], "treatment": ["x", "y"]}))


@pytest.mark.slow
def test_jump_plate_with_its_platemap(
    jump_collate: Path, shared_data: Path, tmp_path: Path
) -> None:
    """BR00121431 is a JUMP-Target-2 plate: join its platemap and compound metadata."""
    target = shared_data / "moa-annotations" / "JUMP-Target"
    platemap = target / "JUMP-Target-2_compound_platemap.tsv"
    meta = target / "JUMP-Target-2_compound_metadata.tsv"
    path = tmp_path / "s.duckdb"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = ingest(jump_collate, path, platemap=platemap, annotations=meta, progress=False)
    ref = pd.read_csv(platemap, sep="\t").merge(
        pd.read_csv(meta, sep="\t"), on="broad_sample", how="left"
    )
    ref = ref.set_index("well_position")
    with Store(path, read_only=True) as s:
        cells = s.sql(
            "SELECT Metadata_Well, Metadata_broad_sample, Metadata_pert_iname, Metadata_Treatment, "
            "Metadata_Control, count(*) AS n FROM cells GROUP BY ALL ORDER BY 1"
        )
        pm = s.read("platemap")
    assert report.rows == 125
    for row in cells.iter_rows(named=True):
        expected = ref.loc[row[WELL]]
        assert row["Metadata_broad_sample"] == expected["broad_sample"]
        assert row["Metadata_pert_iname"] == expected["pert_iname"]
        assert row[TREATMENT] == expected["pert_iname"]
    # The platemap table holds the plate's 384 wells.
    assert pm.height == 384 and pm[PLATE].unique().to_list() == ["BR00121431"]
    negcon = pm.filter(pl.col(CONTROL) == "negcon")[WELL].to_list()
    assert set(negcon) == set(ref.index[ref["control_type"] == "negcon"])


def test_platemap_missing_wells_warn(small_db: Path, tmp_path: Path) -> None:
    pm = pl.DataFrame({"well": ["A1"], "treatment": ["x"]})
    with pytest.warns(UserWarning, match=r"\d+ row\(s\) are in wells the platemap does not list"):
        report = ingest(small_db, tmp_path / "s.duckdb", platemap=pm, progress=False)
    with Store(tmp_path / "s.duckdb", read_only=True) as s:
        got = s.sql(
            "SELECT Metadata_Well, any_value(Metadata_Treatment) AS t FROM cells GROUP BY 1 ORDER BY 1"
        )
    assert got.filter(pl.col(WELL) == "A01")["t"].to_list() == ["x"]
    assert got.filter(pl.col(WELL) != "A01")["t"].null_count() == got.height - 1
    assert report.rows == 400


def test_cli_ingest_and_errors(
    small_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "cli.duckdb"
    assert main(["ingest", str(small_db), "--store", str(path), "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    assert (
        main(["ingest", str(small_db), "--store", str(path), "--table", "cells2", "--plate", "X"])
        == 0
    )
    out = capsys.readouterr().out
    assert "ingested 400 rows" in out and "'cells2'" in out
    with Store(path, read_only=True) as s:
        assert s.plates("cells") == ["P1"] and s.plates("cells2") == ["X"]
    bad = tmp_path / "bad.sqlite"
    bad.write_text("nope")
    assert main(["ingest", str(bad), "--store", str(path), "-q"]) == 2
    assert "cannot tell the format" in capsys.readouterr().err
