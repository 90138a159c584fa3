"""Paths of the real data sets the io tests read (skipped when ../shared/data is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def cpo(shared_data: Path) -> Path:
    """cellprofiler-outputs/tests/data."""
    return shared_data / "cellprofiler-outputs" / "tests" / "data"


@pytest.fixture(scope="session")
def pct(shared_data: Path) -> Path:
    """pycytominer-testdata/tests/test_data."""
    return shared_data / "pycytominer-testdata" / "tests" / "test_data"


@pytest.fixture(scope="session")
def nf1_sqlite(cpo: Path) -> Path:
    return cpo / "cellprofiler" / "NF1_SchwannCell_data" / "all_cellprofiler.sqlite"


@pytest.fixture(scope="session")
def cytominer_db(cpo: Path) -> Path:
    return cpo / "cytominer-database"


@pytest.fixture(scope="session")
def sq14613(pct: Path) -> Path:
    """Stem of the SQ00014613 files (add .sqlite, .parquet, .csv.gz)."""
    return pct / "cytominer_database_example_data" / "test_SQ00014613"


@pytest.fixture(scope="session")
def jump_collate(pct: Path) -> Path:
    return pct / "collate" / "analysis" / "2021_04_20_Target2" / "BR00121431" / "analysis"
