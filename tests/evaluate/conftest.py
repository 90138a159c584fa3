"""Fixtures of the evaluation tests: small synthetic screens and the LINCS plate."""

from __future__ import annotations

import polars as pl
import pytest

from tests.evaluate._synthetic import synthetic_screen


@pytest.fixture
def screen() -> pl.DataFrame:
    return synthetic_screen()


@pytest.fixture(scope="session")
def lincs(shared_data) -> pl.DataFrame:
    path = shared_data / "profiles-lincs-SQ00015054" / "SQ00015054_normalized_feature_select.csv.gz"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return pl.read_csv(path, infer_schema_length=10000)


@pytest.fixture(scope="session")
def lincs_pandas(lincs):
    return lincs.to_pandas()
