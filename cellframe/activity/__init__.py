"""Compound activity prediction from chemical structure, morphology and gene expression.

DOMAIN.md §6. Importing this package is cheap: RDKit, PyTorch and scikit-learn
are imported when a name that needs them is first used.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> module that defines it.
_NAMES: dict[str, str] = {
    "AlignedFeatures": "features",
    "AssayMatrix": "matrix",
    "CleaningResult": "clean",
    "CrossValidationResult": "crossval",
    "DMPNNEncoder": "networks",
    "DescriptorNormalizer": "descriptors",
    "ExperimentConfig": "experiment",
    "FOLD_METHODS": "splits",
    "GraphSet": "graph",
    "HOLDOUT_SPLITS": "holdout",
    "HoldoutResult": "holdout",
    "MultitaskClassifier": "model",
    "MultitaskNetwork": "networks",
    "PUBLISHED_MODALITIES": "published",
    "RandomForestBaseline": "model",
    "align_profiles": "features",
    "assay_fold_metrics": "metrics",
    "assay_matrix_from_long": "matrix",
    "assay_matrix_from_wide": "matrix",
    "assay_metrics": "metrics",
    "clean_assay_matrix": "clean",
    "cross_validate": "crossval",
    "descriptor_names": "descriptors",
    "early_fusion": "fusion",
    "featurize_molecules": "graph",
    "holdout_metrics": "holdout",
    "kmeans_folds": "splits",
    "late_fusion": "fusion",
    "load_config": "experiment",
    "mean_auroc_per_model": "holdout",
    "make_folds": "splits",
    "masked_bce_loss": "networks",
    "morgan_fingerprints": "chem",
    "morgan_frame": "chem",
    "murcko_scaffolds": "chem",
    "noam_learning_rate": "model",
    "pains_matches": "chem",
    "parse_smiles": "chem",
    "random_folds": "splits",
    "random_partition": "splits",
    "rdkit_descriptors": "descriptors",
    "read_assay_matrix": "matrix",
    "read_published_auroc": "published",
    "retrospective_union": "fusion",
    "run_experiment": "experiment",
    "scaffold_folds": "splits",
    "scaffold_partition": "splits",
    "search_hyperparameters": "model",
    "summary_table": "metrics",
    "train_holdout": "holdout",
    "well_predicted_sets": "published",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        value = getattr(importlib.import_module(f"cellframe.activity.{_NAMES[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cellframe.activity' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
