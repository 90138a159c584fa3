"""cellframe.io.images: TIFF and zarr sites, channels by name, bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import zarr

from cellframe.errors import InvalidInputError, UnknownFormatError
from cellframe.io.images import (
    ChannelNotFoundError,
    count_sites,
    parse_site_keys,
    read_labels,
    read_site,
    write_labels,
)

NAMES = ["AGP", "DNA", "ER", "Mito", "RNA"]


@pytest.fixture
def stack() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 4000, size=(5, 12, 10), dtype=np.uint16)


def test_tiff_channels_by_name_from_json_description(tmp_path, stack):
    path = tmp_path / "P1_B03_s2.tif"
    tifffile.imwrite(path, stack, metadata={"axes": "CYX", "channels": NAMES})
    pixels, names = read_site(path)
    np.testing.assert_array_equal(pixels, stack)
    assert names == NAMES
    pixels, names = read_site(path, channels=["Mito", "DNA"])
    np.testing.assert_array_equal(pixels, stack[[3, 1]])
    assert names == ["Mito", "DNA"]


def test_tiff_imagej_labels_and_sidecar_csv(tmp_path, stack):
    ij = tmp_path / "ij.tif"
    tifffile.imwrite(ij, stack, imagej=True, metadata={"axes": "CYX", "Labels": NAMES})
    np.testing.assert_array_equal(read_site(ij, channels="ER").pixels[0], stack[2])
    plain = tmp_path / "sub" / "plain.tif"
    plain.parent.mkdir()
    tifffile.imwrite(plain, stack, metadata=None)
    assert read_site(plain).channels == ["0", "1", "2", "3", "4"]
    (plain.parent / "channels.csv").write_text("idx,channel\n1,DNA\n0,AGP\n2,ER\n3,Mito\n4,RNA\n")
    np.testing.assert_array_equal(read_site(plain, channels="DNA").pixels[0], stack[1])


def test_2d_tiff_is_one_channel_and_names_can_be_given(tmp_path, stack):
    path = tmp_path / "one.tif"
    tifffile.imwrite(path, stack[0], metadata=None)
    pixels, _names = read_site(path, channel_names=["DNA"], channels="DNA")
    assert pixels.shape == (1, 12, 10)
    np.testing.assert_array_equal(pixels[0], stack[0])


def test_zarr_sites_and_attrs(tmp_path, stack):
    path = tmp_path / "plate.zarr"
    group = zarr.open_group(str(path), mode="w")
    arr = group.create_array("images", shape=(2, 5, 12, 10), dtype="uint16")
    arr[0] = stack
    arr[1] = stack[::-1]
    arr.attrs["channels"] = NAMES
    assert count_sites(path) == 2
    pixels, _names = read_site(path, site=1, channels="DNA")
    np.testing.assert_array_equal(pixels[0], stack[::-1][1])
    with pytest.raises(InvalidInputError, match="site 2 is out of range"):
        read_site(path, site=2)


def test_real_jump_zarr_and_tiff_agree(shared_data):
    root = shared_data / "cellpainting-images-jump" / "jump_rab30_mini"
    for idx, name in enumerate(["site0_BR00123947_G01_s1.tif", "site1_CP-CC9-R1-05_L07_s0.tif"]):
        z, zn = read_site(root / "images.zarr", site=idx, channels=["DNA", "Mito"])
        t, tn = read_site(root / name, channels=["DNA", "Mito"])
        assert zn == tn == ["DNA", "Mito"]
        np.testing.assert_array_equal(z, t)
        assert z.shape == (2, 384, 384) and z.dtype == np.uint16
    # README of the bundle: DNA max of the ORF site (BR00123947) is 39759, CRISPR 1000
    assert read_site(root / "images.zarr", site=0, channels="DNA").pixels.max() == 39759
    assert read_site(root / "images.zarr", site=1, channels="DNA").pixels.max() == 1000


def test_missing_channel_names_the_available_ones(tmp_path, stack):
    path = tmp_path / "s.tif"
    tifffile.imwrite(path, stack, metadata={"axes": "CYX", "channels": NAMES})
    with pytest.raises(ChannelNotFoundError, match=r"\['Hoechst'\] not in .*'AGP', 'DNA'"):
        read_site(path, channels="Hoechst")
    with pytest.raises(InvalidInputError, match="lists 2 name"):
        read_site(path, channel_names=["a", "b"])


def test_corrupt_tiff_and_wrong_dimensions(tmp_path):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00" + b"\x13" * 64)
    with pytest.raises(UnknownFormatError, match=r"cannot read .*bad\.tif as a TIFF"):
        read_site(bad)
    text = tmp_path / "notes.tif"
    text.write_text("hello")
    with pytest.raises(UnknownFormatError):
        read_site(text)
    vol = tmp_path / "vol.tif"
    tifffile.imwrite(
        vol,
        np.ones((2, 3, 4, 5, 6), np.uint8),
        metadata={"axes": "TZCYX"},
        photometric="minisblack",
    )
    with pytest.raises(InvalidInputError, match="expected 2-D"):
        read_site(vol)
    with pytest.raises(FileNotFoundError):
        read_site(tmp_path / "absent.tif")


def test_labels_round_trip(tmp_path):
    labels = np.zeros((6, 7), np.int32)
    labels[1:3, 1:4] = 1
    labels[4:, 5:] = 70000  # beyond uint16: stored as uint32
    out = write_labels(tmp_path / "l" / "lab.tif", labels)
    np.testing.assert_array_equal(read_labels(out), labels)
    with pytest.raises(InvalidInputError):
        write_labels(tmp_path / "x.tif", labels.astype(float))


def test_parse_site_keys():
    assert parse_site_keys("site0_BR00123947_G01_s1.tif") == {
        "plate": "BR00123947",
        "well": "G01",
        "site": 1,
    }
    assert parse_site_keys("CP-CC9-R1-05_l7_s0.tiff") == {
        "plate": "CP-CC9-R1-05",
        "well": "L07",
        "site": 0,
    }
    assert parse_site_keys("random.tif") is None


def test_json_description_is_what_tifffile_writes(tmp_path, stack):
    # guards the metadata path read_site relies on
    path = tmp_path / "d.tif"
    tifffile.imwrite(path, stack, metadata={"axes": "CYX", "channels": NAMES})
    with tifffile.TiffFile(path) as tif:
        assert json.loads(tif.pages[0].description)["channels"] == NAMES
