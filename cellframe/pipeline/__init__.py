"""The Face: compose store, steps and engines (ARCHITECTURE.md layer 7).

Store-level steps (:func:`run_step` on an engine, :func:`run_pipeline` from a
validated TOML config), per-plate compositions on an engine, saving fitted steps to the store,
the store-to-store aggregation, activity with a cross-fitted null read from
provenance, and the analyst SQL macros. Only this package (and
:mod:`cellframe.cli`) knows about both the store and the engines.
"""

# ruff: noqa: F401  (the TYPE_CHECKING imports are the re-exports type checkers see)

from __future__ import annotations

from typing import TYPE_CHECKING

from cellframe._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "activity_from_store": "activity",
        "aggregate_table": "aggregate",
        "Aggregation": "aggregate",
        "correction_from_provenance": "activity",
        "load_config": "config",
        "load_step": "fits",
        "make_engine": "steps",
        "measure_images": "measure",
        "MeasureReport": "measure",
        "NullSettings": "activity",
        "QualityControl": "steps",
        "register_evaluate_sql": "sql",
        "run_activity": "steps",
        "run_pipeline": "steps",
        "run_recipe": "recipe",
        "RecipeRun": "recipe",
        "run_step": "steps",
        "run_strength": "steps",
        "save_step": "fits",
        "StepReport": "steps",
        "STEPS": "steps",
        "StoreActivity": "activity",
        "validate_config": "config",
    },
)

if TYPE_CHECKING:  # pragma: no cover
    from cellframe.pipeline.activity import (
        NullSettings,
        StoreActivity,
        activity_from_store,
        correction_from_provenance,
    )
    from cellframe.pipeline.aggregate import Aggregation, aggregate_table
    from cellframe.pipeline.config import load_config, validate_config
    from cellframe.pipeline.fits import load_step, save_step
    from cellframe.pipeline.measure import MeasureReport, measure_images
    from cellframe.pipeline.recipe import RecipeRun, run_recipe
    from cellframe.pipeline.sql import register_evaluate_sql
    from cellframe.pipeline.steps import (
        STEPS,
        QualityControl,
        StepReport,
        make_engine,
        run_activity,
        run_pipeline,
        run_step,
        run_strength,
    )
