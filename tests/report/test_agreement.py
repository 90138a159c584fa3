"""Classical vs deep features of the same cells: R^2 against scikit-learn, crops where the labels say."""

from __future__ import annotations

import base64
import io
import re
import warnings

import numpy as np
import polars as pl
import pytest
from PIL import Image
from skimage.segmentation import find_boundaries
from sklearn.linear_model import RidgeCV
from sklearn.metrics import r2_score
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from cellframe.errors import InvalidInputError, MissingColumnsError, UnmatchedObjectsWarning
from cellframe.report import (
    cell_crop_montage,
    classical_vs_deep_section,
    feature_agreement,
    feature_agreement_chart,
    scale_intensity,
)
from cellframe.report.agreement import PREDICTORS, RIDGE_ALPHAS

KEYS = ["Metadata_Plate", "Metadata_Well", "Metadata_Site", "Metadata_ObjectNumber"]
YELLOW, CYAN = (255, 221, 0), (0, 200, 255)


def decode(uri: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))


# ----------------------------------------------------------------- the crop montage
def one_site() -> tuple[np.ndarray, dict[str, np.ndarray], pl.DataFrame]:
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 4000, size=(2, 64, 64)).astype(np.uint16)
    cells = np.zeros((64, 64), dtype=np.int32)
    nuclei = np.zeros((64, 64), dtype=np.int32)
    cells[20:32, 20:32] = 1  # centre (25.5, 25.5) -> crop rows/cols 18..33 at size 16
    nuclei[23:29, 23:29] = 1
    cells[20:32, 32:36] = 3  # a neighbour inside cell 1's crop: never outlined for cell 1
    nuclei[24:28, 33:35] = 3
    cells[0:6, 0:6] = 2  # at the corner: its crop leaves the image (zero-padded)
    nuclei[1:4, 1:4] = 2
    table = pl.DataFrame(
        {
            "Metadata_Plate": ["P", "P"],
            "Metadata_Well": ["A01", "A01"],
            "Metadata_Site": pl.Series([1, 1], dtype=pl.Int32),
            "Metadata_ObjectNumber": [1, 2],
            "Cells_Location_Center_X": [25.5, 2.5],
            "Cells_Location_Center_Y": [25.5, 2.5],
        }
    )
    return pixels, {"Cells": cells, "Nuclei": nuclei}, table


def test_cell_crop_montage_outlines_only_each_cells_own_objects() -> None:
    pixels, labels, table = one_site()
    key = ("P", "A01", 1)
    montage = cell_crop_montage(
        {key: pixels}, {key: labels}, table, channels=["DNA", "AGP"], size=16, gap=2
    )
    step = 18
    assert montage.dtype == np.uint8 and montage.shape[0] == 2 * step - 2
    left = montage.shape[1] - (2 * step - 2)
    assert left > 0 and (montage[:, :left] < 128).any()  # channel names in the label strip
    scaled = [scale_intensity(c) for c in pixels]
    for col, (cy, cx, number) in enumerate(((25, 25, 1), (2, 2, 2))):
        # crop_boxes: the centre pixel floor(y), floor(x) lands at row/column size // 2
        top, lft = cy - 8, cx - 8
        rows, cols = np.arange(top, top + 16), np.arange(lft, lft + 16)
        inside = ((rows >= 0) & (rows < 64))[:, None] & ((cols >= 0) & (cols < 64))[None, :]
        rr, cc = np.clip(rows, 0, 63)[:, None], np.clip(cols, 0, 63)[None, :]
        # outside the image the crop is zero: pixels and labels alike
        cell_box = np.where(inside, labels["Cells"][rr, cc], 0) == number
        nucleus_box = np.where(inside, labels["Nuclei"][rr, cc], 0) == number
        cell_edge = find_boundaries(cell_box, mode="inner")
        nucleus_edge = find_boundaries(nucleus_box, mode="inner")
        for ch in range(2):
            got = montage[ch * step : ch * step + 16, left + col * step : left + col * step + 16]
            grey = np.where(inside, scaled[ch][rr, cc], 0)
            plain = ~cell_edge & ~nucleus_edge
            np.testing.assert_array_equal(got[plain], np.repeat(grey[plain][:, None], 3, 1))
            assert (got[nucleus_edge] == CYAN).all()  # drawn last, on top
            assert (got[cell_edge & ~nucleus_edge] == YELLOW).all()
            assert cell_edge.sum() > 0 and nucleus_edge.sum() > 0
    # the neighbour (object 3) sits in cell 1's crop and carries no outline
    first = montage[0:16, left : left + 16]
    neighbour = labels["Cells"][17:33, 17:33] == 3
    assert neighbour.any()
    assert not (np.all(first == YELLOW, axis=2) & neighbour).any()
    assert not (np.all(first == CYAN, axis=2) & neighbour).any()


def test_cell_crop_montage_refuses_what_it_cannot_show() -> None:
    pixels, labels, table = one_site()
    key = ("P", "A01", 1)
    channels = ["DNA", "AGP"]
    with pytest.raises(MissingColumnsError, match="Cells_Location_Center_X"):
        cell_crop_montage({key: pixels}, {key: labels}, table.drop("Cells_Location_Center_X"),
                          channels=channels)  # fmt: skip
    with pytest.raises(InvalidInputError, match="no cells"):
        cell_crop_montage({key: pixels}, {key: labels}, table.clear(), channels=channels)
    with pytest.raises(InvalidInputError, match="no pixels"):
        cell_crop_montage({}, {key: labels}, table, channels=channels)
    with pytest.raises(InvalidInputError, match="expected"):
        cell_crop_montage({key: pixels}, {key: labels}, table, channels=["DNA"])
    with pytest.raises(InvalidInputError, match="no Nuclei label image"):
        cell_crop_montage({key: pixels}, {key: {"Cells": labels["Cells"]}}, table,
                          channels=channels)  # fmt: skip
    stray = table.with_columns(pl.lit(9).cast(pl.Int64).alias("Metadata_ObjectNumber"))
    with pytest.raises(InvalidInputError, match="holds no object 9"):
        cell_crop_montage({key: pixels}, {key: labels}, stray, channels=channels)


# --------------------------------------------------------------- the cross-validated R^2
def cells(n_per_site: tuple[int, ...] = (20, 25, 15), dims: int = 12, seed: int = 0):
    """Embeddings and classical features of synthetic cells on three sites."""
    rng = np.random.default_rng(seed)
    sites = np.repeat(np.arange(len(n_per_site)), n_per_site)
    n = sites.size
    emb = rng.normal(size=(n, dims))
    keys = pl.DataFrame(
        {
            "Metadata_Plate": [f"P{s}" for s in sites],
            "Metadata_Well": ["A01"] * n,
            "Metadata_Site": pl.Series(sites + 1, dtype=pl.Int32),
            "Metadata_ObjectNumber": np.arange(1, n + 1),
        }
    )
    classical = keys.with_columns(
        # carried by the embedding: a linear function of it, plus noise
        pl.Series("Cells_AreaShape_Area", 500 + 80 * emb[:, 0] - 40 * emb[:, 3]
                  + rng.normal(0, 10, n), dtype=pl.Float32),
        # carried by the site only: the embedding knows nothing of it
        pl.Series("Cells_Intensity_MeanIntensity_AGP", np.array([0.1, 0.3, 0.5])[sites]
                  + rng.normal(0, 0.01, n), dtype=pl.Float32),
        pl.Series("Nuclei_AreaShape_Area", np.full(n, 75.0), dtype=pl.Float32),  # constant
    )  # fmt: skip
    embeddings = keys.with_columns(
        pl.Series(f"efficientnet_lite0_DNA_{i}", emb[:, i], dtype=pl.Float32) for i in range(dims)
    )
    return classical, embeddings


def reference_r2(x: np.ndarray, y: np.ndarray, site: np.ndarray, seed: int = 0) -> dict:
    """scikit-learn's cross_val_predict + r2_score, and the site means by hand."""
    cv = KFold(n_splits=5, shuffle=True, random_state=seed)
    ridge = make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS))
    site_hat = np.empty_like(y)
    for train, test in cv.split(x):
        for i in test:
            same = train[site[train] == site[i]]
            site_hat[i] = y[same].mean() if same.size else y[train].mean()
    shuffled = np.random.default_rng(seed).permutation(y)
    return {
        PREDICTORS["embedding"]: r2_score(y, cross_val_predict(ridge, x, y, cv=cv)),
        PREDICTORS["site"]: r2_score(y, site_hat),
        PREDICTORS["shuffled"]: r2_score(shuffled, cross_val_predict(ridge, x, shuffled, cv=cv)),
    }


def test_feature_agreement_equals_scikit_learn() -> None:
    classical, embeddings = cells()
    features = ["Cells_AreaShape_Area", "Cells_Intensity_MeanIntensity_AGP"]
    got = feature_agreement(classical, embeddings.reverse(), features=features)  # row order free
    assert got.columns == ["feature", "predictor", "r2", "n_cells", "n_folds"]
    assert got["predictor"].to_list() == list(PREDICTORS.values()) * 2
    x = embeddings.drop(KEYS).to_numpy().astype(np.float64)
    site = embeddings["Metadata_Plate"].to_numpy()
    for feature in features:
        y = classical[feature].cast(pl.Float64).to_numpy()
        expected = reference_r2(x, y, site)
        part = got.filter(pl.col("feature") == feature)
        for row in part.iter_rows(named=True):
            assert row["r2"] == pytest.approx(expected[row["predictor"]], abs=1e-9), row
            assert row["n_cells"] == 60 and row["n_folds"] == 5
    r2 = {(r["feature"], r["predictor"]): r["r2"] for r in got.iter_rows(named=True)}
    # what the data were built to show: the embedding carries the area, the site the intensity
    area, agp = features
    assert r2[area, PREDICTORS["embedding"]] > 0.9 > r2[area, PREDICTORS["site"]]
    assert r2[agp, PREDICTORS["site"]] > 0.95 > r2[agp, PREDICTORS["embedding"]]
    assert r2[area, PREDICTORS["shuffled"]] < 0.1


def test_feature_agreement_leaves_out_what_it_cannot_use_and_says_so() -> None:
    classical, embeddings = cells()
    # a constant feature: R^2 undefined (NaN), never a number
    constant = feature_agreement(classical, embeddings, features=["Nuclei_AreaShape_Area"])
    assert constant["r2"].is_nan().all() and constant.height == 3
    # a NaN and a null value: those two cells are left out of that feature only
    holes = classical.with_columns(
        pl.when(pl.col("Metadata_ObjectNumber") == 4).then(float("nan"))
        .when(pl.col("Metadata_ObjectNumber") == 9).then(None)
        .otherwise(pl.col("Cells_AreaShape_Area")).alias("Cells_AreaShape_Area")
    )  # fmt: skip
    got = feature_agreement(holes, embeddings,
                            features=["Cells_AreaShape_Area", "Cells_Intensity_MeanIntensity_AGP"])  # fmt: skip
    assert dict(got.group_by("feature").agg(pl.col("n_cells").first()).iter_rows()) == {
        "Cells_AreaShape_Area": 58, "Cells_Intensity_MeanIntensity_AGP": 60,
    }  # fmt: skip
    kept = ~embeddings["Metadata_ObjectNumber"].is_in([4, 9]).to_numpy()
    x = embeddings.drop(KEYS).to_numpy().astype(np.float64)[kept]
    y = classical["Cells_AreaShape_Area"].cast(pl.Float64).to_numpy()[kept]
    expected = reference_r2(x, y, embeddings["Metadata_Plate"].to_numpy()[kept])
    for row in got.filter(pl.col("feature") == "Cells_AreaShape_Area").iter_rows(named=True):
        assert row["r2"] == pytest.approx(expected[row["predictor"]], abs=1e-9)
    # cells in one table only: a counted warning, and the rest scored as if they were absent
    extra = embeddings.filter(pl.col("Metadata_ObjectNumber") > 50)
    with pytest.warns(UnmatchedObjectsWarning, match=r"10 cell\(s\) are in only one"):
        fewer = feature_agreement(classical, extra.vstack(embeddings.head(40)),
                                  features=["Cells_AreaShape_Area"])  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = feature_agreement(classical.filter(pl.col("Metadata_ObjectNumber").is_in(
            extra.vstack(embeddings.head(40))["Metadata_ObjectNumber"].implode())),
            extra.vstack(embeddings.head(40)), features=["Cells_AreaShape_Area"])  # fmt: skip
    assert fewer["n_cells"][0] == 50
    np.testing.assert_allclose(fewer["r2"].to_numpy(), same["r2"].to_numpy(), rtol=0, atol=0)


def test_feature_agreement_refuses_bad_input() -> None:
    classical, embeddings = cells()
    with pytest.raises(MissingColumnsError, match="Nuclei_Intensity_MeanIntensity_DNA"):
        feature_agreement(classical, embeddings)  # the default features include DNA intensity
    with pytest.raises(MissingColumnsError, match="Metadata_ObjectNumber"):
        feature_agreement(classical, embeddings.drop("Metadata_ObjectNumber"),
                          features=["Cells_AreaShape_Area"])  # fmt: skip
    with pytest.raises(InvalidInputError, match=r"repeats 1 cell"):
        feature_agreement(classical.vstack(classical.head(1)), embeddings,
                          features=["Cells_AreaShape_Area"])  # fmt: skip
    with pytest.raises(InvalidInputError, match="n_folds"):
        feature_agreement(classical, embeddings, features=["Cells_AreaShape_Area"], n_folds=1)
    with (
        pytest.raises(InvalidInputError, match=r"only 8 cell\(s\).*10 are needed"),
        pytest.warns(UnmatchedObjectsWarning, match="52 cell"),
    ):
        feature_agreement(classical.head(8), embeddings, features=["Cells_AreaShape_Area"])
    with pytest.raises(InvalidInputError, match="no feature column"):
        feature_agreement(classical, embeddings.select(KEYS), features=["Cells_AreaShape_Area"])


def test_feature_agreement_chart_shows_every_finite_value() -> None:
    classical, embeddings = cells()
    table = feature_agreement(
        classical, embeddings, features=["Cells_AreaShape_Area", "Nuclei_AreaShape_Area"]
    )
    spec = feature_agreement_chart(table).to_dict()
    rows = [r for d in spec["datasets"].values() for r in d if "r2" in r]
    assert len(rows) == 3  # the constant feature's three NaN rows are not drawn
    low = spec["layer"][0]["encoding"]["x"]["scale"]["domain"][0]
    assert low == pytest.approx(min(0.0, min(r["r2"] for r in rows)))  # negative R^2 visible


def test_section_answer_and_counts_come_from_the_tables() -> None:
    classical, embeddings = cells(n_per_site=(6, 6))
    classical = classical.with_columns(
        pl.Series("Cells_Location_Center_X", np.tile([10.0, 20, 30, 40, 50, 60], 2)),
        pl.Series("Cells_Location_Center_Y", np.full(12, 32.0)),
    )
    images, labels = {}, {}
    for plate, site in (("P0", 1), ("P1", 2)):
        key = (plate, "A01", site)
        images[key] = np.random.default_rng(site).integers(0, 999, (2, 64, 70)).astype(np.uint16)
        lab = np.zeros((64, 70), dtype=np.int32)
        first = 1 if plate == "P0" else 7
        for i in range(6):
            lab[28:36, 8 + 10 * i : 14 + 10 * i] = first + i
        nuc = lab.copy()
        nuc[28:30], nuc[34:36] = 0, 0  # nuclei: the middle rows of each cell
        labels[key] = {"Nuclei": nuc, "Cells": lab, "Cytoplasm": np.where(nuc > 0, 0, lab)}
    embeddings = embeddings.filter(pl.col("Metadata_ObjectNumber") != 12)  # one not embedded
    with pytest.warns(UnmatchedObjectsWarning, match=r"1 cell\(s\)"):
        table = feature_agreement(
            classical, embeddings, features=["Cells_AreaShape_Area"], n_folds=2
        )
    section = classical_vs_deep_section(
        classical, embeddings, table, images=images, labels=labels, channels=["DNA", "AGP"],
        model="EfficientNet-Lite0", n_cells=3,
    )  # fmt: skip
    r2 = dict(table.select("predictor", "r2").iter_rows())
    emb, site = r2[PREDICTORS["embedding"]], r2[PREDICTORS["site"]]
    assert section.answer.startswith("11 cells on 2 sites (6, 5) have both 5 classical features")
    assert "12 EfficientNet-Lite0 dimensions" in section.answer
    assert f"predicts {int(emb > site)} of 1 classical features better" in section.answer
    assert f"Cells_AreaShape_Area {emb:.2f} vs {site:.2f}" in section.answer
    assert "2-fold" in section.answer
    spec = section.chart.to_dict()
    counts = [r for d in spec["datasets"].values() for r in d if "what" in r and "site" in r]
    got = {(r["site"], r["what"]): r["n"] for r in counts}
    assert got["P1 A01 s2", "Cells (label image)"] == 6
    assert got["P1 A01 s2", "rows, classical table"] == 6
    assert got["P1 A01 s2", "rows, EfficientNet-Lite0"] == 5  # the missing one shows
    dims = {r["what"]: r["n"] for d in spec["datasets"].values() for r in d
            if "what" in r and "site" not in r}  # fmt: skip
    assert dims == {"Nuclei_ (classical)": 1, "Cells_ (classical)": 4,
                    "Cytoplasm_ (classical)": 0, "EfficientNet-Lite0": 12}  # fmt: skip
    (image,) = section.images
    montage = decode(image.src)
    assert montage.shape == (2 * 130 - 2, montage.shape[1], 3)  # two channel rows of 128 px
    assert re.search(r"^3 of the 11 cells with a nucleus", image.caption)
    # cells of the montage: smallest, middle and largest cell area among the 11
    areas = classical.filter(pl.col("Metadata_ObjectNumber") != 12).sort(KEYS)
    shown = [int(a) for a in re.findall(r"\((\d+) px\)", image.caption)]
    assert shown[0] == round(areas["Cells_AreaShape_Area"].min())
    assert shown[-1] == round(areas["Cells_AreaShape_Area"].max())
