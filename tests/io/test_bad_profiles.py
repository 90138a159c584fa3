"""Well-profile files as real projects write them, and with one defect each.

The LINCS SQ00015054 file holds both ``Metadata_Plate_Map_Name`` (from the barcode
platemap) and ``Metadata_plate_map_name`` (from the map file), equal in every row.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cellframe.errors import CaseDuplicateColumnsError, FeatureMismatchError, InvalidInputError
from cellframe.io import IngestOptions, IngestWarning, ProfilesFile, ingest
from cellframe.store import Store


@pytest.fixture(scope="module")
def lincs(shared_data: Path) -> Path:
    return shared_data / "profiles-lincs-SQ00015054" / "SQ00015054_normalized_feature_select.csv.gz"


@pytest.fixture(scope="module")
def lincs_frame(lincs: Path) -> pl.DataFrame:
    return pl.read_csv(lincs, infer_schema=False)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _store_with_one_table(tmp_path: Path) -> Path:
    path = tmp_path / "s.duckdb"
    with Store(path) as s:
        s.write("other", pl.DataFrame({"Metadata_Plate": ["X"], "f": [1.0]}), step="test")
    return path


def _features(frame: pl.DataFrame) -> list[str]:
    return [c for c in frame.columns if not c.startswith("Metadata_")]


def test_lincs_profiles_ingest_with_the_case_twins_merged(
    lincs: Path, lincs_frame: pl.DataFrame, tmp_path: Path
) -> None:
    path = tmp_path / "s.duckdb"
    with pytest.warns(IngestWarning) as record:
        report = ingest(lincs, path, table="wells", progress=False)
    merged = [str(w.message) for w in record if "differ only in case" in str(w.message)]
    assert len(merged) == 1
    assert "'Metadata_plate_map_name' and 'Metadata_Plate_Map_Name'" in merged[0]
    assert str(lincs) in merged[0] and "merged into 'Metadata_plate_map_name'" in merged[0]
    assert report.rows == 384 and report.n_features == 454
    with Store(path, read_only=True) as s:
        got = s.read("wells").sort("Metadata_Well")
    ref = lincs_frame.sort("Metadata_Well")
    assert got["Metadata_plate_map_name"].to_list() == ref["Metadata_Plate_Map_Name"].to_list()
    assert sum(c.lower() == "metadata_plate_map_name" for c in got.columns) == 1
    feats = _features(ref)
    assert _features(got) == feats
    assert_frame_equal(
        got.select(feats), ref.select(pl.col(feats).cast(pl.Float32)), check_exact=True
    )


def _twins_differ(lincs_frame: pl.DataFrame, tmp_path: Path) -> Path:
    """The LINCS file with one well's lower-case map name changed (line 11)."""
    bad = lincs_frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 9)
        .then(pl.lit("C-7161-01-LM6-999"))
        .otherwise(pl.col("Metadata_plate_map_name"))
        .alias("Metadata_plate_map_name")
    )
    path = tmp_path / "SQ00015054_twins.csv"
    bad.write_csv(path)
    return path


def test_case_twins_that_differ_are_refused_and_the_store_is_unchanged(
    lincs_frame: pl.DataFrame, tmp_path: Path
) -> None:
    source = _twins_differ(lincs_frame, tmp_path)
    store = _store_with_one_table(tmp_path)
    before = _digest(store)
    with pytest.raises(CaseDuplicateColumnsError) as info:
        ingest(source, store, table="wells", progress=False)
    msg = str(info.value)
    assert str(source) in msg and "line 11" in msg and "'C-7161-01-LM6-999'" in msg
    assert "'Metadata_plate_map_name' and 'Metadata_Plate_Map_Name'" in msg
    assert "case_duplicates='rename'" in msg
    assert _digest(store) == before


def test_case_twins_renamed_on_request(lincs_frame: pl.DataFrame, tmp_path: Path) -> None:
    source = _twins_differ(lincs_frame, tmp_path)
    path = tmp_path / "s.duckdb"
    with pytest.warns(IngestWarning, match=r"was kept as 'Metadata_Plate_Map_Name_2'"):
        report = ingest(
            source,
            path,
            table="wells",
            progress=False,
            options=IngestOptions(reader_options={"case_duplicates": "rename"}),
        )
    assert report.rows == 384
    with Store(path, read_only=True) as s:
        got = s.sql(
            "SELECT Metadata_plate_map_name AS a, Metadata_Plate_Map_Name_2 AS b FROM wells"
        )
    assert (got["a"] == "C-7161-01-LM6-999").sum() == 1
    assert (got["b"] == "C-7161-01-LM6-027").all()


def test_unknown_case_option_and_reader_option(lincs: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"case_duplicates must be one of"):
        ProfilesFile(lincs, case_duplicates="merge")  # type: ignore[arg-type]
    sqlite_like = tmp_path / "x.csv"
    sqlite_like.write_text("Metadata_Plate,Metadata_Well,f\nP,A01,1\n")
    with pytest.raises(InvalidInputError, match=r"has no option\(s\) \['nonsense'\]"):
        ingest(
            sqlite_like,
            tmp_path / "s.duckdb",
            progress=False,
            options=IngestOptions(reader_options={"nonsense": 1}),
        )


def test_parquet_case_twins_name_the_row(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    pl.DataFrame(
        {
            "Metadata_Plate": ["P", "P", "P"],
            "Metadata_Well": ["A01", "A02", "A03"],
            "Metadata_dose": ["1", "2", "3"],
            "Metadata_Dose": ["1", "2", "30"],
            "f": [1.0, 2.0, 3.0],
        }
    ).write_parquet(path)
    with pytest.raises(CaseDuplicateColumnsError, match=r"first at row 3: '3' vs '30'"):
        list(ProfilesFile(path).batches())


def test_cli_case_twins(lincs_frame: pl.DataFrame, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from cellframe.cli import main

    source = _twins_differ(lincs_frame, tmp_path)
    store = tmp_path / "s.duckdb"
    assert main(["ingest", str(source), "--store", str(store), "--table", "wells", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "differ only in case" in err[0] and "--case-duplicates" in err[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(
            [
                "ingest",
                str(source),
                "--store",
                str(store),
                "--table",
                "wells",
                "--case-duplicates",
                "rename",
                "-q",
            ]
        )
    assert rc == 0
    with Store(store, read_only=True) as s:
        assert s.sql("SELECT count(*) AS n FROM wells")["n"][0] == 384


def _split_plate(lincs_frame: pl.DataFrame, folder: Path) -> tuple[Path, Path]:
    """The plate as two files: rows A-H and rows I-P (a valid but unusual layout)."""
    folder.mkdir()
    first = lincs_frame.filter(pl.col("Metadata_Well").str.slice(0, 1) <= "H")
    second = lincs_frame.filter(pl.col("Metadata_Well").str.slice(0, 1) > "H")
    a, b = folder / "part_a.csv", folder / "part_b.csv"
    first.write_csv(a)
    second.write_csv(b)
    return a, b


def test_files_with_the_same_features_ingest_as_one(
    lincs_frame: pl.DataFrame, tmp_path: Path
) -> None:
    _split_plate(lincs_frame, tmp_path / "parts")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IngestWarning)
        report = ingest(tmp_path / "parts", tmp_path / "s.duckdb", table="wells", progress=False)
    assert report.rows == 384 and report.plates == ["SQ00015054"]


def test_feature_mismatch_names_file_plate_and_columns(
    lincs_frame: pl.DataFrame, tmp_path: Path
) -> None:
    a, b = _split_plate(lincs_frame, tmp_path / "parts")
    feats = _features(lincs_frame)
    pl.read_csv(b, infer_schema=False).drop(feats[3], feats[7]).with_columns(
        pl.lit("0.5").alias("Cells_Extra_Feature")
    ).write_csv(b)
    store = _store_with_one_table(tmp_path)
    before = _digest(store)
    with pytest.raises(FeatureMismatchError) as info:
        ingest(tmp_path / "parts", store, table="wells", progress=False)
    msg = str(info.value)
    assert str(b) in msg and "plate(s) SQ00015054" in msg
    assert f"lacks 2 feature(s) of {a.name} ('{feats[3]}', '{feats[7]}')" in msg
    assert "has 1 feature(s) part_a.csv lacks ('Cells_Extra_Feature')" in msg
    assert _digest(store) == before
