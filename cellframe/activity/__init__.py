"""Compound activity prediction from chemical structure, morphology and gene expression.

DOMAIN.md §6. Importing this package is cheap: RDKit, PyTorch and scikit-learn
are imported when a name that needs them is first used.
"""

# ruff: noqa: F401  (the TYPE_CHECKING imports are the re-exports type checkers see)

from __future__ import annotations

from typing import TYPE_CHECKING

from cellframe._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "ActivityModel": "saved",
        "align_profiles": "features",
        "AlignedFeatures": "features",
        "applicability_domain": "uncertainty",
        "assay_fold_metrics": "metrics",
        "assay_matrix_from_long": "matrix",
        "assay_matrix_from_wide": "matrix",
        "assay_metrics": "metrics",
        "AssayMatrix": "matrix",
        "CalibratedEnsemble": "ensemble",
        "clean_assay_matrix": "clean",
        "CleaningResult": "clean",
        "cross_validate": "crossval",
        "CrossValidationResult": "crossval",
        "descriptor_names": "descriptors",
        "DescriptorNormalizer": "descriptors",
        "DMPNNEncoder": "networks",
        "early_fusion": "fusion",
        "Ensemble": "holdout",
        "ExperimentConfig": "experiment",
        "featurize_molecules": "graph",
        "FOLD_METHODS": "splits",
        "GraphSet": "graph",
        "holdout_metrics": "holdout",
        "HOLDOUT_SPLITS": "holdout",
        "HoldoutResult": "holdout",
        "honest_baselines": "baselines",
        "kmeans_folds": "splits",
        "late_fusion": "fusion",
        "load_activity_model": "saved",
        "load_config": "experiment",
        "make_folds": "splits",
        "masked_bce_loss": "networks",
        "MatrixColumns": "matrix",
        "MatrixMarketNames": "matrix",
        "max_train_similarity": "uncertainty",
        "mean_auroc_per_model": "holdout",
        "morgan_fingerprints": "chem",
        "morgan_frame": "chem",
        "MultitaskClassifier": "model",
        "MultitaskNetwork": "networks",
        "murcko_scaffolds": "chem",
        "noam_learning_rate": "model",
        "pains_matches": "chem",
        "parse_smiles": "chem",
        "predict_library": "library",
        "prediction_spread": "uncertainty",
        "PUBLISHED_MODALITIES": "published",
        "random_folds": "splits",
        "random_partition": "splits",
        "RandomForestBaseline": "model",
        "rdkit_descriptors": "descriptors",
        "read_assay_matrix": "matrix",
        "read_published_auroc": "published",
        "retrospective_union": "fusion",
        "run_experiment": "experiment",
        "save_activity_model": "saved",
        "scaffold_folds": "splits",
        "scaffold_partition": "splits",
        "search_hyperparameters": "model",
        "summary_table": "metrics",
        "train_holdout": "holdout",
        "tree_features": "trees",
        "TreeBaseline": "trees",
        "well_predicted_sets": "published",
        "WithDescriptors": "holdout",
    },
)

if TYPE_CHECKING:  # pragma: no cover
    from cellframe.activity.baselines import honest_baselines
    from cellframe.activity.chem import (
        morgan_fingerprints,
        morgan_frame,
        murcko_scaffolds,
        pains_matches,
        parse_smiles,
    )
    from cellframe.activity.clean import CleaningResult, clean_assay_matrix
    from cellframe.activity.crossval import CrossValidationResult, cross_validate
    from cellframe.activity.descriptors import (
        DescriptorNormalizer,
        descriptor_names,
        rdkit_descriptors,
    )
    from cellframe.activity.ensemble import CalibratedEnsemble
    from cellframe.activity.experiment import ExperimentConfig, load_config, run_experiment
    from cellframe.activity.features import AlignedFeatures, align_profiles
    from cellframe.activity.fusion import early_fusion, late_fusion, retrospective_union
    from cellframe.activity.graph import GraphSet, featurize_molecules
    from cellframe.activity.holdout import (
        HOLDOUT_SPLITS,
        Ensemble,
        HoldoutResult,
        WithDescriptors,
        holdout_metrics,
        mean_auroc_per_model,
        train_holdout,
    )
    from cellframe.activity.library import predict_library
    from cellframe.activity.matrix import (
        AssayMatrix,
        MatrixColumns,
        MatrixMarketNames,
        assay_matrix_from_long,
        assay_matrix_from_wide,
        read_assay_matrix,
    )
    from cellframe.activity.metrics import assay_fold_metrics, assay_metrics, summary_table
    from cellframe.activity.model import (
        MultitaskClassifier,
        RandomForestBaseline,
        noam_learning_rate,
        search_hyperparameters,
    )
    from cellframe.activity.networks import DMPNNEncoder, MultitaskNetwork, masked_bce_loss
    from cellframe.activity.published import (
        PUBLISHED_MODALITIES,
        read_published_auroc,
        well_predicted_sets,
    )
    from cellframe.activity.saved import ActivityModel, load_activity_model, save_activity_model
    from cellframe.activity.splits import (
        FOLD_METHODS,
        kmeans_folds,
        make_folds,
        random_folds,
        random_partition,
        scaffold_folds,
        scaffold_partition,
    )
    from cellframe.activity.trees import TreeBaseline, tree_features
    from cellframe.activity.uncertainty import (
        applicability_domain,
        max_train_similarity,
        prediction_spread,
    )
