"""Cross-fitted phenotypic activity: a correction fitted on controls never judges them.

The reference for "honest" is exchangeability: wells drawn from the control
distribution and labelled as a treatment must not come out active. The leaky
evaluation (fit on all controls, then test against them) is run beside it as
the control that makes each test able to fail.
"""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cellframe.cli import main
from cellframe.columns import CONTROL, TREATMENT
from cellframe.errors import DependentNullWarning, InvalidInputError
from cellframe.evaluate import (
    CrossFit,
    mean_average_precision,
    phenotypic_activity,
)
from cellframe.evaluate.crossfit import KeepColumns, control_folds
from cellframe.pipeline import (
    NullSettings,
    activity_from_store,
    correction_from_provenance,
    run_pipeline,
    run_step,
)
from cellframe.profiles import FeatureSelector, Normalizer, Spherizer
from cellframe.store import Store

#: LINCS SQ00015054 compounds with mAP 1.0 against DMSO before any correction (q = 0.003).
STRONG = [
    "BRD-K07857022-002-01-1",
    "BRD-K50691590-001-02-2",
    "BRD-K60230970-001-10-0",
    "BRD-K93779381-001-01-9",
    "BRD-K98572433-001-02-9",
    "BRD-K99604664-001-01-1",
]


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kwargs)


def _summary(ap: pl.DataFrame, null_size: int = 2000) -> dict[str, float]:
    m = mean_average_precision(
        ap.filter(~pl.col("is_control")), sameby=TREATMENT, null_size=null_size, seed=0
    )
    return dict(zip(m[TREATMENT].to_list(), m["corrected_p_value"].to_list(), strict=True))


def _sphering(rows: pl.DataFrame) -> Spherizer:
    return Spherizer(lam=1e-2).fit(rows)


# ---------------------------------------------------------------- folds
def test_control_folds_stratified_balanced_and_seeded():
    plate = np.repeat([0, 1, 2], 10)
    is_ctrl = np.tile([True] * 7 + [False] * 3, 3)
    folds = control_folds(is_ctrl, n_folds=3, seed=4, strata=plate)
    assert (folds[~is_ctrl] == -1).all()
    assert sorted(np.bincount(folds[is_ctrl]).tolist()) == [7, 7, 7]
    for p in range(3):  # 7 controls per plate over 3 folds: 2 or 3 from each plate
        per_plate = np.bincount(folds[is_ctrl & (plate == p)], minlength=3)
        assert per_plate.min() >= 2 and per_plate.max() <= 3
    np.testing.assert_array_equal(folds, control_folds(is_ctrl, n_folds=3, seed=4, strata=plate))
    assert not np.array_equal(folds, control_folds(is_ctrl, n_folds=3, seed=5, strata=plate))


def test_control_folds_refuse_too_many_folds():
    with pytest.raises(InvalidInputError, match="3 control rows for n_folds=4"):
        control_folds(np.array([True, True, True, False]), n_folds=4)
    with pytest.raises(InvalidInputError, match="at least 2"):
        control_folds(np.array([True, True]), n_folds=1)


# ---------------------------------------------------------------- the fold arithmetic
class _Identity:
    def transform(self, frame):
        return frame


def test_identity_correction_equals_ap_against_each_held_out_fold(screen):
    """With an identity correction, fold f's rows are copairs' AP against fold f's controls only."""
    controls = pl.col(CONTROL) == "negcon"
    got = _quiet(
        phenotypic_activity,
        screen,
        cross_fit=CrossFit(correction=lambda rows: _Identity(), n_folds=2, seed=3),
    )
    is_ctrl = screen.select(controls)[CONTROL].to_numpy()
    plate = screen["Metadata_Plate"].rank("dense").to_numpy()
    folds = control_folds(is_ctrl, n_folds=2, seed=3, strata=plate)
    assert sorted(got["fold"].unique().to_list()) == [0, 1]
    for f in range(2):
        keep = ~is_ctrl | (folds == f)
        subset = screen.filter(pl.Series(keep))
        expected = _quiet(phenotypic_activity, subset)
        original = np.flatnonzero(keep)[expected["row"].to_numpy()]
        expected = expected.with_columns(pl.Series("row", original, dtype=pl.UInt32))
        part = got.filter(pl.col("fold") == f).drop("fold")
        assert_frame_equal(part.sort("row"), expected.select(part.columns).sort("row"))
    # Every treatment well is scored once per fold, every control once.
    n_treat = int((~is_ctrl).sum())
    assert got.height == 2 * n_treat + int(is_ctrl.sum())


# ---------------------------------------------------------------- synthetic zero effect
def _zero_effect_screen(seed: int, n_ctrl: int = 24, d: int = 40, reps: int = 6) -> pl.DataFrame:
    """Correlated noise; ZERO is drawn exactly like the controls, STRONG is shifted."""
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d) + np.eye(d)
    rows, x = [], []
    for name, shift in (("ZERO", 0.0), ("STRONG1", 3.0), ("STRONG2", 3.0)):
        centre = rng.normal(size=d) * shift
        rows += [(name, "", f"P{r % 2}") for r in range(reps)]
        x.append(centre + rng.normal(size=(reps, d)) @ mix)
    rows += [("DMSO", "negcon", f"P{i % 2}") for i in range(n_ctrl)]
    x.append(rng.normal(size=(n_ctrl, d)) @ mix)
    meta = pl.DataFrame(rows, schema=[TREATMENT, CONTROL, "Metadata_Plate"], orient="row")
    feats = pl.DataFrame(np.vstack(x).astype(np.float32), schema=[f"f{i:02d}" for i in range(d)])
    return meta.hstack(feats)


@pytest.mark.parametrize("seed", [0, 2, 3])
def test_zero_effect_compound_is_not_active_after_cross_fitted_sphering(seed):
    df = _zero_effect_screen(seed)
    sphering = lambda rows: Spherizer(lam=1e-3).fit(rows)  # noqa: E731
    honest = _summary(_quiet(phenotypic_activity, df, cross_fit=CrossFit(correction=sphering)))
    leaky = _summary(_quiet(phenotypic_activity, Spherizer(lam=1e-3).fit_transform(df).collect()))
    assert honest["ZERO"] > 0.05
    assert honest["STRONG1"] < 0.05 and honest["STRONG2"] < 0.05
    assert leaky["ZERO"] < 0.05  # the artefact cross-fitting removes


def test_estimator_and_sequence_specs_match_the_callable():
    df = _zero_effect_screen(1)
    by_callable = _quiet(
        phenotypic_activity, df, cross_fit=CrossFit(correction=_sphering, n_folds=3)
    )
    by_estimator = _quiet(
        phenotypic_activity, df, cross_fit=CrossFit(correction=Spherizer(lam=1e-2), n_folds=3)
    )
    assert_frame_equal(by_callable, by_estimator)
    chained = _quiet(
        phenotypic_activity,
        df,
        cross_fit=CrossFit(
            correction=[Normalizer("standardize", by=()), Spherizer(lam=1e-2)], n_folds=3
        ),
    )
    by_hand = _quiet(
        phenotypic_activity, df, cross_fit=CrossFit(correction=lambda rows: _Chain(rows), n_folds=3)
    )
    assert_frame_equal(chained, by_hand)


class _Chain:
    def __init__(self, rows):
        self.norm = Normalizer("standardize", by=()).fit(rows)
        self.sph = Spherizer(lam=1e-2).fit(self.norm.transform(rows).collect())

    def transform(self, frame):
        return self.sph.transform(self.norm.transform(frame))


def test_correction_without_transform_is_refused():
    df = _zero_effect_screen(0)
    with pytest.raises(InvalidInputError, match=r"without \.transform"):
        _quiet(phenotypic_activity, df, cross_fit=CrossFit(correction=lambda rows: 42))


# ---------------------------------------------------------------- the LINCS plate
def _pretend(wells: pl.DataFrame, seed: int, n: int = 12) -> pl.DataFrame:
    """Relabel ``n`` of the plate's DMSO wells as a pretend compound."""
    dmso = np.flatnonzero((wells[CONTROL] == "negcon").fill_null(False).to_numpy())
    chosen = np.zeros(wells.height, dtype=bool)
    chosen[np.random.default_rng(seed).choice(dmso, n, replace=False)] = True
    mask = pl.Series(chosen)
    return wells.with_columns(
        pl.when(mask).then(pl.lit("PRETEND")).otherwise(pl.col(TREATMENT)).alias(TREATMENT),
        pl.when(mask).then(pl.lit(None)).otherwise(pl.col(CONTROL)).alias(CONTROL),
    )


@pytest.fixture(scope="module")
def lincs_wells() -> pl.DataFrame:
    from cellframe.demo import _lincs_wells, demo_data_dir

    return _lincs_wells(demo_data_dir()).filter(pl.col(TREATMENT).is_not_null())


@pytest.mark.parametrize("seed", [0, 1])
def test_lincs_pretend_dmso_compound_not_active_after_sphering(lincs_wells, seed):
    wells = _pretend(lincs_wells, seed)
    honest = _summary(_quiet(phenotypic_activity, wells, cross_fit=CrossFit(correction=_sphering)))
    assert honest["PRETEND"] > 0.05
    assert all(honest[c] < 0.05 for c in STRONG), {c: honest[c] for c in STRONG}
    if seed == 0:  # the numbers: fitted on the 12 other DMSO wells, tested on them
        leaky = _summary(
            _quiet(phenotypic_activity, Spherizer(lam=1e-2).fit_transform(wells).collect())
        )
        assert leaky["PRETEND"] < 0.01
        assert np.mean([q < 0.05 for q in leaky.values()]) > 0.95  # 58 of 59 "active"


def test_lincs_full_plate_fraction_active(lincs_wells):
    """Before sphering 57 % of compounds are active; leaky sphering 100 %; cross-fitted 67 %."""
    plain = _summary(_quiet(phenotypic_activity, lincs_wells))
    honest = _summary(
        _quiet(phenotypic_activity, lincs_wells, cross_fit=CrossFit(correction=_sphering))
    )
    frac = lambda q: float(np.mean([v < 0.05 for v in q.values()]))  # noqa: E731
    assert len(honest) == 58
    assert frac(plain) == pytest.approx(33 / 58)
    assert frac(honest) == pytest.approx(39 / 58)


# ---------------------------------------------------------------- provenance
@pytest.fixture
def pretend_store(tmp_path, lincs_wells):
    path = tmp_path / "lincs.duckdb"
    with Store(path) as s:
        s.write("wells", _pretend(lincs_wells, 0), step="ingest")
    return path


def test_cli_sphere_then_evaluate_gives_the_honest_answer(pretend_store, capsys):
    store = str(pretend_store)
    args = ["--store", store, "--quiet"]
    assert main(["sphere", "--input", "wells", "--output", "wells_sphered", *args]) == 0
    evaluate = ["evaluate", "wells_sphered", "--mode", "activity", "--null-size", "2000"]
    assert _quiet(main, [*evaluate, *args]) == 0
    with pytest.warns(DependentNullWarning, match="not independent"):
        assert _quiet(main, [*evaluate, "--as-is", "--output", "asis", *args]) == 0
    with Store(pretend_store, read_only=True) as s:
        honest = s.read("wells_sphered_activity_summary")
        leaky = s.read("asis_summary")
        prov = s.provenance("wells_sphered_activity_summary")
    q = dict(zip(honest[TREATMENT], honest["corrected_p_value"], strict=True))
    assert q["PRETEND"] > 0.05
    assert all(q[c] < 0.05 for c in STRONG)
    assert leaky.filter(pl.col(TREATMENT) == "PRETEND")["corrected_p_value"][0] < 0.01
    assert '"null": "cross-fitted"' in prov["parameters"][-1]
    # The same numbers as the Python API on the pre-correction table.
    expected = _summary(
        _quiet(phenotypic_activity, _pretend(_lincs(), 0), cross_fit=CrossFit(correction=_sphering))
    )
    np.testing.assert_allclose([q[k] for k in sorted(q)], [expected[k] for k in sorted(q)])


def _lincs() -> pl.DataFrame:
    from cellframe.demo import _lincs_wells, demo_data_dir

    return _lincs_wells(demo_data_dir()).filter(pl.col(TREATMENT).is_not_null())


def test_provenance_chain_normalize_select_sphere_is_replayed(tmp_path):
    df = _zero_effect_screen(0)
    with Store(tmp_path / "s.duckdb") as store:
        store.write("wells", df, step="ingest")
        run_step(store, Normalizer(), "wells", "wells_normalized", progress=False)
        run_step(
            store,
            FeatureSelector(["blocklist"], blocklist=["f00", "f01"]),
            "wells_normalized",
            "wells_selected",
            progress=False,
        )
        run_step(store, Spherizer(lam=1e-3), "wells_selected", "wells_sphered", progress=False)
        plan = correction_from_provenance(store, "wells_sphered")
        assert plan.source == "wells" and plan.problem is None
        assert plan.steps == ["normalize", "select", "sphere"]
        assert isinstance(plan.correction[1], KeepColumns)
        assert plan.correction[1].features == [f"f{i:02d}" for i in range(2, 40)]
        got = _quiet(
            activity_from_store,
            store,
            "wells_sphered",
            treatment=TREATMENT,
            controls=pl.col(CONTROL) == "negcon",
            null=NullSettings(null_size=2000),
        )
    assert got.null == "cross-fitted"
    correction = [
        Normalizer("standardize"),
        KeepColumns([f"f{i:02d}" for i in range(2, 40)]),
        Spherizer(lam=1e-3),
    ]
    by_hand = _summary(_quiet(phenotypic_activity, df, cross_fit=CrossFit(correction=correction)))
    q = dict(zip(got.summary[TREATMENT], got.summary["corrected_p_value"], strict=True))
    assert q == pytest.approx(by_hand)
    assert q["ZERO"] > 0.05 and q["STRONG1"] < 0.05


def test_saved_fit_cannot_be_refitted_and_warns(tmp_path):
    df = _zero_effect_screen(0)
    with Store(tmp_path / "s.duckdb") as store:
        store.write("wells", df, step="ingest")
        run_step(store, Spherizer(lam=1e-3), "wells", "wells_sphered", save_fit="fit",
                 progress=False)  # fmt: skip
        run_step(store, Spherizer(), "wells", "wells_resphered", fit_from="fit", progress=False)
        plan = correction_from_provenance(store, "wells_resphered")
        assert plan.correction is None and "saved fit 'fit'" in plan.problem
        with pytest.warns(DependentNullWarning, match="saved fit 'fit'"):
            got = _quiet(
                activity_from_store,
                store,
                "wells_resphered",
                treatment=TREATMENT,
                controls=pl.col(CONTROL) == "negcon",
                null=NullSettings(null_size=2000),
            )
        assert got.null == "dependent"
        # A table made by no fitted step is evaluated as it is, without a warning.
        plain = correction_from_provenance(store, "wells")
        assert plain.correction is None and plain.problem is None


def test_pipeline_activity_step_cross_fits(tmp_path):
    df = _zero_effect_screen(3)
    with Store(tmp_path / "s.duckdb") as store:
        store.write("wells", df, step="ingest")
        config = {
            "input": "wells",
            "step": [
                {"run": "sphere", "lam": 1e-3},
                {"run": "activity", "null_size": 2000},
            ],
        }
        reports = _quiet(run_pipeline, store, config, progress=False)
        assert [r.output for r in reports] == ["wells_sphered", "wells_sphered_activity"]
        assert "null cross-fitted" in reports[-1].note
        summary = store.read("wells_sphered_activity")
        assert store.read("wells_sphered_activity_per_query")["fold"].n_unique() == 2
    q = dict(zip(summary[TREATMENT], summary["corrected_p_value"], strict=True))
    assert q["ZERO"] > 0.05 and q["STRONG1"] < 0.05 and q["STRONG2"] < 0.05


def test_demo_fraction_active_with_the_honest_null(tmp_path, lincs_wells):
    """The demo's chain (normalize to DMSO, sphere with the sweep's lambda 0.1) through the store.

    The demo computes the same numbers with ``phenotypic_activity(raw, correction=[...])``;
    here they come from provenance replay (``activity_from_store``), an independent route.
    """
    controls = pl.col(CONTROL) == "negcon"
    with Store(tmp_path / "demo.duckdb") as store:
        store.write("wells_lincs", lincs_wells, step="ingest")
        _quiet(run_step, store, Normalizer(), "wells_lincs", "wells_lincs_normalized",
               progress=False)  # fmt: skip
        run_step(store, Spherizer(lam=0.1), "wells_lincs_normalized", "wells_lincs_sphered",
                 progress=False)  # fmt: skip
        kw = {"treatment": TREATMENT, "controls": controls}
        null = NullSettings(null_size=2000)
        honest = _quiet(activity_from_store, store, "wells_lincs_sphered", null=null, **kw)
        normalized = _quiet(activity_from_store, store, "wells_lincs_normalized", null=null, **kw)
        with pytest.warns(DependentNullWarning):
            as_is = NullSettings(null_size=2000, cross_fit=False)
            leaky = _quiet(activity_from_store, store, "wells_lincs_sphered", null=as_is, **kw)
    assert honest.plan.steps == ["normalize", "sphere"] and honest.plan.source == "wells_lincs"
    n_active = {
        name: int(r.summary["below_corrected_p"].sum())
        for name, r in (("honest", honest), ("normalized", normalized), ("leaky", leaky))
    }
    assert n_active == {"honest": 41, "normalized": 35, "leaky": 58}  # of 58: 71 %, 60 %, 100 %
    by_hand = _summary(
        _quiet(
            phenotypic_activity,
            lincs_wells,
            cross_fit=CrossFit(correction=[Normalizer("standardize"), Spherizer(lam=0.1)]),
        )
    )
    q = dict(zip(honest.summary[TREATMENT], honest.summary["corrected_p_value"], strict=True))
    assert q == pytest.approx(by_hand)


def test_expression_controls_cannot_be_replayed_and_warn(tmp_path):
    df = _zero_effect_screen(0)
    with Store(tmp_path / "s.duckdb") as store:
        store.write("wells", df, step="ingest")
        sph = Spherizer(lam=1e-3, controls=pl.col(CONTROL) == "negcon").fit(df)
        store.write(
            "wells_sphered",
            sph.transform(df),
            step="sphere",
            parameters={**sph.parameters(), "fit_from": None},
            source="wells",
        )
        plan = correction_from_provenance(store, "wells_sphered")
    assert plan.correction is None
    assert "Polars expression" in plan.problem and "col(" in plan.problem
