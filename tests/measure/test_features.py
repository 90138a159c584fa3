"""CellProfiler measurements per compartment and channel (cellframe.measure.features)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cellframe.columns import OBJECT_NUMBER, PLATE, SITE, WELL
from cellframe.errors import (
    InvalidChoiceError,
    InvalidImageError,
    InvalidInputError,
    UndefinedMeasurementWarning,
    UnmatchedObjectsWarning,
)
from cellframe.measure.features import measure_objects, measure_site, to_unit_range
from tests.measure.conftest import ExampleHumanSite

DEMO = Path(__file__).resolve().parents[2] / "cellframe" / "data" / "demo"
CHANNELS = ["AGP", "DNA", "ER", "Mito", "RNA"]


def _two_squares() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    labels = np.zeros((40, 40), dtype=np.int32)
    labels[5:15, 5:15] = 3  # 100 px; numbers need not be consecutive
    labels[20:30, 22:34] = 7  # 120 px
    dna = np.zeros((40, 40), dtype=np.uint8)
    dna[5:15, 5:15] = 51  # 0.2 after scaling by 255
    dna[20:30, 22:34] = 102  # 0.4
    return labels, {"DNA": dna}


def test_intensity_and_area_match_hand_computed_values() -> None:
    labels, images = _two_squares()
    out = measure_objects(labels, images, families=["sizeshape", "intensity"])
    assert out["ObjectNumber"].to_list() == [3, 7]
    assert out["AreaShape_Area"].to_list() == [100.0, 120.0]
    np.testing.assert_allclose(out["Intensity_MeanIntensity_DNA"], [0.2, 0.4], rtol=1e-6)
    np.testing.assert_allclose(out["Intensity_IntegratedIntensity_DNA"], [20.0, 48.0], rtol=1e-6)
    np.testing.assert_allclose(out["Intensity_StdIntensity_DNA"], [0.0, 0.0], atol=1e-7)
    # centres: rows 5..14 -> 9.5, columns 22..33 -> 27.5
    np.testing.assert_allclose(out["Location_Center_X"], [9.5, 27.5])
    np.testing.assert_allclose(out["Location_Center_Y"], [9.5, 24.5])
    assert all(out.schema[c] == pl.Float32 for c in out.columns if c != "ObjectNumber")


def test_to_unit_range_scales_integers_like_cellprofiler() -> None:
    assert to_unit_range(np.array([0, 65535], dtype=np.uint16)).tolist() == [0.0, 1.0]
    floats = np.array([0.25, 3.0], dtype=np.float64)  # floats are kept, even above 1
    assert to_unit_range(floats).tolist() == [0.25, 3.0]


def test_correlation_names_and_values() -> None:
    rng = np.random.default_rng(0)
    labels, _ = _two_squares()
    a = rng.random((40, 40)).astype(np.float32)
    images = {"RNA": a, "DNA": a.copy(), "ER": 1.0 - a}  # channel pairs in sorted order
    out = measure_objects(labels, images, families=["correlation"])
    np.testing.assert_allclose(out["Correlation_Correlation_DNA_RNA"], [1.0, 1.0], rtol=1e-5)
    np.testing.assert_allclose(out["Correlation_Correlation_DNA_ER"], [-1.0, -1.0], rtol=1e-5)
    # Manders/RWC/K are directional: both orders, as CellProfiler writes M1 and M2
    for feature in ("Manders", "RWC", "K"):
        assert {f"Correlation_{feature}_DNA_RNA", f"Correlation_{feature}_RNA_DNA"} <= set(
            out.columns
        )
    assert "Correlation_Overlap_DNA_RNA" in out.columns
    assert "Correlation_Overlap_RNA_DNA" not in out.columns  # symmetric: one order
    assert not any("Costes" in c or "Slope" in c for c in out.columns)
    with_costes = measure_objects(labels, images, families=["correlation"], costes=True)
    assert "Correlation_Costes_DNA_RNA" in with_costes.columns


def test_texture_scales_are_a_parameter() -> None:
    labels, images = _two_squares()
    images = {"DNA": np.random.default_rng(1).integers(0, 255, (40, 40)).astype(np.uint8)}
    out = measure_objects(labels, images, families=["texture"], texture_scales=[3])
    texture = [c for c in out.columns if c.startswith("Texture_")]
    assert len(texture) == 13 * 4  # 13 Haralick features x 4 directions
    assert "Texture_Contrast_DNA_3_00_256" in texture
    assert not any("_5_0" in c for c in texture)


def test_no_objects_gives_no_rows() -> None:
    out = measure_objects(np.zeros((10, 10), dtype=np.int32), {"DNA": np.ones((10, 10))})
    assert out.height == 0 and out.columns == ["ObjectNumber"]


def test_bad_input_is_refused_with_named_errors() -> None:
    labels, images = _two_squares()
    with pytest.raises(InvalidImageError, match=r"label image is \(40, 40\).*\(20, 20\)"):
        measure_objects(labels, {"DNA": np.zeros((20, 20))})
    with pytest.raises(InvalidInputError, match="dtype float64"):
        measure_objects(labels.astype(float), images)
    with pytest.raises(InvalidImageError, match="different shapes"):
        measure_objects(labels, {"DNA": np.zeros((40, 40)), "ER": np.zeros((40, 41))})
    nan = np.zeros((40, 40))
    nan[0, 0] = np.nan
    with pytest.raises(InvalidImageError, match="1 NaN"):
        measure_objects(labels, {"DNA": nan})
    with pytest.raises(InvalidChoiceError, match=r"unknown measurement family.*valid"):
        measure_objects(labels, images, families=["haralick"])


def _site() -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    images = {c: rng.integers(100, 4000, (60, 60)).astype(np.uint16) for c in ("DNA", "AGP")}
    nuclei = np.zeros((60, 60), dtype=np.int32)
    cells = np.zeros((60, 60), dtype=np.int32)
    nuclei[10:16, 10:16] = 1
    cells[5:21, 5:21] = 1
    nuclei[40:46, 40:46] = 2
    cells[35:51, 35:51] = 2
    return images, nuclei, cells


def test_measure_site_joins_compartments_like_a_cellprofiler_export() -> None:
    images, nuclei, cells = _site()
    out = measure_site(
        images, nuclei=nuclei, cells=cells, plate="P1", well="A01", site=3,
        families=["sizeshape", "intensity"],
    )  # fmt: skip
    assert out.height == 2
    assert out.select(PLATE, WELL, SITE, OBJECT_NUMBER).rows() == [
        ("P1", "A01", 3, 1),
        ("P1", "A01", 3, 2),
    ]
    assert out.schema[SITE] == pl.Int32
    assert out["Metadata_Cells_Parent_Nuclei"].to_list() == [1, 2]
    assert out["Metadata_Cytoplasm_Parent_Cells"].to_list() == [1, 2]
    assert out["Nuclei_AreaShape_Area"].to_list() == [36.0, 36.0]
    assert out["Cells_AreaShape_Area"].to_list() == [256.0, 256.0]
    assert out["Cytoplasm_AreaShape_Area"].to_list() == [220.0, 220.0]  # cell minus nucleus
    assert out["Nuclei_Children_Cells_Count"].to_list() == [1.0, 1.0]
    assert out["Cells_Children_Cytoplasm_Count"].to_list() == [1.0, 1.0]
    expected = images["DNA"][10:16, 10:16].astype(np.float64).mean() / 65535
    assert out["Nuclei_Intensity_MeanIntensity_DNA"][0] == pytest.approx(expected, rel=1e-6)


def test_measure_site_counts_unmatched_objects_and_keeps_the_rows() -> None:
    images, nuclei, cells = _site()
    nuclei[52:56, 2:6] = 3  # a nucleus outside every cell
    cells[2:8, 50:58] = 4  # a cell without a nucleus (all cytoplasm)
    with pytest.warns(
        UnmatchedObjectsWarning, match=r"1 of 3 nuclei .* 1 of 3 cells have no nucleus and 0"
    ):
        out = measure_site(
            images, nuclei=nuclei, cells=cells, plate="P1", well="A01", site=1,
            families=["sizeshape"],
        )  # fmt: skip
    assert out[OBJECT_NUMBER].to_list() == [1, 2, 4]
    row = out.filter(pl.col(OBJECT_NUMBER) == 4)
    assert row["Metadata_Cells_Parent_Nuclei"][0] is None
    assert row["Nuclei_AreaShape_Area"][0] is None  # no nucleus: null, not invented
    assert row["Cytoplasm_AreaShape_Area"][0] == 48.0


def test_measure_site_counts_undefined_values() -> None:
    images, nuclei, cells = _site()
    nuclei[10:16, 10:16] = 0
    nuclei[12, 12] = 1  # a one-pixel nucleus: its texture is undefined
    with pytest.warns(UndefinedMeasurementWarning, match=r"\d+ of \d+ measured values are NaN"):
        out = measure_site(
            images, nuclei=nuclei, cells=cells, plate="P1", well="A01", site=1,
            families=["texture"], texture_scales=[3],
        )  # fmt: skip
    assert np.isnan(out["Nuclei_Texture_Correlation_DNA_3_00_256"][0])
    assert np.isfinite(out["Nuclei_Texture_Correlation_DNA_3_00_256"][1])


def test_column_names_are_jumps() -> None:
    """Every JUMP Cells column for the five Cell Painting channels is produced, named alike."""
    with gzip.open(DEMO / "cellprofiler/BR00121431/BR00121431-A01-1/Cells.csv.gz", "rt") as fh:
        jump = set(fh.readline().strip().split(","))
    other = ("BFHigh", "BFLow", "Brightfield")
    expected = {
        c
        for c in jump
        if c.split("_")[0]
        in (
            "AreaShape",
            "Intensity",
            "Granularity",
            "Texture",
            "RadialDistribution",
            "Correlation",
            "Location",
        )
        and not any(o in c for o in other)
    }
    rng = np.random.default_rng(3)
    labels = np.zeros((64, 64), dtype=np.int32)
    labels[10:30, 10:30] = 1
    labels[35:60, 30:55] = 2
    images = {c: rng.integers(0, 65535, (64, 64)).astype(np.uint16) for c in CHANNELS}
    out = measure_objects(labels, images)
    mine = set(out.columns) - {"ObjectNumber"}
    assert len(expected) == 1162
    assert expected - mine == set()
    # CellProfiler 5 adds three shape features that the JUMP (CellProfiler 4) export lacks
    assert mine - expected == {
        "AreaShape_ConvexArea",
        "AreaShape_FilledArea",
        "AreaShape_PerimeterCrofton",
    }


def test_matches_cellprofiler_on_example_human(example_human: ExampleHumanSite) -> None:
    """The three compartments found as CellProfiler's pipeline does, measured, against its values.

    CellProfiler's label images are not shipped, so objects come from
    ``segment_site`` with the ExampleHuman pipeline's settings, and each cell
    is matched to CellProfiler's object of the same number through its
    nucleus' centre (within 3 px). Measured here: 289 of 289 matched; per
    compartment, 83 of the 84 common AreaShape/Intensity features have a
    median relative difference <= 1e-3 (0 in fact) and about 97% of all
    (object, feature) values agree within 1e-3. Solidity differs (median
    0.55% for cells and cytoplasm, 1.7% for nuclei): cp-measure's convex hull
    is scikit-image's, CellProfiler 4 uses its own.
    """
    from scipy.spatial import cKDTree

    folder, objects = example_human.folder, example_human.objects
    dna, ph3 = example_human.images["DNA"], example_human.images["PH3"]
    mine = measure_site(
        {"DNA": dna, "PH3": ph3}, nuclei=objects.nuclei, cells=objects.cells,
        cytoplasm=objects.cytoplasm, plate="P", well="D03", site=0,
        families=["sizeshape", "intensity", "feret", "zernike"],
    )  # fmt: skip
    nuclei = pl.read_csv(folder / "Nuclei.csv")
    tree = cKDTree(nuclei.select("Location_Center_X", "Location_Center_Y").to_numpy())
    centres = mine.select("Nuclei_Location_Center_X", "Nuclei_Location_Center_Y").to_numpy()
    distance, index = tree.query(centres)
    matched = distance <= 3
    assert matched.sum() >= 0.95 * nuclei.height  # measured: 289 of 289
    mine = mine.filter(pl.Series(matched))
    order = pl.DataFrame(
        {"ObjectNumber": nuclei["ObjectNumber"].to_numpy()[index[matched]],
         "_row": np.arange(int(matched.sum()))}
    )  # fmt: skip
    for compartment, solidity in (("Cells", 0.02), ("Cytoplasm", 0.02), ("Nuclei", 0.05)):
        theirs = pl.read_csv(folder / f"{compartment}.csv").join(order, on="ObjectNumber")
        theirs = theirs.sort("_row")
        common = [
            c
            for c in theirs.columns
            if c.startswith(("AreaShape_", "Intensity_")) and f"{compartment}_{c}" in mine.columns
        ]
        assert len(common) == 84
        median_rel, close = {}, []
        for c in common:
            a = mine[f"{compartment}_{c}"].cast(pl.Float64).to_numpy()
            b = theirs[c].cast(pl.Float64).to_numpy()
            rel = np.abs(a - b) / np.maximum(np.abs(b), 1e-6)
            median_rel[c] = float(np.median(rel))
            close.append(rel <= 1e-3)
        loose = {c: v for c, v in median_rel.items() if v > 1e-3}
        assert set(loose) == {"AreaShape_Solidity"}, (compartment, loose)
        assert median_rel["AreaShape_Solidity"] < solidity
        assert np.concatenate(close).mean() > 0.95, compartment
        for c in ("AreaShape_Area", "Intensity_MeanIntensity_DNA", "AreaShape_Orientation"):
            assert median_rel[c] < 1e-6, (compartment, c)
