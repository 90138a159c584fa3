"""copairs-compatible AP against copairs 0.5.5 on synthetic screens."""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import pytest

from cellframe.errors import InvalidInputError
from cellframe.evaluate import (
    ComputeOptions,
    PairRules,
    average_precision,
    phenotypic_activity,
)
from tests.evaluate._synthetic import synthetic_screen

copairs_map = pytest.importorskip("copairs.map")
from copairs.matching import assign_reference_index  # noqa: E402

META = ["Metadata_Treatment", "Metadata_MoA", "Metadata_Control", "Metadata_Plate", "Metadata_Well"]


def _copairs_ap(df: pl.DataFrame, **rules) -> np.ndarray:
    pdf = df.to_pandas()
    feats = [c for c in df.columns if not c.startswith("Metadata_")]
    meta = pdf[[c for c in pdf.columns if c.startswith("Metadata_")]]
    out = copairs_map.average_precision(meta, pdf[feats].values, progress_bar=False, **rules)
    return out


def test_replicate_retrieval_against_all_other_treatments_matches_copairs():
    df = synthetic_screen(n_treatments=20, signal=0.7, seed=4)
    rules = dict(
        pos_sameby=["Metadata_Treatment"],
        pos_diffby=[],
        neg_sameby=[],
        neg_diffby=["Metadata_Treatment"],
    )
    ref = _copairs_ap(df, **rules)
    got = average_precision(df, rules=PairRules(**rules))
    np.testing.assert_allclose(
        got["average_precision"].to_numpy(), ref["average_precision"].values, atol=1e-5
    )
    assert got["n_pos_pairs"].to_list() == ref["n_pos_pairs"].astype(int).tolist()
    assert got["n_total_pairs"].to_list() == ref["n_total_pairs"].astype(int).tolist()


def test_negatives_on_same_plate_match_copairs():
    df = synthetic_screen(n_treatments=10, seed=7)
    pdf = assign_reference_index(
        df.to_pandas(),
        "Metadata_Control == 'negcon'",
        reference_col="Metadata_Ref",
        default_value=-1,
    )
    feats = [c for c in df.columns if not c.startswith("Metadata_")]
    ref = copairs_map.average_precision(
        pdf[[*META, "Metadata_Ref"]],
        pdf[feats].values,
        pos_sameby=["Metadata_Treatment", "Metadata_Ref"],
        pos_diffby=[],
        neg_sameby=["Metadata_Plate"],
        neg_diffby=["Metadata_Treatment", "Metadata_Ref"],
        progress_bar=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        got = phenotypic_activity(df, same_plate=True)
    np.testing.assert_allclose(
        got["average_precision"].to_numpy(), ref["average_precision"].values, atol=1e-5
    )
    assert got["n_total_pairs"].to_list() == ref["n_total_pairs"].astype(int).tolist()
    assert got.filter(pl.col("is_control"))["average_precision"].null_count() == 8


def test_multilabel_matches_copairs():
    df = synthetic_screen(n_treatments=16, seed=2, moas=("a", "b", "a|b", "c|a", "d"))
    df = df.filter(pl.col("Metadata_MoA").is_not_null())
    pdf = df.to_pandas()
    pdf["Metadata_MoA"] = pdf["Metadata_MoA"].str.split("|")
    feats = [c for c in df.columns if not c.startswith("Metadata_")]
    ref = copairs_map.multilabel.average_precision(
        pdf[META],
        pdf[feats].values,
        pos_sameby=["Metadata_MoA"],
        pos_diffby=["Metadata_Treatment"],
        neg_sameby=[],
        neg_diffby=["Metadata_MoA"],
        multilabel_col="Metadata_MoA",
        progress_bar=False,
    )
    ref = pl.from_pandas(
        ref[["Metadata_Well", "Metadata_MoA", "average_precision", "n_pos_pairs", "n_total_pairs"]]
    ).sort(["Metadata_Well", "Metadata_MoA"])
    got = average_precision(
        df,
        keep=["Metadata_Well"],
        rules=PairRules(
            pos_sameby=["Metadata_MoA"],
            pos_diffby=["Metadata_Treatment"],
            neg_diffby=["Metadata_MoA"],
            multilabel="Metadata_MoA",
        ),
    ).sort(["Metadata_Well", "Metadata_MoA"])
    assert got["Metadata_MoA"].to_list() == ref["Metadata_MoA"].to_list()
    assert got["Metadata_Well"].to_list() == ref["Metadata_Well"].to_list()
    np.testing.assert_allclose(
        got["average_precision"].to_numpy(), ref["average_precision"].to_numpy(), atol=1e-5
    )
    assert got["n_total_pairs"].to_list() == ref["n_total_pairs"].cast(pl.Int64).to_list()


def test_block_size_does_not_change_results():
    df = synthetic_screen(n_treatments=9, seed=3)
    rules = dict(pos_sameby=["Metadata_Treatment"], neg_diffby=["Metadata_Treatment"])
    a = average_precision(df, rules=PairRules(**rules), compute=ComputeOptions(block_rows=1))
    b = average_precision(
        df, rules=PairRules(**rules), compute=ComputeOptions(dtype=np.float64, block_rows=1000)
    )
    np.testing.assert_allclose(
        a["average_precision"].to_numpy(), b["average_precision"].to_numpy(), atol=1e-6
    )


def test_rule_errors():
    df = synthetic_screen(n_treatments=3)
    with pytest.raises(InvalidInputError, match="disjoint"):
        average_precision(
            df,
            rules=PairRules(
                pos_sameby=["Metadata_Treatment"],
                pos_diffby=["Metadata_Treatment"],
                neg_diffby=["Metadata_Treatment"],
            ),
        )
    with pytest.raises(InvalidInputError, match="at least one of neg_sameby"):
        average_precision(df, rules=PairRules(pos_sameby=["Metadata_Treatment"]))
    with pytest.raises(InvalidInputError, match="must be in pos_sameby"):
        average_precision(
            df,
            rules=PairRules(
                pos_sameby=["Metadata_Treatment"],
                neg_diffby=["Metadata_MoA"],
                multilabel="Metadata_MoA",
            ),
        )


def test_sparse_and_dense_similarity_paths_agree():
    # block_rows=1: every candidate column comes from the matrix product; a large
    # block: replicate columns (wanted by few lists) come from row-wise dot products.
    df = synthetic_screen(n_treatments=30, n_controls=40, seed=8)
    a = phenotypic_activity(df, compute=ComputeOptions(block_rows=1))
    b = phenotypic_activity(df, compute=ComputeOptions(block_rows=500))
    np.testing.assert_allclose(
        a["average_precision"].fill_null(-1).to_numpy(),
        b["average_precision"].fill_null(-1).to_numpy(),
        atol=1e-6,
    )
    assert a["n_total_pairs"].to_list() == b["n_total_pairs"].to_list()
