"""Illumination correction (measure/illumination.py): hand-computed shading, exact merges,
storage round trips and CellProfiler's rescaling conventions."""

from __future__ import annotations

import doctest

import numpy as np
import polars as pl
import pytest
from scipy import ndimage as ndi

from cellframe.errors import (
    EmptyInputError,
    IlluminationWarning,
    InvalidChoiceError,
    InvalidImageError,
    InvalidInputError,
)
from cellframe.measure import illumination
from cellframe.measure.illumination import (
    IlluminationFunction,
    apply_illumination,
    fit_illumination,
)
from cellframe.profiles._fitted import merge_all

H, W = 60, 80


def gradient(h=H, w=W):
    """A known shading: brighter to the right, and towards the bottom, quadratically."""
    yy, xx = np.mgrid[0:h, 0:w]
    return 1.0 + 0.6 * xx / (w - 1) + 0.3 * (yy / (h - 1)) ** 2


def robust_min(values):
    """CellProfiler's robust minimum: the value at the 2nd percentile of the positive pixels."""
    v = np.sort(values[values > 0].ravel())
    return v[int(v.size * 0.02)]


def sites_with_cells(n, shading, seed=0, cells=3):
    """Sites of a flat background with bright 'cells' at random places, times ``shading``."""
    rng = np.random.default_rng(seed)
    h, w = shading.shape
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for _ in range(n):
        flat = np.full((h, w), 100.0) + rng.normal(0, 2, (h, w))
        for cy, cx in rng.integers(0, [h, w], (cells, 2)):
            flat[(yy - cy) ** 2 + (xx - cx) ** 2 <= 9] += 300
        out.append(np.round(flat * shading).astype(np.uint16))
    return out


# ----------------------------------------------------------- hand-computed
def test_a_flat_field_times_a_known_gradient_is_recovered_exactly():
    g = gradient()
    sites = [g * c for c in (100.0, 150.0, 80.0, 120.0)]
    f = fit_illumination(sites, smoothing="none")
    q = robust_min(g)
    np.testing.assert_allclose(f.function_, np.maximum(g, q) / q, rtol=1e-6)
    assert f.function_.dtype == np.float32
    assert float(f.function_.min()) == 1.0
    assert f.n_images_ == 4
    # Corrected sites are flat, except the 2% darkest pixels that were clipped at the minimum.
    corrected = f.transform(sites[1])
    assert corrected.dtype == np.float32
    kept = g >= q
    np.testing.assert_allclose(corrected[kept], 150.0 * q, rtol=1e-6)


def test_the_polynomial_fit_recovers_a_quadratic_shading_from_sites_with_cells():
    g = gradient()
    f = fit_illumination([g * c for c in (90.0, 110.0)], smoothing="polynomial")
    q = robust_min(g)
    np.testing.assert_allclose(f.function_, np.maximum(g, q) / q, rtol=1e-5)
    # Sites with cells: the per-pixel median over sites drops the cells, the median filter
    # the noise; away from the edges (where the filter's reflected window biases any
    # gradient, in CellProfiler too) the shading is recovered to 1.5%.
    sites = sites_with_cells(20, g)
    fm = fit_illumination(sites, smoothing="median", size=15, statistic="median")
    inner = (slice(8, -8), slice(8, -8))
    ratio = (fm.function_ / (g / q))[inner]
    assert np.abs(ratio / np.median(ratio) - 1).max() < 0.015
    # The mean keeps the uneven cell coverage of 20 sites (CellProfiler's "Regular" needs many).
    mean = fit_illumination(sites, smoothing="median", size=15).function_
    ratio_mean = (mean / (g / q))[inner]
    assert np.abs(ratio_mean / np.median(ratio_mean) - 1).max() > 0.03
    # Correction flattens the background: its spread falls from ~15% to under 3%.
    background = [s.astype(float) < 200 * g for s in sites]
    before = np.mean([s[b].std() / s[b].mean() for s, b in zip(sites, background, strict=True)])
    after = np.mean(
        [fm.transform(s)[b].std() / fm.transform(s)[b].mean()
         for s, b in zip(sites, background, strict=True)]
    )  # fmt: skip
    assert before > 0.1 and after < 0.03


def test_rescale_options_follow_cellprofiler():
    g = gradient()
    sites = [g * 100.0]
    minimum = fit_illumination(sites, smoothing="none", rescale="minimum").function_
    median = fit_illumination(sites, smoothing="none", rescale="median").function_
    none = fit_illumination(sites, smoothing="none", rescale="none").function_
    assert float(minimum.min()) == 1.0
    assert (minimum > 1).mean() == pytest.approx(0.98, abs=0.01)
    positive = np.sort(g.ravel())
    np.testing.assert_allclose(median, g / positive[positive.size // 2], rtol=1e-6)
    np.testing.assert_allclose(none, g * 100.0, rtol=1e-6)


def test_rescale_median_raises_zero_pixels_and_counts_them():
    g = gradient()
    site = g * 100.0
    site[:2, :3] = 0.0
    with pytest.warns(IlluminationWarning, match="6 of 4800 pixels"):
        f = fit_illumination([site], smoothing="none", rescale="median")
    assert (f.function_ > 0).all()
    assert float(f.function_[0, 0]) == pytest.approx(float(f.function_[site > 0].min()))


def test_median_and_trimmed_mean_resist_an_outlier_site():
    g = gradient()
    sites = [g * c for c in (100.0, 101.0, 99.0, 100.0, 102.0, 98.0, 100.0, 100.0, 101.0, 99.0)]
    sites[3] = sites[3].copy()
    sites[3][10:20, 10:20] = 60_000.0  # a saturated artifact on one site
    q = robust_min(g)
    truth = np.maximum(g, q) / q
    mean = fit_illumination(sites, smoothing="none").function_
    median = fit_illumination(sites, smoothing="none", statistic="median").function_
    trimmed = fit_illumination(sites, smoothing="none", statistic="trimmed_mean").function_
    assert mean[15, 15] > 10 * truth[15, 15]  # the artifact leaks into the mean
    # The trimmed mean drops 1 of 10 values at each end: hand-computed at (15, 15).
    values = np.sort([s[15, 15] for s in sites])
    expected = values[1:9].mean() / np.percentile(
        np.sort([np.sort([s[i, j] for s in sites])[1:9].mean()
                 for i in range(H) for j in range(W)]),
        2,
        method="lower",
    )  # fmt: skip
    assert trimmed[15, 15] == pytest.approx(expected, rel=1e-3)
    np.testing.assert_allclose(median, truth, rtol=0.02)
    np.testing.assert_allclose(trimmed, truth, rtol=0.02)


def test_a_large_median_window_runs_on_a_shrunk_image_close_to_the_full_filter():
    rng = np.random.default_rng(3)
    smooth = ndi.gaussian_filter(rng.normal(size=(150, 200)).cumsum(0).cumsum(1), 20)
    smooth = smooth - smooth.min() + 10
    exact = ndi.median_filter(smooth, size=45, mode="reflect")
    approx = illumination._median_smooth(smooth, 45)
    assert np.abs(approx - exact).max() < 0.02 * np.ptp(smooth)
    # Small windows run at full size: exactly scipy's median filter.
    np.testing.assert_array_equal(
        illumination._median_smooth(smooth, 9), ndi.median_filter(smooth, 9, mode="reflect")
    )


def test_default_filter_size_is_a_twentieth_of_the_smaller_side():
    assert IlluminationFunction().filter_size((1080, 1080)) == 54
    assert IlluminationFunction().filter_size((10, 30)) == 1
    assert IlluminationFunction(size=500).filter_size((1080, 1080)) == 500


# ------------------------------------------------------------------- merge
@pytest.mark.parametrize("statistic", ["mean", "median", "trimmed_mean"])
def test_merging_three_plates_equals_one_fit(statistic):
    g = gradient()
    sites = sites_with_cells(9, g, seed=5)
    step = IlluminationFunction(statistic=statistic, size=7)
    one = IlluminationFunction(statistic=statistic, size=7).fit(sites)
    parts = [step.statistics(sites[i : i + 3]) for i in (0, 3, 6)]
    merged = merge_all(parts)
    assert merged.count == 9
    assert merged.needs_all_rows is (statistic != "mean")
    np.testing.assert_array_equal(merged.total, np.sum([s.astype(float) for s in sites], axis=0))
    fitted = IlluminationFunction(statistic=statistic, size=7).from_statistics(merged)
    np.testing.assert_array_equal(fitted.function_, one.function_)
    # Merging in another order gives the same sum (integer images: exact in float64).
    other = parts[2].merge(parts[0]).merge(parts[1])
    np.testing.assert_array_equal(other.total, merged.total)


def test_statistics_of_differently_sized_plates_do_not_merge():
    step = IlluminationFunction()
    a = step.statistics([np.ones((10, 12))])
    b = step.statistics([np.ones((12, 10))])
    with pytest.raises(InvalidImageError, match="10 x 12 images with 12 x 10"):
        a.merge(b)
    c = IlluminationFunction(statistic="median").statistics([np.ones((10, 12))])
    with pytest.raises(InvalidInputError, match="different statistic"):
        a.merge(c)
    with pytest.raises(InvalidInputError, match="needs the images themselves"):
        IlluminationFunction(statistic="median").from_statistics(a)


# ----------------------------------------------------------------- storage
def test_to_frame_round_trip():
    sites = sites_with_cells(3, gradient(), seed=2)
    f = fit_illumination(sites, size=5, plate="P1", channel="DNA", statistic="trimmed_mean")
    frame = f.to_frame()
    assert frame.height == H
    assert frame.schema["Values"] == pl.Array(pl.Float32, W)
    assert frame["Metadata_Plate"].unique().to_list() == ["P1"]
    assert frame["Metadata_Channel"].unique().to_list() == ["DNA"]
    back = IlluminationFunction.from_frame(frame.sample(fraction=1.0, shuffle=True, seed=1))
    np.testing.assert_array_equal(back.function_, f.function_)
    assert back.parameters() == f.parameters()
    assert back.n_images_ == 3
    np.testing.assert_array_equal(back.transform(sites[0]), f.transform(sites[0]))


def test_round_trip_through_the_store(store):
    f = fit_illumination(sites_with_cells(2, gradient()), size=5, plate="P1", channel="AGP")
    g = fit_illumination(sites_with_cells(2, gradient(), seed=9), size=5, plate="P2", channel="AGP")
    store.write("illumination", pl.concat([f.to_frame(), g.to_frame()]), step="illumination")
    table = store.read("illumination")
    back = IlluminationFunction.from_frame(table.filter(pl.col("Metadata_Plate") == "P2"))
    np.testing.assert_array_equal(back.function_, g.function_)
    with pytest.raises(InvalidInputError, match="2 plate/channel pairs"):
        IlluminationFunction.from_frame(table)


def test_from_frame_refuses_damaged_tables():
    frame = fit_illumination([gradient() * 100], smoothing="none").to_frame()
    with pytest.raises(InvalidInputError, match=r"missing column.*Values"):
        IlluminationFunction.from_frame(frame.drop("Values"))
    with pytest.raises(InvalidInputError, match="missing or repeated"):
        IlluminationFunction.from_frame(frame.filter(pl.col("Row") != 7))
    with pytest.raises(EmptyInputError):
        IlluminationFunction.from_frame(frame.head(0))
    zeroed = frame.with_columns(
        pl.when(pl.col("Row") == 0)
        .then(pl.col("Values").arr.eval(pl.element() * 0))
        .otherwise(pl.col("Values"))
        .alias("Values")
    )
    with pytest.raises(InvalidInputError, match="finite and > 0"):
        IlluminationFunction.from_frame(zeroed)


# --------------------------------------------------------------- bad input
def test_bad_images_are_refused_with_named_errors():
    g = gradient()
    with pytest.raises(EmptyInputError, match="no images"):
        fit_illumination([], plate="P1", channel="DNA")
    with pytest.raises(InvalidImageError, match=r"image 1 is 60 x 79 but image 0 is 60 x 80"):
        fit_illumination([g, g[:, :-1]])
    nan = g.copy()
    nan[0, 0] = np.nan
    with pytest.raises(InvalidImageError, match="1 NaN"):
        fit_illumination([g, nan])
    with pytest.raises(InvalidImageError, match="2-D"):
        fit_illumination([np.stack([g, g])])
    with pytest.raises(InvalidInputError, match=r"plate 'P1', channel 'AGP'.*blank channel"):
        fit_illumination([np.zeros((H, W))] * 2, plate="P1", channel="AGP")
    with pytest.raises(InvalidChoiceError, match="mean, median, trimmed_mean"):
        IlluminationFunction(statistic="mode")
    with pytest.raises(InvalidChoiceError, match="median, polynomial, none"):
        IlluminationFunction(smoothing="gaussian")
    with pytest.raises(InvalidInputError, match="size must be a positive"):
        IlluminationFunction(size=0)
    f = fit_illumination([g], smoothing="none")
    with pytest.raises(InvalidImageError, match="is 60 x 79 but the illumination function"):
        apply_illumination(g[:, :-1], f)
    with pytest.raises(InvalidInputError, match="not fitted"):
        IlluminationFunction(channel="DNA").transform(g)
    # A valid but unusual input: a single site, uint8, with a dark corner is fitted.
    one = np.clip(g * 100, 0, 255).astype(np.uint8)
    one[:3, :3] = 0
    assert (fit_illumination([one], size=3).function_ >= 1).all()


def test_apply_scales_integer_images_like_cellprofiler():
    g = gradient()
    site = np.round(g * 1000).astype(np.uint16)
    f = fit_illumination([site], smoothing="none", rescale="none")  # the function is site itself
    # uint16 is divided by 65535 first (CellProfiler's scaling), then by the function.
    np.testing.assert_allclose(apply_illumination(site, f), 1 / 65535, rtol=1e-6)
    f = fit_illumination([site], smoothing="none")
    corrected = apply_illumination(site, f)
    q = robust_min(site.astype(float))
    assert corrected.max() == pytest.approx(q / 65535, rel=1e-3)  # the function's min is 1
    # Float images are divided as they are; uint8 by 255.
    np.testing.assert_allclose(
        apply_illumination(site.astype(np.float32), f), site / f.function_, rtol=1e-6
    )
    small = np.round(g * 100).astype(np.uint8)
    f8 = fit_illumination([small], smoothing="none", rescale="none")
    np.testing.assert_allclose(apply_illumination(small, f8), 1 / 255, rtol=1e-6)


def test_docstring_examples_run():
    result = doctest.testmod(illumination)
    assert result.attempted >= 4 and result.failed == 0
