"""Single-cell embeddings: crops, pre-trained CNN features, weakly supervised training.

DOMAIN.md §5 (the DeepProfiler workflow). Importing this package is cheap;
PyTorch and timm load when a name that needs them is first used.
"""

# ruff: noqa: F401  (the TYPE_CHECKING imports are the re-exports type checkers see)

from __future__ import annotations

from typing import TYPE_CHECKING

from cellframe._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "augment_batch": "augment",
        "Augmentation": "augment",
        "balanced_indices": "train",
        "BOX_SIZE": "crops",
        "CellEmbedder": "embedders",
        "ChannelEmbedder": "embedders",
        "check_architecture": "embedders",
        "collect_crops": "train",
        "create_backbone": "weights",
        "crop_boxes": "crops",
        "crop_loader": "dataset",
        "crop_objects": "crops",
        "CropSettings": "extract",
        "deepprofiler_feature_names": "deepprofiler",
        "embed_objects": "extract",
        "EmbedTiming": "extract",
        "FEATURE_LAYER": "embedders",
        "lite0_package_state_dict": "weights",
        "load_checkpoint": "embedders",
        "SiteCropDataset": "dataset",
        "split_leave_cells_out": "train",
        "split_leave_plates_out": "train",
        "tap_layer": "embedders",
        "to_deepprofiler_names": "deepprofiler",
        "train_embedder": "train",
        "TrainConfig": "train",
        "TrainResult": "train",
        "WeightsMismatchError": "weights",
        "write_embeddings": "extract",
    },
)

if TYPE_CHECKING:  # pragma: no cover
    from cellframe.embed.augment import Augmentation, augment_batch
    from cellframe.embed.crops import BOX_SIZE, crop_boxes, crop_objects
    from cellframe.embed.dataset import SiteCropDataset, crop_loader
    from cellframe.embed.deepprofiler import deepprofiler_feature_names, to_deepprofiler_names
    from cellframe.embed.embedders import (
        FEATURE_LAYER,
        CellEmbedder,
        ChannelEmbedder,
        check_architecture,
        load_checkpoint,
        tap_layer,
    )
    from cellframe.embed.extract import CropSettings, EmbedTiming, embed_objects, write_embeddings
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
