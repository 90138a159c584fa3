"""Published per-assay AUROC tables: NaN is read as "no value" and never counted."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cellframe.activity.metrics import summary_table
from cellframe.activity.published import read_published_auroc, well_predicted_sets
from cellframe.demo import demo_data_dir
from cellframe.errors import InvalidInputError, MissingColumnsError

BUNDLED = demo_data_dir() / "activity" / "scaffold_median_AUC.csv"


def _write(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["assay_id", "auc", "descriptor"])
        w.writerows(rows)
    return path


def test_bundled_table_counts_match_numpy() -> None:
    table = read_published_auroc(BUNDLED)
    assert table.height == 3 * 270 and table["auroc"].is_nan().sum() == 0
    # NumPy over the raw file: nan > 0.9 is False there
    raw = pl.read_csv(BUNDLED, glob=False)
    expected = {}
    for name, m in (("cp_es_op", "CS"), ("ge_es_op", "GE"), ("mobc_es_op", "MO")):
        auc = raw.filter(pl.col("descriptor") == name)["auc"].to_numpy()
        expected[m] = (int(np.sum(auc > 0.9)), int(np.isnan(auc).sum()))
    assert expected == {"CS": (16, 1), "GE": (19, 1), "MO": (28, 1)}
    counts = summary_table(
        table.rename({"modality": "Metadata_Modality", "assay_id": "Metadata_Assay"})
    )
    got = {
        r["Metadata_Modality"]: (r["n_auroc_gt_0.9"], r["n_assays"] - r["n_evaluated"])
        for r in counts.iter_rows(named=True)
    }
    assert got == expected
    # the authors' own flag column agrees
    flags = raw.filter(pl.col("descriptor") == "mobc_es_op")["auc_90"]
    assert int(flags.sum()) == 28


def test_nan_null_and_edge_values(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "auc.csv",
        [
            ("a", "0.95", "cp_es_op"),
            ("b", "nan", "cp_es_op"),
            ("c", "0.9", "cp_es_op"),  # exactly 0.9: not above
            ("d", "", "cp_es_op"),  # blank: no value
            ("a", " 1 ", "mobc_es_op"),  # unusual but valid: spaces, an integer
            ("a", "0.99", "late_fusion_cs_ge"),  # another predictor: left out
        ],
    )
    table = read_published_auroc(path)
    assert table.to_dicts() == [
        {"assay_id": "a", "modality": "CS", "auroc": 0.95},
        {"assay_id": "b", "modality": "CS", "auroc": None},
        {"assay_id": "c", "modality": "CS", "auroc": 0.9},
        {"assay_id": "d", "modality": "CS", "auroc": None},
        {"assay_id": "a", "modality": "MO", "auroc": 1.0},
    ]
    assert well_predicted_sets(table) == {"CS": ["a"], "MO": ["a"]}
    # NaN kept as NaN (not read through read_published_auroc) is not counted either
    nan_table = pl.DataFrame(
        {"assay_id": ["x", "y"], "modality": ["GE", "GE"], "auroc": [float("nan"), 0.91]}
    )
    assert well_predicted_sets(nan_table) == {"GE": ["y"]}
    assert well_predicted_sets(nan_table, threshold=0.95) == {"GE": []}


@pytest.mark.parametrize(
    ("value", "defect"), [("high", "'high'"), ("1.3", "outside [0, 1]"), ("-0.1", "outside")]
)
def test_bad_values_are_named(tmp_path: Path, value: str, defect: str) -> None:
    path = _write(tmp_path / "bad.csv", [("a", "0.5", "cp_es_op"), ("z9", value, "ge_es_op")])
    with pytest.raises(InvalidInputError) as err:
        read_published_auroc(path)
    msg = str(err.value)
    assert str(path) in msg and "'auc'" in msg and "'z9'" in msg and defect in msg


def test_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "no_auc.csv"
    path.write_text("assay_id,descriptor\na,cp_es_op\n")
    with pytest.raises(MissingColumnsError, match="'auc'"):
        read_published_auroc(path)
    with pytest.raises(MissingColumnsError, match="'modality'"):
        well_predicted_sets(pl.DataFrame({"assay_id": ["a"], "auroc": [0.5]}))
