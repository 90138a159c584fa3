"""NSC / NSCB nearest-neighbour MoA accuracy against hand-computed cases and a NumPy reference."""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import pytest
from scipy.spatial.distance import cdist

from cellframe.errors import InvalidChoiceError, InvalidInputError, MissingColumnsError
from cellframe.evaluate import nearest_neighbour_moa, nsc_accuracy, nscb_accuracy
from cellframe.evaluate.moa import NoNeighbourWarning

# Six profiles on the plane; angles 0, 6.3, 45, 90, 84.3 and 78.7 degrees.
SIX = pl.DataFrame(
    {
        "Metadata_Treatment": ["c1", "c2", "c3", "c4", "c5", "c5"],
        "Metadata_MoA": ["A", "A", "A", "B", "B", "B"],
        "Metadata_Plate": ["P1", "P1", "P2", "P2", "P1", "P2"],
        "f1": [1.0, 0.9, 0.5, 0.0, 0.1, 0.2],
        "f2": [0.0, 0.1, 0.5, 1.0, 1.0, 1.0],
    }
)


def test_six_profiles_nsc_by_hand():
    res = nsc_accuracy(SIX)
    # c3 (45 deg) is nearest to c5's 78.7-degree profile (33.7 deg away), a B.
    assert res.per_profile["neighbour_row"].to_list() == [1, 0, 5, 4, 3, 3]
    assert res.per_profile["correct"].to_list() == [True, True, False, True, True, True]
    assert res.accuracy == pytest.approx(5 / 6)
    assert res.per_moa["accuracy"].to_list() == pytest.approx([2 / 3, 1.0])
    assert res.summary["mean_moa_accuracy"][0] == pytest.approx((2 / 3 + 1) / 2)
    # The cosine of the 45-degree profile with its neighbour (78.7 degrees).
    assert res.per_profile["similarity"][2] == pytest.approx(np.cos(np.deg2rad(45 - 78.690068)))


def test_six_profiles_nscb_by_hand():
    res = nscb_accuracy(SIX)
    # c5 on P2 may only look at P1 profiles of other compounds: c1 and c2 (MoA A).
    assert res.per_profile["neighbour_row"].to_list() == [2, 2, 1, 4, 3, 1]
    assert res.per_profile["correct"].to_list() == [True, True, True, True, True, False]
    assert res.per_profile["neighbour_Metadata_MoA"].to_list() == ["A", "A", "A", "B", "B", "A"]
    assert res.accuracy == pytest.approx(5 / 6)
    assert res.summary["exclude_same"][0] == "Metadata_Treatment,Metadata_Plate"
    assert res.summary["n_no_neighbour"][0] == 0


def _reference(x, moa, exclude_codes, metric):
    """Brute force in float64: full similarity matrix, mask, first argmax."""
    x = np.asarray(x, dtype=np.float64)
    if metric == "cosine":
        u = x / np.linalg.norm(x, axis=1, keepdims=True)
        s = u @ u.T
    else:
        s = -cdist(x, x)
    ok = np.ones(s.shape, dtype=bool)
    for c in exclude_codes:
        ok &= c[:, None] != c[None, :]
    np.fill_diagonal(ok, False)
    s = np.where(ok, s, -np.inf)
    nn = s.argmax(axis=1)
    has = ok.any(axis=1)
    return np.where(has, nn, -1), (moa[nn] == moa) & has, has


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_against_numpy_reference(metric):
    rng = np.random.default_rng(3)
    n, d = 150, 12
    moa = rng.integers(0, 5, n)
    compound = rng.integers(0, 40, n)
    batch = rng.integers(0, 3, n)
    centres = rng.normal(size=(5, d))
    x = centres[moa] + rng.normal(size=(n, d)) * 1.5 + batch[:, None] * 0.5
    df = pl.DataFrame(
        {
            "Metadata_MoA": [f"m{v}" for v in moa],
            "Metadata_Treatment": [f"c{v}" for v in compound],
            "Metadata_Plate": [f"p{v}" for v in batch],
        }
    ).hstack(pl.DataFrame(x, schema=[f"f{i}" for i in range(d)]))
    for res, codes in (
        (nsc_accuracy(df, metric=metric, block_rows=17), [compound]),
        (nscb_accuracy(df, metric=metric, block_rows=17), [compound, batch]),
    ):
        nn, correct, has = _reference(x, moa, codes, metric)
        assert res.per_profile["neighbour_row"].fill_null(-1).to_list() == nn.tolist()
        assert res.summary["n_correct"][0] == int(correct.sum())
        assert res.accuracy == pytest.approx(correct.sum() / has.sum(), abs=1e-12)
        per_moa = [correct[moa == m].sum() / has[moa == m].sum() for m in range(5)]
        assert res.per_moa["accuracy"].to_list() == pytest.approx(per_moa, abs=1e-12)


def test_controls_and_unlabelled_rows_take_no_part():
    # A DMSO row identical to c1 would be everybody's neighbour if it took part.
    ctrl = pl.DataFrame(
        {"Metadata_Treatment": ["DMSO", "c9"], "Metadata_MoA": [None, None],
         "Metadata_Plate": ["P1", "P1"], "f1": [0.95, 0.5], "f2": [0.05, 0.5]}
    )  # fmt: skip
    df = pl.concat([SIX, ctrl])
    with pytest.warns(
        RuntimeWarning, match="1 of 7 treatment profiles rows have no 'Metadata_MoA'"
    ):
        res = nsc_accuracy(df, controls=pl.col("Metadata_Treatment") == "DMSO")
    assert res.per_profile["neighbour_row"].to_list() == [1, 0, 5, 4, 3, 3]
    assert res.summary.select("n_controls_left_out", "n_unlabelled_left_out").row(0) == (1, 1)
    assert res.accuracy == pytest.approx(5 / 6)


def test_default_controls_from_metadata_control():
    df = SIX.with_columns(Metadata_Control=pl.Series(["", "", "", "", "", "negcon"]))
    res = nsc_accuracy(df)
    assert res.summary["n_controls_left_out"][0] == 1
    assert res.per_profile.height == 5
    assert res.per_profile["neighbour_row"].to_list() == [1, 0, 1, 4, 3]
    # A control first: rows and neighbours keep their input positions.
    first = pl.concat([df.tail(1), df.head(5)])
    moved = nsc_accuracy(first, keep=["Metadata_Plate"])
    assert moved.per_profile["row"].to_list() == [1, 2, 3, 4, 5]
    assert moved.per_profile["neighbour_row"].to_list() == [2, 1, 2, 5, 4]
    assert moved.per_profile["Metadata_Plate"].to_list() == ["P1", "P1", "P2", "P2", "P1"]


def test_lone_batch_and_compound_has_no_neighbour():
    df = pl.DataFrame(
        {
            "Metadata_Treatment": ["c1", "c2", "c1"],
            "Metadata_MoA": ["A", "A", "A"],
            "Metadata_Plate": ["P1", "P2", "P2"],
            "f1": [1.0, 0.9, 0.8],
            "f2": [0.0, 0.1, 0.3],
        }
    )
    with pytest.warns(NoNeighbourWarning, match="1 of 3 treatment profiles"):
        res = nscb_accuracy(df)
    # Row 0 (c1, P1) -> row 1 (c2, P2); row 1 -> row 0; row 2 (c1, P2) has none.
    assert res.per_profile["neighbour_row"].to_list() == [1, 0, None]
    assert res.per_profile["correct"].to_list() == [True, True, None]
    assert res.summary.select("n_scored", "n_no_neighbour", "accuracy").row(0) == (2, 1, 1.0)
    assert res.per_moa.select("n_profiles", "n_scored", "n_no_neighbour").row(0) == (3, 2, 1)


def test_multilabel_moa_with_sep():
    df = SIX.with_columns(Metadata_MoA=pl.Series(["A", "A", "A|B", "B", "B", "B"]))
    exact = nsc_accuracy(df)
    shared = nsc_accuracy(df, sep="|")
    # Row 2 ("A|B") finds row 5 ("B"): wrong as a whole value, right when labels are shared.
    assert exact.per_profile["correct"][2] is False
    assert shared.per_profile["correct"][2] is True
    assert shared.accuracy == pytest.approx(1.0)
    assert exact.accuracy == pytest.approx(5 / 6)


def test_callable_and_correlation_metrics():
    res = nsc_accuracy(SIX, metric=lambda a, b: a @ b.T)  # dot product, unnormalized
    ref = SIX.select("f1", "f2").to_numpy() @ SIX.select("f1", "f2").to_numpy().T
    assert res.per_profile["similarity"][0] == pytest.approx(ref[0, 1])
    corr = nsc_accuracy(SIX.with_columns(f3=pl.lit(0.3)), metric="correlation")
    x = SIX.with_columns(f3=pl.lit(0.3)).select("f1", "f2", "f3").to_numpy()
    c = np.corrcoef(x)
    np.fill_diagonal(c, -np.inf)
    c[4, 5] = c[5, 4] = -np.inf
    assert corr.per_profile["neighbour_row"].to_list() == c.argmax(axis=1).tolist()


def test_zero_profile_is_left_out_with_a_count():
    df = SIX.with_columns(
        f1=pl.Series([1.0, 0.9, 0.5, 0.0, 0.0, 0.2]), f2=pl.Series([0.0, 0.1, 0.5, 1.0, 0.0, 1.0])
    )
    with pytest.warns(RuntimeWarning, match="1 of 6 treatment profiles have an undefined cosine"):
        res = nsc_accuracy(df)
    assert res.summary["n_undefined_left_out"][0] == 1
    assert res.per_profile["row"].to_list() == [0, 1, 2, 3, 5]
    # Euclidean distance is defined for the zero profile: it stays.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert nsc_accuracy(df, metric="euclidean").per_profile.height == 6


def test_bad_input():
    with pytest.raises(MissingColumnsError, match="Metadata_MoA"):
        nsc_accuracy(SIX.drop("Metadata_MoA"))
    with pytest.raises(InvalidChoiceError, match="unknown metric 'manhattan'; choose one of"):
        nsc_accuracy(SIX, metric="manhattan")
    with pytest.raises(InvalidInputError, match="exclude_same is empty"):
        nearest_neighbour_moa(SIX, exclude_same=[])
    with pytest.raises(InvalidInputError, match="NaN/infinite"):
        nsc_accuracy(SIX.with_columns(f1=pl.Series([np.nan, 1, 1, 1, 1, 1.0])))
    with pytest.raises(InvalidInputError, match="must return"):
        nsc_accuracy(SIX, metric=lambda a, b: a @ b[:2].T)
    with pytest.raises(InvalidInputError, match="controls expression cannot be evaluated"):
        nsc_accuracy(SIX, controls=pl.col("Metadata_Kind") == "DMSO")
    with pytest.raises(InvalidInputError, match="at least two"):
        nsc_accuracy(SIX.head(1))


def test_lincs_nsc(lincs):
    """LINCS SQ00015054 (one plate, so no NSCB): 58 compounds x 6 doses."""
    kw = dict(
        moa="Metadata_moa",
        compound="Metadata_broad_sample",
        controls=pl.col("Metadata_broad_sample") == "DMSO",
    )
    with pytest.warns(RuntimeWarning, match="18 of 360"):
        res = nsc_accuracy(lincs, **kw)
    assert res.summary.select("n_profiles", "n_controls_left_out", "n_unlabelled_left_out").row(
        0
    ) == (342, 24, 18)
    assert res.summary["n_correct"][0] == 6  # 6 / 342 = 1.8%: all "ATPase inhibitor"
    assert res.per_moa.filter(pl.col("n_correct") > 0)["Metadata_moa"].to_list() == [
        "ATPase inhibitor"
    ]
    with pytest.warns(RuntimeWarning):
        shared = nsc_accuracy(lincs, sep="|", **kw)
    assert shared.summary["n_correct"][0] == 30
    with pytest.warns(RuntimeWarning) as caught:
        one_plate = nscb_accuracy(lincs, **kw)
    assert any(w.category is NoNeighbourWarning and "342 of 342" in str(w.message) for w in caught)
    assert one_plate.summary["n_scored"][0] == 0
    assert one_plate.summary["accuracy"][0] is None


def test_nelisa_nsc_and_nscb_against_the_reference(shared_data):
    """nELISA: 258 compounds on 4 plates, target as the label; NSCB leaves the plate out."""
    path = shared_data / "profiles-nelisa" / "nelisa_profiles.parquet"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    df = pl.read_parquet(path)
    kw = dict(
        moa="Metadata_target",
        compound="Metadata_broad_sample",
        controls=pl.col("Metadata_control_type").is_not_null(),
    )
    nsc = nsc_accuracy(df, **kw)
    nscb = nscb_accuracy(df, batch="Metadata_Plate", **kw)
    treated = df.filter(pl.col("Metadata_control_type").is_null())
    x = treated.select(pl.exclude("^Metadata_.*$")).to_numpy().astype(np.float64)
    codes = {c: treated[c].rank("dense").to_numpy() for c in treated.columns if c in (
        "Metadata_target", "Metadata_broad_sample", "Metadata_Plate")}  # fmt: skip
    for res, excl in (
        (nsc, ["Metadata_broad_sample"]),
        (nscb, ["Metadata_broad_sample", "Metadata_Plate"]),
    ):
        nn, correct, has = _reference(
            x, codes["Metadata_target"], [codes[c] for c in excl], "cosine"
        )
        assert has.all()
        position = np.flatnonzero(df["Metadata_control_type"].is_null().to_numpy())
        assert res.per_profile["row"].to_list() == position.tolist()
        assert res.per_profile["neighbour_row"].to_list() == position[nn].tolist()
        assert res.summary["n_correct"][0] == int(correct.sum())
    assert nsc.summary.select("n_profiles", "n_controls_left_out").row(0) == (1033, 492)
    # 23 / 1033 = 2.2% NSC, 13 / 1033 = 1.3% NSCB (130 targets, 129 with two or more compounds).
    assert (nsc.summary["n_correct"][0], nscb.summary["n_correct"][0]) == (23, 13)
