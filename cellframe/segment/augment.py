"""The dihedral group of the square: flips and 90-degree rotations of the last two axes.

Used for on-the-fly training augmentation and for test-time augmentation
(DOMAIN.md §4). Every transform works on NumPy arrays and torch tensors of any
number of leading axes and has an exact inverse (:func:`undo_transform`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cellframe.errors import InvalidChoiceError

__all__ = [
    "DEFAULT_TTA",
    "DIHEDRAL",
    "TRANSFORMS",
    "apply_transform",
    "resolve_transforms",
    "undo_transform",
]

#: Each transform as (rotations by 90 degrees counter-clockwise, then flip left-right?).
#: ``x -> fliplr?(rot90(x, k))`` covers all 8 elements of the dihedral group.
TRANSFORMS: dict[str, tuple[int, bool]] = {
    "identity": (0, False),
    "rot90": (1, False),
    "rot180": (2, False),
    "rot270": (3, False),
    "hflip": (0, True),
    "transpose": (3, True),  # rot270 then left-right flip == transpose
    "vflip": (2, True),
    "antitranspose": (1, True),
}

#: DOMAIN.md §4 default: the original plus horizontal flip, vertical flip and
#: rotations by 90, 180 and 270 degrees (6 versions).
DEFAULT_TTA: tuple[str, ...] = ("identity", "hflip", "vflip", "rot90", "rot180", "rot270")

#: The full dihedral group of the square (8 versions).
DIHEDRAL: tuple[str, ...] = tuple(TRANSFORMS)

_PRESETS = {"default": DEFAULT_TTA, "dihedral": DIHEDRAL, "none": ("identity",)}


def resolve_transforms(transforms: str | Sequence[str]) -> tuple[str, ...]:
    """Turn ``"default"``, ``"dihedral"``, ``"none"`` or a list of names into transform names.

    Raises
    ------
    ValueError
        For an unknown preset or transform name; the message lists the valid ones.
    """
    if isinstance(transforms, str):
        if transforms in _PRESETS:
            return _PRESETS[transforms]
        transforms = [transforms]
    names = tuple(transforms)
    bad = [t for t in names if t not in TRANSFORMS]
    if bad or not names:
        raise InvalidChoiceError(
            f"unknown transform(s) {bad}; valid: {sorted(TRANSFORMS)} or a preset "
            f"{sorted(_PRESETS)}"
        )
    return names


def _ops(x: Any) -> tuple[Any, Any]:
    """rot90 and left-right flip over the last two axes, for NumPy or torch."""
    if hasattr(x, "detach"):  # torch.Tensor
        import torch

        return (
            lambda a, k: torch.rot90(a, k, dims=(-2, -1)),
            lambda a: torch.flip(a, dims=(-1,)),
        )
    import numpy as np

    return (lambda a, k: np.rot90(a, k, axes=(-2, -1)), lambda a: np.flip(a, axis=-1))


def apply_transform(x: Any, name: str) -> Any:
    """Apply the dihedral transform ``name`` to the last two axes of ``x``.

    Parameters
    ----------
    x : numpy.ndarray or torch.Tensor, shape (..., H, W)
        Image or batch.
    name : str
        One of :data:`TRANSFORMS`.

    Returns
    -------
    Same type as ``x``; NumPy results are views (copy before writing).
    """
    k, flip = TRANSFORMS[name]
    rot, fliplr = _ops(x)
    y = rot(x, k) if k else x
    return fliplr(y) if flip else y


def undo_transform(x: Any, name: str) -> Any:
    """Invert :func:`apply_transform`: ``undo_transform(apply_transform(x, t), t) == x``."""
    k, flip = TRANSFORMS[name]
    rot, fliplr = _ops(x)
    y = fliplr(x) if flip else x
    return rot(y, -k % 4) if k else y
