"""The main job: ``cellframe demo`` on the bundled data makes a store and a report that renders.

The demo runs once per module; its headline numbers (nuclei, cells, MoA mAP, the
fraction of active compounds, DSB score with and without TTA, published assay
counts, the trained models' held-out AUROC), and the classical and deep features
of the same JUMP cells, are checked against values computed here independently,
with NumPy, the files and label images the demo read and wrote, or scikit-learn.
"""

from __future__ import annotations

import csv
import gzip
import re
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cellframe.demo import demo_data_dir, run_demo
from cellframe.store import Store
from tests._browser import render_report

PUBLISHED = {"cp_es_op": "CS", "ge_es_op": "GE", "mobc_es_op": "MO"}
KEYS = ["Metadata_Plate", "Metadata_Well", "Metadata_Site", "Metadata_ObjectNumber"]
SITE_KEYS = KEYS[:3]
TRAINED_COLUMNS = {
    "assay": pl.String,
    "model": pl.String,
    "split": pl.String,
    "auroc": pl.Float64,
    "n_train": pl.Int64,
    "n_test": pl.Int64,
    "n_test_positive": pl.Int64,
}


# Session scope: one demo run per worker, even when the worker interleaves other
# modules' tests between these (a module-scoped fixture would run it again).
@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("demo")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run_demo(out, progress=False)


@pytest.fixture(scope="session")
def tables(demo) -> dict[str, pl.DataFrame]:
    names = (
        "objects", "segmentation_tta", "phenotypic_activity", "wells_lincs_normalized",
        "wells_lincs_sphered", "activity_published_auroc", "activity_trained",
        "activity_predictions", "cells_measured", "cells_efficientnet_lite0", "object_labels",
        "image_profiles_classical", "image_profiles_efficientnet_lite0", "feature_agreement",
    )  # fmt: skip
    with Store(demo.store_path, read_only=True) as store:
        return {name: store.read(name) for name in names}


def of_site(frame: pl.DataFrame, key) -> pl.DataFrame:
    """The rows of one (plate, well, site)."""
    return frame.filter(
        pl.all_horizontal(pl.col(c) == v for c, v in zip(SITE_KEYS, key, strict=True))
    )


def cellprofiler_cells() -> int:
    n = 0
    for cells in (demo_data_dir() / "cellprofiler" / "BR00121431").glob("*/Cells.csv.gz"):
        with gzip.open(cells, "rt") as fh:
            n += sum(1 for _ in fh) - 1
    return n


# ------------------------------------------------------- independent references
def published_counts(path: Path) -> tuple[dict[str, int], dict[str, int], dict[str, set[str]]]:
    """Per modality: assays with AUROC > 0.9, assays without a value, the well-predicted sets."""
    auc: dict[str, list[float]] = {m: [] for m in PUBLISHED.values()}
    ids: dict[str, list[str]] = {m: [] for m in PUBLISHED.values()}
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row["descriptor"] in PUBLISHED:
                auc[PUBLISHED[row["descriptor"]]].append(float(row["auc"]))  # "nan" -> nan
                ids[PUBLISHED[row["descriptor"]]].append(row["assay_id"])
    above, without, sets = {}, {}, {}
    for m, values in auc.items():
        a = np.asarray(values)
        good = ~np.isnan(a) & (a > 0.9)  # NumPy: nan > 0.9 is False; say so anyway
        above[m] = int(good.sum())
        without[m] = int(np.isnan(a).sum())
        sets[m] = {i for i, g in zip(ids[m], good, strict=True) if g}
    return above, without, sets


def interpolated_map(wells: pl.DataFrame) -> tuple[float, int]:
    """MoA mAP of treatment profiles (mean of annotated wells), cosine, NumPy float64.

    Positives share at least one MoA (split on ``|``); ties rank positives first;
    interpolated precision at the k-th positive is the best precision at that
    recall or beyond; queries without positives are not scored.
    """
    treated = wells.filter(
        pl.col("Metadata_Control").is_null() & pl.col("Metadata_MoA").is_not_null()
    )
    features = [
        c for c, t in treated.schema.items() if not c.startswith("Metadata_") and t.is_numeric()
    ]
    profiles = (
        treated.group_by("Metadata_Treatment")
        .agg(pl.col("Metadata_MoA").first(), *[pl.col(f).cast(pl.Float64).mean() for f in features])
        .sort("Metadata_Treatment")
    )
    x = profiles.select(features).to_numpy()
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = x @ x.T
    labels = [set(s.split("|")) for s in profiles["Metadata_MoA"]]
    aps = []
    for q in range(len(labels)):
        others = np.array([j for j in range(len(labels)) if j != q])
        pos = np.array([bool(labels[q] & labels[j]) for j in others])
        if not pos.any():
            continue
        order = np.lexsort((~pos, -sim[q, others]))  # by similarity, positives first on ties
        ranked = pos[order]
        ranks = np.flatnonzero(ranked) + 1
        precision = np.arange(1, ranks.size + 1) / ranks
        interpolated = np.maximum.accumulate(precision[::-1])[::-1]
        aps.append(interpolated.mean())
    return float(np.mean(aps)), len(aps)


def dsb_score_numpy(truth: np.ndarray, pred: np.ndarray) -> float:
    """DSB 2018 score: mean over IoU thresholds 0.50 ... 0.95 of TP / (TP + FP + FN)."""
    t_ids, t = np.unique(truth, return_inverse=True)
    p_ids, p = np.unique(pred, return_inverse=True)
    inter = np.zeros((t_ids.size, p_ids.size))
    np.add.at(inter, (t.ravel(), p.ravel()), 1)
    inter = inter[t_ids > 0][:, p_ids > 0]  # drop background
    area_t, area_p = np.bincount(t.ravel())[t_ids > 0], np.bincount(p.ravel())[p_ids > 0]
    iou = inter / (area_t[:, None] + area_p[None, :] - inter)
    scores = []
    for threshold in np.arange(0.5, 1.0, 0.05):
        tp = int((iou > threshold).sum())  # above 0.5 a match is one-to-one
        scores.append(tp / (tp + (iou.shape[1] - tp) + (iou.shape[0] - tp)))
    return float(np.mean(scores))


def percent(value: object) -> float:
    match = re.search(r"(\d+(?:\.\d+)?)\s*%", str(value))
    assert match, f"no percentage in {value!r}"
    return float(match.group(1))


# ------------------------------------------------------------------------ tests
def test_demo_store_holds_every_step(demo) -> None:
    expected = {
        "objects", "object_labels", "cells_measured", "image_profiles_classical",
        "cells_efficientnet_lite0", "image_profiles_efficientnet_lite0", "feature_agreement", "cells",
        "wells_cellprofiler", "wells_lincs", "wells_lincs_normalized", "wells_lincs_sphered",
        "sphering_fit", "sphering_sweep", "retrieval_summary", "retrieval_pr_curve",
        "phenotypic_activity", "qc_wells_lincs", "segmentation_tta", "activity_published_auroc",
        "activity_trained", "activity_predictions",
    }  # fmt: skip
    assert expected <= set(demo.tables)
    with Store(demo.store_path, read_only=True) as store:
        objects = store.read("objects")
        nuclei = objects.filter(pl.col("Object") == "Nuclei")
        # Otsu finds 14 and 51 nuclei on these two sites; the U-Net must be close.
        per_site = nuclei.group_by("Metadata_Plate").len().sort("Metadata_Plate")["len"].to_list()
        assert 10 <= per_site[0] <= 20 and 40 <= per_site[1] <= 65
        # one cell and one cytoplasm per nucleus, numbered as it is
        for compartment in ("Cells", "Cytoplasm"):
            other = objects.filter(pl.col("Object") == compartment)
            assert sorted(other.select(KEYS).rows()) == sorted(nuclei.select(KEYS).rows())
        # every cell is embedded, 672 features per channel x 5 channels
        emb = store.read("cells_efficientnet_lite0")
        assert emb.height == nuclei.height and emb.width == 4 + 5 * 672
        # every CellProfiler cell of the bundled sites is ingested, annotated from the platemap
        cells = store.read("cells")
        assert cells.height == cellprofiler_cells()
        assert set(cells["Metadata_Well"]) == {"A01", "A02"}
        assert cells["Metadata_pert_iname"].drop_nulls().unique().sort().to_list() == [
            "1-octanol", "quinine",
        ]  # fmt: skip
        wells = store.read("wells_cellprofiler")
        assert wells["Metadata_Count_Cells"].sum() == cells.height
        # LINCS: 384 wells, 24 DMSO controls
        lincs = store.read("wells_lincs")
        assert lincs.height == 384 and (lincs["Metadata_Control"] == "negcon").sum() == 24
        summary = store.read("retrieval_summary")
        assert summary.height == 2
        assert summary["mean_average_precision"].is_between(0.05, 1.0).all()
        sweep = store.read("sphering_sweep")
        assert sweep.height == 5 and sweep["score"].is_between(0, 1).all()
        prov = store.provenance("cells_efficientnet_lite0").row(-1, named=True)
        assert "efficientnet-lite0" in prov["parameters"] and "pretrained" in prov["parameters"]


def test_headline_nuclei_match_the_label_images(demo, tables) -> None:
    import tifffile

    labels = sorted((demo.store_path.parent / "labels").glob("*_Nuclei.tif"))
    assert len(labels) == 2
    counted = sum(int(np.count_nonzero(np.unique(tifffile.imread(p)))) for p in labels)
    nuclei = tables["objects"].filter(pl.col("Object") == "Nuclei")
    assert counted == nuclei.height == demo.summary["nuclei segmented (2 JUMP sites)"]
    assert 50 <= counted <= 85  # Otsu: 14 + 51


def test_classical_and_deep_features_describe_the_same_cells(demo, tables) -> None:
    """cells_measured and cells_efficientnet_lite0: one row per cell of the label images, each."""
    from cellframe.io.images import read_labels, read_site

    classical, deep = tables["cells_measured"], tables["cells_efficientnet_lite0"]
    assert classical.height == deep.height == classical.select(KEYS).n_unique() > 0
    assert sorted(classical.select(KEYS).rows()) == sorted(deep.select(KEYS).rows())
    labels = tables["object_labels"]
    assert sorted(labels["Object"].unique()) == ["Cells", "Cytoplasm", "Nuclei"]
    per_site = {tuple(r[:3]): r[3] for r in classical.group_by(SITE_KEYS).len().rows()}
    jump = demo_data_dir() / "jump"
    sites = pl.read_csv(jump / "sites.csv", glob=False)
    checked = 0
    for row in labels.filter(pl.col("Object") == "Cells").iter_rows(named=True):
        key = [row["Metadata_Plate"], row["Metadata_Well"], row["Metadata_Site"]]
        cells = read_labels(demo.store_path.parent / row["Path"])
        nuclei = read_labels(demo.store_path.parent / row["Path"].replace("_Cells.", "_Nuclei."))
        ids = np.unique(cells[cells > 0])
        assert row["Count"] == ids.size == per_site[tuple(key)]
        # hand-computed from the label images and the raw pixels (no illumination correction)
        idx = sites.filter((pl.col("Plate") == key[0]) & (pl.col("Site") == key[2]))["idx"][0]
        dna = read_site(jump / "images.zarr", site=idx, channels="DNA")[0][0] / 65535.0
        site = of_site(classical, key)
        for cell in site.iter_rows(named=True):
            number = cell["Metadata_ObjectNumber"]
            assert cell["Cells_AreaShape_Area"] == np.count_nonzero(cells == number)
            assert cell["Nuclei_AreaShape_Area"] == np.count_nonzero(nuclei == number)
            assert cell["Nuclei_Intensity_MeanIntensity_DNA"] == pytest.approx(
                dna[nuclei == number].mean(), rel=1e-5
            )
            checked += 1
    assert checked == classical.height
    # CellProfiler's names, three compartments, float32
    for name in ("Cells_AreaShape_Area", "Cytoplasm_Intensity_MeanIntensity_Mito",
                 "Nuclei_Texture_Contrast_DNA_3_00_256", "Cytoplasm_Correlation_Correlation_DNA_RNA",
                 "Cells_Granularity_1_Mito", "Cytoplasm_RadialDistribution_FracAtD_ER_1of4"):  # fmt: skip
        assert classical.schema[name] == pl.Float32, name
    features = [c for c in classical.columns if not c.startswith("Metadata_")]
    assert {c.split("_")[0] for c in features} == {"Cells", "Cytoplasm", "Nuclei"}
    assert demo.summary["cells measured x classical features (cells_measured)"] == (
        f"{classical.height} x {len(features)}"
    )
    assert demo.summary["cells embedded x features"] == f"{deep.height} x {5 * 672}"


def test_site_profiles_are_medians_of_the_same_cells(tables) -> None:
    for cells, sites in (("cells_measured", "image_profiles_classical"),
                         ("cells_efficientnet_lite0", "image_profiles_efficientnet_lite0")):  # fmt: skip
        single, profiles = tables[cells], tables[sites].sort(SITE_KEYS)
        assert profiles.height == 2
        counts = single.group_by(SITE_KEYS).len().sort(SITE_KEYS)["len"].to_list()
        assert profiles["Metadata_Count_Cells"].to_list() == counts
        features = [c for c in single.columns if not c.startswith("Metadata_")]
        assert [c for c in profiles.columns if not c.startswith("Metadata_")] == features
        # a feature with NaN cells (texture of a tiny nucleus) takes the median of the others
        with_nan = [f for f in features if single[f].is_nan().any()]
        assert (with_nan != []) == (cells == "cells_measured")
        for feature in [features[0], features[-1], *with_nan[:1]]:
            for i, key in enumerate(profiles.select(SITE_KEYS).rows()):
                part = of_site(single, key)
                expected = np.nanmedian(part[feature].cast(pl.Float64).to_numpy())
                assert profiles[feature][i] == pytest.approx(expected, rel=1e-6), (sites, feature)


def test_feature_agreement_is_scikit_learns(tables) -> None:
    from tests.report.test_agreement import reference_r2

    classical, deep = tables["cells_measured"], tables["cells_efficientnet_lite0"]
    joined = classical.join(deep, on=KEYS).sort(KEYS)
    x = joined.select([c for c in deep.columns if not c.startswith("Metadata_")]).to_numpy()
    site = joined["Metadata_Plate"].to_numpy()  # one site per plate in the demo
    agreement = tables["feature_agreement"]
    assert agreement.height == 3 * 5 and set(agreement["n_cells"]) == {joined.height}
    for feature, rows in agreement.group_by("feature"):
        expected = reference_r2(
            x.astype(np.float64), joined[feature[0]].cast(pl.Float64).to_numpy(), site
        )
        for row in rows.iter_rows(named=True):
            assert row["r2"] == pytest.approx(expected[row["predictor"]], abs=1e-9), row


def test_headline_cells_match_the_bundled_csvs(demo) -> None:
    assert demo.summary["CellProfiler single cells ingested"] == cellprofiler_cells() == 125


def test_headline_map_matches_numpy(demo, tables) -> None:
    keys = [k for k in demo.summary if k.startswith("MoA mAP, CellProfiler, ")]
    assert len(keys) == 2
    for key in keys:
        table = "wells_lincs_normalized" if key.endswith("normalized") else "wells_lincs_sphered"
        expected, n_queries = interpolated_map(tables[table])
        assert n_queries == 16  # 39 of the 55 annotated compounds share no MoA with another
        assert demo.summary[key] == pytest.approx(expected, abs=5e-4), key


def test_headline_active_fraction_matches_the_q_values(demo, tables) -> None:
    activity = tables["phenotypic_activity"]
    keys = [k for k in demo.summary if "phenotypic activity" in k]
    assert keys and activity["source"].n_unique() == len(keys)
    for source in activity["source"].unique():
        key = next(k for k in keys if k.endswith(f", {source}"))
        q = activity.filter(pl.col("source") == source)["corrected_p_value"].to_numpy()
        q = q[~np.isnan(q)]  # NaN q-values are neither active nor inactive
        assert q.size > 0
        expected = 100 * float(np.mean(q < 0.05))
        assert percent(demo.summary[key]) == pytest.approx(expected, abs=0.5), key


def test_headline_dsb_scores_match_numpy(demo, tables) -> None:
    import tifffile

    from cellframe.segment import create_unet, unet_segment

    data = demo_data_dir() / "dsb2018"
    image, truth = tifffile.imread(data / "img2d.tif"), tifffile.imread(data / "mask2d.tif")
    model = create_unet(
        in_channels=1, out_channels=3, depth=4, width=8, pretrained="dsb2018-nuclei"
    )
    h, w = image.shape
    plain, merged = [], []
    for x0 in range(0, w, w // 4):  # the bottom half's four tiles, held out from training
        tile = np.ascontiguousarray(image[h // 2 :, x0 : x0 + w // 4])
        gt = truth[h // 2 :, x0 : x0 + w // 4]
        plain.append(dsb_score_numpy(gt, unet_segment(model, tile, tta="none")))
        merged.append(dsb_score_numpy(gt, unet_segment(model, tile, tta="default")))
    stored = tables["segmentation_tta"]
    np.testing.assert_allclose(stored["original"].to_numpy(), plain, atol=1e-9)
    np.testing.assert_allclose(stored["tta"].to_numpy(), merged, atol=1e-9)
    shown = demo.summary["DSB score without / with TTA (mean of 4 held-out tiles)"]
    assert shown == f"{np.mean(plain):.3f} / {np.mean(merged):.3f}"


def test_published_counts_exclude_the_assay_without_a_value(demo, tables) -> None:
    path = demo_data_dir() / "activity" / "scaffold_median_AUC.csv"
    above, without, sets = published_counts(path)
    assert above == {"CS": 16, "GE": 19, "MO": 28}  # the paper's Table 1 and the README
    assert without == {"CS": 1, "GE": 1, "MO": 1}  # assay 50_154: nan for every predictor
    for m, n in above.items():
        assert demo.summary[f"assays with median AUROC > 0.9 (published), {m}"] == n
    assert demo.summary["published assays without a value (not counted), CS / GE / MO"] == (
        "1 / 1 / 1 of 270"
    )
    stored = tables["activity_published_auroc"]
    assert stored.height == 3 * 270 and stored["auroc"].is_nan().sum() == 0
    assert stored.filter(pl.col("auroc").is_null())["assay_id"].unique().to_list() == ["50_154"]
    # The overlap sets that the report charts, computed in SQL-like Polars on the stored table.
    from cellframe.activity.published import well_predicted_sets

    assert {m: set(v) for m, v in well_predicted_sets(stored).items()} == sets
    assert "50_154" not in sets["CS"] & sets["GE"] & sets["MO"]
    with Store(demo.store_path, read_only=True) as store:  # DuckDB: NaN > 0.9 would be true
        n = store.sql("SELECT count(*) AS n FROM activity_published_auroc WHERE auroc > 0.9")
    assert n["n"][0] == 16 + 19 + 28


def test_trained_models_auroc_recomputed_from_predictions(demo, tables) -> None:
    from sklearn.metrics import roc_auc_score

    trained, predictions = tables["activity_trained"], tables["activity_predictions"]
    assert dict(trained.schema) == TRAINED_COLUMNS
    assert trained.height == 6 and set(trained["model"]) == {
        "RandomForest on Morgan fingerprints", "D-MPNN",
    }  # fmt: skip
    assert set(trained["assay"]) == {"NR-AhR", "SR-ARE", "SR-MMP"}
    assert set(trained["split"]) == {"scaffold"}
    bundled = pl.read_csv(
        demo_data_dir() / "moleculenet" / "tox21.csv.gz", n_rows=2000, glob=False
    ).select("smiles", "NR-AhR", "SR-ARE", "SR-MMP")
    for row in trained.iter_rows(named=True):
        p = predictions.filter(
            (pl.col("model") == row["model"]) & (pl.col("assay") == row["assay"])
        )
        y = p["readout"].to_numpy()
        assert row["auroc"] == pytest.approx(
            roc_auc_score(y, p["probability"].to_numpy()), abs=1e-12
        )
        assert row["n_test"] == y.size and row["n_test_positive"] == int(y.sum())
        # train and test are disjoint subsets of the assay's observed readouts
        observed = bundled[row["assay"]].drop_nulls()
        assert row["n_train"] + row["n_test"] <= observed.len()
        assert p["smiles"].n_unique() == y.size
        # the readouts stored are the bundled ones
        truth = bundled.filter(pl.col("smiles").is_in(p["smiles"].implode())).select(
            "smiles", pl.col(row["assay"]).cast(pl.Int8)
        )
        joined = p.join(truth, on="smiles")
        assert (joined["readout"] == joined[row["assay"]]).all()
    # both models saw the same compounds
    per_model = trained.sort("assay").group_by("model").agg("n_train", "n_test")
    assert per_model["n_train"].n_unique() == 1 and per_model["n_test"].n_unique() == 1
    for model, group in trained.group_by("model"):
        key = next(
            k for k in demo.summary if k.startswith("mean held-out AUROC") and k.endswith(model[0])
        )
        assert demo.summary[key] == pytest.approx(group["auroc"].mean(), abs=5e-4)
    # Real models, better than chance on a scaffold hold-out of ~400 compounds.
    means = dict(trained.group_by("model").agg(pl.col("auroc").mean()).iter_rows())
    assert means["D-MPNN"] > 0.65 and means["RandomForest on Morgan fingerprints"] > 0.55


def test_demo_tox21_subset_is_the_shared_file(shared_data: Path) -> None:
    """The demo's matrix is data rows 1-2,000 of the real Tox21, its three assays, unchanged."""
    from cellframe.activity.chem import InvalidSmilesWarning
    from cellframe.activity.matrix import read_assay_subset
    from cellframe.demo import TOX21_DEMO_ASSAYS, TOX21_DEMO_COMPOUNDS

    with (shared_data / "assay-matrices-moleculenet" / "tox21.csv").open(newline="") as fh:
        rows = list(csv.reader(fh))
    cols = [rows[0].index(c) for c in ("smiles", *TOX21_DEMO_ASSAYS)]
    expected = [[r[i] for i in cols] for r in rows[1 : TOX21_DEMO_COMPOUNDS + 1]]
    with pytest.warns(InvalidSmilesWarning, match=r"tox21\.csv\.gz: 1 of 2000 SMILES .* line 1324"):
        m = read_assay_subset(
            demo_data_dir() / "moleculenet" / "tox21.csv.gz",
            TOX21_DEMO_COMPOUNDS,
            TOX21_DEMO_ASSAYS,
        )
    assert m.assays == list(TOX21_DEMO_ASSAYS) and m.smiles == [r[0] for r in expected]
    assert m.compounds == m.smiles  # MoleculeNet's SMILES are the ids; no row merged
    values = [[float(v) if v else None for v in r[1:]] for r in expected]
    got = [[None if np.isnan(v) else float(v) for v in row] for row in m.values]
    assert got == values and int(m.observed.sum()) == 4658 and int(m.hits.sum()) == 673


def test_demo_report_renders_offline(demo, tmp_path: Path) -> None:
    seen = render_report(demo.report_path, tmp_path / "demo-report.png", tmp_path / "sections")
    assert seen.errors == [] and seen.console_errors == [] and seen.blocked_requests == []
    assert seen.rendered == len(seen.svgs_per_chart) >= 8
    assert all(n >= 1 for n in seen.svgs_per_chart)
    # every section asks a question and answers it; segmentation shows 2 sites + 1 montage,
    # the classical-vs-deep section its charts and 1 montage of cell crops
    assert all(s["title"].endswith("?") and s["answer"] and s["caption"] for s in seen.sections)
    assert len(seen.images) == 4 and all(w >= 100 and h >= 100 for w, h in seen.images)
    assert len(seen.section_screenshots) == len(seen.sections)
    (thesis,) = [s for s in seen.sections if "deep embeddings of the same cells" in s["title"]]
    assert thesis["charts"] == 1 and thesis["svgs"] >= 1 and thesis["images"] == 1
    cells = demo.summary["cells embedded x features"].split(" x ")[0]
    assert thesis["answer"].startswith(f"{cells} cells on 2 sites (")


def test_bad_published_table_is_one_cli_line(tmp_path: Path, monkeypatch, capsys) -> None:
    """A corrupt AUROC file reaches the user as one line naming file, assay, column and value."""
    import shutil

    import cellframe.demo as demo_module
    from cellframe.cli import main

    data = tmp_path / "data"
    shutil.copytree(demo_data_dir() / "activity", data / "activity")
    path = data / "activity" / "scaffold_median_AUC.csv"
    lines = path.read_text().splitlines()
    row = next(i for i, line in enumerate(lines) if ",mobc_es_op," in line)
    fields = lines[row].split(",")
    fields[1] = "0x93"  # a typo for 0.93
    lines[row] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(demo_module, "demo_data_dir", lambda: data)
    monkeypatch.setattr(demo_module, "STEPS", (("compound activity", demo_module._activity),))
    assert main(["demo", "--output", str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and "'auc'" in err[0] and "'0x93'" in err[0]
    assert f"'{fields[0]}'" in err[0]


def test_blank_jump_channel_is_one_cli_line_and_measures_nothing(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """A blank DNA channel on one JUMP site stops the measure step before it writes a cell."""
    import shutil

    import zarr

    import cellframe.demo as demo_module
    from cellframe.cli import main

    data = tmp_path / "data"
    shutil.copytree(demo_data_dir() / "jump", data / "jump")
    channels = pl.read_csv(data / "jump" / "channels.csv").sort("idx")["channel"].to_list()
    images = zarr.open_group(str(data / "jump" / "images.zarr"), mode="r+")["images"]
    images[1, channels.index("DNA")] = 7  # site idx 1 (CP-CC9-R1-05 L07 s0): one value everywhere
    monkeypatch.setattr(demo_module, "demo_data_dir", lambda: data)
    monkeypatch.setattr(demo_module, "STEPS", demo_module.STEPS[:1])
    out = tmp_path / "out"
    assert main(["demo", "--output", str(out), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "images.zarr" in err[0] and "CP-CC9-R1-05" in err[0] and "'DNA'" in err[0]
    assert "blank" in err[0]
    with Store(out / "cellframe.duckdb", read_only=True) as store:
        names = set(store.table_names())
        assert "cells_measured" not in names and "cells_efficientnet_lite0" not in names
        assert store.read("objects").height == 0 and store.read("images").height == 0
    assert not (out / "labels").exists() or not any((out / "labels").iterdir())
