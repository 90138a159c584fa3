"""The illumination first pass of measure_images is a per-plate task on the engine.

Each plate's sites are read, checked and fitted in the plate's own task
(``Engine.gather_tasks``): in this process on the local engine, in a Ray task
on the Ray engine. The functions equal a serial fit over the plate's sites
bit for bit on both engines, and a bad site still leaves the store unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cellframe.engine import LocalEngine, RayEngine
from cellframe.errors import BlankImageError, InvalidInputError
from cellframe.io.images import ImageWarning
from cellframe.measure.features import to_unit_range
from cellframe.measure.illumination import IlluminationFunction
from cellframe.pipeline.measure import MeasureOptions, measure_images
from cellframe.store import Store

JUMP = Path(__file__).resolve().parents[2] / "cellframe" / "data" / "demo" / "jump"
CHANNELS = ["DNA", "ER", "RNA", "AGP", "Mito"]
PARAMS = {"size": 15}  # a small median filter: the fit stays quick
OPTIONS = {
    "measurements": MeasureOptions(families=["sizeshape"], illumination_params=PARAMS),
    "progress": False,
}


def _names() -> list[str]:
    return pl.read_csv(JUMP / "channels.csv", glob=False).sort("idx")["channel"].to_list()


@pytest.fixture(scope="module")
def two_plates(tmp_path_factory) -> tuple[Path, dict[tuple[str, int], np.ndarray]]:
    """Two plates of two sites each (the bundled JUMP sites, one of them mirrored)."""
    import tifffile

    from cellframe.io.images import read_site

    folder = tmp_path_factory.mktemp("plates")
    names = _names()
    site0, _ = read_site(JUMP / "images.zarr", site=0, channel_names=names)
    site1, _ = read_site(JUMP / "images.zarr", site=1, channel_names=names)
    stacks = {
        ("PA", 1): site0,
        ("PA", 2): site1,
        ("PB", 1): site1[:, ::-1, :].copy(),
        ("PB", 2): site0[:, :, ::-1].copy(),
    }
    for (plate, site), stack in stacks.items():
        tifffile.imwrite(folder / f"{plate}_A01_s{site}.tif", stack)
    pl.DataFrame({"idx": range(len(names)), "channel": names}).write_csv(folder / "channels.csv")
    return folder, stacks


def _serial(stacks: dict[tuple[str, int], np.ndarray]) -> dict[tuple[str, str], np.ndarray]:
    """The reference: each plate and channel fitted in one call over its sites, in order."""
    names = _names()
    out = {}
    for plate in ("PA", "PB"):
        for channel in CHANNELS:
            images = [to_unit_range(stacks[(plate, s)][names.index(channel)]) for s in (1, 2)]
            fitted = IlluminationFunction(plate=plate, channel=channel, **PARAMS).fit(images)
            out[(plate, channel)] = fitted.function_
    return out


def _functions(store: Store) -> dict[tuple[str, str], np.ndarray]:
    rows = store.read("illumination")
    out = {}
    for (plate, channel), part in rows.group_by(["Metadata_Plate", "Metadata_Channel"]):
        out[(plate, channel)] = IlluminationFunction.from_frame(part).function_
    return out


def _assert_bit_identical(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].dtype == b[key].dtype == np.float32, key
        assert np.array_equal(a[key], b[key]), key  # exact, not close


def test_local_fit_equals_the_serial_fit_bit_for_bit(two_plates, tmp_path) -> None:
    folder, stacks = two_plates
    with Store(tmp_path / "s.duckdb") as store:
        report = measure_images(store, [folder], channels=CHANNELS, engine="local", **OPTIONS)
        stored = _functions(store)
        rows = store.read("illumination")
    assert report.sites_measured == 4
    reference = _serial(stacks)
    _assert_bit_identical(stored, reference)
    # each plate's function comes from its own two sites, so the plates differ
    assert not np.array_equal(stored[("PA", "DNA")], stored[("PB", "DNA")])
    assert rows["Metadata_Plate"].unique().sort().to_list() == ["PA", "PB"]
    assert rows.height == 2 * 5 * 384  # one row per plate, channel and image row


def test_ray_reads_and_fits_in_the_plate_tasks_bit_identical_to_local(
    two_plates, tmp_path, ray_local, monkeypatch
) -> None:
    """On Ray the driver reads no image and fits nothing: both happen in the plate tasks."""
    import cellframe.pipeline.measure as pipeline_measure

    folder, stacks = two_plates

    def driver_must_not(*args, **kwargs):
        raise AssertionError("the driver read or fitted a plate's sites")

    with Store(tmp_path / "local.duckdb") as store:
        measure_images(store, [folder], channels=CHANNELS, engine=LocalEngine(), **OPTIONS)
        local_rows = store.read("illumination").sort("Metadata_Plate", "Metadata_Channel", "Row")
        local_cells = store.read("cells").sort(
            "Metadata_Plate", "Metadata_Site", "Metadata_ObjectNumber"
        )
    with monkeypatch.context() as patch:
        patch.setattr(pipeline_measure, "_read", driver_must_not)
        patch.setattr(IlluminationFunction, "statistics", driver_must_not)
        patch.setattr(IlluminationFunction, "from_statistics", driver_must_not)
        with Store(tmp_path / "ray.duckdb") as store:
            report = measure_images(
                store, [folder], channels=CHANNELS, engine=RayEngine(), **OPTIONS
            )
            ray_rows = store.read("illumination").sort("Metadata_Plate", "Metadata_Channel", "Row")
            ray_cells = store.read("cells").sort(
                "Metadata_Plate", "Metadata_Site", "Metadata_ObjectNumber"
            )
            ray_functions = _functions(store)
    assert report.sites_measured == 4
    assert ray_rows.equals(local_rows)
    assert ray_cells.select(local_cells.columns).equals(local_cells)
    _assert_bit_identical(ray_functions, _serial(stacks))


def test_a_bad_site_in_a_ray_plate_task_leaves_the_store_unchanged(
    two_plates, tmp_path, ray_local
) -> None:
    """The check of every site still precedes every write; the task's error keeps its class."""
    import tifffile

    folder, stacks = two_plates
    bad = tmp_path / "bad"
    bad.mkdir()
    names = _names()
    for path in folder.iterdir():
        (bad / path.name).write_bytes(path.read_bytes())
    blank = stacks[("PB", 2)].copy()
    blank[names.index("AGP")] = 0
    tifffile.imwrite(bad / "PB_A01_s2.tif", blank)
    with Store(tmp_path / "s.duckdb") as store:
        before = {t: store.read(t) for t in store.table_names() if t != "cellframe_provenance"}
        with pytest.raises(BlankImageError, match=r"PB_A01_s2.tif .*cell-body channel 'AGP'"):
            measure_images(store, [bad], channels=CHANNELS, engine=RayEngine(), **OPTIONS)
        after = {t: store.read(t) for t in store.table_names() if t != "cellframe_provenance"}
        assert after.keys() == before.keys()
        assert all(after[t].equals(before[t]) for t in before)
        assert not store.has_table("cells") and not store.has_table("illumination")


def test_a_plate_tasks_warnings_reach_the_caller_on_both_engines(
    two_plates, tmp_path, ray_local
) -> None:
    """A blank channel that finds no objects is counted by a warning, from a Ray task too."""
    import tifffile

    _, stacks = two_plates
    odd = tmp_path / "odd"
    odd.mkdir()
    names = _names()
    stack = stacks[("PA", 1)].copy()
    stack[names.index("ER")] = 7  # blank, but not a channel objects are found on
    tifffile.imwrite(odd / "PA_A01_s1.tif", stack)
    pl.DataFrame({"idx": range(5), "channel": names}).write_csv(odd / "channels.csv")
    quick = {**OPTIONS, "measurements": MeasureOptions(families=["sizeshape"], illumination=False)}
    for engine in (LocalEngine(), RayEngine()):
        with Store(tmp_path / f"{engine.name}.duckdb") as store:
            with pytest.warns(ImageWarning, match=r"PA_A01_s1.tif .*1 of 5 channel\(s\) are blank"):
                report = measure_images(store, [odd], channels=CHANNELS, engine=engine, **quick)
            assert report.sites_measured == 1 and store.read("cells").height > 0


def test_gather_tasks_keeps_task_order_and_errors_on_both_engines(ray_local) -> None:
    def _fails_on_second(task: int) -> int:  # nested: Ray pickles it by value
        if task == 2:
            raise InvalidInputError("task 2 is bad")
        return task

    tasks = [[3.0, 1.0], [], [2.0, 2.0, 2.0]]
    for engine in (LocalEngine(), RayEngine()):
        assert engine.gather_tasks(sum, tasks, list, progress=False) == [4.0, 0, 6.0]
        assert engine.gather_tasks(len, tasks, sum, progress=False) == 5
        with pytest.raises(InvalidInputError, match="task 2 is bad"):
            engine.gather_tasks(_fails_on_second, [1, 2, 3], list, progress=False)
        # a combine that stops early gets the first result; the rest are dropped
        first = engine.gather_tasks(sum, tasks, lambda results: next(iter(results)), progress=False)
        assert first == 4.0
