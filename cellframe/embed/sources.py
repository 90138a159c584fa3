"""Where a site's pixels come from, for the crop dataset (no other layer needed).

Two picklable loaders, so DataLoader workers can read sites in parallel:

* :class:`StackLoader` - one multi-channel file per site, ``(C, H, W)``
  (a TIFF stack, ``.npy``), found in a folder by a file-name pattern;
* :class:`ChannelFilesLoader` - one file (or TIFF page) per channel, as the
  store's ``images`` table lists them (``Channel``, ``Path``, ``Frame``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from cellframe.columns import PLATE, SITE, WELL, missing_columns
from cellframe.errors import EmptyInputError, InvalidInputError, MissingColumnsError

__all__ = ["DEFAULT_PATTERN", "ChannelFilesLoader", "StackLoader", "read_image"]

#: File name of a per-site stack: ``..._<plate>_<well>_s<site>.tif`` (the JUMP
#: mini set's ``site0_BR00123947_G01_s1.tif`` gives plate BR00123947, well G01, site 1).
DEFAULT_PATTERN = r"(?P<plate>[^_/]+)_(?P<well>[A-Za-z]+\d+)_s(?P<site>\d+)\.(?:tiff?|npy)$"


def read_image(path: str | os.PathLike[str], frame: int | None = None) -> np.ndarray:
    """Read an image file: TIFF (a page with ``frame``), ``.npy`` or any format scikit-image reads.

    Raises
    ------
    FileNotFoundError
        If the file is absent.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"image file {p} not found")
    suffix = p.suffix.lower()
    if suffix in (".tif", ".tiff"):
        import tifffile

        return tifffile.imread(p, key=frame) if frame is not None else tifffile.imread(p)
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
    """Site key -> ``(C, H, W)`` from one file or TIFF page per channel.

    Parameters
    ----------
    files : dict
        ``(plate, well, site)`` -> list of ``(path, frame or None)`` in channel order.
    """

    def __init__(self, files: dict[tuple[str, str, int], list[tuple[str, int | None]]]) -> None:
        self.files = dict(files)

    @classmethod
    def from_images_table(
        cls,
        images: pl.DataFrame,
        channels: Sequence[str],
        *,
        root: str | os.PathLike[str] | None = None,
    ) -> ChannelFilesLoader:
        """Build from the store's ``images`` table (one row per site and channel).

        Parameters
        ----------
        images : polars.DataFrame
            ``Metadata_Plate``, ``Metadata_Well``, ``Metadata_Site``, ``Channel``,
            ``Path`` and optionally ``Frame``.
        channels : sequence of str
            Channels to read, in this order.
        root : path, optional
            Folder that relative paths are relative to.

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
        frame_col = "Frame" if "Frame" in images.columns else None
        wanted = images.filter(pl.col("Channel").is_in(list(channels)))
        files: dict[tuple[str, str, int], list[tuple[str, int | None]]] = {}
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
                entries.append((str(path), None if frame is None else int(frame)))
            files[(str(plate), str(well), int(site))] = entries
        if not files:
            have = sorted(images["Channel"].unique().to_list())
            raise InvalidInputError(
                f"the images table has none of the channels {list(channels)}; it has {have}"
            )
        return cls(files)

    @property
    def sites(self) -> list[tuple[str, str, int]]:
        """Site keys with images."""
        return sorted(self.files)

    def __call__(self, key: tuple[str, str, int]) -> np.ndarray:
        if key not in self.files:
            raise InvalidInputError(
                f"no images for site {'/'.join(map(str, key))} in the images table"
            )
        planes = [np.asarray(read_image(p, f)) for p, f in self.files[key]]
        shapes = {pl_.shape for pl_ in planes}
        if len(shapes) != 1 or planes[0].ndim != 2:
            raise InvalidInputError(
                f"site {'/'.join(map(str, key))}: channel images must be 2-D and the same size, got {sorted(shapes)}"
            )
        return np.stack(planes)
