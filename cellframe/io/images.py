"""Read microscopy sites (TIFF stacks, zarr arrays) as ``(C, H, W)`` arrays with channel names.

One site (field of view) is a stack of 2-D channel images. Cell Painting sites
have five channels (DNA, ER, RNA, AGP, Mito; DOMAIN.md §1); a channel is chosen
by name, never by position, so a reordered file cannot silently mislabel it.

Where channel names come from, in order:

1. ``channel_names=`` given by the caller;
2. the file itself: tifffile's JSON description (``{"channels": [...]}``),
   ImageJ ``Labels``, OME-XML ``Channel@Name``; zarr attributes
   ``channels`` or ``omero.channels[].label``;
3. a ``channels.csv`` (columns ``idx,channel``) in the same folder as the file,
   the layout of the JUMP sample bundle.

Import this module as ``cellframe.io.images``; it needs only NumPy, tifffile
and zarr.
"""

from __future__ import annotations

import csv
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from cellframe.errors import (
    InputNotFoundError,
    InvalidImageError,
    InvalidInputError,
    UnknownFormatError,
)

__all__ = [
    "ChannelNotFoundError",
    "ChannelSource",
    "ImageWarning",
    "SiteImage",
    "check_pixels",
    "count_sites",
    "parse_site_keys",
    "read_channels",
    "read_labels",
    "read_site",
    "write_labels",
]

_TIFF_SUFFIXES = (".tif", ".tiff", ".ome.tif", ".ome.tiff")


class ChannelNotFoundError(InvalidInputError, KeyError):
    """A channel asked for by name is not in the image (or its names are unknown)."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class ImageWarning(UserWarning):
    """A recoverable image problem (blank channels, ignored channel names), with counts."""


def check_pixels(
    pixels: np.ndarray,
    *,
    where: str,
    channels: Sequence[str] | None = None,
    min_side: int = 1,
    purpose: str = "",
) -> list[str]:
    """Refuse pixels no model can use; name the blank (constant) channels.

    Parameters
    ----------
    pixels : numpy.ndarray, shape (C, H, W) or (H, W)
    where : str
        The file / site, for messages.
    channels : sequence of str, optional
        Channel names (default ``"0"``, ``"1"``, ...).
    min_side : int, default 1
        Fewest pixels along each side the caller can work with (a model's
        input, a crop box).
    purpose : str
        What ``min_side`` is, for the message (e.g. ``"the 128-pixel crop box"``).

    Returns
    -------
    list of str
        Names of the channels whose pixels all have one value (blank).

    Raises
    ------
    InvalidImageError
        If a pixel is NaN or infinite (the count per channel is given), or a
        side is shorter than ``min_side``.

    Examples
    --------
    >>> import numpy as np
    >>> check_pixels(np.stack([np.eye(4), np.full((4, 4), 3.0)]), where="x", channels=["DNA", "ER"])
    ['ER']
    """
    arr = np.asarray(pixels)
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    names = list(channels) if channels is not None else [str(i) for i in range(arr.shape[0])]
    if len(names) != arr.shape[0]:
        raise InvalidImageError(
            f"{where}: the image has {arr.shape[0]} channel(s) but {len(names)} channel name(s) "
            f"were given ({', '.join(names)}); name each channel of the file once, in file order"
        )
    height, width = arr.shape[-2:]
    if height < min_side or width < min_side:
        raise InvalidImageError(
            f"{where}: the image is {height} x {width} pixels, smaller than "
            f"{purpose or f'{min_side} pixels'} ({min_side} x {min_side}); "
            "check the file (a thumbnail or a failed export?) or choose a smaller size"
        )
    if np.issubdtype(arr.dtype, np.floating):
        bad = (~np.isfinite(arr)).reshape(arr.shape[0], -1).sum(axis=1)
        if bad.any():
            detail = ", ".join(
                f"{n}: {int(k)} of {height * width}" for n, k in zip(names, bad, strict=True) if k
            )
            raise InvalidImageError(
                f"{where}: {int(bad.sum())} pixel(s) are NaN or infinite ({detail}); "
                "segmentation and embedding would silently find nothing there. Replace them "
                "(e.g. numpy.nan_to_num with the channel's background) or leave the site out"
            )
    flat = arr.reshape(arr.shape[0], -1)
    blank = flat.min(axis=1) == flat.max(axis=1)
    return [n for n, b in zip(names, blank, strict=True) if b]


class SiteImage(NamedTuple):
    """Pixels of one site and the names of its channels.

    Unpacks as ``pixels, channels = read_site(...)``.
    """

    pixels: np.ndarray
    """Array of shape ``(C, H, W)`` in the file's dtype."""
    channels: list[str]
    """One name per channel, in the order of ``pixels``."""


def _is_zarr(path: Path) -> bool:
    return (
        path.suffix == ".zarr"
        or (path.is_dir() and (path / "zarr.json").exists())
        or (path.is_dir() and ((path / ".zarray").exists() or (path / ".zgroup").exists()))
    )


def _sidecar_channels(path: Path) -> list[str] | None:
    """Channel names from ``channels.csv`` (``idx,channel``) beside ``path``."""
    csv_path = path.parent / "channels.csv"
    if not csv_path.is_file():
        return None
    with open(csv_path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "channel" not in rows[0]:
        return None
    if "idx" in rows[0]:
        rows.sort(key=lambda r: int(r["idx"]))
    return [r["channel"] for r in rows]


def _tiff_channel_names(tif: Any) -> list[str] | None:
    shaped = getattr(tif, "shaped_metadata", None)
    if shaped:
        names = shaped[0].get("channels")
        if names:
            return [str(n) for n in names]
    ij = tif.imagej_metadata
    if ij and ij.get("Labels"):
        labels = ij["Labels"]
        return [str(n) for n in (labels if isinstance(labels, list) else [labels])]
    if tif.is_ome and tif.ome_metadata:
        try:
            root = ET.fromstring(tif.ome_metadata)
        except ET.ParseError:
            return None
        names = [el.get("Name") for el in root.iter() if el.tag.endswith("}Channel")]
        if names and all(names):
            return [str(n) for n in names]
    return None


def _read_tiff(path: Path) -> tuple[np.ndarray, str, list[str] | None]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            data = series.asarray()
            axes = series.axes
            names = _tiff_channel_names(tif)
    except (tifffile.TiffFileError, ValueError, OSError, IndexError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise UnknownFormatError(
            f"cannot read {path} as a TIFF image ({type(exc).__name__}: {exc}); "
            "the file is damaged or not a TIFF: re-export or re-download it"
        ) from exc
    return data, axes, names


def _to_site_stack(data: np.ndarray, axes: str, path: Path, site: int) -> np.ndarray:
    """Bring a TIFF series to ``(C, H, W)``; a leading 4th axis indexes sites."""
    if data.ndim == 3 and axes.endswith("S") and data.shape[-1] in (3, 4):  # RGB(A) samples
        data = np.moveaxis(data, -1, 0)
    if data.ndim == 2:
        data = data[np.newaxis]
    elif data.ndim == 4:
        data = _pick_site(data, site, path)
    if data.ndim != 3:
        raise InvalidInputError(
            f"{path} holds an image of shape {data.shape} (axes {axes!r}); expected "
            "2-D (Y, X), 3-D (channel, Y, X) or 4-D (site, channel, Y, X). "
            "Volumes (Z stacks) must be projected or split into 2-D sites first"
        )
    return data


def _pick_site(data: Any, site: int, path: Path) -> Any:
    n_sites = data.shape[0]
    if not 0 <= site < n_sites:
        raise InvalidInputError(
            f"{path} holds {n_sites} site(s) (indices 0..{n_sites - 1}); site {site} is out of range"
        )
    return data[site]


def _open_zarr_array(path: Path) -> Any:
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:  # zarr raises several unrelated types for a bad store
        raise UnknownFormatError(f"cannot open {path} as a zarr store ({exc})") from exc
    if isinstance(node, zarr.Array):
        return node
    arrays = dict(node.arrays())
    if "images" in arrays:
        return arrays["images"]
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    raise UnknownFormatError(
        f"zarr group {path} holds arrays {sorted(arrays)}; expected one array or one "
        "called 'images': pass the array's own path (e.g. store.zarr/name)"
    )


def _zarr_channel_names(arr: Any) -> list[str] | None:
    attrs = dict(arr.attrs)
    if attrs.get("channels"):
        return [str(c) for c in attrs["channels"]]
    omero = attrs.get("omero") or {}
    labels = [c.get("label") for c in omero.get("channels", [])]
    if labels and all(labels):
        return [str(c) for c in labels]
    return None


def count_sites(path: str | os.PathLike[str]) -> int:
    """Number of sites in an image file: the leading axis of a 4-D array, else 1.

    Parameters
    ----------
    path : str or os.PathLike
        TIFF file or zarr store.

    Returns
    -------
    int

    Examples
    --------
    >>> import numpy as np
    >>> import tifffile
    >>> tifffile.imwrite("sites.tif", np.zeros((3, 2, 8, 8), dtype=np.uint16))  # 3 sites x 2 channels
    >>> count_sites("sites.tif")
    3
    >>> from cellframe.demo import demo_data_dir
    >>> count_sites(demo_data_dir() / "dsb2018" / "img2d.tif")  # a 2-D image is one site
    1
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no image file or zarr store at {p}")
    if _is_zarr(p):
        shape = _open_zarr_array(p).shape
    else:
        import tifffile

        try:
            with tifffile.TiffFile(p) as tif:
                shape = tif.series[0].shape
        except (tifffile.TiffFileError, ValueError, IndexError) as exc:
            raise UnknownFormatError(f"cannot read {p} as a TIFF image ({exc})") from exc
    return int(shape[0]) if len(shape) == 4 else 1


def read_site(
    path: str | os.PathLike[str],
    *,
    site: int = 0,
    channels: str | Sequence[str] | None = None,
    channel_names: Sequence[str] | None = None,
) -> SiteImage:
    """Read one site as a ``(C, H, W)`` array, keeping only the channels asked for.

    Parameters
    ----------
    path : str or os.PathLike
        A TIFF file (2-D, ``(C, Y, X)`` or ``(site, C, Y, X)``) or a zarr store
        (an array, or a group holding one array or one called ``images``).
    site : int, default 0
        Index along the site axis of a 4-D file; ignored for 2-D/3-D files.
    channels : str or sequence of str, optional
        Channel name(s) to keep, in the order wanted. All channels by default.
    channel_names : sequence of str, optional
        Names of every channel in the file, for files that do not carry them.

    Returns
    -------
    SiteImage
        ``(pixels, channels)``: pixels of shape ``(C, H, W)`` in the file's dtype
        and the channel names. Unnamed channels are called ``"0"``, ``"1"``, ...

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    UnknownFormatError
        If the file is not a readable TIFF or zarr store (e.g. a corrupt TIFF).
    InvalidInputError
        If the image is not 2-D, 3-D or 4-D, the site is out of range, or
        ``channel_names`` has the wrong length.
    ChannelNotFoundError
        If a requested channel name is not among the file's channels.

    Examples
    --------
    A one-channel TIFF of the bundled demo data (channels are named by position
    unless ``channel_names`` is given):

    >>> from cellframe.demo import demo_data_dir
    >>> pixels, names = read_site(demo_data_dir() / "dsb2018" / "img2d.tif")
    >>> pixels.shape, pixels.dtype, names
    ((1, 512, 512), dtype('uint16'), ['0'])
    >>> pixels, names = read_site(demo_data_dir() / "dsb2018" / "img2d.tif",
    ...                           channel_names=["DNA"], channels="DNA")
    >>> pixels.shape, names
    ((1, 512, 512), ['DNA'])
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no image file or zarr store at {p}")
    data, stored_names = _load_site(p, site)
    names = _channel_names(p, data.shape[0], stored_names, channel_names)
    if channels is None:
        return SiteImage(data, names)
    wanted = [channels] if isinstance(channels, str) else list(channels)
    index = _channel_index(p, names, wanted)
    return SiteImage(np.ascontiguousarray(data[index]), wanted)


def _load_site(p: Path, site: int) -> tuple[np.ndarray, list[str] | None]:
    """One site of an existing file as ``(C, H, W)``, and the channel names the file stores."""
    stored_names: list[str] | None
    if _is_zarr(p):
        arr = _open_zarr_array(p)
        if arr.ndim not in (2, 3, 4):
            raise InvalidInputError(
                f"zarr array {p} has shape {arr.shape}; expected 2-D (Y, X), 3-D "
                "(channel, Y, X) or 4-D (site, channel, Y, X)"
            )
        data = np.asarray(_pick_site(arr, site, p)[...] if arr.ndim == 4 else arr[...])
        if data.ndim == 2:
            data = data[np.newaxis]
        stored_names = _zarr_channel_names(arr)
    elif p.suffix.lower() in _TIFF_SUFFIXES or p.is_file():
        raw, axes, stored_names = _read_tiff(p)
        data = _to_site_stack(raw, axes, p, site)
    else:
        raise UnknownFormatError(f"{p} is neither a TIFF file nor a zarr store")
    if data.shape[1] == 0 or data.shape[2] == 0:
        raise InvalidInputError(f"{p} holds an empty image of shape {data.shape}")
    return data, stored_names


def _channel_names(
    p: Path,
    n_channels: int,
    stored_names: list[str] | None,
    channel_names: Sequence[str] | None,
) -> list[str]:
    """The names of a file's channels: given, stored in the file, a ``channels.csv``, or positions."""
    if channel_names is not None:
        names = [str(n) for n in channel_names]
        if len(names) != n_channels:
            raise InvalidImageError(
                f"channel_names lists {len(names)} name(s) ({', '.join(names)}) but {p} has "
                f"{n_channels} channel(s); give one name per channel, in file order"
            )
        return names
    sidecar = None if stored_names else _sidecar_channels(p)
    names = stored_names or sidecar or []
    if names and len(names) != n_channels:
        origin = f"{p.parent / 'channels.csv'}" if sidecar else "the file's metadata"
        import warnings

        warnings.warn(
            f"{p} has {n_channels} channel(s) but {origin} names {len(names)} "
            f"({', '.join(names)}); the names are not used and the channels are called "
            f"{', '.join(str(i) for i in range(n_channels))}. Pass channel_names= "
            "(CLI: --channel-names) with one name per channel",
            ImageWarning,
            stacklevel=3,
        )
    if len(names) != n_channels:
        names = [str(i) for i in range(n_channels)]
    return names


def _channel_index(p: Path, names: list[str], wanted: list[str]) -> list[int]:
    missing = [c for c in wanted if c not in names]
    if missing:
        raise ChannelNotFoundError(
            f"channel(s) {missing} not in {p}; it has {names}. Pick one of those, or pass "
            "channel_names=[...] (CLI: --channel-names) if the file does not store its names"
        )
    return [names.index(c) for c in wanted]


class ChannelSource(NamedTuple):
    """Where one channel of a site is: a file or zarr store, the site's index in it, the name.

    One row of the store's ``images`` table (``Channel``, ``Path``, ``Frame``)
    is one ``ChannelSource``: ``cellframe measure`` writes them, and
    ``cellframe embed`` reads them back with :func:`read_channels`.
    """

    channel: str
    """The channel's name (``DNA``, ...)."""
    path: str | os.PathLike[str]
    """A TIFF file or zarr store."""
    site: int = 0
    """Index of the site along the site axis of a 4-D file (``Frame``); 0 otherwise."""


def read_channels(
    sources: Sequence[ChannelSource],
    *,
    channel_names: Sequence[str] | None = None,
    where: str = "",
) -> dict[str, np.ndarray]:
    """Read a site's channels, wherever each is: one stack, or one file per channel.

    The one reader of site pixels for ``cellframe measure`` and ``cellframe
    embed``. Sources in the same file and site are read together, once. A
    file holding one channel, asked for one channel, is that channel (the
    layout of one TIFF per channel, CellProfiler's and JUMP's: the file's own
    channel name, if any, is not consulted). From a file holding several
    channels, each channel is picked by name, as :func:`read_site` picks it
    (``channel_names``, the file's metadata, or a ``channels.csv`` beside it).

    Parameters
    ----------
    sources : sequence of ChannelSource
        One per channel, in the order wanted; channel names must differ.
    channel_names : sequence of str, optional
        Names of every channel of multi-channel files that do not store them.
    where : str
        The site, for messages (e.g. ``"plate P1 well A01 site 1"``).

    Returns
    -------
    dict of str to numpy.ndarray, each of shape (H, W)
        Channel name -> pixels in the file's dtype, in the order of ``sources``.

    Raises
    ------
    InputNotFoundError
        If a file or zarr store does not exist (the channel and site named).
    ChannelNotFoundError
        If a channel is not among a multi-channel file's channels, or several
        channels are asked of a file that holds one.
    InvalidImageError
        If the channels differ in size (each channel's size and file named).
    InvalidInputError
        If a channel is named twice, or a file is not 2-D, 3-D or 4-D.
    UnknownFormatError
        If a file is not a readable TIFF or zarr store.

    Examples
    --------
    Two channels in one file each, and the same two in one stack, read alike:

    >>> import numpy as np
    >>> import tifffile
    >>> dna, er = np.arange(40, dtype=np.uint16).reshape(2, 4, 5)
    >>> tifffile.imwrite("dna.tif", dna); tifffile.imwrite("er.tif", er)
    >>> planes = read_channels([ChannelSource("DNA", "dna.tif"), ChannelSource("ER", "er.tif")])
    >>> list(planes), planes["ER"][0].tolist()
    (['DNA', 'ER'], [20, 21, 22, 23, 24])
    >>> tifffile.imwrite("stack.tif", np.stack([er, dna]))  # ER first in the stack
    >>> stacked = read_channels([ChannelSource("DNA", "stack.tif"), ChannelSource("ER", "stack.tif")],
    ...                         channel_names=["ER", "DNA"])
    >>> all((stacked[c] == planes[c]).all() for c in planes)
    True
    """
    at = f"{where}: " if where else ""
    order = [str(s.channel) for s in sources]
    twice = sorted({c for c in order if order.count(c) > 1})
    if twice:
        raise InvalidInputError(
            f"{at}channel(s) {twice} are asked for more than once; name each channel once"
        )
    groups: dict[tuple[Path, int], list[str]] = {}
    for source in sources:
        groups.setdefault((Path(source.path), int(source.site)), []).append(str(source.channel))
    planes: dict[str, np.ndarray] = {}
    origin: dict[str, Path] = {}
    for (p, site), wanted in groups.items():
        if not p.exists():
            raise InputNotFoundError(
                f"{at}no image file or zarr store at {p} (channel {', '.join(wanted)}); "
                "check the path, or move the images back where they were when the site "
                "was registered"
            )
        data, stored = _load_site(p, site)
        if data.shape[0] == 1 and len(wanted) == 1 and channel_names is None:
            index = [0]  # one file per channel: the file is the channel named
        else:
            if data.shape[0] == 1:
                raise ChannelNotFoundError(
                    f"{at}{p} holds one channel, but channels {wanted} are to be read from "
                    "it; give each channel its own file, or the file of their stack"
                )
            index = _channel_index(
                p, _channel_names(p, data.shape[0], stored, channel_names), wanted
            )
        for channel, i in zip(wanted, index, strict=True):
            planes[channel] = np.ascontiguousarray(data[i])
            origin[channel] = p
    shapes = {c: planes[c].shape for c in order}
    if len(set(shapes.values())) > 1:
        counts = [list(shapes.values()).count(v) for v in shapes.values()]
        usual = list(shapes.values())[counts.index(max(counts))]
        same = [c for c in order if shapes[c] == usual]
        listed = ", ".join(
            [f"{', '.join(same)} {usual[0]} x {usual[1]}"]
            + [f"{c} {h} x {w} ({origin[c]})" for c, (h, w) in shapes.items() if c not in same]
        )
        raise InvalidImageError(
            f"{at}the channels of one site differ in size: {listed}; every channel of a site "
            "must have one size: check the files (a thumbnail, a crop, another site's file?)"
        )
    return {c: planes[c] for c in order}


def write_labels(path: str | os.PathLike[str], labels: np.ndarray) -> Path:
    """Write a label image (0 = background, 1..N = objects) as a compressed TIFF.

    Parameters
    ----------
    path : str or os.PathLike
        Output ``.tif`` file; its folder is created.
    labels : numpy.ndarray of int, shape (H, W)
        Label image (0 = background).

    Returns
    -------
    pathlib.Path
        The file written.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.array([[0, 1], [2, 2]], dtype=np.int32)
    >>> write_labels("mask.tif", labels).name
    'mask.tif'
    >>> bool((read_labels("mask.tif") == labels).all())
    True
    """
    import tifffile

    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise InvalidInputError(
            f"a label image must be a 2-D integer array, got {labels.dtype} of shape {labels.shape}"
        )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    dtype = np.uint16 if labels.max(initial=0) < 2**16 else np.uint32
    tifffile.imwrite(out, labels.astype(dtype), compression="zlib")
    return out


def read_labels(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a 2-D label image written by :func:`write_labels` (or any 2-D TIFF).

    Returns
    -------
    numpy.ndarray of int32, shape (H, W)
        The label image.

    Examples
    --------
    >>> import numpy as np
    >>> _ = write_labels("mask.tif", np.array([[0, 1], [2, 2]], dtype=np.uint8))
    >>> read_labels("mask.tif")
    array([[0, 1],
           [2, 2]], dtype=int32)
    """
    pixels, _ = read_site(path)
    if pixels.shape[0] != 1:
        raise InvalidInputError(f"{path} has {pixels.shape[0]} channels; a label image has one")
    return pixels[0].astype(np.int32)


_ROW_COLUMN = re.compile(r"^([A-Za-z]{0,2})(\d{1,3})$")


def parse_site_keys(name: str, pattern: str | None = None) -> dict[str, Any] | None:
    r"""Plate, well and site from a file name such as ``BR00123947_G01_s1.tif``.

    Parameters
    ----------
    name : str
        File name (or path).
    pattern : str, optional
        Regular expression with named groups ``plate``, ``well`` and ``site``.

    Returns
    -------
    dict or None
        ``{"plate": str, "well": str, "site": int}``, or None when it does not match.
        A well written as row letters and a column number is zero-padded
        (``G1`` -> ``G01``), as is a bare column number (``2`` -> ``02``);
        another naming (a custom pattern's ``r01c02``)
        is kept as written.

    Examples
    --------
    >>> parse_site_keys("screen/BR00123947_G1_s2.tif")
    {'plate': 'BR00123947', 'well': 'G01', 'site': 2}
    >>> parse_site_keys("notes.txt") is None
    True
    >>> parse_site_keys("P1-r01c02f03.tif",
    ...                 r"(?P<plate>[^-]+)-(?P<well>r\d+c\d+)f(?P<site>\d+)")
    {'plate': 'P1', 'well': 'r01c02', 'site': 3}
    """
    regex = re.compile(
        pattern or r"(?P<plate>[A-Za-z0-9-]+)_(?P<well>[A-Za-z]{1,2}\d{1,2})_s(?P<site>\d+)"
    )
    m = regex.search(Path(name).name)
    if m is None:
        return None
    well = m.group("well")
    # Zero-pad a row-letter/column-number name (G1 -> G01); keep any other
    # naming of a custom pattern (r01c02) as written rather than mangle it.
    rc = _ROW_COLUMN.match(well)
    return {
        "plate": m.group("plate"),
        "well": f"{rc[1].upper()}{int(rc[2]):02d}" if rc else well,
        "site": int(m.group("site")),
    }
