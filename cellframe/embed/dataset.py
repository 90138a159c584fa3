"""Stream crops site by site: each site's image is read once (DOMAIN.md §5).

:class:`SiteCropDataset` is a PyTorch ``IterableDataset``: it walks the sites
of an objects frame, loads each site's image once (in a worker process when
the DataLoader has workers), cuts every object's crop and yields fixed-size
batches that may span sites. Rows are referred to by their position in the
dataset's :attr:`SiteCropDataset.objects` frame, so the keys never travel
through worker queues.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from cellframe.columns import OBJECT_NUMBER, PLATE, SITE, WELL, missing_columns
from cellframe.embed.crops import BOX_SIZE, crop_objects
from cellframe.errors import EmptyInputError, InvalidInputError, MissingColumnsError
from cellframe.io.images import ImageWarning, check_pixels

__all__ = ["CENTER_X", "CENTER_Y", "SiteCropDataset", "SiteKey", "crop_loader"]

CENTER_X = "Location_Center_X"
CENTER_Y = "Location_Center_Y"
SITE_KEYS = (PLATE, WELL, SITE)
OBJECT_KEYS = (PLATE, WELL, SITE, OBJECT_NUMBER)

#: ``(Metadata_Plate, Metadata_Well, Metadata_Site)`` of one site.
SiteKey = tuple[str, str, int]

#: Where pixels come from: a mapping or a callable from a site key to the
#: ``(C, H, W)`` image, or to ``(image, label_image)`` for masking.
ImageSource = Mapping[SiteKey, Any] | Callable[[SiteKey], Any]


def prepare_objects(
    objects: pl.DataFrame | pl.LazyFrame, *, where: str = "objects"
) -> pl.DataFrame:
    """Validate an objects frame and sort it by site and object number.

    Parameters
    ----------
    objects : polars.DataFrame or LazyFrame
        Rows with ``Metadata_Plate``, ``Metadata_Well``, ``Metadata_Site``,
        ``Metadata_ObjectNumber``, ``Location_Center_X``, ``Location_Center_Y``
        (the store's ``objects`` table).
    where : str
        Name used in error messages.

    Returns
    -------
    polars.DataFrame
        Those six columns with the store's key dtypes, sorted.

    Raises
    ------
    MissingColumnsError
        If a column is absent.
    EmptyInputError
        If there are no objects.
    """
    if isinstance(objects, pl.LazyFrame):
        objects = objects.collect()
    needed = [*OBJECT_KEYS, CENTER_X, CENTER_Y]
    missing = missing_columns(objects.columns, needed)
    if missing:
        raise MissingColumnsError(
            where,
            missing,
            "pass the store's objects table or segmentation output with object centres",
        )
    if objects.height == 0:
        raise EmptyInputError(
            f"{where} holds no objects: nothing to crop (did segmentation find cells?)"
        )
    return (
        objects.select(needed)
        .with_columns(
            pl.col(PLATE).cast(pl.String),
            pl.col(WELL).cast(pl.String),
            pl.col(SITE).cast(pl.Int32),
            pl.col(OBJECT_NUMBER).cast(pl.Int64),
            pl.col(CENTER_X).cast(pl.Float64),
            pl.col(CENTER_Y).cast(pl.Float64),
        )
        .sort(list(OBJECT_KEYS))
    )


def _load(source: ImageSource, key: SiteKey) -> tuple[np.ndarray, np.ndarray | None]:
    if isinstance(source, Mapping):
        if key not in source:
            raise InvalidInputError(
                f"no image for site {key}; the image mapping holds {len(source)} site(s), "
                "keyed by (Metadata_Plate, Metadata_Well, Metadata_Site)"
            )
        value = source[key]
    else:
        value = source(key)
    if isinstance(value, tuple):
        image, labels = value
        return np.asarray(image), (None if labels is None else np.asarray(labels))
    return np.asarray(value), None


class SiteCropDataset(IterableDataset):
    """Crops of every object, site by site, in batches.

    Parameters
    ----------
    objects : polars.DataFrame or LazyFrame
        Object keys and centres (see :func:`prepare_objects`).
    images : mapping or callable
        Site key ``(plate, well, site)`` -> ``(C, H, W)`` array, or
        ``(array, label_image)`` to mask with the label image. A callable
        should be picklable to run in worker processes.
    channels : sequence of str
        Channel names, in the order of the image's first axis; an image with
        another number of channels is an error.
    box_size : int
        Crop side (default 128).
    batch_size : int
        Crops per yielded batch; the last batch of a worker may be smaller.
    mask_objects : bool
        Zero the pixels of each crop that do not belong to the object (needs
        label images from ``images``).

    Yields
    ------
    dict
        ``{"crops": float32 tensor (B, C, box, box), "rows": int64 tensor (B,)}``:
        ``rows`` index :attr:`objects`.
    """

    def __init__(
        self,
        objects: pl.DataFrame | pl.LazyFrame,
        images: ImageSource,
        channels: Sequence[str],
        *,
        box_size: int = BOX_SIZE,
        batch_size: int = 64,
        mask_objects: bool = False,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise InvalidInputError(f"batch_size must be at least 1, not {batch_size}")
        if not channels:
            raise InvalidInputError("channels must name at least one channel")
        self.objects = prepare_objects(objects)
        self.images = images
        self.channels = list(channels)
        self.box_size = int(box_size)
        self.batch_size = int(batch_size)
        self.mask_objects = bool(mask_objects)
        # Row ranges of each site in the sorted frame.
        bounds = (
            self.objects.with_row_index("_row")
            .group_by(list(SITE_KEYS), maintain_order=True)
            .agg(pl.col("_row").min().alias("start"), pl.col("_row").max().alias("stop"))
        )
        self.sites: list[tuple[SiteKey, int, int]] = [
            ((p, w, int(s)), int(a), int(b) + 1) for p, w, s, a, b in bounds.iter_rows()
        ]
        self._x = self.objects[CENTER_X].to_numpy()
        self._y = self.objects[CENTER_Y].to_numpy()
        self._numbers = self.objects[OBJECT_NUMBER].to_numpy()

    def __len__(self) -> int:
        """Number of objects (crops), not batches."""
        return self.objects.height

    def site_crops(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Load site ``index`` once and return ``(crops, rows)``."""
        key, start, stop = self.sites[index]
        where = f"site {key[0]}/{key[1]}/{key[2]}"
        image, labels = _load(self.images, key)
        if image.ndim == 2:
            image = image[None]
        if image.ndim != 3 or image.shape[0] != len(self.channels):
            raise InvalidInputError(
                f"{where}: image of shape {image.shape} has "
                f"{image.shape[0] if image.ndim == 3 else 'no channel axis, so'} "
                f"channel(s) but {len(self.channels)} are named ({', '.join(self.channels)}); "
                "pass the channels in the order of the image's first axis"
            )
        # NaN pixels or an image much smaller than the crop box: a named error, not features
        # of zero padding. A blank (constant) channel is counted in a warning.
        blank = check_pixels(
            image,
            where=where,
            channels=self.channels,
            min_side=max(1, self.box_size // 2),
            purpose=f"half the {self.box_size}-pixel crop box (crops would be mostly padding)",
        )
        if blank:
            warnings.warn(
                f"{where}: {len(blank)} of {len(self.channels)} channel(s) are blank "
                f"(constant): {', '.join(blank)}; their features describe no cell",
                ImageWarning,
                stacklevel=2,
            )
        if self.mask_objects and labels is None:
            raise InvalidInputError(
                f"{where}: mask_objects=True needs a label image; return (image, labels) from the loader"
            )
        crops = crop_objects(
            image,
            self._x[start:stop],
            self._y[start:stop],
            box_size=self.box_size,
            labels=labels if self.mask_objects else None,
            object_numbers=self._numbers[start:stop] if self.mask_objects else None,
            where=where,
        )
        return crops, np.arange(start, stop, dtype=np.int64)

    def _my_sites(self) -> range:
        info = get_worker_info()
        if info is None:
            return range(len(self.sites))
        return range(info.id, len(self.sites), info.num_workers)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        pending_crops: list[np.ndarray] = []
        pending_rows: list[np.ndarray] = []
        n_pending = 0
        for index in self._my_sites():
            crops, rows = self.site_crops(index)
            pending_crops.append(crops)
            pending_rows.append(rows)
            n_pending += len(rows)
            while n_pending >= self.batch_size:
                all_crops = np.concatenate(pending_crops)
                all_rows = np.concatenate(pending_rows)
                yield {
                    "crops": torch.from_numpy(all_crops[: self.batch_size]),
                    "rows": torch.from_numpy(all_rows[: self.batch_size]),
                }
                pending_crops = [all_crops[self.batch_size :]]
                pending_rows = [all_rows[self.batch_size :]]
                n_pending -= self.batch_size
        if n_pending:
            yield {
                "crops": torch.from_numpy(np.concatenate(pending_crops)),
                "rows": torch.from_numpy(np.concatenate(pending_rows)),
            }


def crop_loader(
    dataset: SiteCropDataset,
    *,
    num_workers: int = 0,
    pin_memory: bool = False,
    prefetch_factor: int = 2,
) -> DataLoader:
    """A DataLoader over a :class:`SiteCropDataset` (batches are made by the dataset).

    Parameters
    ----------
    dataset : SiteCropDataset
        The crops.
    num_workers : int
        Worker processes reading and cropping sites (0: in this process).
    pin_memory : bool
        Pin batches for fast copies to a GPU.
    prefetch_factor : int
        Batches each worker keeps ready.

    Returns
    -------
    torch.utils.data.DataLoader
    """
    if num_workers > len(dataset.sites):
        num_workers = len(dataset.sites)
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        kwargs = {"prefetch_factor": prefetch_factor, "persistent_workers": False}
    return DataLoader(
        dataset, batch_size=None, num_workers=num_workers, pin_memory=pin_memory, **kwargs
    )


def warn_sites_without_objects(
    image_sites: Sequence[SiteKey], dataset: SiteCropDataset
) -> list[SiteKey]:
    """Warn (with a count) about sites that have images but no objects; return them."""
    have = {key for key, _, _ in dataset.sites}
    empty = [s for s in image_sites if tuple(s) not in have]
    if empty:
        warnings.warn(
            f"{len(empty)} site(s) have images but no objects and give no rows "
            f"(first: {'/'.join(map(str, empty[0]))})",
            stacklevel=3,
        )
    return empty
