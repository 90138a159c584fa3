"""Profiling: aggregate, normalize, select features, sphere, QC, strong treatments (DOMAIN.md §2).

Pure Polars transforms (LazyFrame in, LazyFrame or a small result out), the
fitted objects :class:`Normalizer` and :class:`Spherizer`, and store-level
steps (:mod:`cellframe.profiles.pipeline`).
"""

from cellframe.profiles.aggregate import AGGREGATIONS, aggregate, aggregate_by, aggregate_table
from cellframe.profiles.normalize import NORMALIZATIONS, NoControlsError, Normalizer, normalize
from cellframe.profiles.pipeline import STEPS, StepReport, load_config, run_pipeline
from cellframe.profiles.qc import PCAResult, flag_outlier_wells, image_qc, pca_profiles, robust_z
from cellframe.profiles.select import (
    OPERATIONS,
    FeatureSelection,
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
from cellframe.profiles.sphere import SPHERE_METHODS, Spherizer, lambda_sweep, sphere
from cellframe.profiles.strength import StrengthResult, strong_treatments, treatment_strength

__all__ = [
    "AGGREGATIONS",
    "NORMALIZATIONS",
    "OPERATIONS",
    "SPHERE_METHODS",
    "STEPS",
    "FeatureSelection",
    "NoControlsError",
    "Normalizer",
    "PCAResult",
    "Spherizer",
    "StepReport",
    "StrengthResult",
    "aggregate",
    "aggregate_by",
    "aggregate_table",
    "blocklist",
    "correlation_threshold",
    "default_blocklist",
    "drop_na_columns",
    "drop_outliers",
    "feature_select",
    "flag_outlier_wells",
    "frequency_threshold",
    "image_qc",
    "lambda_sweep",
    "load_config",
    "normalize",
    "pca_profiles",
    "robust_z",
    "run_pipeline",
    "select_features",
    "sphere",
    "strong_treatments",
    "treatment_strength",
    "variance_threshold",
]
