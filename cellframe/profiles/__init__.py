"""Profiling: aggregate, normalize, select features, sphere, QC, strong treatments (DOMAIN.md §2).

Pure Polars transforms (LazyFrame in, LazyFrame or a small result out), the
fitted objects :class:`Normalizer` and :class:`Spherizer`, and store-level
steps (:mod:`cellframe.profiles.pipeline`).
"""

# ruff: noqa: F401  (the TYPE_CHECKING imports are the re-exports type checkers see)

from __future__ import annotations

from typing import TYPE_CHECKING

from cellframe._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "aggregate": "aggregate",
        "apply_recipe": "recipe",
        "aggregate_by": "aggregate",
        "aggregate_table": "aggregate",
        "AGGREGATIONS": "aggregate",
        "blocklist": "select",
        "correlation_threshold": "select",
        "default_blocklist": "select",
        "drop_na_columns": "select",
        "drop_outliers": "select",
        "feature_select": "select",
        "FeatureSelection": "select",
        "FeatureSelector": "select",
        "flag_outlier_wells": "qc",
        "frequency_threshold": "select",
        "Harmony": "harmony",
        "harmony": "harmony",
        "image_qc": "qc",
        "lambda_sweep": "sphere",
        "load_config": "pipeline",
        "NoControlsError": "normalize",
        "NORMALIZATIONS": "normalize",
        "normalize": "normalize",
        "Normalizer": "normalize",
        "OPERATIONS": "select",
        "PCA": "qc",
        "pca_profiles": "qc",
        "PCAResult": "qc",
        "parse_recipe": "recipe",
        "RECIPE_TOKENS": "recipe",
        "RecipeResult": "recipe",
        "RecipeStep": "recipe",
        "robust_z": "qc",
        "run_pipeline": "pipeline",
        "select_features": "select",
        "sphere": "sphere",
        "SPHERE_METHODS": "sphere",
        "SPHERE_SCORES": "sphere",
        "SphereByMAP": "sphere",
        "Spherizer": "sphere",
        "StepReport": "pipeline",
        "STEPS": "pipeline",
        "StrengthResult": "strength",
        "strong_treatments": "strength",
        "treatment_strength": "strength",
        "variance_threshold": "select",
    },
)

if TYPE_CHECKING:  # pragma: no cover
    from cellframe.profiles.aggregate import AGGREGATIONS, aggregate, aggregate_by, aggregate_table
    from cellframe.profiles.harmony import Harmony, harmony
    from cellframe.profiles.normalize import NORMALIZATIONS, NoControlsError, Normalizer, normalize
    from cellframe.profiles.pipeline import STEPS, StepReport, load_config, run_pipeline
    from cellframe.profiles.qc import (
        PCA,
        PCAResult,
        flag_outlier_wells,
        image_qc,
        pca_profiles,
        robust_z,
    )
    from cellframe.profiles.recipe import (
        RECIPE_TOKENS,
        RecipeResult,
        RecipeStep,
        apply_recipe,
        parse_recipe,
    )
    from cellframe.profiles.select import (
        OPERATIONS,
        FeatureSelection,
        FeatureSelector,
        blocklist,
        correlation_threshold,
        default_blocklist,
        drop_na_columns,
        drop_outliers,
        feature_select,
        frequency_threshold,
        select_features,
        variance_threshold,
    )
    from cellframe.profiles.sphere import (
        SPHERE_METHODS,
        SPHERE_SCORES,
        SphereByMAP,
        Spherizer,
        lambda_sweep,
        sphere,
    )
    from cellframe.profiles.strength import StrengthResult, strong_treatments, treatment_strength
