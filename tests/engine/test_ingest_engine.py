"""Ingest on Ray: one task per source, the same rows as the local engine, resume and retries."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cellframe.columns import OBJECT_NUMBER, PLATE, WELL
from cellframe.engine.ingest import ingest_plates
from cellframe.errors import InvalidInputError
from cellframe.io import CellProfilerSQLite
from cellframe.io._synthetic import write_synthetic_sqlite
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
        forced = ingest_plates(sources, st, engine="ray", progress=False, force=True)
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
            sources, st, engine="ray", format=DiesMidPlate, batch_rows=100, progress=False
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
    with pytest.raises(SystemExit, match="single SOURCE"):
        main([*args, "--plate", "X"])
    # Several sources are always per-plate Parquet: --layout table is refused, not ignored.
    with pytest.raises(SystemExit, match="--layout table needs one SOURCE"):
        main([*args, "--layout", "table"])


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
                last = ingest_plates([site], st, engine=engine, progress=False, force=True)
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
            ingest_plates(sites[1:], st, engine="ray", progress=False, mode="append", force=True)
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
