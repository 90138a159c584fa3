"""The fast Haralick texture equals cp-measure's (mahotas') on real sites, for every column."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from cellframe.measure.features import _relabel, _texture, measure_objects, to_unit_range

EXAMPLE_HUMAN = "cellprofiler-outputs/tests/data/cellprofiler/ExampleHuman"
JUMP_CHANNELS = ["AGP", "DNA", "ER", "Mito", "RNA"]  # channels.csv order

# Relative bound on every value; values that are rounding noise in either
# implementation (a Correlation or InfoMeas2 of an object whose grey levels are
# independent: mahotas gives 0.0, the sparse sums 2e-8, or the other way) are
# held to an absolute bound instead, 1e-7 being below float32's resolution of
# these [-1, 1] features.
RTOL, ATOL = 1e-6, 1e-7


def _reference(labels: np.ndarray, pixels: np.ndarray, scale: int, gray_levels: int) -> dict:
    from cp_measure.core.measuretexture import get_texture

    return get_texture(labels, pixels, scale=scale, gray_levels=gray_levels)


def _assert_equal(ref: dict, new: dict, where: str) -> int:
    assert list(ref) == list(new), where
    n = 0
    for key, values in ref.items():
        a, b = np.asarray(values, dtype=np.float64), np.asarray(new[key], dtype=np.float64)
        assert a.shape == b.shape, (where, key)
        assert np.array_equal(np.isnan(a), np.isnan(b)), (where, key, a, b)
        np.testing.assert_allclose(b, a, rtol=RTOL, atol=ATOL, err_msg=f"{where} {key}")
        n += int((~np.isnan(a)).sum())
    return n


def _jump_site(index: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    import zarr

    from cellframe.demo import demo_data_dir
    from cellframe.segment.classical import segment_site

    images = zarr.open(str(demo_data_dir() / "jump" / "images.zarr"), mode="r")["images"]
    pixels = {name: np.asarray(images[index, c]) for c, name in enumerate(JUMP_CHANNELS)}
    objects = segment_site(pixels, nuclei="DNA", cells="AGP")
    labels = {"Nuclei": objects.nuclei, "Cells": objects.cells, "Cytoplasm": objects.cytoplasm}
    return pixels, labels


def test_fast_texture_equals_cp_measure_on_a_jump_site() -> None:
    """Every compartment, channel, JUMP scale (3, 5, 10) and 8 grey levels at scale 3."""
    pixels, labels = _jump_site(0)
    assert int(labels["Cells"].max()) == 18  # the bundled site as profiled in issue 17
    n_values = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for compartment, raw in labels.items():
            clean, _ = _relabel(raw)
            for channel, px in pixels.items():
                unit = to_unit_range(px)
                for scale, gray_levels in ((3, 256), (5, 256), (10, 256), (3, 8)):
                    where = f"JUMP site 0 {compartment} {channel} scale {scale}/{gray_levels}"
                    n_values += _assert_equal(
                        _reference(clean, unit, scale, gray_levels),
                        _texture(clean, unit, scale, gray_levels),
                        where,
                    )
    assert n_values > 40_000  # 3 x 5 x 4 x 52 columns x ~18 objects, minus NaN


def test_measure_objects_texture_columns_equal_the_whole_image_call() -> None:
    """measure_objects' float32 columns equal cp-measure's whole-image get_texture, cast alike."""
    pixels, labels = _jump_site(1)  # 101 cells: the other bundled site
    clean, ids = _relabel(labels["Nuclei"])
    frame = measure_objects(labels["Nuclei"], pixels, families=["texture"], texture_scales=(3, 10))
    assert frame["ObjectNumber"].to_list() == ids.tolist()
    assert frame.width == 1 + 5 * 2 * 52
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for channel, px in pixels.items():
            for scale in (3, 10):
                ref = _reference(clean, to_unit_range(px), scale, 256)
                for key, values in ref.items():
                    feature, rest = key.split("_", 1)
                    mine = frame[f"Texture_{feature}_{channel}_{rest}"].to_numpy()
                    expected = np.asarray(values, dtype=np.float64).astype(np.float32)
                    np.testing.assert_allclose(mine, expected, rtol=RTOL, atol=ATOL, err_msg=key)


def test_undefined_texture_is_nan_like_cp_measure() -> None:
    """A one-pixel object and a zero-intensity object: NaN (no pair), as cp-measure writes."""
    labels = np.zeros((16, 16), dtype=np.int32)
    labels[1, 1] = 1  # one pixel: no pair at distance 3
    labels[5:12, 5:12] = 2  # a textured square: finite
    labels[13:16, 0:16] = 3  # all pixels 0: every pair ignored
    rng = np.random.default_rng(0)
    pixels = rng.uniform(0.1, 1.0, (16, 16)).astype(np.float32)
    pixels[13:16] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ref = _reference(labels, pixels, 3, 256)
    new = _texture(labels, pixels, 3, 256)
    _assert_equal(ref, new, "synthetic")
    contrast = new["Contrast_3_00_256"]
    assert np.isnan(contrast[0]) and np.isnan(contrast[2]) and contrast[1] > 0


def test_fast_texture_equals_cp_measure_on_example_human(shared_data: Path) -> None:
    """CellProfiler's ExampleHuman site (289 nuclei), objects as its pipeline finds them."""
    import tifffile

    from cellframe.segment.classical import segment_site

    folder = shared_data / EXAMPLE_HUMAN
    dna, ph3, cellbody = (
        tifffile.imread(folder / f"AS_09125_050116030001_D03f00d{i}.tif") for i in range(3)
    )
    objects = segment_site(
        {"DNA": dna, "cellbody": cellbody}, nuclei="DNA", cells="cellbody",
        primary={"size_range": (8, 80)},
        secondary={"threshold_correction": 0.8, "smoothing_sigma": 0},
    )  # fmt: skip
    n_values = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for compartment, raw in (
            ("Nuclei", objects.nuclei),
            ("Cells", objects.cells),
            ("Cytoplasm", objects.cytoplasm),
        ):
            clean, _ = _relabel(raw)
            for channel, px in (("DNA", dna), ("PH3", ph3), ("cellbody", cellbody)):
                unit = to_unit_range(px)
                where = f"ExampleHuman {compartment} {channel} scale 3"
                n_values += _assert_equal(
                    _reference(clean, unit, 3, 256), _texture(clean, unit, 3, 256), where
                )
    assert n_values > 100_000  # 3 compartments x 3 channels x 52 columns x ~289 objects
