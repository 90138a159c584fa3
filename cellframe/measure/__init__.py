"""Measurement (DOMAIN.md §8): illumination correction, then CellProfiler-style measurements.

Names are imported lazily, so ``import cellframe.measure`` loads neither NumPy
nor Polars until a name is used.
"""

# ruff: noqa: F401  (the TYPE_CHECKING imports are the re-exports type checkers see)

from __future__ import annotations

from typing import TYPE_CHECKING

from cellframe._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "apply_illumination": "illumination",
        "fit_illumination": "illumination",
        "IlluminationFunction": "illumination",
        "IlluminationStatistics": "illumination",
    },
)

if TYPE_CHECKING:  # pragma: no cover
    from cellframe.measure.illumination import (
        IlluminationFunction,
        IlluminationStatistics,
        apply_illumination,
        fit_illumination,
    )
