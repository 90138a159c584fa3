"""Images with one defect each, built from the real JUMP Cell Painting site and DSB 2018 image.

Each defect used to run "successfully" (0 objects, features of padding, or the
channels silently renumbered); now it is a named error or a counted warning at
the reading, segmentation and embedding entry points.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import tifffile

from cellframe.errors import CellframeError, EmptyInputError, InvalidImageError
from cellframe.io.images import ChannelNotFoundError, ImageWarning, check_pixels, read_site
from cellframe.segment.otsu import otsu_segment
from cellframe.segment.pipeline import segment_sites, sites_from_paths

CHANNELS = ["AGP", "DNA", "ER", "Mito", "RNA"]


@pytest.fixture(scope="module")
def jump_site(shared_data: Path) -> np.ndarray:
    path = (
        shared_data / "cellpainting-images-jump" / "jump_rab30_mini" / "site0_BR00123947_G01_s1.tif"
    )
    pixels, names = read_site(path)
    assert names == CHANNELS
    return pixels


@pytest.fixture(scope="module")
def dsb(shared_data: Path) -> Path:
    return shared_data / "nuclei-dsb2018" / "img2d.tif"


def _write(folder: Path, name: str, pixels: np.ndarray, names: list[str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    tifffile.imwrite(
        path, pixels, photometric="minisblack", metadata={"channels": names} if names else None
    )
    return path


def _segment(path: Path, **kwargs: object) -> pl.DataFrame:
    sites = sites_from_paths([path])
    return segment_sites(sites, method="otsu", progress=False, **kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------ controls
def test_real_sites_segment_and_a_float_copy_gives_the_same_objects(
    jump_site: np.ndarray, tmp_path: Path
) -> None:
    """Valid but unusual: the same site as float32 (no NaN) segments exactly like uint16."""
    a = _write(tmp_path / "u16", "BR00123947_G01_s1.tif", jump_site, CHANNELS)
    b = _write(tmp_path / "f32", "BR00123947_G01_s1.tif", jump_site.astype(np.float32), CHANNELS)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImageWarning)
        objs_a = _segment(a)
        objs_b = _segment(b)
    assert objs_a.height == 14  # Otsu on this 384 x 384 DNA channel (measured, uint16)
    assert objs_a.height == objs_b.height
    assert check_pixels(jump_site, where="site", channels=CHANNELS) == []


# ------------------------------------------------------------------ NaN pixels
def test_nan_pixels_are_a_named_error(jump_site: np.ndarray, tmp_path: Path) -> None:
    pixels = jump_site.astype(np.float32)
    pixels[1, :10, :10] = np.nan  # 100 NaN pixels in DNA
    path = _write(tmp_path, "BR00123947_G01_s1.tif", pixels, CHANNELS)
    with pytest.raises(InvalidImageError) as info:
        _segment(path)
    msg = str(info.value)
    assert str(path) in msg and "channel DNA" in msg
    assert "100 pixel(s) are NaN or infinite (DNA: 100 of 147456)" in msg
    # The segmenter itself (no file) also refuses rather than returning 0 objects.
    with pytest.raises(InvalidImageError, match="NaN or infinite"):
        otsu_segment(pixels[1])


# ------------------------------------------------------------------ a 1 x 1 image
def test_one_pixel_image_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "BR00123947_G01_s1.tif", np.full((1, 1), 500, np.uint16))
    with pytest.raises(InvalidImageError, match=r"is 1 x 1 pixels, smaller than") as info:
        _segment(path, channel="0")
    assert str(path) in str(info.value)


def test_image_smaller_than_the_crop_box_is_refused_at_embed(jump_site: np.ndarray) -> None:
    from cellframe.embed.dataset import SiteCropDataset

    objects = pl.DataFrame(
        {
            "Metadata_Plate": ["P"],
            "Metadata_Well": ["A01"],
            "Metadata_Site": [1],
            "Metadata_ObjectNumber": [1],
            "Location_Center_X": [0.0],
            "Location_Center_Y": [0.0],
        }
    )
    tiny = {("P", "A01", 1): jump_site[:, :1, :1]}
    ds = SiteCropDataset(objects, tiny, CHANNELS, box_size=128)
    with pytest.raises(
        InvalidImageError, match=r"site P/A01/1: the image is 1 x 1 pixels.*crop box"
    ):
        ds.site_crops(0)
    # Control: the full site crops fine.
    full = SiteCropDataset(objects, {("P", "A01", 1): jump_site}, CHANNELS, box_size=128)
    crops, rows = full.site_crops(0)
    assert crops.shape == (1, 5, 128, 128) and rows.tolist() == [0]


# ------------------------------------------------------------------ channel counts
def test_three_channel_file_given_five_names(jump_site: np.ndarray, tmp_path: Path) -> None:
    path = _write(tmp_path, "BR00123947_G01_s1.tif", jump_site[:3])  # AGP, DNA, ER; no names
    with pytest.raises(InvalidImageError, match=r"lists 5 name\(s\) .* has 3 channel\(s\)") as info:
        read_site(path, channels="DNA", channel_names=CHANNELS)
    assert str(path) in str(info.value)
    with pytest.raises(InvalidImageError, match="has 3 channel"):
        _segment(path, channel_names=CHANNELS)


def test_sidecar_names_that_do_not_fit_warn_and_never_pick_a_wrong_channel(
    jump_site: np.ndarray, tmp_path: Path
) -> None:
    """channels.csv beside a 3-channel file names 5: warned, and 'Mito' is not channel 3."""
    path = _write(tmp_path, "BR00123947_G01_s1.tif", jump_site[:3])
    (tmp_path / "channels.csv").write_text(
        "idx,channel\n" + "".join(f"{i},{c}\n" for i, c in enumerate(CHANNELS))
    )
    with pytest.warns(ImageWarning, match=r"has 3 channel\(s\) but .*channels.csv names 5"):
        pixels, names = read_site(path)
    assert names == ["0", "1", "2"] and pixels.shape[0] == 3
    with pytest.warns(ImageWarning), pytest.raises(ChannelNotFoundError, match="'DNA'"):
        read_site(path, channels="DNA")
    # Control: the right names, given explicitly, pick the right channel.
    dna, _ = read_site(path, channels="DNA", channel_names=["AGP", "DNA", "ER"])
    np.testing.assert_array_equal(dna[0], jump_site[1])


def test_embed_names_the_channel_count_mismatch(jump_site: np.ndarray) -> None:
    from cellframe.embed.dataset import SiteCropDataset

    objects = pl.DataFrame(
        {
            "Metadata_Plate": ["P"],
            "Metadata_Well": ["A01"],
            "Metadata_Site": [1],
            "Metadata_ObjectNumber": [1],
            "Location_Center_X": [100.0],
            "Location_Center_Y": [100.0],
        }
    )
    ds = SiteCropDataset(objects, {("P", "A01", 1): jump_site[:3]}, CHANNELS, box_size=64)
    with pytest.raises(CellframeError, match=r"has 3 channel\(s\) but 5 are named"):
        ds.site_crops(0)


# ------------------------------------------------------------------ blank channels
def test_blank_channels_are_counted(jump_site: np.ndarray, tmp_path: Path) -> None:
    from cellframe.embed.dataset import SiteCropDataset

    pixels = jump_site.copy()
    pixels[2] = 1000  # ER constant
    pixels[3] = 0  # Mito empty
    objects = pl.DataFrame(
        {
            "Metadata_Plate": ["P"],
            "Metadata_Well": ["A01"],
            "Metadata_Site": [1],
            "Metadata_ObjectNumber": [1],
            "Location_Center_X": [100.0],
            "Location_Center_Y": [100.0],
        }
    )
    ds = SiteCropDataset(objects, {("P", "A01", 1): pixels}, CHANNELS, box_size=64)
    with pytest.warns(ImageWarning, match=r"2 of 5 channel\(s\) are blank \(constant\): ER, Mito"):
        crops, _ = ds.site_crops(0)
    assert crops.shape == (1, 5, 64, 64)
    # Segmenting a blank (constant, non-zero) DNA channel: the site is skipped, counted.
    pixels[1] = 700
    path = _write(tmp_path, "BR00123947_G01_s1.tif", pixels, CHANNELS)
    with pytest.warns(ImageWarning, match=r"1 site\(s\) skipped, their DNA channel is blank"):
        objects_out = _segment(path)
    assert objects_out.height == 0
    with pytest.raises(EmptyInputError, match=r"blank \(constant\)"):
        otsu_segment(pixels[1])


def test_dsb_image_segments_and_its_one_pixel_crop_does_not(dsb: Path) -> None:
    """Control on the second real image, then its top-left pixel alone."""
    pixels, _ = read_site(dsb)
    labels = otsu_segment(pixels)
    assert labels.max() > 50
    with pytest.raises(InvalidImageError, match=r"1 x 1 pixels"):
        otsu_segment(pixels[:, :1, :1])


def test_cli_segment_nan_image_is_one_line(jump_site: np.ndarray, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from cellframe.cli import main

    pixels = jump_site.astype(np.float32)
    pixels[1, 5, 5] = np.inf
    path = _write(tmp_path, "BR00123947_G01_s1.tif", pixels, CHANNELS)
    store = tmp_path / "s.duckdb"
    rc = main(["segment", "run", str(path), "--method", "otsu", "--store", str(store), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "1 pixel(s) are NaN or infinite (DNA: 1 of 147456)" in err[0] and str(path) in err[0]
    assert not store.exists()
