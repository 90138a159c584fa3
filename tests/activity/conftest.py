"""Fixtures of the activity tests: small synthetic matrices and the real data folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cellframe.activity.matrix import AssayMatrix

#: Small drug-like molecules with a few shared scaffolds (benzene, pyridine, ...).
SMILES = [
    "c1ccccc1O",
    "c1ccccc1N",
    "c1ccccc1CC(=O)O",
    "c1ccncc1C",
    "c1ccncc1CO",
    "C1CCCCC1N",
    "C1CCCCC1O",
    "CCO",
    "CCN",
    "c1ccc2ccccc2c1",
    "c1ccc2ccccc2c1O",
    "O=C(O)c1ccccc1O",
]


@pytest.fixture(scope="session")
def moshkov(shared_data: Path) -> Path:
    root = shared_data / "compound-activity-moshkov2023"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    return root


@pytest.fixture(scope="session")
def moleculenet(shared_data: Path) -> Path:
    root = shared_data / "assay-matrices-moleculenet"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    return root


def synthetic_matrix(n: int = 120, n_assays: int = 4, seed: int = 0, missing: float = 0.2):
    """Readouts that depend on two Morgan-like binary features; returns (matrix, X)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2, size=(n, 32)).astype(np.float32)
    logits = np.stack([3 * (2 * x[:, j] - 1) + x[:, j + 1] for j in range(n_assays)], axis=1)
    y = (logits + rng.normal(scale=0.5, size=logits.shape) > 0).astype(np.float32)
    y[rng.random(y.shape) < missing] = np.nan
    m = AssayMatrix(
        compounds=[f"C{i}" for i in range(n)],
        assays=[f"A{j}" for j in range(n_assays)],
        values=y,
    )
    return m, x
