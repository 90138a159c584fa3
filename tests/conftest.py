"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``../shared/data`` beside the checkout, or ``$CELLFRAME_SHARED_DATA``."""
    env = os.environ.get("CELLFRAME_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real data sets; the test is skipped when they are absent."""
    root = shared_data_dir()
    if not root.is_dir():
        pytest.skip(f"real data not found at {root} (set CELLFRAME_SHARED_DATA)")
    return root


@pytest.fixture
def store(tmp_path: Path):
    """A fresh file-backed store in a temporary folder."""
    from cellframe.store import Store

    s = Store(tmp_path / "test.duckdb")
    yield s
    s.close()


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance (2 CPUs) for the whole test session (start-up ~6 s)."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
