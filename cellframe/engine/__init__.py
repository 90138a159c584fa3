"""Run per-plate steps locally or on a Ray cluster, with the same result.

Every per-plate step is a pure function of one plate's rows. The local engine
loops over plates in this process; the Ray engine maps the same function over
plates as Ray tasks, each writing its plate as one Parquet partition
(:mod:`cellframe.partitions`). Steps that need statistics over all plates use
:func:`reduce_plates`: exact sufficient statistics per plate, combined on the
driver.
"""

# ruff: noqa: F401  (the TYPE_CHECKING imports are the re-exports type checkers see)

from __future__ import annotations

from typing import TYPE_CHECKING

from cellframe._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "ENGINES": "base",
        "EngineUnavailableError": "base",
        "apply_plates": "fitted",
        "fit_plates": "fitted",
        "map_plates": "run",
        "MapReport": "base",
        "reduce_plates": "run",
    },
)

if TYPE_CHECKING:  # pragma: no cover
    from cellframe.engine.base import ENGINES, EngineUnavailableError, MapReport
    from cellframe.engine.fitted import apply_plates, fit_plates
    from cellframe.engine.run import map_plates, reduce_plates
