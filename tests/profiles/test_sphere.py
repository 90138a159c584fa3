"""Sphering: thesis ZCA against float64 NumPy, pycytominer >= 1.7.1 parity, storage, lambda sweep."""

from __future__ import annotations

import sys
import types

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cellframe.columns import PLATE, feature_columns
from cellframe.errors import EmptyInputError, InvalidInputError, MissingColumnsError
from cellframe.pipeline import load_step, save_step
from cellframe.profiles import Spherizer, lambda_sweep, sphere

from ._helpers import assert_close

NEGCON = "Metadata_control_type = 'negcon'"


def _thesis_reference(x_ctrl: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """DOMAIN.md §2 written out in float64 NumPy."""
    mu = x_ctrl.mean(axis=0)
    s = (x_ctrl - mu).T @ (x_ctrl - mu) / x_ctrl.shape[0]
    e, u = np.linalg.eigh(s)
    w = u @ np.diag(1.0 / np.sqrt(np.clip(e, 0, None) + lam)) @ u.T
    return (y - mu) @ w


@pytest.mark.parametrize("lam", [1e-4, 1e-2, 1.0])
@pytest.mark.parametrize("scope", ["one plate (n < d)", "all plates (n > d)"])
def test_thesis_zca_matches_numpy_reference(nelisa, lam, scope):
    data = nelisa.filter(pl.col(PLATE) == nelisa[PLATE][0]) if scope.startswith("one") else nelisa
    feats = feature_columns(data)
    ours = sphere(data, lam=lam, controls=NEGCON).collect()
    x = data.select(feats).to_numpy()
    ctrl = data.filter(pl.sql_expr(NEGCON)).select(feats).to_numpy()
    ref = _thesis_reference(ctrl, x, lam)
    assert_close(ours.select(feats).to_numpy(), ref, f"thesis ZCA lambda={lam:g} {scope}")
    assert ours.columns == data.columns  # metadata pass through, order kept


def test_thesis_zca_whitens_controls_when_lambda_is_zero():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, 4)) @ np.array(
        [[3, 0, 0, 0], [1, 2, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0.5]]
    )
    out = sphere(pl.DataFrame(x, schema=list("abcd")), lam=0.0, controls=None).collect().to_numpy()
    np.testing.assert_allclose(np.cov(out, rowvar=False, bias=True), np.eye(4), atol=1e-5)


def _pycytominer_spherize(
    df: pl.DataFrame, feats: list[str], method: str, samples: str
) -> np.ndarray:
    from pycytominer import normalize as pyc_normalize

    meta = [c for c in df.columns if c not in set(feats)]
    out = pyc_normalize(
        profiles=df.to_pandas(),
        features=feats,
        meta_features=meta,
        samples=samples,
        method="spherize",
        spherize_method=method,
        spherize_epsilon=1e-6,
    )
    return out.drop(columns=meta).to_numpy()


@pytest.mark.parametrize("method", ["ZCA", "ZCA-cor", "PCA", "PCA-cor"])
@pytest.mark.parametrize("scope", ["one plate (n < d)", "all plates (n > d)"])
def test_pycytominer_compatibility_mode(nelisa, method, scope):
    data = nelisa.filter(pl.col(PLATE) == nelisa[PLATE][0]) if scope.startswith("one") else nelisa
    feats = feature_columns(data)
    sph = Spherizer(method, controls=NEGCON).fit(data)
    ours = sph.transform(data).collect()
    ref = _pycytominer_spherize(data, feats, method, "Metadata_control_type == 'negcon'")
    got = ours.select(sph.output_names_).to_numpy().astype(np.float64)
    if method.startswith("PCA"):
        assert sph.output_names_[:2] == ["PC1", "PC2"]
        # Components are defined up to sign; beyond rank n - 1 pycytominer's
        # basis of the null space is arbitrary, so compare the first n - 1.
        k = min(sph.n_controls_ - 1, len(feats))
        got, ref = got[:, :k], ref[:, :k]
        got = got * np.sign((got * ref).sum(axis=0))
    assert_close(got, ref, f"spherize {method} {scope}")


def test_save_load_apply_to_new_plate(store, nelisa):
    plates = nelisa[PLATE].unique(maintain_order=True).to_list()
    train = nelisa.filter(pl.col(PLATE).is_in(plates[:3]))
    new = nelisa.filter(pl.col(PLATE) == plates[3])
    for method in ("regularized", "PCA-cor"):
        sph = Spherizer(method, lam=0.05, controls=NEGCON).fit(train)
        save_step(store, sph, "sphere_fit")
        loaded = load_step(store, "sphere_fit")
        assert loaded.method == method and loaded.output_names_ == sph.output_names_
        assert_frame_equal(loaded.transform(new).collect(), sph.transform(new).collect())
    feats = feature_columns(nelisa)
    with pytest.raises(MissingColumnsError, match="fitted features must all be present"):
        loaded.transform(new.drop(feats[0]))


def test_bad_input():
    df = pl.DataFrame(
        {
            "Metadata_Control": ["negcon", "negcon", "negcon", ""],
            "a": [1.0, 2.0, 4.0, 3.0],
            "b": [1.0, 1.0, 1.0, 5.0],
            "c": [1.0, None, 3.0, 1.0],
        }
    )
    with pytest.raises(InvalidInputError, match=r"missing values in the control profiles.*'c'"):
        sphere(df)
    with pytest.raises(InvalidInputError, match=r"constant in the controls.*'b'"):
        sphere(df.drop("c"), "ZCA-cor")
    with pytest.raises(EmptyInputError, match="at least 2 control profiles, found 1"):
        sphere(df.drop("c"), controls=pl.col("a") == 4.0)
    with pytest.raises(ValueError, match="valid: 'regularized', 'ZCA'"):
        Spherizer("whiten")


def test_lambda_sweep_custom_score(nelisa):
    data = nelisa.filter(pl.col(PLATE) == nelisa[PLATE][0])
    feats = feature_columns(data)

    def score(profiles: pl.DataFrame) -> float:  # mean |x| of the sphered treatments
        return float(
            np.abs(
                profiles.filter(pl.sql_expr("Metadata_control_type IS NULL"))
                .select(feats)
                .to_numpy()
            ).mean()
        )

    grid = [1e-3, 1e-1, 1e1]
    table = lambda_sweep(data, grid, controls=NEGCON, score=score)
    assert table["lambda"].to_list() == grid
    for lam, value in zip(grid, table["score"], strict=True):
        direct = score(sphere(data, lam=lam, controls=NEGCON).collect())
        assert value == pytest.approx(direct, rel=1e-6)
    # Stronger regularization shrinks less: the score falls as lambda grows.
    assert table["score"].is_sorted(descending=True)


def test_lambda_sweep_default_score_uses_evaluate(monkeypatch, nelisa):
    data = nelisa.filter(pl.col(PLATE) == nelisa[PLATE][0])
    fake = types.ModuleType("cellframe.evaluate")
    calls = []

    def retrieval_map(profiles, label):
        calls.append(label)
        return 0.25

    fake.retrieval_map = retrieval_map
    monkeypatch.setitem(sys.modules, "cellframe.evaluate", fake)
    table = lambda_sweep(data, [0.1, 1.0], controls=NEGCON, label="Metadata_pert_iname")
    assert table["score"].to_list() == [0.25, 0.25] and calls == ["Metadata_pert_iname"] * 2
    monkeypatch.setitem(sys.modules, "cellframe.evaluate", types.ModuleType("cellframe.evaluate"))
    with pytest.raises(InvalidInputError, match=r"retrieval_map.*pass score="):
        lambda_sweep(data, [0.1], controls=NEGCON)


@pytest.mark.parametrize("method", ["ZCA", "PCA-cor"])
def test_ill_conditioned_controls_use_exact_svd(method):
    # Two nearly collinear features (condition number ~1e6 > 1e5): the fast
    # Gram path is skipped and the exact SVD still matches pycytominer.
    from pycytominer.operations.transform import Spherize as PycSpherize

    rng = np.random.default_rng(7)
    x = rng.normal(size=(300, 5))
    x[:, 4] = x[:, 3] + 1e-6 * rng.normal(size=300)
    names = [f"f{i}" for i in range(5)]
    df = pl.DataFrame(x, schema=names)
    import pandas as pd

    ref = PycSpherize(method=method, epsilon=1e-6).fit(pd.DataFrame(x, columns=names))
    expected = ref.transform(pd.DataFrame(x, columns=names)).to_numpy()
    got = Spherizer(method, controls=None).fit(df).transform_array(x)
    if method.startswith("PCA"):
        got = got * np.sign((got * expected).sum(axis=0))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max())


@pytest.mark.filterwarnings("ignore:.*have no 'Metadata_moa':RuntimeWarning")  # DMSO rows
def test_lambda_sweep_with_cellframe_evaluate(lincs):
    evaluate = pytest.importorskip("cellframe.evaluate")
    if not hasattr(evaluate, "retrieval_map"):
        pytest.skip("cellframe.evaluate.retrieval_map is not available")
    controls = "Metadata_pert_type = 'control'"
    table = lambda_sweep(lincs, [1e-2, 1.0], controls=controls, label="Metadata_moa")
    print(table)
    for lam, value in zip(table["lambda"], table["score"], strict=True):
        direct = evaluate.retrieval_map(
            sphere(lincs, lam=lam, controls=controls).collect(), label="Metadata_moa"
        )
        assert 0.0 <= value <= 1.0 and value == pytest.approx(direct, rel=1e-9)


def test_lambda_sweep_reports_nan_scores(nelisa):
    """A NaN score would sort above every number and be picked as the best lambda."""
    from cellframe.errors import NaNExcludedWarning

    data = nelisa.filter(pl.col(PLATE) == nelisa[PLATE][0])
    calls = iter([0.3, float("nan"), 0.2])
    with pytest.warns(NaNExcludedWarning, match="1 of 3 lambdas scored NaN"):
        table = lambda_sweep(data, [1e-3, 1e-1, 1e1], controls=NEGCON, score=lambda _: next(calls))
    assert table.sort("score", descending=True)["lambda"][0] == 1e-1  # the trap
    best = table.filter(pl.col("score").is_not_nan()).sort("score", descending=True)
    assert best["lambda"][0] == 1e-3


@pytest.mark.parametrize("lam", [-1e-3, float("nan"), float("inf")])
def test_bad_lambda_is_a_named_error(lam):
    with pytest.raises(InvalidInputError, match=r"lam=.*finite number >= 0"):
        Spherizer(lam=lam)
    with pytest.raises(InvalidInputError, match="lam="):
        sphere(pl.DataFrame({"a": [1.0, 2.0]}), lam=lam, controls=None)


def test_bad_epsilon_and_method_are_named_errors():
    from cellframe.errors import InvalidChoiceError

    with pytest.raises(InvalidInputError, match=r"epsilon=nan"):
        Spherizer("ZCA", epsilon=float("nan"))
    with pytest.raises(InvalidChoiceError, match="'regularized'"):
        Spherizer("whiten")
    # lam = 0 (no regularisation) and a huge lam are valid.
    assert Spherizer(lam=0.0).lam == 0.0 and Spherizer(lam=1e6).lam == 1e6
