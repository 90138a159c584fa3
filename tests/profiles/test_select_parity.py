"""Feature-selection additions (noise_removal, Spearman/Kendall correlation, frequency_threshold)
against pycytominer.feature_select on real profiles: the same dropped columns."""

from __future__ import annotations

import warnings
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from cellframe.columns import PLATE, WELL, feature_columns
from cellframe.errors import InvalidInputError, MissingColumnsError, NaNExcludedWarning
from cellframe.profiles.select import (
    FeatureSelector,
    _kendall,
    _spearman,
    correlation_threshold,
    feature_select,
    noise_removal,
)

GROUP = "Metadata_broad_sample"


@pytest.fixture(scope="module")
def lincs() -> pl.DataFrame:
    """LINCS SQ00015054 well profiles (384 x 454), the copy bundled in cellframe/data/demo
    (the same file as ../shared/data/profiles-lincs-SQ00015054), so the parity runs without
    the shared data."""
    from cellframe.demo import demo_data_dir

    path = demo_data_dir() / "lincs" / "SQ00015054_normalized_feature_select.csv.gz"
    return pl.read_csv(path, infer_schema_length=1000)


#: (operation, pycytominer keywords, features: all or the first N) per data set; the
#: thresholds are chosen so that each drops some features and keeps others. nELISA's
#: values are all distinct, so frequency_threshold drops none there (both agree);
#: Kendall runs on nELISA's first plate (380 rows) to stay quick.
CASES = {
    "lincs": [
        (
            "noise_removal",
            {"noise_removal_perturb_groups": GROUP, "noise_removal_stdev_cutoff": 1.5},
            None,
        ),
        ("correlation_threshold", {"corr_method": "spearman", "corr_threshold": 0.8}, None),
        ("correlation_threshold", {"corr_method": "kendall", "corr_threshold": 0.6}, 60),
        ("frequency_threshold", {"freq_cut": 0.1, "unique_cut": 0.5}, None),
    ],
    "nelisa": [
        (
            "noise_removal",
            {"noise_removal_perturb_groups": GROUP, "noise_removal_stdev_cutoff": 1.0},
            None,
        ),
        ("correlation_threshold", {"corr_method": "spearman", "corr_threshold": 0.5}, None),
        ("correlation_threshold", {"corr_method": "kendall", "corr_threshold": 0.3}, 40),
        ("frequency_threshold", {"freq_cut": 0.05, "unique_cut": 0.01}, None),
    ],
}
PARAMS = [(data, *case) for data, cases in CASES.items() for case in cases]


def pyc_dropped(df: pl.DataFrame, feats: list[str], operation: str, kwargs: dict) -> set[str]:
    from pycytominer import feature_select as pyc_feature_select

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = pyc_feature_select(df.to_pandas(), features=feats, operation=operation, **kwargs)
    return set(feats) - set(out.columns)


@pytest.mark.parametrize(("data", "operation", "kwargs", "n_features"), PARAMS)
def test_same_dropped_columns_as_pycytominer(request, data, operation, kwargs, n_features) -> None:
    df = request.getfixturevalue(data)
    if data == "nelisa" and kwargs.get("corr_method") == "kendall":
        df = df.filter(pl.col(PLATE) == "compound_A549_24_1")
    feats = feature_columns(df)[:n_features]
    ref = pyc_dropped(df, feats, operation, kwargs)
    n_null = df[GROUP].null_count() if operation == "noise_removal" else 0
    # pandas drops rows with a null group silently; they are counted here.
    expect = pytest.warns(NaNExcludedWarning, match=f"{n_null} row") if n_null else nullcontext()
    with expect:
        ours = feature_select(df, operation, features=feats, **kwargs)
    print(f"{data} {operation} {kwargs}: pycytominer drops {len(ref)} of {len(feats)}")
    if (data, operation) == ("nelisa", "frequency_threshold"):
        assert df.select(pl.col(feats).n_unique()).row(0) == (df.height,) * len(feats)
    else:
        assert 0 < len(ref) < len(feats), "the parity would be vacuous"
    assert set(ours.dropped_features) == ref
    assert set(ours.kept) == set(feats) - ref
    # The fitted step (statistics, then fit) drops the same.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NaNExcludedWarning)
        fitted = FeatureSelector(operation, features=feats, **kwargs).fit(df).selection_
    assert fitted.dropped.equals(ours.dropped)


def test_rank_correlations_equal_pandas_with_missing_values(lincs: pl.DataFrame) -> None:
    x = lincs.select(feature_columns(lincs)[:30]).to_numpy().astype(np.float64)
    x[np.random.default_rng(0).random(x.shape) < 0.05] = np.nan
    x[:, 3] = 1.0  # constant: undefined correlation
    for method, fn in (("spearman", _spearman), ("kendall", _kendall)):
        ref = pd.DataFrame(x).corr(method=method).to_numpy()
        got = fn(x)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
        np.testing.assert_allclose(got, ref, atol=1e-12, equal_nan=True)


def test_kendall_and_spearman_by_hand() -> None:
    # y reverses one adjacent pair of x: 5 concordant pairs, 1 discordant of 6.
    x = np.array([[1.0, 1.0], [2.0, 3.0], [3.0, 2.0], [4.0, 4.0]])
    assert _kendall(x)[0, 1] == pytest.approx(4 / 6)
    assert _spearman(x)[0, 1] == pytest.approx(1 - 6 * 2 / (4 * 15))
    df = pl.DataFrame(
        {"a": [1.0, 2.0, 3.0, 4.0], "b": [1.0, 8.0, 27.0, 64.0], "c": [4.0, 1.0, 3.0, 2.0]}
    )
    # a and b are monotone (rank r = 1) but not linear (Pearson r < 0.99).
    assert correlation_threshold(df, threshold=0.99).dropped_features == []
    assert len(correlation_threshold(df, threshold=0.99, method="spearman").dropped_features) == 1
    with pytest.raises(InvalidInputError, match="unknown correlation method 'tau'"):
        correlation_threshold(df, method="tau")


def test_noise_removal_by_hand_and_refusals() -> None:
    df = pl.DataFrame(
        {
            "Metadata_pert": ["a", "a", "b", "b", "c", None],
            "quiet": [1.0, 1.2, 5.0, 5.2, 3.0, 100.0],
            "noisy": [0.0, 4.0, 1.0, -3.0, 2.0, 2.0],
            "gap": [0.0, None, 1.0, 2.6, 7.0, 0.0],
        }
    )
    # population std per group, then the mean over groups a, b, c:
    # quiet (0.1 + 0.1 + 0) / 3; noisy (2 + 2 + 0) / 3 = 1.33; gap (0 + 0.8 + 0) / 3 = 0.27.
    with pytest.warns(NaNExcludedWarning, match="1 row.*null 'Metadata_pert'"):
        out = noise_removal(df, perturb_groups="Metadata_pert", stdev_cutoff=0.25)
    assert out.dropped_features == ["noisy", "gap"]
    assert "1.333 > stdev_cutoff 0.25" in out.dropped["reason"][0]
    with pytest.warns(NaNExcludedWarning):
        assert (
            noise_removal(df, perturb_groups="Metadata_pert", stdev_cutoff=2).dropped_features == []
        )
    with pytest.raises(InvalidInputError, match="perturb_groups='<column>'"):
        noise_removal(df)
    with pytest.raises(InvalidInputError, match="perturb_groups='<column>'"):
        feature_select(df, "noise_removal")
    with pytest.raises(MissingColumnsError, match="Metadata_group"):
        noise_removal(df, perturb_groups="Metadata_group")


# ------------------------------------------------------- fitted on plates, local and Ray
@pytest.fixture(scope="module")
def plate_store(tmp_path_factory: pytest.TempPathFactory):
    from cellframe.store import Store

    rng = np.random.default_rng(3)
    n = 72
    base = rng.normal(size=n)
    wells = pl.DataFrame(
        {
            PLATE: [f"P{i % 3}" for i in range(n)],
            WELL: [f"A{i // 3 + 1:02d}" for i in range(n)],
            "Metadata_pert": [f"t{i % 9}" for i in range(n)],
            "f_mono": np.exp(base).astype(np.float32),  # rank-correlated with f_base
            "f_base": base.astype(np.float32),
            "f_noise": (rng.normal(size=n) * 3).astype(np.float32),
            "f_other": rng.normal(size=n).astype(np.float32),
        }
    )
    store = Store(Path(tmp_path_factory.mktemp("select")) / "s.duckdb")
    store.write("wells", wells)
    yield store, wells
    store.close()


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_row_operations_fitted_over_plates_equal_feature_select(plate_store, engine, request):
    from cellframe.engine.fitted import fit_plates

    if engine == "ray":
        request.getfixturevalue("ray_local")
    store, wells = plate_store
    ops = ["noise_removal", "correlation_threshold"]
    kwargs = {
        "noise_removal_perturb_groups": "Metadata_pert",
        "noise_removal_stdev_cutoff": 2.0,
        "corr_method": "spearman",
        "corr_threshold": 0.95,
    }
    local = feature_select(wells, ops, **kwargs)
    # Hand-built: f_noise varies within groups, f_mono = exp(f_base) has rank r = 1
    # (Pearson r < 0.95: the Pearson selection keeps both).
    dropped = set(local.dropped_features)
    assert "f_noise" in dropped and len(dropped & {"f_mono", "f_base"}) == 1 and len(dropped) == 2
    pearson = feature_select(wells, "correlation_threshold", corr_threshold=0.95)
    assert pearson.dropped_features == []
    fitted = fit_plates(
        store, "wells", FeatureSelector(ops, **kwargs), engine=engine, progress=False
    )
    assert fitted.selection_.dropped.equals(local.dropped)
    assert fitted.selection_.kept == local.kept
