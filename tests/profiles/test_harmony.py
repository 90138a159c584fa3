"""Harmony on a PCA of the profiles: batch removal on nELISA with a known plate effect, errors."""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from sklearn.metrics import silhouette_score

from cellframe.columns import PLATE, feature_columns
from cellframe.errors import (
    EmptyInputError,
    HarmonyNotConvergedWarning,
    InvalidInputError,
    MissingColumnsError,
)
from cellframe.evaluate import phenotypic_activity
from cellframe.profiles import Harmony, harmony
from cellframe.profiles._common import ProfilesWarning
from cellframe.profiles._fitted import Rows, fit_local

#: Plate offsets N(0, EFFECT^2) per feature; the nELISA features' SD is ~1.27.
EFFECT = 0.3


def _replicate_map(frame: pl.DataFrame) -> float:
    """Mean AP of treatment wells retrieving their replicates against negcon wells."""
    frame = frame.with_columns(pl.col("Metadata_broad_sample").fill_null("control"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # single-well treatments
        ap = phenotypic_activity(
            frame,
            treatment="Metadata_broad_sample",
            controls=pl.col("Metadata_control_type") == "negcon",
        )
    return float(ap.filter(~pl.col("is_control"))["average_precision"].drop_nulls().mean())


def _plate_silhouette(frame: pl.DataFrame) -> float:
    x = frame.select(feature_columns(frame)).to_numpy()
    return float(silhouette_score(x, frame[PLATE].to_numpy()))


@pytest.fixture(scope="module")
def nelisa_effect(nelisa: pl.DataFrame) -> pl.DataFrame:
    """nELISA with a synthetic plate effect: each plate shifted by its own random vector."""
    features = feature_columns(nelisa)
    rng = np.random.default_rng(1)
    plates = sorted(nelisa[PLATE].unique())
    offsets = {p: rng.normal(scale=EFFECT, size=len(features)) for p in plates}
    shift = np.vstack([offsets[p] for p in nelisa[PLATE]])
    x = nelisa.select(features).to_numpy() + shift
    return nelisa.with_columns([pl.Series(f, x[:, j]) for j, f in enumerate(features)])


def test_harmony_removes_a_known_plate_effect_and_keeps_replicate_map(
    nelisa: pl.DataFrame, nelisa_effect: pl.DataFrame
) -> None:
    clean_sil, effect_sil = _plate_silhouette(nelisa), _plate_silhouette(nelisa_effect)
    # The synthetic effect is real: plates separate more than in the real data.
    assert effect_sil > clean_sil + 0.015
    step = Harmony(PLATE, n_components=50, seed=0)
    out = step.fit_transform(nelisa_effect).collect()
    assert out.columns[-50:] == [f"harmony_{i}" for i in range(50)]
    meta = [c for c in nelisa.columns if c.startswith("Metadata_")]
    assert_frame_equal(out.select(meta), nelisa_effect.select(meta))
    # The same PCA without Harmony: the baseline Harmony must beat.
    x = nelisa_effect.select(step.features_).to_numpy()
    pcs = (x - step.mean_) @ step.components_.T
    pca_only = nelisa_effect.select(meta).hstack(
        pl.DataFrame(pcs, schema=[f"pc{i}" for i in range(50)], orient="row")
    )
    harmony_sil, pca_sil = _plate_silhouette(out), _plate_silhouette(pca_only)
    assert pca_sil > 0.02
    assert abs(harmony_sil) < pca_sil / 2
    assert abs(harmony_sil) < effect_sil / 2
    # Replicates: not lower than before the correction, nor (beyond noise) than clean data.
    effect_map, harmony_map = _replicate_map(nelisa_effect), _replicate_map(out)
    assert harmony_map >= effect_map
    assert harmony_map >= _replicate_map(nelisa) - 0.02
    params = step.parameters()
    assert params["converged"] is True and 1 <= params["n_iterations"] <= 20
    assert params["n_clusters_used"] == round(1525 / 30)


def test_harmony_is_deterministic_with_a_seed(nelisa_effect: pl.DataFrame) -> None:
    a = harmony(nelisa_effect, n_components=20, seed=3).collect()
    b = harmony(nelisa_effect, n_components=20, seed=3).collect()
    assert_frame_equal(a, b)
    c = harmony(nelisa_effect, n_components=20, seed=4).collect()
    cols = [f"harmony_{i}" for i in range(20)]
    assert not np.array_equal(a.select(cols).to_numpy(), c.select(cols).to_numpy())


def test_harmony_pca_matches_numpy_and_keeps_other_columns() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 5)) @ np.diag([3.0, 2.0, 1.0, 0.5, 0.1])
    plates = np.repeat(["p1", "p2", "p3"], 30)
    df = pl.DataFrame({PLATE: plates, "note": ["x"] * 90, **{f"f{j}": x[:, j] for j in range(5)}})
    step = Harmony(n_components=3, n_clusters=3).fit(df)
    cov = np.cov(x, rowvar=False)
    evals = np.linalg.eigvalsh(cov)[::-1][:3]
    np.testing.assert_allclose(step.explained_variance_, evals, rtol=1e-10)
    np.testing.assert_allclose(step.mean_, x.mean(axis=0), rtol=1e-12)
    out = step.transform(df).collect()
    assert out.columns == [PLATE, "note", "harmony_0", "harmony_1", "harmony_2"]
    assert out.schema["harmony_0"] == pl.Float32
    frame = step.to_frame()
    assert frame["Metadata_Row"].to_list() == [
        "mean", "explained_variance", "harmony_0", "harmony_1", "harmony_2",
    ]  # fmt: skip
    assert frame["f3"][1] is None  # only 3 components: the 4th variance is null
    # n_components=None keeps them all (a rotation of the centred features).
    assert Harmony(n_components=None, n_clusters=3).fit(df).components_.shape == (5, 5)
    # Wider than tall (the SVD path): the same axes as the scatter matrix's eigenvectors.
    wide = rng.normal(size=(12, 20))
    wide_df = pl.DataFrame(
        {PLATE: ["a"] * 6 + ["b"] * 6, **{f"g{j}": wide[:, j] for j in range(20)}}
    )
    step = Harmony(n_components=4, n_clusters=2).fit(wide_df)
    centred = wide - wide.mean(axis=0)
    evals, evecs = np.linalg.eigh(centred.T @ centred)
    top = evecs[:, ::-1][:, :4].T
    np.testing.assert_allclose(np.abs(step.components_ @ top.T), np.eye(4), atol=1e-8)
    np.testing.assert_allclose(step.explained_variance_, evals[::-1][:4] / 11, rtol=1e-10)


def test_harmony_needs_all_rows_through_the_fitted_contract() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(80, 4))
    x[40:] += 2.0
    df = pl.DataFrame({PLATE: ["a"] * 40 + ["b"] * 40, **{f"f{j}": x[:, j] for j in range(4)}})
    stats = Harmony(n_components=4).statistics(df)
    assert isinstance(stats, Rows) and stats.needs_all_rows
    merged = fit_local(Harmony(n_components=4, n_clusters=4), [df[:40], df[40:]])
    whole = Harmony(n_components=4, n_clusters=4).fit(df)
    np.testing.assert_array_equal(merged.corrected_, whole.corrected_)
    full = whole.transform(df).collect()
    # Any subset of the fitted rows, in any order, gets its rows of the whole correction.
    assert_frame_equal(whole.transform(df[40:]).collect(), full[40:])
    assert_frame_equal(whole.transform(df.reverse()).collect(), full.reverse())
    changed = df.with_columns(
        pl.when(pl.int_range(80) == 5).then(9.0).otherwise(pl.col("f0")).alias("f0")
    )
    with pytest.raises(InvalidInputError, match="1 of 80 rows were not among the 80 rows"):
        whole.transform(changed)
    moved = df.with_columns(
        pl.when(pl.int_range(80) < 2).then(pl.lit("b")).otherwise(pl.col(PLATE)).alias(PLATE)
    )
    with pytest.raises(InvalidInputError, match="2 of 80 rows"):
        whole.transform(moved)


def test_harmony_through_the_plate_engine(store) -> None:
    from cellframe.engine.fitted import apply_plates, fit_plates

    rng = np.random.default_rng(5)
    x = rng.normal(size=(90, 4))
    x[30:60] += 0.7
    df = pl.DataFrame(
        {
            PLATE: np.repeat(["p1", "p2", "p3"], 30),
            "Metadata_Well": [f"A{i:02d}" for i in range(90)],
            **{f"f{j}": x[:, j].astype(np.float32) for j in range(4)},
        }
    )
    store.write("wells", df, mode="replace")
    step = fit_plates(store, "wells", Harmony(n_components=3, n_clusters=3), progress=False)
    apply_plates(store, "wells", "wells_harmony", step, name="harmony", progress=False)
    expected = Harmony(n_components=3, n_clusters=3).fit_transform(store.read("wells")).collect()
    keys = [PLATE, "Metadata_Well"]
    assert_frame_equal(store.read("wells_harmony").sort(keys), expected.sort(keys))


def test_harmony_reports_non_convergence() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 6))
    x[60:] += 3.0
    df = pl.DataFrame({PLATE: ["a"] * 60 + ["b"] * 60, **{f"f{j}": x[:, j] for j in range(6)}})
    with pytest.warns(HarmonyNotConvergedWarning, match="did not converge in 1 iterations"):
        step = Harmony(n_components=6, n_clusters=4, max_iter=1, epsilon=0.0).fit(df)
    assert step.converged_ is False and step.n_iterations_ == 1


def test_harmony_refuses_bad_input() -> None:
    df = pl.DataFrame({PLATE: ["a", "a", "b", "b"], "f0": [1.0, 2.0, 3.0, 4.0], "f1": [0.0] * 4})
    with pytest.raises(MissingColumnsError, match="Metadata_Batch"):
        Harmony("Metadata_Batch").fit(df)
    with pytest.raises(InvalidInputError, match="single value"):
        Harmony().fit(df.with_columns(pl.lit("a").alias(PLATE)))
    with pytest.raises(InvalidInputError, match="1 of 4 rows have a null"):
        Harmony().fit(
            df.with_columns(
                pl.when(pl.col("f0") == 1).then(None).otherwise(pl.col(PLATE)).alias(PLATE)
            )
        )
    with pytest.raises(InvalidInputError, match="missing or infinite in 1 feature"):
        Harmony().fit(
            df.with_columns(
                pl.when(pl.col("f0") == 2).then(np.nan).otherwise(pl.col("f0")).alias("f0")
            )
        )
    with pytest.warns(ProfilesWarning, match="n_clusters=300 is more than the 4 rows"):
        assert Harmony(n_components=2, n_clusters=300).fit(df).n_clusters_used_ == 4
    with pytest.warns(ProfilesWarning, match=r"n_components=50 is more than min\(rows, features\)"):
        assert Harmony(n_clusters=2).fit(df).components_.shape == (2, 2)
    with pytest.raises(EmptyInputError, match="at least 2 rows"):
        Harmony().fit(df[:1])
    with pytest.raises(InvalidInputError, match="n_clusters=0"):
        Harmony(n_clusters=0)
    with pytest.raises(InvalidInputError, match="not fitted"):
        Harmony().transform(df)
