r"""Sites whose channels are one file each: CellProfiler LoadData CSVs and per-channel names.

The most common layout of Cell Painting images is one TIFF per channel per site
(the microscope's export, CellProfiler's input, the JUMP Cell Painting Gallery).
Two ways to say which files make a site, one result: a list of
:class:`ChannelFilesSite` (plate, well, site and one
:class:`~cellframe.io.images.ChannelSource` per channel), whose pixels
:func:`~cellframe.io.images.read_channels` reads.

* :func:`sites_from_load_data`: a CellProfiler LoadData CSV, one row per site
  with ``FileName_<Channel>`` and ``PathName_<Channel>`` per channel and
  ``Metadata_Plate``, ``Metadata_Well``, ``Metadata_Site``;
* :func:`sites_from_channel_files`: files named by a pattern, a regular
  expression with named groups ``plate``, ``well`` (or ``row`` and
  ``column``), ``site`` and ``channel``. The default,
  :data:`DEFAULT_CHANNEL_PATTERN`, reads the Opera Phenix names of the JUMP
  images, ``<plate>__<date>/Images/r01c01f01p01-ch1sk1fk1fl1.tiff``.

Channel names are those of the CSV (``OrigDNA`` for ``FileName_OrigDNA``) or
of the ``channel`` group (``ch1``); ``channel_map`` renames them
(``{"OrigDNA": "DNA"}``). Nothing here reads pixels; :func:`check_sites`
checks, before any is read, that every site has a file for each channel asked
for and that the files exist.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cellframe.errors import (
    DuplicateKeysError,
    EmptyInputError,
    InputNotFoundError,
    InvalidInputError,
    MissingColumnsError,
)
from cellframe.io.images import ChannelNotFoundError, ChannelSource

__all__ = [
    "DEFAULT_CHANNEL_PATTERN",
    "ChannelFilesSite",
    "check_sites",
    "parse_channel_map",
    "sites_from_channel_files",
    "sites_from_load_data",
    "well_name",
]

#: File names of the Opera Phenix (Harmony) export that the JUMP images keep:
#: ``r01c01f01p01-ch1sk1fk1fl1.tiff`` is row 1, column 1 (well A01), field (site) 1,
#: plane 1, channel ``ch1``; the plate is the folder above ``Images/``, up to ``__``
#: (``BR00117035__2021-05-02T16_02_51-Measurement1/Images/``). Searched in the
#: file's absolute path, so a pattern can take the plate from a folder name.
DEFAULT_CHANNEL_PATTERN = (
    r"(?:(?P<plate>[^/]+?)(?:__[^/]*)?/(?:Images/)?)?"
    r"r(?P<row>\d+)c(?P<column>\d+)f(?P<site>\d+)p(?P<plane>\d+)"
    r"-(?P<channel>ch\d+)sk\d+fk\d+fl\d+\.tiff?$"
)

_ROW_COLUMN = re.compile(r"^([A-Za-z]{1,2})(\d{1,3})$")


@dataclass(frozen=True)
class ChannelFilesSite:
    """One site whose channels are one file each.

    Parameters
    ----------
    plate, well : str
    site : int
    files : tuple of ChannelSource
        One per channel the layout gives, named as the user maps them.
    origins : tuple of str
        Where each file was named, for messages (``"load_data.csv line 3,
        column FileName_OrigDNA"``, or the file's own path).
    """

    plate: str
    well: str
    site: int
    files: tuple[ChannelSource, ...]
    origins: tuple[str, ...]

    @property
    def path(self) -> Path:
        """The first channel's file (for messages and provenance)."""
        return Path(self.files[0].path)

    @property
    def index(self) -> int:
        """Index of the site in its files: 0 (each file holds one site)."""
        return 0

    @property
    def channels(self) -> list[str]:
        """The channels this site has a file for, in layout order."""
        return [f.channel for f in self.files]

    def sources(self, channels: Sequence[str]) -> list[ChannelSource]:
        """The files of ``channels``, in that order.

        Raises
        ------
        ChannelNotFoundError
            If the site has no file for one of them.
        """
        by_name = {f.channel: f for f in self.files}
        missing = [c for c in channels if c not in by_name]
        if missing:
            raise ChannelNotFoundError(
                f"plate {self.plate} well {self.well} site {self.site} has no file for "
                f"channel(s) {missing}; it has {self.channels}"
            )
        return [by_name[c] for c in channels]


def well_name(row: int, column: int) -> str:
    """A plate well from its row and column numbers, counting from 1: ``(1, 1)`` -> ``A01``.

    Rows past Z continue AA, AB, ... (1536-well plates have 32 rows, A-AF).

    Examples
    --------
    >>> well_name(1, 1), well_name(16, 24), well_name(32, 48)
    ('A01', 'P24', 'AF48')
    """
    if row < 1 or column < 1:
        raise InvalidInputError(f"row {row}, column {column}: rows and columns count from 1")
    letters = ""
    n = row
    while n:
        n, rest = divmod(n - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return f"{letters}{column:02d}"


def _normal_well(well: str) -> str:
    rc = _ROW_COLUMN.match(well)
    return f"{rc[1].upper()}{int(rc[2]):02d}" if rc else well


def parse_channel_map(text: str | None) -> dict[str, str]:
    """``"OrigDNA=DNA,OrigER=ER"`` -> ``{"OrigDNA": "DNA", "OrigER": "ER"}``.

    Raises
    ------
    InvalidInputError
        For an item without ``=``, an empty name, or a name mapped twice.

    Examples
    --------
    >>> parse_channel_map("ch1=DNA, ch2=ER")
    {'ch1': 'DNA', 'ch2': 'ER'}
    """
    out: dict[str, str] = {}
    for item in (t.strip() for t in (text or "").split(",")):
        if not item:
            continue
        old, sep, new = (t.strip() for t in item.partition("="))
        if not sep or not old or not new:
            raise InvalidInputError(
                f"channel map item {item!r} is not NAME=NEW (e.g. OrigDNA=DNA or ch1=DNA); "
                "write the names the files give, '=', and the names to measure them as"
            )
        if old in out:
            raise InvalidInputError(f"channel map names {old!r} twice ({out[old]}, {new})")
        out[old] = new
    return out


def _rename(
    names: Sequence[str], channel_map: Mapping[str, str] | None, where: str
) -> dict[str, str]:
    """Layout name -> channel name, checking the map against the names the layout gives."""
    channel_map = dict(channel_map or {})
    unknown = [k for k in channel_map if k not in names]
    if unknown:
        raise ChannelNotFoundError(
            f"the channel map renames {unknown}, which {where} does not name; it names "
            f"{list(names)}: map those (e.g. {names[0]}=DNA)"
        )
    renamed = {n: channel_map.get(n, n) for n in names}
    seen: dict[str, str] = {}
    for old, new in renamed.items():
        if new in seen:
            raise InvalidInputError(
                f"the channel map gives two channels of {where} the name {new!r} "
                f"({seen[new]} and {old}); give each its own name"
            )
        seen[new] = old
    return renamed


def sites_from_load_data(
    path: str | os.PathLike[str],
    *,
    channel_map: Mapping[str, str] | None = None,
) -> list[ChannelFilesSite]:
    """The sites of a CellProfiler LoadData CSV, one row per site and one file per channel.

    Parameters
    ----------
    path : str or os.PathLike
        The CSV: ``FileName_<Channel>`` for each channel (the channel's name is
        what follows ``FileName_``), ``PathName_<Channel>`` its folder (absolute,
        or relative to the CSV's folder; without the column, the CSV's folder),
        and ``Metadata_Plate``, ``Metadata_Well``, ``Metadata_Site``. Other
        columns (``URL_``, ``Metadata_Row``, ...) are not read.
    channel_map : mapping, optional
        Renames channels: ``{"OrigDNA": "DNA", ...}``; unmapped ones keep their name.

    Returns
    -------
    list of ChannelFilesSite
        In the CSV's order. A row's empty ``FileName_`` leaves that channel out
        of its site (:func:`check_sites` refuses it if the channel is measured).

    Raises
    ------
    InputNotFoundError
        If the CSV does not exist.
    MissingColumnsError
        If it has no ``FileName_`` column or lacks a ``Metadata_`` key.
    EmptyInputError
        If it has no rows.
    InvalidInputError
        If a Site is not a whole number, a key is empty, or a ``Frame_`` /
        ``Series_`` column picks a frame other than 0 (multi-frame files are
        not read).
    DuplicateKeysError
        If two rows name the same site.
    ChannelNotFoundError
        If ``channel_map`` renames a channel the CSV does not name.

    Examples
    --------
    >>> import polars as pl
    >>> pl.DataFrame({"Metadata_Plate": ["P1"], "Metadata_Well": ["B3"], "Metadata_Site": [2],
    ...               "FileName_OrigDNA": ["dna.tif"], "PathName_OrigDNA": ["images"],
    ...               "FileName_OrigER": ["er.tif"], "PathName_OrigER": ["images"]},
    ...              ).write_csv("load_data.csv")
    >>> site = sites_from_load_data("load_data.csv", channel_map={"OrigDNA": "DNA"})[0]
    >>> site.plate, site.well, site.site, site.channels, site.files[1].path.as_posix()
    ('P1', 'B03', 2, ['DNA', 'OrigER'], 'images/er.tif')
    """
    csv_path = Path(path)
    if not csv_path.is_file():
        raise InputNotFoundError(
            f"LoadData CSV {csv_path} (--load-data) does not exist; give the CSV with "
            "FileName_<Channel>, PathName_<Channel> and Metadata_Plate/Well/Site columns"
        )
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = list(reader.fieldnames or [])
        rows = list(reader)
    names = [c[len("FileName_") :] for c in header if c.startswith("FileName_")]
    keys = ["Metadata_Plate", "Metadata_Well", "Metadata_Site"]
    missing = [c for c in keys if c not in header] + ([] if names else ["FileName_<Channel>"])
    if missing:
        raise MissingColumnsError(
            f"LoadData CSV {csv_path}",
            missing,
            "a LoadData CSV has one row per site: Metadata_Plate, Metadata_Well, "
            "Metadata_Site, and FileName_<Channel> with PathName_<Channel> per channel",
        )
    if not rows:
        raise EmptyInputError(f"LoadData CSV {csv_path} has a header but no rows (sites)")
    renamed = _rename(names, channel_map, f"LoadData CSV {csv_path}")
    frames = [c for c in header if c.startswith(("Frame_", "Series_"))]
    sites: list[ChannelFilesSite] = []
    first_line: dict[tuple[str, str, int], int] = {}
    for line, row in enumerate(rows, start=2):
        at = f"LoadData CSV {csv_path} line {line}"
        for key in keys:
            if not (row.get(key) or "").strip():
                raise InvalidInputError(f"{at}: column {key} is empty; give every site its {key}")
        site_text = row["Metadata_Site"].strip()
        if not site_text.isdigit():
            raise InvalidInputError(
                f"{at}: column Metadata_Site is {site_text!r}, not a whole number >= 0; "
                "write the site (field) number, e.g. 1"
            )
        for column in frames:
            value = (row.get(column) or "").strip()
            if value not in ("", "0"):
                raise InvalidInputError(
                    f"{at}: column {column} is {value!r}: the image is frame/series {value} "
                    "of a multi-frame file, which cellframe does not read; save each "
                    "channel of each site as its own single-image TIFF"
                )
        plate, well = row["Metadata_Plate"].strip(), _normal_well(row["Metadata_Well"].strip())
        key = (plate, well, int(site_text))
        if key in first_line:
            raise DuplicateKeysError(
                f"{at}: plate {plate} well {well} site {key[2]} is also on line "
                f"{first_line[key]}; give each site one row (two rows of one site would "
                "measure it twice)"
            )
        first_line[key] = line
        files, origins = [], []
        for name in names:
            file_name = (row.get(f"FileName_{name}") or "").strip()
            if not file_name:
                continue
            folder = (row.get(f"PathName_{name}") or "").strip()
            file = Path(folder) / file_name if folder else Path(file_name)
            if not file.is_absolute():
                file = csv_path.parent / file
            files.append(ChannelSource(renamed[name], file, 0))
            origins.append(f"{at}, column FileName_{name}")
        sites.append(ChannelFilesSite(plate, well, key[2], tuple(files), tuple(origins)))
    return sites


def sites_from_channel_files(
    paths: Sequence[str | os.PathLike[str]],
    *,
    pattern: str | None = None,
    channel_map: Mapping[str, str] | None = None,
) -> list[ChannelFilesSite]:
    r"""The sites of per-channel image files, from their names.

    Parameters
    ----------
    paths : sequence of path
        The image files (one channel of one site each).
    pattern : str, optional
        A regular expression searched in each file's absolute path (``/``
        separators) with named groups ``site``, ``channel``, ``plate`` and
        ``well`` or ``row`` and ``column`` (numbers: ``r02c03`` is well B03);
        default :data:`DEFAULT_CHANNEL_PATTERN` (Opera Phenix / JUMP names).
        A ``well`` such as ``B3`` is zero-padded (``B03``).
    channel_map : mapping, optional
        Renames channels: ``{"ch1": "DNA", ...}``; unmapped ones keep their name.

    Returns
    -------
    list of ChannelFilesSite
        Sorted by plate, well and site; each site's channels sorted by name
        as the pattern gives them.

    Raises
    ------
    InvalidInputError
        If a file's path does not match the pattern, the pattern lacks a group,
        or a group matched nothing (the plate of a file outside a plate folder).
    DuplicateKeysError
        If two files give the same site and channel (two z-planes, say).
    ChannelNotFoundError
        If ``channel_map`` renames a channel no file has.

    Examples
    --------
    >>> import numpy as np, tifffile
    >>> from pathlib import Path
    >>> Path("BR00117035__2021-05-02T16_02_51-Measurement1/Images").mkdir(parents=True)
    >>> files = [Path(f"BR00117035__2021-05-02T16_02_51-Measurement1/Images/"
    ...               f"r02c03f01p01-ch{c}sk1fk1fl1.tiff") for c in (1, 2)]
    >>> for f in files:
    ...     tifffile.imwrite(f, np.zeros((8, 8), np.uint16))
    >>> site = sites_from_channel_files(files, channel_map={"ch1": "DNA", "ch2": "ER"})[0]
    >>> site.plate, site.well, site.site, site.channels
    ('BR00117035', 'B03', 1, ['DNA', 'ER'])
    """
    regex = re.compile(pattern or DEFAULT_CHANNEL_PATTERN)
    groups = set(regex.groupindex)
    needed = {"plate", "site", "channel"} | ({"well"} if "well" in groups else {"row", "column"})
    lacking = sorted(needed - groups)
    if lacking:
        raise InvalidInputError(
            f"the file-name pattern {regex.pattern!r} has no group(s) {lacking}; a pattern "
            "for one file per channel needs (?P<plate>...), (?P<well>...) (or (?P<row>...) "
            "and (?P<column>...)), (?P<site>...) and (?P<channel>...)"
        )
    by_site: dict[tuple[str, str, int], dict[str, Path]] = {}
    unmatched: list[Path] = []
    for item in paths:
        file = Path(item)
        m = regex.search(file.resolve().as_posix())
        if m is None:
            unmatched.append(file)
            continue
        empty = sorted(g for g in needed if not m.group(g))
        if empty:
            raise InvalidInputError(
                f"{file}: the file-name pattern's group(s) {empty} match nothing in its path "
                f"{file.resolve().as_posix()!r}"
                + (
                    " (the default pattern takes the plate from the folder above Images/: "
                    "keep the files in <plate>/ or <plate>__<date>/Images/, or give --pattern "
                    "with a plate group)"
                    if "plate" in empty
                    else ""
                )
            )
        for group in ("site", "row", "column"):
            if group in needed and not m.group(group).isdigit():
                raise InvalidInputError(
                    f"{file}: the pattern's {group} group matched {m.group(group)!r}, not a "
                    f"whole number; make the group match the {group}'s digits only"
                )
        well = (
            _normal_well(m.group("well"))
            if "well" in groups
            else well_name(int(m.group("row")), int(m.group("column")))
        )
        key = (m.group("plate"), well, int(m.group("site")))
        channel = m.group("channel")
        files = by_site.setdefault(key, {})
        if channel in files:
            raise DuplicateKeysError(
                f"{files[channel]} and {file} are both channel {channel} of plate {key[0]} "
                f"well {key[1]} site {key[2]}: several planes or time points of one channel "
                "are not read; project or pick one plane per channel and site first, or "
                "make --pattern tell them apart"
            )
        files[channel] = file
    if unmatched:
        raise InvalidInputError(
            f"{len(unmatched)} of {len(paths)} file(s) do not match the file-name pattern "
            f"{regex.pattern!r} (e.g. {unmatched[0]}); name them as the pattern says, or pass "
            "--pattern, a regex with groups plate, well (or row and column), site and channel"
        )
    if not by_site:
        raise EmptyInputError("no image files given for the per-channel layout")
    names = sorted({c for files in by_site.values() for c in files})
    renamed = _rename(names, channel_map, "the file names")
    sites = []
    for (plate, well, site), files in sorted(by_site.items()):
        ordered = sorted(files)
        sites.append(
            ChannelFilesSite(
                plate,
                well,
                site,
                tuple(ChannelSource(renamed[c], files[c], 0) for c in ordered),
                tuple(str(files[c]) for c in ordered),
            )
        )
    return sites


def check_sites(sites: Sequence[ChannelFilesSite], channels: Sequence[str]) -> None:
    """Refuse, before any pixel is read, a site without a file of a channel asked for.

    Parameters
    ----------
    sites : sequence of ChannelFilesSite
    channels : sequence of str
        The channels to read (after ``channel_map``).

    Raises
    ------
    ChannelNotFoundError
        If a channel is not among the layout's channels at all (the names it has listed).
    IncompleteSiteError
        If a site lacks a file of a channel that other sites have.
    InputNotFoundError
        If a file does not exist (its CSV line and column, or its path, named).
    """
    from cellframe.errors import IncompleteSiteError

    every = sorted({c for s in sites for c in s.channels})
    unknown = [c for c in channels if c not in every]
    if unknown:
        example = f" (--channel-map {every[0]}={unknown[0]})" if every else ""
        raise ChannelNotFoundError(
            f"channel(s) {unknown} are not among the channels of the per-channel files "
            f"{every}; name channels from those (--channels), or rename them{example}"
        )
    for site in sites:
        lacking = [c for c in channels if c not in site.channels]
        if lacking:
            origin = site.origins[0] if site.origins else "no file at all"
            raise IncompleteSiteError(
                f"plate {site.plate} well {site.well} site {site.site} ({origin}) has "
                f"no file for channel(s) {lacking}; it has {site.channels}. Add the missing "
                "file(s), or leave the site out"
            )
        for source, origin in zip(site.files, site.origins, strict=True):
            if source.channel in channels and not Path(source.path).is_file():
                raise InputNotFoundError(
                    f"{origin}: no image file at {source.path} (channel {source.channel} of "
                    f"plate {site.plate} well {site.well} site {site.site}); check the path "
                    "(relative PathName_ folders are read from the CSV's folder)"
                )
