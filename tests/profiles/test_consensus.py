"""Consensus profiles: hand-computed modz and median, and pycytominer's consensus on real profiles."""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import pytest
from scipy.stats import spearmanr

from cellframe.columns import COUNT_CELLS, TREATMENT, feature_columns
from cellframe.errors import InvalidInputError, MissingColumnsError
from cellframe.profiles.consensus import N_REPLICATES, consensus, modz_weights


@pytest.fixture(scope="module")
def lincs() -> pl.DataFrame:
    """LINCS SQ00015054 well profiles (384 x 454), the copy bundled in cellframe/data/demo
    (the same file as ../shared/data/profiles-lincs-SQ00015054), so the parity runs without
    the shared data."""
    from cellframe.demo import demo_data_dir

    path = demo_data_dir() / "lincs" / "SQ00015054_normalized_feature_select.csv.gz"
    return pl.read_csv(path, infer_schema_length=1000)


def replicates() -> pl.DataFrame:
    return pl.DataFrame(
        {
            TREATMENT: ["a", "a", "a", "b", "b", "c"],
            "Metadata_Moa": ["m1", "m1", "m1", "m2", "m3", "m4"],
            COUNT_CELLS: [10, 20, 30, 5, 5, 7],
            "f": [1.0, 2.0, 4.0, 5.0, 7.0, 9.0],
            "g": [2.0, 1.0, 3.0, 0.0, 2.0, -1.0],
            "h": [3.0, 4.0, 1.0, 1.0, 1.0, 0.5],
            "k": [4.0, 3.0, 2.0, 2.0, 3.0, 0.0],
        }
    )


def test_modz_weights_by_hand() -> None:
    x = replicates().filter(pl.col(TREATMENT) == "a").select("f", "g", "h", "k").to_numpy()
    r = spearmanr(x, axis=1).statistic  # 3 x 3
    np.fill_diagonal(r, np.nan)
    raw = np.maximum(np.nanmean(np.clip(r, 0, None), axis=1), 0.01)
    expected = np.round(raw / raw.sum(), 4)
    got = modz_weights(x)
    np.testing.assert_array_equal(got, expected)
    assert not np.allclose(got, 1 / 3)  # not the plain mean (control)
    np.testing.assert_allclose(modz_weights(x, precision=None).sum(), 1.0)
    assert modz_weights(x[:1]).tolist() == [1.0]


def test_modz_and_median_by_hand() -> None:
    df = replicates()
    med = consensus(df).collect()
    assert med[TREATMENT].to_list() == ["a", "b", "c"]
    assert med["f"].to_list() == [2.0, 6.0, 9.0] and med["h"].to_list() == [3.0, 1.0, 0.5]
    assert med[N_REPLICATES].to_list() == [3, 2, 1] and med[COUNT_CELLS].to_list() == [60, 10, 7]
    assert med["Metadata_Moa"].to_list() == ["m1", None, "m4"]  # not constant in b: null
    modz = consensus(df, "modz").collect()
    xa = df.filter(pl.col(TREATMENT) == "a").select("f", "g", "h", "k").to_numpy()
    np.testing.assert_allclose(
        modz.filter(pl.col(TREATMENT) == "a").select("f", "g", "h", "k").to_numpy()[0],
        modz_weights(xa) @ xa,
        rtol=1e-6,
    )
    # Two replicates weigh equally; one replicate is itself.
    assert modz.filter(pl.col(TREATMENT) == "b")["f"].item() == pytest.approx(6.0)
    assert modz.filter(pl.col(TREATMENT) == "c")["g"].item() == -1.0


def test_missing_values_are_skipped_not_zeroed() -> None:
    df = replicates().with_columns(
        pl.when(pl.col("f") == 4.0).then(None).otherwise(pl.col("f")).alias("f"),
        pl.when(pl.col(TREATMENT) == "c").then(float("nan")).otherwise(pl.col("g")).alias("g"),
    )
    med = consensus(df).collect()
    assert med["f"][0] == 1.5
    assert med["g"][2] is None or np.isnan(med["g"][2])
    modz = consensus(df, "modz", precision=None).collect()
    xa = df.filter(pl.col(TREATMENT) == "a").select("f", "g", "h", "k").to_numpy()
    w = modz_weights(xa, precision=None)
    # f is missing in the third replicate: the two present ones share all the weight.
    assert modz["f"][0] == pytest.approx((w[0] * 1.0 + w[1] * 2.0) / (w[0] + w[1]), rel=1e-6)
    g = modz.filter(pl.col(TREATMENT) == "c")["g"].item()
    assert g is None or np.isnan(g)  # missing everywhere: stays missing (pycytominer gives 0)


def test_refusals() -> None:
    df = replicates()
    with pytest.raises(InvalidInputError, match="unknown consensus method 'mode'"):
        consensus(df, "mode")
    with pytest.raises(InvalidInputError, match="unknown modz correlation 'kendal'"):
        consensus(df, "modz", correlation="kendal")
    with pytest.raises(MissingColumnsError, match="Metadata_Dose"):
        consensus(df, by=[TREATMENT, "Metadata_Dose"])


def test_callable_method() -> None:
    out = consensus(replicates(), lambda x: x.max(axis=0)).collect()
    assert out["f"].to_list() == [4.0, 7.0, 9.0]


@pytest.mark.parametrize(
    ("data", "by"),
    [
        ("lincs", ["Metadata_broad_sample", "Metadata_mg_per_ml"]),
        ("nelisa", ["Metadata_broad_sample"]),
    ],
)
@pytest.mark.parametrize("method", ["modz", "median"])
def test_pycytominer_consensus_parity(request, data: str, by: list[str], method: str) -> None:
    from pycytominer import consensus as pyc_consensus

    df = request.getfixturevalue(data)
    feats = feature_columns(df)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = pyc_consensus(df.to_pandas(), replicate_columns=by, operation=method, features=feats)
    ref = pl.from_pandas(ref).sort(by, nulls_last=True)
    ours = consensus(df, method, by=by, features=feats).collect()
    assert ours.height == ref.height > 300
    assert ours.select(by).equals(ref.select(by))
    a = ref.select(feats).to_numpy()
    b = ours.select(feats).to_numpy().astype(np.float64)
    # Equal to pycytominer's float64 values rounded to the store's float32.
    diff = np.abs(a.astype(np.float32) - b).max()
    rel = (np.abs(a - b) / np.maximum(1.0, np.abs(a))).max()
    print(f"{data} {method}: max |float32(pycytominer) - cellframe| = {diff:.1e}, rel {rel:.1e}")
    assert diff <= 1e-6 and rel <= 1e-6
    if method == "modz":  # control: modz is not the median here
        med = consensus(df, "median", by=by, features=feats).collect().select(feats).to_numpy()
        assert np.abs(med - b).max() > 0.1
