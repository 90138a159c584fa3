"""Platemaps as the ecosystem writes them, and platemaps with one defect each.

Built from the LINCS batch-1 ``barcode_platemap.csv`` + ``platemap/C-7161-01-LM6-027.txt``
(cytominer layout) and the LINCS SQ00015054 well profiles that pycytominer's
``annotate`` wrote from the same map.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cellframe.columns import CONTROL, PLATE, TREATMENT
from cellframe.errors import CellframeError, DuplicateWellsError, InvalidInputError
from cellframe.io import ingest, read_platemap
from cellframe.io.platemap import (
    ControlsDerivedWarning,
    PlatemapWarning,
    is_barcode_platemap,
    read_barcode_platemap,
)
from cellframe.store import Store

MAP = "C-7161-01-LM6-027"


@pytest.fixture(scope="module")
def lincs_batch(shared_data: Path) -> Path:
    return (
        shared_data
        / "moa-annotations"
        / "lincs-cell-painting"
        / "metadata"
        / "platemaps"
        / "2016_04_01_a549_48hr_batch1"
    )


@pytest.fixture(scope="module")
def lincs_profiles(shared_data: Path) -> Path:
    return shared_data / "profiles-lincs-SQ00015054" / "SQ00015054_normalized_feature_select.csv.gz"


def _quiet_read(path: object, **kwargs: object) -> pl.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlatemapWarning)
        return read_platemap(path, **kwargs)  # type: ignore[arg-type]


def _copy_batch(lincs_batch: Path, tmp_path: Path, barcodes: str | None = None) -> Path:
    """A one-map copy of the batch folder: SQ00015054 and SQ00015053 use map 027."""
    dest = tmp_path / "batch"
    (dest / "platemap").mkdir(parents=True)
    shutil.copy(lincs_batch / "platemap" / f"{MAP}.txt", dest / "platemap" / f"{MAP}.txt")
    (dest / "barcode_platemap.csv").write_text(
        barcodes
        or "Assay_Plate_Barcode,Plate_Map_Name,Batch_Number,Batch_Date\n"
        f"SQ00015054,{MAP},4,2016-05-17\nSQ00015053,{MAP},4,2016-05-17\n"
    )
    return dest


def _edit_map(folder: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    path = folder / "platemap" / f"{MAP}.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")
    return path


# ------------------------------------------------------------------ the real layout
def test_barcode_folder_is_read_with_its_maps(lincs_batch: Path) -> None:
    assert is_barcode_platemap(lincs_batch)
    assert is_barcode_platemap(lincs_batch / "barcode_platemap.csv")
    assert not is_barcode_platemap(lincs_batch / "platemap" / f"{MAP}.txt")
    with pytest.warns(PlatemapWarning) as record:
        pm = read_platemap(lincs_batch)
    messages = [str(w.message) for w in record]
    # 140 barcodes use 28 maps; only map 027 is in the folder: 27 maps, 135 plates unannotated.
    missing = next(m for m in messages if "are not in" in m)
    assert "27 map(s)" in missing and "135 plate(s)" in missing and "C-7161-01-LM6-017" in missing
    rule = next(m for m in messages if "Metadata_Control derived" in m)
    assert "blank Metadata_broad_sample" in rule and "negcon: 120" in rule
    # Five barcodes use map 027: 5 x 384 wells.
    assert pm.height == 5 * 384
    assert sorted(pm[PLATE].unique().to_list()) == [
        "SQ00015052",
        "SQ00015053",
        "SQ00015054",
        "SQ00015055",
        "SQ00015211",
    ]
    # pycytominer annotate's columns: barcode file's and map's, Metadata_-prefixed, once each.
    assert {"Metadata_Plate_Map_Name", "Metadata_Batch_Number", "Metadata_broad_sample"} <= set(
        pm.columns
    )
    assert "Metadata_plate_map_name" not in pm.columns
    # The barcode file itself gives the same table.
    assert_frame_equal(_quiet_read(lincs_batch / "barcode_platemap.csv"), pm)


def test_barcode_platemap_matches_pycytominer_annotate(
    lincs_batch: Path, lincs_profiles: Path, tmp_path: Path
) -> None:
    """The profiles were annotated by pycytominer from this map: the join gives the same wells."""
    ref = pl.read_csv(lincs_profiles, infer_schema=False)
    path = tmp_path / "s.duckdb"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ingest(lincs_profiles, path, table="wells", platemap=lincs_batch, progress=False)
    with Store(path, read_only=True) as s:
        got = s.sql(
            "SELECT Metadata_Well, Metadata_broad_sample, Metadata_mg_per_ml, Metadata_Control "
            "FROM wells ORDER BY 1"
        )
        stored_map = s.read("platemap")
    ref = ref.select(
        "Metadata_Well", "Metadata_broad_sample", "Metadata_mg_per_ml", "Metadata_pert_type"
    )
    joined = got.join(ref, on="Metadata_Well", suffix="_ref")
    assert joined.height == 384
    # LINCS writes DMSO as broad_sample "DMSO", the map leaves it blank.
    assert (
        joined["Metadata_broad_sample"].fill_null("DMSO") == joined["Metadata_broad_sample_ref"]
    ).all()
    # The profile file rounds doses to 5 significant digits; the map holds them in full.
    dose = joined["Metadata_mg_per_ml"].cast(pl.Float64).fill_null(0.0)
    ref_dose = joined["Metadata_mg_per_ml_ref"].cast(pl.Float64)
    assert ((dose - ref_dose).abs() <= 5e-5 * ref_dose.abs()).all()
    # The blank-broad_sample rule marks exactly the profile's 24 pert_type == "control" wells.
    controls = joined.filter(pl.col(CONTROL) == "negcon")["Metadata_Well"].sort().to_list()
    expected = joined.filter(pl.col("Metadata_pert_type") == "control")["Metadata_Well"]
    assert len(controls) == 24 and controls == expected.sort().to_list()
    assert stored_map[PLATE].unique().to_list() == ["SQ00015054"] and stored_map.height == 384


def test_pert_type_rule_is_named_with_counts() -> None:
    frame = pl.DataFrame(
        {
            "well_position": ["A01", "A02", "A03", "B01"],
            "broad_sample": [None, "BRD-1", "BRD-2", None],
            "pert_type": ["control", "trt", "trt", "ctl_vehicle"],
        }
    )
    with pytest.warns(ControlsDerivedWarning, match=r"'Metadata_pert_type'.*negcon: 2") as rec:
        pm = read_platemap(frame)
    assert len(rec) == 1 and "none (treatment): 2" in str(rec[0].message)
    assert pm[CONTROL].to_list() == ["negcon", None, None, "negcon"]


def test_no_control_rule_says_so() -> None:
    with pytest.warns(ControlsDerivedWarning, match=r"null for all 2 wells"):
        pm = read_platemap(pl.DataFrame({"well": ["A01", "A02"], "gene": ["x", "y"]}))
    assert pm[CONTROL].null_count() == 2 and pm[TREATMENT].to_list() == ["x", "y"]


# ------------------------------------------------------------------ one defect each
def test_unpadded_wells_warn_with_count_and_equal_clean(lincs_batch: Path, tmp_path: Path) -> None:
    clean = _quiet_read(_copy_batch(lincs_batch, tmp_path / "clean"))
    folder = _copy_batch(lincs_batch, tmp_path / "bad")

    def unpad(lines: list[str]) -> list[str]:
        # A01 ... A09 written A1 ... A9 (9 wells), as some exports do.
        return [ln.replace("\tA0", "\tA", 1) if "\tA0" in ln else ln for ln in lines]

    _edit_map(folder, unpad)
    with pytest.warns(PlatemapWarning, match=r"18 well name\(s\) were not written as zero-padded"):
        got = read_platemap(folder)  # 9 wells x 2 barcodes
    assert_frame_equal(got, clean)


def test_conflicting_duplicate_wells_are_all_named(lincs_batch: Path, tmp_path: Path) -> None:
    folder = _copy_batch(lincs_batch, tmp_path)

    def duplicate(lines: list[str]) -> list[str]:
        extra = [ln.replace("\t\t\t\tDMSO", "\tBRD-X\t1\t1\tDMSO") for ln in lines[1:4]]
        return lines + extra  # A01, A02, A03 again with another compound

    path = _edit_map(folder, duplicate)
    with pytest.raises(DuplicateWellsError) as info:
        _quiet_read(folder)
    msg = str(info.value)
    assert "6 well(s) more than once with different contents" in msg  # 3 wells x 2 plates
    for well in ("'A01'", "'A02'", "'A03'"):
        assert well in msg
    assert f"{path} lines 2, 386" in msg and f"{path} lines 4, 388" in msg


def test_many_conflicting_wells_show_ten_and_the_count() -> None:
    wells = [f"B{c:02d}" for c in range(1, 13)]
    frame = pl.DataFrame({"well": wells * 2, "treatment": ["x"] * 12 + ["y"] * 12})
    with pytest.raises(DuplicateWellsError, match=r"12 well\(s\).*'B10'.*\(12 in all\)") as info:
        _quiet_read(frame)
    assert "'B11'" not in str(info.value)


def test_identical_duplicate_rows_are_kept_once_with_a_count(
    lincs_batch: Path, tmp_path: Path
) -> None:
    clean = _quiet_read(_copy_batch(lincs_batch, tmp_path / "clean"))
    folder = _copy_batch(lincs_batch, tmp_path / "bad")
    _edit_map(folder, lambda lines: lines + lines[5:7])
    with pytest.warns(PlatemapWarning, match=r"4 row\(s\) repeat another row of the same well"):
        got = read_platemap(folder)
    assert_frame_equal(got, clean)


def test_not_a_well_is_refused_with_its_line(lincs_batch: Path, tmp_path: Path) -> None:
    folder = _copy_batch(lincs_batch, tmp_path)
    path = _edit_map(
        folder, lambda lines: [lines[0], lines[1].replace("\tA01\t", "\tA-one\t"), *lines[2:]]
    )
    with pytest.raises(InvalidInputError, match=r"not wells.*'A-one' \(.*line 2\)") as info:
        _quiet_read(folder)
    assert str(path) in str(info.value)


def test_barcode_with_two_maps_is_refused(lincs_batch: Path, tmp_path: Path) -> None:
    folder = _copy_batch(
        lincs_batch,
        tmp_path,
        "Assay_Plate_Barcode,Plate_Map_Name\nSQ00015054,C-7161-01-LM6-027\n"
        "SQ00015054,C-7161-01-LM6-099\n",
    )
    with pytest.raises(InvalidInputError, match=r"'SQ00015054' \(lines 2, 3\)") as info:
        read_barcode_platemap(folder)
    assert "barcode_platemap.csv" in str(info.value)


def test_map_naming_another_map_is_refused(lincs_batch: Path, tmp_path: Path) -> None:
    folder = _copy_batch(lincs_batch, tmp_path)
    _edit_map(
        folder, lambda lines: [lines[0], lines[1].replace(MAP, "C-7161-01-LM6-001"), *lines[2:]]
    )
    with pytest.raises(InvalidInputError, match=r"line 2: column 'plate_map_name' says"):
        read_barcode_platemap(folder)


def test_no_map_at_all_is_an_error(lincs_batch: Path, tmp_path: Path) -> None:
    folder = _copy_batch(lincs_batch, tmp_path)
    (folder / "platemap" / f"{MAP}.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"none of the 1 map\(s\).*C-7161-01-LM6-027.txt"):
        read_platemap(folder)


def test_wells_missing_either_way_are_named(
    lincs_batch: Path, lincs_profiles: Path, tmp_path: Path
) -> None:
    """The map lacks row P; the profiles lack wells A01-A03: both named with counts."""
    folder = _copy_batch(lincs_batch, tmp_path / "map")
    _edit_map(folder, lambda lines: [ln for ln in lines if "\tP" not in ln])
    source = tmp_path / "SQ00015054.csv"
    pl.read_csv(lincs_profiles, infer_schema=False).filter(
        ~pl.col("Metadata_Well").is_in(["A01", "A02", "A03"])
    ).write_csv(source)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        report = ingest(
            source, tmp_path / "s.duckdb", table="wells", platemap=folder, progress=False
        )
    messages = [str(w.message) for w in record]
    missing = next(m for m in messages if "wells the platemap does not list" in m)
    assert missing.startswith("24 row(s)") and "24 well(s): SQ00015054/P01" in missing
    empty = next(m for m in messages if "have no rows" in m)
    assert empty.startswith("3 well(s)") and "SQ00015054/A01, SQ00015054/A02" in empty
    assert report.rows == 381
    # The control rule is a line of the report, as the CLI prints it.
    assert any("Metadata_Control derived" in w and "negcon: 48" in w for w in report.warnings)


def test_cli_prints_one_line_for_a_duplicate_well(
    lincs_batch: Path, tmp_path: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    from cellframe.cli import main

    folder = _copy_batch(lincs_batch, tmp_path / "map")
    _edit_map(
        folder, lambda lines: [*lines, lines[1].replace("\t\t\t\tDMSO", "\tBRD-X\t1\t1\tDMSO")]
    )
    source = tmp_path / "p.csv"
    pl.DataFrame(
        {"Metadata_Plate": ["SQ00015054"], "Metadata_Well": ["A01"], "f": [1.0]}
    ).write_csv(source)
    store = tmp_path / "s.duckdb"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["ingest", str(source), "--store", str(store), "--platemap", str(folder), "-q"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert isinstance(DuplicateWellsError("x"), CellframeError)
    assert "'A01' of plate 'SQ00015054'" in err and "more than once" in err
    assert not store.exists() or "wells" not in Store(store, read_only=True).table_names()


def test_annotations_equal_pycytominer_annotate(
    lincs_batch: Path, lincs_profiles: Path, tmp_path: Path
) -> None:
    """Reference: pycytominer's ``annotate`` with the same map file, well by well."""
    import pandas as pd
    from pycytominer import annotate as pyc_annotate

    profiles = pd.read_csv(lincs_profiles)
    keep = ["Metadata_Plate", "Metadata_Well", "Cells_AreaShape_Compactness"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = pyc_annotate(
            profiles[keep],
            platemap=pd.read_csv(lincs_batch / "platemap" / f"{MAP}.txt", sep="\t"),
            join_on=["Metadata_well_position", "Metadata_Well"],
        )
        source = tmp_path / "p.csv"
        pl.from_pandas(profiles[keep]).write_csv(source)
        ingest(source, tmp_path / "s.duckdb", table="wells", platemap=lincs_batch, progress=False)
    with Store(tmp_path / "s.duckdb", read_only=True) as s:
        got = s.read("wells").sort("Metadata_Well")
    ref = pl.from_pandas(ref).sort("Metadata_Well")
    assert got["Metadata_Well"].to_list() == ref["Metadata_Well"].to_list()
    assert got["Metadata_Plate_Map_Name"].to_list() == ref["Metadata_plate_map_name"].to_list()
    for column in ("Metadata_broad_sample", "Metadata_solvent"):
        assert got[column].to_list() == ref[column].to_list(), column
    for column in ("Metadata_mg_per_ml", "Metadata_mmoles_per_liter"):
        ours = got[column].cast(pl.Float64)
        theirs = ref[column].cast(pl.Float64)
        assert ((ours - theirs).abs() <= 1e-12 * theirs.abs()).fill_null(True).all(), column
        assert (ours.is_null() == theirs.is_null()).all(), column
