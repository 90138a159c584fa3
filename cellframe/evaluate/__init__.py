"""Evaluation: similarity, retrieval metrics, copairs-compatible AP and p-values (cross-fitted after a correction), replicate metrics."""

# ruff: noqa: F401  (the TYPE_CHECKING imports are the re-exports type checkers see)

from __future__ import annotations

from typing import TYPE_CHECKING

from cellframe._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "average_precision": "pairs",
        "average_precision_p_values": "significance",
        "benjamini_hochberg": "significance",
        "check_float32_similarity": "similarity",
        "control_folds": "crossfit",
        "cosine_similarity": "similarity",
        "folds_of_enrichment": "retrieval",
        "grit": "replicates",
        "hits_at_top": "retrieval",
        "iter_similarity_blocks": "similarity",
        "label_matrix": "pairs",
        "mean_average_precision": "significance",
        "null_average_precision": "significance",
        "percent_replicating": "replicates",
        "phenotypic_activity": "pairs",
        "ReplicateResult": "replicates",
        "retrieval_map": "retrieval",
        "retrieval_metrics": "retrieval",
        "RetrievalResult": "retrieval",
        "top_k_similar": "similarity",
    },
)

if TYPE_CHECKING:  # pragma: no cover
    from cellframe.evaluate.crossfit import control_folds
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
