"""save_step / load_step: fitted steps written to the store and read back."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cellframe.errors import InvalidInputError
from cellframe.pipeline import load_step, save_step
from cellframe.profiles import FeatureSelector, Normalizer, Spherizer
from cellframe.store import Store


@pytest.fixture
def wells() -> pl.DataFrame:
    rng = np.random.default_rng(3)
    n = 24
    return pl.DataFrame(
        {
            "Metadata_Plate": ["P1"] * 12 + ["P2"] * 12,
            "Metadata_Control": (["negcon"] * 6 + ["trt"] * 6) * 2,
            **{f"f{i}": rng.normal(i, 1 + i, n).astype(np.float32) for i in range(4)},
        }
    )


def test_round_trip_gives_the_same_transform(wells: pl.DataFrame) -> None:
    norm = Normalizer("robustize").fit(wells)
    sph = Spherizer("ZCA", lam=0.1).fit(wells)
    with Store() as store:
        save_step(store, norm, "norm_fit")
        save_step(store, sph, "sph_fit")
        got_norm = load_step(store, "norm_fit")
        got_sph = load_step(store, "sph_fit", expect=Spherizer)
        assert store.provenance("norm_fit")["step"].to_list() == ["normalize_fit"]
        assert store.provenance("sph_fit")["step"].to_list() == ["sphere_fit"]
    assert isinstance(got_norm, Normalizer) and got_norm.features_ == ["f0", "f1", "f2", "f3"]
    assert_frame_equal(got_norm.transform(wells).collect(), norm.transform(wells).collect())
    assert_frame_equal(got_sph.transform(wells).collect(), sph.transform(wells).collect())
    # The reference: robustize by hand on plate P1's controls for f2.
    p1 = wells.filter(pl.col("Metadata_Plate") == "P1")
    ctl = p1.filter(pl.col("Metadata_Control") == "negcon")["f2"].to_numpy().astype(np.float64)
    q25, q50, q75 = np.quantile(ctl, [0.25, 0.5, 0.75])
    expected = (p1["f2"].to_numpy().astype(np.float64) - q50) / (q75 - q25)
    got = got_norm.transform(p1).collect()["f2"].to_numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_refusals_name_the_table_and_leave_the_store_unchanged(
    wells: pl.DataFrame, tmp_path
) -> None:
    sph = Spherizer("PCA").fit(wells)
    path = tmp_path / "s.duckdb"
    with Store(path) as store:
        save_step(store, sph, "sph_fit")
        store.write("other", pl.DataFrame({"a": [1]}), step="x")
    before = path.read_bytes()
    with Store(path) as store:
        selector = FeatureSelector("variance_threshold").fit(wells)
        with pytest.raises(InvalidInputError, match="cannot save a FeatureSelector to table 'x'"):
            save_step(store, selector, "x")
        with pytest.raises(
            InvalidInputError, match="'sph_fit' was not written by a saved Normalizer"
        ):
            load_step(store, "sph_fit", expect=Normalizer)
        with pytest.raises(InvalidInputError, match="'other' was not written by save_step"):
            load_step(store, "other")
        assert "x" not in store.table_names()
    assert path.read_bytes() == before
