"""Recipe strings and TOML recipes: parsing, errors, and running them on real profiles."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cellframe.columns import CONTROL, COUNT_CELLS, MOA, PLATE, WELL, feature_columns
from cellframe.errors import InvalidInputError, UnknownRecipeTokenError
from cellframe.profiles import (
    RECIPE_TOKENS,
    CellCountRegressor,
    FeatureSelector,
    Harmony,
    InverseNormalTransformer,
    Normalizer,
    SphereByMAP,
    TypicalVariationNormalizer,
    WellPositionCorrector,
    apply_recipe,
    parse_recipe,
)
from cellframe.profiles.recipe import VariancePCA

NEGCON = "Metadata_control_type = 'negcon'"


def test_token_string_builds_the_recipe_steps_with_their_defaults() -> None:
    steps = parse_recipe("var_mad_outlier_featselect_sphering_harmony_PCA")
    assert [s.token for s in steps] == [
        "var", "mad", "outlier", "featselect", "sphering", "harmony", "PCA",
    ]  # fmt: skip
    var, mad, outlier, featselect, sphering, harmony, pca = (s.step for s in steps)
    assert isinstance(var, FeatureSelector)
    assert var.operations == ["drop_na_columns", "variance_threshold"]
    assert isinstance(mad, Normalizer) and mad.method == "mad_robustize"
    assert mad.by == [PLATE] and mad.controls == "negcon"
    assert outlier.parameters()["outlier_cutoff"] == 100.0
    assert featselect.operations == [
        "frequency_threshold", "correlation_threshold", "blocklist", "drop_na_columns",
    ]  # fmt: skip
    assert featselect.parameters()["corr_threshold"] == 0.9
    assert isinstance(sphering, SphereByMAP) and sphering.grid[0] == 1e-5
    assert (sphering.score, sphering.label) == ("replicate", "Metadata_Treatment")
    assert isinstance(harmony, Harmony) and harmony.batch_key == PLATE
    assert harmony.max_iter == 20
    assert isinstance(pca, VariancePCA) and pca.variance == 0.98
    # Tokens match case-insensitively; each parse gives fresh objects.
    assert parse_recipe("pca")[0].token == "PCA"
    assert parse_recipe("mad")[0].step is not parse_recipe("mad")[0].step


def test_unknown_tokens_are_refused_by_name() -> None:
    with pytest.raises(UnknownRecipeTokenError, match="unknown recipe token 'robust'") as err:
        parse_recipe("var_robust_harmony")
    for token in RECIPE_TOKENS:
        assert repr(token) in str(err.value)
    assert "token 2" in str(err.value)
    # The JUMP recipe's chromosome-arm correction is not a cellframe step.
    with pytest.raises(UnknownRecipeTokenError, match="unknown recipe token 'corrected'"):
        parse_recipe("wellpos_cc_var_mad_outlier_featselect_sphering_harmony_PCA_corrected")
    with pytest.raises(InvalidInputError, match="empty token"):
        parse_recipe("var__mad")
    with pytest.raises(InvalidInputError, match="names no step"):
        parse_recipe([])
    with pytest.raises(InvalidInputError, match="recipe step 1: 3 is not a token"):
        parse_recipe([3])
    with pytest.raises(UnknownRecipeTokenError, match="not None"):
        parse_recipe([{"batch_key": "x"}])


def test_toml_recipe_and_parameters() -> None:
    text = """
[[step]]
run = "mad"
controls = "all"

[[step]]
run = "harmony"
batch_key = "Metadata_Source"
n_clusters = 300
"""
    steps = parse_recipe(text, parameters={"harmony": {"seed": 7, "n_clusters": 5}})
    assert [s.token for s in steps] == ["mad", "harmony"]
    assert steps[0].step.controls == "all"
    harmony = steps[1].step
    # The step's own TOML parameters win over the per-token ones.
    assert (harmony.batch_key, harmony.n_clusters, harmony.seed) == ("Metadata_Source", 300, 7)
    assert steps[1].parameters == {"seed": 7, "n_clusters": 300, "batch_key": "Metadata_Source"}
    pairs = parse_recipe([("harmony", {"max_iter": 5}), {"run": "var", "min_variance": 0.5}])
    assert pairs[0].step.max_iter == 5 and pairs[1].step.parameters()["min_variance"] == 0.5
    with pytest.raises(
        InvalidInputError, match=r"step 'harmony' has no parameter\(s\) \['clusters'\]"
    ):
        parse_recipe('[[step]]\nrun = "harmony"\nclusters = 3\n')
    with pytest.raises(InvalidInputError, match="TOML recipe step 2: no run"):
        parse_recipe('[[step]]\nrun = "mad"\n[[step]]\nbatch_key = "x"\n')
    with pytest.raises(InvalidInputError, match="not valid TOML"):
        parse_recipe("[[step]\nrun = mad\n")
    with pytest.raises(InvalidInputError, match=r"unknown top-level key\(s\) \['steps'\]"):
        parse_recipe('[[steps]]\nrun = "mad"\n')
    with pytest.raises(UnknownRecipeTokenError, match="'harmoni'"):
        parse_recipe("mad", parameters={"harmoni": {}})


def test_apply_recipe_hand_computed() -> None:
    df = pl.DataFrame(
        {
            PLATE: ["p1"] * 4 + ["p2"] * 4,
            CONTROL: ["negcon", "negcon", "negcon", "trt"] * 2,
            "a": [1.0, 2.0, 3.0, 9.0, 10.0, 20.0, 30.0, 0.0],
            "flat": [5.0] * 8,
        }
    )
    out = apply_recipe(df, "var_mad")
    # var drops the constant feature; mad: (x - median) / (1.4826 * MAD) of each plate's negcon.
    assert out.frame.columns == [PLATE, CONTROL, "a"]
    expected = np.array([-1, 0, 1, 7, -1, 0, 1, -2]) / 1.4826
    np.testing.assert_allclose(out.frame["a"].to_numpy(), expected, rtol=1e-6)
    assert [p["token"] for p in out.provenance] == ["var", "mad"]
    assert out.provenance[0]["features_in"] == 2 and out.provenance[0]["features_out"] == 1
    assert out.provenance[1]["parameters"]["method"] == "mad_robustize"
    assert [d["feature"] for d in out.provenance[0]["dropped"]] == ["flat"]
    assert out.provenance[0]["dropped"][0]["operation"] == "variance_threshold"
    assert "dropped" not in out.provenance[1]
    assert out.provenance[1]["step"] == "Normalizer"


def test_apply_recipe_on_nelisa_matches_the_steps_run_by_hand(nelisa: pl.DataFrame) -> None:
    params = {"mad": {"controls": NEGCON}, "harmony": {"n_components": 30, "seed": 1}}
    out = apply_recipe(nelisa, "mad_featselect_harmony", parameters=params)
    ref = Normalizer("mad_robustize", controls=NEGCON).fit_transform(nelisa).collect()
    selector = FeatureSelector(
        ["frequency_threshold", "correlation_threshold", "blocklist", "drop_na_columns"],
        na_cutoff=0.0,
    )
    ref = selector.fit(ref).transform(ref).collect()
    ref = Harmony(n_components=30, seed=1).fit_transform(ref).collect()
    assert_frame_equal(out.frame, ref)
    assert out.frame.height == nelisa.height
    assert feature_columns(out.frame) == [f"harmony_{i}" for i in range(30)]
    prov = out.provenance
    assert [p["token"] for p in prov] == ["mad", "featselect", "harmony"]
    assert prov[2]["parameters"]["converged"] is True
    assert prov[2]["parameters"]["n_components_used"] == 30
    assert prov[1]["features_in"] == 191
    assert prov[1]["features_out"] == len(selector.selection_.kept)


def test_variance_pca_keeps_the_share_of_variance() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)) * np.array([10.0, 3.0, 1.0, 0.1])
    df = pl.DataFrame({f"f{j}": x[:, j] for j in range(4)})
    share = np.linalg.eigvalsh(np.cov(x, rowvar=False))[::-1]
    share = np.cumsum(share) / share.sum()
    k = int(np.argmax(share >= 0.98)) + 1
    step = VariancePCA().fit(df)
    assert step.parameters()["n_components_kept"] == k
    scores = step.transform(df).collect()
    assert scores.columns == [f"PC{i + 1}" for i in range(k)]
    assert set(scores.schema.values()) == {pl.Float32}
    centred = x - x.mean(axis=0)
    np.testing.assert_allclose(
        np.abs(scores.to_numpy()), np.abs(centred @ step.pca_.components_.T), rtol=1e-4, atol=1e-4
    )
    assert VariancePCA(n_components=3).fit(df).parameters()["n_components_kept"] == 3
    with pytest.raises(InvalidInputError, match=r"variance=1\.5"):
        VariancePCA(variance=1.5)


def test_the_correction_tokens_build_the_correct_steps() -> None:
    steps = parse_recipe("wellpos_cc_int_tvn")
    wellpos, cc, int_, tvn = (s.step for s in steps)
    assert isinstance(wellpos, WellPositionCorrector)
    assert wellpos.position == WELL and wellpos.controls is None
    assert isinstance(cc, CellCountRegressor) and cc.count == COUNT_CELLS
    assert isinstance(int_, InverseNormalTransformer)
    assert int_.method == "blom" and int_.by == []
    assert isinstance(tvn, TypicalVariationNormalizer)
    assert tvn.batch == PLATE and tvn.controls == "negcon"
    assert list(RECIPE_TOKENS) == [
        "wellpos", "cc", "var", "mad", "int", "outlier", "featselect", "sphering", "tvn",
        "harmony", "PCA",
    ]  # fmt: skip


def test_the_jump_compound_recipe_on_nelisa(nelisa: pl.DataFrame) -> None:
    params = {"mad": {"controls": NEGCON}, "harmony": {"n_components": 30}}
    out = apply_recipe(nelisa, "var_mad_int_featselect_harmony", parameters=params)
    ref = nelisa
    for step in (
        FeatureSelector(["drop_na_columns", "variance_threshold"], na_cutoff=0.0),
        Normalizer("mad_robustize", controls=NEGCON),
        InverseNormalTransformer(),
        FeatureSelector(
            ["frequency_threshold", "correlation_threshold", "blocklist", "drop_na_columns"],
            na_cutoff=0.0,
        ),
        Harmony(n_components=30),
    ):
        ref = step.fit(ref).transform(ref).collect()
    assert_frame_equal(out.frame, ref)
    assert [p["token"] for p in out.provenance] == ["var", "mad", "int", "featselect", "harmony"]
    assert out.provenance[2]["parameters"]["method"] == "blom"


def _genetic_screen(seed: int = 0) -> pl.DataFrame:
    """4 plates x 24 wells (8 negcon), 8 features with a well-position and a cell-count effect."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(4):
        for w in range(24):
            rows.append((f"P{p}", f"A{w:02d}", "negcon" if w < 8 else "trt", f"g{w % 8}"))
    frame = pl.DataFrame(rows, schema=[PLATE, WELL, CONTROL, MOA], orient="row")
    n = frame.height
    count = rng.integers(200, 800, size=n).astype(np.float64)
    position = np.tile(rng.normal(size=(24, 8)), (4, 1))
    gene = np.array([int(g[1:]) for g in frame[MOA]])
    signal = np.where(frame[CONTROL].to_numpy()[:, None] == "trt", np.eye(8)[gene] * 2.0, 0.0)
    x = rng.normal(size=(n, 8)) + position + 0.004 * count[:, None] + signal
    return frame.with_columns(
        pl.Series(COUNT_CELLS, count), *[pl.Series(f"f{j}", x[:, j]) for j in range(8)]
    )


def test_the_jump_genetic_recipe_runs_end_to_end() -> None:
    screen = _genetic_screen()
    recipe = "wellpos_cc_var_mad_outlier_featselect_sphering_harmony_PCA"
    out = apply_recipe(
        screen,
        recipe,
        parameters={
            "featselect": {"corr_threshold": 0.95},
            "sphering": {"grid": [1e-3, 1e-1, 10.0], "label": MOA},
            "harmony": {"n_components": None, "n_clusters": 4},
            "PCA": {"variance": 0.9},
        },
    )
    assert [p["token"] for p in out.provenance] == recipe.split("_")
    assert out.frame.height == screen.height
    pcs = feature_columns(out.frame)
    assert pcs == [f"PC{i + 1}" for i in range(len(pcs))]
    sphering = out.provenance[6]["parameters"]
    assert sphering["lam"] in (1e-3, 1e-1, 10.0)
    assert sphering["lam"] == sphering["grid"][int(np.argmax(sphering["scores"]))]
    assert out.provenance[8]["parameters"]["variance_kept"] >= 0.9
    # Well position and cell count were regressed out first: in the cc output the
    # features no longer correlate with the count.
    partial = apply_recipe(screen, "wellpos_cc").frame
    for j in range(8):
        r = np.corrcoef(partial[COUNT_CELLS].to_numpy(), partial[f"f{j}"].to_numpy())[0, 1]
        assert abs(r) < 1e-6
