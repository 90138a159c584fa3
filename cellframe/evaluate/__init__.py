"""Evaluation: similarity, retrieval metrics, copairs-compatible AP and p-values (cross-fitted after a correction), replicate metrics."""

from cellframe.evaluate.crossfit import (
    activity_from_store,
    control_folds,
    correction_from_provenance,
)
from cellframe.evaluate.pairs import average_precision, label_matrix, phenotypic_activity
from cellframe.evaluate.replicates import ReplicateResult, grit, percent_replicating
from cellframe.evaluate.retrieval import (
    RetrievalResult,
    folds_of_enrichment,
    hits_at_top,
    retrieval_map,
    retrieval_metrics,
)
from cellframe.evaluate.significance import (
    average_precision_p_values,
    benjamini_hochberg,
    mean_average_precision,
    null_average_precision,
)
from cellframe.evaluate.similarity import (
    check_float32_similarity,
    cosine_similarity,
    iter_similarity_blocks,
    top_k_similar,
)
from cellframe.evaluate.sql import register_evaluate_sql

__all__ = [
    "ReplicateResult",
    "RetrievalResult",
    "activity_from_store",
    "average_precision",
    "average_precision_p_values",
    "benjamini_hochberg",
    "check_float32_similarity",
    "control_folds",
    "correction_from_provenance",
    "cosine_similarity",
    "folds_of_enrichment",
    "grit",
    "hits_at_top",
    "iter_similarity_blocks",
    "label_matrix",
    "mean_average_precision",
    "null_average_precision",
    "percent_replicating",
    "phenotypic_activity",
    "register_evaluate_sql",
    "retrieval_map",
    "retrieval_metrics",
    "top_k_similar",
]
