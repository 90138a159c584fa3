"""Training loop for the U-Net (DOMAIN.md §4): Adam (lr 3e-4), BCE / cross-entropy,
on-the-fly random flips and 90-degree rotations of random patches."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cellframe._progress import progress as _progress
from cellframe.errors import InvalidInputError
from cellframe.segment._checks import as_image_stack, normalize_percentile
from cellframe.segment.augment import DIHEDRAL, apply_transform
from cellframe.segment.unet import UNet, save_unet

__all__ = ["TrainHistory", "UNetTrainConfig", "targets_from_labels", "train_unet"]


@dataclass
class TrainHistory:
    """Mean training loss per epoch and the checkpoint files written."""

    loss: list[float] = field(default_factory=list)
    checkpoints: list[Path] = field(default_factory=list)


def targets_from_labels(labels: np.ndarray, out_channels: int) -> np.ndarray:
    """Training target of a label image.

    Parameters
    ----------
    labels : numpy.ndarray of int, shape (H, W)
        Instance label image (0 = background).
    out_channels : {1, 3}
        1: float32 ``(1, H, W)`` foreground mask. 3: int64 ``(H, W)`` classes
        0 = background, 1 = interior, 2 = boundary (object pixels touching
        another label or the background, scikit-image's ``mode="inner"``).

    Returns
    -------
    numpy.ndarray of float32, shape (1, H, W), or of int64, shape (H, W)
        The foreground mask (``out_channels=1``) or the classes (3).
    """
    from skimage.segmentation import find_boundaries

    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise InvalidInputError(f"a label image must be 2-D, got shape {lab.shape}")
    if out_channels == 1:
        return (lab > 0).astype(np.float32)[np.newaxis]
    if out_channels == 3:
        cls = (lab > 0).astype(np.int64)
        cls[find_boundaries(lab, mode="inner") & (lab > 0)] = 2
        return cls
    raise InvalidInputError(f"out_channels must be 1 or 3, not {out_channels}")


def _pad_to(a: np.ndarray, size: int) -> np.ndarray:
    ph, pw = max(0, size - a.shape[-2]), max(0, size - a.shape[-1])
    if not (ph or pw):
        return a
    pad = [(0, 0)] * (a.ndim - 2) + [(0, ph), (0, pw)]
    return np.pad(a, pad, mode="reflect" if ph < a.shape[-2] and pw < a.shape[-1] else "edge")


@dataclass(frozen=True)
class UNetTrainConfig:
    """Settings of :func:`train_unet` (defaults from DOMAIN.md §4).

    Parameters
    ----------
    epochs, steps_per_epoch : int, default 10 and 20
        Training length: ``epochs * steps_per_epoch`` optimizer steps.
    batch_size, patch_size : int, default 8 and 128
        Patches per step and their side (images smaller are padded by reflection).
    lr : float, default 3e-4
        Adam learning rate.
    augment : bool, default True
        Random flips and 90-degree rotations.
    seed : int, default 0
        Seeds patch sampling, augmentation and torch.

    Raises
    ------
    InvalidInputError
        For a length, batch or patch size that is not a positive integer, or
        a learning rate that is not a positive finite number.

    Examples
    --------
    >>> UNetTrainConfig(epochs=2, steps_per_epoch=5).lr
    0.0003
    """

    epochs: int = 10
    steps_per_epoch: int = 20
    batch_size: int = 8
    patch_size: int = 128
    lr: float = 3e-4
    augment: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "steps_per_epoch", "batch_size", "patch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise InvalidInputError(
                    f"UNetTrainConfig: {name} must be a positive integer, got {value!r}"
                )
        lr = self.lr
        if isinstance(lr, bool) or not isinstance(lr, int | float) or not (0 < lr < np.inf):
            raise InvalidInputError(
                f"UNetTrainConfig: lr must be a positive finite number, got {lr!r} (e.g. 3e-4)"
            )


def train_unet(
    model: UNet,
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    *,
    config: UNetTrainConfig | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> TrainHistory:
    """Train a U-Net on random patches of labelled images.

    Each step draws ``batch_size`` patches (image chosen uniformly, position
    uniformly), applies a random element of the dihedral group to image and
    target alike (flips and 90-degree rotations, on the fly), and takes one
    Adam step on binary cross-entropy (1 output) or cross-entropy (3 outputs).

    Parameters
    ----------
    model : UNet
        Trained in place, on the device its parameters are on.
    images : sequence of numpy.ndarray
        ``(H, W)`` or ``(C, H, W)`` images; normalized with
        :func:`~cellframe.segment._checks.normalize_percentile` as in prediction.
    labels : sequence of numpy.ndarray
        Instance label images of the same ``(H, W)`` (or foreground masks).
    config : UNetTrainConfig, optional
        Length, batch and patch size, learning rate, augmentation and seed;
        ``UNetTrainConfig()`` (10 x 20 steps of 8 patches of 128 px, Adam 3e-4,
        augmented, seed 0) by default.
    checkpoint : path, optional
        Written (overwritten) at the end of every epoch with :func:`save_unet`.
    progress : bool, default True
        Progress bar over steps, showing the running loss.

    Returns
    -------
    TrainHistory

    Raises
    ------
    InvalidInputError
        For unequal numbers of images and label images, or an image whose
        channels or shape do not fit the U-Net or its labels.
    """
    config = UNetTrainConfig() if config is None else config
    epochs, steps_per_epoch = config.epochs, config.steps_per_epoch
    batch_size, patch_size = config.batch_size, config.patch_size
    lr, augment, seed = config.lr, config.augment, config.seed
    if len(images) != len(labels) or not images:
        raise InvalidInputError(
            f"need as many label images as images (at least one); got {len(images)} and {len(labels)}"
        )
    cfg = model.config
    xs, ys = [], []
    for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
        stack = as_image_stack(img, name=f"training image {i}")
        if stack.shape[0] != cfg.in_channels:
            raise InvalidInputError(
                f"training image {i} has {stack.shape[0]} channel(s); the U-Net reads {cfg.in_channels}"
            )
        if np.asarray(lab).shape != stack.shape[1:]:
            raise InvalidInputError(
                f"label image {i} has shape {np.asarray(lab).shape}, image {i} has {stack.shape[1:]}"
            )
        xs.append(_pad_to(normalize_percentile(stack), patch_size))
        ys.append(_pad_to(targets_from_labels(np.asarray(lab), cfg.out_channels), patch_size))
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    device = next(model.parameters()).device
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = TrainHistory()
    model.train()
    bar = _progress(
        range(epochs * steps_per_epoch), desc="train U-Net", unit="step", enabled=progress
    )
    running: list[float] = []
    for step in bar:
        bx, by = [], []
        for _ in range(batch_size):
            k = int(rng.integers(len(xs)))
            h, w = xs[k].shape[-2:]
            y0 = int(rng.integers(h - patch_size + 1))
            x0 = int(rng.integers(w - patch_size + 1))
            px = xs[k][..., y0 : y0 + patch_size, x0 : x0 + patch_size]
            py = ys[k][..., y0 : y0 + patch_size, x0 : x0 + patch_size]
            if augment:
                t = DIHEDRAL[int(rng.integers(len(DIHEDRAL)))]
                px, py = apply_transform(px, t), apply_transform(py, t)
            bx.append(np.ascontiguousarray(px))
            by.append(np.ascontiguousarray(py))
        xb = torch.from_numpy(np.stack(bx)).to(device)
        yb = torch.from_numpy(np.stack(by)).to(device)
        logits = model(xb)
        if cfg.out_channels == 1:
            loss = F.binary_cross_entropy_with_logits(logits, yb)
        else:
            loss = F.cross_entropy(logits, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running.append(float(loss.detach()))
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{running[-1]:.3f}")
        if (step + 1) % steps_per_epoch == 0:
            history.loss.append(float(np.mean(running)))
            running = []
            if checkpoint is not None:
                path = save_unet(
                    model,
                    checkpoint,
                    epoch=len(history.loss),
                    loss=history.loss[-1],
                    lr=lr,
                    patch_size=patch_size,
                    batch_size=batch_size,
                    seed=seed,
                )
                if path not in history.checkpoints:
                    history.checkpoints.append(path)
    model.eval()
    return history
