"""QC on Ray: PCA from exact cross-plate moments and per-plate flags equal the local QC."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cellframe.columns import PLATE, SITE, WELL, feature_columns
from cellframe.engine import RayEngine
from cellframe.errors import InvalidInputError, MissingColumnsError
from cellframe.pipeline import QualityControl, run_pipeline, run_step
from cellframe.pipeline.plates import (
    fit_pca_plates,
    flag_outlier_wells_plates,
    image_qc_plates,
    pca_plates,
)
from cellframe.profiles._common import ProfilesWarning
from cellframe.profiles.qc import OUTLIER, REASON, flag_outlier_wells, image_qc, pca_profiles
from cellframe.store import Store

N_PLATES = 4
KEYS = (PLATE, WELL)
FOCUS = "Image_ImageQuality_PowerLogLogSlope_OrigDNA"
SATURATION = "Image_ImageQuality_PercentMaximal_OrigDNA"


def wells(seed: int = 3) -> pl.DataFrame:
    """4 plates x 60 wells x 10 correlated features, shifted per plate, with 2 odd wells a plate."""
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(10, 10)) * np.linspace(3.0, 0.3, 10)[:, None]  # distinct eigenvalues
    frames = []
    for p in range(N_PLATES):
        x = rng.normal(size=(60, 10)) @ mix + p * 0.5 + 100.0  # large mean: no cancellation
        x[7] += 25.0
        x[31] -= 18.0 * mix[0]
        frame = pl.DataFrame({f"Cells_f{j}": x[:, j].astype(np.float32) for j in range(10)})
        frames.append(
            frame.with_columns(
                pl.lit(f"P{p}").alias(PLATE),
                pl.Series(WELL, [f"{chr(65 + w // 12)}{w % 12 + 1:02d}" for w in range(60)]),
                pl.lit(0.7, dtype=pl.Float32).alias("Cells_constant"),
            )
        )
    out = pl.concat(frames)
    return out.select(PLATE, WELL, *feature_columns(out))


def images(seed: int = 5) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for p in range(N_PLATES):
        n = 48
        slope = rng.normal(-2.0 - 0.2 * p, 0.05, n)  # plates differ: per-plate z matters
        slope[p * 3] = -3.0  # one blurred image a plate
        sat = rng.exponential(0.1, n)
        sat[n - 1 - p] = 3.5  # one saturated image a plate
        frames.append(
            pl.DataFrame(
                {
                    PLATE: [f"P{p}"] * n,
                    WELL: [f"A{w // 4 + 1:02d}" for w in range(n)],
                    SITE: pl.Series((np.arange(n) % 4 + 1).astype(np.int32)),
                    FOCUS: slope,
                    SATURATION: sat,
                }
            )
        )
    return pl.concat(frames)


@pytest.fixture(scope="module")
def screen(tmp_path_factory: pytest.TempPathFactory):
    w, im = wells(), images()
    store = Store(Path(tmp_path_factory.mktemp("qc")) / "s.duckdb")
    for (plate,), part in w.group_by(PLATE, maintain_order=True):
        store.write_partition("wells", plate, part, step="test")
    store.write("wells_native", w)
    store.write("image_profiles", im)
    yield store, w, im
    store.close()


def _sorted(df: pl.DataFrame, keys=KEYS) -> pl.DataFrame:
    return df.sort(*keys)


@pytest.mark.parametrize("standardize", [False, True])
def test_pca_on_ray_equals_local_and_sklearn(screen, ray_local, standardize) -> None:
    from sklearn.decomposition import PCA

    store, w, _ = screen
    local = pca_profiles(w, 4, standardize=standardize)
    ray = pca_plates(store, "wells", 4, standardize=standardize, engine="ray", progress=False)
    assert ray.features == local.features
    assert "Cells_constant" not in ray.features or not standardize
    np.testing.assert_allclose(ray.components, local.components, rtol=0, atol=1e-10)
    np.testing.assert_allclose(
        ray.explained_variance_ratio, local.explained_variance_ratio, rtol=1e-10
    )
    pcs = [f"PC{i}" for i in range(1, 5)]
    assert_frame_equal(
        _sorted(ray.scores).select(*KEYS, *pcs),
        _sorted(local.scores).select(*KEYS, *pcs),
        check_exact=False,
        rel_tol=1e-8,
        abs_tol=1e-8,
    )
    # Independent reference: scikit-learn on all wells at once (signs by our convention).
    x = w.select(ray.features).to_numpy().astype(np.float64)
    if standardize:
        x = (x - x.mean(axis=0)) / x.std(axis=0)
    ref = PCA(n_components=4, svd_solver="full").fit(x)
    np.testing.assert_allclose(
        ray.explained_variance_ratio, ref.explained_variance_ratio_, rtol=1e-9
    )
    signs = np.sign((ray.components * ref.components_).sum(axis=1))
    np.testing.assert_allclose(ray.components * signs[:, None], ref.components_, atol=1e-9)
    # Sign convention: each axis' largest absolute loading is positive.
    top = ray.components[np.arange(4), np.argmax(np.abs(ray.components), axis=1)]
    assert (top > 0).all()


def test_pca_leaves_out_features_with_missing_values(screen, tmp_path) -> None:
    _, w, _ = screen
    holed = w.with_columns(
        pl.when(pl.int_range(pl.len()) == 100).then(None).otherwise(pl.col("Cells_f3")).alias("Cells_f3")
    )  # fmt: skip
    with Store(tmp_path / "h.duckdb") as store:
        store.write("wells", holed)
        with pytest.warns(ProfilesWarning, match="1 feature\\(s\\) with missing values"):
            fitted = fit_pca_plates(store, "wells", 2, progress=False)
        with pytest.warns(ProfilesWarning):
            local = pca_profiles(holed, 2)
    assert "Cells_f3" not in fitted.features_ and fitted.features_ == local.features
    np.testing.assert_allclose(fitted.components_, local.components, atol=1e-10)


@pytest.mark.parametrize("by", [(PLATE,), None])
def test_outlier_wells_on_ray_equal_local(screen, ray_local, by) -> None:
    store, w, _ = screen
    tag = "plate" if by else "all"
    with pytest.warns(ProfilesWarning, match="well\\(s\\) flagged"):
        local = flag_outlier_wells(w, n_components=3, by=by)
    with pytest.warns(ProfilesWarning, match="well\\(s\\) flagged"):
        report = flag_outlier_wells_plates(
            store, "wells", f"qc_{tag}", n_components=3, by=by, engine="ray", progress=False
        )
    assert report.rows == w.height
    ray = _sorted(store.read(f"qc_{tag}")).select(local.columns)
    local = _sorted(local)
    assert local[OUTLIER].sum() >= N_PLATES  # the planted wells, at least
    assert ray[OUTLIER].to_list() == local[OUTLIER].to_list()
    assert ray[REASON].to_list() == local[REASON].to_list()
    assert_frame_equal(ray, local, check_exact=False, rel_tol=1e-5, abs_tol=1e-5)
    planted = local.filter(pl.col(WELL).is_in(["A08", "C08"]))  # wells 7 and 31
    assert planted[OUTLIER].all()


@pytest.mark.parametrize("by", [(PLATE,), None])
def test_image_qc_on_ray_equals_local(screen, ray_local, by) -> None:
    store, _, im = screen
    tag = "plate" if by else "all"
    with pytest.warns(ProfilesWarning, match="image\\(s\\) flagged"):
        local = image_qc(im, by=by)
    with pytest.warns(ProfilesWarning, match="image\\(s\\) flagged"):
        image_qc_plates(store, "image_profiles", f"iqc_{tag}", by=by, engine="ray", progress=False)
    keys = (PLATE, WELL, SITE)
    ray = _sorted(store.read(f"iqc_{tag}"), keys).select(local.columns)
    assert_frame_equal(ray, _sorted(local, keys))
    if by:  # per plate, the planted blurred and saturated image of every plate
        assert local[OUTLIER].sum() == 2 * N_PLATES
        assert local[REASON].str.contains("blurred").sum() == N_PLATES


@pytest.mark.filterwarnings("ignore::cellframe.profiles._common.ProfilesWarning")
def test_run_qc_cli_config_resume_and_force(screen, ray_local) -> None:
    from cellframe.cli import main

    store, _, _ = screen
    first = run_step(store, QualityControl(), "wells", "qc_run", engine="ray", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProfilesWarning)
        local = run_step(store, QualityControl(), "wells_native", "qc_run_local", progress=False)
    assert "4 plates computed" in first.note and first.note.startswith(local.note)
    again = run_step(store, QualityControl(), "wells", "qc_run", engine="ray", progress=False)
    assert "0 plates computed, 4 already complete" in again.note
    forced = run_step(
        store, QualityControl(), "wells", "qc_run", engine=RayEngine(force=True), progress=False
    )
    assert "4 plates computed" in forced.note
    config = {
        "input": "image_profiles",
        "engine": "ray",
        "step": [{"run": "qc", "kind": "images", "output": "cfg_iqc"}],
    }
    assert "ray" in run_pipeline(store, config, progress=False)[0].note
    path = store.path
    store.close()
    try:
        rc = main(["qc", "--store", str(path), "--input", "wells", "--output", "cli_qc",
                   "--engine", "ray", "-q"])  # fmt: skip
        assert rc == 0
        rc = main(["qc", "--store", str(path), "--input", "image_profiles", "--kind", "images",
                   "--output", "cli_iqc", "--by", "", "--engine", "ray", "-q"])  # fmt: skip
        assert rc == 0
    finally:
        store.__init__(path)
    a = _sorted(store.read("cli_qc")).select(store.columns("qc_run_local"))
    assert_frame_equal(a, _sorted(store.read("qc_run_local")), check_exact=False, rel_tol=1e-5)
    keys = (PLATE, WELL, SITE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProfilesWarning)
        expected = _sorted(image_qc(store.read("image_profiles"), by=None), keys)
    assert_frame_equal(_sorted(store.read("cli_iqc"), keys).select(expected.columns), expected)


def test_bad_input(screen) -> None:
    store, _, _ = screen
    with pytest.raises(MissingColumnsError, match="MeasureImageQuality"):
        image_qc_plates(store, "wells", "bad", progress=False)
    with pytest.raises(MissingColumnsError, match="Metadata_Batch"):
        flag_outlier_wells_plates(store, "wells", "bad", by=(PLATE, "Metadata_Batch"))
    with pytest.raises(InvalidInputError, match="n_components >= 1"):
        fit_pca_plates(store, "wells", 0, progress=False)
    with pytest.raises(ValueError, match="unknown QC kind 'cells'"):
        run_step(store, QualityControl(kind="cells"), "wells", "bad", engine="ray", progress=False)
    assert not store.has_table("bad")
