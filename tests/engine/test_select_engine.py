"""Feature selection as map-reduce on Ray equals the local ``feature_select`` exactly."""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from cellframe.columns import CONTROL, PLATE, WELL, feature_columns
from cellframe.errors import EmptyInputError, InvalidInputError, MissingColumnsError
from cellframe.partitions import PartitionVersionError
from cellframe.profiles._fitted import ColumnStatistics as SelectStatistics
from cellframe.profiles._fitted import CrossMoments
from cellframe.profiles._fitted import merge_all as combine_statistics
from cellframe.profiles.pipeline import run_pipeline, run_select
from cellframe.profiles.plates import feature_select_plates
from cellframe.profiles.select import (
    OPERATIONS,
    _pearson,
    default_blocklist,
    feature_select,
)
from cellframe.store import Store

N_PLATES = 4
N_WELLS = 96
BLOCKED = default_blocklist()[0]


def well_profiles(seed: int = 7) -> pl.DataFrame:
    """A 4-plate well-level screen in which every operation has something to drop.

    Per plate: 96 wells, 16 negative controls. Features: plain noise; a
    constant and a nearly constant one (variance); rare values whose most and
    second most common values differ between plates (frequency, needs the
    value-count tables added up); correlated pairs, one pair with missing
    values (pairwise-complete Pearson); 3% and 10% missing (drop_na_columns);
    one value above 500 on one plate only (drop_outliers); a blocklisted name.
    """
    rng = np.random.default_rng(seed)
    frames = []
    for p in range(N_PLATES):
        n = N_WELLS
        base = rng.normal(size=(n, 3))
        cols = {
            "Cells_noise_a": rng.normal(p * 0.3, 1.0, n),
            "Cells_noise_b": rng.normal(0.0, 1.0 + p, n),
            "Cells_noise_c": rng.gamma(2.0, 1.0, n),
            "Cells_const": np.full(n, 0.1),
            "Cells_tiny_var": 5.0 + rng.normal(0.0, 1e-4, n),
            # 0 dominates; the second most common value alternates between plates.
            "Cells_rare": np.where(rng.random(n) < 0.97, 0.0, 1.0 + (p % 2)),
            "Cells_three_levels": rng.integers(0, 3, n).astype(float),
            "Cells_many_levels": rng.integers(0, 40, n).astype(float),
            "Cells_corr_x": base[:, 0],
            "Cells_corr_y": 2.0 * base[:, 0] + rng.normal(0, 0.15, n),
            "Cells_corr_z": -base[:, 0] + rng.normal(0, 0.3, n),
            "Cells_na_x": base[:, 1] + 100.0,
            "Cells_na_y": base[:, 1] + 100.0 + rng.normal(0, 0.1, n),
            "Cells_na_few": rng.normal(size=n),
            "Cells_na_many": rng.normal(size=n),
            "Cells_outlier": rng.normal(size=n),
            BLOCKED: rng.normal(size=n),
        }
        cols["Cells_na_x"][rng.random(n) < 0.02] = np.nan
        cols["Cells_na_y"][rng.random(n) < 0.03] = np.nan
        cols["Cells_na_few"][rng.choice(n, 3, replace=False)] = np.nan
        cols["Cells_na_many"][rng.choice(n, 10, replace=False)] = np.nan
        if p == 2:
            cols["Cells_outlier"][5] = -750.0
        frame = pl.DataFrame({k: v.astype(np.float32) for k, v in cols.items()}).with_columns(
            pl.lit(f"P{p}").alias(PLATE),
            pl.Series(WELL, [f"{chr(65 + w // 12)}{w % 12 + 1:02d}" for w in range(n)]),
            pl.Series(CONTROL, ["negcon" if w < 16 else None for w in range(n)], dtype=pl.String),
        )
        frames.append(frame)
    out = pl.concat(frames)
    return out.select(PLATE, WELL, CONTROL, *feature_columns(out))


@pytest.fixture(scope="module")
def screen(tmp_path_factory: pytest.TempPathFactory):
    """The same wells as a partitioned table (``wells``) and a native one (``wells_native``)."""
    data = well_profiles()
    store = Store(Path(tmp_path_factory.mktemp("select")) / "s.duckdb")
    for (plate,), part in data.group_by(PLATE, maintain_order=True):
        store.write_partition("wells", plate, part, step="test")
    store.write("wells_native", data)
    yield store, data
    store.close()


def _as_records(result) -> list[dict]:
    return result.dropped.to_dicts()


# --------------------------------------------------------- exact parity
CASES = [
    ("variance_threshold", {}),
    ("frequency_threshold", {}),
    ("frequency_threshold", {"freq_cut": 0.5, "unique_cut": 0.05}),
    ("correlation_threshold", {}),
    ("correlation_threshold", {"corr_strategy": "iterative", "corr_threshold": 0.8}),
    ("drop_na_columns", {}),
    ("blocklist", {}),
    ("drop_outliers", {}),
]


@pytest.mark.parametrize(("operation", "params"), CASES)
def test_each_operation_on_ray_equals_local(screen, ray_local, operation, params) -> None:
    store, data = screen
    local = feature_select(data, [operation], **params)
    ray = feature_select_plates(store, "wells", [operation], engine="ray", progress=False, **params)
    assert local.dropped_features, f"{operation} drops nothing: the parity would be vacuous"
    assert _as_records(ray) == _as_records(local)  # same features, same order, same reasons
    assert ray.kept == local.kept


def test_expected_drops_hand_checked(screen) -> None:
    # What the synthetic screen was built to trigger, so the parity above means something.
    _, data = screen
    # noise_removal needs a perturbation-group column: tests/profiles/test_select_parity.py.
    drops = {
        op: set(OPERATIONS[op][0](data).dropped_features)
        for op in OPERATIONS
        if op != "noise_removal"
    }
    assert drops["variance_threshold"] == {"Cells_const", "Cells_tiny_var"}
    assert {"Cells_const", "Cells_rare", "Cells_three_levels"} <= drops["frequency_threshold"]
    assert "Cells_many_levels" not in drops["frequency_threshold"]
    assert len(drops["correlation_threshold"] & {"Cells_corr_x", "Cells_corr_y"}) == 1
    assert len(drops["correlation_threshold"] & {"Cells_na_x", "Cells_na_y"}) == 1
    assert drops["drop_na_columns"] == {"Cells_na_many"}  # 10/96 > 5%; 3/96 is not
    assert drops["drop_outliers"] == {"Cells_outlier"}
    assert drops["blocklist"] == {BLOCKED}


def test_whole_chain_and_samples_on_ray_equal_local(screen, ray_local) -> None:
    store, data = screen
    ops = [op for op in OPERATIONS if op != "noise_removal"]  # needs a group column
    for samples in ("all", "negcon", "Metadata_Well LIKE 'A%' OR Metadata_Well LIKE 'B%'"):
        local = feature_select(data, ops, samples=samples, corr_threshold=0.85)
        for table in ("wells", "wells_native"):
            ray = feature_select_plates(
                store, table, ops, samples=samples, corr_threshold=0.85, engine="ray",
                progress=False,
            )  # fmt: skip
            assert _as_records(ray) == _as_records(local), (samples, table)
    # Each operation in the chain contributed, and each feature is dropped once.
    assert local.dropped["feature"].is_unique().all()


def test_local_engine_and_custom_operation(screen) -> None:
    store, data = screen

    def drop_named_b(profiles, *, features, samples):
        from cellframe.profiles.select import _result

        means = profiles.select(features).mean().row(0)
        drops = {f: f"mean {m:.3f} < 0" for f, m in zip(features, means, strict=True) if m < 0}
        return _result(features, drops, "negative_mean")

    ops = ["variance_threshold", drop_named_b, "drop_na_columns"]
    local = feature_select(data, ops)
    engine = feature_select_plates(store, "wells", ops, engine="local", progress=False)
    assert _as_records(engine) == _as_records(local)
    assert "negative_mean" in local.dropped["operation"].to_list()


# --------------------------------------------- statistics against NumPy
def test_statistics_against_float64_numpy(screen) -> None:
    _, data = screen
    feats = feature_columns(data)
    parts = [
        SelectStatistics.of(
            part.select(feats).cast(pl.Float64).to_numpy(), feats, values=True, moments=True
        )
        for part in data.partition_by(PLATE, maintain_order=True)
    ]
    total = combine_statistics(parts)
    x = data.select(feats).cast(pl.Float64).to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        np.testing.assert_allclose(total.variance, np.where(np.nanmin(x, 0) == np.nanmax(x, 0), 0, np.nanvar(x, 0)), rtol=1e-12, atol=1e-300)  # fmt: skip
    np.testing.assert_array_equal(total.count, (~np.isnan(x)).sum(axis=0))
    np.testing.assert_array_equal(total.peak, np.nanmax(np.abs(x), axis=0))
    for j in range(len(feats)):
        col = x[:, j]
        np.testing.assert_array_equal(
            np.sort(total.value_counts(j)), np.sort(np.unique(col[~np.isnan(col)], return_counts=True)[1])
        )  # fmt: skip
    # Pearson, pairwise-complete: against pandas' DataFrame.corr (independent code)
    # and against the local function's matrix.
    corr = total.moments.correlation(total.constant)
    ref = pd.DataFrame(x).corr().to_numpy().copy()  # writable under pandas 3 too
    ref[total.constant, :] = np.nan
    ref[:, total.constant] = np.nan
    # 1e-10: Cells_tiny_var (mean 5, sd 1e-4) loses ~8 digits in any float64 method.
    np.testing.assert_allclose(corr, ref, rtol=0, atol=1e-10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ours_local = _pearson(x)
    live = ~total.constant
    np.testing.assert_allclose(corr[np.ix_(live, live)], ours_local[np.ix_(live, live)], atol=1e-10)


@settings(max_examples=40, deadline=None)
@example(seed=0, sizes=[3] * 20)  # more plates than pending tables: exercises the collapse
@given(
    st.integers(min_value=0, max_value=10_000),
    st.lists(st.integers(min_value=0, max_value=12), min_size=1, max_size=24),
)
def test_merging_plates_equals_statistics_of_all_rows(seed: int, sizes: list[int]) -> None:
    """Any split of the rows into plates, added up, gives the statistics of all rows."""
    rng = np.random.default_rng(seed)
    n, d = sum(sizes), 4
    x = np.round(rng.normal(50.0, 3.0, size=(n, d)), 1)  # repeated values, large mean
    x[rng.random((n, d)) < 0.2] = np.nan
    feats = [f"f{j}" for j in range(d)]
    bounds = np.cumsum([0, *sizes])
    parts = [
        SelectStatistics.of(x[a:b], feats, values=True, moments=True)
        for a, b in itertools.pairwise(bounds)
    ]
    total = combine_statistics(parts)
    whole = SelectStatistics.of(x, feats, values=True, moments=True)
    assert total.n_rows == n
    if len(sizes) >= 16:  # the pending value-count tables were added up on the way
        assert len(total.values[0]) < len(sizes)
    np.testing.assert_array_equal(total.count, whole.count)
    np.testing.assert_array_equal(total.minimum, whole.minimum)
    np.testing.assert_allclose(total.variance, whole.variance, rtol=1e-9, atol=1e-9)
    for j in range(d):
        np.testing.assert_array_equal(total.value_counts(j), whole.value_counts(j))
    a = total.moments.rebased(whole.moments.shift)
    na, sa, ssa = a.full()
    nw, sw, ssw = whole.moments.full()
    np.testing.assert_array_equal(na, nw)
    np.testing.assert_allclose(sa, sw, atol=1e-8)
    np.testing.assert_allclose(ssa, ssw, rtol=1e-9, atol=1e-8)
    np.testing.assert_allclose(a.p, whole.moments.p, rtol=1e-9, atol=1e-8)


def test_cross_moments_hand_computed() -> None:
    # x = [1, 2, 3], y = [2, NaN, 6]: the pair sees rows 0 and 2 only.
    x = np.array([[1.0, 2.0], [2.0, np.nan], [3.0, 6.0]])
    m = CrossMoments.of(x)
    n, s, ss = m.full()
    assert n.tolist() == [[3, 2], [2, 2]]
    r = m.correlation()
    assert r[0, 1] == pytest.approx(1.0) and r[1, 0] == pytest.approx(1.0)
    # about the shift [2, 4]: u_x over rows {0, 2} = [-1, 1], u_y = [-2, 2] -> P = 4
    assert m.p[0, 1] == pytest.approx(4.0)
    assert s[0, 1] == pytest.approx(0.0) and ss[1, 0] == pytest.approx(8.0)


# ------------------------------------------------ writing, resume, CLI
def test_run_select_on_ray_writes_equal_tables_and_resumes(screen, ray_local) -> None:
    store, _ = screen
    ops = ["variance_threshold", "correlation_threshold", "drop_na_columns", "drop_outliers"]
    run_select(store, "wells", "sel_local", operations=ops, progress=False)
    report = run_select(store, "wells", "sel_ray", operations=ops, engine="ray", progress=False)
    assert "4 plates computed, 0 already complete" in report.note
    keys = (PLATE, WELL)
    a = store.read("sel_local").sort(*keys)
    b = store.read("sel_ray").sort(*keys).select(a.columns)
    assert set(store.columns("sel_ray")) == set(a.columns)
    assert_frame_equal(a, b, check_exact=False, rel_tol=1e-5, abs_tol=1e-5)
    assert_frame_equal(store.read("sel_local_dropped"), store.read("sel_ray_dropped"))
    assert store.tables().filter(pl.col("table") == "sel_ray")["kind"][0] == "parquet"
    # A re-run skips the complete plates; another selection refuses to resume.
    again = run_select(store, "wells", "sel_ray", operations=ops, engine="ray", progress=False)
    assert "0 plates computed, 4 already complete" in again.note
    with pytest.raises(PartitionVersionError, match=r"another feature selection.*--force"):
        run_select(store, "wells", "sel_ray", operations=["variance_threshold"], engine="ray",
                   progress=False)  # fmt: skip
    forced = run_select(store, "wells", "sel_ray", operations=["variance_threshold"],
                        engine="ray", force=True, progress=False)  # fmt: skip
    assert "4 plates computed" in forced.note
    assert "Cells_corr_x" in store.columns("sel_ray") and "Cells_const" not in store.columns(
        "sel_ray"
    )


def test_cli_select_and_config_on_ray(screen, ray_local) -> None:
    from cellframe.cli import main

    store, data = screen
    config = {
        "input": "wells",
        "engine": "ray",
        "step": [{"run": "select", "operations": ["variance_threshold", "blocklist"],
                  "output": "cfg_sel"}],
    }  # fmt: skip
    reports = run_pipeline(store, config, progress=False)
    assert "ray" in reports[0].note
    path = store.path
    store.close()
    try:
        rc = main(["select", "--store", str(path), "--input", "wells", "--output", "cli_sel",
                   "--operations", "variance_threshold,blocklist", "--engine", "ray", "-q"])  # fmt: skip
        assert rc == 0
        rc = main(["select", "--store", str(path), "--input", "wells", "--output", "cli_sel2",
                   "--engine", "ray", "--address", "127.0.0.1:9", "-q"])  # fmt: skip
        assert rc == 2
    finally:
        store.__init__(path)
    expected = feature_select(data, ["variance_threshold", "blocklist"])
    assert set(feature_columns(store.schema("cli_sel"))) == set(expected.kept)
    assert_frame_equal(store.read("cfg_sel_dropped"), expected.dropped)
    assert_frame_equal(store.read("cli_sel_dropped"), expected.dropped)


# ---------------------------------------------------------- bad input
def test_bad_input_is_refused_before_reading_plates(screen) -> None:
    store, _ = screen
    with pytest.raises(ValueError, match=r"unknown operation 'noise'.*'variance_threshold'"):
        feature_select_plates(store, "wells", ["noise"], progress=False)
    with pytest.raises(ValueError, match="unknown feature-selection parameter"):
        feature_select_plates(store, "wells", ["variance_threshold"], min_var=1.0, progress=False)
    with pytest.raises(ValueError, match="freq_cut must be between 0 and 1"):
        feature_select_plates(store, "wells", ["frequency_threshold"], freq_cut=2.0)
    with pytest.raises(ValueError, match="unknown strategy"):
        feature_select_plates(store, "wells", ["correlation_threshold"], corr_strategy="greedy")
    with pytest.raises(MissingColumnsError, match="Cells_absent"):
        feature_select_plates(store, "wells", features=["Cells_absent"], progress=False)
    with pytest.raises(MissingColumnsError, match="Metadata_Batch"):
        feature_select_plates(store, "wells", samples="Metadata_Batch = 'b1'", progress=False)
    with pytest.raises(EmptyInputError, match="no rows to select features on"):
        feature_select_plates(store, "wells", samples="Metadata_Well = 'Z99'", progress=False)
    with pytest.raises(InvalidInputError, match="dropped every feature"):
        feature_select_plates(store, "wells", ["variance_threshold"], min_variance=1e6,
                              progress=False)  # fmt: skip


def _fail_on_p2(frame: pl.DataFrame) -> int:
    if frame[PLATE][0] == "P2":
        raise InvalidInputError("plate P2 is broken")
    return frame.height


def test_reduce_on_ray_streams_in_plate_order_and_reports_the_failing_plate(
    screen, ray_local
) -> None:
    from cellframe.engine.run import reduce_plates

    store, _ = screen
    seen: list[int] = []

    def combine(parts):
        for part in parts:
            seen.append(part)
        return sum(seen)

    total = reduce_plates(store, "wells_native", lambda f: f[PLATE][0], list, engine="ray",
                          progress=False)  # fmt: skip
    assert total == [f"P{p}" for p in range(N_PLATES)]  # plate order, not completion order
    assert reduce_plates(store, "wells", len, combine, engine="ray", progress=False) == 384
    with pytest.raises(InvalidInputError, match="plate P2 is broken") as info:
        reduce_plates(store, "wells", _fail_on_p2, sum, engine="ray", progress=False)
    assert any("on plate 'P2'" in note for note in info.value.__notes__)


@pytest.mark.filterwarnings("ignore::cellframe.profiles._common.ProfilesWarning")
def test_real_nelisa_plates_on_ray_equal_local(shared_data, ray_local, tmp_path) -> None:
    """nELISA: 4 real plates, 1,525 wells x 191 analytes; selection and QC flags on both engines."""
    from cellframe.profiles import flag_outlier_wells
    from cellframe.profiles.plates import flag_outlier_wells_plates

    path = shared_data / "profiles-nelisa" / "nelisa_profiles.parquet"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    data = pl.read_parquet(path)
    feats = feature_columns(data)
    # Thresholds that make every data-driven rule bite on these (normalized) profiles:
    # half the analytes below a variance midway between two (no tie to round), r > 0.6
    # pairs, |x| > 20.
    variances = np.sort(data.select(feats).to_numpy().astype(np.float64).var(axis=0))
    half = len(variances) // 2
    cut = float(variances[half - 1] + variances[half]) / 2
    params = {"corr_threshold": 0.6, "outlier_cutoff": 20.0, "min_variance": cut}
    ops = ["variance_threshold", "correlation_threshold", "drop_outliers", "drop_na_columns"]
    with Store(tmp_path / "nelisa.duckdb") as store:
        for (plate,), part in data.group_by(PLATE, maintain_order=True):
            store.write_partition("wells", plate, part, step="test")
        for op in ops[:3]:
            local = feature_select(data, [op], **params)
            ray = feature_select_plates(
                store, "wells", [op], engine="ray", progress=False, **params
            )
            assert local.dropped_features and _as_records(ray) == _as_records(local), op
        chain = feature_select_plates(store, "wells", ops, engine="ray", progress=False, **params)
        assert _as_records(chain) == _as_records(feature_select(data, ops, **params))
        flag_outlier_wells_plates(store, "wells", "qc", engine="ray", progress=False)
        ray_flags = store.read("qc").sort(PLATE, "Metadata_nelisa_well_loc")
    local_flags = flag_outlier_wells(data).sort(PLATE, "Metadata_nelisa_well_loc")
    assert local_flags["Metadata_QC_Outlier"].sum() > 0
    assert (
        ray_flags["Metadata_QC_Outlier"].to_list() == local_flags["Metadata_QC_Outlier"].to_list()
    )
    np.testing.assert_allclose(
        ray_flags.select("PC1", "PC2", "PC3").to_numpy(),
        local_flags.select("PC1", "PC2", "PC3").to_numpy(),
        atol=1e-8,
    )
