"""TreeBaseline: one RandomForest / LightGBM per assay, NaN masked, grid chosen on validation."""

from __future__ import annotations

import numpy as np
import pytest

from cellframe.activity.chem import morgan_fingerprints
from cellframe.activity.descriptors import DescriptorNormalizer, rdkit_descriptors
from cellframe.activity.trees import ConstantAssayWarning, TreeBaseline, tree_features
from cellframe.errors import InvalidChoiceError, InvalidInputError
from tests.activity.conftest import SMILES, synthetic_matrix


@pytest.fixture(scope="module")
def data():
    m, x = synthetic_matrix(n=240, n_assays=3, seed=1)
    idx = np.arange(240)
    return x, m.values, idx[:160], idx[160:200], idx[200:]


def test_random_forest_equals_scikit_learn_per_assay(data):
    from sklearn.ensemble import RandomForestClassifier

    x, y, tr, _, te = data
    model = TreeBaseline("rf", params={"n_estimators": 20}, grid={}, seed=5).fit(x[tr], y[tr])
    got = model.predict_proba(x[te])
    for j in range(y.shape[1]):
        obs = tr[~np.isnan(y[tr, j])]  # NaN readouts left out of that assay's model only
        ref = RandomForestClassifier(n_estimators=20, max_features="sqrt", random_state=5 + j)
        ref.fit(x[obs], y[obs, j].astype(int))
        np.testing.assert_allclose(got[:, j], ref.predict_proba(x[te])[:, 1], atol=1e-6)


def test_grid_point_chosen_on_validation_only(data):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import roc_auc_score

    x, y, tr, va, te = data
    grid = {"min_samples_leaf": [1, 40]}  # 40 of ~130 readouts: a much weaker forest
    model = TreeBaseline("rf", params={"n_estimators": 20}, grid=grid).fit(
        x[tr], y[tr], validation=(x[va], y[va])
    )
    assert [p["min_samples_leaf"] for p in model.search_] == [1, 40]
    scores = [p["validation_auroc"] for p in model.search_]
    assert model.best_params_ == {"min_samples_leaf": int(1 + 39 * np.argmax(scores))}
    # the recorded validation score is the mean per-assay AUROC of that grid point
    leaf = model.best_params_["min_samples_leaf"]
    ref = []
    for j in range(y.shape[1]):
        obs, vobs = tr[~np.isnan(y[tr, j])], va[~np.isnan(y[va, j])]
        rf = RandomForestClassifier(n_estimators=20, min_samples_leaf=leaf, random_state=j)
        rf.fit(x[obs], y[obs, j].astype(int))
        ref.append(roc_auc_score(y[vobs, j], rf.predict_proba(x[vobs])[:, 1]))
    assert max(scores) == pytest.approx(np.mean(ref), abs=1e-12)
    # the readouts depend on the features: the chosen forest ranks test compounds well
    prob = model.predict_proba(x[te])
    obs = ~np.isnan(y[te, 0])
    assert roc_auc_score(y[te][obs, 0], prob[obs, 0]) > 0.85


def test_lightgbm_stops_early_on_the_validation_readouts(data):
    from lightgbm import LGBMClassifier, early_stopping

    x, y, tr, va, te = data
    params = {"n_estimators": 200, "num_leaves": 7, "min_child_samples": 5}
    model = TreeBaseline("lgbm", params=params, grid={}).fit(
        x[tr], y[tr], validation=(x[va], y[va])
    )
    j = 1
    obs, vobs = tr[~np.isnan(y[tr, j])], va[~np.isnan(y[va, j])]
    ref = LGBMClassifier(
        n_estimators=200, learning_rate=0.05, num_leaves=7, min_child_samples=5,
        subsample=0.8, subsample_freq=1, colsample_bytree=0.3, reg_lambda=1.0,
        random_state=j, n_jobs=1, verbose=-1,
    )  # fmt: skip
    ref.fit(
        x[obs], y[obs, j].astype(int), eval_X=(x[vobs],), eval_y=(y[vobs, j].astype(int),),
        eval_metric="auc", callbacks=[early_stopping(50, first_metric_only=True, verbose=False)],
    )  # fmt: skip
    assert model.models_[j].best_iteration_ == ref.best_iteration_ < 200
    np.testing.assert_allclose(
        model.predict_proba(x[te])[:, j], ref.predict_proba(x[te])[:, 1], atol=1e-6
    )


def test_one_class_assay_predicts_its_training_rate_with_a_warning(data):
    x, y, tr, _, te = data
    y = y.copy()
    y[:, 2] = np.where(np.isnan(y[:, 2]), np.nan, 0.0)  # no hit at all in assay 2
    with pytest.warns(ConstantAssayWarning, match="1 of 3 assays"):
        model = TreeBaseline("rf", params={"n_estimators": 5}, grid={}).fit(x[tr], y[tr])
    prob = model.predict_proba(x[te])
    assert (prob[:, 2] == 0.0).all() and prob[:, 0].std() > 0  # control: a real model


def test_settings_and_misuse_are_refused(data):
    x, y, tr, va, _ = data
    with pytest.raises(InvalidChoiceError, match=r"'xgb'.*\['lgbm', 'rf'\]"):
        TreeBaseline("xgb")
    with pytest.raises(InvalidInputError, match="non-empty list"):
        TreeBaseline("rf", grid={"min_samples_leaf": 3})
    with pytest.raises(InvalidInputError, match=r"validation=.*grid=\{\}"):
        TreeBaseline("rf").fit(x[tr], y[tr])
    with pytest.raises(InvalidInputError, match="not fitted"):
        TreeBaseline("rf").predict_proba(x)
    with pytest.raises(InvalidInputError, match="validation features have 3 columns"):
        TreeBaseline("rf", grid={"min_samples_leaf": [1]}).fit(
            x[tr], y[tr], validation=(x[va][:, :3], y[va])
        )


def test_tree_features_are_counts_and_training_cdf():
    desc = rdkit_descriptors(SMILES, names=["MolWt", "TPSA", "NumHDonors"])
    train = np.arange(8)
    x = tree_features(SMILES, train=train, descriptors=desc)
    assert x.shape == (12, 2048 + 3) and x.dtype == np.float32
    counts = morgan_fingerprints(SMILES, counts=True)
    np.testing.assert_array_equal(x[:, :2048], counts)
    assert counts.max() > 1  # counts, not bits
    expected = DescriptorNormalizer(fill_value=np.nan).fit(desc[train]).transform(desc)
    np.testing.assert_allclose(x[:, 2048:], expected, atol=1e-7)
    # the heaviest test molecule is above every training one: CDF 1.0, from training only
    assert x[np.argmax(desc[:, 0]), 2048] == 1.0
    with pytest.raises(InvalidInputError, match="shape \\(3, 3\\) for 12 molecules"):
        tree_features(SMILES, descriptors=desc[:3])


@pytest.mark.parametrize("model", ["rf", "lgbm"])
def test_misspelt_parameters_are_refused_when_made(model):
    with pytest.raises(InvalidInputError, match=r"unknown parameter\(s\) \['n_estimator'\]"):
        TreeBaseline(model, params={"n_estimator": 10})
    with pytest.raises(InvalidInputError, match=r"\['min_leaf'\].*min_child_samples|min_samples"):
        TreeBaseline(model, grid={"min_leaf": [1, 3]})
    TreeBaseline(model, params={"n_estimators": 10}, grid={})  # control: a real name is taken


def test_ensemble_of_seeds_in_train_holdout_is_the_mean_of_its_members():
    import warnings

    import polars as pl

    from cellframe.activity import Ensemble, train_holdout
    from cellframe.activity.matrix import read_assay_subset
    from cellframe.demo import demo_data_dir

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = read_assay_subset(demo_data_dir() / "moleculenet" / "tox21.csv.gz", 200, ["SR-MMP"])
        members = [TreeBaseline("rf", params={"n_estimators": 8}, grid={}, seed=s) for s in (0, 1)]
        res = train_holdout(
            m, {"ens": Ensemble(members)}, split="random", descriptors=np.zeros((200, 0))
        )
    kept = np.flatnonzero(res.partition >= 0)
    part = res.partition[kept]
    smiles = [m.smiles[i] for i in kept]
    x = tree_features(smiles, train=np.flatnonzero(part == 0), descriptors=np.zeros((len(kept), 0)))
    y = m.values[kept]
    test = np.flatnonzero(part == 2)
    probs = [
        TreeBaseline("rf", params={"n_estimators": 8}, grid={}, seed=s)
        .fit(x[part == 0], y[part == 0])
        .predict_proba(x[test])[:, 0]
        for s in (0, 1)
    ]
    ref = pl.DataFrame(
        {
            "smiles": [smiles[i] for i in test],
            "mean": (probs[0] + probs[1]) / 2,
            "half": np.abs(probs[0] - probs[1]) / 2,
        }
    )
    got = res.predictions.join(ref, on="smiles")
    assert got.height == res.predictions.height > 0
    np.testing.assert_allclose(got["probability"], got["mean"], atol=1e-6)
    np.testing.assert_allclose(got["member_spread"], got["half"], atol=1e-6)
    assert got["member_spread"].max() > 0
    with pytest.raises(InvalidInputError, match="different inputs"):
        from cellframe.activity import MultitaskClassifier

        Ensemble([members[0], MultitaskClassifier(encoder="dmpnn")])
