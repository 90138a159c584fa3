"""QC: PCA against scikit-learn, outlier wells and image QC on hand-made cases."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from cellframe.columns import PLATE, WELL, feature_columns
from cellframe.errors import MissingColumnsError
from cellframe.profiles import flag_outlier_wells, image_qc, pca_profiles, robust_z
from cellframe.profiles._common import ProfilesWarning
from cellframe.profiles.qc import OUTLIER, REASON


def test_pca_matches_sklearn(lincs):
    from sklearn.decomposition import PCA

    feats = feature_columns(lincs)
    ours = pca_profiles(lincs, 5)
    ref = PCA(n_components=5, svd_solver="full").fit(lincs.select(feats).to_numpy())
    np.testing.assert_allclose(
        ours.explained_variance_ratio, ref.explained_variance_ratio_, rtol=1e-10
    )
    scores = ours.scores.select([f"PC{i}" for i in range(1, 6)]).to_numpy()
    ref_scores = ref.transform(lincs.select(feats).to_numpy())
    signs = np.sign((scores * ref_scores).sum(axis=0))
    np.testing.assert_allclose(scores * signs, ref_scores, rtol=1e-8, atol=1e-8)
    assert ours.scores[WELL].to_list() == lincs[WELL].to_list()


def test_robust_z_hand_computed():
    # median 3, MAD 1 -> z = (x - 3) / 1.4826
    np.testing.assert_allclose(
        robust_z(np.array([1.0, 2.0, 3.0, 4.0, 100.0])), np.array([-2, -1, 0, 1, 97]) / 1.4826
    )


def test_outlier_well_flagged_with_reason():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 5))
    x[7] += 25.0  # one well far away on every feature -> PC1 outlier
    df = pl.DataFrame(
        {PLATE: ["P1"] * 20 + ["P2"] * 20, WELL: [f"W{i:02d}" for i in range(40)]}
    ).hstack(pl.DataFrame(x, schema=[f"f{i}" for i in range(5)]))
    with pytest.warns(ProfilesWarning, match="1 of 40 well"):
        out = flag_outlier_wells(df, n_components=1)
    assert out.filter(pl.col(OUTLIER))[WELL].to_list() == ["W07"]
    reason = out.filter(pl.col(OUTLIER))[REASON][0]
    assert reason.startswith(("PC1 robust z = +", "PC1 robust z = -")) and reason.endswith(
        "(|z| > 3.5)"
    )
    # The reason's z is the robust z of PC1 within plate P1.
    pc1 = out.filter(pl.col(PLATE) == "P1")["PC1"].to_numpy()
    z = robust_z(pc1)[7]
    assert f"{z:+.2f}" in reason


def test_image_qc_focus_and_saturation():
    slope = [-2.0, -2.1, -1.9, -2.05, -1.95, -2.0, -3.5]  # the last image is blurred
    sat = [0.0, 0.1, 0.0, 2.5, 0.0, 0.0, 0.0]  # image 4 is saturated in DNA
    df = pl.DataFrame(
        {
            PLATE: ["P"] * 7,
            "Metadata_Site": list(range(1, 8)),
            "Image_ImageQuality_PowerLogLogSlope_OrigDNA": slope,
            "Image_ImageQuality_PercentMaximal_OrigDNA": sat,
        }
    )
    with pytest.warns(ProfilesWarning, match="2 of 7 image"):
        out = image_qc(df)
    assert out[OUTLIER].to_list() == [False, False, False, True, False, False, True]
    assert "saturation OrigDNA: 2.50% of pixels at maximum" in out[REASON][3]
    # median -2.0, MAD 0.05 -> z = -1.5 / (1.4826 * 0.05) = -20.23
    assert "focus OrigDNA: PowerLogLogSlope robust z = -20.23 (blurred)" == out[REASON][6]
    with pytest.raises(MissingColumnsError, match="MeasureImageQuality"):
        image_qc(
            df.drop(
                "Image_ImageQuality_PowerLogLogSlope_OrigDNA",
                "Image_ImageQuality_PercentMaximal_OrigDNA",
            )
        )


def test_standardized_pca_leaves_out_constant_features():
    # 0.1 repeated 7 times has a mean that is not exactly 0.1, so its std is
    # ~1e-17, not 0; the feature must still be left out, not blown up.
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(1)
    x = rng.normal(size=(7, 3))
    df = pl.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "const": [0.1] * 7})
    assert np.std(np.full(7, 0.1)) > 0
    result = pca_profiles(df, 2, standardize=True)
    assert result.features == ["a", "b", "c"]
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    ref = PCA(n_components=2, svd_solver="full").fit(z)
    np.testing.assert_allclose(
        result.explained_variance_ratio, ref.explained_variance_ratio_, rtol=1e-10
    )


def test_image_qc_nan_is_reported_not_flagged():
    from cellframe.errors import NaNExcludedWarning

    nan = float("nan")
    slope = [-2.0, -2.1, -1.9, -2.05, nan, -2.0, -3.5]  # image 5 has no focus value
    sat = [0.0, 0.1, nan, 2.5, 0.0, 0.0, 0.0]  # image 3 has no saturation value
    df = pl.DataFrame(
        {
            PLATE: ["P"] * 7,
            "Metadata_Site": list(range(1, 8)),
            "Image_ImageQuality_PowerLogLogSlope_OrigDNA": slope,
            "Image_ImageQuality_PercentMaximal_OrigDNA": sat,
        }
    )
    with (
        pytest.warns(NaNExcludedWarning, match="2 of 7 image"),
        pytest.warns(ProfilesWarning, match="2 of 7 image"),
    ):
        out = image_qc(df)
    # The saturated and the blurred images are still flagged; the NaN ones are not.
    assert out[OUTLIER].to_list() == [False, False, False, True, False, False, True]
    assert out[REASON][2] is None and out[REASON][4] is None


def test_outlier_wells_nan_z_is_reported_not_flagged():
    from cellframe.errors import NaNExcludedWarning

    # Plate P2 holds one well: its robust z is 0/0 = NaN on every PC.
    rng = np.random.default_rng(1)
    x = rng.normal(size=(21, 4))
    x[3] += 30.0
    df = pl.DataFrame({PLATE: ["P1"] * 20 + ["P2"], WELL: [f"W{i:02d}" for i in range(21)]}).hstack(
        pl.DataFrame(x, schema=[f"f{i}" for i in range(4)])
    )
    scores = pca_profiles(df, 1).scores
    from cellframe.profiles.qc import _flag_scores

    single = scores.filter(pl.col(PLATE) == "P2").with_columns(pl.lit(float("nan")).alias("PC1"))
    mixed = pl.concat([scores.filter(pl.col(PLATE) == "P1"), single])
    with pytest.warns(NaNExcludedWarning, match="1 of 21 well"):
        out = _flag_scores(mixed, z_threshold=3.5, by=[PLATE])
    assert out.filter(pl.col(OUTLIER))[WELL].to_list() == ["W03"]
    assert out.filter(pl.col(WELL) == "W20")[OUTLIER][0] is False
