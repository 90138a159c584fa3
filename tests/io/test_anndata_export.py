"""``.h5ad`` written block by block equals the whole-frame AnnData, with bounded memory.

Reference: the frame as one ``AnnData`` (``to_anndata``) written by anndata's
own ``write_h5ad``, the path ``cellframe export`` took before; both files are
read back with ``anndata.read_h5ad`` and compared exactly (X, obs, var, uns).
"""

from __future__ import annotations

import datetime as dt
import tracemalloc
import warnings

import anndata
import numpy as np
import pandas as pd
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import cellframe.cli.anndata as cli_anndata
import cellframe.io.anndata as io_anndata
from cellframe.cli import main
from cellframe.errors import InvalidInputError, PrecisionLossWarning
from cellframe.io import read_h5ad, to_anndata, write_h5ad, write_h5ad_batches
from cellframe.store import Store


def unusual(n: int = 11) -> pl.DataFrame:
    """Valid but unusual rows: nulls, NaN beside null, dates, categoricals, float64 and int features."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=n).astype(np.float32)
    a[1], a[4] = np.nan, np.inf
    return pl.DataFrame(
        {
            "Metadata_Plate": [None if i == 3 else f"P{i % 2}" for i in range(n)],
            "Metadata_Site": pl.Series([None if i == 5 else i for i in range(n)], dtype=pl.Int32),
            "Metadata_Flag": [None if i == 2 else i % 3 == 0 for i in range(n)],
            "Metadata_Dose": [None if i == 7 else (float("nan") if i == 8 else i / 4) for i in range(n)],
            "Metadata_Date": [dt.date(2024, 1, 1 + i % 28) for i in range(n)],
            "Metadata_Kind": pl.Series(["a", "b", "c"] * (n // 3) + ["a"] * (n % 3), dtype=pl.Categorical),
            "Cells_A": pl.Series(a, dtype=pl.Float32),
            "Cells_B": pl.Series([None if i in (0, 9) else i * 0.1 for i in range(n)]),  # float64
            "Cells_C": pl.Series([i * 3 for i in range(n)], dtype=pl.Int64),
        }
    )  # fmt: skip


def reference(frame: pl.DataFrame, path) -> anndata.AnnData:
    """The whole frame as one AnnData, written by anndata as ``export`` did before."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrecisionLossWarning)
        to_anndata(frame).write_h5ad(path, compression="gzip")
    return anndata.read_h5ad(path)


def assert_same_h5ad(path, expected_path) -> None:
    got, want = anndata.read_h5ad(path), anndata.read_h5ad(expected_path)
    assert got.X.dtype == want.X.dtype == np.float32
    np.testing.assert_array_equal(got.X, want.X)  # NaN in the same places
    pd.testing.assert_frame_equal(got.obs, want.obs, check_exact=True)
    pd.testing.assert_frame_equal(got.var, want.var, check_exact=True)
    assert list(got.uns["cellframe"]) == list(want.uns["cellframe"])
    for key, value in want.uns["cellframe"].items():
        np.testing.assert_array_equal(got.uns["cellframe"][key], value, err_msg=key)
    for key in ("layers", "obsm", "obsp", "varm", "varp"):
        assert len(getattr(got, key)) == len(getattr(want, key)) == 0


@pytest.mark.parametrize("block_rows", [1, 3, 4, 11])
def test_blocks_write_the_same_file_as_the_whole_frame(tmp_path, monkeypatch, block_rows):
    df = unusual()
    monkeypatch.setattr(io_anndata, "_CHUNK_BYTES", 8)  # 2-row chunks: blocks cross chunks
    blocks = [df.slice(i, block_rows) for i in range(0, df.height, block_rows)]
    with pytest.warns(PrecisionLossWarning) as record:
        write_h5ad_batches(blocks, tmp_path / "b.h5ad", schema=df.schema)
    with pytest.warns(PrecisionLossWarning) as whole:
        to_anndata(df)
    # one warning, counting the values of all blocks as the whole frame does
    assert [str(w.message) for w in record] == [str(w.message) for w in whole]
    # Cells_B: 0.1 .. 0.8 and 1.0 (two nulls); all but 0.5 and 1.0 round; Cells_C's ints fit
    assert str(record[0].message).startswith("7 of 22 values of 2 feature column(s)")
    reference(df, tmp_path / "ref.h5ad")
    assert_same_h5ad(tmp_path / "b.h5ad", tmp_path / "ref.h5ad")
    assert_frame_equal(read_h5ad(tmp_path / "b.h5ad"), df)  # cellframe's exact round trip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.h5ad", "ref.h5ad"]


def test_write_h5ad_in_blocks_equals_anndata(tmp_path, monkeypatch):
    df = unusual(50).drop("Cells_B")  # float32 and int features: no rounding
    monkeypatch.setattr(io_anndata, "_BATCH_BYTES", 4 * df.width * 7)  # blocks of 7 rows
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing rounded, nothing to warn about
        write_h5ad(df, tmp_path / "w.h5ad")
    reference(df, tmp_path / "ref.h5ad")
    assert_same_h5ad(tmp_path / "w.h5ad", tmp_path / "ref.h5ad")
    # no rows: the schema alone
    write_h5ad(df.clear(), tmp_path / "empty.h5ad")
    reference(df.clear(), tmp_path / "ref0.h5ad")
    assert_same_h5ad(tmp_path / "empty.h5ad", tmp_path / "ref0.h5ad")
    assert_frame_equal(read_h5ad(tmp_path / "empty.h5ad"), df.clear())


def test_refusals_leave_no_file(tmp_path):
    df = unusual()
    dest = tmp_path / "x.h5ad"
    with pytest.raises(InvalidInputError, match="block 1 of the rows has columns"):
        write_h5ad_batches([df.slice(0, 5), df.slice(5).drop("Cells_C")], dest, schema=df.schema)
    # a metadata type obs cannot hold is refused from the schema, before a row is read
    tags = pl.DataFrame({"Metadata_Tags": [["a"]], "f": [1.0]})

    def never():
        raise AssertionError("rows were read")
        yield

    with pytest.raises(InvalidInputError, match="'Metadata_Tags' has type List"):
        write_h5ad_batches(never(), dest, schema=tags.schema)
    assert list(tmp_path.iterdir()) == []


def test_memory_holds_a_block_not_the_matrix(tmp_path):
    # 20,000 x 200 float32 = 16 MB of X in blocks of 1,000 rows (0.8 MB): the traced
    # peak (NumPy, Polars' copies to NumPy, obs) stays under half of one copy of X
    n, d, rows = 20_000, 200, 1_000
    names = [f"f{j}" for j in range(d)]
    schema = pl.Schema({"Metadata_Row": pl.Int64, **dict.fromkeys(names, pl.Float32)})
    base = np.arange(d, dtype=np.float32)
    blocks = []
    for start in range(0, n, rows):
        x = (np.arange(start, start + rows, dtype=np.float32)[:, None] % 97) + base
        blocks.append(
            pl.DataFrame({"Metadata_Row": np.arange(start, start + rows)}).hstack(
                pl.DataFrame(x, schema=names)
            )
        )
    tracemalloc.start()
    try:
        write_h5ad_batches(iter(blocks), tmp_path / "big.h5ad", schema=schema)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 * 2**20 < n * d * 4 // 2  # measured: 2.4 MB
    back = anndata.read_h5ad(tmp_path / "big.h5ad")
    assert back.shape == (n, d)
    np.testing.assert_array_equal(back.X[12_345], (12_345 % 97) + base)
    np.testing.assert_array_equal(back.obs["Metadata_Row"].to_numpy(), np.arange(n))


@pytest.mark.parametrize("layout", ["native", "parquet"])
def test_cli_export_streams_the_table_and_equals_the_whole_read(tmp_path, monkeypatch, layout):
    db = tmp_path / "s.duckdb"
    n = 5000  # over two export blocks of 2,048 rows
    rng = np.random.default_rng(1)
    df = pl.DataFrame(
        {
            "Metadata_Plate": np.where(np.arange(n) < 2600, "P1", "P2"),
            "Metadata_Well": [f"W{i:05d}" for i in range(n)],
            "Cells_A": rng.normal(size=n).astype(np.float32),
            "Cells_B": pl.Series(rng.normal(size=n), dtype=pl.Float32),
        }
    ).with_columns(
        pl.when(pl.col("Cells_A") > 2).then(None).otherwise(pl.col("Cells_B")).alias("Cells_B")
    )
    with Store(str(db)) as store:
        if layout == "native":
            store.write("wells", df, step="test")
        else:
            for plate, part in df.group_by("Metadata_Plate", maintain_order=True):
                store.write_partition("wells", plate[0], part, step="test")
        stored = store.read("wells")
    monkeypatch.setattr(cli_anndata, "_EXPORT_BLOCK_BYTES", 1)  # 2,048-row blocks
    seen = []
    original = io_anndata._x_block

    def spy(block, feats):
        seen.append(block.height)
        return original(block, feats)

    monkeypatch.setattr(io_anndata, "_x_block", spy)
    h5 = tmp_path / "wells.h5ad"
    assert main(["export", "wells", "--h5ad", str(h5), "--store", str(db), "--quiet"]) == 0
    assert sum(seen) == n and max(seen) <= 2048 and len(seen) >= 3
    reference(stored, tmp_path / "ref.h5ad")
    assert_same_h5ad(h5, tmp_path / "ref.h5ad")
    assert_frame_equal(read_h5ad(h5), stored)
    assert stored["Cells_B"].null_count() > 0  # the nulls travelled through the record


def test_cli_export_refuses_a_column_obs_cannot_hold(tmp_path, capsys):
    db = tmp_path / "s.duckdb"
    with Store(str(db)) as store:
        store.write("t", pl.DataFrame({"Metadata_Tags": [["a"], ["b"]], "f": [1.0, 2.0]}), step="x")
    before = db.read_bytes()
    h5 = tmp_path / "t.h5ad"
    assert main(["export", "t", "--h5ad", str(h5), "--store", str(db)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'Metadata_Tags' has type List(String)" in err
    assert "cast it to a string or number, or drop it" in err
    assert not h5.exists() and not list(tmp_path.glob(".*partial"))
    assert db.read_bytes() == before
