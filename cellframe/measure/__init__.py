"""Measurement (DOMAIN.md §8): illumination correction, then CellProfiler-style measurements
of nuclei, cells and cytoplasm, and image quality.

Names are imported lazily, so ``import cellframe.measure`` loads neither NumPy
nor Polars (nor cp-measure) until a name is used.
"""

# ruff: noqa: F401  (the TYPE_CHECKING imports are the re-exports type checkers see)

from __future__ import annotations

from typing import TYPE_CHECKING

from cellframe._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "apply_illumination": "illumination",
        "BLURRY": "quality",
        "COMPARTMENTS": "features",
        "DEFAULT_FAMILIES": "features",
        "FAMILIES": "features",
        "fit_illumination": "illumination",
        "IlluminationFunction": "illumination",
        "IlluminationStatistics": "illumination",
        "image_quality": "quality",
        "measure_objects": "features",
        "measure_site": "features",
        "power_log_log_slope": "quality",
        "quality_flags": "quality",
        "radial_power_spectrum": "quality",
        "SATURATED": "quality",
        "to_unit_range": "features",
    },
)

if TYPE_CHECKING:  # pragma: no cover
    from cellframe.measure.features import (
        COMPARTMENTS,
        DEFAULT_FAMILIES,
        FAMILIES,
        measure_objects,
        measure_site,
        to_unit_range,
    )
    from cellframe.measure.illumination import (
        IlluminationFunction,
        IlluminationStatistics,
        apply_illumination,
        fit_illumination,
    )
    from cellframe.measure.quality import (
        BLURRY,
        SATURATED,
        image_quality,
        power_log_log_slope,
        quality_flags,
        radial_power_spectrum,
    )
