"""Test-time augmentation (DOMAIN.md §4; Moshkov et al. 2020).

Semantic models: :func:`tta_predict_proba` averages the de-augmented probability
maps (threshold 0.5 afterwards). Instance models: :func:`tta_instances` runs
any segmenter that returns label images on every transformed copy, undoes the
transforms and merges with :func:`merge_instances`: objects of different
versions are the same object when their IoU >= 0.5; an object is kept when it
appears in a majority of the versions; its mask is the pixel-wise majority vote
of its matched masks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import ndimage as ndi

from cellframe.errors import InvalidInputError
from cellframe.segment.augment import apply_transform, resolve_transforms, undo_transform
from cellframe.segment.instances import relabel_sequential
from cellframe.segment.metrics import iou_matrix

if TYPE_CHECKING:
    from cellframe.segment.unet import UNet

__all__ = ["merge_instances", "tta_instances", "tta_predict_proba"]


def tta_predict_proba(
    model: UNet, image: np.ndarray, *, tta: str | Sequence[str] = "default", **kwargs: Any
) -> np.ndarray:
    """Semantic TTA merge: mean of the de-augmented U-Net probabilities.

    A thin alias of :func:`cellframe.segment.predict.predict_proba` with
    ``tta="default"``; the transforms run batched inside each tile batch.
    """
    from cellframe.segment.predict import predict_proba

    return predict_proba(model, image, tta=tta, **kwargs)


def _dense(labels: np.ndarray) -> tuple[np.ndarray, int]:
    ids, inv = np.unique(labels, return_inverse=True)
    inv = inv.reshape(labels.shape).astype(np.int32)
    if ids[0] != 0:
        inv += 1
        return inv, len(ids)
    return inv, len(ids) - 1


def merge_instances(
    label_images: Sequence[np.ndarray],
    *,
    iou_threshold: float = 0.5,
    min_votes: int | None = None,
) -> np.ndarray:
    """Merge instance segmentations of the same image (TTA versions, several models).

    Objects are grouped across versions: versions are visited in order; each
    object joins the group whose first object it overlaps most, provided that
    IoU >= ``iou_threshold`` and the group holds no object of its version yet;
    otherwise it starts a new group. A group is kept when it has objects from
    at least ``min_votes`` versions (default: a strict majority,
    ``len(label_images) // 2 + 1``). Its mask is the pixel-wise majority vote of
    its objects (pixels covered by more than half of them). A pixel claimed by
    two kept groups goes to the one whose objects cover it in the larger
    fraction (ties: the group found first).

    Parameters
    ----------
    label_images : sequence of numpy.ndarray of int, each shape (H, W)
        Label images of one shape, already in the original orientation.
    iou_threshold : float, default 0.5
        Minimum IoU for two objects to be the same object.
    min_votes : int, optional
        Versions an object must appear in to be kept.

    Returns
    -------
    numpy.ndarray of int32, shape (H, W)
        Label image, objects numbered 1..N in raster order.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.zeros((4, 6), int); a[1:3, 1:3] = 1
    >>> b = a.copy(); b[1:3, 4:6] = 2          # a second object seen only once
    >>> merge_instances([a, a, b])[1:3].tolist()
    [[0, 1, 1, 0, 0, 0], [0, 1, 1, 0, 0, 0]]
    """
    versions = [np.asarray(lab) for lab in label_images]
    if not versions:
        raise InvalidInputError("merge_instances needs at least one label image")
    shape = versions[0].shape
    for i, v in enumerate(versions):
        if v.shape != shape or v.ndim != 2 or not np.issubdtype(v.dtype, np.integer):
            raise InvalidInputError(
                f"label image {i} is {v.dtype} {v.shape}; all must be 2-D integer images of "
                f"shape {shape}"
            )
    n_versions = len(versions)
    votes_needed = n_versions // 2 + 1 if min_votes is None else int(min_votes)
    dense = [_dense(v) for v in versions]
    # groups: list of {version: object id}; the first entry is the group's anchor
    groups: list[dict[int, int]] = []
    for v, (lab_v, n_v) in enumerate(dense):
        assigned = np.zeros(n_v + 1, dtype=bool)
        candidates: list[tuple[float, int, int]] = []  # (iou, group, object)
        for u in range(v):
            members = [(g, grp[u]) for g, grp in enumerate(groups) if next(iter(grp)) == u]
            if not members or n_v == 0:
                continue
            iou = iou_matrix(dense[u][0], lab_v)
            for g, anchor in members:
                row = iou[anchor - 1]
                for j in np.flatnonzero(row >= iou_threshold):
                    candidates.append((float(row[j]), g, int(j) + 1))
        taken: set[int] = set()
        for _, g, j in sorted(candidates, key=lambda c: -c[0]):
            if g in taken or assigned[j]:
                continue
            groups[g][v] = j
            taken.add(g)
            assigned[j] = True
        present = np.zeros(n_v + 1, dtype=bool)
        present[np.unique(lab_v)] = True
        for j in np.flatnonzero(present & ~assigned):
            if j:
                groups.append({v: int(j)})

    boxes = [ndi.find_objects(lab) for lab, _ in dense]
    out = np.zeros(shape, dtype=np.int32)
    best = np.zeros(shape, dtype=np.float64)
    next_id = 1
    for grp in groups:
        k = len(grp)
        if k < votes_needed:
            continue
        slices = [boxes[v][j - 1] for v, j in grp.items()]
        y0 = min(s[0].start for s in slices)
        y1 = max(s[0].stop for s in slices)
        x0 = min(s[1].start for s in slices)
        x1 = max(s[1].stop for s in slices)
        votes = np.zeros((y1 - y0, x1 - x0), dtype=np.int32)
        for v, j in grp.items():
            votes += dense[v][0][y0:y1, x0:x1] == j
        frac = votes / k
        win = (votes * 2 > k) & (frac > best[y0:y1, x0:x1])
        if not win.any():
            continue
        out[y0:y1, x0:x1][win] = next_id
        best[y0:y1, x0:x1][win] = frac[win]
        next_id += 1
    return relabel_sequential(out)


def tta_instances(
    segment: Callable[..., object],
    image: np.ndarray,
    *,
    tta: str | Sequence[str] = "default",
    batched: bool = False,
    iou_threshold: float = 0.5,
    return_versions: bool = False,
) -> np.ndarray | tuple[np.ndarray, list[np.ndarray]]:
    """Instance TTA: segment transformed copies, undo the transforms, merge the objects.

    Parameters
    ----------
    segment : callable
        ``segment(image) -> labels`` for one ``(..., H, W)`` image, or with
        ``batched=True`` ``segment(list of images) -> list of labels`` (e.g.
        :meth:`cellframe.segment.maskrcnn.MaskRCNNSegmenter.__call__`, which
        runs the whole list in one forward pass).
    image : numpy.ndarray, shape (H, W) or (C, H, W)
    tta : str or sequence of str, default "default"
        Transforms (see :func:`cellframe.segment.augment.resolve_transforms`).
    batched : bool, default False
        Whether ``segment`` takes the list of versions at once.
    iou_threshold : float, default 0.5
        Passed to :func:`merge_instances`.
    return_versions : bool, default False
        Also return the de-augmented label image of each version (first =
        the first transform, the original when it is ``"identity"``).

    Returns
    -------
    numpy.ndarray of int32, shape (H, W), or (that, list of such arrays)
        The merged label image, and with ``return_versions`` the label image
        of each version.
    """
    arr = np.asarray(image)
    if arr.ndim not in (2, 3):
        raise InvalidInputError(f"image has shape {arr.shape}; expected (H, W) or (C, H, W)")
    names = resolve_transforms(tta)
    copies = [np.ascontiguousarray(apply_transform(arr, t)) for t in names]
    outputs = segment(copies) if batched else [segment(c) for c in copies]
    versions = [
        np.ascontiguousarray(undo_transform(np.asarray(lab), t))
        for lab, t in zip(outputs, names, strict=True)  # type: ignore[call-overload]
    ]
    merged = merge_instances(versions, iou_threshold=iou_threshold)
    return (merged, versions) if return_versions else merged
