"""AnnData in and out: exact round trips, AnnData written elsewhere, bad files, the CLI."""

from __future__ import annotations

import datetime as dt
import hashlib
import warnings

import anndata
import numpy as np
import pandas as pd
import polars as pl
import pytest
import scipy.sparse as sp
from polars.testing import assert_frame_equal

from cellframe.cli import main
from cellframe.errors import (
    CorruptFileError,
    DuplicateColumnsError,
    EmptyInputError,
    InvalidInputError,
    PrecisionLossWarning,
)
from cellframe.io import AnnDataContentWarning, from_anndata, read_h5ad, to_anndata, write_h5ad
from cellframe.store import Store


def _unusual() -> pl.DataFrame:
    """Valid but unusual: nulls everywhere, NaN beside null, dates, big ints, a text column."""
    return pl.DataFrame(
        {
            "Metadata_Plate": ["P1", "P1", None, "P2"],
            "Metadata_Well": ["A01", "A02", "A03", "A01"],
            "Metadata_Site": pl.Series([1, None, 3, 4], dtype=pl.Int32),
            "Metadata_Flag": [True, None, False, True],
            "Metadata_Dose": [0.1, None, float("nan"), 10.0],
            "Metadata_Date": [dt.date(2024, 1, 2), None, dt.date(2024, 3, 4), dt.date(2024, 1, 2)],
            "Metadata_Time": [dt.datetime(2024, 1, 2, 3, 4, 5, 6), None, None, None],
            "Metadata_Kind": pl.Series(["a", "b", "a", "a"], dtype=pl.Categorical),
            "Metadata_Id": [2**62 + 1, 1, None, -5],
            "Cells_A": pl.Series([1.5, None, float("nan"), -0.0], dtype=pl.Float32),
            "note": ["x", "", None, "y"],
            "Cells_B": pl.Series([1e-38, 3.25, 7.0, float("inf")], dtype=pl.Float32),
        }
    )


def test_to_anndata_layout():
    df = _unusual()
    adata = to_anndata(df)
    assert adata.X.dtype == np.float32
    assert list(adata.var_names) == ["Cells_A", "Cells_B"]
    assert list(adata.obs.columns) == [c for c in df.columns if c not in ("Cells_A", "Cells_B")]
    np.testing.assert_array_equal(adata.X, df.select("Cells_A", "Cells_B").to_numpy())
    assert list(adata.obs_names) == ["0", "1", "2", "3"]
    assert adata.obs["Metadata_Site"].isna().tolist() == [False, True, False, False]
    assert adata.obs["Metadata_Id"].iloc[0] == 2**62 + 1  # int64, not rounded through float


def test_round_trip_in_memory_and_through_a_file(tmp_path):
    df = _unusual()
    assert_frame_equal(from_anndata(to_anndata(df)), df)
    path = write_h5ad(df, tmp_path / "p.h5ad")
    back = read_h5ad(path)
    assert_frame_equal(back, df)
    # null and NaN stay apart, in metadata and in features.
    assert back["Metadata_Dose"].is_null().to_list() == [False, True, False, False]
    assert back["Cells_A"].is_nan().fill_null(False).to_list() == [False, False, True, False]
    # The file is a plain AnnData other tools read.
    other = anndata.read_h5ad(path)
    assert other.shape == (4, 2)
    assert not list(tmp_path.glob(".*partial"))


def test_lincs_round_trip_matches_the_file(shared_data, tmp_path):
    path = shared_data / "profiles-lincs-SQ00015054" / "SQ00015054_normalized_feature_select.csv.gz"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    df = pl.read_csv(path, infer_schema_length=10000)
    feats = [c for c in df.columns if not c.startswith("Metadata_")]
    df = df.with_columns(pl.col(feats).cast(pl.Float32))
    out = write_h5ad(df, tmp_path / "lincs.h5ad")
    assert_frame_equal(read_h5ad(out), df)
    adata = anndata.read_h5ad(out)
    assert adata.shape == (384, 454)
    np.testing.assert_array_equal(adata.X, df.select(feats).to_numpy())
    assert adata.obs["Metadata_moa"].isna().sum() == 42


def test_float64_features_warn_with_a_count_only_when_rounded():
    exact = pl.DataFrame({"Metadata_Well": ["A01", "A02"], "f": [0.5, 2.0]})  # float64, exact
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        adata = to_anndata(exact)
    assert_frame_equal(from_anndata(adata), exact)  # dtype Float64 restored
    rounded = pl.DataFrame({"Metadata_Well": ["A01", "A02"], "f": [0.1, 2.0], "g": [1, 2**25 + 1]})
    with pytest.warns(PrecisionLossWarning, match="2 of 4 values of 2 feature column"):
        adata = to_anndata(rounded)
    assert adata.X[0, 0] == np.float32(0.1)


def test_anndata_written_elsewhere(tmp_path):
    obs = pd.DataFrame(
        {"batch": pd.Categorical(["b1", "b2", "b1"]), "n_genes": [10, 20, 30]},
        index=["AAAC-1", "AAAG-1", "AATT-1"],
    )
    x = sp.csr_matrix(np.array([[0, 1.5, 0], [2, 0, 0], [0, 0, 3]], dtype=np.float64))
    adata = anndata.AnnData(X=x, obs=obs, var=pd.DataFrame({"hv": [True, False, True]},
                            index=["g1", "g2", "g3"]))  # fmt: skip
    adata.obsm["X_pca"] = np.arange(6, dtype=np.float64).reshape(3, 2)
    adata.layers["counts"] = np.ones((3, 3), dtype=np.int32)
    adata.write_h5ad(tmp_path / "scanpy.h5ad")
    with pytest.warns(
        AnnDataContentWarning, match=r"layers \['counts'\]; obsm \['X_pca'\]; var columns \['hv'\]"
    ):
        df = read_h5ad(tmp_path / "scanpy.h5ad")
    assert df.columns == ["Metadata_obs_name", "batch", "n_genes", "g1", "g2", "g3"]
    assert df["Metadata_obs_name"].to_list() == ["AAAC-1", "AAAG-1", "AATT-1"]
    assert df.schema["batch"] == pl.String and df["batch"].to_list() == ["b1", "b2", "b1"]
    assert df.select("g1", "g2", "g3").to_numpy().tolist() == [[0, 1.5, 0], [2, 0, 0], [0, 0, 3]]
    assert df.schema["g1"] == pl.Float32
    with pytest.warns(AnnDataContentWarning, match="layers"):
        pcs = read_h5ad(tmp_path / "scanpy.h5ad", obsm="X_pca")
    assert pcs.select("X_pca_0", "X_pca_1").to_numpy().tolist() == [[0, 1], [2, 3], [4, 5]]
    with pytest.warns(AnnDataContentWarning, match="obsm"):
        counts = read_h5ad(tmp_path / "scanpy.h5ad", layer="counts")
    assert counts["g2"].to_list() == [1.0, 1.0, 1.0]


def test_bad_anndata():
    x = np.zeros((1, 2), dtype=np.float32)
    dup_obs = anndata.AnnData(X=x, obs=pd.DataFrame([[1, 2]], columns=["a", "a"], index=["0"]))
    with pytest.raises(
        DuplicateColumnsError, match=r"obs names column\(s\) \['a'\] more than once"
    ):
        from_anndata(dup_obs, source="dup.h5ad")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anndata's own "not unique" warning
        dup_var = anndata.AnnData(X=x, var=pd.DataFrame(index=["g", "g"]))
    with pytest.raises(DuplicateColumnsError, match=r"\['g'\] occur more than once"):
        from_anndata(dup_var)
    clash = anndata.AnnData(
        X=x, obs=pd.DataFrame({"g1": [1]}, index=["0"]), var=pd.DataFrame(index=["g1", "g2"])
    )
    with pytest.raises(DuplicateColumnsError, match="also obs columns"):
        from_anndata(clash)
    text = anndata.AnnData(X=np.array([["a", "b"]], dtype=object))
    with pytest.raises(InvalidInputError, match="X holds object values, not numbers"):
        from_anndata(text, source="text.h5ad")
    ok = anndata.AnnData(X=x)
    with pytest.raises(InvalidInputError, match="no layer 'counts'"):
        from_anndata(ok, layer="counts")
    with pytest.raises(InvalidInputError, match="not both"):
        from_anndata(ok, layer="a", obsm="b")


def test_bad_frames_and_files(tmp_path):
    with pytest.raises(EmptyInputError, match="no feature columns"):
        to_anndata(pl.DataFrame({"Metadata_Well": ["A01"]}))
    with pytest.raises(InvalidInputError, match="not numeric"):
        to_anndata(
            pl.DataFrame({"Metadata_Well": ["A01"], "f": [1.0], "s": ["x"]}), features=["f", "s"]
        )
    with pytest.raises(InvalidInputError, match="'Metadata_Tags' has type List"):
        to_anndata(pl.DataFrame({"Metadata_Tags": [["a"]], "f": [1.0]}))
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_h5ad(tmp_path / "missing.h5ad")
    bad = tmp_path / "bad.h5ad"
    bad.write_text("not hdf5")
    with pytest.raises(CorruptFileError, match=r"bad\.h5ad is not a readable \.h5ad file"):
        read_h5ad(bad)


def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_cli_export_and_import(tmp_path, capsys):
    db = tmp_path / "s.duckdb"
    df = _unusual().drop("note", "Metadata_Time")
    with Store(str(db)) as store:
        store.write("wells", df, step="test")
        stored = store.read("wells")
    h5 = tmp_path / "wells.h5ad"
    assert main(["export", "wells", "--h5ad", str(h5), "--store", str(db)]) == 0
    assert "wrote 4 rows of wells" in capsys.readouterr().out
    assert_frame_equal(read_h5ad(h5), stored)
    assert main(["import-anndata", str(h5), "--table", "wells_back", "--store", str(db)]) == 0
    with Store(str(db), read_only=True) as store:
        assert_frame_equal(store.read("wells_back"), stored)
        assert store.provenance("wells_back")["step"].to_list() == ["import-anndata"]
    capsys.readouterr()
    before = _md5(db)
    refusals = [
        (["export", "wells", "--h5ad", str(h5)], "exists; pass --overwrite"),
        (["export", "nope", "--h5ad", str(tmp_path / "n.h5ad")], "has no table 'nope'"),
        (["import-anndata", str(h5), "--table", "wells_back"], "already has a table"),
        (["import-anndata", str(h5), "--table", "platemap"], "table of the store's schema"),
        (["import-anndata", str(tmp_path / "x.h5ad"), "--table", "t"], "no such file"),
    ]
    for argv, message in refusals:
        assert main([*argv, "--store", str(db)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, (argv, err)
    assert _md5(db) == before
    assert (
        main(["import-anndata", str(h5), "--table", "wells_back", "--replace", "--store", str(db)])
        == 0
    )


def test_edited_after_writing(tmp_path):
    """A scanpy user subsets rows and variables, adds a layer, renames cells, then saves."""
    df = _unusual()
    adata = to_anndata(df)
    sub = adata[[0, 2], ["Cells_B"]].copy()  # rows 0 and 2, one variable
    sub.obs["Metadata_Cluster"] = ["k1", "k2"]
    sub.write_h5ad(tmp_path / "sub.h5ad")
    back = read_h5ad(tmp_path / "sub.h5ad")
    expected = df[[0, 2]].drop("Cells_A").with_columns(Metadata_Cluster=pl.Series(["k1", "k2"]))
    assert_frame_equal(back, expected.select([*[c for c in df.columns if c != "Cells_A"],
                                              "Metadata_Cluster"]))  # fmt: skip
    # A layer: the obs columns keep their dtypes, the features are the layer's.
    adata.layers["scaled"] = adata.X * 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is left out: X is what the layer replaces
        as_layer = from_anndata(adata, layer="scaled")
    assert as_layer.schema["Metadata_Date"] == pl.Date
    assert as_layer["Metadata_Site"].to_list() == [1, None, 3, 4]
    assert as_layer["Cells_B"].to_list()[:3] == pytest.approx([2e-38, 6.5, 14.0])
    # Cell names replace the row numbers: they become a column, and the float nulls
    # that can no longer be placed are named in a warning (they read as NaN).
    renamed = to_anndata(df)
    renamed.obs_names = ["w1", "w2", "w3", "w4"]
    with pytest.warns(AnnDataContentWarning, match=r"nulls of 2 float column\(s\)"):
        named = from_anndata(renamed)
    assert named["Metadata_obs_name"].to_list() == ["w1", "w2", "w3", "w4"]
    assert named.columns[1:] == df.columns
    assert named["Metadata_Site"].to_list() == [1, None, 3, 4]  # nullable ints keep nulls
