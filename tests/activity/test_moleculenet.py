"""Real check on MoleculeNet matrices (slow: minutes on 2 cores; run with -m slow)."""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import pytest

from cellframe.activity.chem import morgan_fingerprints, parse_smiles
from cellframe.activity.crossval import predictions_frame
from cellframe.activity.matrix import read_assay_matrix
from cellframe.activity.metrics import assay_fold_metrics
from cellframe.activity.model import MultitaskClassifier, RandomForestBaseline
from cellframe.activity.splits import random_partition


def _load(path):
    m = read_assay_matrix(path)
    with pytest.warns(UserWarning) if "tox21" in str(path) else warnings.catch_warnings():
        mols = parse_smiles(m.smiles)
    ok = np.array([x is not None for x in mols])
    return m.subset(compounds=ok), morgan_fingerprints([x for x in mols if x is not None])


@pytest.mark.slow
def test_tox21_random_forest_reference(moleculenet):
    # data README: RF (300 trees) on Morgan, random 80/10/10, seeds 0-2: 0.813 +- 0.007.
    m, x = _load(moleculenet / "tox21.csv")
    assert m.shape[0] == 7823  # 8 SMILES RDKit cannot parse
    scores = []
    for seed in range(3):
        part = random_partition(m.shape[0], seed=seed)
        train, test = np.flatnonzero(part == 0), np.flatnonzero(part == 2)
        rf = RandomForestBaseline(n_estimators=300, n_jobs=2, seed=seed).fit(
            x[train], m.values[train]
        )
        fm = assay_fold_metrics(
            predictions_frame(m, rf.predict_proba(x[test]), test, fold=0, modality="RF")
        )
        assert fm["evaluated"].all()
        scores.append(fm["auroc"].mean())
    # Measured here: 0.826 (seed 0), 0.824 (seed 1); our random splits are not the
    # reference's, so allow ~3 reference standard deviations around its mean.
    assert abs(np.mean(scores) - 0.813) <= 0.02


@pytest.mark.slow
def test_toxcast_end_to_end_skips_single_class_tasks(moleculenet):
    m, x = _load(moleculenet / "toxcast.csv.gz")
    assert m.shape == (8576, 617)
    part = random_partition(m.shape[0], seed=0)
    train, val, test = (np.flatnonzero(part == k) for k in range(3))
    clf = MultitaskClassifier(hidden_sizes=(512,), dropout=0.2, max_epochs=8, patience=3)
    clf.fit(x[train], m.values[train], validation=(x[val], m.values[val]))
    fm = assay_fold_metrics(
        predictions_frame(m, clf.predict_proba(x[test]), test, fold=0, modality="FFN")
    )
    evaluated = fm.filter(pl.col("evaluated"))
    skipped = fm.height - evaluated.height
    # Tasks with one class in the test part exist in ToxCast and are skipped, not scored.
    assert skipped > 0
    assert evaluated["auroc"].is_between(0, 1).all()
    assert evaluated["auroc"].mean() > 0.6


#: Epochs of the slow D-MPNN run, and the issue #7 target it must reach.
EPOCHS = 30
THRESHOLD = 0.84


@pytest.mark.slow
def test_tox21_dmpnn_with_descriptors_reaches_target(moleculenet):
    # Chemprop's recipe (D-MPNN + CDF-normalised RDKit descriptors, Noam schedule,
    # best epoch by validation AUROC) on one random split: about 3 minutes of
    # descriptors and 6 of training on one core. Measured: validation 0.882, test
    # 0.847 (examples/activity_tox21.py, dmpnn-desc, random:0). Issue #7 target: 0.84.
    import torch

    from cellframe.activity.descriptors import DescriptorNormalizer, rdkit_descriptors
    from cellframe.activity.graph import featurize_molecules

    torch.set_num_threads(1)
    m = read_assay_matrix(moleculenet / "tox21.csv")
    with pytest.warns(UserWarning):
        parsed = parse_smiles(m.smiles)
    m = m.subset(compounds=np.array([x is not None for x in parsed]))
    mols = [x for x in parsed if x is not None]
    part = random_partition(m.shape[0], seed=0)
    train, val, test = (np.flatnonzero(part == k) for k in range(3))
    desc = rdkit_descriptors(mols)
    extra = DescriptorNormalizer().fit(desc[train]).transform(desc)
    g = featurize_molecules(mols, extra=extra)
    clf = MultitaskClassifier(
        encoder="dmpnn",
        hidden_sizes=(300,),
        dropout=0.0,
        lr_schedule="noam",
        max_epochs=EPOCHS,
        patience=EPOCHS,
        device="cpu",
        seed=0,
    )
    clf.fit(g.subset(train), m.values[train], validation=(g.subset(val), m.values[val]))
    fm = assay_fold_metrics(
        predictions_frame(m, clf.predict_proba(g.subset(test)), test, fold=0, modality="DMPNN")
    )
    assert fm["evaluated"].all()
    assert fm["auroc"].mean() >= THRESHOLD
