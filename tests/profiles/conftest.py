"""Fixtures of the profiling tests: real data from ../shared/data and a small synthetic screen."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cellframe.columns import CONTROL, OBJECT_NUMBER, PLATE, SITE, TREATMENT, WELL

NF1 = "cellprofiler-outputs/tests/data/cellprofiler/NF1_SchwannCell_data/all_cellprofiler.sqlite"
LINCS = "profiles-lincs-SQ00015054/SQ00015054_normalized_feature_select.csv.gz"
NELISA = "profiles-nelisa/nelisa_profiles.parquet"


def _need(root: Path, rel: str) -> Path:
    path = root / rel
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture(scope="session")
def nf1_cells(shared_data: Path) -> pl.DataFrame:
    """NF1 Schwann-cell single cells (242 cells, 8 wells x 4 sites, ~400 Cells_ features)."""
    con = sqlite3.connect(_need(shared_data, NF1))
    try:
        image = pl.read_database(
            "SELECT ImageNumber, Image_Metadata_Plate, Image_Metadata_Well, Image_Metadata_Site "
            "FROM Per_Image",
            con,
        )
        cells = pl.read_database("SELECT * FROM Per_Cells", con)
    finally:
        con.close()
    numeric = [
        c
        for c, t in cells.schema.items()
        if c.startswith("Cells_") and t.is_numeric() and c != "Cells_Number_Object_Number"
    ]
    df = cells.join(image, on="ImageNumber", how="left").select(
        pl.col("Image_Metadata_Plate").cast(pl.String).alias(PLATE),
        pl.col("Image_Metadata_Well").cast(pl.String).alias(WELL),
        pl.col("Image_Metadata_Site").cast(pl.Int32).alias(SITE),
        pl.col("Cells_Number_Object_Number").cast(pl.Int64).alias(OBJECT_NUMBER),
        *[pl.col(c).cast(pl.Float64) for c in numeric],
    )
    return df


@pytest.fixture(scope="session")
def lincs(shared_data: Path) -> pl.DataFrame:
    """LINCS SQ00015054 well profiles (384 x 454), 24 DMSO controls."""
    return pl.read_csv(_need(shared_data, LINCS), infer_schema_length=1000)


@pytest.fixture(scope="session")
def nelisa(shared_data: Path) -> pl.DataFrame:
    """nELISA secretome well profiles (1,525 x 191, 4 plates, 64 negcon per plate)."""
    return pl.read_parquet(_need(shared_data, NELISA))


def make_screen(
    n_plates: int = 2,
    n_wells: int = 12,
    n_sites: int = 2,
    cells_per_site: int = 5,
    n_features: int = 6,
    seed: int = 0,
) -> pl.DataFrame:
    """A small synthetic cell table with treatments, negative controls and sites."""
    rng = np.random.default_rng(seed)
    rows = []
    wells = [f"{'ABCDEFGH'[i // 12]}{i % 12 + 1:02d}" for i in range(n_wells)]
    for p in range(n_plates):
        for wi, w in enumerate(wells):
            ctrl = wi < max(2, n_wells // 4)
            for s in range(1, n_sites + 1):
                for _ in range(cells_per_site):
                    rows.append(
                        (
                            f"P{p + 1}",
                            w,
                            s,
                            "negcon" if ctrl else "",
                            "dmso" if ctrl else f"t{wi % 4}",
                        )
                    )
    n = len(rows)
    x = rng.normal(size=(n, n_features)).astype(np.float32) * np.arange(
        1, n_features + 1, dtype=np.float32
    )
    plates, wells_, sites, ctrls, trts = zip(*rows, strict=True)
    data = {
        PLATE: list(plates),
        WELL: list(wells_),
        SITE: pl.Series(sites, dtype=pl.Int32),
        OBJECT_NUMBER: pl.Series(np.arange(1, n + 1), dtype=pl.Int64),
        CONTROL: list(ctrls),
        TREATMENT: list(trts),
    }
    data.update({f"Cells_F{j}": x[:, j] for j in range(n_features)})
    return pl.DataFrame(data)


@pytest.fixture
def screen() -> pl.DataFrame:
    return make_screen()


COLLATE = (
    "pycytominer-testdata/tests/test_data/collate/analysis/2021_04_20_Target2/BR00121431/analysis"
)


@pytest.fixture(scope="session")
def jump_nuclei(shared_data: Path) -> pl.DataFrame:
    """JUMP Target-2 plate BR00121431: 125 nuclei x 1,931 CellProfiler features (``Nuclei_`` names)."""
    root = _need(shared_data, COLLATE)
    parts = [
        pl.read_csv(root / site / "Nuclei.csv", infer_schema_length=10000)
        for site in ("BR00121431-A01-1", "BR00121431-A02-1")
    ]
    df = pl.concat(parts, how="vertical_relaxed")
    numeric = [
        c
        for c, t in df.schema.items()
        if t.is_numeric() and c not in ("ImageNumber", "ObjectNumber")
    ]
    return df.select(
        pl.col("ImageNumber").alias("Metadata_ImageNumber"),
        *[pl.col(c).cast(pl.Float64).alias(f"Nuclei_{c}") for c in numeric],
    )


def with_missing(df: pl.DataFrame, fractions: dict[int, float], seed: int = 1) -> pl.DataFrame:
    """Copy of ``df`` with NaN put into feature number ``i`` at the given fraction of rows."""
    from cellframe.columns import feature_columns

    rng = np.random.default_rng(seed)
    feats = feature_columns(df)
    out = df
    for i, frac in fractions.items():
        values = df[feats[i]].to_numpy().copy()
        idx = rng.choice(df.height, size=round(frac * df.height), replace=False)
        values[idx] = np.nan
        out = out.with_columns(pl.Series(feats[i], values))
    return out
