"""ingest() into a store, platemaps, provenance, the per-plate Parquet layout and the CLI."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cellframe.cli import main
from cellframe.columns import CONTROL, MOA, PLATE, TREATMENT, WELL
from cellframe.errors import InvalidInputError
from cellframe.io import IngestOptions, ingest, read_platemap
from cellframe.io._synthetic import write_synthetic_sqlite
from cellframe.store import Store

from ._sites import store_bytes, write_empty_site, write_site_folders


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


# ---------------------------------------------------------------- write modes
CELL_KEYS = [PLATE, WELL, "Metadata_Site", "Metadata_ObjectNumber"]


@pytest.fixture(scope="module")
def site_folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """A real plate's CellProfiler output as three per-site folders (A01/1, A01/2, A02/1)."""
    return write_site_folders(tmp_path_factory.mktemp("plate"))


@pytest.mark.parametrize("layout", ["table", "parquet"])
def test_ingesting_sites_one_folder_at_a_time_equals_one_ingest(
    site_folders: tuple[Path, list[Path]], tmp_path: Path, layout: str
) -> None:
    plate, sites = site_folders
    whole = ingest(plate, tmp_path / "whole.duckdb", progress=False, layout=layout)
    assert whole.rows == 89 + 89 + 36 and whole.images_added == 3
    reports = [ingest(s, tmp_path / "inc.duckdb", progress=False, layout=layout) for s in sites]
    assert [r.rows for r in reports] == [89, 89, 36]
    assert [(r.images_added, r.images_replaced) for r in reports] == [(1, 0)] * 3
    # Re-ingesting a site replaces that site only, and never duplicates it.
    again = ingest(sites[0], tmp_path / "inc.duckdb", progress=False, layout=layout)
    assert (again.images_added, again.images_replaced, again.rows_replaced) == (0, 1, 89)
    with (
        Store(tmp_path / "whole.duckdb", read_only=True) as a,
        Store(tmp_path / "inc.duckdb", read_only=True) as b,
    ):
        expected, got = a.read("cells").sort(CELL_KEYS), b.read("cells").sort(CELL_KEYS)
        per_site = b.sql(
            "SELECT Metadata_Well, Metadata_Site, count(*) AS n FROM cells GROUP BY ALL ORDER BY ALL"
        )
        assert (b.partition_root("cells") is not None) == (layout == "parquet")
    assert_frame_equal(got, expected)
    assert per_site.rows() == [("A01", 1, 89), ("A01", 2, 89), ("A02", 1, 36)]
    assert got.select(CELL_KEYS).is_duplicated().sum() == 0


@pytest.mark.parametrize("layout", ["table", "parquet"])
def test_append_refuses_a_stored_image_and_leaves_the_store_unchanged(
    site_folders: tuple[Path, list[Path]], tmp_path: Path, layout: str
) -> None:
    from cellframe.errors import KeyConflictError

    _, sites = site_folders
    db = tmp_path / "s.duckdb"
    ingest(sites[0], db, progress=False, layout=layout, mode="append")
    # Control: appending a new site is accepted.
    ok = ingest(sites[1], db, progress=False, layout=layout, mode="append")
    assert (ok.rows, ok.images_added, ok.images_replaced) == (89, 1, 0)
    before = store_bytes(db)
    with pytest.raises(KeyConflictError, match=r"already holds.*Metadata_Site=2.*replace-images"):
        ingest(sites[1], db, progress=False, layout=layout, mode="append")
    assert store_bytes(db) == before
    with Store(db, read_only=True) as s:
        assert s.sql("SELECT count(*) AS n FROM cells")["n"][0] == 178


@pytest.mark.parametrize("layout", ["table", "parquet"])
def test_an_error_mid_source_leaves_the_store_byte_for_byte_unchanged(
    site_folders: tuple[Path, list[Path]], tmp_path: Path, layout: str
) -> None:
    from cellframe.errors import InvalidInputError
    from cellframe.io import CellProfilerCSV

    plate, sites = site_folders

    class FailsAfterOneBatch(CellProfilerCSV):
        def batches(self):  # type: ignore[no-untyped-def]
            for frame in super().batches():
                yield frame
                raise InvalidInputError("simulated: the source ends in a broken row")

    db = tmp_path / "s.duckdb"
    ingest(sites[0], db, progress=False, layout=layout)
    ingest(sites[2], db, progress=False, layout=layout)
    before = store_bytes(db)
    assert len(before) == (1 if layout == "table" else 3)  # db; or db, data file and marker
    with pytest.raises(InvalidInputError, match="simulated"):
        ingest(
            plate,
            db,
            progress=False,
            layout=layout,
            options=IngestOptions(format=FailsAfterOneBatch),
        )
    assert store_bytes(db) == before


def test_replace_plates_deletes_the_plates_other_images_as_asked(
    site_folders: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    from cellframe.errors import InvalidInputError

    plate, sites = site_folders
    db = tmp_path / "s.duckdb"
    ingest(plate, db, progress=False)
    report = ingest(sites[2], db, progress=False, mode="replace-plates")
    assert (report.plates_replaced, report.rows_replaced) == (1, 214)
    with Store(db, read_only=True) as s:
        assert s.sql("SELECT DISTINCT Metadata_Well FROM cells").rows() == [("A02",)]
    with pytest.raises(InvalidInputError, match="unknown ingest mode 'merge'"):
        ingest(sites[2], db, progress=False, mode="merge")


@pytest.mark.parametrize("layout", ["table", "parquet"])
def test_dry_run_counts_what_would_change_and_writes_nothing(
    site_folders: tuple[Path, list[Path]], tmp_path: Path, layout: str
) -> None:
    plate, sites = site_folders
    db = tmp_path / "s.duckdb"
    fresh = ingest(plate, tmp_path / "absent.duckdb", progress=False, dry_run=True)
    assert (fresh.rows, fresh.images_added, fresh.images_replaced) == (214, 3, 0)
    assert not (tmp_path / "absent.duckdb").exists()  # not even created
    ingest(sites[0], db, progress=False, layout=layout)
    before = store_bytes(db)
    plan = ingest(plate, db, progress=False, dry_run=True)
    assert (plan.rows, plan.images_added, plan.images_replaced, plan.rows_replaced) == (
        214,
        2,
        1,
        89,
    )
    assert plan.plates == ["BR00121431"] and "dry run, nothing written" in str(plan)
    whole = ingest(sites[2], db, progress=False, dry_run=True, mode="replace-plates")
    assert (whole.images_added, whole.images_replaced, whole.rows_replaced) == (1, 1, 89)
    refused = ingest(sites[0], db, progress=False, dry_run=True, mode="append")
    assert "append would be refused: 1 image(s)" in str(refused)
    assert store_bytes(db) == before


def test_cli_mode_and_dry_run(
    site_folders: tuple[Path, list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, sites = site_folders
    db = tmp_path / "cli.duckdb"
    assert main(["ingest", str(sites[0]), "--store", str(db), "--quiet"]) == 0
    before = store_bytes(db)
    assert main(["ingest", str(sites[0]), str(sites[2]), "--store", str(db), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would add 0 image(s) and replace 1 stored image(s) (89 stored rows)" in out
    assert "would add 1 image(s) and replace 0 stored image(s) (0 stored rows)" in out
    assert store_bytes(db) == before
    assert main(["ingest", str(sites[0]), "--store", str(db), "--mode", "append", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"cellframe: error: {sites[0]}: ")
    assert "already holds rows of 1 of the image(s) being appended" in err
    assert store_bytes(db) == before
    assert main(["ingest", str(sites[2]), "--store", str(db), "--mode", "append"]) == 0
    assert "1 image(s) added, 0 replaced" in capsys.readouterr().out


def _plate_with_empty_site(root: Path) -> tuple[Path, list[Path]]:
    """The three slim sites plus an empty site (A03 site 1, no objects), listed first."""
    plate, sites = write_site_folders(root, files=True)
    return plate, [write_empty_site(plate / "A03-1", "A03", 1), *sites]


def _tables(db: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    with Store(db, read_only=True) as s:
        cells = s.read("cells").sort(CELL_KEYS)
        images = s.read("images").sort([PLATE, WELL, "Metadata_Site", "Channel"])
    return cells, images


@pytest.mark.parametrize("layout", ["table", "parquet"])
def test_sites_one_at_a_time_with_an_empty_site_equal_one_ingest(
    tmp_path: Path, layout: str
) -> None:
    plate, sites = _plate_with_empty_site(tmp_path / "src")
    whole = ingest(plate, tmp_path / "whole.duckdb", progress=False, layout=layout)
    assert (whole.rows, whole.images_added) == (89 + 89 + 36, 3)
    # The empty site comes first: the cells table does not exist yet and is not created.
    first = ingest(sites[0], tmp_path / "inc.duckdb", progress=False, layout=layout)
    assert (first.rows, first.images_added, first.images_replaced) == (0, 0, 0)
    with Store(tmp_path / "inc.duckdb", read_only=True) as s:
        assert not s.has_table("cells")
        assert s.sql("SELECT DISTINCT Metadata_Well, Metadata_Site FROM images").rows() == [
            ("A03", 1)
        ]
    reports = [ingest(s, tmp_path / "inc.duckdb", progress=False, layout=layout) for s in sites[1:]]
    assert [r.rows for r in reports] == [89, 89, 36]
    # Re-ingesting the empty site once cells are stored changes nothing.
    again = ingest(sites[0], tmp_path / "inc.duckdb", progress=False, layout=layout)
    assert (again.rows, again.images_replaced, again.rows_replaced) == (0, 0, 0)
    cells, images = _tables(tmp_path / "inc.duckdb")
    want_cells, want_images = _tables(tmp_path / "whole.duckdb")
    assert_frame_equal(cells, want_cells)
    assert_frame_equal(images, want_images)
    assert cells.height == 214
    assert images.select(WELL, "Metadata_Site").unique().sort(WELL, "Metadata_Site").rows() == [
        ("A01", 1),
        ("A01", 2),
        ("A02", 1),
        ("A03", 1),
    ]


@pytest.mark.parametrize("layout", ["table", "parquet"])
def test_a_site_reingested_empty_loses_its_cells_and_only_those(
    site_folders: tuple[Path, list[Path]], tmp_path: Path, layout: str
) -> None:
    from cellframe.errors import KeyConflictError

    plate, _ = site_folders
    db = tmp_path / "s.duckdb"
    ingest(plate, db, progress=False, layout=layout)
    before, _ = _tables(db)
    emptied = write_empty_site(tmp_path / "redo" / "A01-2", "A01", 2)
    # Append refuses the stored site (store unchanged); a new empty site is appended.
    unchanged = store_bytes(db)
    with pytest.raises(KeyConflictError, match=r"no objects.*Metadata_Site=2.*replace-images"):
        ingest(emptied, db, progress=False, layout=layout, mode="append")
    assert store_bytes(db) == unchanged
    new = write_empty_site(tmp_path / "new" / "A03-1", "A03", 1)
    ok = ingest(new, db, progress=False, layout=layout, mode="append")
    assert (ok.rows, ok.images_replaced, ok.rows_replaced) == (0, 0, 0)
    report = ingest(emptied, db, progress=False, layout=layout)
    assert (report.rows, report.images_replaced, report.rows_replaced) == (0, 1, 89)
    cells, images = _tables(db)
    expected = before.filter(~((pl.col(WELL) == "A01") & (pl.col("Metadata_Site") == 2)))
    assert expected.height == 89 + 36
    assert_frame_equal(cells, expected)
    assert images.select(WELL, "Metadata_Site").unique().sort(WELL, "Metadata_Site").rows() == [
        ("A01", 2),
        ("A03", 1),
    ]


def test_empty_site_refusals_stay(tmp_path: Path) -> None:
    from cellframe.errors import EmptyInputError

    db = tmp_path / "s.duckdb"
    ingest(write_empty_site(tmp_path / "ok" / "A03-1", "A03", 1), db, progress=False)
    before = store_bytes(db)
    # An Image.csv without rows: nothing to record.
    no_rows = write_empty_site(tmp_path / "norows" / "A03-2", "A03", 2)
    header = (no_rows / "Image.csv").read_text().split("\n")[0]
    (no_rows / "Image.csv").write_text(header + "\n")
    with pytest.raises(EmptyInputError, match="norows"):
        ingest(no_rows, db, progress=False)
    # A 0-byte object file was never written: the site is not known to be empty.
    zero = write_empty_site(tmp_path / "zero" / "A03-3", "A03", 3)
    (zero / "Cells.csv").write_text("")
    with pytest.raises(EmptyInputError, match=r"holds no objects.*Cells.csv is empty \(0 bytes\)"):
        ingest(zero, db, progress=False)
    assert store_bytes(db) == before


@pytest.mark.parametrize("layout", ["table", "parquet"])
def test_emptying_the_only_stored_site_leaves_a_readable_table_without_rows(
    site_folders: tuple[Path, list[Path]], tmp_path: Path, layout: str
) -> None:
    _, sites = site_folders
    db = tmp_path / "s.duckdb"
    ingest(sites[2], db, progress=False, layout=layout)
    with Store(db, read_only=True) as s:
        columns = s.columns("cells")
    emptied = write_empty_site(tmp_path / "redo" / "A02-1", "A02", 1)
    report = ingest(emptied, db, progress=False, layout=layout)
    assert (report.rows, report.images_replaced, report.rows_replaced) == (0, 1, 36)
    with Store(db, read_only=True) as s:
        assert s.sql("SELECT count(*) AS n FROM cells")["n"][0] == 0
        assert s.read("cells").columns == columns
    # Control: the site's cells come back when it is ingested again.
    assert ingest(sites[2], db, progress=False, layout=layout).rows == 36


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"batch_rows": 0}, "batch_rows must be a positive integer"),
        ({"batch_rows": True}, "batch_rows must be a positive integer"),
        ({"compartments": "Cells"}, r"write compartments=\['Cells'\]"),
    ],
)
def test_ingest_options_refuse_bad_values(options, match) -> None:
    with pytest.raises(InvalidInputError, match=match):
        IngestOptions(**options)
    # Valid but unusual: one-row batches, a single compartment, a NumPy integer.
    unusual = IngestOptions(batch_rows=np.int64(1), compartments=["Nuclei"])
    assert (unusual.batch_rows, unusual.compartments) == (1, ["Nuclei"])
