"""Tests of cellframe.store.Store: writes are atomic, plates are replaced, SQL is shipped."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal

from cellframe.columns import PLATE, WELL
from cellframe.errors import (
    InvalidInputError,
    MissingColumnsError,
    SchemaMismatchError,
    StoreLockedError,
    TableNotFoundError,
)
from cellframe.store import Store, load_sql, quote_identifier


def wells(plate: str, n: int = 3, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            PLATE: [plate] * n,
            WELL: [f"A{i + 1:02d}" for i in range(n)],
            "f1": rng.normal(size=n).astype(np.float32),
            "f2": rng.normal(size=n).astype(np.float32),
        }
    )


def sort(df: pl.DataFrame) -> pl.DataFrame:
    return df.sort(PLATE, WELL)


def test_write_and_read_round_trip(store: Store) -> None:
    df = pl.concat([wells("P1"), wells("P2", seed=1)])
    assert store.write("wells", df, step="test") == 6
    assert_frame_equal(sort(store.read("wells")), sort(df))
    assert store.plates("wells") == ["P1", "P2"]
    assert store.columns("wells") == [PLATE, WELL, "f1", "f2"]
    assert store.schema("wells")["f1"] == pl.Float32


def test_replace_plate_replaces_and_never_duplicates(store: Store) -> None:
    store.write("wells", pl.concat([wells("P1"), wells("P2", seed=1)]))
    new_p1 = wells("P1", n=2, seed=7)
    store.write("wells", new_p1, replace_plate=True)
    store.write("wells", new_p1, replace_plate=True)  # idempotent
    got = store.read("wells")
    assert got.filter(pl.col(PLATE) == "P1").height == 2
    assert_frame_equal(sort(got.filter(pl.col(PLATE) == "P1")), sort(new_p1))
    assert_frame_equal(sort(got.filter(pl.col(PLATE) == "P2")), sort(wells("P2", seed=1)))


def test_replace_plate_over_several_batches_keeps_every_batch(store: Store) -> None:
    store.write("wells", wells("P1", n=5))
    batches = [wells("P1", n=2, seed=1), wells("P1", n=3, seed=2)]
    assert store.write("wells", iter(batches), replace_plate=True) == 5
    assert_frame_equal(sort(store.read("wells")), sort(pl.concat(batches)))


def test_accepts_arrow_lazy_and_record_batch_reader(store: Store) -> None:
    df = wells("P1", n=4)
    store.write("a", df.to_arrow())
    store.write("b", df.lazy())
    table = df.to_arrow()
    store.write(
        "c", pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=1))
    )
    store.write("d", iter(table.to_batches(max_chunksize=3)))
    for name in "abcd":
        assert_frame_equal(sort(store.read(name)), sort(df))


def test_failed_write_leaves_previous_state(store: Store) -> None:
    before = wells("P1")
    store.write("wells", before)

    def batches():
        yield wells("P1", seed=3)
        raise RuntimeError("reader broke half-way")

    with pytest.raises(RuntimeError, match="half-way"):
        store.write("wells", batches(), replace_plate=True)
    assert_frame_equal(sort(store.read("wells")), sort(before))
    assert store.provenance("wells").height == 1


def test_schema_mismatch_is_refused_and_names_columns(store: Store) -> None:
    store.write("wells", wells("P1"))
    with pytest.raises(SchemaMismatchError, match="f3"):
        store.write("wells", wells("P2").with_columns(pl.lit(1.0).alias("f3")))
    with pytest.raises(SchemaMismatchError, match="f2"):
        store.write("wells", wells("P2").drop("f2"))
    assert store.read("wells").height == 3


def test_new_columns_add(store: Store) -> None:
    store.write("platemap_x", wells("P1"))
    store.write(
        "platemap_x", wells("P2").with_columns(pl.lit("x").alias("Metadata_New")), new_columns="add"
    )
    got = store.read("platemap_x")
    assert got["Metadata_New"].null_count() == 3
    assert got.filter(pl.col(PLATE) == "P2")["Metadata_New"].to_list() == ["x"] * 3


def test_replace_plate_needs_plate_column(store: Store) -> None:
    with pytest.raises(MissingColumnsError, match=PLATE):
        store.write("t", pl.DataFrame({"x": [1]}), replace_plate=True)
    assert not store.has_table("t")


def test_mode_replace(store: Store) -> None:
    store.write("wells", wells("P1"))
    store.write("wells", pl.DataFrame({"x": [1, 2]}), mode="replace")
    assert store.columns("wells") == ["x"]


def test_provenance_records_step_parameters_version(store: Store) -> None:
    import cellframe

    store.write(
        "wells", wells("P1"), step="aggregate", parameters={"method": "median"}, source="x.csv"
    )
    prov = store.provenance("wells").row(0, named=True)
    assert prov["step"] == "aggregate"
    assert json.loads(prov["parameters"]) == {"method": "median"}
    assert prov["cellframe_version"] == cellframe.__version__
    assert prov["n_rows"] == 3
    assert prov["source"] == "x.csv"
    tables = store.tables()
    row = tables.filter(pl.col("table") == "wells").row(0, named=True)
    assert (row["rows"], row["columns"], row["step"]) == (3, 4, "aggregate")
    # The fixed tables of sql/schema.sql exist from the start.
    assert {"platemap", "images", "objects"} <= set(tables["table"])


def test_sql_with_parameters_and_shipped_macros(store: Store) -> None:
    store.write("wells", wells("P1"))
    out = store.sql(f"SELECT count(*) AS n FROM wells WHERE {quote_identifier(WELL)} = ?", ["A02"])
    assert out["n"][0] == 1
    out = store.sql("SELECT cf_well('b3') AS w, cf_cosine([1.0, 0.0], [1.0, 1.0]) AS c")
    assert out["w"][0] == "B03"
    assert out["c"][0] == pytest.approx(1 / np.sqrt(2))
    assert "CREATE TABLE IF NOT EXISTS cellframe_provenance" in load_sql("schema")
    with pytest.raises(FileNotFoundError, match=r"schema\.sql"):
        load_sql("no_such_file")


def test_scan_pushes_filter_and_projection(store: Store) -> None:
    store.write("wells", pl.concat([wells("P1"), wells("P2", seed=1)]))
    got = store.scan("wells").filter(pl.col(PLATE) == "P2").select("f1").collect()
    assert got["f1"].to_list() == wells("P2", seed=1)["f1"].to_list()
    assert [p for p, _ in store.iter_plates("wells")] == ["P1", "P2"]


def test_unknown_table_and_bad_names(store: Store) -> None:
    with pytest.raises(TableNotFoundError, match="no table 'nope'"):
        store.scan("nope")
    with pytest.raises(InvalidInputError, match="invalid table name"):
        store.write("bad name; drop", wells("P1"))
    with pytest.raises(InvalidInputError, match="reserved"):
        store.write("cellframe_provenance", wells("P1"))
    with pytest.raises(InvalidInputError, match="cannot write a dict"):
        store.write("t", {"a": [1]})  # type: ignore[arg-type]


def test_file_store_persists_and_reopens_read_only(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "s.duckdb"
    with Store(path) as s:
        s.write("wells", wells("P1"))
    with Store(path, read_only=True) as s:
        assert s.read("wells").height == 3
        with pytest.raises(InvalidInputError, match="read-only"):
            s.write("wells", wells("P2"))


def test_not_a_database(tmp_path: Path) -> None:
    bad = tmp_path / "bad.duckdb"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(InvalidInputError, match=r"bad\.duckdb"):
        Store(bad)
    assert bad.read_bytes() == b"this is not a database" * 100


def test_locked_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "locked.duckdb"
    with Store(path) as s:
        s.write("wells", wells("P1"))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from cellframe.store import Store
                s = Store({str(path)!r})
                print("ready", flush=True)
                sys.stdin.readline()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLockedError, match="locked by another process"):
            Store(path)
    finally:
        holder.communicate("\n", timeout=30)
    with Store(path) as s:  # usable again once the other process is gone
        assert s.read("wells").height == 3


def test_plate_names_with_glob_and_path_characters(store: Store) -> None:
    from cellframe.partitions import decode_plate, encode_plate

    names = ["P[1]", "P*2", "P?3", "a/b", "100%", "x=y", "{A,B}", "plain_01"]
    for i, plate in enumerate(names):
        store.write_partition("cells", plate, wells(plate, n=2, seed=i).drop(PLATE))
    folders = sorted(p.name for p in (store.parts_dir / "cells").iterdir())
    assert "Metadata_Plate=P%5B1%5D" in folders and "Metadata_Plate=plain_01" in folders
    assert all(decode_plate(encode_plate(x)) == x for x in names)
    # DuckDB's view, Polars' scan and the plate list all read the names back.
    assert store.plates("cells") == sorted(names)
    counts = store.sql(
        f"SELECT {quote_identifier(PLATE)} AS p, count(*) AS n FROM cells GROUP BY 1"
    )
    assert dict(counts.iter_rows()) == dict.fromkeys(names, 2)
    assert sorted(set(store.scan("cells").collect()[PLATE])) == sorted(names)
    # Each plate reads only its own rows; re-writing one replaces only it.
    store.write_partition("cells", "P*2", wells("P*2", n=5).drop(PLATE))
    assert store.read("cells").filter(pl.col(PLATE) == "P*2").height == 5
    assert store.read("cells").filter(pl.col(PLATE) == "P?3").height == 2
    with pytest.raises(InvalidInputError, match="cannot name a partition folder"):
        store.write_partition("cells", "..", wells("x", n=1).drop(PLATE))


def test_store_path_with_a_question_mark_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="holds '\\?'"):
        Store(tmp_path / "what?" / "s.duckdb")
    assert not (tmp_path / "what?").exists()


def test_parquet_partitions_view(store: Store) -> None:
    p1, p2 = wells("0001", n=4), wells("P2", n=2, seed=1)
    store.write_partition("cells", "0001", p1, step="ingest")
    store.write_partition("cells", "P2", p2)
    files = sorted(
        p.relative_to(store.parts_dir).as_posix() for p in store.parts_dir.rglob("*.parquet")
    )
    assert files == [
        "cells/Metadata_Plate=0001/part.parquet",
        "cells/Metadata_Plate=P2/part.parquet",
    ]
    # SQL and scan agree, and the plate keeps its leading zeros as a string.
    assert (
        store.sql(f"SELECT count(*) AS n FROM cells WHERE {quote_identifier(PLATE)} = '0001'")["n"][
            0
        ]
        == 4
    )
    got = store.scan("cells").collect()
    expected = pl.concat([p1, p2]).select(got.columns)
    assert_frame_equal(sort(got), sort(expected))
    # The schema comes from one file's footer, equal to a scan of the whole view's.
    assert store.schema("cells") == store.scan("cells").collect_schema() == got.schema
    # Re-writing a plate replaces it.
    store.write_partition("cells", "0001", wells("0001", n=1, seed=5))
    assert store.read("cells").filter(pl.col(PLATE) == "0001").height == 1
    assert store.tables().filter(pl.col("table") == "cells")["kind"][0] == "parquet"
    # A plate with other columns is refused and leaves no partial folder.
    with pytest.raises(SchemaMismatchError, match="extra"):
        store.write_partition("cells", "P3", wells("P3").with_columns(pl.lit(1.0).alias("f9")))
    assert not any(p.name.startswith(".tmp") for p in (store.parts_dir / "cells").iterdir())
    assert store.plates("cells") == ["0001", "P2"]
    store.drop("cells")
    assert not (store.parts_dir / "cells").exists()


def test_import_is_cheap() -> None:
    code = (
        "import sys, cellframe, polars as pl\n"
        "cellframe.Store\n"
        "heavy = [m for m in ('torch', 'altair', 'rdkit', 'timm', 'ray', 'sklearn') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_replace_keys_replaces_only_those_sites(store: Store) -> None:
    def site(plate: str, well: str, s: int, n: int, value: float) -> pl.DataFrame:
        return pl.DataFrame(
            {PLATE: [plate] * n, WELL: [well] * n, "Metadata_Site": [s] * n, "v": [value] * n}
        )

    keys = [PLATE, WELL, "Metadata_Site"]
    store.write("objs", pl.concat([site("P1", "A01", 1, 3, 0.0), site("P1", "A01", 2, 2, 0.0)]))
    # Redo site 1 in two batches: both batches are kept, site 2 is untouched.
    batches = [site("P1", "A01", 1, 1, 1.0), site("P1", "A01", 1, 4, 2.0)]
    assert store.write("objs", iter(batches), replace_keys=keys) == 5
    got = (
        store.read("objs")
        .group_by("Metadata_Site")
        .agg(pl.len(), pl.col("v").sum())
        .sort("Metadata_Site")
    )
    assert got.rows() == [(1, 5, 9.0), (2, 2, 0.0)]
    with pytest.raises(MissingColumnsError, match="Metadata_Site"):
        store.write("objs", site("P1", "A01", 1, 1, 1.0).drop("Metadata_Site"), replace_keys=keys)
    assert store.read("objs").height == 7


def test_case_insensitive_duplicate_columns_are_named(store: Store) -> None:
    df = pl.DataFrame({PLATE: ["P1"], "Metadata_Control": ["negcon"], "Metadata_control": ["x"]})
    with pytest.raises(SchemaMismatchError, match="case-insensitively"):
        store.write("t", df)
    assert not store.has_table("t")


# ------------------------------------------------------------ keyed writes
def sites(plate: str, well: str, site: int, value: float, n: int = 2) -> pl.DataFrame:
    return pl.DataFrame(
        {
            PLATE: [plate] * n,
            WELL: [well] * n,
            "Metadata_Site": pl.Series([site] * n, dtype=pl.Int32),
            "Metadata_ObjectNumber": list(range(1, n + 1)),
            "f": [value + i for i in range(n)],
        }
    )


IMAGE = [PLATE, WELL, "Metadata_Site"]


@pytest.mark.parametrize("layout", ["table", "parquet"])
def test_keyed_writes_replace_or_refuse_exactly_the_images_given(store: Store, layout: str) -> None:
    from cellframe.errors import KeyConflictError

    def write(frame: pl.DataFrame, conflict: str = "replace") -> None:
        if layout == "table":
            store.write("cells", frame, replace_keys=IMAGE, conflict=conflict)  # type: ignore[arg-type]
        else:
            store.write_partition(
                "cells",
                frame[PLATE][0],
                frame,
                replace_keys=IMAGE,
                conflict=conflict,  # type: ignore[arg-type]
            )

    write(sites("P1", "A01", 1, 1.0))
    write(sites("P1", "A01", 2, 10.0, n=3))
    write(sites("P2", "A01", 1, 100.0))
    assert (store.last_write.keys_added, store.last_write.keys_replaced) == (1, 0)
    write(sites("P1", "A01", 2, 20.0))  # site 2 again: 3 rows become these 2
    assert store.last_write.keys_replaced == 1 and store.last_write.rows_removed == 3
    expected = pl.concat(
        [sites("P1", "A01", 1, 1.0), sites("P1", "A01", 2, 20.0), sites("P2", "A01", 1, 100.0)]
    )
    keys = [*IMAGE, "Metadata_ObjectNumber"]
    assert_frame_equal(store.read("cells").sort(keys), expected.sort(keys))
    # Appending a stored image is refused and changes nothing; a new one is accepted.
    with pytest.raises(KeyConflictError, match="Metadata_Site=1"):
        write(sites("P1", "A01", 1, 5.0), conflict="error")
    write(sites("P1", "B01", 1, 7.0), conflict="error")
    assert store.read("cells").height == expected.height + 2
    assert store.sql("SELECT sum(f) AS s FROM cells WHERE Metadata_Site = 1")["s"][
        0
    ] == pytest.approx(1.0 + 2.0 + 100.0 + 101.0 + 7.0 + 8.0)


def test_a_key_brought_by_two_batches_of_one_write_is_kept_whole(store: Store) -> None:
    # One image split over batches (a reader's batch boundary) is one image, not a conflict.
    frame = sites("P1", "A01", 1, 1.0, n=4)
    store.write("cells", iter([frame[:2], frame[2:]]), replace_keys=IMAGE, conflict="error")
    assert store.read("cells").height == 4
    store.write_partition("parts", "P1", iter([frame[:2], frame[2:]]), replace_keys=IMAGE)
    assert store.read("parts").height == 4


# ------------------------------------------------------------ relocation
def _two_tables(path: Path) -> None:
    with Store(path) as s:
        s.write_partition("cells", "P1", sites("P1", "A01", 1, 1.0))
        s.write_partition("cells", "P[2]", sites("P[2]", "B02", 3, 5.0, n=3))
        s.write("wells", wells("P1"))


def _answers(path: Path, read_only: bool) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    with Store(path, read_only=read_only) as s:
        by_sql = s.sql(
            "SELECT Metadata_Plate, count(*) AS n, sum(f) AS f FROM cells GROUP BY 1 ORDER BY 1"
        )
        by_scan = s.scan("cells").sort(PLATE, "Metadata_ObjectNumber").collect()
        joined = s.sql(
            "SELECT w.Metadata_Plate, count(*) AS n FROM cells c JOIN wells w USING (Metadata_Plate) "
            "GROUP BY 1 ORDER BY 1"
        )
    return by_sql, by_scan, joined


@pytest.mark.parametrize("how", ["copy", "move", "copy-then-delete"])
@pytest.mark.parametrize("read_only", [True, False])
def test_a_store_folder_can_be_copied_or_moved(tmp_path: Path, how: str, read_only: bool) -> None:
    import shutil

    original = tmp_path / "screen [2024]" / "s.duckdb"
    _two_tables(original)
    expected = _answers(original, read_only=True)
    assert expected[0].rows() == [("P1", 2, 3.0), ("P[2]", 3, 18.0)]
    new = tmp_path / "elsewhere" / "s.duckdb"
    if how == "move":
        shutil.move(original.parent, new.parent)
    else:
        shutil.copytree(original.parent, new.parent)
    if how == "copy":
        # Make the original differ: a copy must not answer from the original's files.
        with Store(original) as s:
            s.write_partition("cells", "P1", sites("P1", "A01", 1, 50.0))
    if how == "copy-then-delete":
        shutil.rmtree(original.parent)
    for _ in range(2):  # a writable open rewrites the views once; the second finds them right
        got = _answers(new, read_only=read_only)
        for a, b in zip(got, expected, strict=True):
            assert_frame_equal(a, b)
    with Store(new, read_only=True) as s:
        view = s.sql("SELECT sql FROM duckdb_views() WHERE view_name = 'cells' AND NOT temporary")
        assert (str(new.parent) in view["sql"][0]) == (not read_only)


@pytest.mark.parametrize("original_kept", [False, True])
def test_a_database_file_copied_without_its_partitions_names_the_folder(
    tmp_path: Path, original_kept: bool
) -> None:
    import shutil

    original = tmp_path / "a" / "s.duckdb"
    _two_tables(original)
    alone = tmp_path / "b" / "s.duckdb"
    alone.parent.mkdir()
    shutil.copy(original, alone)
    if not original_kept:
        shutil.rmtree(original.parent)
    # With the original kept, the copy must not answer from the original's files either.
    with Store(alone, read_only=True) as s:
        assert s.sql("SELECT count(*) AS n FROM wells")["n"][0] == 3  # native tables still answer
        with pytest.raises(InvalidInputError, match=r"b/s\.parts/cells, which is missing"):
            s.sql("SELECT count(*) FROM cells")
        with pytest.raises(InvalidInputError, match=r"s\.parts.*which is missing"):
            s.scan("cells")
        listed = s.tables().filter(pl.col("table") == "cells")
        assert listed["kind"][0] == "parquet (files missing)" and listed["rows"][0] is None
    # Writing a plate into the copy starts its own partitions; the table is then readable.
    with Store(alone) as s:
        s.write_partition("cells", "P9", sites("P9", "C01", 1, 0.5))
        assert s.sql("SELECT Metadata_Plate, count(*) AS n FROM cells GROUP BY 1").rows() == [
            ("P9", 2)
        ]


def _folder_bytes(folder: Path) -> dict[str, str]:
    import hashlib

    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_a_partition_rewrite_killed_or_refused_leaves_the_old_partition(tmp_path: Path) -> None:
    from cellframe.partitions import partition_dir, remove_stale_temporaries

    db = tmp_path / "s.duckdb"
    with Store(db) as s:
        s.write_partition("cells", "P1", sites("P1", "A01", 1, 1.0), replace_keys=IMAGE)
        s.write_partition("cells", "P1", sites("P1", "A01", 2, 3.0), replace_keys=IMAGE)
        root = s.parts_dir / "cells"
    folder = partition_dir(root, "P1")
    before = _folder_bytes(folder)
    # New rows whose columns differ from the plate's stored rows: refused, nothing changes.
    with Store(db) as s:
        with pytest.raises(SchemaMismatchError, match=r"stored only \['f'\], new only \['g'\]"):
            s.write_partition(
                "cells", "P1", sites("P1", "A01", 3, 9.0).rename({"f": "g"}), replace_keys=IMAGE
            )
    assert _folder_bytes(folder) == before
    # A writer killed while streaming a site's rows into the plate.
    script = textwrap.dedent(
        f"""
        import os, signal
        import polars as pl
        from cellframe.store import Store
        rows = pl.DataFrame({{"Metadata_Plate": ["P1"] * 2, "Metadata_Well": ["A01"] * 2,
                              "Metadata_Site": pl.Series([1, 1], dtype=pl.Int32),
                              "Metadata_ObjectNumber": [1, 2], "f": [7.0, 8.0]}})
        def dies():
            yield rows
            os.kill(os.getpid(), signal.SIGKILL)
        Store({str(db)!r}).write_partition("cells", "P1", dies(),
            replace_keys=["Metadata_Plate", "Metadata_Well", "Metadata_Site"])
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert done.returncode == -9
    assert _folder_bytes(folder) == before
    assert remove_stale_temporaries(root) == 1  # the killed writer's temporary folder
    with Store(db, read_only=True) as s:
        assert sorted(s.read("cells")["f"].to_list()) == [1.0, 2.0, 3.0, 4.0]


def test_large_stored_files_without_replaced_images_are_linked_not_copied(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cellframe.partitions as partitions

    monkeypatch.setattr(partitions, "LINK_MIN_BYTES", 0)  # every file counts as large
    for site, value in [(1, 1.0), (2, 10.0), (3, 100.0)]:
        store.write_partition("cells", "P1", sites("P1", "A01", site, value), replace_keys=IMAGE)
    folder = partitions.partition_dir(store.parts_dir / "cells", "P1")
    files = partitions.partition_files(store.parts_dir / "cells", "P1")
    assert len(files) == 3  # one file per write: the earlier ones were linked

    def site_of(path: Path) -> int:
        return pl.read_parquet(path, glob=False)["Metadata_Site"][0]

    inode = {site_of(f): f.stat().st_ino for f in files}
    store.write_partition("cells", "P1", sites("P1", "A01", 2, 20.0), replace_keys=IMAGE)
    after = {site_of(f): f.stat().st_ino for f in partitions.partition_files(folder.parent, "P1")}
    assert after[1] == inode[1] and after[3] == inode[3]  # untouched files: the same files
    assert after[2] != inode[2]  # the file holding the replaced site was rewritten
    assert store.last_write.rows_removed == 2
    got = store.read("cells").sort("Metadata_Site", "Metadata_ObjectNumber")["f"].to_list()
    assert got == [1.0, 2.0, 20.0, 21.0, 100.0, 101.0]
    marker = json.loads((folder / partitions.MARKER).read_text())
    assert marker["rows"] == 6


def _objects(n: int = 4, **nulls: list[int]) -> pl.DataFrame:
    """Rows for the schema's ``objects`` table; ``nulls`` puts None at those row indices."""
    cols: dict[str, list] = {
        PLATE: ["P1"] * n,
        WELL: ["A01"] * n,
        "Metadata_Site": [1] * n,
        "Metadata_ObjectNumber": list(range(1, n + 1)),
        "Object": ["Nuclei"] * n,
        "Location_Center_X": [10.0 + i for i in range(n)],
        "Location_Center_Y": [20.0 + i for i in range(n)],
    }
    for col, rows in nulls.items():
        cols[col] = [None if i in rows else v for i, v in enumerate(cols[col])]
    frame = pl.DataFrame(cols, schema_overrides={"Metadata_Site": pl.Int32})
    return frame.with_columns(
        pl.lit(None, dtype=pl.Float64).alias("AreaShape_Area"),
        *[
            pl.lit(None, dtype=pl.Int32).alias(f"BoundingBox_{c}")
            for c in ("MinX", "MinY", "MaxX", "MaxY")
        ],
    )


def test_null_keys_are_refused_before_duckdb_sees_them(tmp_path: Path) -> None:
    from cellframe.errors import NullKeyError

    path = tmp_path / "s.duckdb"
    with Store(path) as s:
        s.write("objects", _objects(2), step="seed")
    before = path.read_bytes()
    with Store(path) as s:
        # Two null sites and one null X among 5 rows; the second batch of an iterator.
        bad = _objects(5, Metadata_Site=[1, 3], Location_Center_X=[4])
        with pytest.raises(NullKeyError) as info:
            s.write("objects", iter([_objects(1), bad]), source="cells.csv", step="t")
        msg = str(info.value)
        assert "cells.csv: table 'objects'" in msg
        assert "'Metadata_Site' (2 of 5 rows, first at row 3 of the input)" in msg
        assert "'Location_Center_X' (1 of 5 rows, first at row 6 of the input)" in msg
        assert "NOT NULL" in msg and "nothing was written" in msg
        # A NOT NULL column the rows lack altogether (new_columns="add" lets rows lack columns).
        with pytest.raises(NullKeyError, match=r"'Object' \(absent: 3 of 3 rows\)"):
            s.write("objects", _objects(3).drop("Object"), new_columns="add")
        assert s.read("objects").height == 2
    assert path.read_bytes() == before
    # Controls: nulls in the nullable columns of objects, and in any column of a
    # table without NOT NULL constraints, are stored as they are.
    with Store(path) as s:
        ok = _objects(3).with_columns(pl.Series("AreaShape_Area", [None, 5.0, None]))
        assert s.write("objects", ok) == 3
        assert s.read("objects")["AreaShape_Area"].null_count() == 4
        free = wells("P1").with_columns(pl.lit(None, dtype=pl.String).alias(WELL))
        assert s.write("free", free) == 3 and s.read("free")[WELL].null_count() == 3
