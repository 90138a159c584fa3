"""Where a site's pixels come from, for the crop dataset (no other layer needed).

Two picklable loaders, so DataLoader workers can read sites in parallel:

* :class:`StackLoader` - one multi-channel file per site, ``(C, H, W)``
  (a TIFF stack, ``.npy``), found in a folder by a file-name pattern;
* :class:`ChannelFilesLoader` - a site's channels as the store's ``images``
  table lists them (``Channel``, ``Path``, ``Frame``): one row per channel,
  pointing to a file of that channel alone or to the site's stack (a zarr
  store or a multi-channel TIFF, ``Frame`` the site's index in a 4-D file),
  as ``cellframe measure`` and ``cellframe ingest`` write them.

TIFF files and zarr stores are read by :func:`cellframe.io.images.read_channels`
(and :func:`~cellframe.io.images.read_site`), the reader ``cellframe measure``
uses, so a site embedded is the same pixels as the site measured.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from cellframe.columns import PLATE, SITE, WELL, missing_columns
from cellframe.errors import EmptyInputError, InvalidInputError, MissingColumnsError

__all__ = ["DEFAULT_PATTERN", "ChannelFilesLoader", "StackLoader", "read_image"]

#: File name of a per-site stack: ``..._<plate>_<well>_s<site>.tif`` (the JUMP
#: mini set's ``site0_BR00123947_G01_s1.tif`` gives plate BR00123947, well G01, site 1).
DEFAULT_PATTERN = r"(?P<plate>[^_/]+)_(?P<well>[A-Za-z]+\d+)_s(?P<site>\d+)\.(?:tiff?|npy)$"


def read_image(path: str | os.PathLike[str], frame: int | None = None) -> np.ndarray:
    """Read one site's image: a TIFF or zarr store, ``.npy`` or any format scikit-image reads.

    Parameters
    ----------
    path : str or os.PathLike
        The file (or zarr store).
    frame : int, optional
        TIFF and zarr: the site's index in a 4-D ``(site, C, Y, X)`` file
        (:func:`cellframe.io.images.read_site`'s ``site``; default 0); ``.npy``
        and others: the index along the first axis.

    Returns
    -------
    numpy.ndarray
        TIFF and zarr: ``(C, H, W)``, a 2-D image as one channel; others as stored.

    Raises
    ------
    FileNotFoundError
        If the file is absent.
    """
    from cellframe.io.images import _is_zarr, read_site

    p = Path(path)
    if _is_zarr(p) and p.exists():
        return read_site(p, site=frame or 0).pixels
    if not p.is_file():
        raise FileNotFoundError(f"image file {p} not found")
    suffix = p.suffix.lower()
    if suffix in (".tif", ".tiff"):
        return read_site(p, site=frame or 0).pixels
    if suffix == ".npy":
        arr = np.load(p)
        return arr[frame] if frame is not None else arr
    from skimage.io import imread

    arr = imread(p)
    return arr[frame] if frame is not None else arr


class StackLoader:
    """Site key -> ``(C, H, W)`` from one stack file per site.

    Parameters
    ----------
    paths : dict
        ``(plate, well, site)`` -> file.
    """

    def __init__(self, paths: dict[tuple[str, str, int], str]) -> None:
        self.paths = dict(paths)

    @classmethod
    def from_folder(
        cls, folder: str | os.PathLike[str], pattern: str = DEFAULT_PATTERN
    ) -> StackLoader:
        """Find the stacks of a folder whose names match ``pattern`` (groups plate, well, site).

        Raises
        ------
        EmptyInputError
            If no file name matches.
        """
        root = Path(folder)
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {root} not found")
        regex = re.compile(pattern)
        paths: dict[tuple[str, str, int], str] = {}
        for f in sorted(root.iterdir()):
            m = regex.search(f.name)
            if m and f.is_file():
                paths[(m["plate"], m["well"], int(m["site"]))] = str(f)
        if not paths:
            raise EmptyInputError(
                f"no file in {root} matches the pattern {pattern!r}; name stacks like "
                "<plate>_<well>_s<site>.tif or pass a pattern with groups plate, well and site"
            )
        return cls(paths)

    @property
    def sites(self) -> list[tuple[str, str, int]]:
        """Site keys with a file."""
        return sorted(self.paths)

    def __call__(self, key: tuple[str, str, int]) -> np.ndarray:
        if key not in self.paths:
            raise InvalidInputError(f"no image file for site {'/'.join(map(str, key))}")
        return read_image(self.paths[key])


class ChannelFilesLoader:
    """Site key -> ``(C, H, W)`` from the ``images`` table's rows: one per channel.

    Parameters
    ----------
    files : dict
        ``(plate, well, site)`` -> list of :class:`~cellframe.io.images.ChannelSource`
        (channel, path, site index in the file) in channel order; plain
        ``(path, frame)`` pairs are named by ``channels``.
    channels : sequence of str, optional
        The channel of each entry, for ``(path, frame)`` pairs.
    channel_names : sequence of str, optional
        Names of every channel of stacks that do not store them (as given to
        ``cellframe measure --channel-names``).
    """

    def __init__(
        self,
        files: dict[tuple[str, str, int], list[Any]],
        *,
        channels: Sequence[str] | None = None,
        channel_names: Sequence[str] | None = None,
    ) -> None:
        from cellframe.io.images import ChannelSource

        self.files: dict[tuple[str, str, int], list[ChannelSource]] = {}
        for key, entries in files.items():
            sources = []
            for i, entry in enumerate(entries):
                if isinstance(entry, ChannelSource):
                    sources.append(entry)
                    continue
                if channels is None:
                    raise InvalidInputError(
                        "ChannelFilesLoader: (path, frame) entries need channels= naming the "
                        "channel of each entry; or give ChannelSource(channel, path, site)"
                    )
                path, frame = entry
                sources.append(ChannelSource(channels[i], path, 0 if frame is None else frame))
            self.files[key] = sources
        self.channel_names = None if channel_names is None else list(channel_names)

    @classmethod
    def from_images_table(
        cls,
        images: pl.DataFrame,
        channels: Sequence[str],
        *,
        root: str | os.PathLike[str] | None = None,
        channel_names: Sequence[str] | None = None,
    ) -> ChannelFilesLoader:
        """Build from the store's ``images`` table (one row per site and channel).

        Parameters
        ----------
        images : polars.DataFrame
            ``Metadata_Plate``, ``Metadata_Well``, ``Metadata_Site``, ``Channel``,
            ``Path`` and optionally ``Frame`` (the site's index in a 4-D file;
            null or 0 for files of one site).
        channels : sequence of str
            Channels to read, in this order.
        root : path, optional
            Folder that relative paths are relative to (the store's folder).
        channel_names : sequence of str, optional
            Names of every channel of stacks that do not store them.

        Raises
        ------
        MissingColumnsError
            If a column is absent.
        InvalidInputError
            If a site lacks one of ``channels``.
        """
        missing = missing_columns(images.columns, [PLATE, WELL, SITE, "Channel", "Path"])
        if missing:
            raise MissingColumnsError("images table", missing)
        if images.height == 0:
            raise EmptyInputError("the images table holds no rows; ingest images first")
        from cellframe.io.images import ChannelSource

        frame_col = "Frame" if "Frame" in images.columns else None
        wanted = images.filter(pl.col("Channel").is_in(list(channels)))
        files: dict[tuple[str, str, int], list[Any]] = {}
        for (plate, well, site), group in wanted.group_by([PLATE, WELL, SITE], maintain_order=True):
            by_channel = {r["Channel"]: r for r in group.iter_rows(named=True)}
            lacking = [c for c in channels if c not in by_channel]
            if lacking:
                raise InvalidInputError(
                    f"site {plate}/{well}/{site} has no image for channel(s) {lacking}; "
                    f"it has {sorted(by_channel)}"
                )
            entries = []
            for c in channels:
                r = by_channel[c]
                path = Path(r["Path"])
                if root is not None and not path.is_absolute():
                    path = Path(root) / path
                frame = r[frame_col] if frame_col else None
                entries.append(ChannelSource(c, str(path), 0 if frame is None else int(frame)))
            files[(str(plate), str(well), int(site))] = entries
        if not files:
            have = sorted(images["Channel"].unique().to_list())
            raise InvalidInputError(
                f"the images table has none of the channels {list(channels)}; it has {have}"
            )
        return cls(files, channel_names=channel_names)

    @property
    def sites(self) -> list[tuple[str, str, int]]:
        """Site keys with images."""
        return sorted(self.files)

    def __call__(self, key: tuple[str, str, int]) -> np.ndarray:
        if key not in self.files:
            raise InvalidInputError(
                f"no images for site {'/'.join(map(str, key))} in the images table"
            )
        from cellframe.io.images import read_channels

        planes = read_channels(
            self.files[key],
            channel_names=self.channel_names,
            where=f"images table, plate {key[0]} well {key[1]} site {key[2]}",
        )
        return np.stack(list(planes.values()))
