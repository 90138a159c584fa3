"""``cellframe embed`` reads the sites ``cellframe measure`` registers in the ``images`` table.

measure writes one ``images`` row per site and channel pointing to the zarr
store, the multi-channel TIFF or the channel's own TIFF it read; embed must
crop exactly those pixels (the arrays read directly), through the same
reader (``cellframe.io.images.read_channels``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import tifffile
from polars.testing import assert_frame_equal

from cellframe.cli import main
from cellframe.demo import demo_data_dir
from cellframe.store import Store

JUMP = demo_data_dir() / "jump"
#: The zarr stack's channel order (its channels.csv), and the order embedded.
ZARR_CHANNELS = ["AGP", "DNA", "ER", "Mito", "RNA"]
CHANNELS = ["DNA", "ER", "RNA", "AGP", "Mito"]
SITES = [("BR00123947", "G01", 1), ("CP-CC9-R1-05", "L07", 0)]
MEASURE = ["--channels", ",".join(CHANNELS), "--families", "sizeshape", "--no-illumination",
           "--nuclei-diameter", "20,80", "--quiet"]  # fmt: skip


def _direct() -> dict[tuple[str, str, int], np.ndarray]:
    """Each bundled site read straight from the zarr array, in CHANNELS order."""
    import zarr

    array = zarr.open(str(JUMP / "images.zarr"), mode="r")["images"]
    order = [ZARR_CHANNELS.index(c) for c in CHANNELS]
    return {key: np.asarray(array[i])[order] for i, key in enumerate(SITES)}


def _measure(store: Path, *args: str) -> Path:
    assert main(["measure", *args, *MEASURE, "--store", str(store)]) == 0
    return store


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[str, Path]:
    """The two bundled sites measured from a zarr store, TIFF stacks and one TIFF per channel."""
    root = tmp_path_factory.mktemp("images_table")
    direct = _direct()
    stacks = root / "stacks"  # multi-page TIFFs in the zarr's channel order, named in channels.csv
    stacks.mkdir()
    phenix = root / "per-channel"
    for (plate, well, site), pixels in direct.items():
        zarr_order = pixels[[CHANNELS.index(c) for c in ZARR_CHANNELS]]
        tifffile.imwrite(stacks / f"{plate}_{well}_s{site}.tif", zarr_order)
        folder = phenix / plate / "Images"
        folder.mkdir(parents=True)
        row, column = ord(well[0]) - ord("A") + 1, int(well[1:])
        for k, channel in enumerate(CHANNELS, start=1):
            name = f"r{row:02d}c{column:02d}f{site:02d}p01-ch{k}sk1fk1fl1.tiff"
            tifffile.imwrite(folder / name, pixels[CHANNELS.index(channel)])
    shutil.copy(JUMP / "channels.csv", stacks / "channels.csv")
    mapping = ",".join(f"ch{k}={c}" for k, c in enumerate(CHANNELS, start=1))
    folders = [str(phenix / plate / "Images") for plate, _, _ in SITES]
    return {
        "zarr": _measure(root / "zarr" / "s.duckdb", str(JUMP / "images.zarr")),
        "stacks": _measure(root / "stack" / "s.duckdb", str(stacks)),
        "per-channel": _measure(
            root / "files" / "s.duckdb", *folders, "--channel-files", "--channel-map", mapping
        ),
    }


@pytest.mark.parametrize("layout", ["zarr", "stacks", "per-channel"])
def test_images_rows_give_back_the_pixels_measured(stores, layout) -> None:
    from cellframe.embed.sources import ChannelFilesLoader

    with Store(stores[layout], read_only=True) as store:
        images = store.read("images")
    paths = images.group_by("Metadata_Plate").agg(pl.col("Path").n_unique())["Path"].to_list()
    assert paths == [5 if layout == "per-channel" else 1] * 2  # one file per channel, or one
    loader = ChannelFilesLoader.from_images_table(images, CHANNELS)
    assert loader.sites == sorted(SITES)
    for key, pixels in _direct().items():
        got = loader(key)
        assert got.dtype == np.uint16
        np.testing.assert_array_equal(got, pixels)  # every channel, exactly
    # another order and a subset: still picked by name, never by position
    dna_mito = ChannelFilesLoader.from_images_table(images, ["Mito", "DNA"])(SITES[1])
    np.testing.assert_array_equal(dna_mito, _direct()[SITES[1]][[4, 0]])


class _Recording:
    """An embedder that keeps every batch of crops it is given."""

    def __init__(self, embedder) -> None:
        self.embedder = embedder
        self.batches: list = []

    def __getattr__(self, name: str):
        return getattr(self.embedder, name)

    def __call__(self, crops):
        self.batches.append(crops.clone())
        return self.embedder(crops)


@pytest.fixture(scope="module")
def embedder():
    from cellframe.embed import ChannelEmbedder

    return ChannelEmbedder("efficientnet_b0", weights="random", input_size=16)


@pytest.mark.parametrize("layout", ["zarr", "per-channel"])
def test_embed_crops_the_same_pixels_as_the_arrays_read_directly(stores, layout, embedder) -> None:
    import torch

    from cellframe.embed import embed_objects
    from cellframe.embed.sources import ChannelFilesLoader

    with Store(stores[layout], read_only=True) as store:
        cells = store.read("objects").filter(pl.col("Object") == "Cells")
        loader = ChannelFilesLoader.from_images_table(store.read("images"), CHANNELS)
    assert cells.height > 10
    cells = pl.concat([cells.head(3), cells.tail(3)])  # both sites, a few cells: seconds
    runs = []
    for images in (loader, _direct()):
        recording = _Recording(embedder)
        frame = embed_objects(
            cells, images, recording, channels=CHANNELS, batch_size=2, progress=False
        )
        runs.append((frame, recording.batches))
    (from_table, seen), (direct, want) = runs
    assert len(seen) == len(want) > 1
    for a, b in zip(seen, want, strict=True):
        assert a.dtype == torch.float32 and torch.equal(a, b)  # the network's inputs, exactly
    assert_frame_equal(from_table, direct)


def test_embed_command_on_a_measured_zarr_store(stores, tmp_path, embedder, capsys) -> None:
    from cellframe.embed import embed_objects

    folder = tmp_path / "copy"
    shutil.copytree(stores["zarr"].parent, folder)
    db = folder / "s.duckdb"
    with Store(db) as store:  # three cells per site keep the two networks' runs short
        store.sql("DELETE FROM objects WHERE Metadata_ObjectNumber > 3")
    argv = ["embed", "--store", str(db), "--object-type", "Cells", "--weights", "random",
            "--input-size", "16", "--channels", ",".join(CHANNELS), "--batch-size", "16"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    with Store(db, read_only=True) as store:
        got = store.read("cells_efficientnet_b0")
        cells = store.read("objects").filter(pl.col("Object") == "Cells")
    want = embed_objects(cells, _direct(), embedder, channels=CHANNELS, progress=False)
    keys = list(want.columns[:4])
    assert got.height == want.height == cells.height == 6
    assert_frame_equal(got.sort(keys), want.sort(keys), check_dtypes=False)


def test_unnamed_stacks_need_the_channel_names_measure_was_given(tmp_path, capsys) -> None:
    """A stack without channel names: measured with --channel-names, embedded with the same."""
    folder = tmp_path / "unnamed"
    folder.mkdir()
    key, pixels = SITES[0], _direct()[SITES[0]]
    tifffile.imwrite(folder / f"{key[0]}_{key[1]}_s{key[2]}.tif", pixels[::-1])  # reversed
    names = ",".join(CHANNELS[::-1])
    db = _measure(tmp_path / "s.duckdb", str(folder), "--channel-names", names)
    argv = ["embed", "--store", str(db), "--object-type", "Cells", "--weights", "random",
            "--input-size", "16", "--channels", "DNA,Mito", "--quiet"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "channel(s) ['DNA', 'Mito'] not in" in err, err
    assert "--channel-names" in err
    assert main([*argv, "--channel-names", names]) == 0
    from cellframe.embed.sources import ChannelFilesLoader

    with Store(db, read_only=True) as store:
        assert store.read("cells_efficientnet_b0").height > 0
        loader = ChannelFilesLoader.from_images_table(
            store.read("images"), ["DNA", "Mito"], channel_names=names.split(",")
        )
    np.testing.assert_array_equal(loader(key), pixels[[0, 4]])


def test_relative_paths_are_read_from_the_store_folder_and_missing_files_are_named(
    tmp_path, capsys
) -> None:
    """Rows as CellProfiler ingest writes them: one file per channel, relative, no Frame."""
    key, pixels = SITES[1], _direct()[SITES[1]]
    (tmp_path / "tiffs").mkdir()
    rows = []
    for i, channel in enumerate(CHANNELS):
        tifffile.imwrite(tmp_path / "tiffs" / f"{channel}.tif", pixels[i])
        rows.append({"Metadata_Plate": key[0], "Metadata_Well": key[1], "Metadata_Site": key[2],
                     "Channel": channel, "Path": f"tiffs/{channel}.tif", "Frame": None,
                     "Height": None, "Width": None})  # fmt: skip
    images = pl.DataFrame(rows, schema_overrides={
        "Metadata_Site": pl.Int32, "Frame": pl.Int32, "Height": pl.Int32, "Width": pl.Int32})  # fmt: skip
    objects = pl.DataFrame({
        "Metadata_Plate": [key[0]], "Metadata_Well": [key[1]], "Metadata_Site": [key[2]],
        "Metadata_ObjectNumber": [1], "Object": ["Nuclei"], "Location_Center_X": [100.0],
        "Location_Center_Y": [120.0], "AreaShape_Area": [None],
        **{f"BoundingBox_{c}": [None] for c in ("MinX", "MinY", "MaxX", "MaxY")},
    }, schema_overrides={"Metadata_Site": pl.Int32, "AreaShape_Area": pl.Float64,
                         **{f"BoundingBox_{c}": pl.Int32 for c in ("MinX", "MinY", "MaxX", "MaxY")}})  # fmt: skip
    db = tmp_path / "s.duckdb"
    with Store(db) as store:
        store.write("images", images, step="test")
        store.write("objects", objects, step="test")
    argv = ["embed", "--store", str(db), "--weights", "random", "--input-size", "16", "--quiet",
            "--channels", "ER,DNA"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    from cellframe.embed.sources import ChannelFilesLoader

    with Store(db, read_only=True) as store:
        assert store.read("cells_efficientnet_b0").height == 1
        loader = ChannelFilesLoader.from_images_table(
            store.read("images"), ["ER", "DNA"], root=tmp_path
        )
    np.testing.assert_array_equal(loader(key), pixels[[1, 0]])
    (tmp_path / "tiffs" / "ER.tif").unlink()
    assert main([*argv, "--table", "again"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "plate CP-CC9-R1-05 well L07 site 0" in err, err
    assert "ER.tif (channel ER)" in err
