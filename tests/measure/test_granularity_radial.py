"""Granularity and radial distribution, computed once per channel / label image, equal cp-measure's.

cellframe computes each channel's granularity spectrum once for the three
compartments and each label image's radial geometry once for every channel;
cp-measure repeats both per call. Granularity equals cp-measure's
``get_granularity`` on the same float32 pixels. The radial sums are float64:
cp-measure sums float32 pixels in float32 (``scipy.sparse`` in the data's
dtype), so it is compared on the same pixel values as float64, where both
compute the same sums; on float32 input its own rounding (up to ~3e-4
relative in RadialCV on a JUMP site) is the difference, bounded below.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from cellframe.measure._granularity import GranularitySpectrum, ObjectSampler, granularity
from cellframe.measure._radial import RadialGeometry
from cellframe.measure.features import _relabel, measure_objects, measure_site, to_unit_range
from tests.measure.conftest import JUMP_CHANNELS, ExampleHumanSite, jump_site

# Every value within 1e-6 relative of cp-measure's; values that are rounding noise
# around 0 in either (a granularity step that removes nothing) within 1e-12 absolute.
RTOL, ATOL = 1e-6, 1e-12


def _granularity_reference(labels: np.ndarray, pixels: np.ndarray, length: int = 16) -> dict:
    from cp_measure.core.measuregranularity import get_granularity

    return get_granularity(labels, pixels, granular_spectrum_length=length)


def _radial_reference(labels: np.ndarray, pixels: np.ndarray, bins: int = 4) -> dict:
    from cp_measure.core.measureobjectintensitydistribution import get_radial_distribution

    return get_radial_distribution(labels, pixels, bin_count=bins)


def _assert_equal(ref: dict, new: dict, where: str, rtol: float = RTOL, atol: float = ATOL) -> int:
    assert list(ref) == list(new), where
    n = 0
    for key, values in ref.items():
        a, b = np.asarray(values, dtype=np.float64), np.asarray(new[key], dtype=np.float64)
        assert a.shape == b.shape, (where, key)
        assert np.array_equal(np.isnan(a), np.isnan(b)), (where, key, a, b)
        np.testing.assert_allclose(b, a, rtol=rtol, atol=atol, err_msg=f"{where} {key}")
        n += int((~np.isnan(a)).sum())
    return n


def _compare(labels: dict[str, np.ndarray], pixels: dict[str, np.ndarray], where: str) -> int:
    """Both families of every compartment and channel against cp-measure; values compared."""
    cleans = {name: _relabel(lab)[0] for name, lab in labels.items()}
    geometry = {name: RadialGeometry.of(lab, 4) for name, lab in cleans.items()}
    n_values = 0
    samplers = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for channel, raw in pixels.items():
            unit = to_unit_range(raw)
            spectrum = GranularitySpectrum.of(unit, 16)  # once per channel
            if samplers is None:
                small = spectrum.reconstructions[0].shape
                samplers = {n: ObjectSampler.of(lab, small) for n, lab in cleans.items()}
            mine = granularity(spectrum, cleans, samplers)
            for name, clean in cleans.items():
                at = f"{where} {name} {channel}"
                ref = _granularity_reference(clean, unit)
                n_values += _assert_equal(ref, mine[name], f"{at} granularity")
                radial = geometry[name].measure(unit)
                ref = _radial_reference(clean, unit.astype(np.float64))
                n_values += _assert_equal(ref, radial, f"{at} radial")
                # cp-measure on the float32 pixels: its float32 sums are the difference
                # (a RadialCV of 0 comes out as ~1e-8 there)
                ref32 = _radial_reference(clean, unit)
                _assert_equal(ref32, radial, f"{at} radial float32", rtol=2e-3, atol=1e-6)
    return n_values


@pytest.mark.parametrize("index", [0, 1])
def test_granularity_and_radial_equal_cp_measure_on_jump_sites(index: int) -> None:
    """Every compartment and channel of both bundled JUMP sites (18 and 101 cells)."""
    pixels, labels = jump_site(index)
    assert int(labels["Cells"].max()) == (18, 101)[index]
    n_values = _compare(labels, pixels, f"JUMP site {index}")
    # 3 compartments x 5 channels x (16 + 12 values) x ~objects (nuclei may outnumber cells)
    assert n_values >= 15 * 28 * (18, 101)[index]


def test_measure_site_columns_equal_cp_measure_per_compartment() -> None:
    """measure_site (shared spectrum and geometry) gives cp-measure's per-call values, cast to float32."""
    pixels, labels = jump_site(0)
    families = ["granularity", "radial_distribution"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = measure_site(
            pixels, nuclei=labels["Nuclei"], cells=labels["Cells"],
            cytoplasm=labels["Cytoplasm"], plate="P", well="A01", site=1, families=families,
        )  # fmt: skip
        alone = measure_objects(labels["Cytoplasm"], pixels, families=families)
    granularity_cols = [c for c in frame.columns if "_Granularity_" in c]
    radial_cols = [c for c in frame.columns if "_RadialDistribution_" in c]
    assert len(granularity_cols) == 3 * 5 * 16 and len(radial_cols) == 3 * 5 * 12
    # measure_objects alone: the same columns in cp-measure's order, per channel
    expected = ["ObjectNumber"]
    for channel in JUMP_CHANNELS:
        expected += [f"Granularity_{k}_{channel}" for k in range(1, 17)]
        expected += [
            f"RadialDistribution_{f}_{channel}_{b}of4"
            for b in range(1, 5)
            for f in ("FracAtD", "MeanFrac", "RadialCV")
        ]
    assert alone.columns == expected
    # Cells are the rows: compare each cell's own columns with cp-measure's call.
    clean, ids = _relabel(labels["Cells"])
    cells = frame.sort("Metadata_ObjectNumber")
    assert cells["Metadata_ObjectNumber"].to_list() == ids.tolist()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for channel, raw in pixels.items():
            unit = to_unit_range(raw)
            for key, values in _granularity_reference(clean, unit).items():
                got = cells[f"Cells_{key}_{channel}"].to_numpy()
                want = np.asarray(values, np.float64).astype(np.float32)
                np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=key)
            for key, values in _radial_reference(clean, unit.astype(np.float64)).items():
                prefix, feature, rest = key.split("_", 2)
                got = cells[f"Cells_{prefix}_{feature}_{channel}_{rest}"].to_numpy()
                want = np.asarray(values, np.float64).astype(np.float32)
                np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=key)
    # The cytoplasm measured alone equals the site's shared computation (cytoplasm i
    # is cell i's, as segment_site numbers them).
    assert alone.height > 0
    for column in ("Granularity_3_DNA", "RadialDistribution_RadialCV_AGP_2of4"):
        alone_by_id = dict(
            zip(alone["ObjectNumber"].to_list(), alone[column].to_list(), strict=True)
        )
        pairs = [
            (row[f"Cytoplasm_{column}"], alone_by_id[row["Metadata_Cytoplasm_Parent_Cells"]])
            for row in frame.iter_rows(named=True)
            if row["Metadata_Cytoplasm_Parent_Cells"] is not None
        ]
        assert len(pairs) == alone.height
        np.testing.assert_array_equal(*map(np.array, zip(*pairs, strict=True)))


def test_unusual_objects_equal_cp_measure() -> None:
    """Gaps in the numbering, touching objects, a one-pixel object, a dark object, a ring."""
    rng = np.random.default_rng(3)
    labels = np.zeros((64, 80), dtype=np.int32)
    labels[4:20, 4:20] = 3  # touches 7
    labels[4:20, 20:30] = 7
    labels[40, 40] = 9  # one pixel
    labels[30:45, 55:75] = 12  # dark: all pixels 0 -> FracAtD NaN, RadialCV 0
    yy, xx = np.mgrid[0:64, 0:80]
    ring = ((yy - 50) ** 2 + (xx - 15) ** 2 <= 100) & ((yy - 50) ** 2 + (xx - 15) ** 2 >= 25)
    labels[ring] = 20
    pixels = rng.uniform(0.05, 1.0, labels.shape).astype(np.float32)
    pixels[30:45, 55:75] = 0.0
    clean, ids = _relabel(labels)
    assert ids.tolist() == [3, 7, 9, 12, 20]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mine_g = granularity(GranularitySpectrum.of(pixels, 16), {"x": clean})["x"]
        _assert_equal(_granularity_reference(clean, pixels), mine_g, "synthetic granularity")
        mine_r = RadialGeometry.of(clean, 4).measure(pixels)
        _assert_equal(
            _radial_reference(clean, pixels.astype(np.float64)), mine_r, "synthetic radial"
        )
    assert np.isnan(mine_r["RadialDistribution_FracAtD_1of4"][3])
    assert mine_r["RadialDistribution_RadialCV_1of4"][3] == 0.0
    assert np.isfinite(mine_r["RadialDistribution_FracAtD_1of4"][:3]).all()
    # the one-pixel object: all of it is its centre, in ring 1
    assert mine_r["RadialDistribution_FracAtD_1of4"][2] == 1.0
    assert mine_g["Granularity_1"].shape == (5,) and np.isfinite(mine_g["Granularity_1"]).all()


def test_granularity_of_a_tiny_image_is_nan_like_cp_measure() -> None:
    """Under 8 pixels a side the image cannot be subsampled: NaN, as cp-measure writes."""
    labels = np.zeros((6, 30), dtype=np.int32)
    labels[1:5, 2:10] = 1
    labels[1:5, 15:25] = 2
    pixels = np.linspace(0, 1, labels.size, dtype=np.float32).reshape(labels.shape)
    ref = _granularity_reference(labels, pixels, 4)
    mine = granularity(GranularitySpectrum.of(pixels, 4), {"x": labels})["x"]
    _assert_equal(ref, mine, "tiny")
    assert all(np.isnan(v).all() for v in mine.values()) and len(mine) == 4


def test_granularity_and_radial_equal_cp_measure_on_example_human(
    example_human: ExampleHumanSite,
) -> None:
    """CellProfiler's ExampleHuman site (512 x 512, 289 nuclei), objects as its pipeline finds them."""
    n_values = _compare(example_human.labels, example_human.images, "ExampleHuman")
    assert n_values > 9 * 28 * 280


@pytest.mark.parametrize("shape", [(13, 17), (513, 777)])
def test_odd_image_sizes_equal_cp_measure(shape: tuple[int, int]) -> None:
    """Non-square sizes; 777 columns shrink to 194 and the background to 48.5 (fractional)."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(1)
    pixels = ndi.gaussian_filter(rng.random(shape), 2).astype(np.float32)
    labels = np.zeros(shape, dtype=np.int32)
    number = 1
    for y in range(0, shape[0] - 3, max(4, shape[0] // 6)):
        for x in range(0, shape[1] - 3, max(4, shape[1] // 6)):
            labels[y : y + max(3, shape[0] // 8), x : x + max(3, shape[1] // 9)] = number
            number += 1
    assert labels.max() >= 12
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mine = granularity(GranularitySpectrum.of(pixels, 16), {"x": labels})["x"]
        n = _assert_equal(_granularity_reference(labels, pixels), mine, f"{shape} granularity")
        radial = RadialGeometry.of(labels, 4).measure(pixels)
        ref = _radial_reference(labels, pixels.astype(np.float64))
        n += _assert_equal(ref, radial, f"{shape} radial")
    assert n >= 28 * 12
