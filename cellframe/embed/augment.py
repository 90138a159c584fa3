"""Augmentations of crop batches for weakly supervised training (DOMAIN.md §5).

All operations act on a whole batch ``(B, C, H, W)`` on its device, with
per-crop random parameters drawn from a ``torch.Generator`` so a run is
reproducible. Crops are expected scaled to about [0, 1] per channel
(:func:`cellframe.embed.embedders.scale_per_channel_max`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["Augmentation", "augment_batch"]


@dataclass(frozen=True)
class Augmentation:
    """Parameters of :func:`augment_batch` (defaults from DOMAIN.md §5).

    Attributes
    ----------
    crop_p : float
        Probability of a random crop resized back to the full size.
    crop_min_area : float
        Smallest share of the area kept by that crop (0.8).
    flip_p : float
        Probability of a horizontal flip.
    rotate90 : bool
        Rotate by a random multiple of 90 degrees.
    brightness : float
        Per-channel additive shift drawn from [-brightness, +brightness]
        (0.1: +-10% of the [0, 1] range).
    contrast : float
        Per-channel factor drawn from [1 - contrast, 1 + contrast] (0.2),
        applied around the channel's mean.
    """

    crop_p: float = 0.5
    crop_min_area: float = 0.8
    flip_p: float = 0.5
    rotate90: bool = True
    brightness: float = 0.1
    contrast: float = 0.2


def _uniform(shape: tuple[int, ...], low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=gen)


def augment_batch(
    x: torch.Tensor, generator: torch.Generator, params: Augmentation | None = None
) -> torch.Tensor:
    """Randomly crop-resize, flip, rotate and change brightness/contrast of each crop.

    Parameters
    ----------
    x : torch.Tensor, shape (B, C, H, W)
        Float crops, square (``H == W``) for 90-degree rotations.
    generator : torch.Generator
        CPU generator for the random parameters.
    params : Augmentation, optional
        Strengths; default :class:`Augmentation()`.

    Returns
    -------
    torch.Tensor, shape (B, C, H, W)
        Augmented crops, same dtype and device.
    """
    p = params or Augmentation()
    b, c, h, w = x.shape
    dev = x.device
    out = x
    # Random crop of >= crop_min_area of the area, resized back (an affine zoom).
    if p.crop_p > 0:
        chosen = torch.rand(b, generator=generator) < p.crop_p
        if chosen.any():
            area = _uniform((b,), p.crop_min_area, 1.0, generator)
            side = area.sqrt()
            shift_x = _uniform((b,), -1.0, 1.0, generator) * (1 - side)
            shift_y = _uniform((b,), -1.0, 1.0, generator) * (1 - side)
            theta = torch.zeros(b, 2, 3)
            theta[:, 0, 0] = side
            theta[:, 1, 1] = side
            theta[:, 0, 2] = shift_x
            theta[:, 1, 2] = shift_y
            idx = chosen.nonzero().squeeze(1)
            grid = F.affine_grid(
                theta[idx].to(dev, out.dtype), [len(idx), c, h, w], align_corners=False
            )
            out = out.clone()
            out[idx.to(dev)] = F.grid_sample(
                out[idx.to(dev)], grid, mode="bilinear", padding_mode="border", align_corners=False
            )
    if p.flip_p > 0:
        flip = (torch.rand(b, generator=generator) < p.flip_p).to(dev)
        out = torch.where(flip[:, None, None, None], out.flip(-1), out)
    if p.rotate90 and h == w:
        k = torch.randint(0, 4, (b,), generator=generator)
        rotated = out.clone()
        for turns in (1, 2, 3):
            idx = (k == turns).nonzero().squeeze(1).to(dev)
            if len(idx):
                rotated[idx] = torch.rot90(out[idx], turns, dims=(2, 3))
        out = rotated
    if p.contrast > 0:
        factor = _uniform((b, c, 1, 1), 1 - p.contrast, 1 + p.contrast, generator).to(
            dev, out.dtype
        )
        mean = out.mean(dim=(2, 3), keepdim=True)
        out = (out - mean) * factor + mean
    if p.brightness > 0:
        shift = _uniform((b, c, 1, 1), -p.brightness, p.brightness, generator).to(dev, out.dtype)
        out = out + shift
    return out
