"""CellProfiler-style objects (segment/classical.py): synthetic cases computed by hand,
and CellProfiler's own output on ExampleHuman."""

from __future__ import annotations

import doctest
import warnings

import numpy as np
import polars as pl
import pytest
import tifffile
from polars.testing import assert_frame_equal
from scipy import ndimage as ndi

from cellframe.columns import OBJECT_NUMBER
from cellframe.errors import (
    BlankImageError,
    EmptyInputError,
    InvalidChoiceError,
    InvalidImageError,
    InvalidInputError,
    NoObjectsWarning,
)
from cellframe.segment import classical
from cellframe.segment.classical import (
    DeclumpSettings,
    ThresholdSettings,
    identify_primary,
    identify_secondary,
    identify_tertiary,
    relate_objects,
    save_labels,
    segment_site,
    threshold_image,
)

SHAPE = (96, 120)
#: No smoothing before thresholding: the sharp-edged test shapes keep their exact areas.
SHARP = ThresholdSettings(smoothing_sigma=0)


def disk(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def dome(shape, cy, cx, r, peak=0.8):
    """A disk whose intensity falls from ``peak`` at the centre to half of it at the rim."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    d2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / (r * r)
    return np.where(d2 <= 1, peak * (1 - 0.5 * d2), 0.0)


def centroids(labels):
    n = int(labels.max())
    return np.array(ndi.center_of_mass(labels > 0, labels, np.arange(1, n + 1)))


# ----------------------------------------------------------------- primary
def test_isolated_disks_are_found_with_their_exact_areas():
    discs = [(20, 20, 6), (25, 60, 9), (70, 30, 4), (60, 90, 12)]
    img = np.full(SHAPE, 0.05)
    for cy, cx, r in discs:
        img[disk(SHAPE, cy, cx, r)] = 0.7
    labels = identify_primary(img, size_range=(5, 40), threshold=SHARP)
    assert labels.dtype == np.int32
    assert int(labels.max()) == 4
    expected = sorted(int(disk(SHAPE, cy, cx, r).sum()) for cy, cx, r in discs)
    assert sorted(np.bincount(labels.ravel())[1:].tolist()) == expected
    # Objects are numbered in raster order of their first pixel, as CellProfiler's relabel.
    got = centroids(labels)
    np.testing.assert_allclose(got, [(20, 20), (25, 60), (60, 90), (70, 30)], atol=1e-9)


def test_smoothing_grows_a_sharp_edge_by_the_blur():
    img = np.zeros(SHAPE)
    img[disk(SHAPE, 40, 50, 8)] = 0.8
    sharp = identify_primary(img, size_range=(5, 40), threshold=SHARP)
    blurred = identify_primary(
        img, size_range=(5, 40), threshold=ThresholdSettings(smoothing_sigma=1.0)
    )
    assert (sharp > 0).sum() == disk(SHAPE, 40, 50, 8).sum()
    assert (blurred > 0).sum() > (sharp > 0).sum()
    assert ((sharp > 0) & (blurred == 0)).sum() == 0  # only grown, never shrunk


@pytest.mark.parametrize("declump", ["intensity", "shape"])
def test_touching_pair_is_split_in_two(declump):
    # Two disks of radius 10 whose centres are 16 px apart overlap in a lens.
    img = np.full(SHAPE, 0.02)
    centres = [(48, 45), (48, 61)]
    for cy, cx in centres:
        img = np.maximum(img, dome(SHAPE, cy, cx, 10))
    union = img > 0.1
    assert ndi.label(union)[1] == 1  # one clump before declumping
    labels = identify_primary(
        img, size_range=(8, 40), declump=DeclumpSettings(declump), threshold=SHARP
    )
    assert int(labels.max()) == 2
    got = centroids(labels)
    got = got[np.argsort(got[:, 1])]
    np.testing.assert_allclose(got, centres, atol=1.5)
    areas = np.bincount(labels.ravel())[1:]
    # Split symmetric about x = 53: each half holds half the union (the line's pixels go to one).
    assert abs(int(areas[0]) - int(areas[1])) <= union.shape[0]
    assert int(areas.sum()) == int(union.sum())
    # The dividing line lies on the neck, at x = 53 +- 1.
    cols = np.where((labels[:, 1:] != labels[:, :-1]) & (labels[:, 1:] > 0) & (labels[:, :-1] > 0))[
        1
    ]
    assert cols.size and np.all(np.abs(cols - 52.5) <= 1.5)


def test_without_declumping_a_touching_pair_stays_one_object():
    img = np.full(SHAPE, 0.02)
    for cy, cx in [(48, 45), (48, 61)]:
        img = np.maximum(img, dome(SHAPE, cy, cx, 10))
    labels = identify_primary(
        img, size_range=(8, 60), declump=DeclumpSettings("none"), threshold=SHARP
    )
    assert int(labels.max()) == 1


def test_two_maxima_closer_than_the_suppression_distance_are_one_object():
    img = np.full(SHAPE, 0.02)
    for cy, cx in [(48, 56), (48, 62)]:  # 6 px apart < 12 / 1.5 = 8
        img = np.maximum(img, dome(SHAPE, cy, cx, 10))
    kw = {"size_range": (12, 60), "threshold": SHARP}
    assert int(identify_primary(img, declump=DeclumpSettings(smoothing=1), **kw).max()) == 1
    # A shorter suppression distance splits them.
    split = DeclumpSettings(smoothing=1, maxima_distance=2)
    assert int(identify_primary(img, declump=split, **kw).max()) == 2


def test_border_objects_are_dropped_unless_asked_to_keep_them():
    img = np.full(SHAPE, 0.05)
    for cy, cx, r in [(40, 60, 7), (3, 20, 7), (50, 116, 6)]:  # the last two cross an edge
        img = np.maximum(img, dome(SHAPE, cy, cx, r))
    kept = identify_primary(img, size_range=(5, 40), threshold=SHARP)
    assert int(kept.max()) == 1
    np.testing.assert_allclose(centroids(kept), [(40, 60)], atol=1e-9)
    all_ = identify_primary(img, size_range=(5, 40), threshold=SHARP, exclude_border=False)
    assert int(all_.max()) == 3


def test_size_filter_drops_objects_outside_the_diameter_range():
    img = np.full(SHAPE, 0.05)
    img[disk(SHAPE, 20, 20, 2)] = 0.7  # 13 px < pi 6^2 / 4 = 28.3
    img[disk(SHAPE, 30, 60, 6)] = 0.7  # 113 px, kept
    img[disk(SHAPE, 65, 70, 20)] = 0.7  # 1257 px > pi 30^2 / 4 = 706.9
    labels = identify_primary(
        img, size_range=(6, 30), threshold=SHARP, declump=DeclumpSettings("none")
    )
    assert np.bincount(labels.ravel())[1:].tolist() == [113]
    unfiltered = identify_primary(
        img,
        size_range=(6, 30),
        threshold=SHARP,
        declump=DeclumpSettings("none"),
        exclude_size=False,
    )
    assert sorted(np.bincount(unfiltered.ravel())[1:].tolist()) == [13, 113, 1257]


def test_holes_are_filled_unless_told_not_to():
    img = np.full(SHAPE, 0.05)
    ring = disk(SHAPE, 48, 60, 10) & ~disk(SHAPE, 48, 60, 3)
    img[ring] = 0.7
    filled = identify_primary(
        img, size_range=(5, 40), threshold=SHARP, declump=DeclumpSettings("none")
    )
    assert (filled > 0).sum() == disk(SHAPE, 48, 60, 10).sum()
    holed = identify_primary(
        img, size_range=(5, 40), threshold=SHARP, declump=DeclumpSettings("none"), fill_holes=False
    )
    assert (holed > 0).sum() == ring.sum()


def test_integer_images_are_scaled_like_cellprofiler():
    img = np.full(SHAPE, 0.05)
    for cy, cx in [(30, 30), (60, 80)]:
        img = np.maximum(img, dome(SHAPE, cy, cx, 9))
    as_u16 = np.round(img * 65535).astype(np.uint16)
    a = identify_primary(as_u16, size_range=(8, 40))
    b = identify_primary(as_u16 / 65535.0, size_range=(8, 40))
    np.testing.assert_array_equal(a, b)
    assert int(a.max()) == 2
    # A float image in other units (e.g. illumination-corrected raw counts) gives the same.
    np.testing.assert_array_equal(identify_primary(img * 4000.0, size_range=(8, 40)), a)
    # A manual threshold is on the [0, 1] scale for integer images too.
    _, t = threshold_image(as_u16 / 65535.0, method=0.3)
    assert t == 0.3


def test_threshold_methods_match_scikit_image_and_correction_and_bounds_apply():
    from skimage.filters import threshold_li, threshold_otsu

    rng = np.random.default_rng(1)
    img = np.clip(rng.normal(0.2, 0.05, SHAPE), 0, 1)
    img[disk(SHAPE, 40, 40, 10)] += 0.5
    _, li = threshold_image(img)
    _, otsu = threshold_image(img, method="otsu", correction=0.5)
    assert li == pytest.approx(threshold_li(img.ravel()), rel=1e-12)
    assert otsu == pytest.approx(0.5 * threshold_otsu(img.ravel()), rel=1e-12)
    _, bounded = threshold_image(img, bounds=(0.6, 1.0))
    assert bounded == 0.6
    mask, t = threshold_image(img, method=lambda px: 0.45, smoothing_sigma=0)
    assert t == 0.45
    np.testing.assert_array_equal(mask, img >= 0.45)


def test_three_class_otsu_matches_scikit_image_multiotsu_with_128_bins():
    from skimage.filters import threshold_multiotsu

    rng = np.random.default_rng(2)
    img = np.concatenate([rng.normal(m, 0.03, 4000) for m in (0.1, 0.4, 0.8)]).clip(0, 1)
    img = img.reshape(120, 100)
    low, high = threshold_multiotsu(img.ravel(), classes=3, nbins=128)
    assert threshold_image(img, method="otsu_three_class")[1] == pytest.approx(low, rel=1e-12)
    assert threshold_image(img, method="otsu_three_class_background")[1] == pytest.approx(
        high, rel=1e-12
    )
    assert 0.1 < low < 0.4 < high < 0.8


def test_adaptive_threshold_finds_objects_on_an_uneven_background():
    # Background rising from 0.15 (left) to 0.30 (right); 15 disks 0.2 above it.
    shape = (200, 300)
    xx = np.mgrid[0 : shape[0], 0 : shape[1]][1]
    background = 0.15 + 0.15 * xx / (shape[1] - 1)
    img = background.copy()
    for cy in (40, 100, 160):
        for cx in (30, 90, 150, 210, 270):
            m = disk(shape, cy, cx, 8)
            img[m] += 0.2
    kw = {"size_range": (8, 40), "declump": DeclumpSettings("none")}
    # One global threshold lets the bright right side merge into one object (dropped).
    assert int(identify_primary(img, threshold=SHARP, **kw).max()) < 15
    local = ThresholdSettings(smoothing_sigma=0, strategy="adaptive")
    adaptive = identify_primary(img, threshold=local, **kw)
    assert int(adaptive.max()) == 15
    assert np.bincount(adaptive.ravel())[1:].tolist() == [int(disk(shape, 100, 150, 8).sum())] * 15
    # The reported threshold is the mean of the local ones, within 0.7-1.5 x the global.
    _, glob = threshold_image(img, smoothing_sigma=0)
    _, mean_local = threshold_image(img, smoothing_sigma=0, strategy="adaptive")
    assert 0.7 * glob <= mean_local <= 1.5 * glob and mean_local != glob
    with pytest.raises(InvalidInputError, match="window of 120 px is more than half"):
        threshold_image(img, strategy="adaptive", window=120)
    with pytest.raises(InvalidChoiceError, match="global, adaptive"):
        threshold_image(img, strategy="local")


def test_bad_input_is_refused_with_a_named_error():
    img = np.zeros(SHAPE)
    img[disk(SHAPE, 40, 40, 6)] = 0.5
    with pytest.raises(InvalidChoiceError, match="minimum_cross_entropy, otsu"):
        identify_primary(img, threshold=ThresholdSettings(method="kapur"))
    with pytest.raises(InvalidChoiceError, match="intensity, shape, none"):
        identify_primary(img, declump=DeclumpSettings(method="laplacian"))
    with pytest.raises(InvalidChoiceError, match="global, adaptive"):
        ThresholdSettings(strategy="local")
    # A manual threshold and a callable are valid methods.
    assert ThresholdSettings(method=0.3).method == 0.3
    assert (
        int(identify_primary(img, threshold=ThresholdSettings(method=lambda _p: 0.25)).max()) == 1
    )
    with pytest.raises(BlankImageError, match="blank"):
        identify_primary(np.full(SHAPE, 7, np.uint16))
    bad = img.copy()
    bad[3, 4] = np.nan
    with pytest.raises(InvalidImageError, match="1 NaN"):
        identify_primary(bad)
    with pytest.raises(InvalidImageError, match="2-D"):
        identify_primary(np.zeros((2, 8, 8)))
    with pytest.raises(InvalidInputError, match="min_diameter <= max_diameter"):
        identify_primary(img, size_range=(30, 10))
    # A valid but unusual image (a single object filling most of the field) is accepted.
    big = np.full((40, 40), 0.1)
    big[5:35, 5:35] = 0.9
    assert int(identify_primary(big, size_range=(5, 60), threshold=SHARP).max()) == 1


# --------------------------------------------------------------- secondary
def _site():
    """Two nuclei in cells that touch, and one lone nucleus in its cell."""
    nuclei_true = [(40, 40, 6), (40, 64, 6), (75, 95, 5)]
    cells_true = [(40, 40, 12), (40, 64, 12), (75, 95, 10)]
    dna = np.full(SHAPE, 0.03)
    body = np.full(SHAPE, 0.03)
    for cy, cx, r in cells_true:
        body[disk(SHAPE, cy, cx, r)] = 0.4
    for cy, cx, r in nuclei_true:
        dna[disk(SHAPE, cy, cx, r)] = 0.8
    return dna, body, nuclei_true, cells_true


def test_propagation_grows_each_nucleus_into_its_cell_and_keeps_its_number():
    dna, body, _, cells_true = _site()
    nuclei = identify_primary(dna, size_range=(6, 30), threshold=SHARP)
    assert int(nuclei.max()) == 3
    cells = identify_secondary(body, nuclei, threshold=SHARP)
    assert cells.dtype == np.int32
    assert int(cells.max()) == 3
    # Each cell contains its nucleus, with the same number.
    np.testing.assert_array_equal(cells[nuclei > 0], nuclei[nuclei > 0])
    union = np.zeros(SHAPE, bool)
    for cy, cx, r in cells_true:
        union |= disk(SHAPE, cy, cx, r)
    # Cells cover exactly the cell-body foreground.
    np.testing.assert_array_equal(cells > 0, union)
    # The lone cell is its whole disk; the touching pair splits at the midline x = 52.
    lone = int(nuclei[75, 95])
    np.testing.assert_array_equal(cells == lone, disk(SHAPE, 75, 95, 10))
    left, right = int(nuclei[40, 40]), int(nuclei[40, 64])
    assert (np.nonzero(cells == left)[1] <= 52).all()
    assert (np.nonzero(cells == right)[1] >= 52).all()


def test_watershed_method_gives_the_same_cells_on_sharp_edges():
    dna, body, _, _ = _site()
    nuclei = identify_primary(dna, size_range=(6, 30), threshold=SHARP)
    prop = identify_secondary(body, nuclei, threshold=SHARP)
    water = identify_secondary(body, nuclei, method="watershed", threshold=SHARP)
    np.testing.assert_array_equal(water > 0, prop > 0)
    np.testing.assert_array_equal(water[nuclei > 0], nuclei[nuclei > 0])
    # At most the midline column of the touching pair may be assigned differently.
    assert int((water != prop).sum()) <= 25
    with pytest.raises(InvalidChoiceError, match="propagation, watershed"):
        identify_secondary(body, nuclei, method="voronoi")


def test_secondary_refuses_a_blank_body_channel_and_mismatched_labels():
    dna, body, _, _ = _site()
    nuclei = identify_primary(dna, size_range=(6, 30), threshold=SHARP)
    with pytest.raises(BlankImageError):
        identify_secondary(np.zeros(SHAPE), nuclei)
    with pytest.raises(InvalidImageError, match="same size"):
        identify_secondary(body, nuclei[:-1])
    with pytest.raises(InvalidImageError, match="integer label image"):
        identify_secondary(body, nuclei.astype(float))


def test_border_nuclei_claim_their_pixels_when_unfiltered_labels_are_given():
    dna, body, _, _ = _site()
    # A nucleus touching the left edge, inside a cell body that reaches the left cell.
    dna[disk(SHAPE, 40, 2, 5)] = 0.8
    body[disk(SHAPE, 40, 18, 12)] = 0.4
    p = classical._primary(
        dna, threshold="minimum_cross_entropy", smoothing_sigma=0, threshold_correction=1.0,
        size_range=(6, 30), declump="intensity", declump_smoothing=None, maxima_distance=None,
        exclude_border=True, exclude_size=True, fill_holes=True, name="dna",
    )  # fmt: skip
    assert int(p.labels.max()) == 3 and int(p.unedited.max()) == 4
    plain = identify_secondary(body, p.labels, threshold=SHARP)
    cp_like = identify_secondary(body, p.labels, threshold=SHARP, unfiltered_nuclei=p.unedited)
    left = int(p.labels[40, 40])
    # Without the border seed, the left cell takes the border cell's body; with it, it does not.
    assert (plain == left).sum() > (cp_like == left).sum()
    assert (cp_like[:, :3] == 0).all()  # the border object itself is not in the output
    assert int(cp_like.max()) == 3


# ---------------------------------------------------------------- tertiary
def test_tertiary_is_the_cell_minus_the_shrunken_nucleus():
    cells = np.zeros((9, 9), np.int32)
    cells[1:8, 1:8] = 1
    nuclei = np.zeros((9, 9), np.int32)
    nuclei[2:7, 2:7] = 1  # 25 px, outline 16 px, interior 9 px
    shrunk = identify_tertiary(cells, nuclei)
    assert int((shrunk == 1).sum()) == 49 - 9
    assert (shrunk[3:6, 3:6] == 0).all() and (shrunk[2, 2:7] == 1).all()
    plain = identify_tertiary(cells, nuclei, shrink=False)
    assert int((plain == 1).sum()) == 49 - 25


def test_relate_objects_takes_the_largest_overlap_as_parent():
    parents = np.array([[1, 1, 2, 2, 0, 3]], np.int32)
    children = np.array([[1, 2, 2, 2, 0, 0]], np.int32)
    # child 1 overlaps parent 1 only; child 2 overlaps parent 1 once, parent 2 twice.
    # child 3 does not exist (label gap) -> parent 0; no child overlaps parent 3.
    children[0, 4] = 4
    parent_of_child, children_per_parent = relate_objects(parents, children)
    assert parent_of_child.tolist() == [1, 2, 0, 0]
    assert children_per_parent.tolist() == [1, 1, 0]


def test_relate_objects_equals_the_dense_overlap_argmax_on_random_labels():
    rng = np.random.default_rng(0)
    for _ in range(100):
        parents, children = rng.integers(0, 6, (8, 9)), rng.integers(0, 5, (8, 9))
        both = (parents > 0) & (children > 0)
        overlap = np.zeros((children.max() + 1, parents.max() + 1), int)
        np.add.at(overlap, (children[both], parents[both]), 1)
        expected = np.where(overlap[1:].max(axis=1) > 0, overlap[1:].argmax(axis=1), 0)
        parent_of_child, children_per_parent = relate_objects(parents, children)
        assert parent_of_child.tolist() == expected.tolist()
        assert (
            children_per_parent.tolist()
            == np.bincount(expected, minlength=parents.max() + 1)[1:].tolist()
        )


# -------------------------------------------------------------------- site
def test_segment_site_relates_the_compartments_as_cellprofiler_writes_them():
    dna, body, _, _ = _site()
    objs = segment_site(
        {"DNA": dna, "AGP": body, "Mito": body * 0.5},
        primary={"size_range": (6, 30), "smoothing_sigma": 0},
        secondary={"smoothing_sigma": 0},
    )
    assert objs.count == 3
    np.testing.assert_array_equal(objs.cytoplasm, identify_tertiary(objs.cells, objs.nuclei))
    expected = pl.DataFrame(
        {
            OBJECT_NUMBER: pl.Series([1, 2, 3], dtype=pl.Int64),
            "Nuclei_Children_Cells_Count": pl.Series([1, 1, 1], dtype=pl.Int32),
            "Nuclei_Children_Cytoplasm_Count": pl.Series([1, 1, 1], dtype=pl.Int32),
            "Cells_Parent_Nuclei": pl.Series([1, 2, 3], dtype=pl.Int32),
            "Cells_Children_Cytoplasm_Count": pl.Series([1, 1, 1], dtype=pl.Int32),
            "Cytoplasm_Parent_Cells": pl.Series([1, 2, 3], dtype=pl.Int32),
            "Cytoplasm_Parent_Nuclei": pl.Series([1, 2, 3], dtype=pl.Int32),
        }
    )
    assert_frame_equal(objs.relationships, expected)
    assert set(objs.thresholds) == {
        "Threshold_FinalThreshold_Nuclei",
        "Threshold_FinalThreshold_Cells",
    }


def test_segment_site_grows_cells_from_nuclei_found_another_way():
    _, body, nuclei_true, _ = _site()
    given = np.zeros(SHAPE, np.int32)
    for i, (cy, cx, r) in enumerate(reversed(nuclei_true), start=1):  # numbered differently
        given[disk(SHAPE, cy, cx, r)] = i
    objs = segment_site({"AGP": body}, nuclei_labels=given, secondary={"smoothing_sigma": 0})
    np.testing.assert_array_equal(objs.nuclei, given)
    np.testing.assert_array_equal(objs.cells[given > 0], given[given > 0])
    reference = identify_secondary(body, given, threshold=SHARP)
    np.testing.assert_array_equal(objs.cells, reference)
    assert set(objs.thresholds) == {"Threshold_FinalThreshold_Cells"}
    assert objs.relationships["Cells_Parent_Nuclei"].to_list() == [1, 2, 3]
    with pytest.raises(InvalidInputError, match="not both"):
        segment_site({"AGP": body}, nuclei_labels=given, primary={"size_range": (5, 30)})
    with pytest.raises(InvalidImageError, match="same size"):
        segment_site({"AGP": body}, nuclei_labels=given[:-1])


def test_segment_site_refuses_bad_sites_with_named_errors():
    dna, body, _, _ = _site()
    with pytest.raises(InvalidInputError, match=r"no channel 'AGP'.*'DNA', 'RNA'"):
        segment_site({"DNA": dna, "RNA": body})
    with pytest.raises(InvalidImageError, match=r"different shapes.*AGP 95 x 120"):
        segment_site({"DNA": dna, "AGP": body[:-1]}, site="plate P1 well A01 site 1")
    with pytest.raises(BlankImageError, match="channel 'AGP' of plate P1"):
        segment_site({"DNA": dna, "AGP": np.zeros(SHAPE)}, site="plate P1 well A01 site 1")
    with pytest.raises(InvalidInputError, match=r"unknown primary parameter.*diameter"):
        segment_site({"DNA": dna, "AGP": body}, primary={"diameter": 10})
    with pytest.raises(BlankImageError, match="channel 'DNA' of the site is blank"):
        segment_site({"DNA": np.zeros(SHAPE), "AGP": body})


def test_a_site_without_nuclei_warns_with_the_count_and_returns_empty_labels():
    dna = np.maximum(np.full(SHAPE, 0.03), dome(SHAPE, 2, 40, 8))  # its one nucleus is cut
    _, body, _, _ = _site()
    with pytest.warns(NoObjectsWarning, match="0 nuclei"):
        objs = segment_site({"DNA": dna, "AGP": body}, primary={"size_range": (6, 30)})
    assert objs.count == 0
    assert not objs.cells.any() and not objs.cytoplasm.any()
    assert objs.relationships.height == 0
    assert objs.relationships.columns[0] == OBJECT_NUMBER


# ------------------------------------------------------------------ saving
def test_save_labels_writes_lossless_tiffs(tmp_path):
    dna, body, _, _ = _site()
    objs = segment_site(
        {"DNA": dna, "AGP": body},
        primary={"size_range": (6, 30), "smoothing_sigma": 0},
        secondary={"smoothing_sigma": 0},
    )
    paths = save_labels(objs, tmp_path / "labels", "P1_A01_1")
    assert sorted(paths) == ["Cells", "Cytoplasm", "Nuclei"]
    for compartment, labels in objs.labels().items():
        assert paths[compartment].name == f"P1_A01_1_{compartment}.tif"
        back = tifffile.imread(paths[compartment])
        assert back.dtype == np.uint16
        np.testing.assert_array_equal(back, labels)
    assert sorted(p.name for p in (tmp_path / "labels").iterdir()) == sorted(
        p.name for p in paths.values()
    )  # no temporary file left
    with pytest.raises(InvalidInputError, match="not a safe file name"):
        save_labels(objs, tmp_path, "../P1")


def test_save_labels_uses_int32_past_uint16(tmp_path):
    many = np.arange(70_000, dtype=np.int32).reshape(280, 250)
    objs = classical.SiteObjects(many, many, many, pl.DataFrame())
    back = tifffile.imread(save_labels(objs, tmp_path, "big")["Nuclei"])
    assert back.dtype == np.int32
    np.testing.assert_array_equal(back, many)


def test_docstring_examples_run():
    result = doctest.testmod(classical)
    assert result.attempted >= 4 and result.failed == 0


# ------------------------------------------------------- CellProfiler itself
EXAMPLE_HUMAN = "cellprofiler-outputs/tests/data/cellprofiler/ExampleHuman"


@pytest.fixture(scope="module")
def example_human(shared_data):
    folder = shared_data / EXAMPLE_HUMAN
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    channels = {
        name: tifffile.imread(folder / f"AS_09125_050116030001_D03f00d{i}.tif")
        for i, name in enumerate(["DNA", "PH3", "cellbody"])
    }
    # The settings of ../shared/data/cellprofiler-pipelines/ExampleHuman.cppipe: nuclei
    # 8-80 px, minimum cross-entropy, smoothing scale 1.3488 (sigma 1), intensity
    # declumping; cells by propagation (lambda 0.05), minimum cross-entropy x 0.8,
    # no threshold smoothing; cytoplasm with shrunken nuclei.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        objs = segment_site(
            channels,
            nuclei="DNA",
            cells="cellbody",
            primary={"size_range": (8, 80), "smoothing_sigma": 1.3488 / 0.6744 / 2},
            secondary={"regularization": 0.05, "threshold_correction": 0.8, "smoothing_sigma": 0},
            shrink=True,
        )
    tables = {
        name: pl.read_csv(folder / f"{name}.csv")
        for name in ["Image", "Nuclei", "Cells", "Cytoplasm"]
    }
    return objs, tables


def test_example_human_matches_cellprofiler(example_human):
    objs, cp = example_human
    nuclei = cp["Nuclei"]
    # Counts within 5% of CellProfiler's 289.
    assert abs(objs.count - nuclei.height) <= 0.05 * nuclei.height
    # >= 90% of CellProfiler's nucleus centres matched within 5 px.
    from scipy.spatial import cKDTree

    ours = centroids(objs.nuclei)
    theirs = nuclei.select("Location_Center_Y", "Location_Center_X").to_numpy()
    dist, _ = cKDTree(ours).query(theirs)
    assert (dist <= 5).mean() >= 0.90
    # Median areas within 10% (nuclei) and 15% (cells) of AreaShape_Area.
    for labels, table, tol in [
        (objs.nuclei, nuclei, 0.10),
        (objs.cells, cp["Cells"], 0.15),
        (objs.cytoplasm, cp["Cytoplasm"], 0.15),
    ]:
        ours_median = float(np.median(np.bincount(labels.ravel())[1:]))
        theirs_median = float(table["AreaShape_Area"].median())
        assert abs(ours_median - theirs_median) <= tol * theirs_median
    # The thresholds are CellProfiler's (Image.csv).
    image = cp["Image"].row(0, named=True)
    assert objs.thresholds["Threshold_FinalThreshold_Nuclei"] == pytest.approx(
        image["Threshold_FinalThreshold_Nuclei"], rel=1e-6
    )
    assert objs.thresholds["Threshold_FinalThreshold_Cells"] == pytest.approx(
        image["Threshold_FinalThreshold_Cells"], rel=1e-6
    )


def test_example_human_relationships_match_cellprofiler(example_human):
    objs, cp = example_human
    rel = objs.relationships
    # CellProfiler: every nucleus has one cell and one cytoplasm; cell i's parent is nucleus i.
    assert (
        rel["Nuclei_Children_Cells_Count"].to_list()
        == cp["Nuclei"]["Children_Cells_Count"].to_list()
    )
    assert rel["Cells_Parent_Nuclei"].to_list() == cp["Cells"]["Parent_Nuclei"].to_list()
    assert rel["Cytoplasm_Parent_Nuclei"].to_list() == cp["Cytoplasm"]["Parent_Nuclei"].to_list()
    assert rel["Cytoplasm_Parent_Cells"].to_list() == cp["Cytoplasm"]["Parent_Cells"].to_list()


def test_example_human_objects_match_cellprofiler_object_by_object(example_human):
    """Same numbering, same areas: CellProfiler's per-object AreaShape_Area and centres."""
    objs, cp = example_human
    for labels, name in [
        (objs.nuclei, "Nuclei"),
        (objs.cells, "Cells"),
        (objs.cytoplasm, "Cytoplasm"),
    ]:
        table = cp[name]
        areas = np.bincount(labels.ravel(), minlength=table.height + 1)[1:]
        cp_areas = table["AreaShape_Area"].to_numpy()
        assert np.mean(areas == cp_areas) >= 0.95, name
        centres = centroids(labels)
        cp_centres = table.select("Location_Center_Y", "Location_Center_X").to_numpy()
        assert np.mean(np.abs(centres - cp_centres).max(axis=1) < 0.5) >= 0.95, name


def test_empty_input_error_is_a_cellframe_error():
    assert issubclass(BlankImageError, EmptyInputError)
    assert issubclass(BlankImageError, InvalidImageError)


# ---------------------------------------------- CellProfiler 5 label images
#: Appends ConvertObjectsToImage + SaveImages per compartment to a pipeline (run in
#: CellProfiler's own venv; see ../shared/ANCHORS.md for installing it).
_EXPORT_LABELS = """
import sys
import cellprofiler_core.preferences as prefs
prefs.set_headless()
from cellprofiler_core.pipeline import Pipeline
from cellprofiler.modules.convertobjectstoimage import ConvertObjectsToImage
from cellprofiler.modules.saveimages import SaveImages
p = Pipeline()
p.load(sys.argv[1])
for name in ["Nuclei", "Cells", "Cytoplasm"]:
    c = ConvertObjectsToImage()
    c.set_module_num(len(p.modules()) + 1)
    c.object_name.value, c.image_name.value, c.image_mode.value = name, name + "Labels", "uint16"
    p.add_module(c)
    s = SaveImages()
    s.set_module_num(len(p.modules()) + 1)
    s.save_image_or_figure.value, s.image_name.value = "Image", name + "Labels"
    s.file_name_method.value, s.file_image_name.value = "From image filename", "DNA"
    s.wants_file_name_suffix.value, s.file_name_suffix.value = True, "_" + name + "_labels"
    s.file_format.value, s.bit_depth.value = "tiff", "16-bit integer"
    p.add_module(s)
with open(sys.argv[2], "w") as fh:
    p.dump(fh)
"""


def _cellprofiler_venv():
    import os
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = os.environ.get("CELLPROFILER_VENV")
    for venv in [Path(env)] if env else [root / "cp-venv", root.parent / "cp-venv"]:
        if (venv / "bin" / "cellprofiler").exists():
            return venv
    pytest.skip("CellProfiler's venv not found (set CELLPROFILER_VENV; ../shared/ANCHORS.md)")


@pytest.mark.slow
def test_example_human_objects_equal_cellprofiler_5_label_images(shared_data, tmp_path):
    """CellProfiler 5 in basic mode smooths its threshold with scale 1 (sigma 1 / 0.6744 / 2)."""
    import shutil
    import subprocess

    venv = _cellprofiler_venv()
    folder = shared_data / EXAMPLE_HUMAN
    pipeline = shared_data / "cellprofiler-pipelines" / "ExampleHuman.cppipe"
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    for tif in folder.glob("AS_09125_050116030001_D03f00d?.tif"):
        shutil.copy(tif, inputs)
    (tmp_path / "export.py").write_text(_EXPORT_LABELS)
    run = [str(venv / "bin" / "python"), str(tmp_path / "export.py"), str(pipeline)]
    subprocess.run([*run, str(tmp_path / "labels.cppipe")], check=True, capture_output=True)
    subprocess.run(
        [str(venv / "bin" / "cellprofiler"), "-c", "-r", "-p", str(tmp_path / "labels.cppipe"),
         "-i", str(inputs), "-o", str(out), "-e", "imageio_reader"],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    channels = {
        name: tifffile.imread(inputs / f"AS_09125_050116030001_D03f00d{i}.tif")
        for i, name in enumerate(["DNA", "PH3", "cellbody"])
    }
    objs = segment_site(
        channels,
        nuclei="DNA",
        cells="cellbody",
        primary={"size_range": (8, 80), "smoothing_sigma": 1 / 0.6744 / 2},
        secondary={"regularization": 0.05, "threshold_correction": 0.8, "smoothing_sigma": 0},
    )
    for name, ours in objs.labels().items():
        theirs = tifffile.imread(out / f"AS_09125_050116030001_D03f00d0_{name}_labels.tiff")
        assert int(theirs.max()) == objs.count, name
        same = [np.array_equal(theirs == i, ours == i) for i in range(1, objs.count + 1)]
        assert np.mean(same) >= 0.95, name  # measured: 97.9% identical, same numbers
        assert np.mean(theirs == ours) >= 0.999, name  # measured: 99.99% of pixels
