"""Single-split training and held-out scoring (``cellframe.activity.holdout``) on real Tox21 data."""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from cellframe.activity import (
    AssayMatrix,
    MultitaskClassifier,
    RandomForestBaseline,
    murcko_scaffolds,
    train_holdout,
)
from cellframe.activity.holdout import (
    UnparsedCompoundsWarning,
    UnscoredAssayWarning,
    mean_auroc_per_model,
)
from cellframe.activity.matrix import read_assay_subset
from cellframe.demo import demo_data_dir
from cellframe.errors import InvalidInputError

BAD_SMILES = "NC(=O)NC1N=C(O[AlH3](O)O)NC1=O"  # in Tox21; RDKit rejects the valence


@pytest.fixture(scope="module")
def tox21() -> AssayMatrix:
    m = read_assay_subset(
        demo_data_dir() / "moleculenet" / "tox21.csv.gz", 2000, ["NR-AhR", "SR-ARE", "SR-MMP"]
    )
    first = m.subset(compounds=np.arange(400))
    assert BAD_SMILES not in first.smiles
    bad = m.subset(compounds=[m.smiles.index(BAD_SMILES)])
    return AssayMatrix(
        compounds=first.compounds + bad.compounds,
        assays=first.assays,
        values=np.vstack([first.values, bad.values]),
        smiles=first.smiles + bad.smiles,
    )


def forest() -> RandomForestBaseline:
    return RandomForestBaseline(n_estimators=30, seed=0)


def test_auroc_and_counts_match_sklearn(tox21: AssayMatrix) -> None:
    models = {
        "rf": forest(),
        "ffn": MultitaskClassifier(hidden_sizes=(32,), max_epochs=3, patience=3, device="cpu"),
    }
    with pytest.warns(UnparsedCompoundsWarning, match="1 of 401 compounds of tox21") as seen:
        result = train_holdout(tox21, models, where="tox21")
    assert BAD_SMILES in str(seen[0].message)
    assert result.n_unparsed == 1 and result.partition[-1] == -1
    part = result.partition
    assert ((part >= 0) & (part <= 2)).sum() == 400
    y = tox21.values
    assert result.metrics.height == 6
    for row in result.metrics.iter_rows(named=True):
        j = tox21.assays.index(row["assay"])
        test_rows = np.flatnonzero((part == 2) & ~np.isnan(y[:, j]))
        assert row["n_test"] == test_rows.size
        assert row["n_test_positive"] == int(y[test_rows, j].sum())
        assert row["n_train"] == int(((part == 0) & ~np.isnan(y[:, j])).sum())
        p = result.predictions.filter(
            (pl.col("model") == row["model"]) & (pl.col("assay") == row["assay"])
        )
        assert sorted(p["compound"]) == sorted(tox21.compounds[i] for i in test_rows)
        assert row["auroc"] == pytest.approx(
            roc_auc_score(p["readout"].to_numpy(), p["probability"].to_numpy()), abs=1e-12
        )
    assert set(result.metrics["split"]) == {"scaffold"}
    # the scaffold partition keeps every scaffold in one part
    scaffolds = np.array(murcko_scaffolds(tox21.smiles[:400]), dtype=object)
    train_s, test_s = set(scaffolds[part[:400] == 0]), set(scaffolds[part[:400] == 2])
    assert not train_s & test_s


def test_random_split_is_reproducible(tox21: AssayMatrix) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = train_holdout(tox21, {"rf": forest()}, split="random", seed=3)
        b = train_holdout(tox21, {"rf": forest()}, split="random", seed=3)
        c = train_holdout(tox21, {"rf": forest()}, split="random", seed=4)
    assert a.predictions.equals(b.predictions)
    assert not np.array_equal(a.partition, c.partition)
    # 70/10/20 of the 400 parseable compounds
    assert np.bincount(a.partition[a.partition >= 0]).tolist() == [280, 40, 80]


def test_callable_split(tox21: AssayMatrix) -> None:
    def odd_even(smiles, fractions, seed):  # every 10th compound validates, odd ones test
        n = len(smiles)
        return np.where(np.arange(n) % 10 == 0, 1, np.where(np.arange(n) % 2 == 1, 2, 0))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = train_holdout(tox21, {"rf": forest()}, split=odd_even)
    assert set(result.metrics["split"]) == {"odd_even"}
    assert np.bincount(result.partition[result.partition >= 0]).tolist() == [160, 40, 200]


def test_one_class_test_readouts_give_null_auroc(tox21: AssayMatrix) -> None:
    ok = tox21.subset(compounds=np.arange(400))
    # a second assay whose positives are all training compounds: no AUROC on the test part
    part = train_holdout(ok, {"rf": forest()}).partition
    extra = np.where(part == 0, (np.arange(400) % 5 == 0).astype(np.float32), 0.0)
    matrix = AssayMatrix(
        compounds=ok.compounds,
        assays=[*ok.assays, "train-only hits"],
        values=np.column_stack([ok.values, extra]),
        smiles=ok.smiles,
    )
    with pytest.warns(UnscoredAssayWarning, match="1 of 4 model x assay rows"):
        result = train_holdout(matrix, {"rf": forest()})
    row = result.metrics.filter(pl.col("assay") == "train-only hits").row(0, named=True)
    assert row["auroc"] is None and row["n_test_positive"] == 0 and row["n_test"] == 80
    assert result.metrics["auroc"].drop_nulls().len() == 3
    means = mean_auroc_per_model(result.metrics).row(0, named=True)
    scored = result.metrics["auroc"].drop_nulls().to_numpy()
    assert means == {
        "model": "rf", "mean_auroc": pytest.approx(scored.mean()), "n_assays": 4, "n_without": 1,
    }  # fmt: skip


def test_bad_arguments(tox21: AssayMatrix) -> None:
    with pytest.raises(ValueError, match="valid: \\['random', 'scaffold'\\] or a callable"):
        train_holdout(tox21, {"rf": forest()}, split="kmeans")
    with pytest.raises(InvalidInputError, match="at least one model"):
        train_holdout(tox21, {})
    with pytest.raises(InvalidInputError, match="cannot train a dict"):
        train_holdout(tox21, {"x": {}})  # type: ignore[dict-item]
    no_smiles = AssayMatrix(compounds=["a", "b"], assays=["t"], values=np.array([[0.0], [1.0]]))
    with pytest.raises(InvalidInputError, match="SMILES"):
        train_holdout(no_smiles, {"rf": forest()})
    with (
        pytest.raises(InvalidInputError, match="0, 1 or 2 for each of the 400"),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        train_holdout(tox21, {"rf": forest()}, split=lambda smiles, fractions, seed: [0, 2])
    tiny = tox21.subset(compounds=np.arange(3))
    with pytest.raises(InvalidInputError, match="part empty"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_holdout(tiny, {"rf": forest()})
