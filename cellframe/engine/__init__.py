"""Engines as objects: run per-plate steps locally or on a Ray cluster, with the same result.

Every per-plate step is a pure function of one plate's rows. :class:`LocalEngine`
loops over plates in this process (and reads big tables in bounded chunks on
threads); :class:`RayEngine` maps the same function over plates as Ray tasks,
each writing its plate as one Parquet partition (:mod:`cellframe.partitions`).
Both have ``map`` (a function over plates), ``gather`` (per-plate results
combined on the driver), ``reduce`` (a fitted step fitted from its per-plate
statistics, merged), ``apply`` (a fitted step's transform over plates) and
``gather_tasks`` (per-plate work on inputs outside the store, such as a plate's
image files, combined on the driver in plate order);
:func:`map_plates`, :func:`reduce_plates`, :func:`fit_plates` and
:func:`apply_plates` are their function forms.
"""

# ruff: noqa: F401  (the TYPE_CHECKING imports are the re-exports type checkers see)

from __future__ import annotations

from typing import TYPE_CHECKING

from cellframe._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "apply_plates": "fitted",
        "Engine": "base",
        "ENGINES": "base",
        "EngineUnavailableError": "base",
        "fit_plates": "fitted",
        "LocalEngine": "local",
        "map_plates": "run",
        "MapReport": "base",
        "Plates": "base",
        "RayEngine": "ray",
        "reduce_plates": "run",
        "resolve_engine": "base",
    },
)

if TYPE_CHECKING:  # pragma: no cover
    from cellframe.engine.base import (
        ENGINES,
        Engine,
        EngineUnavailableError,
        MapReport,
        Plates,
        resolve_engine,
    )
    from cellframe.engine.fitted import apply_plates, fit_plates
    from cellframe.engine.local import LocalEngine
    from cellframe.engine.ray import RayEngine
    from cellframe.engine.run import map_plates, reduce_plates
