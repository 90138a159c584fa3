"""SphereByMAP: sphering whose lambda is the grid point with the highest mAP on the fitting rows."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cellframe.columns import CONTROL, MOA, TREATMENT
from cellframe.errors import (
    InvalidChoiceError,
    InvalidInputError,
    MissingColumnsError,
    NaNExcludedWarning,
)
from cellframe.evaluate import retrieval_map
from cellframe.profiles import SphereByMAP, Spherizer
from cellframe.profiles._fitted import Rows
from cellframe.profiles.sphere import LAMBDA_GRID


def _hidden_signal(seed: int = 0) -> pl.DataFrame:
    """Two MoAs apart along a quiet feature, buried in a loud one that controls also vary in.

    Without whitening (large lambda) the cosine ranking follows the loud
    noise; whitening on the controls (small lambda) brings the quiet signal out.
    """
    rng = np.random.default_rng(seed)
    n_ctrl, n_trt = 40, 24
    loud = rng.normal(scale=10.0, size=n_ctrl + n_trt)
    quiet = rng.normal(scale=0.1, size=n_ctrl + n_trt)
    moa = ["ctrl"] * n_ctrl + ["a"] * (n_trt // 2) + ["b"] * (n_trt // 2)
    quiet[n_ctrl : n_ctrl + n_trt // 2] += 1.0
    quiet[n_ctrl + n_trt // 2 :] -= 1.0
    third = rng.normal(scale=1.0, size=n_ctrl + n_trt)
    return pl.DataFrame(
        {
            CONTROL: ["negcon"] * n_ctrl + ["trt"] * n_trt,
            MOA: moa,
            "loud": loud,
            "quiet": quiet,
            "third": third,
        }
    )


def test_picks_the_grid_point_with_the_highest_map() -> None:
    df = _hidden_signal()
    grid = [1e-4, 1e-2, 1.0, 1e2, 1e4]
    step = SphereByMAP(grid).fit(df)
    # Reference: a Spherizer fitted at each lambda, scored with retrieval_map.
    expected = [
        retrieval_map(Spherizer(lam=lam).fit(df).transform(df).collect(), label=MOA) for lam in grid
    ]
    np.testing.assert_allclose(step.sweep_["score"].to_numpy(), expected, rtol=1e-6)
    best = int(np.argmax(expected))
    assert step.lam == grid[best]
    assert step.sweep_["chosen"].to_list() == [i == best for i in range(len(grid))]
    # By construction strong whitening wins, and by a clear margin over no whitening.
    assert step.lam <= 1e-2
    assert expected[best] > expected[-1] + 0.1
    # The fitted transform is the Spherizer at the chosen lambda.
    ref = Spherizer(lam=step.lam).fit(df)
    np.testing.assert_allclose(step.W_, ref.W_, rtol=1e-10)
    assert_frame_equal(step.transform(df).collect(), ref.transform(df).collect())


def test_a_hand_computed_optimum_with_a_custom_score() -> None:
    # One feature, control variance v = 4 (population): sphered controls have
    # variance v / (v + lambda), 0.5 exactly at lambda = v.
    x = np.array([-3.0, -1.0, 1.0, 3.0, -1.0, 1.0, -3.0, 3.0])
    v = float(x.var())
    assert v == 5.0
    df = pl.DataFrame({CONTROL: ["negcon"] * 8, "f": x})

    def closeness_to_half(profiles: pl.DataFrame) -> float:
        return -abs(float(profiles["f"].cast(pl.Float64).var(ddof=0)) - 0.5)

    grid = [0.5, 1.0, 5.0, 10.0, 50.0]
    step = SphereByMAP(grid, score=closeness_to_half).fit(df)
    assert step.lam == 5.0
    assert step.sweep_["score"][2] == pytest.approx(0.0, abs=1e-6)


def test_ties_pick_the_first_and_nan_scores_are_left_out() -> None:
    df = _hidden_signal()
    step = SphereByMAP([1e-3, 1e-1, 10.0], score=lambda p: 1.0).fit(df)
    assert step.lam == 1e-3
    calls = iter([float("nan"), 0.2, 0.1])
    with pytest.warns(NaNExcludedWarning, match="1 of 3 lambdas scored NaN"):
        step = SphereByMAP([1e-3, 1e-1, 10.0], score=lambda p: next(calls)).fit(df)
    assert step.lam == 1e-1
    with pytest.raises(InvalidInputError, match="every lambda of the grid scored NaN"):
        SphereByMAP([1.0, 2.0], score=lambda p: float("nan")).fit(df)


def test_replicate_score_ranks_replicates_against_controls() -> None:
    df = _hidden_signal().with_columns(pl.col(MOA).alias(TREATMENT))
    step = SphereByMAP([1e-4, 1e4], score="replicate", label=TREATMENT).fit(df)
    assert step.lam == 1e-4
    scores = step.sweep_["score"].to_list()
    assert scores[0] > scores[1]
    with pytest.raises(InvalidInputError, match="not 'all'"):
        SphereByMAP([1.0], score="replicate", label=TREATMENT, controls="all").fit(df)


def test_to_frame_records_the_grid_and_round_trips_through_a_store(store) -> None:
    df = _hidden_signal()
    step = SphereByMAP([1e-4, 1e-2, 1.0]).fit(df)
    table = step.to_frame()
    sweep = table.filter(pl.col("Metadata_Row") == "sweep")
    assert sweep["Metadata_Lambda"].to_list() == [1e-4, 1e-2, 1.0]
    assert sweep.filter(pl.col("Metadata_Chosen"))["Metadata_Lambda"].to_list() == [step.lam]
    assert table.filter(pl.col("Metadata_Row") != "sweep")["Metadata_Lambda"].null_count() == 5
    params = step.parameters()
    assert params["lam"] == step.lam and params["grid"] == [1e-4, 1e-2, 1.0]
    from cellframe.pipeline import load_step, save_step

    save_step(store, step, "sphere_fit")
    loaded = load_step(store, "sphere_fit", expect=SphereByMAP)
    assert isinstance(loaded, SphereByMAP) and loaded.lam == step.lam
    assert_frame_equal(loaded.sweep_, step.sweep_)
    assert_frame_equal(loaded.transform(df).collect(), step.transform(df).collect())


def test_statistics_are_rows_and_bad_parameters_are_refused() -> None:
    df = _hidden_signal()
    stats = SphereByMAP([1.0]).statistics(df)
    assert isinstance(stats, Rows) and stats.needs_all_rows and stats.frame.height == df.height
    assert SphereByMAP().grid.tolist() == list(LAMBDA_GRID)
    assert LAMBDA_GRID[0] == 1e-5 and LAMBDA_GRID[-1] == 1e3
    with pytest.raises(InvalidChoiceError, match="unknown SphereByMAP score 'best'"):
        SphereByMAP(score="best")
    with pytest.raises(InvalidInputError, match="finite"):
        SphereByMAP([-1.0])
    with pytest.raises(InvalidInputError, match="non-empty"):
        SphereByMAP([])
    with pytest.raises(MissingColumnsError, match="Metadata_MoA"):
        SphereByMAP([1.0]).fit(df.drop(MOA))


def test_on_nelisa_with_a_plate_effect_it_removes_batch_and_keeps_replicates(
    nelisa: pl.DataFrame,
) -> None:
    import warnings

    from sklearn.metrics import silhouette_score

    from cellframe.columns import PLATE, feature_columns
    from cellframe.evaluate import phenotypic_activity

    features = feature_columns(nelisa)
    rng = np.random.default_rng(1)
    offsets = {p: rng.normal(scale=0.3, size=len(features)) for p in sorted(nelisa[PLATE].unique())}
    x = nelisa.select(features).to_numpy() + np.vstack([offsets[p] for p in nelisa[PLATE]])
    wells = nelisa.with_columns(
        [pl.Series(f, x[:, j]) for j, f in enumerate(features)]
        + [pl.col("Metadata_broad_sample").fill_null("control")]
    )
    negcon = pl.col("Metadata_control_type") == "negcon"

    def replicate_map(frame: pl.DataFrame) -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ap = phenotypic_activity(frame, treatment="Metadata_broad_sample", controls=negcon)
        return float(ap.filter(~pl.col("is_control"))["average_precision"].drop_nulls().mean())

    def plate_silhouette(frame: pl.DataFrame) -> float:
        return float(silhouette_score(frame.select(features).to_numpy(), frame[PLATE].to_numpy()))

    step = SphereByMAP(
        [1e-4, 1e-2, 1.0, 1e2],
        score="replicate",
        label="Metadata_broad_sample",
        controls="Metadata_control_type = 'negcon'",
    ).fit(wells)
    out = step.transform(wells).collect()
    scores = step.sweep_["score"].to_numpy()
    assert step.lam == 1e-4 and scores[0] == scores.max()
    # The chosen score is the replicate mAP of the output, and beats the uncorrected one.
    assert replicate_map(out) == pytest.approx(scores[0], rel=1e-6)
    assert replicate_map(out) > replicate_map(wells) + 0.05
    assert abs(plate_silhouette(out)) < plate_silhouette(wells) / 2
