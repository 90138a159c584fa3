"""Image quality as CellProfiler's MeasureImageQuality names it (cellframe.measure.quality)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import ndimage as ndi

from cellframe.errors import InvalidImageError, MissingColumnsError
from cellframe.measure.quality import (
    BLURRY,
    SATURATED,
    image_quality,
    power_log_log_slope,
    quality_flags,
    radial_power_spectrum,
)

JUMP = Path(__file__).resolve().parents[2] / "cellframe" / "data" / "demo" / "jump"
CHANNELS = ["AGP", "DNA", "ER", "Mito", "RNA"]


@pytest.fixture(scope="module")
def jump_site() -> dict[str, np.ndarray]:
    from cellframe.io.images import read_site

    pixels, _ = read_site(JUMP / "images.zarr", site=0, channel_names=CHANNELS)
    return dict(zip(CHANNELS, pixels, strict=True))


class _PtpArray(np.ndarray):
    """centrosome calls ``ndarray.ptp``, which NumPy 2 removed."""

    def ptp(self, *args, **kwargs):
        return np.ptp(np.asarray(self), *args, **kwargs)


def test_spectrum_and_slope_match_centrosome_and_cellprofiler(jump_site) -> None:
    from centrosome.radial_power_spectrum import rps

    image = jump_site["DNA"].astype(np.float64) / 65535
    radii, _, power = rps(image.view(_PtpArray))
    mine_radii, mine_power = radial_power_spectrum(image)
    np.testing.assert_array_equal(mine_radii, radii)
    np.testing.assert_allclose(mine_power, power, rtol=1e-9)
    # CellProfiler's measureimagequality: lstsq of log(power) on [log(radius), 1]
    design = np.stack([np.log(radii), np.ones(len(radii))], axis=1)
    expected = np.linalg.lstsq(design, np.log(power), rcond=None)[0][0]
    assert power_log_log_slope(image) == pytest.approx(expected, rel=1e-9)


def test_blurred_image_has_a_steeper_slope(jump_site) -> None:
    sharp = jump_site["DNA"].astype(np.float64)
    slopes = [power_log_log_slope(ndi.gaussian_filter(sharp, s)) if s else power_log_log_slope(sharp)
              for s in (0, 1, 2, 4)]  # fmt: skip
    assert slopes == sorted(slopes, reverse=True)  # more blur, more negative
    assert slopes[0] == pytest.approx(-2.316, abs=1e-3)  # measured on the bundled site
    assert slopes[3] < slopes[0] - 1.0
    assert power_log_log_slope(np.full((64, 64), 7.0)) == 0.0  # constant: 0, as CellProfiler


def test_intensity_measures_are_hand_computed() -> None:
    image = np.zeros((10, 10), dtype=np.uint8)
    image[:5] = 51  # half the pixels at 0.2
    image[0, 0] = 255  # one pixel at 1.0
    row = image_quality({"DNA": image}, plate="P", well="A01", site=2)
    values = np.full(100, 0.0)
    values[:50] = 0.2
    values[0] = 1.0
    assert row.select("Metadata_Plate", "Metadata_Well", "Metadata_Site").row(0) == ("P", "A01", 2)
    get = lambda m: row[f"ImageQuality_{m}_DNA"][0]  # noqa: E731
    assert get("MeanIntensity") == pytest.approx(values.mean(), rel=1e-6)
    assert get("StdIntensity") == pytest.approx(values.std(), rel=1e-6)
    assert get("MedianIntensity") == pytest.approx(0.1, rel=1e-6)  # between 0 and 0.2
    assert get("PercentMaximal") == pytest.approx(1.0)  # 1 of 100 pixels at the maximum
    assert get("PercentMinimal") == pytest.approx(50.0)
    assert get("TotalIntensity") == pytest.approx(values.sum(), rel=1e-6)
    assert get("FocusScore") == pytest.approx(values.var() / values.mean(), rel=1e-6)
    assert get("Scaling") == 255.0
    assert row.schema["ImageQuality_MeanIntensity_DNA"] == pl.Float32


def test_saturated_and_blurry_sites_are_flagged_and_the_good_one_is_not(jump_site) -> None:
    good = jump_site["DNA"]
    saturated = good.copy()
    saturated[:20, :] = 65535  # 20 of 384 rows: 5.2% of the pixels
    blurry = ndi.gaussian_filter(good.astype(np.float64), 4)
    rows = pl.concat(
        [
            image_quality({"DNA": good}, plate="P", well="A01", site=1),
            image_quality({"DNA": saturated}, plate="P", well="A01", site=2),
            image_quality({"DNA": blurry}, plate="P", well="A01", site=3),
        ]
    )
    assert rows["ImageQuality_PercentMaximal_DNA"][1] == pytest.approx(100 * 20 / 384, rel=1e-5)
    flags = quality_flags(rows, min_slope=-3.0)
    assert flags[BLURRY].to_list() == [False, False, True]
    assert flags[SATURATED].to_list() == [False, True, False]
    assert flags["Metadata_QC_Reason"][0] is None
    assert flags["Metadata_QC_Reason"][1].startswith("saturated DNA: 5.21% of pixels")
    assert "blurry DNA: PowerLogLogSlope -3.9" in flags["Metadata_QC_Reason"][2]


def test_profiles_image_qc_reads_the_columns(jump_site) -> None:
    from cellframe.profiles.qc import image_quality_columns

    row = image_quality(jump_site, plate="P", well="A01", site=1)
    focus, saturation = image_quality_columns(row)
    assert [ch for _, ch in focus] == CHANNELS
    assert [ch for _, ch in saturation] == CHANNELS


def test_bad_input_is_refused() -> None:
    with pytest.raises(InvalidImageError, match="channel 'DNA' has shape \\(3, 4, 4\\)"):
        image_quality({"DNA": np.zeros((3, 4, 4))}, plate="P", well="A01", site=1)
    nan = np.ones((8, 8))
    nan[1, 1] = np.nan
    with pytest.raises(InvalidImageError, match="1 NaN"):
        image_quality({"DNA": nan}, plate="P", well="A01", site=1)
    with pytest.raises(MissingColumnsError, match="PowerLogLogSlope"):
        quality_flags(pl.DataFrame({"Metadata_Plate": ["P"], "x": [1.0]}))
