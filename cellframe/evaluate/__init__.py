"""Evaluation: similarity, retrieval metrics, copairs-compatible AP and p-values (cross-fitted after a correction), replicate metrics, the batch-correction panel."""

# ruff: noqa: F401  (the TYPE_CHECKING imports are the re-exports type checkers see)

from __future__ import annotations

from typing import TYPE_CHECKING

from cellframe._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "average_precision": "pairs",
        "ComputeOptions": "similarity",
        "CrossFit": "crossfit",
        "PairRules": "pairs",
        "average_precision_p_values": "significance",
        "batch_panel": "batch",
        "benjamini_hochberg": "significance",
        "check_float32_similarity": "similarity",
        "clisi": "batch",
        "compare": "batch",
        "control_folds": "crossfit",
        "expected_average_precision": "significance",
        "cosine_similarity": "similarity",
        "folds_of_enrichment": "retrieval",
        "graph_connectivity": "batch",
        "grit": "replicates",
        "hierarchical_fdr": "significance",
        "hits_at_top": "retrieval",
        "ilisi": "batch",
        "iter_similarity_blocks": "similarity",
        "kbet": "batch",
        "label_matrix": "pairs",
        "leiden_clusters": "batch",
        "leiden_nmi_ari": "batch",
        "lisi": "batch",
        "map_control": "batch",
        "map_nonrep": "batch",
        "mean_average_precision": "significance",
        "MoaAccuracy": "moa",
        "nearest_neighbour_moa": "moa",
        "NoNeighbourWarning": "moa",
        "normalized_average_precision": "significance",
        "nsc_accuracy": "moa",
        "nscb_accuracy": "moa",
        "null_average_precision": "significance",
        "percent_replicating": "replicates",
        "phenotypic_activity": "pairs",
        "recall_at_k": "pairs",
        "ReplicateResult": "replicates",
        "retrieval_map": "retrieval",
        "retrieval_metrics": "retrieval",
        "RetrievalResult": "retrieval",
        "silhouette_batch": "batch",
        "silhouette_label": "batch",
        "top_k_similar": "similarity",
    },
)

if TYPE_CHECKING:  # pragma: no cover
    from cellframe.evaluate.batch import (
        batch_panel,
        clisi,
        compare,
        graph_connectivity,
        ilisi,
        kbet,
        leiden_clusters,
        leiden_nmi_ari,
        lisi,
        map_control,
        map_nonrep,
        silhouette_batch,
        silhouette_label,
    )
    from cellframe.evaluate.crossfit import CrossFit, control_folds
    from cellframe.evaluate.moa import (
        MoaAccuracy,
        NoNeighbourWarning,
        nearest_neighbour_moa,
        nsc_accuracy,
        nscb_accuracy,
    )
    from cellframe.evaluate.pairs import (
        PairRules,
        average_precision,
        label_matrix,
        phenotypic_activity,
        recall_at_k,
    )
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
        expected_average_precision,
        hierarchical_fdr,
        mean_average_precision,
        normalized_average_precision,
        null_average_precision,
    )
    from cellframe.evaluate.similarity import (
        ComputeOptions,
        check_float32_similarity,
        cosine_similarity,
        iter_similarity_blocks,
        top_k_similar,
    )
