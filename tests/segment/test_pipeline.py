"""segment_sites / sites_from_paths: keys of sites, blank sites, method registry."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from cellframe.errors import InvalidInputError, MissingColumnsError
from cellframe.segment.objects import objects_table
from cellframe.segment.otsu import otsu_segment
from cellframe.segment.pipeline import SiteSpec, make_segmenter, segment_sites, sites_from_paths
from tests.segment.conftest import disks


@pytest.fixture
def plate_zarr(tmp_path):
    img, _ = disks()
    path = tmp_path / "plate.zarr"
    arr = zarr.open_group(str(path), mode="w").create_array(
        "images", shape=(2, 2, *img.shape), dtype="uint16"
    )
    arr[0, 1] = img.astype(np.uint16)  # DNA of site 0
    arr[1] = 0  # a blank site
    arr.attrs["channels"] = ["ER", "DNA"]
    return path, img


def test_blank_site_is_skipped_with_a_warning(plate_zarr, tmp_path):
    path, img = plate_zarr
    csv = tmp_path / "sites.csv"
    csv.write_text("idx,Metadata_Plate,Metadata_Well,Metadata_Site\n0,P1,A01,1\n1,P1,A02,1\n")
    specs = sites_from_paths([path], sites_csv=csv)
    assert specs == [SiteSpec(path, 0, "P1", "A01", 1), SiteSpec(path, 1, "P1", "A02", 1)]
    with pytest.warns(UserWarning, match=r"1 site\(s\) skipped.*P1/A02/s1"):
        rows = segment_sites(specs, method="otsu", progress=False)
    expected = objects_table(otsu_segment(img.astype(np.uint16)), plate="P1", well="A01", site=1)
    assert rows.equals(expected)


def test_site_keys_from_names_and_arguments(tmp_path):
    img, _ = disks()
    f = tmp_path / "P7_b3_s4.tif"
    tifffile.imwrite(f, img.astype(np.uint16))
    assert sites_from_paths([f]) == [SiteSpec(f, 0, "P7", "B03", 4)]
    assert sites_from_paths([f], plate="X", well="C01", site=9) == [SiteSpec(f, 0, "X", "C01", 9)]
    g = tmp_path / "scan-12.tif"
    tifffile.imwrite(g, img.astype(np.uint16))
    with pytest.raises(InvalidInputError, match="cannot tell the plate"):
        sites_from_paths([g])
    custom = r"(?P<plate>scan)-(?P<site>\d)(?P<well>\d)"
    assert sites_from_paths([g], pattern=custom) == [SiteSpec(g, 0, "scan", "02", 1)]
    bad = tmp_path / "sites.csv"
    bad.write_text("idx,Plate\n0,P\n")
    with pytest.raises(MissingColumnsError, match="Well"):
        sites_from_paths([g], sites_csv=bad)
    with pytest.raises(FileNotFoundError):
        sites_from_paths([tmp_path / "none.tif"])


def test_method_registry():
    assert make_segmenter(len) is len
    with pytest.raises(ValueError, match=r"valid: \['otsu', 'unet'\]"):
        make_segmenter("cellpose")
