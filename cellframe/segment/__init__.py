"""Segmentation (DOMAIN.md §4): U-Net, Otsu baseline, test-time augmentation,
Mask R-CNN, instance merge, metrics, contour assist, method advice.

Names are imported lazily, so ``import cellframe.segment`` does not load torch
until a model is used.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES: dict[str, str] = {
    "DEFAULT_TTA": "augment",
    "DIHEDRAL": "augment",
    "DSB_THRESHOLDS": "metrics",
    "AssistResult": "contour",
    "CheckpointError": "unet",
    "MaskRCNNSegmenter": "maskrcnn",
    "OBJECTS_SCHEMA": "objects",
    "RoughROI": "contour",
    "SiteSpec": "pipeline",
    "TrainHistory": "train",
    "UNet": "unet",
    "UNetConfig": "unet",
    "advise": "advise",
    "apply_transform": "augment",
    "assist_contour": "contour",
    "create_maskrcnn": "maskrcnn",
    "create_unet": "unet",
    "dsb_score": "metrics",
    "iou_matrix": "metrics",
    "jaccard": "metrics",
    "labels_from_probabilities": "instances",
    "load_unet": "unet",
    "merge_instances": "tta",
    "methods_table": "advise",
    "objects_table": "objects",
    "otsu_segment": "otsu",
    "predict_proba": "predict",
    "read_rois": "contour",
    "resolve_device": "unet",
    "rois_to_labels": "contour",
    "save_unet": "unet",
    "segment_sites": "pipeline",
    "sites_from_paths": "pipeline",
    "train_maskrcnn": "maskrcnn",
    "train_unet": "train",
    "tta_delta": "metrics",
    "tta_instances": "tta",
    "tta_predict_proba": "tta",
    "undo_transform": "augment",
    "unet_segment": "predict",
    "write_objects": "pipeline",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        value = getattr(importlib.import_module(f"cellframe.segment.{_NAMES[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cellframe.segment' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
