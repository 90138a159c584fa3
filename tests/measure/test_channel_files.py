"""``cellframe measure`` on one TIFF per channel per site: LoadData CSVs and Phenix/JUMP names.

The bundled JUMP sites (a zarr stack) are split into one TIFF per channel;
measuring the split files must give exactly the feature table of measuring
the stack, and every bad layout is one named error that leaves the store as
it was.
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
from cellframe.columns import OBJECT_NUMBER, PLATE, SITE, WELL
from cellframe.demo import demo_data_dir
from cellframe.errors import (
    DuplicateKeysError,
    IncompleteSiteError,
    InputNotFoundError,
    InvalidImageError,
    InvalidInputError,
    MissingColumnsError,
)
from cellframe.io.channel_files import (
    DEFAULT_CHANNEL_PATTERN,
    check_sites,
    sites_from_channel_files,
    sites_from_load_data,
    well_name,
)
from cellframe.io.images import ChannelNotFoundError, ChannelSource, read_channels
from cellframe.store import Store

from .conftest import JUMP_CHANNELS

JUMP = demo_data_dir() / "jump"
CHANNELS = "DNA,ER,RNA,AGP,Mito"
#: Phenix channel numbers of the split files: ch1 is DNA, ..., not the zarr's order.
PHENIX = {"DNA": "ch1", "ER": "ch2", "RNA": "ch3", "AGP": "ch4", "Mito": "ch5"}
CHANNEL_MAP = ",".join(f"{ch}={name}" for name, ch in PHENIX.items())
#: The bundled sites: (plate, well, site, Phenix row, column).
SITES = [("BR00123947", "G01", 1, 7, 1), ("CP-CC9-R1-05", "L07", 0, 12, 7)]
QUICK = ["--families", "sizeshape,intensity", "--no-illumination", "--nuclei-diameter", "20,80"]
KEYS = [PLATE, WELL, SITE, OBJECT_NUMBER]


def _stack(index: int) -> np.ndarray:
    """The bundled site ``index`` as (5, 384, 384) in JUMP_CHANNELS order."""
    import zarr

    return np.asarray(zarr.open(str(JUMP / "images.zarr"), mode="r")["images"][index])


def _phenix_name(row: int, column: int, site: int, channel: str) -> str:
    return f"r{row:02d}c{column:02d}f{site:02d}p01-{channel}sk1fk1fl1.tiff"


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> dict[str, Path]:
    """The two bundled sites as one TIFF per channel: Phenix folders and a LoadData CSV."""
    root = tmp_path_factory.mktemp("split")
    rows = []
    folders = []
    for index, (plate, well, site, row, column) in enumerate(SITES):
        folder = root / f"{plate}__2021-05-02T16_02_51-Measurement1" / "Images"
        folder.mkdir(parents=True)
        folders.append(folder)
        stack = _stack(index)
        line = {"Metadata_Plate": plate, "Metadata_Well": well, "Metadata_Site": site}
        for name, channel in PHENIX.items():
            file = _phenix_name(row, column, site, channel)
            tifffile.imwrite(folder / file, stack[JUMP_CHANNELS.index(name)])
            line[f"FileName_Orig{name}"] = file
            line[f"PathName_Orig{name}"] = str(folder)
        # JUMP's load_data_with_illum CSVs also name illumination files: not measured, not read.
        line["FileName_IllumDNA"] = "absent_IllumDNA.npy"
        line["PathName_IllumDNA"] = str(root / "illum")
        rows.append(line)
    pl.DataFrame(rows).write_csv(root / "load_data.csv")
    return {"root": root, "csv": root / "load_data.csv", "a": folders[0], "b": folders[1]}


@pytest.fixture(scope="module")
def stacked(tmp_path_factory) -> Path:
    """The reference: the same two sites measured from the bundled zarr stack."""
    store = tmp_path_factory.mktemp("stacked") / "s.duckdb"
    argv = ["measure", str(JUMP / "images.zarr"), "--channels", CHANNELS, *QUICK, "--quiet"]
    assert main([*argv, "--store", str(store)]) == 0
    return store


def _tables(store: Path) -> dict[str, pl.DataFrame]:
    with Store(store, read_only=True) as s:
        return {
            "cells": s.read("cells").sort(KEYS),
            "objects": s.read("objects").sort([PLATE, WELL, SITE, "Object", OBJECT_NUMBER]),
            "image_quality": s.read("image_quality").sort([PLATE, WELL, SITE]),
            "images": s.read("images").sort([PLATE, WELL, SITE, "Channel"]),
        }


def _same_measurements(got: dict[str, pl.DataFrame], want: dict[str, pl.DataFrame]) -> None:
    assert want["cells"].height > 10
    for table in ("cells", "objects", "image_quality"):
        assert_frame_equal(got[table], want[table])


def test_load_data_csv_measures_as_the_stack(split, stacked, tmp_path) -> None:
    store = tmp_path / "s.duckdb"
    argv = ["measure", "--load-data", str(split["csv"]), "--channels", CHANNELS, *QUICK]
    maps = ",".join(f"Orig{name}={name}" for name in PHENIX)
    assert main([*argv, "--channel-map", maps, "--store", str(store), "--quiet"]) == 0
    got, want = _tables(store), _tables(stacked)
    _same_measurements(got, want)
    # images: one row per channel, each its own file (site index 0 in it)
    images = got["images"]
    assert images.height == 10 and images["Frame"].to_list() == [0] * 10
    first = images.filter((pl.col(PLATE) == "BR00123947") & (pl.col("Channel") == "ER"))
    assert first["Path"].item() == str((split["a"] / _phenix_name(7, 1, 1, "ch2")).resolve())


def test_phenix_folders_measure_as_the_stack(split, stacked, tmp_path) -> None:
    store = tmp_path / "s.duckdb"
    argv = ["measure", str(split["a"]), str(split["b"]), "--channel-files", "--channels", CHANNELS]
    assert main([*argv, *QUICK, "--channel-map", CHANNEL_MAP, "--store", str(store), "-q"]) == 0
    got = _tables(store)
    _same_measurements(got, _tables(stacked))
    assert got["images"]["Channel"].unique().sort().to_list() == sorted(PHENIX)


def test_a_pattern_with_a_channel_group_reads_one_file_per_channel(split, tmp_path) -> None:
    # Flat file names of another naming: plate, well and site from the name, channel last.
    folder = tmp_path / "flat"
    folder.mkdir()
    stack = _stack(0)
    for name in PHENIX:
        tifffile.imwrite(folder / f"P9_B3_s2_{name}.tif", stack[JUMP_CHANNELS.index(name)])
    pattern = r"(?P<plate>[^_/]+)_(?P<well>[A-Z]\d+)_s(?P<site>\d+)_(?P<channel>\w+)\.tif$"
    sites = sites_from_channel_files(sorted(folder.iterdir()), pattern=pattern)
    assert [(s.plate, s.well, s.site) for s in sites] == [("P9", "B03", 2)]
    pixels = read_channels(sites[0].sources(["Mito", "DNA"]))
    np.testing.assert_array_equal(pixels["Mito"], stack[JUMP_CHANNELS.index("Mito")])
    np.testing.assert_array_equal(pixels["DNA"], stack[JUMP_CHANNELS.index("DNA")])


def test_default_pattern_reads_phenix_names() -> None:
    import re

    path = (
        "/data/BR00117035__2021-05-02T16_02_51-Measurement1/Images/r16c24f09p01-ch5sk1fk1fl1.tiff"
    )
    m = re.search(DEFAULT_CHANNEL_PATTERN, path)
    assert m is not None
    assert (m["plate"], m["row"], m["column"], m["site"], m["channel"]) == (
        "BR00117035", "16", "24", "09", "ch5",
    )  # fmt: skip
    assert (
        re.search(DEFAULT_CHANNEL_PATTERN, "/data/P1/r01c01f01p01-ch1sk1fk1fl1.tiff")["plate"]
        == "P1"
    )
    assert re.search(DEFAULT_CHANNEL_PATTERN, "/data/P1/BR00117035_G01_s1.tif") is None
    assert [well_name(r, c) for r, c in ((1, 1), (7, 1), (12, 7), (26, 1), (27, 2))] == [
        "A01", "G01", "L07", "Z01", "AA02",
    ]  # fmt: skip


# ------------------------------------------------------------------ bad layouts
def _csv(split, tmp_path: Path, edit) -> Path:
    frame = edit(pl.read_csv(split["csv"], glob=False))
    path = tmp_path / "edited.csv"
    frame.write_csv(path)
    return path


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _refused(argv: list[str], store: Path, capsys, match: str) -> str:
    before = _files(store.parent)
    assert main([*argv, "--store", str(store), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cellframe: error: ") and err.count("\n") == 1, err
    assert match in err, err
    # the store, its partitions and labels are byte-for-byte as they were
    assert _files(store.parent) == before
    return err


@pytest.fixture
def store_copy(stacked, tmp_path) -> Path:
    """A store holding the measured stack, to check that refused runs leave it unchanged."""
    folder = tmp_path / "kept"
    shutil.copytree(stacked.parent, folder)
    with Store(folder / stacked.name):
        pass  # a moved store re-points its partition views once, on its first opening
    return folder / stacked.name


def test_load_data_errors_name_the_line_and_leave_the_store(
    split, tmp_path, store_copy, capsys
) -> None:
    maps = ["--channel-map", ",".join(f"Orig{name}={name}" for name in PHENIX)]
    base = ["measure", "--channels", CHANNELS, *QUICK, *maps, "--force"]
    # a missing file: the CSV line and column named
    missing = _csv(split, tmp_path, lambda f: f.with_columns(
        pl.when(pl.int_range(pl.len()) == 1).then(pl.lit("gone.tiff"))
        .otherwise(pl.col("FileName_OrigER")).alias("FileName_OrigER")))  # fmt: skip
    err = _refused(
        [*base, "--load-data", str(missing)], store_copy, capsys, "line 3, column FileName_OrigER"
    )
    assert "gone.tiff" in err and "channel ER of plate CP-CC9-R1-05 well L07 site 0" in err
    # a site without one of its channels, named
    empty = _csv(split, tmp_path, lambda f: f.with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(pl.lit(None))
        .otherwise(pl.col("FileName_OrigMito")).alias("FileName_OrigMito")))  # fmt: skip
    _refused([*base, "--load-data", str(empty)], store_copy, capsys,
             "plate BR00123947 well G01 site 1 (LoadData CSV")  # fmt: skip
    # an unknown channel name, and a map naming a channel the CSV lacks
    unknown = [*base[:2], "DNA,ER,RNA,AGP,Actin", *base[3:], "--load-data", str(split["csv"])]
    err = _refused(unknown, store_copy, capsys, "['Actin'] are not among the channels")
    _refused([*base, "--channel-map", "OrigActin=Actin", "--load-data", str(split["csv"])],
             store_copy, capsys, "renames ['OrigActin']")  # fmt: skip
    # the same site twice, and a site that is not a number
    twice = _csv(split, tmp_path, lambda f: pl.concat([f, f.head(1)]))
    _refused([*base, "--load-data", str(twice)], store_copy, capsys, "line 4: plate BR00123947")
    bad = _csv(split, tmp_path, lambda f: f.with_columns(pl.lit("one").alias("Metadata_Site")))
    _refused(
        [*base, "--load-data", str(bad)],
        store_copy,
        capsys,
        "line 2: column Metadata_Site is 'one'",
    )
    # the CSV and IMAGES together
    _refused([*base, "--load-data", str(split["csv"]), str(split["a"])], store_copy, capsys,
             "give one of the two")  # fmt: skip


def test_load_data_parser_refuses_what_it_cannot_read(split, tmp_path) -> None:
    with pytest.raises(MissingColumnsError, match="'Metadata_Well'"):
        sites_from_load_data(_csv(split, tmp_path, lambda f: f.drop("Metadata_Well")))
    with pytest.raises(InvalidInputError, match="Frame_OrigDNA is '2'"):
        sites_from_load_data(_csv(split, tmp_path, lambda f: f.with_columns(
            pl.lit(2).alias("Frame_OrigDNA"))))  # fmt: skip
    with pytest.raises(DuplicateKeysError):
        sites_from_load_data(_csv(split, tmp_path, lambda f: pl.concat([f, f])))
    # control: relative PathName_ folders are read from the CSV's folder, Frame_ 0 is fine
    relative = _csv(split, tmp_path, lambda f: f.with_columns(
        pl.lit(0).alias("Frame_OrigDNA"),
        pl.col("PathName_OrigDNA").str.replace(f"^{split['root']}/", "../split_copy/")))  # fmt: skip
    shutil.copytree(split["root"], tmp_path.parent / "split_copy", dirs_exist_ok=True)
    sites = sites_from_load_data(relative, channel_map={"OrigDNA": "DNA"})
    assert [(s.plate, s.well, s.site) for s in sites] == [(p, w, s) for p, w, s, *_ in SITES]
    dna = Path(sites[1].sources(["DNA"])[0].path)
    assert dna.resolve() == (tmp_path.parent / "split_copy" / split["b"].relative_to(
        split["root"]) / _phenix_name(12, 7, 0, "ch1")).resolve()  # fmt: skip
    check_sites(sites, ["DNA", "OrigER"])  # the illumination column is not checked


def test_channel_file_errors(split, tmp_path, store_copy, capsys) -> None:
    folder = tmp_path / "P1" / "Images"
    shutil.copytree(split["a"], folder)
    base = ["measure", str(folder), "--channel-files", "--channels", CHANNELS, *QUICK, "--force"]
    maps = ["--channel-map", CHANNEL_MAP]
    # a site missing a channel (named), and a file of another size (both files named)
    mito = folder / _phenix_name(7, 1, 1, "ch5")
    pixels = tifffile.imread(mito)
    other = folder / _phenix_name(7, 1, 2, "ch1")
    tifffile.imwrite(other, pixels)
    _refused([*base, *maps], store_copy, capsys, "plate P1 well G01 site 2 (")
    other.unlink()
    tifffile.imwrite(mito, pixels[:200, :200])
    err = _refused([*base, *maps], store_copy, capsys, "differ in size")
    assert "DNA, ER, RNA, AGP 384 x 384, Mito 200 x 200 (" in err
    with pytest.raises(
        InvalidImageError,
        match=r"ch1, ch2, ch3, ch4 384 x 384, ch5 200 x 200 \(.*ch5sk1fk1fl1.tiff\)",
    ):
        read_channels(sites_from_channel_files(sorted(folder.iterdir()))[0].files)
    tifffile.imwrite(mito, pixels)
    # a file the pattern does not name, and the channels left unmapped
    stray = folder / "notes.tif"
    tifffile.imwrite(stray, pixels)
    _refused([*base, *maps], store_copy, capsys, "1 of 6 file(s) do not match")
    stray.unlink()
    _refused(base, store_copy, capsys, "--channel-map ch1=DNA")
    # two planes of one channel are not silently one
    tifffile.imwrite(folder / _phenix_name(7, 1, 1, "ch1").replace("p01", "p02"), pixels)
    with pytest.raises(DuplicateKeysError, match="several planes"):
        sites_from_channel_files(sorted(folder.iterdir()))
    # per-channel options with a multi-channel input are refused
    _refused(["measure", str(JUMP / "images.zarr"), "--channels", CHANNELS, *maps],
             store_copy, capsys, "--channel-map")  # fmt: skip


def test_read_channels_picks_by_name_from_stacks_and_refuses_ambiguity(tmp_path) -> None:
    stack = _stack(1)
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    wanted = [ChannelSource(c, tmp_path / "stack.tif") for c in ("RNA", "AGP")]
    with pytest.raises(ChannelNotFoundError, match=r"\['RNA', 'AGP'\] not in"):
        read_channels(wanted)  # the stack names no channels
    got = read_channels(wanted, channel_names=JUMP_CHANNELS)
    np.testing.assert_array_equal(got["RNA"], stack[4])
    np.testing.assert_array_equal(got["AGP"], stack[0])
    # the zarr store names its channels in channels.csv; site 1 of the 4-D array
    got = read_channels([ChannelSource("Mito", JUMP / "images.zarr", 1)])
    np.testing.assert_array_equal(got["Mito"], stack[3])
    tifffile.imwrite(tmp_path / "one.tif", stack[0])
    with pytest.raises(ChannelNotFoundError, match="holds one channel"):
        read_channels(
            [ChannelSource("AGP", tmp_path / "one.tif"), ChannelSource("DNA", tmp_path / "one.tif")]
        )
    with pytest.raises(InputNotFoundError, match="channel DNA"):
        read_channels(
            [ChannelSource("DNA", tmp_path / "none.tif")], where="plate P well A01 site 1"
        )
    with pytest.raises(InvalidInputError, match="more than once"):
        read_channels([ChannelSource("DNA", tmp_path / "one.tif")] * 2)
    # mixed dtypes stay as they are (an 8-bit channel beside 16-bit ones)
    tifffile.imwrite(tmp_path / "eight.tif", (stack[1] // 256).astype(np.uint8))
    got = read_channels(
        [ChannelSource("AGP", tmp_path / "one.tif"), ChannelSource("PH3", tmp_path / "eight.tif")]
    )
    assert (got["AGP"].dtype, got["PH3"].dtype) == (np.uint16, np.uint8)
    # a site without a file of a channel another site has
    from cellframe.io.channel_files import ChannelFilesSite

    full = ChannelFilesSite(
        "P",
        "A01",
        1,
        (ChannelSource("DNA", tmp_path / "one.tif"), ChannelSource("PH3", tmp_path / "eight.tif")),
        ("a", "b"),
    )
    part = ChannelFilesSite("P", "A01", 2, (ChannelSource("DNA", tmp_path / "one.tif"),), ("c",))
    check_sites([full, part], ["DNA"])  # control: only DNA is read
    with pytest.raises(
        IncompleteSiteError, match=r"site 2 \(c\) has no file for channel\(s\) \['PH3'\]"
    ):
        check_sites([full, part], ["DNA", "PH3"])
