"""The Ray engine gives exactly the local engine's result, resumes, and survives killed workers."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cellframe.columns import PLATE, WELL
from cellframe.engine import (
    EngineUnavailableError,
    LocalEngine,
    Plates,
    RayEngine,
    map_plates,
    reduce_plates,
)
from cellframe.engine.run import connect_ray
from cellframe.partitions import MARKER, PartitionVersionError, completed_plates
from cellframe.store import Store


def screen(
    n_plates: int = 4, n_wells: int = 24, n_features: int = 6, seed: int = 0
) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for p in range(n_plates):
        x = rng.normal(loc=p, size=(n_wells, n_features)).astype(np.float32)
        frames.append(
            pl.DataFrame({f"f{j}": x[:, j] for j in range(n_features)}).with_columns(
                pl.lit(f"P{p}").alias(PLATE), pl.Series(WELL, [f"A{i:02d}" for i in range(n_wells)])
            )
        )
    return pl.concat(frames).select(PLATE, WELL, pl.exclude(PLATE, WELL))


def center(frame: pl.DataFrame) -> pl.DataFrame:
    feats = [c for c in frame.columns if c.startswith("f")]
    return frame.with_columns((pl.col(feats) - pl.col(feats).mean()).cast(pl.Float32))


def canonical(df: pl.DataFrame) -> pl.DataFrame:
    return df.select(sorted(df.columns)).sort(PLATE, WELL)


@pytest.fixture
def screen_store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "screen.duckdb")
    s.write("wells", screen())
    yield s
    s.close()


def test_local_and_ray_give_the_same_table(screen_store: Store, ray_local) -> None:
    local = map_plates(screen_store, "wells", "centered_local", center, progress=False)
    ray_report = map_plates(
        screen_store, "wells", "centered_ray", center, engine="ray", progress=False, step="center"
    )
    assert sorted(local.computed) == sorted(ray_report.computed) == ["P0", "P1", "P2", "P3"]
    assert local.rows == ray_report.rows == 96
    a = canonical(screen_store.read("centered_local"))
    b = canonical(screen_store.read("centered_ray"))
    assert_frame_equal(a, b)
    # the result is the per-plate centering itself, checked against NumPy
    x = screen().filter(pl.col(PLATE) == "P2").select(pl.selectors.starts_with("f")).to_numpy()
    got = (
        b.filter(pl.col(PLATE) == "P2").sort(WELL).select(pl.selectors.starts_with("f")).to_numpy()
    )
    np.testing.assert_allclose(got, x - x.mean(axis=0), atol=1e-5)
    assert screen_store.tables().filter(pl.col("table") == "centered_ray")["kind"][0] == "parquet"


def test_ray_reads_partitioned_source_and_resumes(screen_store: Store, ray_local) -> None:
    for plate, frame in screen().group_by(PLATE):
        screen_store.write_partition("wells_parts", plate[0], frame)
    first = map_plates(
        screen_store,
        "wells_parts",
        "out",
        center,
        engine="ray",
        progress=False,
        step="center",
        plates=["P0", "P1"],
    )
    assert sorted(first.computed) == ["P0", "P1"]
    second = map_plates(
        screen_store, "wells_parts", "out", center, engine="ray", progress=False, step="center"
    )
    assert sorted(second.skipped) == ["P0", "P1"] and sorted(second.computed) == ["P2", "P3"]
    forced = map_plates(
        screen_store,
        "wells_parts",
        "out",
        center,
        engine=RayEngine(force=True),
        progress=False,
        step="center",
    )
    assert sorted(forced.computed) == ["P0", "P1", "P2", "P3"]
    local = map_plates(screen_store, "wells", "out_local", center, progress=False)
    assert local.rows == 96
    assert_frame_equal(
        canonical(screen_store.read("out")), canonical(screen_store.read("out_local"))
    )


def test_store_in_a_folder_with_glob_characters(tmp_path: Path, ray_local) -> None:
    # "[", "]", "*", "{" in the store's folder and in plate names: every reader
    # (DuckDB's view, Polars' scans, Ray tasks) must read them as plain names.
    folder = tmp_path / "screen [2024] *{a,b}"
    with Store(folder / "s.duckdb") as st:
        data = screen(n_plates=2).with_columns(pl.col(PLATE).replace({"P1": "P[1]"}))
        for plate, frame in data.group_by(PLATE):
            st.write_partition("wells_parts", plate[0], frame)
        assert st.plates("wells_parts") == ["P0", "P[1]"]
        assert st.sql("SELECT count(*) AS n FROM wells_parts")["n"][0] == 48
        assert st.schema("wells_parts") == st.scan("wells_parts").collect_schema()
        ray_report = map_plates(
            st, "wells_parts", "out", center, engine="ray", progress=False, step="center"
        )
        assert sorted(ray_report.computed) == ["P0", "P[1]"]
        local = map_plates(st, "wells_parts", "out_local", center, progress=False)
        assert local.rows == 48
        assert_frame_equal(canonical(st.read("out")), canonical(st.read("out_local")))


def test_killed_worker_is_retried_without_partial_partition(
    screen_store: Store, ray_local, tmp_path: Path
) -> None:
    flag = tmp_path / "killed-once"

    def dies_mid_write(frame: pl.DataFrame):
        out = center(frame)
        half = out.height // 2
        yield out.head(half)
        if frame[PLATE][0] == "P1" and not flag.exists():
            flag.write_text("x")
            os.kill(os.getpid(), signal.SIGKILL)  # the worker dies half-way through the plate
        yield out.tail(out.height - half)

    report = map_plates(
        screen_store, "wells", "robust", dies_mid_write, engine="ray", progress=False
    )
    assert flag.exists()
    assert sorted(report.computed) == ["P0", "P1", "P2", "P3"]
    root = screen_store.parts_dir / "robust"
    assert completed_plates(root) == ["P0", "P1", "P2", "P3"]
    assert not [p for p in root.iterdir() if p.name.startswith(".")]
    expected = canonical(center_by_plate(screen()))
    assert_frame_equal(canonical(screen_store.read("robust")), expected)


def center_by_plate(df: pl.DataFrame) -> pl.DataFrame:
    return pl.concat([center(g) for _, g in df.group_by(PLATE, maintain_order=True)])


def test_partition_from_another_version_is_refused(screen_store: Store, ray_local) -> None:
    map_plates(screen_store, "wells", "v", center, engine="ray", progress=False, step="center")
    marker = screen_store.parts_dir / "v" / f"{PLATE}=P0" / MARKER
    marker.write_text(
        marker.read_text().replace('"cellframe_version": "', '"cellframe_version": "0.0.1-old')
    )
    with pytest.raises(PartitionVersionError, match="--force"):
        map_plates(screen_store, "wells", "v", center, engine="ray", progress=False, step="center")
    report = map_plates(
        screen_store, "wells", "v", center, engine=RayEngine(force=True), progress=False,
        step="center",
    )  # fmt: skip
    assert len(report.computed) == 4


def test_plate_with_different_schema_is_refused(screen_store: Store, ray_local) -> None:
    def odd_plate_out(frame: pl.DataFrame) -> pl.DataFrame:
        out = center(frame)
        return out.with_columns(pl.lit(1.0).alias("extra")) if frame[PLATE][0] == "P3" else out

    with pytest.raises(Exception, match="differ"):
        map_plates(screen_store, "wells", "bad", odd_plate_out, engine="ray", progress=False)


def test_reduce_plates_exact_sufficient_statistics(screen_store: Store, ray_local) -> None:
    feats = [f"f{j}" for j in range(6)]

    def stats(frame: pl.DataFrame):
        x = frame.select(feats).to_numpy().astype(np.float64)
        return x.shape[0], x.sum(axis=0), x.T @ x

    def combine(parts):
        parts = list(parts)
        n = sum(p[0] for p in parts)
        s = sum(p[1] for p in parts)
        xtx = sum(p[2] for p in parts)
        mean = s / n
        return mean, xtx / n - np.outer(mean, mean)

    x = screen().select(feats).to_numpy().astype(np.float64)
    for engine in ("local", "ray"):
        mean, cov = reduce_plates(
            screen_store, "wells", stats, combine, engine=engine, progress=False
        )
        np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(cov, np.cov(x, rowvar=False, ddof=0), atol=1e-10)


def test_unknown_engine_and_unreachable_address(screen_store: Store) -> None:
    with pytest.raises(ValueError, match="local, ray"):
        map_plates(screen_store, "wells", "x", center, engine="spark")
    with pytest.raises(
        EngineUnavailableError, match=r"cannot reach a Ray cluster at 127\.0\.0\.1:9"
    ):
        connect_ray("127.0.0.1:9")
    with pytest.raises(EngineUnavailableError, match="HOST:PORT"):
        connect_ray("not-an-address")


def test_engine_objects_map_gather_reduce_apply_agree(screen_store: Store, ray_local) -> None:
    """The methods of both engine objects: the same numbers, checked against NumPy."""
    from cellframe.profiles import Spherizer

    plates = Plates(screen_store, "wells")
    feats = [f"f{j}" for j in range(6)]
    x = screen().sort(PLATE, WELL).select(feats).to_numpy().astype(np.float64)
    sizes = {}
    for engine in (LocalEngine(), RayEngine()):
        # gather: per-plate row counts, in plate order
        sizes[engine.name] = engine.gather(len, plates, list, progress=False)
        # reduce: the sphering fit from merged per-plate statistics equals the
        # fit on all rows at once, whose whitened rows have identity covariance
        fitted = engine.reduce(Spherizer(lam=0.0, controls="all"), plates, progress=False)
        whole = Spherizer(lam=0.0, controls="all").fit(screen())
        np.testing.assert_allclose(fitted.W_, whole.W_, rtol=1e-6, atol=1e-8)
        white = (x - x.mean(axis=0)) @ fitted.W_
        np.testing.assert_allclose(np.cov(white, rowvar=False, ddof=0), np.eye(6), atol=1e-6)
        # apply, then map: one table each, the same centred values as NumPy
        engine.apply(fitted, plates, f"sph_{engine.name}", name="sphere", progress=False)
        engine.map(center, Plates(screen_store, "wells", ["P1"]), f"c_{engine.name}",
                   step="center", progress=False)  # fmt: skip
        got = screen_store.read(f"c_{engine.name}").sort(WELL).select(feats).to_numpy()
        p1 = screen().filter(pl.col(PLATE) == "P1").sort(WELL).select(feats).to_numpy()
        np.testing.assert_allclose(got, p1 - p1.mean(axis=0), atol=1e-5)
    assert sizes["local"] == sizes["ray"] == [24, 24, 24, 24]
    assert_frame_equal(
        canonical(screen_store.read("sph_local")), canonical(screen_store.read("sph_ray")),
        rel_tol=1e-5, abs_tol=1e-5,
    )  # fmt: skip


def test_local_engine_refuses_bad_options_and_sizes_units() -> None:
    from cellframe.errors import InvalidInputError

    for bad in ({"workers": 0}, {"chunk_rows": -5}, {"memory_budget": 0}):
        key = next(iter(bad))
        with pytest.raises(InvalidInputError, match=rf"LocalEngine\({key}="):
            LocalEngine(**bad)
    # 256 MiB of float32 features per unit; at least 10,000 rows; chunk_rows wins.
    assert LocalEngine().unit_rows(4 * 100) == 256 * 2**20 // 400
    assert LocalEngine().unit_rows(4 * 10**6) == 10_000
    assert LocalEngine(chunk_rows=7).unit_rows(4) == 7
