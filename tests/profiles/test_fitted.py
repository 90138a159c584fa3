"""The fitted-step contract: statistics of any split of the rows merge to those of all rows.

Data sit on a large offset (1e6 + small noise), where the textbook
``X^T X / n - mean mean^T`` loses every digit of the covariance: the merged,
re-based moments must not. Tolerances are stated per check.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cellframe.columns import CONTROL, PLATE
from cellframe.errors import EmptyInputError, InvalidInputError
from cellframe.profiles._fitted import (
    ColumnStatistics,
    CrossMoments,
    FittedStep,
    Rows,
    fit_local,
    merge_all,
)
from cellframe.profiles.normalize import N_CONTROLS, Normalizer
from cellframe.profiles.qc import PCA, pca_profiles
from cellframe.profiles.select import FeatureSelector, feature_select
from cellframe.profiles.sphere import Spherizer

OFFSET = 1e6
NOISE = 1e-2  # variance 1e-4: X^T X / n ~ 1e12 leaves ~1e-4 of absolute rounding


def offset_data(seed: int, n: int, d: int = 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = np.eye(d) + 0.5 * rng.normal(size=(d, d))
    return OFFSET + NOISE * rng.normal(size=(n, d)) @ mix


def two_pass_cov(x: np.ndarray) -> np.ndarray:
    xc = x - x.mean(axis=0)
    return xc.T @ xc / x.shape[0]


def splits(n: int, cuts: list[int]) -> list[tuple[int, int]]:
    bounds = sorted({0, n, *(c % (n + 1) for c in cuts)})
    return list(itertools.pairwise(bounds))


@settings(max_examples=60, deadline=None)
@example(seed=0, n=40, cuts=[1, 2, 3, 20, 39])
@given(
    st.integers(0, 10_000),
    st.integers(2, 80),
    st.lists(st.integers(0, 80), max_size=8),
)
def test_merged_moments_equal_moments_of_all_rows_on_a_large_offset(
    seed: int, n: int, cuts: list[int]
) -> None:
    x = offset_data(seed, n)
    parts = [ColumnStatistics.of(x[a:b], list("abcd"), moments=True) for a, b in splits(n, cuts)]
    total = merge_all(parts)
    assert total.n_rows == n
    ref = two_pass_cov(x)
    # Relative to the covariance's own scale (1e-4): 1e-7, where the naive form is off by ~1.
    scale = np.abs(ref).max()
    cov = total.moments.rebased(total.mean).covariance()
    np.testing.assert_allclose(cov, ref, rtol=0, atol=1e-7 * scale)
    np.testing.assert_allclose(total.variance, np.diag(ref), rtol=1e-7)
    np.testing.assert_allclose(total.mean, x.mean(axis=0), rtol=1e-15, atol=0)
    np.testing.assert_array_equal(total.minimum, x.min(axis=0))
    np.testing.assert_array_equal(total.peak, np.abs(x).max(axis=0))


def test_the_naive_formula_fails_on_this_data() -> None:
    """The control: on the same data X^T X / n - mean mean^T is wrong by orders of magnitude."""
    x = offset_data(0, 40)
    n = x.shape[0]
    mean = x.sum(axis=0) / n
    naive = x.T @ x / n - np.outer(mean, mean)
    ref = two_pass_cov(x)
    scale = np.abs(ref).max()
    assert np.abs(naive - ref).max() > 1e-2 * scale
    merged = merge_all([ColumnStatistics.of(x[:7], list("abcd"), moments=True),
                        ColumnStatistics.of(x[7:], list("abcd"), moments=True)])  # fmt: skip
    assert np.abs(merged.moments.rebased(merged.mean).covariance() - ref).max() < 1e-7 * scale


def test_cross_moments_merge_without_a_given_shift_is_the_joint_mean() -> None:
    x = np.array([[1.0, 10.0], [3.0, 14.0], [5.0, 9.0]])
    m = CrossMoments.of(x[:1]).merge(CrossMoments.of(x[1:]))
    np.testing.assert_allclose(m.mean(), [3.0, 11.0])
    # hand-computed population covariance of the three rows
    np.testing.assert_allclose(m.covariance(), [[8 / 3, -2 / 3], [-2 / 3, 14 / 3]], atol=1e-12)


def test_statistics_of_different_features_do_not_merge() -> None:
    a = ColumnStatistics.of(np.ones((2, 1)), ["a"])
    b = ColumnStatistics.of(np.ones((2, 1)), ["b"])
    with pytest.raises(InvalidInputError, match="different features"):
        a.merge(b)


def test_rows_say_they_need_all_rows_and_concatenate() -> None:
    a, b = Rows(pl.DataFrame({"f": [1.0]})), Rows(pl.DataFrame({"f": [2.0, 3.0]}))
    assert a.needs_all_rows and not ColumnStatistics.of(np.ones((1, 1)), ["f"]).needs_all_rows
    assert a.merge(b).frame["f"].to_list() == [1.0, 2.0, 3.0]


# --------------------------------------------------------------- the steps
def profiles(seed: int, n: int, d: int = 4) -> pl.DataFrame:
    x = offset_data(seed, n, d)
    rng = np.random.default_rng(seed + 1)
    frame = pl.DataFrame(x, schema=[f"Cells_f{j}" for j in range(d)])
    return frame.with_columns(
        pl.Series(PLATE, [f"P{i % 3}" for i in range(n)]),
        pl.Series(CONTROL, np.where(rng.random(n) < 0.6, "negcon", "trt")),
    ).select(PLATE, CONTROL, pl.exclude(PLATE, CONTROL))


def parts_of(df: pl.DataFrame, cuts: list[int]) -> list[pl.DataFrame]:
    return [df.slice(a, b - a) for a, b in splits(df.height, cuts)]


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 1000), st.lists(st.integers(0, 60), max_size=6))
def test_spherizer_fitted_on_any_split_equals_the_fit_on_all_rows(
    seed: int, cuts: list[int]
) -> None:
    df = profiles(seed, 60)
    whole = Spherizer(lam=1e-6).fit(df)
    split = fit_local(Spherizer(lam=1e-6), parts_of(df, cuts))
    # Reference: two-pass float64 NumPy on the control rows.
    x = df.filter(pl.col(CONTROL) == "negcon").select(whole.features_).to_numpy()
    e, u = np.linalg.eigh(two_pass_cov(x))
    w = u @ np.diag(1 / np.sqrt(np.clip(e, 0, None) + 1e-6)) @ u.T
    np.testing.assert_allclose(whole.W_, w, rtol=0, atol=1e-6 * np.abs(w).max())
    np.testing.assert_allclose(split.W_, whole.W_, rtol=0, atol=1e-6 * np.abs(w).max())
    np.testing.assert_allclose(split.mean_, x.mean(axis=0), rtol=1e-15)
    assert split.n_controls_ == x.shape[0]


def test_pycytominer_sphering_gathers_the_control_rows() -> None:
    df = profiles(3, 60)
    stats = Spherizer("ZCA").statistics(df)
    assert isinstance(stats, Rows) and stats.needs_all_rows
    split = fit_local(Spherizer("ZCA"), parts_of(df, [10, 33]))
    whole = Spherizer("ZCA").fit(df)
    np.testing.assert_allclose(split.W_, whole.W_, rtol=1e-12)
    with pytest.raises(InvalidInputError, match="fitted from the control rows"):
        Spherizer("ZCA").from_statistics(Spherizer().statistics(df))


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 1000), st.lists(st.integers(0, 50), max_size=6))
def test_pca_fitted_on_any_split_equals_pca_profiles(seed: int, cuts: list[int]) -> None:
    df = profiles(seed, 50)
    split = fit_local(PCA(3), parts_of(df, cuts))
    ref = pca_profiles(df, 3)
    np.testing.assert_allclose(split.components_, ref.components, atol=1e-6)
    np.testing.assert_allclose(
        split.explained_variance_ratio_, ref.explained_variance_ratio, atol=1e-9
    )
    scores = split.transform(df).collect()
    np.testing.assert_allclose(
        scores.select("PC1", "PC2").to_numpy(),
        ref.scores.select("PC1", "PC2").to_numpy(),
        atol=1e-6 * NOISE,
    )


def test_feature_selector_on_any_split_equals_feature_select() -> None:
    rng = np.random.default_rng(5)
    n = 90
    base = rng.normal(size=n)
    df = pl.DataFrame(
        {
            "Cells_a": OFFSET + base,
            "Cells_b": OFFSET + base + 1e-3 * rng.normal(size=n),  # r ~ 1 with a
            "Cells_c": rng.normal(size=n),
            "Cells_const": np.full(n, 3.0),
            "Cells_rare": np.where(np.arange(n) < 2, 1.0, 0.0),
        }
    )
    ops = ["variance_threshold", "frequency_threshold", "correlation_threshold", "drop_outliers"]
    local = feature_select(df, ops, outlier_cutoff=2e6)
    for cuts in ([], [1], [30, 31, 60], [89]):
        fit = fit_local(FeatureSelector(ops, outlier_cutoff=2e6), parts_of(df, cuts))
        assert fit.selection_.kept == local.kept
        # hand-checked: one of the correlated pair, and the noise, are kept
        assert len(local.kept) == 2 and "Cells_c" in local.kept
        assert fit.selection_.dropped.equals(local.dropped)
    saved = FeatureSelector.from_frame(fit.to_frame())
    assert saved.transform(df).collect_schema().names() == local.kept


def test_normalizer_statistics_are_the_control_rows_and_merge_exactly() -> None:
    df = profiles(11, 60)
    stats = Normalizer("mad_robustize").statistics(df)
    assert isinstance(stats, Rows) and stats.needs_all_rows
    assert stats.frame.height == df.filter(pl.col(CONTROL) == "negcon").height
    split = fit_local(Normalizer("mad_robustize"), parts_of(df, [7, 40]))
    whole = Normalizer("mad_robustize").fit(df)
    assert split.stats_.equals(whole.stats_)
    assert split.transform(df).collect().equals(whole.transform(df).collect())
    with pytest.raises(InvalidInputError, match="fitted from its control rows"):
        Normalizer().from_statistics(ColumnStatistics.of(np.ones((2, 1)), ["f"]))
    with pytest.raises(InvalidInputError, match="fitted from its control rows"):
        Normalizer("mad_robustize").from_statistics(Normalizer().statistics(df))


def test_every_step_meets_the_contract_and_round_trips_through_a_frame() -> None:
    df = profiles(2, 40)
    for step in (Normalizer(), Spherizer(), FeatureSelector(), PCA(2)):
        assert isinstance(step, FittedStep)
    sph = Spherizer(lam=1e-2).fit(df)
    again = Spherizer.from_frame(sph.to_frame(), {**sph.parameters(), "n_controls": 3})
    assert again.transform(df).collect().equals(sph.transform(df).collect())
    norm = Normalizer().fit(df)
    params = {**norm.parameters(), "features": norm.features_}
    assert (
        Normalizer.from_frame(norm.to_frame(), params)
        .transform(df)
        .collect()
        .equals(norm.transform(df).collect())
    )
    pca = PCA(2).fit(df)
    back = PCA.from_frame(pca.to_frame(), pca.explained_variance_ratio_)
    assert back.transform(df).collect().equals(pca.transform(df).collect())
    with pytest.raises(InvalidInputError, match="not a saved sphering transform"):
        Spherizer.from_frame(
            pca.to_frame().with_columns(pl.lit("x").alias("Metadata_Row")), sph.parameters()
        )
    with pytest.raises(EmptyInputError, match="no partitions"):
        fit_local(PCA(2), [])


# ------------------------------------------------------- lazy chain, one read
def counting_source(df: pl.DataFrame) -> tuple[pl.LazyFrame, list[int]]:
    """A LazyFrame whose every read of the source is counted."""
    from polars.io.plugins import register_io_source

    reads: list[int] = []

    def source(with_columns, predicate, n_rows, batch_size):
        reads.append(1)
        out = df if with_columns is None else df.select(with_columns)
        if predicate is not None:
            out = out.filter(predicate)
        yield out if n_rows is None else out.head(n_rows)

    return register_io_source(source, schema=df.schema), reads


@pytest.mark.parametrize(
    "step",
    [
        lambda lf: Normalizer("mad_robustize").fit_transform(lf),
        lambda lf: Normalizer("standardize", by=()).fit_transform(lf),
        lambda lf: Spherizer(lam=1e-2).fit_transform(lf),
        lambda lf: Spherizer("ZCA-cor").fit_transform(lf),
    ],
)
def test_a_fitted_step_in_a_lazy_chain_reads_its_source_once(step) -> None:
    df = profiles(4, 60)
    lf, reads = counting_source(df)
    out = step(lf).with_columns(pl.lit(1).alias("Metadata_x")).collect()
    assert len(reads) == 1
    ref_lf, _ = counting_source(df)
    assert out.drop("Metadata_x").equals(step(df).collect())
    # the counter counts: two separate collects are two reads
    ref_lf.collect()
    ref_lf.collect()
    assert len(_) == 2


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 1000), st.lists(st.integers(0, 60), max_size=6))
def test_standardize_from_grouped_moments_equals_the_polars_fit(seed: int, cuts: list[int]) -> None:
    """standardize merges per-group moments: any split gives Polars' mean and std(ddof=0)."""
    from cellframe.profiles.normalize import GroupedStatistics

    df = profiles(seed, 60).with_columns(
        # a feature missing on every control of one plate, and a null plate key
        pl.when(pl.col(PLATE) == "P1").then(None).otherwise(pl.col("Cells_f0")).alias("Cells_f0"),
        pl.when(pl.int_range(pl.len()) < 4).then(None).otherwise(pl.col(PLATE)).alias(PLATE),
    )
    assert isinstance(Normalizer().statistics(df), GroupedStatistics)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no non-missing control value" (Cells_f0 on P1)
        whole = Normalizer(too_few_controls="drop").fit(df)  # the Polars group-by path
        split = fit_local(Normalizer(too_few_controls="drop"), parts_of(df, cuts))
    a, b = whole.stats_, split.stats_
    assert a.columns == b.columns and a.select(PLATE, N_CONTROLS).equals(
        b.select(PLATE, N_CONTROLS)
    )
    for c in a.columns[2:]:
        assert a[c].is_null().to_list() == b[c].is_null().to_list()
        # Centres ~1e6: a few ulps. Spreads ~1e-4..1e-2: one ulp of 1e6 (1.2e-10)
        # is the floor of any float64 method on this offset, so 1e-9 absolute
        # (~8 ulps; Polars' own std is off by up to ~3e-11 here), where
        # X^T X / n - mean^2 would be off by ~1e-4, the size of the spreads.
        if c.startswith("__cf_center"):
            np.testing.assert_allclose(b[c].to_numpy(), a[c].to_numpy(), rtol=1e-14)
        else:
            np.testing.assert_allclose(b[c].to_numpy(), a[c].to_numpy(), rtol=0, atol=1e-9)
    ctrl = df.filter((pl.col(PLATE) == "P2") & (pl.col(CONTROL) == "negcon"))["Cells_f1"]
    x = ctrl.to_numpy()
    ref = np.sqrt(((x - x.mean()) ** 2).mean())
    ours = b.filter(pl.col(PLATE) == "P2")["__cf_scale__Cells_f1"][0]
    assert abs(ours - ref) <= 1e-9  # two-pass NumPy reference, same floor
