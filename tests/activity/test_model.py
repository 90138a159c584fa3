"""Multitask classifier, hyper-parameter search, RandomForest baseline, cross-validation."""

from __future__ import annotations

import numpy as np
import pytest

from cellframe.activity.columns import COMPOUND, FOLD, READOUT
from cellframe.activity.crossval import cross_validate
from cellframe.activity.graph import featurize_molecules
from cellframe.activity.model import (
    MultitaskClassifier,
    RandomForestBaseline,
    mean_auroc,
    search_hyperparameters,
)
from cellframe.activity.splits import random_folds
from cellframe.errors import InvalidInputError

from .conftest import synthetic_matrix


def test_ffn_learns_masked_multitask():
    m, x = synthetic_matrix(n=300, n_assays=3, seed=0, missing=0.3)
    train, test = np.arange(200), np.arange(200, 300)
    clf = MultitaskClassifier(hidden_sizes=(16,), dropout=0.0, max_epochs=20, patience=20, lr=1e-2)
    clf.fit(x[train], m.values[train])
    prob = clf.predict_proba(x[test])
    assert prob.shape == (100, 3)
    assert mean_auroc(m.values[test], prob) > 0.9
    # Early stopping kept the best epoch by validation AUROC.
    scores = [h["val_auroc"] for h in clf.history_]
    assert clf.best_score_ == pytest.approx(max(scores))
    assert clf.history_[clf.best_epoch_]["val_auroc"] == pytest.approx(max(scores))


def test_unobserved_assay_gets_no_update():
    # An assay observed nowhere contributes no loss: its output weights stay at their
    # initial values (Adam with zero gradients does not move), while the others train.
    import torch

    m, x = synthetic_matrix(n=120, n_assays=2, seed=2)
    y_extra = np.concatenate([m.values, np.full((120, 1), np.nan, np.float32)], axis=1)
    kw = dict(hidden_sizes=(8,), dropout=0.0, max_epochs=3, patience=10)
    clf = MultitaskClassifier(**kw).fit(x, y_extra)
    torch.manual_seed(0)
    init = MultitaskClassifier(**kw)._build(x.shape[1], 3)
    w0, w1 = init.head[-1].weight.detach(), clf.network_.head[-1].weight.detach()
    b0, b1 = init.head[-1].bias.detach(), clf.network_.head[-1].bias.detach()
    torch.testing.assert_close(w1[2], w0[2], rtol=0, atol=0)
    assert b1[2] == b0[2]
    assert not torch.equal(w1[0], w0[0])


def test_dmpnn_classifier_learns_nitrogen():
    rng = np.random.default_rng(0)
    tails = ["O", "N", "Cl", "C(=O)O", "N(C)C", "OC", "C#N", "F", "S", "NC(=O)C"]
    smiles = [
        f"{'C' * int(rng.integers(1, 6))}({t}){'C' * int(rng.integers(0, 3))}" for t in tails * 8
    ]
    y = np.array([[float("N" in s)] for s in smiles], dtype=np.float32)
    graphs = featurize_molecules(smiles)
    clf = MultitaskClassifier(
        encoder="dmpnn",
        encoder_hidden=32,
        hidden_sizes=(16,),
        dropout=0.0,
        max_epochs=15,
        patience=15,
        lr=3e-3,
        batch_size=16,
    )
    clf.fit(graphs.subset(np.arange(60)), y[:60])
    prob = clf.predict_proba(graphs.subset(np.arange(60, 80)))
    assert mean_auroc(y[60:], prob) > 0.95
    with pytest.raises(InvalidInputError, match="GraphSet"):
        MultitaskClassifier(encoder="dmpnn").fit(np.zeros((10, 3)), np.zeros((10, 1)))


def test_search_picks_best_validation_score():
    m, x = synthetic_matrix(n=150, n_assays=2, seed=3)
    result = search_hyperparameters(
        x,
        m.values,
        grid={"hidden_sizes": [(4,), (16,)], "lr": [1e-4, 3e-3]},
        base=MultitaskClassifier(max_epochs=5, patience=5, dropout=0.0),
    )
    assert len(result.table) == 4
    best_row = max(result.table, key=lambda r: r["val_score"])
    assert result.best_params == {k: best_row[k] for k in ("hidden_sizes", "lr")}
    assert result.best.best_score_ == pytest.approx(best_row["val_score"])


def test_random_forest_matches_sklearn():
    from sklearn.ensemble import RandomForestClassifier

    m, x = synthetic_matrix(n=100, n_assays=3, seed=4)
    y = m.values.copy()
    y[:, 2] = np.where(np.isnan(y[:, 2]), np.nan, 0.0)  # one class only -> constant
    with pytest.warns(UserWarning, match="1 of 3 assays have one class"):
        rf = RandomForestBaseline(n_estimators=20, seed=5).fit(x, y)
    prob = rf.predict_proba(x[:10])
    for j in range(2):
        obs = ~np.isnan(y[:, j])
        ref = RandomForestClassifier(n_estimators=20, random_state=5 + j).fit(
            x[obs], y[obs, j].astype(int)
        )
        np.testing.assert_allclose(prob[:, j], ref.predict_proba(x[:10])[:, 1], rtol=0, atol=1e-7)
    np.testing.assert_array_equal(prob[:, 2], 0.0)
    assert rf.n_constant_ == 1


def test_cross_validate_predicts_each_observed_readout_once():
    m, x = synthetic_matrix(n=90, n_assays=2, seed=6)
    folds = random_folds(90, n_folds=3, seed=0)
    res = cross_validate(
        m, x, folds, model=RandomForestBaseline(n_estimators=10), modality="CS_RF", progress=False
    )
    p = res.predictions
    assert p.height == int(m.observed.sum())
    fold_of = dict(zip(m.compounds, folds.tolist(), strict=True))
    assert all(fold_of[c] == f for c, f in zip(p[COMPOUND], p[FOLD], strict=True))
    i = m.compounds.index(p[COMPOUND][0])
    j = m.assays.index(p["Metadata_Assay"][0])
    assert p[READOUT][0] == m.values[i, j]
    assert res.hyperparameters.height == 3
    with pytest.raises(InvalidInputError, match="one row per compound"):
        cross_validate(m, x[:10], folds, progress=False)


def test_noam_learning_rate_hand_values():
    from cellframe.activity.model import noam_learning_rate

    kw = dict(steps_per_epoch=10, total_epochs=4, warmup_epochs=2.0)
    # Warm-up: linear from 1e-4 to 1e-3 over 20 steps -> 1e-4 + 9e-4 * step / 20.
    assert noam_learning_rate(0, **kw) == pytest.approx(1e-4, rel=1e-12)
    assert noam_learning_rate(5, **kw) == pytest.approx(3.25e-4, rel=1e-12)
    assert noam_learning_rate(20, **kw) == pytest.approx(1e-3, rel=1e-12)
    # Decay: 1e-3 * 0.1 ** ((step - 20) / 20) over the remaining 20 steps.
    assert noam_learning_rate(30, **kw) == pytest.approx(1e-3 * 0.1**0.5, rel=1e-12)
    assert noam_learning_rate(40, **kw) == pytest.approx(1e-4, rel=1e-12)
    assert noam_learning_rate(99, **kw) == pytest.approx(1e-4, rel=1e-12)  # stays at the end
    rates = [noam_learning_rate(s, **kw) for s in range(40)]
    assert np.argmax(rates) == 20
    with pytest.raises(ValueError, match="warmup_epochs"):
        noam_learning_rate(0, steps_per_epoch=10, total_epochs=2, warmup_epochs=2.0)
    with pytest.raises(ValueError, match="positive"):
        noam_learning_rate(0, steps_per_epoch=0, total_epochs=2)


def test_classifier_follows_noam_schedule():
    from cellframe.activity.model import noam_learning_rate

    m, x = synthetic_matrix(n=120, n_assays=2, seed=1)
    clf = MultitaskClassifier(
        hidden_sizes=(8,),
        max_epochs=5,
        patience=10,
        lr=2e-3,
        lr_schedule="noam",
        warmup_epochs=1.0,
        batch_size=50,
    )
    clf.fit(x[:100], m.values[:100], validation=(x[100:], m.values[100:]))
    # 100 training compounds in batches of 50: 2 steps per epoch; the epoch's last
    # step is 2 * epoch + 1; peak 2e-3, start and end 2e-4.
    want = [
        noam_learning_rate(
            2 * e + 1,
            steps_per_epoch=2,
            total_epochs=5,
            warmup_epochs=1.0,
            init_lr=2e-4,
            max_lr=2e-3,
            final_lr=2e-4,
        )
        for e in range(5)
    ]
    np.testing.assert_allclose([h["lr"] for h in clf.history_], want, rtol=1e-9)
    constant = MultitaskClassifier(hidden_sizes=(8,), max_epochs=2, lr=3e-3).fit(x, m.values)
    assert [h["lr"] for h in constant.history_] == [3e-3, 3e-3]
    calls = []
    custom = MultitaskClassifier(
        hidden_sizes=(8,), max_epochs=1, lr_schedule=lambda s, n, e: calls.append((s, n, e)) or 1e-3
    ).fit(x[:100], m.values[:100], validation=(x[100:], m.values[100:]))
    assert custom.history_[0]["lr"] == 1e-3
    assert calls[1:] == [(0, 2, 1), (1, 2, 1)]  # first call checks the settings up front
    with pytest.raises(ValueError, match="valid: \\['constant', 'noam'\\]"):
        MultitaskClassifier(lr_schedule="cosine", max_epochs=1).fit(x, m.values)


def test_dmpnn_uses_normalized_descriptors_with_noam():
    # The label is a molecule-level descriptor (molecular weight above the training
    # median); the CDF-normalised descriptors reach the head beside the encoding.
    from cellframe.activity.descriptors import DescriptorNormalizer, rdkit_descriptors

    rng = np.random.default_rng(1)
    smiles = ["C" * int(rng.integers(1, 12)) + t for t in ["O", "N", "Cl", "F", "C(=O)O"] * 16]
    desc = rdkit_descriptors(smiles, names=["MolWt", "HeavyAtomCount"])
    train, test = np.arange(60), np.arange(60, 80)
    y = (desc[:, :1] > np.median(desc[train, 0])).astype(np.float32)
    extra = DescriptorNormalizer().fit(desc[train]).transform(desc)
    graphs = featurize_molecules(smiles, extra=extra)
    clf = MultitaskClassifier(
        encoder="dmpnn",
        encoder_hidden=16,
        hidden_sizes=(16,),
        dropout=0.0,
        max_epochs=25,
        patience=25,
        lr=1e-2,
        lr_schedule="noam",
        batch_size=16,
        seed=0,
    )
    clf.fit(graphs.subset(train), y[train])
    assert clf.network_.encoder.out_features == 16 + 2
    assert mean_auroc(y[test], clf.predict_proba(graphs.subset(test))) > 0.95


def test_noam_settings_are_refused_where_they_are_passed():
    from cellframe.activity.model import noam_learning_rate
    from cellframe.errors import InvalidChoiceError

    # The schedule itself: a cellframe error naming both parameters and the valid range.
    with pytest.raises(InvalidInputError, match=r"warmup_epochs \(2\.0\).*total_epochs \(2\)"):
        noam_learning_rate(0, steps_per_epoch=10, total_epochs=2, warmup_epochs=2.0)
    with pytest.raises(InvalidInputError, match="steps_per_epoch"):
        noam_learning_rate(0, steps_per_epoch=0, total_epochs=2)
    # The classifier: refused at construction, before any data or training.
    with pytest.raises(InvalidInputError) as info:
        MultitaskClassifier(lr_schedule="noam", max_epochs=2, warmup_epochs=2.0)
    msg = str(info.value)
    assert "max_epochs=2" in msg and "warmup_epochs=2.0" in msg and "0 <= warmup_epochs < 2" in msg
    with pytest.raises(InvalidInputError, match="warmup_epochs=-1"):
        MultitaskClassifier(lr_schedule="noam", warmup_epochs=-1.0)
    with pytest.raises(InvalidInputError, match="max_epochs=0"):
        MultitaskClassifier(max_epochs=0)
    with pytest.raises(InvalidChoiceError, match="'constant', 'noam'"):
        MultitaskClassifier(lr_schedule="cosine")
    with pytest.raises(InvalidChoiceError, match="'dmpnn', 'ffn'"):
        MultitaskClassifier(encoder="gnn")
    # Valid but unusual: no warm-up, the shortest noam run, a long warm-up without noam.
    assert noam_learning_rate(0, steps_per_epoch=1, total_epochs=1, warmup_epochs=0.0) == 1e-3
    assert MultitaskClassifier(lr_schedule="noam", max_epochs=3, warmup_epochs=2.0).max_epochs == 3
    assert MultitaskClassifier(lr_schedule="constant", max_epochs=1, warmup_epochs=5.0).lr == 1e-3
