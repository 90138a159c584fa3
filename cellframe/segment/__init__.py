"""Segmentation (DOMAIN.md §4, §8): U-Net, Otsu baseline, CellProfiler-style objects,
test-time augmentation, Mask R-CNN, instance merge, metrics, contour assist, method advice.

Names are imported lazily, so ``import cellframe.segment`` does not load torch
until a model is used.
"""

# ruff: noqa: F401  (the TYPE_CHECKING imports are the re-exports type checkers see)

from __future__ import annotations

from typing import TYPE_CHECKING

from cellframe._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "advise": "advise",
        "apply_transform": "augment",
        "assist_contour": "contour",
        "AssistResult": "contour",
        "CheckpointError": "unet",
        "create_maskrcnn": "maskrcnn",
        "create_unet": "unet",
        "DeclumpSettings": "classical",
        "DEFAULT_TTA": "augment",
        "DIHEDRAL": "augment",
        "dsb_score": "metrics",
        "DSB_THRESHOLDS": "metrics",
        "identify_primary": "classical",
        "identify_secondary": "classical",
        "identify_tertiary": "classical",
        "iou_matrix": "metrics",
        "jaccard": "metrics",
        "labels_from_probabilities": "instances",
        "load_unet": "unet",
        "MaskRCNNSegmenter": "maskrcnn",
        "merge_instances": "tta",
        "methods_table": "advise",
        "OBJECTS_SCHEMA": "objects",
        "objects_table": "objects",
        "otsu_segment": "otsu",
        "predict_proba": "predict",
        "read_rois": "contour",
        "resolve_device": "unet",
        "rois_to_labels": "contour",
        "relate_objects": "classical",
        "RoughROI": "contour",
        "save_labels": "classical",
        "save_unet": "unet",
        "segment_site": "classical",
        "segment_sites": "pipeline",
        "sites_from_paths": "pipeline",
        "SiteObjects": "classical",
        "SiteSpec": "pipeline",
        "threshold_image": "classical",
        "ThresholdSettings": "classical",
        "train_maskrcnn": "maskrcnn",
        "train_unet": "train",
        "TrainHistory": "train",
        "UNetTrainConfig": "train",
        "tta_delta": "metrics",
        "tta_instances": "tta",
        "tta_predict_proba": "tta",
        "undo_transform": "augment",
        "UNet": "unet",
        "unet_segment": "predict",
        "UNetConfig": "unet",
        "write_objects": "pipeline",
    },
)

if TYPE_CHECKING:  # pragma: no cover
    from cellframe.segment.advise import advise, methods_table
    from cellframe.segment.augment import DEFAULT_TTA, DIHEDRAL, apply_transform, undo_transform
    from cellframe.segment.classical import (
        DeclumpSettings,
        SiteObjects,
        ThresholdSettings,
        identify_primary,
        identify_secondary,
        identify_tertiary,
        relate_objects,
        save_labels,
        segment_site,
        threshold_image,
    )
    from cellframe.segment.contour import (
        AssistResult,
        RoughROI,
        assist_contour,
        read_rois,
        rois_to_labels,
    )
    from cellframe.segment.instances import labels_from_probabilities
    from cellframe.segment.maskrcnn import MaskRCNNSegmenter, create_maskrcnn, train_maskrcnn
    from cellframe.segment.metrics import DSB_THRESHOLDS, dsb_score, iou_matrix, jaccard, tta_delta
    from cellframe.segment.objects import OBJECTS_SCHEMA, objects_table
    from cellframe.segment.otsu import otsu_segment
    from cellframe.segment.pipeline import SiteSpec, segment_sites, sites_from_paths, write_objects
    from cellframe.segment.predict import predict_proba, unet_segment
    from cellframe.segment.train import TrainHistory, UNetTrainConfig, train_unet
    from cellframe.segment.tta import merge_instances, tta_instances, tta_predict_proba
    from cellframe.segment.unet import (
        CheckpointError,
        UNet,
        UNetConfig,
        create_unet,
        load_unet,
        resolve_device,
        save_unet,
    )
