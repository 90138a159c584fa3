"""Embed every object of a screen and store the features (DOMAIN.md §5).

:func:`embed_objects` streams crops site by site through a DataLoader (worker
processes read and crop while the network runs) and returns one row per object
with the cell keys and float32 feature columns. :func:`write_embeddings` puts
that frame in the store as ``cells_<model>`` with its provenance.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import polars as pl
import torch

from cellframe.columns import FEATURE_DTYPE, PLATE, SITE, WELL
from cellframe.embed.crops import BOX_SIZE
from cellframe.embed.dataset import (
    OBJECT_KEYS,
    ImageSource,
    SiteCropDataset,
    SiteKey,
    crop_loader,
    warn_sites_without_objects,
)
from cellframe.errors import InvalidInputError

__all__ = ["CropSettings", "EmbedTiming", "embed_objects", "write_embeddings"]

#: The columns of an image: a write replaces the stored rows of the images it brings.
IMAGE_KEYS = (PLATE, WELL, SITE)


class Embedder(Protocol):  # pragma: no cover - typing only
    name: str
    forward_seconds: float
    device: torch.device

    def __call__(self, crops: torch.Tensor) -> np.ndarray: ...
    def feature_names(self, channels: Sequence[str]) -> list[str]: ...
    @property
    def provenance(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class CropSettings:
    """How :func:`embed_objects` cuts the crop of each object.

    Parameters
    ----------
    box_size : int, default 128
        Crop side in pixels, centred on the object (DOMAIN.md §5).
    mask_objects : bool, default False
        Zero pixels outside each object (needs label images).

    Raises
    ------
    InvalidInputError
        For a ``box_size`` that is not a positive integer.
    """

    box_size: int = BOX_SIZE
    mask_objects: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.box_size, bool) or not isinstance(self.box_size, int | np.integer):
            raise InvalidInputError(
                f"CropSettings: box_size must be a positive integer, got {self.box_size!r}; "
                f"use e.g. box_size={BOX_SIZE}"
            )
        if self.box_size < 1:
            raise InvalidInputError(
                f"CropSettings: box_size must be a positive integer, got {self.box_size}; "
                f"use e.g. box_size={BOX_SIZE}"
            )


@dataclass
class EmbedTiming:
    """Where the wall time of :func:`embed_objects` went."""

    cells: int = 0
    wall_seconds: float = 0.0
    forward_seconds: float = 0.0
    details: dict[str, float] = field(default_factory=dict)

    @property
    def cells_per_second(self) -> float:
        """Cells embedded per second of wall time."""
        return self.cells / self.wall_seconds if self.wall_seconds else float("nan")

    @property
    def outside_forward_share(self) -> float:
        """Share of wall time not spent in the network's forward pass."""
        if not self.wall_seconds:
            return float("nan")
        return max(0.0, 1.0 - self.forward_seconds / self.wall_seconds)


def embed_objects(
    objects: pl.DataFrame | pl.LazyFrame,
    images: ImageSource,
    embedder: Embedder,
    *,
    channels: Sequence[str],
    crops: CropSettings | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    image_sites: Sequence[SiteKey] | None = None,
    progress: bool = True,
    timing: EmbedTiming | None = None,
) -> pl.DataFrame:
    """Crop and embed every object; one row per object.

    Parameters
    ----------
    objects : polars.DataFrame or LazyFrame
        ``Metadata_Plate``, ``Metadata_Well``, ``Metadata_Site``,
        ``Metadata_ObjectNumber``, ``Location_Center_X``, ``Location_Center_Y``.
    images : mapping or callable
        Site key ``(plate, well, site)`` -> ``(C, H, W)`` array (or
        ``(array, label_image)``); see :class:`SiteCropDataset`.
    embedder : ChannelEmbedder or CellEmbedder
        The network.
    channels : sequence of str
        Channel names in image order; they name the feature columns.
    crops : CropSettings, optional
        Crop side and masking; ``CropSettings()`` (128-pixel boxes, unmasked)
        by default.
    batch_size : int
        Cells per forward pass (a :class:`ChannelEmbedder` runs
        ``batch_size * len(channels)`` images at once).
    num_workers : int
        Processes that read and crop sites while the network runs.
    image_sites : sequence of site keys, optional
        Every site that has images; those without objects are reported in a
        warning (they give no rows).
    progress : bool
        Show a progress bar in cells and cells/s.
    timing : EmbedTiming, optional
        Filled with the wall time and the time in the forward pass.

    Returns
    -------
    polars.DataFrame
        The four cell keys, then the feature columns (float32), sorted by keys.

    Raises
    ------
    MissingColumnsError, EmptyInputError
        For an objects frame without the needed columns or rows.
    InvalidInputError
        For an image whose channel count differs from ``channels``, an object
        centre outside its image, or a missing site image.
    """
    crops = CropSettings() if crops is None else crops
    start = time.perf_counter()
    forward_before = embedder.forward_seconds
    dataset = SiteCropDataset(
        objects,
        images,
        channels,
        box_size=crops.box_size,
        batch_size=batch_size,
        mask_objects=crops.mask_objects,
    )
    if image_sites is not None:
        warn_sites_without_objects(image_sites, dataset)
    names = embedder.feature_names(channels)
    loader = crop_loader(
        dataset, num_workers=num_workers, pin_memory=embedder.device.type == "cuda"
    )
    features = np.zeros((len(dataset), len(names)), dtype=np.float32)
    seen = np.zeros(len(dataset), dtype=bool)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=len(dataset),
            desc=f"embed {embedder.name}",
            unit="cell",
            leave=True,  # the final count and rate stay on screen
            dynamic_ncols=True,
        )
    try:
        for batch in loader:
            rows = batch["rows"].numpy()
            out = embedder(batch["crops"])
            if out.shape[1] != len(names):  # pragma: no cover - embedder contract
                raise InvalidInputError(
                    f"{embedder.name} gave {out.shape[1]} features, expected {len(names)}"
                )
            features[rows] = out
            seen[rows] = True
            if bar is not None:
                bar.update(len(rows))
    finally:
        if bar is not None:
            bar.close()
    if not seen.all():  # pragma: no cover - every row is yielded by exactly one worker
        raise RuntimeError(f"{int((~seen).sum())} objects were not embedded")
    keys = dataset.objects.select(list(OBJECT_KEYS))
    feats = pl.DataFrame(
        {n: features[:, j] for j, n in enumerate(names)}, schema={n: FEATURE_DTYPE for n in names}
    )
    result = pl.concat([keys, feats], how="horizontal")
    if timing is not None:
        timing.cells += len(dataset)
        timing.wall_seconds += time.perf_counter() - start
        timing.forward_seconds += embedder.forward_seconds - forward_before
    return result


def write_embeddings(
    store: Any,
    frame: pl.DataFrame,
    embedder: Embedder,
    *,
    table: str | None = None,
    mode: str = "append",
    replace_plate: bool = False,
    parameters: dict[str, Any] | None = None,
    source: str | None = None,
) -> int:
    """Write embeddings to the store table ``cells_<model>`` with provenance.

    Parameters
    ----------
    store : cellframe.store.Store
        Destination.
    frame : polars.DataFrame
        Output of :func:`embed_objects`.
    embedder : ChannelEmbedder or CellEmbedder
        The network that made ``frame``: its name, weights file and whether
        the weights were random or pre-trained go to provenance.
    table : str, optional
        Table name (default ``cells_<embedder.name>``).
    mode : {"append", "replace"}
        As in :meth:`Store.write`.
    replace_plate : bool, default False
        Replace every stored row of the plates in ``frame``. By default only
        the images (plate, well, site) in ``frame`` are replaced: embedding a
        site again does not duplicate it, and the plate's other sites stay.
    parameters : dict, optional
        More parameters to record (box size, channels, ...).
    source : str, optional
        Where the objects came from.

    Returns
    -------
    int
        Rows written.
    """
    name = table or f"cells_{embedder.name}"
    params = {**embedder.provenance, **(parameters or {})}
    return store.write(
        name,
        frame,
        mode=mode,
        replace_plate=replace_plate,
        replace_keys=None if replace_plate else [c for c in IMAGE_KEYS if c in frame.columns],
        step="embed",
        parameters=params,
        source=source,
    )
