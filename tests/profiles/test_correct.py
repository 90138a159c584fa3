"""Correction steps (DOMAIN.md §7) against hand-computed values, float64 NumPy / scikit-learn
references, pycytominer's inverse-normal transform, and Ray-plate fits."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from scipy.stats import norm, rankdata

from cellframe.columns import CONTROL, COUNT_CELLS, PLATE, WELL, feature_columns
from cellframe.errors import (
    CellframeError,
    InvalidInputError,
    MissingColumnsError,
    TooFewControlsError,
)
from cellframe.profiles._common import ProfilesWarning
from cellframe.profiles._fitted import fit_local
from cellframe.profiles.correct import (
    CellCountRegressor,
    InverseNormalTransformer,
    TypicalVariationNormalizer,
    WellPositionCorrector,
    inverse_normal_transform,
    regress_cell_count,
    typical_variation_normalize,
    well_position_correct,
)

FEATURES = [f"f{j}" for j in range(5)]


@pytest.fixture(scope="module")
def lincs() -> pl.DataFrame:
    """LINCS SQ00015054 well profiles (384 x 454), the copy bundled in cellframe/data/demo
    (the same file as ../shared/data/profiles-lincs-SQ00015054), so the parity runs without
    the shared data."""
    from cellframe.demo import demo_data_dir

    path = demo_data_dir() / "lincs" / "SQ00015054_normalized_feature_select.csv.gz"
    return pl.read_csv(path, infer_schema_length=1000)


def three_plates(seed: int = 0, n_wells: int = 24, n_controls: int = 6) -> pl.DataFrame:
    """3 plates x 24 well positions; 6 negcon wells per plate; a plate effect, a position
    effect and a cell-count effect of known size on every feature."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(3):
        for w in range(n_wells):
            count = int(rng.integers(50, 400))
            effect = 2.0 * p + 0.5 * (w % 4) + 0.01 * count
            x = rng.normal(size=len(FEATURES)) * np.arange(1, 6) + effect
            x += 10.0 * (w < n_controls) * 0  # controls share the distribution
            rows.append((f"P{p}", f"A{w + 1:02d}", "negcon" if w < n_controls else "", count, *x))
    cols = [PLATE, WELL, CONTROL, COUNT_CELLS, *FEATURES]
    df = pl.DataFrame(rows, schema=cols, orient="row")
    return df.with_columns(pl.col(FEATURES).cast(pl.Float32), pl.col(COUNT_CELLS).cast(pl.Int64))


def blom_reference(x: np.ndarray) -> np.ndarray:
    """Blom INT of each column in float64 (NaN excluded from the ranks, kept as NaN)."""
    out = np.full(x.shape, np.nan)
    for j in range(x.shape[1]):
        ok = ~np.isnan(x[:, j])
        n = ok.sum()
        out[ok, j] = norm.ppf((rankdata(x[ok, j]) - 3 / 8) / (n + 1 / 4))
    return out


# ============================================================ inverse-normal transform
def test_int_by_hand_with_ties_and_missing_values() -> None:
    df = pl.DataFrame({"f": [3.0, 1.0, 2.0, 2.0, None, float("nan")], "g": [1.0] * 6})
    out = InverseNormalTransformer().fit(df).transform(df).collect()
    # n = 4 present values; ranks 4, 1, 2.5, 2.5 (ties averaged).
    expected = [norm.ppf((r - 0.375) / 4.25) for r in (4, 1, 2.5, 2.5)]
    np.testing.assert_allclose(out["f"].to_numpy()[:4], expected, atol=1e-7)
    assert out["f"][4] is None and np.isnan(out["f"][5])  # null stays null, NaN stays NaN
    assert out["g"].to_list() == [0.0] * 6  # all tied: the middle rank, Phi^-1(0.5) = 0
    assert out.schema["f"] == pl.Float32


def test_int_per_plate_ranks_each_plate_alone() -> None:
    wells = three_plates()
    out = inverse_normal_transform(wells).collect()
    for plate in ("P0", "P1", "P2"):
        part = wells.filter(pl.col(PLATE) == plate)
        got = out.filter(pl.col(PLATE) == plate).select(FEATURES).to_numpy()
        ref = blom_reference(part.select(FEATURES).to_numpy().astype(np.float64))
        np.testing.assert_allclose(got, ref, atol=1e-6)
    # Global ranks differ from per-plate ranks on data with a plate effect (control).
    glob = inverse_normal_transform(wells, by=()).collect().select(FEATURES).to_numpy()
    assert np.abs(glob - out.select(FEATURES).to_numpy()).max() > 0.5
    np.testing.assert_allclose(
        glob, blom_reference(wells.select(FEATURES).to_numpy().astype(np.float64)), atol=1e-6
    )


def test_int_offsets_are_the_named_ones() -> None:
    df = pl.DataFrame({"f": [5.0, 1.0, 3.0]})
    for method, c in (("rankit", 0.5), ("tukey", 1 / 3), ("van_der_waerden", 0.0)):
        got = inverse_normal_transform(df, method, by=()).collect()["f"].to_numpy()
        np.testing.assert_allclose(
            got, norm.ppf((np.array([3, 1, 2]) - c) / (3 - 2 * c + 1)), atol=1e-7
        )


def test_int_matches_scipy_on_lincs(lincs: pl.DataFrame) -> None:
    feats = feature_columns(lincs)
    x = lincs.select(feats).to_numpy().astype(np.float32).astype(np.float64)
    got = inverse_normal_transform(lincs, by=()).collect().select(feats).to_numpy()
    assert np.isclose(x, np.roll(x, 1, axis=0)).any()  # the plate has ties
    np.testing.assert_allclose(got, blom_reference(x), atol=1e-6)


@pytest.mark.parametrize("data", ["lincs", "nelisa"])
@pytest.mark.parametrize("per_plate", [False, True])
def test_int_pycytominer_parity(request, data: str, per_plate: bool) -> None:
    """pycytominer 1.7's normalize(method="inverse_normal") to 1e-6 (its landmarks included:
    nELISA's 1,525 rows are more than its 1,000 quantiles)."""
    from pycytominer import normalize as pyc_normalize

    df = request.getfixturevalue(data)
    feats = feature_columns(df)
    # Both read the same float32 values (the store's feature type).
    df = df.with_columns(pl.col(feats).cast(pl.Float32).cast(pl.Float64))
    meta = [c for c in df.columns if c not in feats]
    groups = df.partition_by(PLATE, maintain_order=True) if per_plate else [df]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = np.vstack(
            [
                pyc_normalize(
                    g.to_pandas(), features=feats, meta_features=meta, method="inverse_normal"
                )[feats].to_numpy()
                for g in groups
            ]
        )
    by = (PLATE,) if per_plate else ()
    ours = (
        pl.concat([inverse_normal_transform(g, "pycytominer", by=by).collect() for g in groups])
        .select(feats)
        .to_numpy()
    )
    diff = np.abs(ours - ref).max()
    print(f"{data} per_plate={per_plate}: max |cellframe - pycytominer| = {diff:.2e}")
    assert diff <= 1e-6
    # The whole frame at once gives the same per-plate values.
    stacked = pl.concat(groups)
    whole = inverse_normal_transform(stacked, "pycytominer", by=by).collect()
    whole = whole.select(feats).to_numpy()
    np.testing.assert_allclose(whole, ours, atol=1e-7)
    # Blom is not pycytominer's formula (the clipped extremes differ by more than 1).
    blom = inverse_normal_transform(df, by=by).collect().select(feats).to_numpy()
    assert np.abs(blom - ref).max() > 1.0


def test_int_transforms_new_rows_against_the_fit_and_round_trips() -> None:
    fit = pl.DataFrame({"f": [1.0, 2.0, 3.0, 4.0]})
    step = InverseNormalTransformer().fit(fit)
    new = pl.DataFrame({"f": [2.5, 0.0, 9.0, 3.0]})
    got = step.transform(new).collect()["f"].to_numpy()
    ranks = np.array([2.5, 0.5, 4.5, 3.0])  # between neighbours; below/above every value
    np.testing.assert_allclose(got, norm.ppf((ranks - 0.375) / 4.25), atol=1e-7)
    again = InverseNormalTransformer.from_frame(step.to_frame(), step.parameters())
    assert_frame_equal(again.transform(new).collect(), step.transform(new).collect())


def test_int_refuses_bad_input() -> None:
    df = three_plates()
    with pytest.raises(InvalidInputError, match="unknown inverse-normal method 'bloom'"):
        InverseNormalTransformer("bloom")
    with pytest.raises(MissingColumnsError, match="Metadata_Batch"):
        inverse_normal_transform(df, by=["Metadata_Batch"])
    step = InverseNormalTransformer(by=[PLATE]).fit(df.filter(pl.col(PLATE) != "P2"))
    with pytest.raises(InvalidInputError, match=r"Metadata_Plate='P2'.*not among the rows"):
        step.transform(df).collect()


# ============================================================ well position
def hand_wells() -> pl.DataFrame:
    return pl.DataFrame(
        {
            PLATE: ["P1", "P1", "P1", "P2", "P2", "P2"],
            WELL: ["A01", "A02", "A03", "A01", "A02", "A03"],
            CONTROL: ["negcon", "", "negcon", "", "negcon", "negcon"],
            "f": [1.0, 10.0, 5.0, 3.0, 20.0, 7.0],
            "g": [0.0, 2.0, None, 4.0, 6.0, 1.0],
        }
    )


def test_well_position_by_hand() -> None:
    out = well_position_correct(hand_wells()).collect()
    # A01 mean 2, A02 mean 15, A03 mean 6; g: A01 2, A02 4, A03 1 (null skipped).
    assert out["f"].to_list() == [-1.0, -5.0, -1.0, 1.0, 5.0, 1.0]
    assert out["g"].to_list() == [-2.0, -2.0, None, 2.0, 2.0, 0.0]
    assert out.columns == hand_wells().columns and out.schema["f"] == pl.Float32


def test_well_position_on_controls_only_by_hand_and_refusals() -> None:
    wells = (
        hand_wells()
        .filter(pl.col(WELL) != "A02")
        .with_columns(pl.Series(CONTROL, ["negcon", "negcon", "", "negcon"]))
    )
    out = well_position_correct(wells, controls="negcon").collect()
    # A01 controls: P1 only (1.0); A03 controls: P1 (5.0) and P2 (7.0) -> 6.0.
    assert out["f"].to_list() == [0.0, -1.0, 2.0, 1.0]
    with pytest.raises(TooFewControlsError, match=r"1 well position.*'A02'"):
        well_position_correct(
            hand_wells()
            .with_columns(pl.lit("").alias(CONTROL))
            .with_columns(
                pl.when(pl.col(WELL) != "A02")
                .then(pl.lit("negcon"))
                .otherwise(pl.lit(""))
                .alias(CONTROL)
            ),
            controls="negcon",
        )
    with pytest.raises(MissingColumnsError, match="Metadata_Pos"):
        well_position_correct(hand_wells(), position="Metadata_Pos")
    step = WellPositionCorrector().fit(hand_wells().filter(pl.col(WELL) != "A03"))
    with pytest.raises(InvalidInputError, match="'A03'"):
        step.transform(hand_wells()).collect()


def test_well_position_statistics_merge_exactly() -> None:
    wells = three_plates()
    step = WellPositionCorrector(controls=None)
    merged = fit_local(step, wells.partition_by(PLATE))
    whole = WellPositionCorrector().fit(wells)
    np.testing.assert_allclose(merged.means_, whole.means_, atol=1e-12)
    x = wells.select(FEATURES).to_numpy().astype(np.float64)
    pos = wells[WELL].to_numpy()
    ref = x - np.vstack([x[pos == p].mean(axis=0) for p in pos])
    got = merged.transform(wells).collect().select(FEATURES).to_numpy()
    np.testing.assert_allclose(got, ref, atol=1e-5)
    again = WellPositionCorrector.from_frame(merged.to_frame(), merged.parameters())
    assert_frame_equal(again.transform(wells).collect(), merged.transform(wells).collect())


# ============================================================ cell-count regression
def test_cell_count_regression_against_lstsq_per_feature() -> None:
    wells = three_plates()
    x = wells.select(FEATURES).to_numpy().astype(np.float64)
    x[[3, 17, 40], 2] = np.nan
    wells = wells.with_columns(pl.Series("f2", x[:, 2].astype(np.float32)))
    count = wells[COUNT_CELLS].to_numpy().astype(np.float64)
    got = regress_cell_count(wells).collect()
    x = wells.select(FEATURES).to_numpy().astype(np.float64)
    for j, f in enumerate(FEATURES):
        ok = ~np.isnan(x[:, j])
        design = np.column_stack([np.ones(ok.sum()), count[ok]])
        coef = np.linalg.lstsq(design, x[ok, j], rcond=None)[0]
        ref = x[:, j] - (coef[0] + coef[1] * count)
        np.testing.assert_allclose(got[f].to_numpy(), ref.astype(np.float32), atol=2e-5)
    assert int(got["f2"].is_nan().sum()) == 3  # missing stays missing
    # The effect was 0.01 per cell: the residuals no longer track the count.
    res = got.select(FEATURES).to_numpy()
    assert abs(np.corrcoef(count, res[:, 0])[0, 1]) < 1e-5
    assert abs(np.corrcoef(count, x[:, 0])[0, 1]) > 0.3


def test_cell_count_merge_controls_and_refusals() -> None:
    wells = three_plates()
    step = fit_local(CellCountRegressor(controls="negcon"), wells.partition_by(PLATE))
    ctrl = wells.filter(pl.col(CONTROL) == "negcon")
    c = ctrl[COUNT_CELLS].to_numpy().astype(np.float64)
    for j, f in enumerate(FEATURES):
        b, a = np.polyfit(c, ctrl[f].to_numpy().astype(np.float64), 1)
        assert step.slope_[j] == pytest.approx(b, rel=1e-9) and step.intercept_[j] == pytest.approx(
            a, rel=1e-9
        )
    again = CellCountRegressor.from_frame(step.to_frame(), step.parameters())
    assert_frame_equal(again.transform(wells).collect(), step.transform(wells).collect())
    with pytest.raises(InvalidInputError, match=r"1 row.*no cell count in 'Metadata_Count_Cells'"):
        regress_cell_count(
            wells.with_columns(
                pl.when(pl.col(WELL) == "A03", pl.col(PLATE) == "P1")
                .then(None)
                .otherwise(pl.col(COUNT_CELLS))
                .alias(COUNT_CELLS)
            )
        )
    with pytest.raises(MissingColumnsError, match="Metadata_Cells"):
        regress_cell_count(wells, count="Metadata_Cells")
    flat = wells.with_columns(pl.lit(100).alias(COUNT_CELLS))
    with pytest.warns(ProfilesWarning, match=r"5 feature.*constant cell count"):
        out = regress_cell_count(flat).collect()
    np.testing.assert_allclose(out["f0"].mean(), 0.0, atol=1e-5)  # centred only


# ============================================================ TVN
def tvn_reference(wells: pl.DataFrame, k: int) -> np.ndarray:
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    ctrl = wells[CONTROL].to_numpy() == "negcon"
    x = wells.select(FEATURES).to_numpy().astype(np.float64)
    pca = PCA(n_components=k, whiten=True, svd_solver="full").fit(x[ctrl])
    z = pca.transform(x)
    plates = wells[PLATE].to_numpy()
    out = np.empty_like(z)
    for p in np.unique(plates):
        rows = plates == p
        scaler = StandardScaler().fit(z[rows & ctrl])
        out[rows] = scaler.transform(z[rows])
    return out


@pytest.mark.parametrize("k", [2, 5])
def test_tvn_against_sklearn_pca_and_standard_scaler(k: int) -> None:
    wells = three_plates(n_controls=10)
    got = typical_variation_normalize(wells, n_components=k).collect()
    assert got.columns == [PLATE, WELL, CONTROL, COUNT_CELLS, *[f"PC{i}" for i in range(1, k + 1)]]
    ref = tvn_reference(wells, k)
    np.testing.assert_allclose(
        got.select(pl.selectors.starts_with("PC")).to_numpy(), ref, atol=1e-5
    )
    # Each plate's controls are centred and scaled (the batch effect is gone there).
    ctrl = got.filter(pl.col(CONTROL) == "negcon")
    for part in ctrl.partition_by(PLATE):
        z = part.select(pl.selectors.starts_with("PC")).to_numpy()
        np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-5)
        np.testing.assert_allclose(z.std(axis=0), 1, atol=1e-5)


def test_tvn_merges_and_round_trips_and_refuses() -> None:
    wells = three_plates(n_controls=10)
    merged = fit_local(TypicalVariationNormalizer(n_components=3), wells.partition_by(PLATE))
    whole = TypicalVariationNormalizer(n_components=3).fit(wells)
    np.testing.assert_allclose(merged.components_, whole.components_, atol=1e-10)
    assert_frame_equal(
        merged.transform(wells).collect(), whole.transform(wells).collect(), abs_tol=1e-6
    )
    again = TypicalVariationNormalizer.from_frame(merged.to_frame(), merged.parameters())
    assert_frame_equal(again.transform(wells).collect(), merged.transform(wells).collect())
    no_ctrl = wells.with_columns(
        pl.when(pl.col(PLATE) == "P1").then(pl.lit("")).otherwise(pl.col(CONTROL)).alias(CONTROL)
    )
    with pytest.raises(TooFewControlsError, match="Metadata_Plate='P1' \\(0 control row"):
        typical_variation_normalize(no_ctrl)
    holes = wells.with_columns(
        pl.when(pl.col(WELL) == "A20").then(None).otherwise(pl.col("f1")).alias("f1")
    )
    with pytest.raises(InvalidInputError, match=r"3 row.*missing feature values"):
        merged.transform(holes).collect()
    assert issubclass(TooFewControlsError, CellframeError)


# ============================================================ local vs Ray plates
STEPS = {
    "inverse_normal": lambda: InverseNormalTransformer(by=()),
    "well_position": lambda: WellPositionCorrector(controls=None),
    "cell_count": lambda: CellCountRegressor(),
    "tvn": lambda: TypicalVariationNormalizer(n_components=4),
}


@pytest.fixture(scope="module")
def plate_store(tmp_path_factory: pytest.TempPathFactory):
    from cellframe.store import Store

    store = Store(Path(tmp_path_factory.mktemp("correct")) / "s.duckdb")
    wells = three_plates(n_controls=8)
    store.write("wells", wells)
    yield store, wells
    store.close()


@pytest.mark.parametrize("name", sorted(STEPS))
def test_ray_plate_fit_equals_local_fit(plate_store, ray_local, name: str) -> None:
    from cellframe.engine.fitted import apply_plates, fit_plates

    store, wells = plate_store
    local = STEPS[name]().fit(wells)
    ray = fit_plates(store, "wells", STEPS[name](), engine="ray", progress=False)
    # The Ray fit applied plate by plate on Ray workers, into a table.
    apply_plates(store, "wells", f"wells_{name}", ray, name=name, engine="ray", progress=False)
    a = local.transform(wells).collect().sort(PLATE, WELL)
    b = store.read(f"wells_{name}").sort(PLATE, WELL).select(a.columns)
    feats = [c for c in a.columns if not c.startswith("Metadata_")]
    diff = np.abs(a.select(feats).to_numpy() - b.select(feats).to_numpy()).max()
    print(f"{name}: max |local - ray| = {diff:.1e}")
    assert diff <= 1e-6
    assert_frame_equal(a.drop(feats), b.drop(feats))


@pytest.mark.parametrize("name", sorted(STEPS))
def test_each_step_meets_the_fitted_contract(name: str) -> None:
    from cellframe.profiles._fitted import FittedStep, Statistics

    wells = three_plates(n_controls=8)
    step = STEPS[name]()
    assert isinstance(step, FittedStep)
    stats = step.statistics(wells)
    assert isinstance(stats, Statistics)
    assert stats.needs_all_rows is (name == "inverse_normal")  # ranks gather the rows


def test_well_position_refuses_a_value_without_a_position_mean() -> None:
    wells = hand_wells().with_columns(
        pl.when(pl.col(CONTROL) == "negcon", pl.col(WELL) == "A03")
        .then(None)
        .otherwise(pl.col("g"))
        .alias("g"),
        pl.Series(CONTROL, ["negcon", "negcon", "negcon", "", "negcon", "negcon"]),
    )
    # A03's control wells (P1, P2) hold no g: no A03 mean of g. A01: P1 only (0); A02: (2 + 6) / 2.
    step = WellPositionCorrector(controls="negcon").fit(wells)
    assert np.isnan(step.means_[step.positions_.index("A03"), 1])
    out = step.transform(wells.filter(pl.col(WELL) != "A03")).collect()
    assert out["g"].to_list() == [0.0, -2.0, 4.0, 2.0]
    extra = wells.vstack(wells.filter(pl.col(WELL) == "A03").with_columns(pl.lit(9.0).alias("g")))
    with pytest.raises(InvalidInputError, match=r"2 value\(s\) of 1 feature\(s\) \(g \(2\)\)"):
        step.transform(extra).collect()


@pytest.mark.parametrize("method", ["blom", "pycytominer"])
def test_int_fit_transform_equals_fit_then_transform(method: str) -> None:
    wells = three_plates()
    x = wells["f1"].to_numpy().copy()
    x[[2, 30, 31]] = np.nan
    wells = wells.with_columns(pl.Series("f1", x), pl.col("f3").round(0))  # NaN and ties
    for by in ([PLATE], []):
        fast = InverseNormalTransformer(method, by=by).fit_transform(wells).collect()
        slow = InverseNormalTransformer(method, by=by).fit(wells).transform(wells).collect()
        assert_frame_equal(fast, slow)
