"""Mask R-CNN (torchvision) as an instance segmenter for TTA and the instance merge.

The reference study (Moshkov et al. 2020) pairs the U-Net with Mask R-CNN. Here
torchvision's ``maskrcnn_resnet50_fpn`` is built with ``weights=None,
weights_backbone=None`` (no downloads) and trained from scratch on labelled
images; :class:`MaskRCNNSegmenter` turns its detections into label images, so
it plugs into :func:`cellframe.segment.tta.tta_instances` with ``batched=True``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import ndimage as ndi

from cellframe._progress import progress as _progress
from cellframe.errors import InvalidInputError
from cellframe.segment._checks import as_image_stack, normalize_percentile
from cellframe.segment.augment import DIHEDRAL, apply_transform
from cellframe.segment.instances import relabel_sequential
from cellframe.segment.unet import resolve_device

__all__ = ["MaskRCNNSegmenter", "create_maskrcnn", "train_maskrcnn"]


def create_maskrcnn(
    *, min_size: int = 256, max_size: int = 512, device: str | torch.device | None = None
) -> torch.nn.Module:
    """torchvision Mask R-CNN (ResNet-50 FPN) with 2 classes and random initial weights.

    Parameters
    ----------
    min_size, max_size : int
        torchvision resizes each image so its short side is ``min_size`` (long
        side at most ``max_size``); keep them near the image size on the CPU.
    device : str or torch.device, optional
        Default: CUDA if available, else CPU.
    """
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    model = maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=2, min_size=min_size, max_size=max_size
    )
    return model.to(resolve_device(device))


def _to_rgb_tensor(image: np.ndarray, device: torch.device) -> torch.Tensor:
    stack = as_image_stack(image)
    x = np.clip(normalize_percentile(stack), 0.0, 1.0)
    if x.shape[0] == 1:
        x = np.repeat(x, 3, axis=0)
    elif x.shape[0] != 3:
        raise InvalidInputError(
            f"Mask R-CNN reads 1 or 3 channels; the image has {x.shape[0]}: select channels first"
        )
    return torch.from_numpy(np.ascontiguousarray(x)).to(device)


def _target(labels: np.ndarray, device: torch.device) -> dict[str, torch.Tensor]:
    lab = relabel_sequential(np.asarray(labels))
    n = int(lab.max(initial=0))
    boxes = np.zeros((n, 4), dtype=np.float32)
    for i, sl in enumerate(ndi.find_objects(lab)):
        boxes[i] = (sl[1].start, sl[0].start, sl[1].stop, sl[0].stop)
    masks = (lab[np.newaxis] == np.arange(1, n + 1)[:, None, None]).astype(np.uint8)
    return {
        "boxes": torch.from_numpy(boxes).to(device),
        "labels": torch.ones(n, dtype=torch.int64, device=device),
        "masks": torch.from_numpy(masks).to(device),
    }


@dataclass
class MaskRCNNHistory:
    """Total loss of every training step."""

    loss: list[float] = field(default_factory=list)


def train_maskrcnn(
    model: torch.nn.Module,
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    *,
    steps: int = 100,
    lr: float = 1e-4,
    augment: bool = True,
    seed: int = 0,
    progress: bool = True,
) -> MaskRCNNHistory:
    """Train Mask R-CNN with Adam on whole images, one image per step, random flips/rotations.

    Returns
    -------
    MaskRCNNHistory
        The total loss (sum of torchvision's five losses) per step.
    """
    if len(images) != len(labels) or not images:
        raise InvalidInputError("need as many label images as images (at least one)")
    device = next(model.parameters()).device
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    history = MaskRCNNHistory()
    model.train()
    for _ in _progress(range(steps), desc="train Mask R-CNN", unit="step", enabled=progress):
        k = int(rng.integers(len(images)))
        img, lab = np.asarray(images[k]), np.asarray(labels[k])
        if augment:
            t = DIHEDRAL[int(rng.integers(len(DIHEDRAL)))]
            img, lab = apply_transform(img, t), apply_transform(lab, t)
        losses = model([_to_rgb_tensor(img, device)], [_target(lab, device)])
        loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.loss.append(float(loss.detach()))
    model.eval()
    return history


class MaskRCNNSegmenter:
    """Callable turning Mask R-CNN detections into label images.

    Parameters
    ----------
    model : torch.nn.Module
        A torchvision Mask R-CNN (e.g. from :func:`create_maskrcnn`).
    score_threshold : float, default 0.5
        Detections with a lower score are dropped.
    mask_threshold : float, default 0.5
        Soft-mask probability above which a pixel belongs to the detection.

    Notes
    -----
    Overlapping detections: detections are painted from the highest score
    down, each onto pixels no earlier one claimed.
    """

    def __init__(
        self, model: torch.nn.Module, *, score_threshold: float = 0.5, mask_threshold: float = 0.5
    ) -> None:
        self.model = model
        self.score_threshold = score_threshold
        self.mask_threshold = mask_threshold

    def __call__(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray | list[np.ndarray]:
        """Segment one image (returns a label image) or a list (one forward pass, a list)."""
        single = isinstance(images, np.ndarray)  # a list/tuple is a batch
        batch = [images] if single else list(images)
        device = next(self.model.parameters()).device
        self.model.eval()
        with torch.inference_mode():
            outputs = self.model([_to_rgb_tensor(b, device) for b in batch])
        labels = []
        for b, out in zip(batch, outputs, strict=True):
            h, w = np.asarray(b).shape[-2:]
            lab = np.zeros((h, w), dtype=np.int32)
            order = torch.argsort(out["scores"], descending=True)
            n = 0
            for i in order.tolist():
                if float(out["scores"][i]) < self.score_threshold:
                    break
                m = (out["masks"][i, 0] > self.mask_threshold).cpu().numpy() & (lab == 0)
                if m.any():
                    n += 1
                    lab[m] = n
            labels.append(lab)
        return labels[0] if single else labels
