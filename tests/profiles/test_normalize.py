"""Normalization: pycytominer 1.7.1 parity on real profiles, zero spread, bad input, storage."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cellframe.columns import CONTROL, PLATE, feature_columns
from cellframe.errors import (
    EmptyInputError,
    InvalidInputError,
    MissingColumnsError,
    TooFewControlsError,
)
from cellframe.pipeline import load_step, save_step
from cellframe.profiles import NORMALIZATIONS, NoControlsError, Normalizer, normalize
from cellframe.profiles._common import ProfilesWarning

from ._helpers import assert_close

NELISA_CONTROLS = "Metadata_control_type = 'negcon'"


def _pycytominer(df: pl.DataFrame, feats: list[str], method: str, samples: str):
    from pycytominer import normalize as pyc_normalize

    meta = [c for c in df.columns if c not in set(feats)]
    out = pyc_normalize(
        profiles=df.to_pandas(), features=feats, meta_features=meta, samples=samples, method=method
    )
    return out[feats].to_numpy()


@pytest.mark.parametrize("method", list(NORMALIZATIONS))
def test_parity_nelisa_per_plate(nelisa, method):
    feats = feature_columns(nelisa)
    ours = normalize(nelisa, method, by=[PLATE], controls=NELISA_CONTROLS).collect()
    for (plate,), part in nelisa.group_by(PLATE, maintain_order=True):
        ref = _pycytominer(part, feats, method, "Metadata_control_type == 'negcon'")
        got = ours.filter(pl.col(PLATE) == plate)
        assert_close(got.select(feats).to_numpy(), ref, f"normalize {method} nELISA {plate}")


def test_zero_mad_on_real_wells_is_centred_not_1e18(nf1_cells):
    from cellframe.profiles import aggregate

    wells = aggregate(nf1_cells.lazy(), "well").collect()
    feats = feature_columns(wells)
    with pytest.warns(ProfilesWarning, match="zero control spread") as record:
        norm = Normalizer("mad_robustize", by=(), controls=None)
        ours = norm.fit_transform(wells).collect()
    zero = norm.zero_spread_["feature"].to_list()
    assert str(len(zero)) in str(record[0].message)
    # The reference runs in float64 on the same (float32) well values.
    ref = _pycytominer(
        wells.with_columns(pl.col(feats).cast(pl.Float64)), feats, "mad_robustize", "all"
    )
    keep = [i for i, f in enumerate(feats) if f not in set(zero)]
    assert_close(
        ours.select([feats[i] for i in keep]).to_numpy(), ref[:, keep], "mad_robustize NF1 wells"
    )
    # pycytominer divides the zero-MAD features by 1e-18; cellframe centres them.
    idx = [feats.index(f) for f in zero]
    assert np.nanmax(np.abs(ref[:, idx])) > 1e15
    x = wells.select(zero).to_numpy()
    np.testing.assert_allclose(
        ours.select(zero).to_numpy(), x - np.median(x, axis=0), rtol=1e-5, atol=1e-4
    )


@pytest.mark.parametrize("method", list(NORMALIZATIONS))
def test_parity_lincs(lincs, method):
    feats = feature_columns(lincs)
    ours = normalize(lincs, method, controls="Metadata_pert_type = 'control'").collect()
    ref = _pycytominer(lincs, feats, method, "Metadata_pert_type == 'control'")
    assert_close(ours.select(feats).to_numpy(), ref, f"normalize {method} LINCS")


def test_all_rows_and_grouping_hand_computed():
    df = pl.DataFrame(
        {"g": ["a", "a", "b", "b"], "Metadata_Control": ["negcon"] * 4, "f": [1.0, 3.0, 10.0, 20.0]}
    )
    out = normalize(df, "standardize", by=["g"], controls=None).collect()
    assert out["f"].to_list() == [-1.0, 1.0, -1.0, 1.0]
    glob = normalize(df, "standardize", by=(), controls="all").collect()
    mu, sd = np.mean([1, 3, 10, 20]), np.std([1, 3, 10, 20])
    np.testing.assert_allclose(
        glob["f"].to_numpy(), (np.array([1, 3, 10, 20]) - mu) / sd, rtol=1e-6
    )
    # mad_robustize: median 2, MAD 1 -> (x - 2) / 1.4826
    mad = normalize(df, "mad_robustize", by=(), controls=pl.col("g") == "a").filter(
        pl.col("g") == "a"
    )
    np.testing.assert_allclose(mad.collect()["f"].to_numpy(), [-1 / 1.4826, 1 / 1.4826], rtol=1e-6)


def _plate(
    features: dict[str, list[float]], controls: list[str], plate: str = "P1"
) -> pl.DataFrame:
    n = len(controls)
    return pl.DataFrame({PLATE: [plate] * n, CONTROL: controls, **features})


def test_zero_spread_options():
    df = _plate({"f": [1.0, 2.0, 3.0, 9.0], "const": [5.0, 5.0, 5.0, 7.0]}, ["negcon"] * 3 + [""])
    with pytest.warns(
        ProfilesWarning, match=r"1 feature\(s\) have zero control spread.*'const'.*centred"
    ):
        out = normalize(df, "mad_robustize").collect()
    assert out["const"].to_list() == [0.0, 0.0, 0.0, 2.0]  # centred, never ~1e18
    with pytest.warns(ProfilesWarning, match="dropped"):
        dropped = normalize(df, "standardize", zero_spread="drop").collect()
    assert "const" not in dropped.columns and "f" in dropped.columns
    with pytest.raises(InvalidInputError, match=r"zero control spread.*'const'"):
        normalize(df, "robustize", zero_spread="error")


def test_no_controls_on_a_plate():
    df = pl.concat(
        [
            _plate({"f": [1.0, 2.0, 3.0]}, ["negcon", "negcon", ""], "P1"),
            _plate({"f": [1.0, 2.0, 3.0]}, ["", "", ""], "P2"),
        ]
    )
    with pytest.raises(
        NoControlsError, match=r"1 group\(s\) have no control rows.*Metadata_Plate='P2'"
    ):
        normalize(df).collect()
    with pytest.warns(ProfilesWarning, match="dropped"):
        out = normalize(df, missing_controls="drop").collect()
    assert out[PLATE].unique().to_list() == ["P1"]
    with pytest.raises(EmptyInputError, match="no control rows"):
        normalize(df.filter(pl.col(PLATE) == "P2"))
    with pytest.raises(MissingColumnsError, match="Metadata_Control"):
        normalize(df.drop(CONTROL))


def test_plate_with_one_well_and_all_nan_feature():
    """A one-well plate has no spread: refused by default, left out (counted) on request."""
    df = pl.concat(
        [
            _plate(
                {"f": [1.0, 3.0, 4.0], "nan": [float("nan")] * 3}, ["negcon", "negcon", ""], "P1"
            ),
            _plate({"f": [5.0], "nan": [float("nan")]}, ["negcon"], "P2"),
        ],
        how="vertical_relaxed",
    )
    with pytest.raises(
        TooFewControlsError,
        match=r"1 of 2 group\(s\) have fewer than 2 control rows.*all-zero.*"
        r"Metadata_Plate='P2' \(1 control row\(s\)\).*too_few_controls='drop'",
    ):
        normalize(df).collect()
    with pytest.warns(ProfilesWarning) as record:
        out = normalize(df, too_few_controls="drop").collect()
    messages = " | ".join(str(w.message) for w in record)
    assert "left out of the fit" in messages and "1 row(s) of 1 group(s)" in messages
    assert "no non-missing control value" in messages and "'nan'" in messages
    # P1 is normalized against its two controls (mean 2, std 1); P2 is not in the output.
    assert out[PLATE].to_list() == ["P1"] * 3
    assert out["f"].to_list() == [-1.0, 1.0, 2.0]
    assert out["nan"].null_count() == 3
    # A valid but unusual control: min_controls=1 accepts the one-well plate, centred only.
    with pytest.warns(ProfilesWarning, match="zero control spread"):
        one = normalize(df, min_controls=1).collect()
    assert one.filter(pl.col(PLATE) == "P2")["f"].to_list() == [0.0]
    # A single plate with a single well (as the per-plate engine fits it): refused by
    # default, left out (an empty result, counted) with too_few_controls="drop".
    p2 = df.filter(pl.col(PLATE) == "P2")
    with pytest.raises(TooFewControlsError, match="1 of 1 group"):
        normalize(p2)
    with pytest.warns(ProfilesWarning, match=r"1 row\(s\) of 1 group\(s\) with too few controls"):
        empty = normalize(p2, too_few_controls="drop").collect()
    assert empty.height == 0 and empty.columns == p2.columns


def test_save_load_and_apply_to_new_plate(store, nelisa):
    feats = feature_columns(nelisa)
    train = nelisa.filter(pl.col(PLATE) != nelisa[PLATE][-1])
    norm = Normalizer("mad_robustize", by=(), controls=NELISA_CONTROLS).fit(train)
    save_step(store, norm, "norm_fit")
    loaded = load_step(store, "norm_fit", expect=Normalizer)
    assert loaded.features_ == norm.features_
    new = nelisa.filter(pl.col(PLATE) == nelisa[PLATE][-1])
    assert_frame_equal(loaded.transform(new).collect(), norm.transform(new).collect())
    # A new plate lacking a fitted feature is refused with the column named.
    with pytest.raises(
        MissingColumnsError,
        match=feats[3]
        .replace("(", r"\(")
        .replace(")", r"\)")
        .replace("[", r"\[")
        .replace("]", r"\]"),
    ):
        loaded.transform(new.drop(feats[3]))
    with pytest.raises(InvalidInputError, match="normalize_fit provenance"):
        store.write("other", pl.DataFrame({"a": [1]}), step="x")
        load_step(store, "other", expect=Normalizer)


def test_unknown_method_lists_valid():
    with pytest.raises(ValueError, match="valid: 'standardize', 'robustize', 'mad_robustize'"):
        Normalizer("zscore")


def test_robustize_one_group_over_all_rows_matches_sklearn(lincs):
    """``by=()`` runs the quantiles through a group-by (was ~8 s on 384 x 454 in a select)."""
    from sklearn.preprocessing import RobustScaler

    feats = feature_columns(lincs)
    ours = normalize(lincs, "robustize", by=(), controls=None).collect()
    x = lincs.select(pl.col(feats).cast(pl.Float64)).to_numpy()
    ref = RobustScaler().fit_transform(x)
    assert_close(ours.select(feats).to_numpy(), ref, "robustize by=() LINCS vs sklearn")
    # The same single plate grouped by plate gives the same statistics.
    per_plate = normalize(lincs, "robustize", by=[PLATE], controls=None).collect()
    assert_frame_equal(ours, per_plate)


def test_one_well_plate_through_the_per_plate_engine():
    """The local engine fits each plate alone: the one-well plate is refused or left out."""
    from cellframe.engine.fitted import apply_plates
    from cellframe.store import Store

    def normalize_plates(store, source, dest, norm, progress):
        return apply_plates(
            store, source, dest, norm, name="normalize", fit_each_plate=True, progress=progress
        )

    df = pl.DataFrame(
        {
            PLATE: ["P1", "P1", "P1", "P2"],
            "Metadata_Well": ["A01", "A02", "A03", "A01"],
            CONTROL: ["negcon", "negcon", None, "negcon"],
            "f": [1.0, 3.0, 4.0, 5.0],
        }
    )
    with Store() as store:
        store.write("wells", df, step="test")
        with pytest.raises(TooFewControlsError, match="Metadata_Plate='P2'"):
            normalize_plates(store, "wells", "wells_e", Normalizer(), progress=False)
        with pytest.warns(ProfilesWarning, match=r"1 row\(s\) of 1 group\(s\)"):
            normalize_plates(
                store, "wells", "wells_n", Normalizer(too_few_controls="drop"), progress=False
            )
        out = store.read("wells_n").sort("Metadata_Well")
    assert out[PLATE].to_list() == ["P1"] * 3 and out["f"].to_list() == [-1.0, 1.0, 2.0]
