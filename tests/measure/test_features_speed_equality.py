"""The fast Haralick texture equals cp-measure's (mahotas') on real sites, for every column."""

from __future__ import annotations

import warnings

import numpy as np

from cellframe.measure.features import _relabel, _texture, measure_objects, to_unit_range
from tests.measure.conftest import ExampleHumanSite, jump_site

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


def test_fast_texture_equals_cp_measure_on_ajump_site() -> None:
    """Every compartment, channel, JUMP scale (3, 5, 10) and 8 grey levels at scale 3."""
    pixels, labels = jump_site(0)
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
    pixels, labels = jump_site(1)  # 101 cells: the other bundled site
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


def test_fast_texture_equals_cp_measure_on_example_human(example_human: ExampleHumanSite) -> None:
    """CellProfiler's ExampleHuman site (289 nuclei), objects as its pipeline finds them."""
    objects = example_human.objects
    dna, ph3, cellbody = (example_human.images[c] for c in ("DNA", "PH3", "cellbody"))
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


# ------------------------------------------------------------ co-occurrences, all steps at once
def _mahotas_occupied(crop: np.ndarray, distance: int, direction: int, levels: int):
    """mahotas' symmetric co-occurrence matrix, row and column 0 cleared, as (flat, counts)."""
    from mahotas.features.texture import cooccurence

    cmat = np.empty((levels, levels), np.int32)
    cooccurence(crop, direction, cmat, symmetric=True, distance=distance)
    cmat[0], cmat[:, 0] = 0, 0
    flat = np.flatnonzero(cmat)
    return (flat, cmat.ravel()[flat]) if flat.size else None


def test_cooccurrences_equal_mahotas_count_for_count() -> None:
    """Both counting paths (dense few-level matrices, sorted codes at 256 levels), every step.

    Crops with non-zero borders (pairs at the crop's edge), steps longer than the
    crop (no pair: None), all-zero crops, one-row and one-column crops.
    """
    from cellframe.measure.features import _cooccurrences

    rng = np.random.default_rng(17)
    crops = [rng.integers(0, top, shape).astype(np.uint8)
             for top, shape in ((4, (9, 7)), (256, (6, 11)), (256, (40, 40)), (30, (1, 12)),
                                (2, (12, 1)), (1, (5, 5)), (256, (3, 3)))]  # fmt: skip
    crops.append(np.pad(rng.integers(1, 256, (8, 5)).astype(np.uint8), 2))  # a masked object
    distances = (1, 3, 5, 10)
    checked = empty = 0
    for crop in crops:
        for levels in (int(crop.max()) + 1, 256):  # small matrices: dense; large: sorted codes
            got = _cooccurrences(crop, distances, levels)
            assert len(got) == len(distances) * 4
            for n, distance in enumerate(distances):
                for direction in range(4):
                    ref = _mahotas_occupied(crop, distance, direction, levels)
                    mine = got[n * 4 + direction]
                    if ref is None:
                        assert mine is None, (crop.shape, distance, direction)
                        empty += 1
                        continue
                    assert np.array_equal(mine[0], ref[0]) and np.array_equal(mine[1], ref[1])
                    checked += 1
    assert checked > 100 and empty > 10  # both cases met


# ------------------------------------------------------------ correlation, shared per channel
def test_correlation_equals_cp_measure_per_pair_functions() -> None:
    """Pearson, Manders and overlap equal cp-measure's public per-pair functions exactly.

    The pixels of each object are extracted once per channel (not once per pair and
    measure); a label missing from 1..N (an empty object) gets cp-measure's 0.
    """
    from cp_measure.core.measurecolocalization import (
        get_correlation_manders_fold,
        get_correlation_overlap,
        get_correlation_pearson,
    )

    from cellframe.measure.features import _ObjectPixels

    pixels, labels = jump_site(0)
    clean, _ = _relabel(labels["Cells"])
    clean = np.where(clean == 5, 0, clean)  # object 5 empty, as cp-measure allows
    unit = {name: to_unit_range(px) for name, px in pixels.items()}
    objects = _ObjectPixels.of(clean)
    per_object = {name: objects.per_object(px) for name, px in unit.items()}
    compared = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for first, second in (("AGP", "DNA"), ("ER", "Mito"), ("DNA", "RNA")):
            got = objects.pairwise(
                per_object[first], per_object[second], ["pearson", "manders_fold", "overlap"]
            )
            ref: dict = {}
            for function in (get_correlation_pearson, get_correlation_manders_fold,
                             get_correlation_overlap):  # fmt: skip
                ref.update(function(unit[first], unit[second], clean))
            assert sorted(got) == sorted(ref)
            for key, values in ref.items():
                assert np.array_equal(np.asarray(got[key]), np.asarray(values), equal_nan=True)
                compared += len(values)
            assert got["Correlation_Pearson"][4] == 0.0  # the empty object
    assert compared == 3 * 7 * 18


def _rwc_by_hand(p1: np.ndarray, p2: np.ndarray, labels: np.ndarray, thr: float = 15) -> tuple:
    """CellProfiler 5's RWC written out plainly, one object at a time."""
    inside = labels > 0
    v1, v2 = p1[inside].astype(np.float64), p2[inside].astype(np.float64)
    lab = labels[inside]
    r1 = np.searchsorted(np.unique(v1), v1)
    r2 = np.searchsorted(np.unique(v2), v2)
    top = max(r1.max(), r2.max()) + 1
    weight = (top - np.abs(r1 - r2)) / top
    out1, out2 = [], []
    for k in range(1, int(labels.max()) + 1):
        m = lab == k
        a1 = v1[m] >= thr / 100 * v1[m].max()
        a2 = v2[m] >= thr / 100 * v2[m].max()
        both = a1 & a2
        out1.append((v1[m] * weight[m] * both).sum() / (v1[m] * a1).sum())
        out2.append((v2[m] * weight[m] * both).sum() / (v2[m] * a2).sum())
    return np.array(out1), np.array(out2)


def test_rwc_ranked_once_per_channel_equals_the_definition() -> None:
    """RWC from ranks computed once per channel equals the plain definition (1e-12 rel).

    Ties (a constant patch) and a channel of few distinct values are included.
    """
    pixels, labels = jump_site(0)
    clean, _ = _relabel(labels["Nuclei"])
    unit = {name: to_unit_range(px) for name, px in pixels.items()}
    unit["flat"] = np.round(unit["DNA"] * 20) / 20  # few distinct values: many ties
    frame = measure_objects(clean, unit, families=["correlation"])
    n = 0
    for first, second in (("DNA", "RNA"), ("AGP", "flat"), ("ER", "Mito")):
        ref_1, ref_2 = _rwc_by_hand(unit[first], unit[second], clean)
        got_1 = frame[f"Correlation_RWC_{first}_{second}"].to_numpy()
        got_2 = frame[f"Correlation_RWC_{second}_{first}"].to_numpy()
        np.testing.assert_allclose(got_1, ref_1.astype(np.float32), rtol=1e-6)
        np.testing.assert_allclose(got_2, ref_2.astype(np.float32), rtol=1e-6)
        assert 0 < got_1.min() and got_1.max() <= 1
        n += got_1.size
    assert n == 3 * 18
