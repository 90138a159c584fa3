"""CellProfiler-style measurements (DOMAIN.md §8): illumination correction,
per-object measurements of nuclei, cells and cytoplasm, and image quality.

Names are imported lazily, so ``import cellframe.measure`` loads neither
cp-measure nor scikit-image until a measurement runs.
"""

# ruff: noqa: F401  (the TYPE_CHECKING imports are the re-exports type checkers see)

from __future__ import annotations

from typing import TYPE_CHECKING

from cellframe._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "COMPARTMENTS": "features",
        "DEFAULT_FAMILIES": "features",
        "FAMILIES": "features",
        "measure_objects": "features",
        "measure_site": "features",
        "to_unit_range": "features",
    },
)

if TYPE_CHECKING:
    from cellframe.measure.features import (
        COMPARTMENTS,
        DEFAULT_FAMILIES,
        FAMILIES,
        measure_objects,
        measure_site,
        to_unit_range,
    )
