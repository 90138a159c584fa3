"""Metrics per assay and fold, Table 1 summary (against the published counts), fusion."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cellframe.activity.columns import ASSAY, COMPOUND, FOLD, MODALITY, PROBABILITY, READOUT
from cellframe.activity.fusion import early_fusion, late_fusion, retrospective_union
from cellframe.activity.metrics import (
    above,
    assay_fold_metrics,
    assay_metrics,
    count_above,
    count_above_by,
    summary_table,
)
from cellframe.errors import InvalidInputError, MissingColumnsError, NaNExcludedWarning


def _preds(rows):
    return pl.DataFrame(
        rows,
        schema={
            MODALITY: pl.String,
            COMPOUND: pl.String,
            ASSAY: pl.String,
            FOLD: pl.Int64,
            READOUT: pl.Int8,
            PROBABILITY: pl.Float32,
        },
        orient="row",
    )


def test_fold_metrics_hand_computed():
    preds = _preds(
        [
            # fold 0: positives 0.9, 0.4; negatives 0.5, 0.1 -> 3 of 4 pairs ranked right
            ("CS", "c1", "a", 0, 1, 0.9),
            ("CS", "c2", "a", 0, 1, 0.4),
            ("CS", "c3", "a", 0, 0, 0.5),
            ("CS", "c4", "a", 0, 0, 0.1),
            # fold 1: one class only -> skipped
            ("CS", "c5", "a", 1, 0, 0.3),
            ("CS", "c6", "a", 1, 0, 0.2),
            # fold 2: perfect
            ("CS", "c7", "a", 2, 1, 0.8),
            ("CS", "c8", "a", 2, 0, 0.2),
        ]
    )
    fm = assay_fold_metrics(preds)
    assert fm["evaluated"].to_list() == [True, False, True]
    assert fm["auroc"].to_list()[0] == pytest.approx(0.75)
    # AP: ranks 0.9 (P), 0.5 (N), 0.4 (P), 0.1 -> (1/1 + 2/3) / 2
    assert fm["auprc"].to_list()[0] == pytest.approx((1 + 2 / 3) / 2)
    assert fm["auroc"].to_list()[1] is None
    assert fm["n_positive"].to_list() == [2, 0, 1]
    per = assay_metrics(fm)
    assert per["auroc"][0] == pytest.approx((0.75 + 1.0) / 2)  # median of two folds
    assert per["n_folds_evaluated"][0] == 2 and per["n_folds_skipped"][0] == 1
    assert per["well_predicted"][0] is False  # 0.875 is not > 0.9
    with pytest.raises(MissingColumnsError, match="probability"):
        assay_fold_metrics(preds.drop(PROBABILITY))


def test_fold_metrics_match_sklearn_random():
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = rng.random(200)
    preds = _preds([("MO", f"c{i}", "a", 0, int(y[i]), float(p[i])) for i in range(200)])
    fm = assay_fold_metrics(preds)
    p32 = p.astype(np.float32).astype(np.float64)
    assert fm["auroc"][0] == pytest.approx(roc_auc_score(y, p32), abs=1e-12)
    assert fm["auprc"][0] == pytest.approx(average_precision_score(y, p32), abs=1e-12)


PUBLISHED = {  # data README: assays with median AUROC > 0.9 over scaffold folds
    "cp_es_op": 16,  # CS
    "mobc_es_op": 28,  # MO
    "ge_es_op": 19,  # GE
    "late_fusion_cs_mobc": 31,
    "late_fusion_cs_ge": 18,
    "late_fusion_ge_mobc": 28,
    "late_fusion_cs_ge_mobc": 28,
}


def test_summary_reproduces_published_counts(moshkov):
    table = pl.read_csv(moshkov / "predictions" / "scaffold_median_AUC.csv").select(
        pl.col("descriptor").alias(MODALITY),
        pl.col("assay_id").alias(ASSAY),
        "auc",
        "auc_50",
        "auc_70",
        "auc_90",
    )
    # One assay per modality has NaN everywhere; it is reported, never counted.
    with pytest.warns(NaNExcludedWarning, match="119 of 4590 assays have a NaN or null AUROC"):
        summary = summary_table(table.rename({"auc": "auroc"}))
    got = dict(zip(summary[MODALITY], summary["n_auroc_gt_0.9"], strict=True))
    for name, count in PUBLISHED.items():
        assert got[name] == count, name
    # Every threshold count equals the published boolean flags (NaN = not evaluated).
    flags = table.group_by(MODALITY).agg(
        pl.col("auc_50").sum(), pl.col("auc_70").sum(), pl.col("auc_90").sum()
    )
    joined = summary.join(flags, on=MODALITY)
    for t in ("50", "70", "90"):
        assert (joined[f"n_auroc_gt_0.{t[0]}"] == joined[f"auc_{t}"]).all()
    cs = summary.filter(pl.col(MODALITY) == "cp_es_op").row(0, named=True)
    assert cs["n_assays"] == 270 and cs["n_evaluated"] == 269
    assert cs["mean_auroc"] == pytest.approx(
        table.filter(pl.col(MODALITY) == "cp_es_op")["auc"].fill_nan(None).mean(), abs=1e-12
    )


def test_retrospective_union_is_set_union(moshkov):
    table = pl.read_csv(moshkov / "predictions" / "scaffold_median_AUC.csv").select(
        pl.col("descriptor").alias(MODALITY),
        pl.col("assay_id").alias(ASSAY),
        pl.col("auc").alias("auroc"),
    )
    retro = retrospective_union(table, ["cp_es_op", "mobc_es_op"], name="retro_CS+MO")
    well = lambda m: set(  # noqa: E731
        table.filter((pl.col(MODALITY) == m) & (pl.col("auroc").fill_nan(0) > 0.9))[ASSAY]
    )
    assert int(retro["well_predicted"].sum()) == len(well("cp_es_op") | well("mobc_es_op"))
    assert retro[MODALITY][0] == "retro_CS+MO"


def test_late_fusion_is_max():
    preds = _preds(
        [
            ("CS", "c1", "a", 0, 1, 0.2),
            ("MO", "c1", "a", 0, 1, 0.7),
            ("CS", "c2", "a", 0, 0, 0.6),
            ("MO", "c2", "a", 0, 0, 0.1),
            ("CS", "c3", "a", 0, 0, 0.3),  # no MO profile
        ]
    )
    with pytest.warns(UserWarning, match="1 readout"):
        fused = late_fusion(preds, ["CS", "MO"])
    expected = _preds([("late_CS+MO", "c1", "a", 0, 1, 0.7), ("late_CS+MO", "c2", "a", 0, 0, 0.6)])
    assert_frame_equal(fused, expected.select(fused.columns))
    with pytest.raises(InvalidInputError, match="GE"):
        late_fusion(preds, ["CS", "GE"])


def test_early_fusion_concatenates_and_counts_missing():
    mo = pl.DataFrame({COMPOUND: ["a", "b", "c"], "f1": [1.0, 2.0, 3.0]})
    ge = pl.DataFrame({COMPOUND: ["b", "a"], "f1": [20.0, 10.0], "g": [0.5, 0.1]})
    with pytest.warns(UserWarning, match="1 compound"):
        fused = early_fusion({"MO": mo, "GE": ge})
    expected = pl.DataFrame(
        {COMPOUND: ["a", "b"], "MO_f1": [1.0, 2.0], "GE_f1": [10.0, 20.0], "GE_g": [0.1, 0.5]}
    )
    assert_frame_equal(fused, expected)
    with pytest.raises(InvalidInputError, match="one profile per compound"):
        early_fusion({"MO": pl.concat([mo, mo]), "GE": ge})


# ---------------------------------------------------------------- NaN is never above a threshold
NAN = float("nan")


def test_count_above_excludes_and_reports_nan():
    values = [0.95, NAN, 0.9, 0.9000001, None, 0.2]
    with pytest.warns(NaNExcludedWarning, match="2 of 6 AUROCs are NaN or null"):
        assert count_above(values, 0.9, what="AUROCs") == 2  # 0.9 itself is not above
    assert count_above(pl.Series([0.95, 0.91]), 0.9) == 2  # no NaN, no warning
    frame = pl.DataFrame({"auroc": values})
    assert frame.select(above("auroc", 0.9))["auroc"].to_list() == [
        True, False, False, True, False, False,
    ]  # fmt: skip
    # The trap this guards against: a bare comparison counts NaN as above.
    assert frame.select((pl.col("auroc") > 0.9).sum()).item() == 3


def test_count_above_by_returns_excluded_counts():
    frame = pl.DataFrame(
        {"modality": ["cs", "cs", "ge", "ge", "ge"], "auroc": [NAN, 0.95, 0.3, None, 0.99]}
    )
    with pytest.warns(NaNExcludedWarning, match="2 of 5 'auroc' values"):
        got = count_above_by(frame, "auroc", 0.9, by="modality")
    expected = pl.DataFrame(
        {"modality": ["cs", "ge"], "n": [2, 3], "n_above": [1, 1], "n_excluded": [1, 1]}
    )
    assert_frame_equal(got, expected)
    with pytest.raises(MissingColumnsError):
        count_above_by(frame, "auc", 0.9, by="modality")


def test_summary_table_counts_no_nan_assay():
    per_assay = pl.DataFrame(
        {
            MODALITY: ["cs"] * 4 + ["ge"] * 2,
            ASSAY: ["a1", "a2", "a3", "a4", "a1", "a2"],
            "auroc": [0.95, NAN, 0.91, 0.5, NAN, 0.99],
        }
    )
    with pytest.warns(NaNExcludedWarning, match="2 of 6 assays"):
        got = summary_table(per_assay)
    cs = got.filter(pl.col(MODALITY) == "cs").row(0, named=True)
    assert (cs["n_assays"], cs["n_evaluated"], cs["n_auroc_gt_0.9"], cs["n_auroc_gt_0.5"]) == (
        4, 3, 2, 2,
    )  # fmt: skip
    assert cs["mean_auroc"] == pytest.approx((0.95 + 0.91 + 0.5) / 3)
    ge = got.filter(pl.col(MODALITY) == "ge").row(0, named=True)
    assert (ge["n_evaluated"], ge["n_auroc_gt_0.9"]) == (1, 1)


def test_fold_metrics_leave_nan_predictions_out():
    rows = [
        ("cs", "c1", "A", 0, 1, 0.9),
        ("cs", "c2", "A", 0, 0, 0.1),
        ("cs", "c3", "A", 0, 1, NAN),
        ("cs", "c4", "A", 0, 0, 0.4),
    ]
    with pytest.warns(NaNExcludedWarning, match="1 of 4 predictions"):
        got = assay_fold_metrics(_preds(rows))
    row = got.row(0, named=True)
    assert (row["n_positive"], row["n_negative"], row["auroc"]) == (1, 2, 1.0)


def test_assay_metrics_nan_fold_not_well_predicted():
    folds = pl.DataFrame(
        {
            MODALITY: ["cs"] * 3 + ["ge"],
            ASSAY: ["A", "A", "A", "B"],
            FOLD: [0, 1, 2, 0],
            "evaluated": [True, True, True, True],
            "auroc": [0.95, NAN, 0.93, NAN],
            "auprc": [0.5, 0.4, NAN, NAN],
        }
    )
    with pytest.warns(NaNExcludedWarning, match="3 evaluated fold"):
        got = assay_metrics(folds)
    a = got.filter(pl.col(ASSAY) == "A").row(0, named=True)
    assert a["auroc"] == pytest.approx(0.94) and a["auprc"] == pytest.approx(0.45)
    assert a["well_predicted"] is True
    b = got.filter(pl.col(ASSAY) == "B").row(0, named=True)
    assert b["auroc"] is None and b["well_predicted"] is False
