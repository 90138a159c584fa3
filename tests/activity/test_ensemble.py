"""The calibrated ensemble: Platt scaling, averaging, choice on validation only, CLI reach."""

from __future__ import annotations

import math
import warnings

import numpy as np
import polars as pl
import pytest
from scipy.optimize import minimize
from sklearn.metrics import roc_auc_score

from cellframe.activity import CalibratedEnsemble, train_holdout
from cellframe.activity.ensemble import UncalibratedAssayWarning, platt_fit, platt_transform
from cellframe.activity.holdout import WithDescriptors
from cellframe.activity.holdout_experiment import holdout_models
from cellframe.activity.matrix import read_assay_subset
from cellframe.activity.trees import TreeBaseline, tree_features
from cellframe.cli import main
from cellframe.demo import demo_data_dir
from cellframe.errors import InvalidChoiceError, InvalidInputError
from cellframe.store import Store
from tests.activity.test_cli_holdout import _challenge


def test_platt_by_hand():
    # Two points, one per class: Platt's targets are 2/3 and 1/3, so the fit meets
    # them exactly: sigmoid(a * ln 4) = 2/3 -> a = ln 2 / ln 4 = 0.5, b = 0 by symmetry.
    a, b = platt_fit(np.array([0.2, 0.8]), np.array([0, 1]))
    assert a == pytest.approx(0.5, abs=1e-9) and b == pytest.approx(0.0, abs=1e-9)
    # calibrated 0.9: sigmoid(0.5 * ln 9) = sigmoid(ln 3) = 3 / 4
    got = platt_transform(np.array([0.9, 0.5, 0.1]), a, b)
    np.testing.assert_allclose(got, [0.75, 0.5, 0.25], atol=1e-12)


def test_platt_minimises_its_loss_and_never_inverts():
    rng = np.random.default_rng(1)
    p = rng.uniform(0.01, 0.99, 300)
    t = (rng.uniform(size=300) < p**2).astype(float)
    a, b = platt_fit(p, t)
    n1, n0 = t.sum(), t.size - t.sum()
    target = np.where(t == 1, (n1 + 1) / (n1 + 2), 1 / (n0 + 2))
    x = np.log(p / (1 - p))

    def loss(w):
        q = 1 / (1 + np.exp(-(w[0] * x + w[1])))
        return -np.sum(target * np.log(q) + (1 - target) * np.log(1 - q))

    ref = minimize(loss, [1.0, 0.0], method="Nelder-Mead",
                   options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000}).x  # fmt: skip
    np.testing.assert_allclose([a, b], ref, atol=1e-5)
    assert a > 0
    # a member that ranks validation backwards becomes the smoothed hit rate, not inverted
    a, b = platt_fit(1 - p, t)
    assert a == 0.0
    assert platt_transform(np.array([0.3]), a, b)[0] == pytest.approx(target.mean())  # its MLE
    with pytest.raises(InvalidInputError, match="both classes"):
        platt_fit(p[:3], np.zeros(3))


#: Logits of a LightGBM model on one Tox21 validation assay (random split 0, NR-AR),
#: rounded to 0.1: (logit, count) of the non-hits and the hits. Plain Newton steps
#: from the hit rate diverge here (a ~ 1e14); the damped ones converge.
LGBM_NEGATIVES = [(-4.0, 19), (-3.9, 142), (-3.8, 129), (-3.7, 87), (-3.6, 64), (-3.5, 60),
                  (-3.4, 56), (-3.3, 30), (-3.2, 32), (-3.1, 17), (-3.0, 23), (-2.9, 9),
                  (-2.8, 9), (-2.7, 5), (-2.6, 8), (-2.5, 1), (-2.4, 3), (-2.3, 3), (-2.2, 2),
                  (-2.0, 2), (-1.9, 1), (-1.6, 1), (-1.5, 1), (-1.3, 1), (-1.1, 1)]  # fmt: skip
LGBM_HITS = [(-3.3, 4), (-3.2, 3), (-3.0, 1), (-2.7, 1), (0.1, 4), (0.2, 1), (0.4, 1), (0.5, 1),
             (0.7, 1), (0.8, 2), (1.0, 3), (1.1, 1)]  # fmt: skip


def test_platt_converges_on_concentrated_lightgbm_probabilities():
    x = np.array([v for v, n in LGBM_NEGATIVES + LGBM_HITS for _ in range(n)])
    t = np.array([0.0] * sum(n for _, n in LGBM_NEGATIVES) + [1.0] * sum(n for _, n in LGBM_HITS))
    p = 1 / (1 + np.exp(-x))
    a, b = platt_fit(p, t)
    n1, n0 = t.sum(), t.size - t.sum()
    target = np.where(t == 1, (n1 + 1) / (n1 + 2), 1 / (n0 + 2))

    def loss(w):
        z = w[0] * x + w[1]
        return np.sum(np.logaddexp(0, z) - target * z)

    ref = minimize(loss, [1.0, 0.0], method="Nelder-Mead",
                   options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000}).x  # fmt: skip
    np.testing.assert_allclose([a, b], ref, atol=1e-4)
    assert 0 < a < 10
    # a monotone map: the assay's AUROC is unchanged by calibration
    assert roc_auc_score(t, platt_transform(p, a, b)) == pytest.approx(roc_auc_score(t, p))


def test_average_and_spread_by_hand():
    # Each member ranks 3 of the 4 validation pairs right (AUROC 0.75); their average
    # ranks all 4. Both hold the same (probability, label) pairs, so one Platt map f.
    y_val = np.array([[0.0], [0.0], [1.0], [1.0]])
    val = {"a": np.array([[0.1], [0.6], [0.4], [0.9]]), "b": np.array([[0.6], [0.1], [0.9], [0.4]])}
    ens = CalibratedEnsemble().select(val, y_val)
    assert ens.members_ == ["a", "b"]
    assert [(c["members"], round(c["validation_auroc"], 6)) for c in ens.search_] == [
        (["a", "b"], 1.0), (["a"], 0.75), (["b"], 0.75),
    ]  # fmt: skip
    a, b = platt_fit(val["a"][:, 0], y_val[:, 0])
    np.testing.assert_allclose(ens.calibration_["a"], [[a, b]], atol=1e-12)
    np.testing.assert_allclose(ens.calibration_["b"], [[a, b]], atol=1e-12)
    prob, spread = ens.combine({"a": np.array([[0.9]]), "b": np.array([[0.5]])})
    fa, fb = platt_transform(np.array([0.9, 0.5]), a, b)
    assert prob[0, 0] == pytest.approx((fa + fb) / 2) and spread[0, 0] == pytest.approx(
        abs(fa - fb) / 2
    )
    # uncalibrated: the plain mean and population sd, by hand
    raw = CalibratedEnsemble(calibrate=False).select(val, y_val)
    assert raw.members_ == ["a", "b"]  # raw mean [0.35, 0.35, 0.65, 0.65]: AUROC 1
    prob, spread = raw.combine({"a": np.array([[0.2], [0.6]]), "b": np.array([[0.4], [1.0]])})
    np.testing.assert_allclose(prob[:, 0], [0.3, 0.8])
    np.testing.assert_allclose(spread[:, 0], [0.1, 0.2])


def _members(rng, y, good):
    """A member that ranks ``y`` right (``good``) or at random."""
    noise = rng.uniform(size=y.shape)
    return np.clip(0.3 * y + 0.7 * noise, 0, 1) if good else noise


def test_member_great_on_test_but_bad_on_validation_is_not_chosen():
    rng = np.random.default_rng(0)
    y_val = (rng.uniform(size=(200, 3)) < 0.3).astype(float)
    y_test = (rng.uniform(size=(200, 3)) < 0.3).astype(float)
    y_val[rng.uniform(size=y_val.shape) < 0.1] = np.nan  # missing readouts are masked
    # "lucky" ranks the validation compounds backwards, the test compounds almost perfectly
    val = {"steady": _members(rng, np.nan_to_num(y_val), True),
           "lucky": _members(rng, 1 - np.nan_to_num(y_val), True)}  # fmt: skip
    test = {"steady": _members(rng, y_test, False),
            "lucky": np.clip(0.9 * y_test + 0.1 * rng.uniform(size=y_test.shape), 0, 1)}  # fmt: skip
    ens = CalibratedEnsemble().select(val, y_val)
    assert ens.members_ == ["steady"]
    assert ens.search_[0] == {
        "members": ["steady"],
        "validation_auroc": pytest.approx(ens.search_[0]["validation_auroc"]),
        "chosen": True,
    }
    assert [c["members"] for c in ens.search_][-1] == ["lucky"]
    prob, spread = ens.combine(test)
    assert (spread == 0).all()  # one member
    lucky_auc = np.mean([roc_auc_score(y_test[:, j], test["lucky"][:, j]) for j in range(3)])
    ens_auc = np.mean([roc_auc_score(y_test[:, j], prob[:, j]) for j in range(3)])
    assert lucky_auc > 0.95 and ens_auc < 0.7  # the test part played no part in the choice
    # control: when the lucky member is the good one on validation, it is chosen
    val_swapped = {"steady": val["lucky"], "lucky": val["steady"]}
    assert CalibratedEnsemble().select(val_swapped, y_val).members_ == ["lucky"]


def test_per_assay_choice_and_one_class_assays():
    rng = np.random.default_rng(3)
    y = (rng.uniform(size=(150, 3)) < 0.4).astype(float)
    y[:, 2] = 0.0  # one class on validation: no AUROC, no calibration
    val = {
        "x": np.column_stack(
            [_members(rng, y[:, 0], True), _members(rng, 1 - y[:, 1], True), rng.uniform(size=150)]
        ),
        "z": np.column_stack(
            [_members(rng, 1 - y[:, 0], True), _members(rng, y[:, 1], True), rng.uniform(size=150)]
        ),
    }  # fmt: skip  (each member ranks one assay right, the other backwards)
    with pytest.warns(UncalibratedAssayWarning, match="1 of 3 assays"):
        ens = CalibratedEnsemble(per_assay=True).select(val, y)
    assert ens.chosen_[:2].tolist() == [[True, False], [False, True]]
    assert ens.members_ == ["x", "z"]
    np.testing.assert_array_equal(ens.calibration_["x"][2], [1.0, 0.0])  # raw
    test = {"x": np.full((2, 3), 0.2), "z": np.full((2, 3), 0.6)}
    prob, _ = ens.combine(test)
    # assay 0 uses x only, assay 1 z only (each Platt-calibrated), assay 2 the raw
    # probabilities of the globally best subset
    for j, name in ((0, "x"), (1, "z")):
        a, b = ens.calibration_[name][j]
        assert prob[0, j] == pytest.approx(platt_transform(np.array([test[name][0, j]]), a, b)[0])
    chosen2 = [n for n, c in zip(ens.names_, ens.chosen_[2], strict=True) if c]
    assert prob[0, 2] == pytest.approx(np.mean([test[n][0, 2] for n in chosen2]))
    with pytest.raises(InvalidInputError, match="no test predictions of member"):
        ens.combine({"x": test["x"]})
    with pytest.raises(InvalidInputError, match="call select"):
        CalibratedEnsemble().combine(test)


def _tox21_subset():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_assay_subset(
            demo_data_dir() / "moleculenet" / "tox21.csv.gz", 400, ["NR-AhR", "SR-MMP"]
        )


def test_train_holdout_ensemble_of_mixed_members():
    m = _tox21_subset()
    models = {
        "ensemble": CalibratedEnsemble(
            {
                "rf": TreeBaseline("rf", params={"n_estimators": 15}, grid={}),
                "lgbm": TreeBaseline("lgbm", params={"n_estimators": 20}, grid={}),
            }
        ),
        "rf": TreeBaseline("rf", params={"n_estimators": 15}, grid={}),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = train_holdout(m, models, split="random", descriptors=np.zeros((400, 0)))
    p = result.predictions
    e = p.filter(pl.col("model") == "ensemble")
    for col in ("member_spread", "ensemble_spread", "train_similarity", "in_domain", "n_models"):
        assert col in p.columns
    assert (e["n_models"] == 2).all()
    # recomputed: the fitted members' test probabilities, combined by the ensemble
    ens = models["ensemble"]
    kept = np.flatnonzero(result.partition >= 0)
    part = result.partition[kept]
    smiles = [m.smiles[i] for i in kept]
    x = tree_features(smiles, train=np.flatnonzero(part == 0), descriptors=np.zeros((len(kept), 0)))
    test = np.flatnonzero(part == 2)
    prob, spread = ens.combine({k: v.predict_proba(x[test]) for k, v in ens.members.items()})
    row = {m.compounds[kept[i]]: r for r, i in enumerate(test)}
    col = {a: j for j, a in enumerate(m.assays)}
    for c, a, got, s in e.select("compound", "assay", "probability", "member_spread").iter_rows():
        assert got == pytest.approx(prob[row[c], col[a]]) and s == pytest.approx(
            spread[row[c], col[a]]
        )
    assert (e["member_spread"].max() > 0) == (len(ens.members_) == 2)
    # the selection table lists the three candidates, the chosen one flagged
    sel = result.selection
    assert sel.height == 3 and sel.filter("chosen")["members"].to_list() == [
        ", ".join(ens.members_)
    ]
    assert sel["validation_auroc"].to_list() == sorted(sel["validation_auroc"], reverse=True)
    for row_ in result.metrics.filter(pl.col("model") == "ensemble").iter_rows(named=True):
        q = e.filter(pl.col("assay") == row_["assay"])
        assert row_["auroc"] == pytest.approx(roc_auc_score(q["readout"], q["probability"]))
    assert 0.6 < result.metrics.filter(pl.col("model") == "ensemble")["auroc"].mean() <= 1


def test_cli_config_builds_the_recipe():
    models = holdout_models(
        {"best": {"kind": "ensemble", "ensemble": 2},
         "two": {"kind": "ensemble", "members": ["rf-tuned", "lgbm"], "per_assay": True}},
        {"max_epochs": 12, "seed": 5},
    )  # fmt: skip
    best = models["best"]
    assert isinstance(best, CalibratedEnsemble) and list(best.members) == [
        "rf-tuned", "lgbm", "dmpnn-desc",
    ]  # fmt: skip
    net = best.members["dmpnn-desc"].members[1]  # two seeds of the network
    assert isinstance(net, WithDescriptors) and net.model.encoder == "dmpnn"
    assert (net.model.lr_schedule, net.model.hidden_sizes, net.model.dropout) == (
        "noam", (300,), 0.0,
    )  # fmt: skip
    assert net.model.max_epochs == 12 and net.model.seed == 6  # [model] wins; seed + k
    assert best.members["rf-tuned"].seed == 5 and not best.per_assay
    assert models["two"].per_assay and list(models["two"].members) == ["rf-tuned", "lgbm"]
    with pytest.raises(InvalidChoiceError, match="unknown ensemble member"):
        holdout_models({"e": {"kind": "ensemble", "members": ["xgb"]}}, {})
    with pytest.raises(InvalidInputError, match="unknown key"):
        holdout_models({"e": {"kind": "ensemble", "descriptors": True}}, {})


def test_cli_runs_the_ensemble(tmp_path, capsys):
    _challenge(tmp_path)
    (tmp_path / "exp.toml").write_text(
        '[data]\nmatrix = "challenge.csv"\ncompound_column = "ID"\n[split]\ncolumn = "set"\n'
        '[modalities]\nbest = { kind = "ensemble", members = ["rf-tuned", "lgbm"] }\n'
        "[model]\ntree_params = { lgbm = { n_estimators = 30 }, rf = { n_estimators = 20 } }\n"
        "tree_grid = { lgbm = { num_leaves = [7] }, rf = { min_samples_leaf = [1] } }\n"
    )
    store = tmp_path / "s.duckdb"
    assert main(["activity", str(tmp_path / "exp.toml"), "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "validation_auroc" in out
    with Store(store, read_only=True) as s:
        sel = s.read("activity_ensemble")
        preds = s.read("activity_predictions")
        summary = s.read("activity_summary")
    assert sorted(sel["members"]) == ["lgbm", "rf-tuned", "rf-tuned, lgbm"]
    assert sel["chosen"].sum() == 1 and summary["model"].to_list() == ["best"]
    assert {"member_spread", "in_domain", "train_similarity"} <= set(preds.columns)
    assert not math.isnan(summary["mean_auroc"][0])


def test_cli_bad_member_is_one_line(tmp_path, capsys):
    _challenge(tmp_path)
    (tmp_path / "exp.toml").write_text(
        '[data]\nmatrix = "challenge.csv"\ncompound_column = "ID"\n[split]\ncolumn = "set"\n'
        '[modalities]\nbest = { kind = "ensemble", members = "rf-tuned" }\n'
    )
    store = tmp_path / "s.duckdb"
    assert main(["activity", str(tmp_path / "exp.toml"), "--store", str(store), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "members = 'rf-tuned'" in err[0]


def test_fold_split_checks_the_ensemble():
    from cellframe.activity.experiment import ExperimentConfig, validate_config

    # on folds the ensemble is chosen on each fold's inner validation split
    # (tests/activity/test_cli_crossval.py); its settings are checked the same way
    validate_config(
        ExperimentConfig(
            matrix="m.csv", split={"method": "scaffold"}, modalities={"CS": {"kind": "ensemble"}}
        )
    )
    config = ExperimentConfig(
        matrix="m.csv",
        split={"method": "scaffold"},
        modalities={"CS": {"kind": "ensemble", "members": ["xgb"]}},
    )
    with pytest.raises(InvalidChoiceError, match="unknown ensemble member"):
        validate_config(config)
    validate_config(  # the same model on a held-out split is fine
        ExperimentConfig(matrix="m.csv", split={"holdout": True},
                         modalities={"CS": {"kind": "ensemble"}})
    )  # fmt: skip


def test_default_model_of_a_held_out_split_is_the_ensemble(tmp_path):
    from cellframe.activity.experiment import load_config

    (tmp_path / "h.toml").write_text('[data]\nmatrix = "m.csv"\n[split]\nholdout = true\n')
    (tmp_path / "f.toml").write_text('[data]\nmatrix = "m.csv"\n[split]\nmethod = "random"\n')
    held_out = load_config(tmp_path / "h.toml")
    assert held_out.modalities == {"ensemble": {"kind": "ensemble"}}
    model = holdout_models(held_out.modalities, held_out.model)["ensemble"]
    assert isinstance(model, CalibratedEnsemble)
    assert list(model.members) == ["rf-tuned", "lgbm", "dmpnn-desc"]
    assert load_config(tmp_path / "f.toml").modalities == {"CS": {"kind": "morgan"}}  # folds
