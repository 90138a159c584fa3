"""A measure run warns once per kind of site problem, with a count and the first sites named.

NoObjectsWarning, UnmatchedObjectsWarning, ImageWarning, ... are raised per
site by segment_site / measure_site / the site checks; measure_images sums
them into one line per run, as it does the NaN measurements.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tifffile

from cellframe.demo import demo_data_dir
from cellframe.errors import NoObjectsWarning, UnmatchedObjectsWarning
from cellframe.io.images import ImageWarning
from cellframe.pipeline.measure import (
    MeasureOptions,
    ObjectOptions,
    SiteLayout,
    _SiteWarnings,
    measure_images,
)
from cellframe.store import Store

from .conftest import JUMP_CHANNELS

JUMP = demo_data_dir() / "jump"


def _caught(run) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run()
    return list(caught)


def test_one_warning_per_kind_with_the_count_and_first_sites() -> None:
    per_site = _SiteWarnings(total=6)
    for i in range(5):
        per_site.add(NoObjectsWarning, f"plate P well A0{i} site 1: 0 nuclei found", f"P/A0{i}/1")
    per_site.add(UnmatchedObjectsWarning, "plate P well B01 site 1: 1 of 3 nuclei ...", "P/B01/1")
    per_site.add(UnmatchedObjectsWarning, "plate P well B01 site 1: again", "P/B01/1")
    caught = _caught(per_site.warn)
    assert [w.category for w in caught] == [NoObjectsWarning, UnmatchedObjectsWarning]
    assert str(caught[0].message) == (
        "NoObjectsWarning on 5 of 6 site(s) (plate/well/site P/A00/1, P/A01/1, P/A02/1 and 2 "
        "more); the first, P/A00/1: plate P well A00 site 1: 0 nuclei found"
    )
    # one site, twice: counted as one site, the times said
    assert str(caught[1].message).startswith("UnmatchedObjectsWarning on 1 of 6 site(s), 2 times")
    assert _caught(per_site.warn) == []  # said once
    # control: a single site's warning is passed on unchanged
    per_site.add(ImageWarning, "x.tif: 1 of 5 channel(s) are blank (ER ...)", "P/A01/1")
    (only,) = _caught(per_site.warn)
    assert (
        only.category is ImageWarning
        and str(only.message) == "x.tif: 1 of 5 channel(s) are blank (ER ...)"
    )


@pytest.fixture(scope="module")
def blank_er(tmp_path_factory):
    """The two bundled sites as one TIFF per channel, the ER channel blank on both."""
    import zarr

    root = tmp_path_factory.mktemp("blank_er")
    array = zarr.open(str(JUMP / "images.zarr"), mode="r")["images"]
    for index, (plate, row, column, site) in enumerate((("PA", 7, 1, 1), ("PB", 12, 7, 0))):
        folder = root / plate / "Images"
        folder.mkdir(parents=True)
        for c, name in enumerate(JUMP_CHANNELS):
            pixels = np.asarray(array[index, c])
            if name == "ER":
                pixels = np.full_like(pixels, 7)
            file = f"r{row:02d}c{column:02d}f{site:02d}p01-ch{c + 1}sk1fk1fl1.tiff"
            tifffile.imwrite(folder / file, pixels)
    return [root / "PA" / "Images", root / "PB" / "Images"]


def test_a_run_warns_once_per_kind(blank_er, tmp_path) -> None:
    layout = SiteLayout(
        channel_files=True, channel_map={f"ch{c + 1}": n for c, n in enumerate(JUMP_CHANNELS)}
    )

    def run():
        with Store(tmp_path / "s.duckdb") as store:
            report = measure_images(
                store, blank_er, channels=["DNA", "ER", "AGP"], layout=layout, progress=False,
                objects=ObjectOptions(primary={"threshold": 1.5}),  # no pixel reaches it
                measurements=MeasureOptions(families=["sizeshape"], illumination=False),
            )  # fmt: skip
        assert (report.sites_measured, report.cells) == (2, 0)

    caught = _caught(run)
    kinds = [w.category for w in caught]
    assert kinds.count(NoObjectsWarning) == 1 and kinds.count(ImageWarning) == 1, kinds
    no_objects = next(str(w.message) for w in caught if w.category is NoObjectsWarning)
    assert no_objects.startswith(
        "NoObjectsWarning on 2 of 2 site(s) (plate/well/site PA/G01/1, PB/L07/0)"
    )
    assert "0 nuclei found in channel 'DNA'" in no_objects
    blank = next(str(w.message) for w in caught if w.category is ImageWarning)
    assert blank.startswith("ImageWarning on 2 of 2 site(s)") and "are blank (ER" in blank
