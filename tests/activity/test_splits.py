"""Folds: the published scaffold split reproduced exactly, same-size k-means, random."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cellframe.activity.splits import (
    kmeans_folds,
    make_folds,
    random_folds,
    random_partition,
    scaffold_folds,
    scaffold_groups,
    scaffold_partition,
)
from cellframe.errors import InvalidInputError

from .conftest import SMILES


def test_scaffold_reproduces_published_folds(moshkov):
    smiles = [
        ln.strip() for ln in (moshkov / "assay_data" / "smiles.txt").read_text().splitlines()[1:]
    ]
    kept = np.load(moshkov / "misc" / "compounds16978to16170.npy")
    kept_smiles = [smiles[i] for i in kept]
    assert len(kept_smiles) == 16170
    groups = scaffold_groups(kept_smiles)
    assert len(groups) == 3262
    folds = scaffold_folds(kept_smiles)
    assert np.bincount(folds).tolist() == [3234] * 5
    published = np.load(moshkov / "splitting" / "scaffold_based_split.npz")["features"]
    mine = [set(np.flatnonzero(folds == k)) for k in range(5)]
    # Fold order differs: every published fold equals exactly one of ours.
    matches = [[int(set(p.tolist()) == f) for f in mine] for p in published]
    assert np.array(matches).sum(axis=1).tolist() == [1] * 5
    assert np.array(matches).sum(axis=0).tolist() == [1] * 5


def test_scaffold_folds_never_split_a_scaffold():
    from cellframe.activity.chem import murcko_scaffolds

    folds = scaffold_folds(SMILES, n_folds=3)
    scaffolds = murcko_scaffolds(SMILES)
    for s in set(scaffolds):
        assert len({f for f, t in zip(folds, scaffolds, strict=True) if t == s}) == 1
    # Hand-checked: groups benzene(3), pyridine(2), cyclohexane(2), acyclic(2), naphthalene(2), 1
    # go largest first into the smallest fold.
    assert np.bincount(folds).tolist() == [4, 4, 4]


def test_random_folds_balanced_and_seeded():
    f = random_folds(103, n_folds=5, seed=3)
    assert sorted(np.bincount(f).tolist()) == [20, 20, 21, 21, 21]
    np.testing.assert_array_equal(f, random_folds(103, n_folds=5, seed=3))
    assert not np.array_equal(f, random_folds(103, n_folds=5, seed=4))


def test_kmeans_equal_sizes_recovers_blobs():
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=20, size=(5, 8))
    truth = np.repeat(np.arange(5), 30)
    x = centres[truth] + rng.normal(size=(150, 8))
    folds = kmeans_folds(x, n_folds=5)
    assert np.bincount(folds).tolist() == [30] * 5
    # Same partition as the true blobs (labels may be permuted).
    for k in range(5):
        assert len(set(folds[truth == k])) == 1


def test_kmeans_unequal_blobs_still_equal_sizes():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, 1, (70, 3)), rng.normal(10, 1, (31, 3))])
    folds = kmeans_folds(x, n_folds=2)
    assert sorted(np.bincount(folds).tolist()) == [50, 51]
    # The small blob lies whole in one fold.
    assert len(set(folds[70:])) == 1
    with pytest.raises(InvalidInputError, match="NaN"):
        kmeans_folds(np.array([[np.nan, 1.0]] * 10))


def test_partitions():
    part = random_partition(1000, seed=0)
    assert np.bincount(part).tolist() == [800, 100, 100]
    from cellframe.activity.chem import murcko_scaffolds

    smiles = SMILES * 1
    part = scaffold_partition(smiles, fractions=(0.5, 0.25, 0.25))
    scaffolds = murcko_scaffolds(smiles)
    for s in set(scaffolds):
        assert len({p for p, t in zip(part, scaffolds, strict=True) if t == s}) == 1
    assert np.bincount(part, minlength=3)[0] <= 6
    with pytest.raises(InvalidInputError, match="fractions"):
        random_partition(10, fractions=(0.5, 0.5, 0.5))


def test_make_folds_registry():
    np.testing.assert_array_equal(make_folds("random", n=20, seed=1), random_folds(20, seed=1))
    np.testing.assert_array_equal(
        make_folds("scaffold", smiles=SMILES, n_folds=3), scaffold_folds(SMILES, n_folds=3)
    )
    custom = make_folds(lambda **kw: np.arange(kw["n"]) % kw["n_folds"], n=6, n_folds=2)
    assert custom.tolist() == [0, 1, 0, 1, 0, 1]
    with pytest.raises(ValueError, match=r"valid: \['kmeans', 'random', 'scaffold'\]"):
        make_folds("cluster", n=10)
    with pytest.raises(InvalidInputError, match="needs a feature table"):
        make_folds("kmeans", n=10)
    with pytest.raises(InvalidInputError, match="at least 2"):
        random_folds(10, n_folds=1)


@settings(max_examples=10, deadline=None)
@given(n=st.integers(5, 200), k=st.integers(2, 5), seed=st.integers(0, 10))
def test_random_and_kmeans_fold_sizes_property(n, k, seed):
    sizes = np.bincount(random_folds(n, n_folds=k, seed=seed), minlength=k)
    assert sizes.max() - sizes.min() <= 1 and sizes.sum() == n
    x = np.random.default_rng(seed).normal(size=(n, 3))
    sizes = np.bincount(kmeans_folds(x, n_folds=k, seed=seed, max_iter=5), minlength=k)
    assert sizes.max() - sizes.min() <= 1 and sizes.sum() == n
