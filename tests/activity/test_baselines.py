"""honest_baselines: a model beside a one-covariate model and a permuted-label control."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from cellframe.activity.baselines import BASELINE_ROLES, honest_baselines, permute_labels
from cellframe.activity.matrix import AssayMatrix
from cellframe.errors import InvalidInputError


@pytest.fixture(scope="module")
def screen():
    """Assay 'toxic' follows the cell count; assay 'target' follows a morphology feature."""
    rng = np.random.default_rng(0)
    n = 600
    count = rng.normal(size=n)
    profiles = rng.normal(size=(n, 8))
    toxic = (count + 0.3 * rng.normal(size=n) < -0.8).astype(float)
    target = (profiles[:, 3] + 0.3 * rng.normal(size=n) > 0.9).astype(float)
    y = np.stack([toxic, target], axis=1)
    y[rng.random(y.shape) < 0.1] = np.nan
    # the profiles carry the cell count too, as real morphology does
    profiles[:, 0] = count + 0.05 * rng.normal(size=n)
    m = AssayMatrix([f"c{i}" for i in range(n)], ["toxic", "target"], y)
    part = np.repeat([0, 1, 2], [360, 60, 180])
    return m, profiles, count, part


def test_three_results_side_by_side_recomputed_from_predictions(screen):
    from sklearn.metrics import roc_auc_score

    m, profiles, count, part = screen
    res = honest_baselines(m, profiles, count, part, split="random")
    assert res.metrics.height == 6 and res.metrics["role"].to_list() == [*BASELINE_ROLES] * 2
    assert set(res.metrics["model"]) == {
        "morphology", "cell count only", "morphology, permuted labels",
    }  # fmt: skip
    for row in res.metrics.iter_rows(named=True):
        p = res.predictions.filter(
            (pl.col("model") == row["model"]) & (pl.col("assay") == row["assay"])
        )
        y = p["readout"].to_numpy()
        assert row["auroc"] == pytest.approx(roc_auc_score(y, p["probability"]), abs=1e-12)
        truth = m.values[part == 2, m.assays.index(row["assay"])]
        assert row["n_test"] == int((~np.isnan(truth)).sum()) == y.size  # real test readouts
    wide = {r["assay"]: r for r in res.side_by_side.iter_rows(named=True)}
    # cell count alone predicts the cytotoxic assay about as well as the profiles ...
    assert wide["toxic"]["auroc_covariate_only"] > 0.9
    assert abs(wide["toxic"]["margin_over_covariate"]) < 0.1
    # ... but not the target assay, which the profiles do predict
    assert wide["target"]["auroc_model"] > 0.85 > 0.7 > wide["target"]["auroc_covariate_only"]
    assert wide["target"]["margin_over_covariate"] == pytest.approx(
        wide["target"]["auroc_model"] - wide["target"]["auroc_covariate_only"]
    )
    for r in wide.values():  # permuted labels: chance
        assert abs(r["auroc_permuted_labels"] - 0.5) < 0.15


def test_permute_labels_keeps_counts_missing_and_other_rows():
    y = np.array([[1, 0], [0, np.nan], [np.nan, 1], [0, 1], [1, 0], [0, 1]], dtype=float)
    rows = np.arange(4)
    p = permute_labels(y, rows, seed=3)
    np.testing.assert_array_equal(np.isnan(p), np.isnan(y))
    np.testing.assert_array_equal(p[4:], y[4:])
    assert np.nansum(p[rows], axis=0).tolist() == np.nansum(y[rows], axis=0).tolist()
    big = np.tile([[1.0], [0.0]], (50, 1))
    assert not np.array_equal(permute_labels(big, np.arange(100)), big)  # it does shuffle


def test_shapes_and_empty_parts_are_refused(screen):
    m, profiles, count, part = screen
    with pytest.raises(InvalidInputError, match=r"one row per compound of the matrix \(600\)"):
        honest_baselines(m, profiles[:10], count, part)
    with pytest.raises(InvalidInputError, match="validation part"):
        honest_baselines(m, profiles, count, np.where(part == 1, 0, part))


def test_report_chart_shows_the_model_beside_its_two_controls(screen):
    from cellframe.report.assays import assay_prediction_chart

    m, profiles, count, part = screen
    res = honest_baselines(m, profiles, count, part, split="random")
    published = pl.DataFrame({"modality": ["MO"], "auroc": [0.95]})
    trained = res.metrics.drop("role")
    spec = assay_prediction_chart(published, trained).to_dict()
    text = str(spec)
    assert "beside a one-covariate model and permuted labels" in text
    shown = {(d["model"], d["assay"]): d["auroc"] for d in spec["datasets"].values() for d in d
             if isinstance(d, dict) and "n_test_positive" in d}  # fmt: skip
    expected = {(r["model"], r["assay"]): r["auroc"] for r in res.metrics.iter_rows(named=True)}
    assert shown == pytest.approx(expected)
    # control: the models alone get the plain title
    plain = assay_prediction_chart(published, trained.filter(pl.col("model") == "morphology"))
    assert "permuted labels" not in str(plain.to_dict())


def test_several_permutations_give_the_control_a_mean_and_a_spread(screen):
    from sklearn.metrics import roc_auc_score

    m, profiles, count, part = screen
    res = honest_baselines(m, profiles, count, part, n_permutations=3, seed=7)
    control = res.metrics.filter(pl.col("role") == "permuted labels")
    assert control.height == 2 and (control["n_permutations"] == 3).all()
    for row in control.iter_rows(named=True):
        per = []
        for k in range(3):
            p = res.predictions.filter(
                (pl.col("role") == "permuted labels")
                & (pl.col("permutation") == k)
                & (pl.col("assay") == row["assay"])
            )
            per.append(roc_auc_score(p["readout"], p["probability"]))
        assert row["auroc"] == pytest.approx(np.mean(per), abs=1e-12)
        assert row["auroc_sd"] == pytest.approx(np.std(per, ddof=1), abs=1e-12)
        assert len(set(per)) == 3  # three different permutations (seeds 7, 8, 9)
    # the other roles are trained once and carry no spread
    others = res.metrics.filter(pl.col("role") != "permuted labels")
    assert others["auroc_sd"].is_null().all() and others["n_permutations"].is_null().all()
    with pytest.raises(InvalidInputError, match="n_permutations=0"):
        honest_baselines(m, profiles, count, part, n_permutations=0)
