"""Tiled, batched U-Net inference for images of any size, with optional TTA (DOMAIN.md §4).

The image is cut into overlapping tiles; tiles go through the network in
batches on one device; each tile's probabilities are weighted by a ramp that
falls towards its edges (where the network sees least context) and the
weighted sum is normalized, so seams vanish. With test-time augmentation every
tile batch is also transformed by each flip/rotation, run in the same forward
pass, transformed back and averaged: the semantic merge of DOMAIN.md §4.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from cellframe._progress import progress as _progress
from cellframe.errors import InvalidInputError
from cellframe.segment._checks import as_image_stack, normalize_percentile
from cellframe.segment.augment import apply_transform, resolve_transforms, undo_transform
from cellframe.segment.instances import labels_from_probabilities
from cellframe.segment.unet import UNet

__all__ = ["predict_proba", "tile_starts", "unet_segment"]


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of length ``tile`` covering ``size`` with >= ``overlap`` shared.

    Examples
    --------
    >>> tile_starts(500, 256, 32)
    [0, 224, 244]
    >>> tile_starts(100, 256, 32)
    [0]
    """
    if size <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, size - tile, stride))
    return [*starts, size - tile]


def _ramp(n: int, overlap: int) -> np.ndarray:
    """Blending weight along one tile axis: 1 in the middle, falling linearly over ``overlap``."""
    if overlap <= 0:
        return np.ones(n, dtype=np.float32)
    i = np.arange(n)
    edge = np.minimum(i, n - 1 - i)
    return np.minimum(1.0, (edge + 1) / (overlap + 1)).astype(np.float32)


def _activate(logits: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


def _forward_tta(
    model: UNet, x: torch.Tensor, transforms: Sequence[str], max_batch: int
) -> torch.Tensor:
    """Mean of the de-augmented probabilities of ``x`` under ``transforms``, batched.

    Every (tile, transform) pair goes through the network in forward passes of
    at most ``max_batch`` images, the size one plain pass uses: on a CPU a
    larger batch only adds memory traffic, on a GPU ``max_batch`` can be raised.
    """
    groups: dict[tuple[int, ...], list[str]] = {}
    for t in transforms:  # non-square tiles: rotations change the shape, batch per shape
        groups.setdefault(tuple(apply_transform(x, t).shape), []).append(t)
    total = torch.zeros((x.shape[0], model.config.out_channels, *x.shape[-2:]), device=x.device)
    for names in groups.values():
        batch = torch.cat([apply_transform(x, t) for t in names], dim=0)
        probs = torch.cat([_activate(model(part)) for part in batch.split(max_batch, dim=0)])
        for t, p in zip(names, probs.split(x.shape[0], dim=0), strict=True):
            total += undo_transform(p, t)
    return total / len(transforms)


def predict_proba(
    model: UNet,
    image: np.ndarray,
    *,
    tile: int = 256,
    overlap: int = 32,
    batch_size: int = 4,
    tta: str | Sequence[str] = "none",
    normalize: bool = True,
    progress: bool = False,
) -> np.ndarray:
    """Probability maps of a U-Net over a whole image, predicted in overlapping tiles.

    Parameters
    ----------
    model : UNet
        Runs on the device its parameters are on (move it once with ``.to``).
    image : numpy.ndarray, shape (H, W) or (C, H, W)
        With ``C == model.config.in_channels``.
    tile : int, default 256
        Tile side in pixels (smaller images are one tile).
    overlap : int, default 32
        Pixels shared by neighbouring tiles; must be < ``tile // 2``.
    batch_size : int, default 4
        Images per forward pass. With TTA, the transformed copies of each group
        of ``batch_size`` tiles are packed into passes of this size too.
    tta : str or sequence of str, default "none"
        ``"none"``, ``"default"`` (identity, hflip, vflip, rot90/180/270),
        ``"dihedral"`` (all 8) or a list of names from
        :data:`cellframe.segment.augment.TRANSFORMS`. Probabilities are averaged
        after undoing each transform.
    normalize : bool, default True
        Apply :func:`normalize_percentile` first (as in training).
    progress : bool, default False
        Show a progress bar over tile batches.

    Returns
    -------
    numpy.ndarray of float32, shape (out_channels, H, W)
        Sigmoid for 1 output, softmax for 3.

    Raises
    ------
    InvalidInputError
        Wrong dimensions, wrong channel count or bad tiling parameters.
    EmptyInputError
        Empty or all-zero image.
    """
    stack = as_image_stack(image)
    cfg = model.config
    if stack.shape[0] != cfg.in_channels:
        raise InvalidInputError(
            f"image has {stack.shape[0]} channel(s) but the U-Net reads {cfg.in_channels}; "
            "select the channel(s) it was trained on (read_site(..., channels=[...]))"
        )
    if tile < 2**cfg.depth or not 0 <= overlap < tile // 2 or batch_size < 1:
        raise InvalidInputError(
            f"need tile >= {2**cfg.depth}, 0 <= overlap < tile // 2 and batch_size >= 1; "
            f"got tile={tile}, overlap={overlap}, batch_size={batch_size}"
        )
    transforms = resolve_transforms(tta)
    x = normalize_percentile(stack) if normalize else stack.astype(np.float32)
    _, h, w = x.shape
    th, tw = min(tile, h), min(tile, w)
    boxes = [(y, xx) for y in tile_starts(h, th, overlap) for xx in tile_starts(w, tw, overlap)]
    weight = np.outer(_ramp(th, overlap if h > tile else 0), _ramp(tw, overlap if w > tile else 0))
    acc = np.zeros((cfg.out_channels, h, w), dtype=np.float32)
    wsum = np.zeros((h, w), dtype=np.float32)
    device = next(model.parameters()).device
    chunks = [boxes[i : i + batch_size] for i in range(0, len(boxes), batch_size)]
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for chunk in _progress(chunks, desc="predict", unit="batch", enabled=progress):
                batch = np.stack([x[:, y : y + th, xx : xx + tw] for y, xx in chunk])
                probs = _forward_tta(
                    model, torch.from_numpy(batch).to(device), transforms, batch_size
                )
                probs_np = probs.float().cpu().numpy()
                for (y, xx), p in zip(chunk, probs_np, strict=True):
                    acc[:, y : y + th, xx : xx + tw] += p * weight
                    wsum[y : y + th, xx : xx + tw] += weight
    finally:
        model.train(was_training)
    return acc / wsum


def unet_segment(
    model: UNet,
    image: np.ndarray,
    *,
    tta: str | Sequence[str] = "none",
    threshold: float = 0.5,
    min_size: int = 10,
    tile: int = 256,
    overlap: int = 32,
    batch_size: int = 4,
    normalize: bool = True,
    progress: bool = False,
) -> np.ndarray:
    """Segment an image with a U-Net: tiled probabilities (with optional TTA), then instances.

    One output channel: probability > ``threshold`` (0.5, DOMAIN.md §4), then
    connected components. Three: interior seeds grown by watershed. Other
    parameters are those of :func:`predict_proba`.

    Returns
    -------
    numpy.ndarray of int32, shape (H, W)
        Label image.
    """
    probs = predict_proba(
        model,
        image,
        tile=tile,
        overlap=overlap,
        batch_size=batch_size,
        tta=tta,
        normalize=normalize,
        progress=progress,
    )
    return labels_from_probabilities(probs, threshold=threshold, min_size=min_size)
