"""Weakly supervised training of a single-cell CNN (DOMAIN.md §5).

EfficientNet-B0 with a stem for all channels learns to tell the treatment of
each cell from its crop; the labels are weak (controls and weak treatments look
alike) but the network's intermediate layer becomes a good morphology feature.
The recipe follows DeepProfiler / the thesis: SGD with lr 0.005, batch 32,
random crops, flips, 90-degree rotations, per-channel brightness and contrast,
classes re-balanced every epoch, leave-plates-out or leave-cells-out
validation. On a GPU the same loop runs with float16 autocast and a larger
batch (the learning rate scales with the batch, linearly).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from cellframe.columns import OBJECT_NUMBER, PLATE, WELL
from cellframe.embed.augment import Augmentation, augment_batch
from cellframe.embed.dataset import ImageSource, SiteCropDataset
from cellframe.embed.embedders import check_architecture, resolve_device, scale_per_channel_max
from cellframe.errors import EmptyInputError, InvalidInputError, MissingColumnsError

__all__ = [
    "TrainConfig",
    "TrainResult",
    "balanced_indices",
    "collect_crops",
    "split_leave_cells_out",
    "split_leave_plates_out",
    "train_embedder",
]

TRAIN = "train"
VALIDATION = "validation"


@dataclass
class TrainConfig:
    """Settings of :func:`train_embedder` (defaults from DOMAIN.md §5).

    Attributes
    ----------
    arch : str
        timm architecture, built with ``in_chans`` = number of channels.
    epochs : int
        Passes over a class-balanced sample as large as the training set (30).
    batch_size : int, optional
        Crops per step: 32 on the CPU, 128 on a GPU by default.
    lr : float
        SGD learning rate for a batch of 32 (0.005); scaled by ``batch_size / 32``.
    momentum : float
        SGD momentum.
    weight_decay : float
        L2 penalty.
    augmentation : Augmentation or None
        Training augmentations; ``None`` turns them off.
    max_steps_per_epoch : int, optional
        Cap on steps per epoch (for quick runs and tests).
    amp : bool, optional
        float16 autocast with gradient scaling; default on for CUDA only.
    num_workers : int
        DataLoader processes.
    seed : int
        Seed of initialisation, sampling and augmentation.
    """

    arch: str = "efficientnet_b0"
    epochs: int = 30
    batch_size: int | None = None
    lr: float = 0.005
    momentum: float = 0.9
    weight_decay: float = 0.0
    augmentation: Augmentation | None = field(default_factory=Augmentation)
    max_steps_per_epoch: int | None = None
    amp: bool | None = None
    num_workers: int = 0
    seed: int = 0


@dataclass
class TrainResult:
    """What :func:`train_embedder` returns.

    Attributes
    ----------
    model : torch.nn.Module
        The trained network (eval mode, on the training device).
    classes : list of str
        Class names; output ``i`` of the classifier is ``classes[i]``.
    history : polars.DataFrame
        One row per epoch: ``epoch``, ``train_loss``, ``train_f1``,
        ``validation_loss``, ``validation_f1``, ``validation_accuracy``,
        ``seconds`` - ready for ``Store.write``.
    checkpoint : pathlib.Path or None
        The last epoch's checkpoint (``last.pt``).
    best_checkpoint : pathlib.Path or None
        The checkpoint with the best validation macro F1 (``best.pt``).
    """

    model: torch.nn.Module
    classes: list[str]
    history: pl.DataFrame
    checkpoint: Path | None = None
    best_checkpoint: Path | None = None


def split_leave_plates_out(cells: pl.DataFrame, validation_plates: Sequence[str]) -> pl.Series:
    """Train/validation split with disjoint plates.

    Parameters
    ----------
    cells : polars.DataFrame
        One row per cell with ``Metadata_Plate``.
    validation_plates : sequence of str
        Plates held out for validation.

    Returns
    -------
    polars.Series
        ``"train"`` or ``"validation"`` per row, named ``Split``.

    Raises
    ------
    InvalidInputError
        If a named plate is absent, or no plate is left for training.
    """
    if PLATE not in cells.columns:
        raise MissingColumnsError("cells", [PLATE], "leave-plates-out needs the plate of each cell")
    plates = set(cells[PLATE].unique().to_list())
    held = set(map(str, validation_plates))
    unknown = held - plates
    if unknown:
        raise InvalidInputError(
            f"validation plate(s) {sorted(unknown)} are not among the cells' plates {sorted(plates)}"
        )
    if not plates - held:
        raise InvalidInputError(
            "every plate is held out for validation: leave at least one plate to train on"
        )
    return (
        pl.Series("Split", cells[PLATE].is_in(sorted(held)))
        .replace_strict({True: VALIDATION, False: TRAIN}, return_dtype=pl.String)
        .alias("Split")
    )


def split_leave_cells_out(
    cells: pl.DataFrame, train_fraction: float = 0.6, *, seed: int = 0
) -> pl.Series:
    """Train/validation split of the cells of every well (~60% train, 40% validation).

    In each well (``Metadata_Plate`` x ``Metadata_Well``), ``round(train_fraction * n)``
    cells drawn at random train, the others validate.

    Parameters
    ----------
    cells : polars.DataFrame
        One row per cell with ``Metadata_Plate`` and ``Metadata_Well``.
    train_fraction : float
        Share of each well's cells used for training.
    seed : int
        Seed of the draw.

    Returns
    -------
    polars.Series
        ``"train"`` or ``"validation"`` per row, named ``Split``.
    """
    missing = [c for c in (PLATE, WELL) if c not in cells.columns]
    if missing:
        raise MissingColumnsError("cells", missing, "leave-cells-out splits each well's cells")
    if not 0 < train_fraction < 1:
        raise InvalidInputError(f"train_fraction must be between 0 and 1, not {train_fraction}")
    rng = np.random.default_rng(seed)
    keys = cells.select(PLATE, WELL).with_row_index("_row")
    split = np.empty(cells.height, dtype=object)
    for rows in keys.group_by([PLATE, WELL], maintain_order=True).agg("_row")["_row"].to_list():
        rows = np.asarray(rows)
        order = rng.permutation(len(rows))
        n_train = round(train_fraction * len(rows))
        split[rows[order[:n_train]]] = TRAIN
        split[rows[order[n_train:]]] = VALIDATION
    return pl.Series("Split", split.tolist(), dtype=pl.String)


def balanced_indices(
    labels: np.ndarray, rng: np.random.Generator, size: int | None = None
) -> np.ndarray:
    """One epoch of sample indices with every class equally often.

    Each class contributes ``ceil(size / n_classes)`` indices: drawn without
    replacement from a class that has that many, otherwise all of its cells
    plus a draw with replacement; the result is shuffled and cut to ``size``.

    Parameters
    ----------
    labels : numpy.ndarray of int, shape (n_samples,)
        Class of each training sample.
    rng : numpy.random.Generator
        Source of randomness (a new draw every epoch).
    size : int, optional
        Epoch length (default: number of samples).

    Returns
    -------
    numpy.ndarray of int64, shape (n_drawn,)
        Indices into ``labels``.
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    size = len(labels) if size is None else size
    per_class = -(-size // len(classes))
    chosen = []
    for k in classes:
        members = np.flatnonzero(labels == k)
        if len(members) >= per_class:
            chosen.append(rng.choice(members, per_class, replace=False))
        else:
            extra = rng.choice(members, per_class - len(members), replace=True)
            chosen.append(np.concatenate([members, extra]))
    out = rng.permutation(np.concatenate(chosen))
    return out[:size].astype(np.int64)


def collect_crops(
    objects: pl.DataFrame | pl.LazyFrame,
    images: ImageSource,
    channels: Sequence[str],
    *,
    box_size: int = 128,
    out: str | os.PathLike[str] | None = None,
    num_workers: int = 0,
    mask_objects: bool = False,
    dtype: np.dtype | type = np.float32,
) -> tuple[np.ndarray, pl.DataFrame]:
    """Crop every object once into an array (or a memory-mapped ``.npy`` file).

    Training revisits cells in random order over many epochs, so its crops are
    cut once (each site read once) and kept; pass ``out`` to keep them on disk
    for sets larger than memory.

    Parameters
    ----------
    objects, images, channels, box_size, num_workers, mask_objects
        As in :class:`cellframe.embed.dataset.SiteCropDataset`.
    out : str or os.PathLike, optional
        ``.npy`` file to hold the crops (memory-mapped); in memory by default.
    dtype : numpy dtype
        Dtype of the stored crops (float32; float16 halves the size).

    Returns
    -------
    crops : numpy.ndarray, shape (n, C, box, box)
    cells : polars.DataFrame
        The objects in the crops' order (sorted by keys).
    """
    from cellframe.embed.dataset import crop_loader

    dataset = SiteCropDataset(
        objects, images, channels, box_size=box_size, batch_size=256, mask_objects=mask_objects
    )
    shape = (len(dataset), len(channels), box_size, box_size)
    if out is None:
        crops = np.zeros(shape, dtype=dtype)
    else:
        crops = np.lib.format.open_memmap(str(out), mode="w+", dtype=dtype, shape=shape)
    for batch in crop_loader(dataset, num_workers=num_workers):
        crops[batch["rows"].numpy()] = batch["crops"].numpy().astype(dtype, copy=False)
    if isinstance(crops, np.memmap):
        crops.flush()
    return crops, dataset.objects


class _Crops(Dataset):
    def __init__(self, crops: np.ndarray, labels: np.ndarray, index: np.ndarray) -> None:
        self.crops, self.labels, self.index = crops, labels, index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        j = int(self.index[i])
        return torch.from_numpy(np.asarray(self.crops[j], dtype=np.float32)), int(self.labels[j])


def _macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    from sklearn.metrics import f1_score

    return float(
        f1_score(y_true, y_pred, labels=np.arange(n_classes), average="macro", zero_division=0)
    )


def _checkpoint(model: torch.nn.Module, path: Path, **meta: Any) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    torch.save({"state_dict": state, **meta}, tmp)
    tmp.replace(path)  # never leave half a checkpoint


def train_embedder(
    crops: np.ndarray,
    labels: Sequence[str],
    split: Sequence[str],
    *,
    channels: Sequence[str],
    config: TrainConfig | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train a CNN on all channels to classify each cell's treatment.

    Parameters
    ----------
    crops : numpy.ndarray, shape (n, C, H, W)
        Raw crops (array or memmap, e.g. from :func:`collect_crops`);
        each is scaled by its per-channel maximum before augmentation.
    labels : sequence of str
        Treatment of each cell (the class to predict).
    split : sequence of str
        ``"train"`` or ``"validation"`` per cell (:func:`split_leave_plates_out`,
        :func:`split_leave_cells_out`).
    channels : sequence of str
        Channel names (stored in the checkpoint).
    config : TrainConfig, optional
        Recipe; DOMAIN.md defaults.
    checkpoint_dir : str or os.PathLike, optional
        Folder for ``last.pt`` (every epoch) and ``best.pt`` (best validation F1).
    device : str or torch.device, optional
        Default: CUDA when available, else CPU.
    progress : bool
        Progress bar over steps, in cells/s.

    Returns
    -------
    TrainResult

    Raises
    ------
    InvalidInputError
        If lengths disagree, the split has unknown values or no training
        cells, or fewer than two classes train.
    InvalidChoiceError
        If ``config.arch`` is not an architecture cellframe can embed with
        (:func:`cellframe.embed.embedders.check_architecture`).
    """
    cfg = config or TrainConfig()
    check_architecture(cfg.arch, option="TrainConfig arch", in_chans=len(channels))
    dev = resolve_device(device)
    amp = (dev.type == "cuda") if cfg.amp is None else bool(cfg.amp) and dev.type == "cuda"
    batch_size = cfg.batch_size or (128 if dev.type == "cuda" else 32)
    lr = cfg.lr * batch_size / 32
    n = len(crops)
    if crops.ndim != 4 or crops.shape[1] != len(channels):
        raise InvalidInputError(
            f"crops of shape {crops.shape} do not hold {len(channels)} channels ({', '.join(channels)})"
        )
    labels_arr = np.asarray([str(v) for v in labels], dtype=object)
    split_arr = np.asarray([str(v) for v in split], dtype=object)
    if len(labels_arr) != n or len(split_arr) != n:
        raise InvalidInputError(
            f"{n} crops but {len(labels_arr)} labels and {len(split_arr)} split values"
        )
    bad = set(split_arr.tolist()) - {TRAIN, VALIDATION}
    if bad:
        raise InvalidInputError(
            f"split values must be 'train' or 'validation', found {sorted(bad)}"
        )
    train_idx = np.flatnonzero(split_arr == TRAIN)
    val_idx = np.flatnonzero(split_arr == VALIDATION)
    if len(train_idx) == 0:
        raise EmptyInputError("no cell is in the training split")
    classes = sorted(set(labels_arr[train_idx].tolist()))
    if len(classes) < 2:
        raise InvalidInputError(f"training needs at least two classes, found {classes}")
    class_of = {c: i for i, c in enumerate(classes)}
    unseen = set(labels_arr[val_idx].tolist()) - set(classes)
    if unseen:
        # Leave-plates-out can hold out a treatment that no training plate has.
        keep = np.isin(labels_arr[val_idx], classes)
        val_idx = val_idx[keep]
    y = np.asarray([class_of.get(v, -1) for v in labels_arr], dtype=np.int64)

    import timm

    torch.manual_seed(cfg.seed)
    model = timm.create_model(
        cfg.arch, pretrained=False, in_chans=len(channels), num_classes=len(classes)
    )
    # A zero classifier starts at uniform predictions (loss ln(classes)); timm's
    # fan-out initialisation of a 2-10 class head gives logits large enough to
    # make the first steps of SGD on a random backbone erratic.
    head = model.get_classifier()
    if isinstance(head, torch.nn.Linear):
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
    model = model.to(dev)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckpt_dir is not None:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    meta = {
        "arch": cfg.arch,
        "classes": classes,
        "channels": list(channels),
        "box_size": int(crops.shape[-1]),
        "config": {
            k: (asdict(v) if isinstance(v, Augmentation) else v) for k, v in vars(cfg).items()
        },
    }
    loader_kw: dict[str, Any] = {"num_workers": cfg.num_workers, "pin_memory": dev.type == "cuda"}
    history: list[dict[str, Any]] = []
    best_f1 = -1.0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc="train", unit="cell", leave=False, dynamic_ncols=True)
    try:
        for epoch in range(1, cfg.epochs + 1):
            start = time.perf_counter()
            order = balanced_indices(y[train_idx], rng)
            epoch_idx = train_idx[order]
            if cfg.max_steps_per_epoch is not None:
                epoch_idx = epoch_idx[: cfg.max_steps_per_epoch * batch_size]
            model.train()
            losses, preds, trues = [], [], []
            loader = DataLoader(
                _Crops(crops, y, epoch_idx), batch_size=batch_size, shuffle=False, **loader_kw
            )
            for xb, yb in loader:
                xb = scale_per_channel_max(xb.to(dev, non_blocking=True))
                yb = yb.to(dev, non_blocking=True)
                if cfg.augmentation is not None:
                    xb = augment_batch(xb, gen, cfg.augmentation)
                with torch.autocast(dev.type, dtype=torch.float16, enabled=amp):
                    logits = model(xb)
                    loss = F.cross_entropy(logits.float(), yb)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                losses.append(float(loss.detach()) * len(yb))
                preds.append(logits.detach().argmax(1).cpu().numpy())
                trues.append(yb.cpu().numpy())
                if bar is not None:
                    bar.update(len(yb))
                    bar.set_postfix(epoch=epoch, loss=f"{float(loss.detach()):.3f}")
            n_seen = sum(len(t) for t in trues)
            row: dict[str, Any] = {
                "epoch": epoch,
                "train_loss": sum(losses) / n_seen,
                "train_f1": _macro_f1(np.concatenate(trues), np.concatenate(preds), len(classes)),
            }
            row.update(
                _evaluate(model, crops, y, val_idx, dev, batch_size, amp, loader_kw, len(classes))
            )
            row["seconds"] = time.perf_counter() - start
            history.append(row)
            if ckpt_dir is not None:
                _checkpoint(model, ckpt_dir / "last.pt", epoch=epoch, **meta)
                score = (
                    row["validation_f1"]
                    if not np.isnan(row["validation_f1"])
                    else -row["train_loss"]
                )
                if score > best_f1:
                    best_f1 = score
                    _checkpoint(model, ckpt_dir / "best.pt", epoch=epoch, **meta)
    finally:
        if bar is not None:
            bar.close()
    schema = {
        "epoch": pl.Int32,
        "train_loss": pl.Float64,
        "train_f1": pl.Float64,
        "validation_loss": pl.Float64,
        "validation_f1": pl.Float64,
        "validation_accuracy": pl.Float64,
        "seconds": pl.Float64,
    }
    frame = pl.DataFrame(history, schema=schema)
    return TrainResult(
        model=model.eval(),
        classes=classes,
        history=frame,
        checkpoint=ckpt_dir / "last.pt" if ckpt_dir is not None else None,
        best_checkpoint=ckpt_dir / "best.pt" if ckpt_dir is not None else None,
    )


def _evaluate(
    model: torch.nn.Module,
    crops: np.ndarray,
    y: np.ndarray,
    idx: np.ndarray,
    dev: torch.device,
    batch_size: int,
    amp: bool,
    loader_kw: dict[str, Any],
    n_classes: int,
) -> dict[str, float]:
    nan = float("nan")
    if len(idx) == 0:
        return {"validation_loss": nan, "validation_f1": nan, "validation_accuracy": nan}
    model.eval()
    total, preds = 0.0, []
    with torch.inference_mode():
        for xb, yb in DataLoader(_Crops(crops, y, idx), batch_size=batch_size, **loader_kw):
            xb = scale_per_channel_max(xb.to(dev))
            with torch.autocast(dev.type, dtype=torch.float16, enabled=amp):
                logits = model(xb).float()
            total += float(F.cross_entropy(logits, yb.to(dev), reduction="sum"))
            preds.append(logits.argmax(1).cpu().numpy())
    pred = np.concatenate(preds)
    true = y[idx]
    return {
        "validation_loss": total / len(idx),
        "validation_f1": _macro_f1(true, pred, n_classes),
        "validation_accuracy": float((pred == true).mean()),
    }


def cell_labels(cells: pl.DataFrame, platemap: pl.DataFrame, label: str) -> pl.Series:
    """Label of each cell from the platemap (joined on plate and well), in cell order.

    Raises
    ------
    MissingColumnsError
        If the platemap lacks the label column.
    InvalidInputError
        If some cells' wells have no label.
    """
    if label not in platemap.columns:
        raise MissingColumnsError("platemap", [label], "pass --label with a platemap column")
    joined = cells.select(PLATE, WELL, OBJECT_NUMBER).join(
        platemap.select(PLATE, WELL, label).unique([PLATE, WELL]),
        on=[PLATE, WELL],
        how="left",
        maintain_order="left",
    )
    n_missing = joined[label].null_count()
    if n_missing:
        raise InvalidInputError(
            f"{n_missing} of {cells.height} cells sit in wells without a {label} in the platemap; "
            "complete the platemap or drop those objects"
        )
    return joined[label].cast(pl.String)
