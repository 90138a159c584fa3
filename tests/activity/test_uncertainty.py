"""Uncertainty: nearest-training-neighbour Tanimoto, the domain flag, and ensemble spread."""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import pytest

from cellframe.activity import train_holdout
from cellframe.activity.chem import morgan_fingerprints
from cellframe.activity.matrix import read_assay_subset
from cellframe.activity.trees import TreeBaseline
from cellframe.activity.uncertainty import (
    DOMAIN_THRESHOLD,
    applicability_domain,
    max_train_similarity,
    prediction_spread,
)
from cellframe.demo import demo_data_dir
from cellframe.errors import InvalidInputError
from tests.activity.conftest import SMILES


def _tanimoto_numpy(train: list[str], query: list[str]) -> np.ndarray:
    a = morgan_fingerprints(query).astype(bool)
    b = morgan_fingerprints(train).astype(bool)
    inter = (a[:, None, :] & b[None, :, :]).sum(-1)
    union = (a[:, None, :] | b[None, :, :]).sum(-1)
    return (inter / union).max(axis=1)


def test_similarity_matches_a_numpy_tanimoto():
    train, query = SMILES[:6], SMILES[6:]
    got = max_train_similarity(train, query)
    np.testing.assert_allclose(got, _tanimoto_numpy(train, query), atol=1e-12)
    assert max_train_similarity(train, train[:2]).tolist() == [1.0, 1.0]  # in the training set


def test_domain_flag_at_the_threshold_and_unparseable_queries():
    train = ["c1ccccc1O", "c1ccccc1N"]
    query = ["c1ccccc1O", "CCCCCCCCCC", "not a smiles"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the bad SMILES is warned by parse_smiles
        ad = applicability_domain(train, query)
    assert ad.columns == ["train_similarity", "in_domain"]
    sim = ad["train_similarity"].to_list()
    assert sim[0] == 1.0 and sim[1] < DOMAIN_THRESHOLD and sim[2] is None
    assert ad["in_domain"].to_list() == [True, False, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        strict = applicability_domain(train, query, threshold=1.0)
    assert strict["in_domain"].to_list()[:2] == [True, False]
    with pytest.raises(InvalidInputError, match=r"\[0, 1\]"):
        applicability_domain(train, query, threshold=30)


def test_prediction_spread_is_the_population_std():
    p = pl.DataFrame(
        {
            "compound": ["a", "a", "a", "b"],
            "assay": ["t"] * 4,
            "model": ["rf", "lgbm", "net", "rf"],
            "probability": [0.1, 0.4, 0.7, 0.3],
        }
    )
    out = prediction_spread(p)
    assert out["compound"].to_list() == ["a", "b"] and out["n_members"].to_list() == [3, 1]
    assert out["ensemble_mean"][0] == pytest.approx(0.4)
    assert out["ensemble_spread"][0] == pytest.approx(np.std([0.1, 0.4, 0.7]))
    assert out["ensemble_spread"][1] == 0.0
    with pytest.raises(InvalidInputError, match="repeat a"):
        prediction_spread(pl.concat([p, p.head(1)]))


def test_holdout_prediction_table_carries_domain_and_spread():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = read_assay_subset(
            demo_data_dir() / "moleculenet" / "tox21.csv.gz", 300, ["NR-AhR", "SR-MMP"]
        )
        models = {
            "rf": TreeBaseline("rf", params={"n_estimators": 10}, grid={}),
            "lgbm": TreeBaseline("lgbm", params={"n_estimators": 20}, grid={}),
        }
        result = train_holdout(
            m, models, split="random", descriptors=np.zeros((300, 0)), domain_threshold=0.4
        )
    p = result.predictions
    for col in ("train_similarity", "in_domain", "ensemble_spread", "n_models"):
        assert col in p.columns
    assert (p["n_models"] == 2).all()
    # spread recomputed from the two models' probabilities
    wide = p.pivot(on="model", index=["compound", "assay"], values="probability")
    spread = p.filter(pl.col("model") == "rf").join(wide, on=["compound", "assay"])
    assert spread.height == p.height // 2 and (spread["probability"] == spread["rf"]).all()
    np.testing.assert_allclose(
        spread["ensemble_spread"], np.abs(spread["rf"] - spread["lgbm"]) / 2, atol=1e-9
    )
    assert spread["ensemble_spread"].max() > 0  # the two models disagree somewhere
    # similarity recomputed against the training compounds of the partition
    kept = np.flatnonzero(result.partition >= 0)
    train = [m.smiles[i] for i in kept[result.partition[kept] == 0]]
    test_rows = p.filter(pl.col("model") == "rf").unique("compound", maintain_order=True)
    expected = _tanimoto_numpy(train, test_rows["smiles"].to_list())
    np.testing.assert_allclose(test_rows["train_similarity"], expected, atol=1e-12)
    assert (test_rows["in_domain"] == (test_rows["train_similarity"] >= 0.4)).all()
    assert 0 < test_rows["in_domain"].sum() < test_rows.height  # both kinds in 90 compounds
