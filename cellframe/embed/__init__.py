"""Single-cell embeddings: crops, pre-trained CNN features, weakly supervised training.

DOMAIN.md §5 (the DeepProfiler workflow). Importing this package is cheap;
PyTorch and timm load when a name that needs them is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY_NAMES: dict[str, str] = {
    "Augmentation": "cellframe.embed.augment",
    "BOX_SIZE": "cellframe.embed.crops",
    "CellEmbedder": "cellframe.embed.embedders",
    "ChannelEmbedder": "cellframe.embed.embedders",
    "EmbedTiming": "cellframe.embed.extract",
    "FEATURE_LAYER": "cellframe.embed.embedders",
    "SiteCropDataset": "cellframe.embed.dataset",
    "TrainConfig": "cellframe.embed.train",
    "TrainResult": "cellframe.embed.train",
    "WeightsMismatchError": "cellframe.embed.weights",
    "augment_batch": "cellframe.embed.augment",
    "balanced_indices": "cellframe.embed.train",
    "collect_crops": "cellframe.embed.train",
    "create_backbone": "cellframe.embed.weights",
    "crop_boxes": "cellframe.embed.crops",
    "crop_loader": "cellframe.embed.dataset",
    "crop_objects": "cellframe.embed.crops",
    "deepprofiler_feature_names": "cellframe.embed.deepprofiler",
    "to_deepprofiler_names": "cellframe.embed.deepprofiler",
    "embed_objects": "cellframe.embed.extract",
    "lite0_package_state_dict": "cellframe.embed.weights",
    "load_checkpoint": "cellframe.embed.embedders",
    "split_leave_cells_out": "cellframe.embed.train",
    "split_leave_plates_out": "cellframe.embed.train",
    "tap_layer": "cellframe.embed.embedders",
    "train_embedder": "cellframe.embed.train",
    "write_embeddings": "cellframe.embed.extract",
}

__all__ = [
    "BOX_SIZE",
    "FEATURE_LAYER",
    "Augmentation",
    "CellEmbedder",
    "ChannelEmbedder",
    "EmbedTiming",
    "SiteCropDataset",
    "TrainConfig",
    "TrainResult",
    "WeightsMismatchError",
    "augment_batch",
    "balanced_indices",
    "collect_crops",
    "create_backbone",
    "crop_boxes",
    "crop_loader",
    "crop_objects",
    "deepprofiler_feature_names",
    "embed_objects",
    "lite0_package_state_dict",
    "load_checkpoint",
    "split_leave_cells_out",
    "split_leave_plates_out",
    "tap_layer",
    "to_deepprofiler_names",
    "train_embedder",
    "write_embeddings",
]

if TYPE_CHECKING:  # pragma: no cover
    from cellframe.embed.augment import Augmentation, augment_batch
    from cellframe.embed.crops import BOX_SIZE, crop_boxes, crop_objects
    from cellframe.embed.dataset import SiteCropDataset, crop_loader
    from cellframe.embed.deepprofiler import deepprofiler_feature_names, to_deepprofiler_names
    from cellframe.embed.embedders import (
        FEATURE_LAYER,
        CellEmbedder,
        ChannelEmbedder,
        load_checkpoint,
        tap_layer,
    )
    from cellframe.embed.extract import EmbedTiming, embed_objects, write_embeddings
    from cellframe.embed.train import (
        TrainConfig,
        TrainResult,
        balanced_indices,
        collect_crops,
        split_leave_cells_out,
        split_leave_plates_out,
        train_embedder,
    )
    from cellframe.embed.weights import (
        WeightsMismatchError,
        create_backbone,
        lite0_package_state_dict,
    )


def __getattr__(name: str) -> Any:
    if name in _LAZY_NAMES:
        value = getattr(importlib.import_module(_LAZY_NAMES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cellframe.embed' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
