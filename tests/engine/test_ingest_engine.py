"""Ingest on Ray: one task per source, the same rows as the local engine, resume and retries."""

from __future__ import annotations

import os
import signal
import warnings
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cellframe.columns import OBJECT_NUMBER, PLATE, WELL
from cellframe.engine import RayEngine
from cellframe.engine.ingest import ReadOptions, ingest_plates
from cellframe.errors import InvalidInputError
from cellframe.io import CellProfilerSQLite
from cellframe.io._synthetic import write_synthetic_sqlite
from cellframe.io.ingest import IngestOptions, IngestWarning
from cellframe.partitions import completed_plates
from cellframe.store import Store

PLATES = {"PA": 600, "PB": 450, "PC": 300, "PD": 150}


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("plates")
    return [
        write_synthetic_sqlite(
            root / f"{plate}.sqlite",
            n_cells=n,
            n_features=15,
            cells_per_image=25,
            plate=plate,
            seed=i,
        )
        for i, (plate, n) in enumerate(PLATES.items())
    ]


@pytest.fixture(scope="module")
def platemap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pm") / "platemap.csv"
    wells = [f"{r}{c:02d}" for r in "AB" for c in range(1, 25)]
    pl.DataFrame(
        {"well_position": wells, "treatment": [f"t{i % 5}" for i in range(len(wells))]}
    ).write_csv(path)
    return path


def _forced(engine: str) -> RayEngine | str:
    """``engine``, recomputing what an earlier run committed (Ray; the local engine always does)."""
    return RayEngine(force=True) if engine == "ray" else engine


def canonical(df: pl.DataFrame) -> pl.DataFrame:
    return df.sort(PLATE, "Metadata_ImageNumber", OBJECT_NUMBER).select(sorted(df.columns))


def test_ray_ingest_equals_local_and_the_single_source_reader(
    sources: list[Path], platemap: Path, tmp_path: Path, ray_local
) -> None:
    with Store(tmp_path / "local.duckdb") as st:
        local = ingest_plates(sources, st, platemap=platemap, progress=False)
        local_rows = canonical(st.read("cells"))
    with Store(tmp_path / "ray.duckdb") as st:
        ray = ingest_plates(sources, st, platemap=platemap, engine="ray", progress=False)
        ray_rows = canonical(st.read("cells"))
        per_plate = st.sql("SELECT Metadata_Plate, count(*) AS n FROM cells GROUP BY 1 ORDER BY 1")
        prov = st.sql(
            "SELECT step, parameters FROM cellframe_provenance WHERE table_name = 'cells' "
            "ORDER BY id"
        )
        assert st.read("platemap").height == 4 * 48
    assert sorted(ray.computed) == sorted(local.computed) == sorted(PLATES)
    assert ray.rows == local.rows == sum(PLATES.values())
    assert per_plate.rows() == sorted(PLATES.items())
    assert "ray" in prov["parameters"][-1] and prov["step"][-1] == "ingest"
    assert_frame_equal(ray_rows, local_rows)
    # Each plate equals what the single-source reader yields, annotated from the platemap.
    direct = pl.concat(CellProfilerSQLite(sources[2]).batches())
    assert_frame_equal(
        canonical(ray_rows.filter(pl.col(PLATE) == "PC")).drop(
            "Metadata_Treatment", "Metadata_MoA", "Metadata_Control"
        ),
        canonical(direct),
    )
    assert ray_rows.filter(pl.col(WELL) == "A01")["Metadata_Treatment"].unique().to_list() == ["t0"]


def test_ray_ingest_resumes_and_force_recomputes(
    sources: list[Path], tmp_path: Path, ray_local
) -> None:
    with Store(tmp_path / "s.duckdb") as st:
        first = ingest_plates(sources[:2], st, engine="ray", progress=False)
        assert sorted(first.computed) == ["PA", "PB"]
        again = ingest_plates(sources, st, engine="ray", progress=False)
        assert sorted(again.computed) == ["PC", "PD"]
        assert sorted(again.skipped_sources) == sorted(map(str, sources[:2]))
        forced = ingest_plates(sources, st, engine=RayEngine(force=True), progress=False)
        assert sorted(forced.computed) == sorted(PLATES)
        assert st.read("cells").height == sum(PLATES.values())


def test_killed_ingest_worker_is_retried_without_partial_partition(
    sources: list[Path], tmp_path: Path, ray_local
) -> None:
    flag = tmp_path / "killed-once"

    class DiesMidPlate(CellProfilerSQLite):
        def batches(self):  # type: ignore[no-untyped-def]
            for i, frame in enumerate(super().batches()):
                yield frame
                if i == 1 and self.path.stem == "PB" and not flag.exists():
                    flag.write_text("x")
                    os.kill(os.getpid(), signal.SIGKILL)  # the worker dies mid-plate

    with Store(tmp_path / "k.duckdb") as st:
        report = ingest_plates(
            sources,
            st,
            engine="ray",
            format=DiesMidPlate,
            reading=ReadOptions(batch_rows=100),
            progress=False,
        )
        root = st.parts_dir / "cells"
        assert flag.exists()
        assert sorted(report.computed) == sorted(PLATES)
        assert completed_plates(root) == sorted(PLATES)
        assert not [p for p in root.iterdir() if p.name.startswith(".")]
        assert st.sql("SELECT count(*) AS n FROM cells WHERE Metadata_Plate = 'PB'")["n"][0] == 450


def test_bad_inputs_are_refused(sources: list[Path], tmp_path: Path, ray_local) -> None:
    with Store(tmp_path / "b.duckdb") as st:
        with pytest.raises(InvalidInputError, match="no sources"):
            ingest_plates([], st)
        with pytest.raises(InvalidInputError, match="more than once"):
            ingest_plates([sources[0], sources[0]], st)
        st.write("cells", pl.DataFrame({PLATE: ["x"], "f": [1.0]}))
        with pytest.raises(InvalidInputError, match="native table"):
            ingest_plates(sources[:1], st)
    # Two files holding the same plate: named, not silently merged.
    twin = write_synthetic_sqlite(tmp_path / "twin.sqlite", n_cells=50, n_features=15, plate="PA")
    with Store(tmp_path / "t.duckdb") as st:
        with pytest.raises(
            InvalidInputError, match=r"plate .PA. has \d+ image\(s\) in two sources"
        ):
            ingest_plates([sources[0], twin], st, engine="ray", progress=False)


def test_cli_ingests_several_sources_on_ray(
    sources: list[Path], tmp_path: Path, ray_local, capsys: pytest.CaptureFixture[str]
) -> None:
    from cellframe.cli import main

    store = tmp_path / "cli.duckdb"
    args = ["ingest", *map(str, sources[2:]), "--store", str(store), "--engine", "ray"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "ingested 450 rows from 2 source(s)" in out and "2 plate(s) written" in out
    with Store(store, read_only=True) as st:
        assert st.sql("SELECT count(*) AS n FROM cells")["n"][0] == 450
    # --plate names one plate: it cannot apply to several sources.
    # (a user error: one line on stderr, exit status 2)
    assert main([*args, "--plate", "X"]) == 2
    assert "single SOURCE" in capsys.readouterr().err
    # Several sources are always per-plate Parquet: --layout table is refused, not ignored.
    assert main([*args, "--layout", "table"]) == 2
    assert "--layout table needs one SOURCE" in capsys.readouterr().err


# ---------------------------------------------------- per-site sources, modes
CELL_KEYS = [PLATE, WELL, "Metadata_Site", OBJECT_NUMBER]


@pytest.fixture(scope="module")
def site_folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    from tests.io._sites import write_site_folders

    return write_site_folders(tmp_path_factory.mktemp("plate"))


def test_sites_as_sources_one_run_or_one_at_a_time_equal_one_ingest(
    site_folders: tuple[Path, list[Path]], tmp_path: Path, ray_local
) -> None:
    from cellframe.io import ingest

    plate, sites = site_folders
    ingest(plate, tmp_path / "whole.duckdb", progress=False, layout="parquet")
    with Store(tmp_path / "whole.duckdb", read_only=True) as st:
        expected = st.read("cells").sort(CELL_KEYS)
    assert expected.height == 89 + 89 + 36
    for engine in ("local", "ray"):
        # All sites in one run (they share plate BR00121431: staged, then committed once) ...
        with Store(tmp_path / f"{engine}-one-run.duckdb") as st:
            report = ingest_plates(sites, st, engine=engine, progress=False)
            assert (report.rows, report.images_added, report.images_replaced) == (214, 3, 0)
            assert_frame_equal(st.read("cells").sort(CELL_KEYS), expected)
        # ... or one site per run, and a site again: the same table, no duplicates.
        with Store(tmp_path / f"{engine}-per-site.duckdb") as st:
            for site in [*sites, sites[1]]:
                last = ingest_plates([site], st, engine=_forced(engine), progress=False)
            assert (last.images_added, last.images_replaced, last.rows_replaced) == (0, 1, 89)
            assert_frame_equal(st.read("cells").sort(CELL_KEYS), expected)
            assert not [p for p in st.parts_dir.joinpath("cells").iterdir() if p.name[0] == "."]


def test_engine_append_and_duplicate_images_leave_the_store_unchanged(
    site_folders: tuple[Path, list[Path]], tmp_path: Path, ray_local
) -> None:
    import shutil

    from cellframe.errors import KeyConflictError
    from tests.io._sites import store_bytes

    _, sites = site_folders
    db = tmp_path / "s.duckdb"
    with Store(db) as st:
        ingest_plates(sites[:2], st, engine="ray", progress=False, mode="append")
    before = store_bytes(db)
    with Store(db) as st:
        with pytest.raises(KeyConflictError, match=r"already holds 1 of its image\(s\)"):
            ingest_plates(
                sites[1:], st, engine=RayEngine(force=True), progress=False, mode="append"
            )
    assert store_bytes(db) == before
    # The same site twice in one run (a copied folder): refused before anything is written.
    twin = tmp_path / "twin"
    shutil.copytree(sites[2], twin)
    with Store(db) as st:
        with pytest.raises(InvalidInputError, match=r"1 image\(s\) in two sources"):
            ingest_plates([sites[2], twin], st, engine="local", progress=False)
    assert store_bytes(db) == before
    # Control: appending the new site alone is accepted.
    with Store(db) as st:
        report = ingest_plates(sites[2:], st, engine="local", progress=False, mode="append")
        assert (report.rows, report.images_added) == (36, 1)
        assert st.sql("SELECT count(*) AS n FROM cells")["n"][0] == 214


# ------------------------------------- images table, compartments, platemap coverage, paths
IMAGE_KEYS = [PLATE, WELL, "Metadata_Site", "Channel"]


@pytest.fixture(scope="module")
def imaged_sites(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """Sources A01-1, A01-2 and A02 (sites 1 and 9, site 9 empty), with image file names."""
    from tests.io._sites import DEMO_PLATE, write_site_folders

    plate, sites = write_site_folders(tmp_path_factory.mktemp("imaged"))
    for site, src, number in zip(
        sites,
        ["BR00121431-A01-1", "BR00121431-A01-1", "BR00121431-A02-1"],
        [None, 2, None],
        strict=True,
    ):
        image = pl.read_csv(DEMO_PLATE / src / "Image.csv.gz", infer_schema=False)
        keep = [
            c
            for c in image.columns
            if c == "ImageNumber" or c.startswith(("Metadata_", "Count_", "FileName_", "PathName_"))
        ]
        image = image.select(keep)
        if number is not None:
            image = image.with_columns(pl.lit(str(number)).alias("Metadata_Site"))
        image.write_csv(site / "Image.csv")
    # Well A02 as one source (its site 1 and the empty site 9): a folder holding only
    # an empty site is refused by every reader (no objects at all).
    well = plate / "A02"
    well.mkdir()
    sites[2] = sites[2].rename(well / "A02-1")
    empty = well / "A02-9"
    empty.mkdir()
    image = pl.read_csv(sites[2] / "Image.csv", infer_schema=False)
    counts = [c for c in image.columns if c.startswith("Count_")]
    image.with_columns(
        pl.lit("9").alias("Metadata_Site"),
        pl.lit("site9.tiff").alias("FileName_OrigDNA"),
        *[pl.lit("0").alias(c) for c in counts],
    ).write_csv(empty / "Image.csv")
    for name in ("Cells", "Cytoplasm", "Nuclei"):
        header = (sites[2] / f"{name}.csv").read_text().split("\n")[0]
        (empty / f"{name}.csv").write_text(header + "\n")
    return plate, [*sites[:2], well]


def _images(db: Path) -> pl.DataFrame:
    with Store(db, read_only=True) as st:
        return st.read("images").sort(IMAGE_KEYS)


def test_images_table_equals_one_ingest_of_the_plate(
    imaged_sites: tuple[Path, list[Path]], tmp_path: Path, ray_local
) -> None:
    from cellframe.io import ingest

    plate, sites = imaged_sites
    with pytest.warns(IngestWarning, match="empty sites"):
        ingest(plate, tmp_path / "whole.duckdb", progress=False, layout="parquet")
    expected = _images(tmp_path / "whole.duckdb")
    # Hand count: 4 sites x the demo's channels; the empty site is there, with no cells.
    channels = expected["Channel"].n_unique()
    assert channels >= 2 and expected.height == 4 * channels
    empty = expected.filter(pl.col("Metadata_Site") == 9)
    assert empty.height == channels and empty[WELL].unique().to_list() == ["A02"]
    assert sum(p.endswith("/site9.tiff") for p in empty["Path"].to_list()) == 1
    for engine in ("local", "ray"):
        db = tmp_path / f"{engine}.duckdb"
        with Store(db) as st, pytest.warns(IngestWarning, match="empty sites"):
            ingest_plates(sites, st, engine=engine, progress=False)
        assert_frame_equal(_images(db), expected)
        with Store(db, read_only=True) as st:
            assert st.sql("SELECT count(*) AS n FROM cells WHERE Metadata_Site = 9")["n"][0] == 0
        # One site at a time, a site again: only that site's image rows are replaced.
        db = tmp_path / f"{engine}-per-site.duckdb"
        for site in [*sites, sites[1]]:
            with Store(db) as st, warnings.catch_warnings():
                warnings.simplefilter("ignore", IngestWarning)
                ingest_plates([site], st, engine=_forced(engine), progress=False)
        assert_frame_equal(_images(db), expected)


def test_compartments_reach_every_reader_and_the_cli(
    imaged_sites: tuple[Path, list[Path]],
    tmp_path: Path,
    ray_local,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from cellframe.cli import main
    from cellframe.io import ingest
    from tests.io._sites import store_bytes

    plate, sites = imaged_sites
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IngestWarning)
        ingest(
            plate,
            tmp_path / "whole.duckdb",
            progress=False,
            options=IngestOptions(compartments=["Nuclei"]),
        )
    with Store(tmp_path / "whole.duckdb", read_only=True) as st:
        expected = st.read("cells").sort(CELL_KEYS)
    prefixes = {c.split("_")[0] for c in expected.columns if not c.startswith("Metadata_")}
    assert prefixes == {"Nuclei"} and expected.height == 214
    for engine in ("local", "ray"):
        with Store(tmp_path / f"{engine}.duckdb") as st, warnings.catch_warnings():
            warnings.simplefilter("ignore", IngestWarning)
            ingest_plates(
                sites, st, engine=engine, progress=False,
                reading=ReadOptions(compartments=["Nuclei"]),
            )  # fmt: skip
            got = st.read("cells").sort(CELL_KEYS)
        assert_frame_equal(got.select(expected.columns), expected, check_column_order=False)
        assert got.columns == expected.columns
    # Control: without compartments every compartment is joined.
    with Store(tmp_path / "all.duckdb") as st, warnings.catch_warnings():
        warnings.simplefilter("ignore", IngestWarning)
        ingest_plates(sites, st, progress=False)
        assert {"Cells", "Cytoplasm", "Nuclei"} <= {c.split("_")[0] for c in st.columns("cells")}
    # The CLI passes --compartments to several sources (it refused them before).
    db = tmp_path / "cli.duckdb"
    args = ["ingest", *map(str, sites), "--store", str(db), "--compartments", "Nuclei", "--quiet"]
    assert main(args) == 0
    with Store(db, read_only=True) as st:
        assert_frame_equal(st.read("cells").sort(CELL_KEYS), expected)
    # A source that is not CellProfiler output: refused by name, the store unchanged.
    profile = tmp_path / "profiles.parquet"
    pl.DataFrame({PLATE: ["P9"], WELL: ["A01"], "Cells_f": [1.0]}).write_parquet(profile)
    before = store_bytes(db)
    bad = ["ingest", *map(str, sites), str(profile), *args[-5:], "--engine", "ray"]
    assert main(bad) == 2
    err = capsys.readouterr().err
    assert "compartments= applies to CellProfiler" in err and str(profile) in err
    assert store_bytes(db) == before


def _coverage(message: str) -> bool:
    return "are in wells the platemap does not list" in message or "have no rows" in message


def test_platemap_coverage_names_wells_as_the_single_source_path(
    imaged_sites: tuple[Path, list[Path]], tmp_path: Path, ray_local
) -> None:
    from cellframe.io import ingest

    plate, sites = imaged_sites
    pm = tmp_path / "platemap.csv"
    # A02 (36 cells) is missing; B05 has no data.
    pl.DataFrame({"well_position": ["A01", "B05"], "treatment": ["t1", "t2"]}).write_csv(pm)
    single = ingest(plate, tmp_path / "one.duckdb", platemap=pm, progress=False)
    coverage = [m for m in single.warnings if _coverage(m)]
    assert coverage == [
        "36 row(s) are in wells the platemap does not list (1 well(s): BR00121431/A02); "
        "their annotation columns are null",
        "1 well(s) of the platemap have no rows in the plate(s) read (BR00121431/B05); "
        "nothing was measured there",
    ]
    for engine in ("local", "ray"):
        with Store(tmp_path / f"{engine}.duckdb") as st:
            with pytest.warns(IngestWarning) as caught:
                report = ingest_plates(sites, st, platemap=pm, engine=engine, progress=False)
        assert [m for m in report.warnings if _coverage(m)] == coverage
        assert {str(w.message) for w in caught} >= set(coverage)
    # Control: a platemap listing exactly the data wells gives no coverage message.
    full = tmp_path / "full.csv"
    pl.DataFrame({"well_position": ["A01", "A02"], "treatment": ["t1", "t2"]}).write_csv(full)
    with Store(tmp_path / "full.duckdb") as st:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", IngestWarning)
            report = ingest_plates(sites, st, platemap=full, progress=False)
    assert not [m for m in report.warnings if _coverage(m)]


def test_relative_sources_are_resolved_on_the_driver(
    imaged_sites: tuple[Path, list[Path]],
    tmp_path: Path,
    ray_local,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plate, sites = imaged_sites
    # The driver moves to the plate's parent after Ray started: the workers' working
    # folder is elsewhere, so the relative names only mean something on the driver.
    monkeypatch.chdir(plate.parent)
    relative = [str(s.relative_to(plate.parent)) for s in sites]
    assert not Path(relative[0]).is_absolute() and Path(relative[0]).exists()
    with Store(tmp_path / "rel.duckdb") as st, warnings.catch_warnings():
        warnings.simplefilter("ignore", IngestWarning)
        report = ingest_plates(relative, st, engine="ray", progress=False)
        assert (report.rows, report.images_added) == (214, 3)
        assert st.sql("SELECT count(*) AS n FROM cells")["n"][0] == 214
    assert sorted(report.sources) == sorted(str(s.resolve()) for s in sites)
    # A name that does not exist here is refused on the driver, before any task, by name.
    with Store(tmp_path / "rel.duckdb") as st:
        with pytest.raises(FileNotFoundError, match=r"no such file or folder: BR00121431/A09 "):
            ingest_plates([relative[0], "BR00121431/A09"], st, engine="ray", progress=False)
        assert st.sql("SELECT count(*) AS n FROM cells")["n"][0] == 214


def test_engine_sites_with_an_empty_site_equal_one_ingest_and_emptied_site_is_removed(
    tmp_path: Path,
) -> None:
    from cellframe.errors import KeyConflictError
    from cellframe.io import ingest
    from tests.io._sites import store_bytes, write_empty_site, write_site_folders

    plate, sites = write_site_folders(tmp_path / "src", files=True)
    sites = [write_empty_site(plate / "A03-1", "A03", 1), *sites]
    image_keys = [PLATE, WELL, "Metadata_Site", "Channel"]
    ingest(plate, tmp_path / "whole.duckdb", progress=False, layout="parquet")
    with Store(tmp_path / "whole.duckdb", read_only=True) as st:
        expected = st.read("cells").sort(CELL_KEYS)
        expected_images = st.read("images").sort(image_keys)
    assert expected.height == 214 and expected_images[WELL].unique().len() == 3
    db = tmp_path / "per-site.duckdb"
    with Store(db) as st:
        # The empty site first: no cells table is made, its image is recorded.
        first = ingest_plates([sites[0]], st, engine="local", progress=False)
        assert (first.rows, first.images_replaced) == (0, 0)
        assert not st.has_table("cells") and st.read("images")[WELL].unique().to_list() == ["A03"]
        for site in sites[1:]:
            ingest_plates([site], st, engine="local", progress=False)
        assert_frame_equal(st.read("cells").sort(CELL_KEYS), expected)
        assert_frame_equal(st.read("images").sort(image_keys), expected_images)
    # Site A01/2 re-exported with no objects: append refuses, replace-images removes its cells.
    emptied = write_empty_site(tmp_path / "redo" / "A01-2", "A01", 2)
    before = store_bytes(db)
    with Store(db) as st:
        with pytest.raises(KeyConflictError, match=r"no objects.*Metadata_Site=2"):
            ingest_plates([emptied], st, engine="local", progress=False, mode="append")
    assert store_bytes(db) == before
    with Store(db) as st:
        report = ingest_plates([emptied], st, engine="local", progress=False)
        assert (report.rows, report.images_replaced, report.rows_replaced) == (0, 1, 89)
        got = st.read("cells").sort(CELL_KEYS)
    kept = expected.filter(~((pl.col(WELL) == "A01") & (pl.col("Metadata_Site") == 2)))
    assert kept.height == 125
    assert_frame_equal(got, kept)
