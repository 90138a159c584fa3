"""Profiling: aggregate, normalize, select, sphere, correct, consensus, QC, strength (DOMAIN.md §2, §7).

Pure Polars transforms (LazyFrame in, LazyFrame or a small result out) and
the fitted objects :class:`Normalizer` and :class:`Spherizer`; the store-level
steps are :mod:`cellframe.pipeline`'s.
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
        "AGGREGATIONS": "aggregate",
        "blocklist": "select",
        "CellCountRegressor": "correct",
        "consensus": "consensus",
        "CONSENSUS_METHODS": "consensus",
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
        "INT_METHODS": "correct",
        "inverse_normal_transform": "correct",
        "InverseNormalTransformer": "correct",
        "lambda_sweep": "sphere",
        "modz_weights": "consensus",
        "NoControlsError": "normalize",
        "noise_removal": "select",
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
        "regress_cell_count": "correct",
        "robust_z": "qc",
        "select_features": "select",
        "sphere": "sphere",
        "SPHERE_METHODS": "sphere",
        "SPHERE_SCORES": "sphere",
        "SphereByMAP": "sphere",
        "Spherizer": "sphere",
        "StrengthResult": "strength",
        "strong_treatments": "strength",
        "treatment_strength": "strength",
        "typical_variation_normalize": "correct",
        "TypicalVariationNormalizer": "correct",
        "variance_threshold": "select",
        "well_position_correct": "correct",
        "WellPositionCorrector": "correct",
    },
)

if TYPE_CHECKING:  # pragma: no cover
    from cellframe.profiles.aggregate import AGGREGATIONS, aggregate, aggregate_by
    from cellframe.profiles.consensus import CONSENSUS_METHODS, consensus, modz_weights
    from cellframe.profiles.correct import (
        INT_METHODS,
        CellCountRegressor,
        InverseNormalTransformer,
        TypicalVariationNormalizer,
        WellPositionCorrector,
        inverse_normal_transform,
        regress_cell_count,
        typical_variation_normalize,
        well_position_correct,
    )
    from cellframe.profiles.harmony import Harmony, harmony
    from cellframe.profiles.normalize import NORMALIZATIONS, NoControlsError, Normalizer, normalize
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
        noise_removal,
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
