"""Question sections: each answer line and each chart's data match hand-computed values."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from cellframe.errors import InvalidInputError, MissingColumnsError
from cellframe.report import (
    activity_answer,
    assay_prediction_chart,
    assay_prediction_section,
    auroc_threshold_chart,
    compound_activity_chart,
    control_separation,
    correction_section,
    finite_rows,
    lambda_sweep_chart,
    moa_retrieval_chart,
    moa_retrieval_section,
    moa_summary,
    pca_chart,
    plate_health_section,
    plate_heatmap_chart,
    plate_layout,
    replicate_section,
    replicate_similarity_chart,
    tta_section,
    well_predicted_counts,
)
from cellframe.report.compounds import PlotArea, place_labels

NAN = float("nan")


def datasets(spec: dict) -> list[list[dict]]:
    return list(spec["datasets"].values())


def rows_with(spec: dict, column: str) -> list[dict]:
    return [r for d in datasets(spec) for r in d if column in r]


# ------------------------------------------------------------------ NaN never counts
def test_finite_rows_leaves_out_nan_and_null() -> None:
    df = pl.DataFrame({"a": [0.95, NAN, None, 0.2], "b": ["x", "y", "z", "w"]})
    kept, dropped = finite_rows(df, ["a"])
    assert kept["b"].to_list() == ["x", "w"] and dropped == 2
    # Polars alone would count the NaN above 0.9: the bug this guards against
    assert (df["a"] > 0.9).sum() == 2 and (kept["a"] > 0.9).sum() == 1


def test_well_predicted_counts_exclude_nan() -> None:
    published = pl.DataFrame(
        {
            "modality": ["CS", "CS", "CS", "CS", "GE", "GE", "MO"],
            "assay_id": ["a", "b", "c", "d", "a", "b", "a"],
            "auroc": [0.95, NAN, 0.91, 0.5, NAN, 0.92, NAN],
        }
    )
    counts, dropped = well_predicted_counts(published)
    assert dropped == 3
    assert counts.rows() == [("CS", 2, 3), ("GE", 1, 1), ("MO", 0, 0)]
    spec = auroc_threshold_chart(published, thresholds=[0.9]).to_dict()
    got = {(r["modality"], r["threshold"]): r["assays"] for r in datasets(spec)[0]}
    assert got == {("CS", 0.9): 2, ("GE", 0.9): 1}  # MO has no finite AUROC


def test_assay_prediction_chart_and_answer() -> None:
    published = pl.DataFrame(
        {"modality": ["CS", "CS", "MO", "MO"], "auroc": [0.95, NAN, 0.93, 0.97]}
    )
    trained = pl.DataFrame(
        {
            "assay": ["NR-AR", "NR-AR", "SR-p53", "SR-p53"],
            "model": ["RandomForest", "D-MPNN", "RandomForest", "D-MPNN"],
            "split": ["scaffold"] * 4,
            "auroc": [0.8, 0.7, 0.6, NAN],
            "n_train": [100, 100, 90, 90],
            "n_test": [30, 30, 25, 25],
            "n_test_positive": [5, 5, 0, 0],
        }
    )
    spec = assay_prediction_chart(published, trained).to_dict()
    bars = {r["modality"]: r["assays"] for r in rows_with(spec, "modality")}
    assert bars == {"CS": 1, "MO": 2}
    points = rows_with(spec, "n_test_positive")
    assert sorted(r["auroc"] for r in points) == [0.6, 0.7, 0.8]  # the NaN AUROC is left out
    titles = str(spec)
    assert "1 NaN AUROCs not counted" in titles and "1 without an AUROC left out" in titles
    section = assay_prediction_section(published, trained)
    assert section.answer == (
        "Published, assays with AUROC > 0.9: CS 1 of 1 / MO 2 of 2 (1 NaN AUROCs not counted); "
        "trained here, mean held-out AUROC: D-MPNN 0.700 (1 assays), RandomForest 0.700 "
        "(2 assays)."
    )
    # without a trained table: one panel, and the answer names only published numbers
    alone = assay_prediction_section(published)
    assert "trained" not in alone.answer and len(alone.chart.to_dict()["hconcat"]) == 1
    with pytest.raises(MissingColumnsError, match="n_test_positive"):
        assay_prediction_chart(published, trained.drop("n_test_positive"))


# ------------------------------------------------------------------ compound activity
def activity() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "Metadata_Treatment": ["a", "b", "c", "d", "e"] * 2,
            "mean_average_precision": [0.9, 0.8, 0.4, NAN, 0.95, 0.7, 0.75, 0.3, 0.2, 0.99],
            "corrected_p_value": [0.001, 0.01, 0.2, 0.5, 0.001, 0.04, 0.06, 0.5, 0.9, 0.001],
            "source": ["before"] * 5 + ["after"] * 5,
        }
    )


def test_activity_answer_counts_per_source_and_leaves_out_nan() -> None:
    assert activity_answer(activity()) == (
        "Active at q < 0.05: before: 3 of 4 compounds (75%), 1 without a q-value not counted; "
        "after: 2 of 5 compounds (40%)."
    )
    # q exactly at the threshold is not active (strict, as below_corrected_p)
    edge = pl.DataFrame(
        {"Metadata_Treatment": ["a"], "mean_average_precision": [0.5], "corrected_p_value": [0.05]}
    )
    assert activity_answer(edge) == "Active at q < 0.05: 0 of 1 compounds (0%)."


def test_compound_activity_chart_panels_threshold_and_labels() -> None:
    spec = compound_activity_chart(activity(), n_labels=2).to_dict()
    panels = spec["hconcat"]
    assert [p["title"] for p in panels] == [
        "before: 3 of 4 active (1 without a finite mAP or q left out)",
        "after: 2 of 5 active",
    ]
    rule = [r for r in rows_with(spec, "q") if "y" in r]
    assert rule and all(r["y"] == pytest.approx(-np.log10(0.05)) for r in rule)
    points = [r for r in rows_with(spec, "call") if "label_x" not in r]
    assert len(points) == 9
    assert {r["Metadata_Treatment"]: r["call"] for r in points if r["source"] == "before"} == {
        "a": "active (q < 0.05)", "b": "active (q < 0.05)", "c": "not active", "e": "active (q < 0.05)",
    }  # fmt: skip
    q_of = {
        (r["Metadata_Treatment"], r["mean_average_precision"]): r["neg_log10_q"] for r in points
    }
    assert q_of[("a", 0.9)] == pytest.approx(3.0)
    labels = rows_with(spec, "label_x")
    # labelled: the 2 active compounds with the highest mAP, per panel
    assert {(r["source"], r["Metadata_Treatment"]) for r in labels} == {
        ("before", "a"), ("before", "e"), ("after", "a"), ("after", "e"),
    }  # fmt: skip


def test_place_labels_never_overlap_even_for_tied_points() -> None:
    tied = pl.DataFrame(
        {"x": [0.99] * 6, "y": [3.0] * 6, "name": [f"BRD-{i:09d}" for i in range(6)]}
    )
    area = PlotArea(x_domain=[0, 1], y_domain=[0, 4], width=340, height=280)
    placed = place_labels(tied, x="x", y="y", label="name", area=area)
    assert placed.height == 6 and set(placed["align"]) == {"right"}  # right edge: text to the left
    ys = sorted(placed["label_y"].to_list())
    gaps = np.diff(ys) / 4 * 280  # in pixels
    assert (gaps >= 13 - 1e-9).all()


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("x_domain", (1, 1), "two distinct finite numbers"),
        ("y_domain", (0, float("nan")), "two distinct finite numbers"),
        ("x_domain", (0, 1, 2), "two numbers"),
        ("width", 0, "positive number of pixels"),
        ("height", -5.0, "positive number of pixels"),
    ],
)
def test_plot_area_refuses_bad_domains_and_sizes(field, value, match) -> None:
    good = {"x_domain": (0, 1), "y_domain": (0, 4), "width": 340, "height": 280}
    with pytest.raises(InvalidInputError, match=match):
        PlotArea(**(good | {field: value}))
    # A reversed domain (a descending axis) is valid and kept as given.
    assert PlotArea(**(good | {"x_domain": (1, 0)})).x_domain == (1.0, 0.0)


# ------------------------------------------------------------------ replicates
def replicate_wells(strength: float, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n_groups, reps, n_feat = 8, 4, 30
    centres = rng.normal(size=(n_groups, n_feat)) * strength
    x = np.repeat(centres, reps, axis=0) + rng.normal(size=(n_groups * reps, n_feat))
    return pl.DataFrame(
        {"Metadata_Treatment": np.repeat([f"c{i}" for i in range(n_groups)], reps)}
        | {f"f{j}": x[:, j] for j in range(n_feat)}
    )


def brute_force(df: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    x = df.select(pl.exclude("Metadata_Treatment")).to_numpy()
    corr = np.corrcoef(x)
    g = df["Metadata_Treatment"].to_numpy()
    i, j = np.triu_indices(len(g), k=1)
    same = g[i] == g[j]
    return corr[i, j][same], corr[i, j][~same]


@pytest.mark.parametrize("strength", [0.0, 2.0])
def test_replicate_chart_matches_brute_force_pearson(strength: float) -> None:
    df = replicate_wells(strength)
    rep, non = brute_force(df)
    threshold = np.quantile(non, 0.95)
    spec = replicate_similarity_chart(df, bins=20).to_dict()
    hist = rows_with(spec, "percent")
    for kind, values in (("replicates", rep), ("non-replicates", non)):
        counts = [r["n"] for r in hist if r["pairs"].startswith(kind)]
        np.testing.assert_array_equal(counts, np.histogram(values, bins=20, range=(-1, 1))[0])
    drawn = rows_with(spec, "threshold")[0]["threshold"]
    assert drawn == pytest.approx(threshold, abs=1e-12)
    above = (rep > threshold).mean()
    assert spec["title"].startswith(f"{above:.0%} of {len(rep)} replicate pairs")
    section = replicate_section(df)
    assert section.answer.startswith(f"{above:.0%} of replicate pairs correlate above")
    if strength == 0:
        assert above < 0.25  # no signal: near the 5% expected by chance
    else:
        assert above > 0.9


def test_replicate_chart_needs_replicates() -> None:
    df = replicate_wells(1.0).with_columns(
        pl.int_range(pl.len()).cast(pl.String).alias("Metadata_Treatment")
    )
    with pytest.raises(InvalidInputError, match="replicate and non-replicate pairs"):
        replicate_similarity_chart(df)


# ------------------------------------------------------------------ MoA retrieval
def per_query() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "Metadata_MoA": ["x", "x", "x", "y", "y", "z", "w", "w"],
            "average_precision": [1.0, 0.5, 0.6, 0.2, NAN, 0.9, 0.1, 0.3],
            "n_candidates": [20] * 8,
        }
    )


def test_moa_summary_hand_computed() -> None:
    got = moa_summary(per_query())
    # y keeps one finite AP (below 2 compounds) and z has one compound: both left out
    assert got.rows() == [("x", 3, pytest.approx(0.7), pytest.approx(2 / 20)),
                          ("w", 2, pytest.approx(0.2), pytest.approx(1 / 20))]  # fmt: skip
    spec = moa_retrieval_chart(per_query()).to_dict()
    labels = [r["label"] for r in rows_with(spec, "label")]
    assert labels == ["x (n=3)", "w (n=2)"]
    section = moa_retrieval_section(per_query(), n_unscored=39)
    assert section.answer == (
        "2 MoAs have 2+ compounds; best retrieved: x (mAP 0.70 vs 0.10 at random); "
        "2 of 2 at least twice random."
    )
    assert "39 of 47 MoA queries have no positive" in section.caption
    with pytest.raises(InvalidInputError, match="no MoA has 4 compounds"):
        moa_retrieval_chart(per_query(), min_compounds=4)


# ------------------------------------------------------------------ plate
def test_plate_layout_maps_wells_and_refuses_bad_names() -> None:
    wells = pl.DataFrame({"Metadata_Well": ["A01", "P24", "b3"], "v": [1.0, 2.0, 3.0]})
    grid = plate_layout(wells)
    assert grid.height == 384
    got = grid.filter(pl.col("v").is_not_null()).sort("v")
    assert got.select("plate_row", "plate_column", "well").rows() == [
        ("A", 1, "A01"), ("P", 24, "P24"), ("B", 3, "B03"),
    ]  # fmt: skip
    with pytest.raises(InvalidInputError, match=r"\['Q01'\] lie outside a 16 x 24 plate"):
        plate_layout(pl.DataFrame({"Metadata_Well": ["A01", "Q01"]}))
    with pytest.raises(InvalidInputError, match=r"\['A25'\] lie outside"):
        plate_layout(pl.DataFrame({"Metadata_Well": ["A25"]}))
    with pytest.raises(InvalidInputError, match="do not read as A01"):
        plate_layout(pl.DataFrame({"Metadata_Well": ["well 1"]}))
    with pytest.raises(InvalidInputError, match="more than once"):
        plate_layout(pl.DataFrame({"Metadata_Well": ["A01", "A1"]}))
    # a 96-well plate is fine with its own geometry
    assert plate_layout(pl.DataFrame({"Metadata_Well": ["H12"]}), rows=8, columns=12).height == 96


def test_plate_heatmap_draws_missing_wells_grey() -> None:
    wells = pl.DataFrame({"Metadata_Well": ["A01", "A02", "A03"], "count": [10.0, NAN, 30.0]})
    spec = plate_heatmap_chart(wells, "count").to_dict()
    missing = rows_with(spec, "status")
    present = rows_with(spec, "count")
    assert len(missing) == 382 and {r["well"] for r in present} == {"A01", "A03"}
    with pytest.raises(InvalidInputError, match="log colour scale"):
        plate_heatmap_chart(wells.with_columns(pl.lit(0.0).alias("count")), "count", log_scale=True)


def test_plate_health_answer_counts_edge_flags() -> None:
    wells = [f"{r}{c:02d}" for r in "ABCDEFGHIJKLMNOP" for c in range(1, 25)]
    flagged = {"A01", "A05", "P24", "H12", "C03"}  # 3 on the edge, 2 inside
    qc = pl.DataFrame(
        {
            "Metadata_Well": wells,
            "Metadata_QC_Outlier": [w in flagged for w in wells],
            "Metadata_Count_Cells": [100 if w in flagged else 300 for w in wells],
        }
    )
    section = plate_health_section(qc)
    # 76 edge wells of 384: 5 * 76 / 384 = 0.99 expected
    assert section.answer == (
        "5 of 384 wells flagged by QC; 3 of them on the outer edge (1 expected if flags "
        "ignored position); median cells per well (count): 100 in flagged wells, 300 in kept "
        "wells."
    )
    assert len(section.chart.to_dict()["vconcat"]) == 2
    with pytest.raises(MissingColumnsError, match="Metadata_QC_Outlier"):
        plate_health_section(qc.drop("Metadata_QC_Outlier"))


# ------------------------------------------------------------------ correction
def wells(spread_treated: float, seed: int = 0, plates: int = 1) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n_ctrl, n_trt = 10, 30
    x = np.vstack([rng.normal(size=(n_ctrl, 3)), rng.normal(size=(n_trt, 3)) * spread_treated])
    return pl.DataFrame(
        {
            "Metadata_Plate": [f"P{i % plates}" for i in range(n_ctrl + n_trt)],
            "Metadata_Control": ["negcon"] * n_ctrl + [None] * n_trt,
            "f1": x[:, 0], "f2": x[:, 1], "f3": x[:, 2],
        }
    )  # fmt: skip


def test_control_separation_hand_computed() -> None:
    df = pl.DataFrame(
        {
            "Metadata_Control": ["negcon", "negcon", None, None, None],
            "f1": [1.0, -1.0, 3.0, 0.0, 0.0],
            "f2": [0.0, 0.0, 0.0, 2.0, -5.0],
        }
    )
    # control centroid (0, 0); controls at distance 1; treated at 3, 2, 5 -> median 3
    assert control_separation(df) == pytest.approx(3.0)
    with pytest.raises(InvalidInputError, match="rows with and without"):
        control_separation(df.filter(pl.col("Metadata_Control").is_null()))


def test_correction_section_answer_and_flat_sweep() -> None:
    before, after = wells(1.0), wells(4.0)
    flat = pl.DataFrame({"lambda": [1e-4, 1e-2, 1.0], "score": [0.2901, 0.2906, 0.2898]})
    section = correction_section(before, after, flat, best=1e-2, score_title="mAP")
    r0, r1 = control_separation(before), control_separation(after)
    assert section.answer == (
        f"Treated wells lie {r0:.2f}x as far from the DMSO centroid as DMSO wells before the "
        f"correction and {r1:.2f}x after (one plate, so no plate effect to remove); the lambda "
        "sweep is flat (mAP 0.290 to 0.291 over lambda 0.0001 to 1), so the choice of lambda "
        "does not matter here."
    )
    steep = flat.with_columns(pl.Series("score", [0.1, 0.3, 0.2]))
    assert "lambda matters: mAP ranges 0.100 to 0.300, best at lambda 0.01" in (
        correction_section(before, after, steep, score_title="mAP").answer
    )
    # several plates: a second row coloured by plate
    multi = correction_section(wells(1.0, plates=2), wells(4.0, plates=2))
    assert len(multi.chart.to_dict()["vconcat"]) == 2 and "one plate" not in multi.answer


def test_lambda_sweep_axis_spans_the_actual_range() -> None:
    sweep = pl.DataFrame({"lambda": [1e-4, 1e-2, 1.0], "score": [0.2, 0.35, 0.3]})
    spec = lambda_sweep_chart(sweep).to_dict()
    domain = spec["layer"][0]["encoding"]["y"]["scale"]["domain"]
    assert domain == pytest.approx([0.2 - 0.015, 0.35 + 0.015])  # 10% of the range each side
    assert "range 0.200 to 0.350" in spec["title"]
    with pytest.raises(InvalidInputError, match="positive"):
        lambda_sweep_chart(sweep.with_columns(pl.lit(0.0).alias("lambda")))


def test_pca_draws_controls_on_top() -> None:
    spec = pca_chart(wells(2.0), color="Metadata_Control").to_dict()
    layers = spec["layer"]
    first, second = (spec["datasets"][layer["data"]["name"]] for layer in layers)
    assert {r["Metadata_Control"] for r in first} == {"treated"} and len(first) == 30
    assert {r["Metadata_Control"] for r in second} == {"negcon"} and len(second) == 10


def test_tta_section_answer() -> None:
    tta = pl.DataFrame(
        {"image": ["t1", "t2", "t3"], "original": [0.2, 0.3, NAN], "tta": [0.25, 0.28, 0.4]}
    ).with_columns((pl.col("tta") - pl.col("original")).alias("delta"))
    assert tta_section(tta).answer == (
        "TTA raised the DSB 2018 score on 1 of 2 held-out tiles; mean 0.250 without, 0.265 "
        "with. 1 tiles without a score not counted."
    )


def test_published_counts_match_the_paper() -> None:
    """Moshkov et al. 2023 report 16 / 19 / 28 assays with AUROC > 0.9 for CS / GE / MO."""
    from cellframe.demo import demo_data_dir

    names = {"cp_es_op": "CS", "ge_es_op": "GE", "mobc_es_op": "MO"}
    published = (
        pl.read_csv(demo_data_dir() / "activity" / "scaffold_median_AUC.csv", glob=False)
        .filter(pl.col("descriptor").is_in(list(names)))
        .select(pl.col("descriptor").replace(names).alias("modality"), pl.col("auc").alias("auroc"))
    )
    counts, dropped = well_predicted_counts(published)
    assert counts.select("modality", "assays").rows() == [("CS", 16), ("GE", 19), ("MO", 28)]
    assert dropped == 3  # one assay without an AUROC in each modality
    assert assay_prediction_section(published).answer.startswith(
        "Published, assays with AUROC > 0.9: CS 16 / GE 19 / MO 28 of 269 (3 NaN AUROCs not counted)"
    )
