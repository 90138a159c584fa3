"""Altair charts of cellframe tables and a standalone offline HTML report."""

# ruff: noqa: F401  (the TYPE_CHECKING imports are the re-exports type checkers see)

from __future__ import annotations

from typing import TYPE_CHECKING

from cellframe._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "activity_answer": "sections",
        "assay_prediction_chart": "assays",
        "assay_prediction_section": "sections",
        "auroc_threshold_chart": "charts",
        "cell_crop_montage": "images",
        "classical_vs_deep_section": "agreement",
        "compare_chart": "compare",
        "compare_metrics_chart": "compare",
        "compare_section": "compare",
        "compound_activity_chart": "compounds",
        "compound_activity_section": "sections",
        "control_separation": "sections",
        "correction_section": "sections",
        "crop_montage": "images",
        "feature_agreement": "agreement",
        "feature_agreement_chart": "agreement",
        "finite_rows": "charts",
        "lambda_sweep_chart": "charts",
        "map_vs_enrichment_chart": "charts",
        "moa_retrieval_chart": "compounds",
        "moa_retrieval_section": "sections",
        "moa_summary": "compounds",
        "outline_overlay": "images",
        "pca_before_after_chart": "charts",
        "pca_chart": "charts",
        "pca_coordinates": "charts",
        "plate_health_section": "sections",
        "plate_heatmap_chart": "plate",
        "plate_layout": "plate",
        "png_data_uri": "images",
        "precision_recall_chart": "charts",
        "qc_outlier_chart": "charts",
        "replicate_section": "sections",
        "replicate_similarity_chart": "compounds",
        "ReportImage": "images",
        "ReportSection": "html",
        "save_png": "html",
        "scale_intensity": "images",
        "segmentation_section": "sections",
        "tta_delta_chart": "charts",
        "tta_section": "sections",
        "umap_chart": "charts",
        "well_predicted_counts": "assays",
        "well_predicted_overlap_chart": "charts",
        "write_compare_report": "compare",
        "write_report": "html",
    },
)

if TYPE_CHECKING:  # pragma: no cover
    from cellframe.report.agreement import (
        classical_vs_deep_section,
        feature_agreement,
        feature_agreement_chart,
    )
    from cellframe.report.assays import assay_prediction_chart, well_predicted_counts
    from cellframe.report.charts import (
        auroc_threshold_chart,
        finite_rows,
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
    from cellframe.report.compare import (
        compare_chart,
        compare_metrics_chart,
        compare_section,
        write_compare_report,
    )
    from cellframe.report.compounds import (
        compound_activity_chart,
        moa_retrieval_chart,
        moa_summary,
        replicate_similarity_chart,
    )
    from cellframe.report.html import ReportSection, save_png, write_report
    from cellframe.report.images import (
        ReportImage,
        cell_crop_montage,
        crop_montage,
        outline_overlay,
        png_data_uri,
        scale_intensity,
    )
    from cellframe.report.plate import plate_heatmap_chart, plate_layout
    from cellframe.report.sections import (
        activity_answer,
        assay_prediction_section,
        compound_activity_section,
        control_separation,
        correction_section,
        moa_retrieval_section,
        plate_health_section,
        replicate_section,
        segmentation_section,
        tta_section,
    )
