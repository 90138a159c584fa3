"""Altair charts of cellframe tables and a standalone offline HTML report."""

from cellframe.report.charts import (
    auroc_threshold_chart,
    lambda_sweep_chart,
    map_vs_enrichment_chart,
    pca_before_after_chart,
    pca_chart,
    pca_coordinates,
    precision_recall_chart,
    qc_outlier_chart,
    tta_delta_chart,
    umap_chart,
    well_predicted_overlap_chart,
)
from cellframe.report.html import ReportSection, save_png, write_report

__all__ = [
    "ReportSection",
    "auroc_threshold_chart",
    "lambda_sweep_chart",
    "map_vs_enrichment_chart",
    "pca_before_after_chart",
    "pca_chart",
    "pca_coordinates",
    "precision_recall_chart",
    "qc_outlier_chart",
    "save_png",
    "tta_delta_chart",
    "umap_chart",
    "well_predicted_overlap_chart",
    "write_report",
]
