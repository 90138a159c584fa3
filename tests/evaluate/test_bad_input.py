"""Bad input: clear errors or counted warnings, one test per case."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from cellframe.errors import EmptyInputError, InvalidInputError, MissingColumnsError
from cellframe.evaluate import (
    PairRules,
    average_precision,
    percent_replicating,
    phenotypic_activity,
    retrieval_metrics,
)
from tests.evaluate._synthetic import synthetic_screen

RULES = dict(pos_sameby=["Metadata_Treatment"], neg_diffby=["Metadata_Treatment"])


def test_query_without_positives_is_counted_and_left_out():
    df = synthetic_screen(n_treatments=4).filter(
        ~((pl.col("Metadata_Treatment") == "T000") & (pl.col("Metadata_Well") != "A000"))
    )
    with pytest.warns(RuntimeWarning, match="1 of 13 queries have no positive pair"):
        ap = average_precision(
            df.filter(pl.col("Metadata_Control") != "negcon"), rules=PairRules(**RULES)
        )
    lone = ap.filter(pl.col("Metadata_Treatment") == "T000")
    assert lone["average_precision"].to_list() == [None]
    assert lone["n_pos_pairs"].to_list() == [0]
    with pytest.warns(RuntimeWarning, match="1 of 13 queries have no positive"):
        res = retrieval_metrics(
            df.filter(pl.col("Metadata_Control") != "negcon"), label="Metadata_Treatment"
        )
    assert res.summary["n_unscored"][0] == 1 and res.summary["n_queries"][0] == 12


def test_controls_without_positives_do_not_warn(recwarn):
    phenotypic_activity(synthetic_screen(n_treatments=3))
    assert not [w for w in recwarn if "no positive" in str(w.message)]


def test_all_zero_profiles_are_counted_and_excluded():
    df = synthetic_screen(n_treatments=4)
    feats = [c for c in df.columns if c.startswith("f")]
    zeroed = df.with_columns(
        [
            pl.when(pl.col("Metadata_Well").is_in(["A000", "A001"]))
            .then(0.0)
            .otherwise(pl.col(f))
            .alias(f)
            for f in feats
        ]
    )
    with pytest.warns(RuntimeWarning, match="2 of 24 profiles rows are all zero"):
        ap = average_precision(zeroed, keep=["Metadata_Well"], rules=PairRules(**RULES))
    assert (
        ap.filter(pl.col("Metadata_Well").is_in(["A000", "A001"]))["average_precision"].null_count()
        == 2
    )
    # Their replicates see two positives instead of three.
    assert ap.filter(pl.col("Metadata_Well") == "A002")["n_pos_pairs"].to_list() == [1]
    with pytest.raises(InvalidInputError, match="all zero"):
        from cellframe.evaluate._data import profile_matrix

        profile_matrix(zeroed, zero_norm="raise")


def test_nan_features_raise_with_column_names():
    df = synthetic_screen(n_treatments=3).with_columns(
        pl.when(pl.col("Metadata_Well") == "A000")
        .then(float("nan"))
        .otherwise(pl.col("f03"))
        .alias("f03")
    )
    for call in (
        lambda: average_precision(df, rules=PairRules(**RULES)),
        lambda: retrieval_metrics(df, label="Metadata_Treatment"),
        lambda: percent_replicating(df, replicate_groups=["Metadata_Treatment"]),
    ):
        with pytest.raises(InvalidInputError, match=r"1 NaN/infinite feature values.*'f03' \(1\)"):
            call()


def test_single_treatment_raises():
    df = synthetic_screen(n_treatments=1, n_controls=0)
    with pytest.raises(InvalidInputError, match="no negative pairs"):
        average_precision(df, rules=PairRules(**RULES))
    with pytest.raises(InvalidInputError, match="at least two different labels"):
        retrieval_metrics(df, label="Metadata_Treatment")
    with pytest.raises(InvalidInputError, match="no negative-control rows"):
        phenotypic_activity(df)


def test_missing_labels():
    df = synthetic_screen(n_treatments=6, n_controls=0, moas=("a", "b"))
    with pytest.raises(MissingColumnsError, match="'Metadata_Pathway'"):
        retrieval_metrics(df, label="Metadata_Pathway")
    with pytest.raises(MissingColumnsError, match="'Metadata_Pathway'"):
        average_precision(
            df, rules=PairRules(pos_sameby=["Metadata_Pathway"], neg_diffby=["Metadata_Pathway"])
        )
    partly = df.with_columns(
        pl.when(pl.col("Metadata_Treatment") == "T000")
        .then(None)
        .otherwise(pl.col("Metadata_MoA"))
        .alias("Metadata_MoA")
    )
    with pytest.warns(RuntimeWarning, match="4 of 24 profiles rows have no 'Metadata_MoA'"):
        res = retrieval_metrics(partly, keep=["Metadata_Treatment"])
    assert "T000" not in res.per_query["Metadata_Treatment"].to_list()
    assert res.per_query.height == 20
    with pytest.raises(InvalidInputError, match="null in every row"):
        retrieval_metrics(df.with_columns(pl.lit(None, dtype=pl.String).alias("Metadata_MoA")))


def test_empty_and_featureless_input():
    df = synthetic_screen(n_treatments=2)
    with pytest.raises(EmptyInputError, match="no rows"):
        retrieval_metrics(df.head(0), label="Metadata_Treatment")
    with pytest.raises(EmptyInputError, match="no feature columns"):
        retrieval_metrics(df.select(pl.col("^Metadata_.*$")), label="Metadata_Treatment")
    with pytest.raises(InvalidInputError, match="top_fraction"):
        retrieval_metrics(df, label="Metadata_Treatment", top_fraction=0)
    with pytest.raises(InvalidInputError, match="expected a Polars"):
        retrieval_metrics(np.zeros((3, 3)))  # type: ignore[arg-type]
