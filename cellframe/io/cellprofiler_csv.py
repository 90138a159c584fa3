"""CellProfiler CSV exports: per-site or per-plate folders of ``Image.csv``, ``Cells.csv``, ...

CellProfiler's ExportToSpreadsheet writes one CSV per object type. Screens
are usually processed one site (or well) per job, giving a tree of folders,
each with its own ``Image.csv``, ``Cells.csv``, ``Cytoplasm.csv`` and
``Nuclei.csv`` (the layout cytominer-database and pycytominer's ``collate``
read). Object columns carry no compartment prefix (``AreaShape_Area`` in
``Cells.csv``); the reader adds it, joins the compartments into single cells
and attaches the plate, well and site of each image.

A tree whose folders hold only ``Image.csv`` files yields image-level rows
(``level == "image"``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from cellframe._progress import progress
from cellframe.errors import (
    IncompleteExportError,
    InvalidInputError,
    TruncatedFileError,
    UnknownFormatError,
)
from cellframe.io._base import (
    CsvLayout,
    Reader,
    check_short_rows,
    inspect_csv,
    require_rows,
    scan_csv_batches,
)
from cellframe.io._compartments import (
    COMPARTMENTS,
    IMAGE_KEY,
    OBJECT_KEY,
    Staging,
    canonical_compartment,
    check_counts,
    check_unique_images,
    duplicate_keys_error,
    image_counts,
    image_metadata,
    report_unreferenced,
)
from cellframe.io._normalize import (
    Issues,
    cast_features,
    default_batch_rows,
    normalize_keys,
    order_columns,
    strip_image_prefix,
)

#: File names (lower case) of the tables a folder may hold.
TABLE_FILES = {
    "image.csv": "Image",
    "cells.csv": "Cells",
    "cytoplasm.csv": "Cytoplasm",
    "nuclei.csv": "Nuclei",
}
for _name, _table in list(TABLE_FILES.items()):
    TABLE_FILES[_name + ".gz"] = _table

#: Other CellProfiler CSVs that are expected beside them and not read.
_QUIET_SKIP = {"experiment.csv"}

# Folder images are kept apart by putting the folder's index above ImageNumber.
_FOLDER_SHIFT = 32


def find_table_folders(root: Path) -> list[tuple[Path, dict[str, Path]]]:
    """Folders under ``root`` holding CellProfiler tables, with their files by table name."""
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    folders: dict[Path, dict[str, Path]] = {}
    for p in files:
        table = TABLE_FILES.get(p.name.lower())
        if table is not None:
            folders.setdefault(p.parent, {})[table] = p
    return sorted(folders.items(), key=lambda kv: str(kv[0]))


class CellProfilerCSV(Reader):
    """Read a CellProfiler CSV tree (see the module docstring) as single-cell batches.

    Examples
    --------
    The bundled demo tree (two sites of plate BR00121431, 5,851 features):

    >>> from cellframe.demo import demo_data_dir
    >>> reader = CellProfilerCSV(demo_data_dir() / "cellprofiler" / "BR00121431")
    >>> for frame in reader.batches():
    ...     print(frame.shape, sorted(set(frame["Metadata_Well"])))
    (125, 5856) ['A01', 'A02']
    """

    format = "cellprofiler_csv"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        compartments: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        """Find the CSV folders under ``path``.

        Parameters
        ----------
        path : str or os.PathLike
            A folder (or one of its CSV files).
        compartments : sequence of str, optional
            Compartments to read (of Cells, Cytoplasm, Nuclei). Default: those
            the tree holds. Either way every folder with objects must hold a
            file for each (:class:`IncompleteExportError` names the folder).
        **kwargs
            As :class:`~cellframe.io._base.Reader`.
        """
        super().__init__(path, **kwargs)
        root = self.path.parent if self.path.is_file() else self.path
        self.root = root
        self.folders = find_table_folders(root)
        if not self.folders:
            raise UnknownFormatError(
                f"{self.path} holds no CellProfiler CSV tables (Image.csv, Cells.csv, "
                "Cytoplasm.csv, Nuclei.csv); point at the folder CellProfiler wrote them to"
            )
        present = [c for c in COMPARTMENTS if any(c in t for _, t in self.folders)]
        if compartments is not None:
            asked = [str(c) for c in compartments]
            if not asked or any(c not in COMPARTMENTS for c in asked):
                raise InvalidInputError(
                    f"compartments must name some of {', '.join(COMPARTMENTS)}, not {asked}"
                )
            present = [c for c in COMPARTMENTS if c in asked]
            self.folders = [
                (f, {k: v for k, v in t.items() if k == "Image" or k in present})
                for f, t in self.folders
            ]
        self.compartments = present
        has_objects = any(set(t) & set(COMPARTMENTS) for _, t in self.folders)
        self.level = "cell" if has_objects else "image"
        skipped = sorted(
            {
                p.name
                for folder, _ in self.folders
                for p in folder.glob("*.csv")
                if p.name.lower() not in TABLE_FILES and p.name.lower() not in _QUIET_SKIP
            }
        )
        if skipped:
            self.issues.add(
                f"CSV files not read (cellframe joins Cells, Cytoplasm and Nuclei): {', '.join(skipped)}"
            )

    def _rel(self, folder: Path) -> str:
        rel = folder.relative_to(self.root).as_posix() if folder != self.root else "."
        return rel

    def _image_table(self, index: int, folder: Path, file: Path) -> pl.DataFrame | None:
        layout = inspect_csv(file, table="Image table", issues=self.issues)
        if layout is None:
            self.issues.add(f"{file} is empty (0 bytes): skipped")
            return None
        try:
            return pl.read_csv(
                file, infer_schema_length=None, separator=layout.separator, glob=False
            )
        except OSError as exc:
            raise TruncatedFileError(
                f"cannot read {file} (Image table): {exc}; the file is damaged or was cut "
                "short: copy it again from the source"
            ) from exc

    def batches(self) -> Iterator[pl.DataFrame]:
        """Yield single-cell (or, for image-only trees, image-level) batches.

        Every file is checked before its rows are used (see docs/io.md, "What
        cellframe refuses and why"); recoverable problems are collected in
        :attr:`issues` with counts, and images without objects in
        :attr:`empty_images`.

        Raises
        ------
        TruncatedFileError
            A row with fewer fields than the header, or a gzip stream cut short.
        DuplicateColumnsError
            A header naming a column twice (also with and without the prefix).
        DuplicateKeysError
            Two objects (or image rows) with one (ImageNumber, ObjectNumber).
        DanglingReferenceError
            A ``Parent_*`` number naming no object of its image.
        IncompleteExportError
            A header-only compartment file beside others with objects, or a
            folder without a compartment file the other folders have.
        MissingColumnsError
            No ``ImageNumber`` or ``ObjectNumber`` column.
        """
        if self.level == "image":
            yield from self._image_level()
            return
        images: list[pl.DataFrame] = []
        self._no_objects: list[tuple[Path, int]] = []
        self._zero_byte = False
        self._image_files: dict[str, str] = {}
        expected: list[pl.DataFrame] = []
        n_bytes = sum(f.stat().st_size for _, t in self.folders for f in t.values())
        with Staging(
            self.staging_dir,
            memory_limit=self.memory_limit,
            flush_rows=self.batch_rows or 10_000,
            in_memory=self._use_memory(n_bytes),
        ) as staging:
            n_objects = 0
            for index, (folder, tables) in enumerate(
                progress(
                    self.folders, desc="reading CSV folders", unit="folder", enabled=self.progress
                )
            ):
                rel = self._rel(folder)
                offset = index << _FOLDER_SHIFT
                df = (
                    self._image_table(index, folder, tables["Image"]) if "Image" in tables else None
                )
                comps = [c for c in COMPARTMENTS if c in tables]
                lacking = [c for c in self.compartments if c not in tables]
                if not comps and df is not None and df.height:
                    # No object table at all: the site's objects were never exported (or
                    # not copied). Its images are not empty sites: leave them out, counted.
                    self._no_objects.append((folder, df.height))
                    continue
                if lacking and (comps or (df is not None and df.height)):
                    have = ", ".join(tables[c].name for c in comps) or "no object table"
                    raise IncompleteExportError(
                        f"{folder} has no {' or '.join(f'{c}.csv' for c in lacking)} (it holds "
                        f"{have}) while other folders of {self.root} do: its images cannot be "
                        "joined like the others'; re-export that site, or take only the "
                        "compartments every folder has: compartments="
                        f"{[c for c in self.compartments if c not in lacking]} (command line: "
                        f"--compartments {','.join(c for c in self.compartments if c not in lacking)})"
                    )
                if df is None or not df.height:
                    # Without its image rows a folder's objects have no plate, well or site.
                    state = (
                        "has no Image.csv"
                        if df is None and "Image" not in tables
                        else ("has an Image.csv without rows")
                    )
                    self.issues.add(
                        f"{folder} {state}: its object tables were not read (their cells "
                        "cannot be placed on a plate); re-export that site to include them"
                    )
                    continue
                layouts = {
                    c: inspect_csv(tables[c], table=f"{c} table", issues=self.issues) for c in comps
                }
                if self._skip_partial(folder, tables, layouts):
                    continue
                where = f"{tables['Image']} (Image table)"
                images.append(image_metadata(df, table_key=rel, image_offset=offset, where=where))
                self._image_files[rel] = where
                counted = image_counts(df, table_key=rel, image_offset=offset)
                if counted is not None:
                    expected.append(counted)
                staged = {
                    c: self._stage(staging, c, layout, rel, offset)
                    for c, layout in layouts.items()
                    if layout is not None
                }
                self._check_complete(folder, tables, staged)
                n_objects += sum(staged.values())
            if self._no_objects:
                n_images = sum(n for _, n in self._no_objects)
                shown = ", ".join(str(f) for f, _ in self._no_objects[:3])
                more = len(self._no_objects) - 3
                self.issues.add(
                    f"{len(self._no_objects)} folder(s) hold an Image.csv but no object table "
                    f"({shown}{f' and {more} more' if more > 0 else ''}): their {n_images} "
                    "image(s) were left out (their objects were not exported or not copied, so "
                    "they are not recorded as empty sites); copy their Cells.csv, Cytoplasm.csv "
                    "and Nuclei.csv to include them"
                )
            if not staging.compartments:
                require_rows(0, self.path, "objects", self.issues)
            if n_objects == 0 and (self._zero_byte or not images):
                # Only a source whose every object file is header-only holds empty
                # sites; a 0-byte file was never written, so its images are not empty.
                require_rows(0, self.path, "objects", self.issues)
            image = self._keys(images)
            staging.check_images(image, f"Image.csv under {self.root}")
            if expected:
                check_counts(
                    pl.concat(expected, how="diagonal_relaxed"),
                    {c: staging.object_counts(c) for c in staging.compartments},
                    staging.where_of,
                    lambda key: self._image_files.get(key, "Image.csv"),
                    self.issues,
                )
            unreferenced = staging.check_references()
            self._images = image
            self._note_empty_images(image, staging.image_keys(), "Image.csv")
            n_out = 0
            if n_objects == 0:
                # Empty sites only: their images are recorded (image_rows), no cells.
                return
            for frame in staging.iter_joined(image, self.batch_rows):
                n_out += frame.height
                yield frame
            self._report_unmatched(staging, n_out, unreferenced)

    def _skip_partial(
        self, folder: Path, tables: dict[str, Path], layouts: dict[str, CsvLayout | None]
    ) -> bool:
        """Note 0-byte object tables; True when the folder's other objects must be left out.

        A 0-byte file was never written (the job stopped before exporting): the
        folder's other objects cannot be joined into cells, so they are left
        out and counted.
        """
        empty = [c for c, layout in layouts.items() if layout is None]
        for comp in empty:
            self.issues.add(f"{tables[comp]} is empty (0 bytes): skipped")
            self._zero_byte = True
        if not empty:
            return False
        counts = {c: _count_rows(layout) for c, layout in layouts.items() if layout is not None}
        if not any(counts.values()):
            return False
        left = ", ".join(f"{n} {c}" for c, n in counts.items() if n)
        self.issues.add(
            f"{' and '.join(tables[c].name for c in empty)} of {folder} "
            f"{'is' if len(empty) == 1 else 'are'} empty (0 bytes): the folder's {left} objects "
            "were left out (they cannot be joined into cells without their "
            f"{' and '.join(empty)} partners); re-export that site to include them"
        )
        return True

    def _check_complete(
        self, folder: Path, tables: dict[str, Path], staged: dict[str, int]
    ) -> None:
        """Raise when a compartment file holds only a header while another holds objects."""
        header_only = [c for c, n in staged.items() if n == 0]
        with_rows = {c: n for c, n in staged.items() if n}
        if header_only and with_rows:
            comp = header_only[0]
            others = ", ".join(f"{tables[c].name} holds {n}" for c, n in with_rows.items())
            raise IncompleteExportError(
                f"{tables[comp]} ({comp} table) holds a header but no rows, while {others} "
                f"objects of the same images ({folder}): the {comp} objects are missing, and "
                "without them the other objects cannot be joined into cells; the export was "
                "interrupted or the file overwritten: re-export that site (a site without "
                "objects has every object table header-only)"
            )

    def _stage(self, staging: Staging, comp: str, layout: CsvLayout, rel: str, offset: int) -> int:
        file = layout.path
        header = layout.columns
        where = f"{file} ({comp} table)"
        schema = {c: (pl.String if _is_text_column(c, comp) else pl.Float64) for c in header}
        batch_rows = self.batch_rows or default_batch_rows(len(header))
        n = 0
        keys: list[pl.DataFrame] = []
        # A short row reads as nulls in the last columns: rows whose last field is
        # null are checked against the file (rare, so the common case costs nothing).
        last = header[-1]
        suspects: list[int] = []
        for raw in scan_csv_batches(
            file, schema, batch_rows=batch_rows, table=f"{comp} table", separator=layout.separator
        ):
            if raw[last].null_count():
                suspects += (raw[last].is_null().arg_true() + n).to_list()
            frame = canonical_compartment(
                raw, comp, where=where, issues=self.issues, table_key=rel, image_offset=offset
            )
            keys.append(frame.select(IMAGE_KEY, OBJECT_KEY))
            staging.append(comp, frame, where)
            n += frame.height
        if n == 0:
            # A header-only file still defines the compartment's columns.
            empty = pl.DataFrame(schema=schema)
            staging.append(
                comp,
                canonical_compartment(
                    empty, comp, where=where, issues=None, table_key=rel, image_offset=offset
                ),
                where,
            )
        elif n > 1:
            _check_unique(pl.concat(keys), file, comp)
        if suspects:
            check_short_rows(layout, suspects, table=f"{comp} table")
        return n

    def _keys(self, images: list[pl.DataFrame]) -> pl.DataFrame:
        if not images:
            require_rows(0, self.path, "Image.csv rows")
        image = pl.concat(images, how="diagonal_relaxed")
        check_unique_images(image, lambda key: self._image_files.get(key, f"Image.csv in {key}"))
        return normalize_keys(
            image, where=f"Image.csv files under {self.root}", plate=self.plate, well=self.well
        )

    def _report_unmatched(self, staging: Staging, n_out: int, unreferenced: dict[str, int]) -> None:
        base = staging.base()
        left = staging.rows.get(base, 0) - n_out
        if left > 0:
            self.issues.add(
                f"{left} of {staging.rows[base]} {base} objects had no matching "
                f"{' and '.join(c for c in staging.compartments if c != base)} object (their "
                "Parent_ column is 0 or empty) and were left out (pycytominer and CytoTable "
                "join compartments the same way)"
            )
        report_unreferenced(self.issues, unreferenced, staging.rows, base, str(self.root))

    def _image_level(self) -> Iterator[pl.DataFrame]:
        """Image-only trees: one row per image, image measurements as features."""
        frames = []
        for index, (folder, tables) in enumerate(self.folders):
            if "Image" not in tables:
                continue
            df = self._image_table(index, folder, tables["Image"])
            if df is None or not df.height:
                continue
            frames.append(df.rename({c: strip_image_prefix(c) for c in df.columns}))
        if not frames:
            require_rows(0, self.path, "Image.csv rows")
        yield image_level_frame(
            pl.concat(frames, how="diagonal_relaxed"),
            where=f"Image.csv files under {self.root}",
            plate=self.plate,
            well=self.well,
            issues=self.issues,
        )


def image_level_frame(
    df: pl.DataFrame, *, where: str, plate: str | None, well: str | None, issues: Issues | None
) -> pl.DataFrame:
    """Image rows with keys, metadata and ``Image_``-prefixed Float32 features."""
    from cellframe.columns import IMAGE_NUMBER, METADATA_PREFIX

    rename: dict[str, str] = {}
    for c in df.columns:
        if c == "ImageNumber":
            rename[c] = IMAGE_NUMBER
        elif c.startswith(METADATA_PREFIX):
            continue
        elif c.startswith(
            ("FileName_", "PathName_", "URL_", "MD5Digest_", "Series_", "Frame_")
        ) or c in (
            "Group_Index",
            "Group_Number",
            "TableNumber",
        ):
            rename[c] = METADATA_PREFIX + c
        else:
            rename[c] = "Image_" + c
    df = df.rename(rename)
    df = normalize_keys(df, where=where, plate=plate, well=well)
    text_meta = [c for c, t in df.schema.items() if c.startswith(METADATA_PREFIX)]
    features = [c for c in df.columns if c not in set(text_meta)]
    df = cast_features(df, features, where=where, issues=issues)
    return order_columns(df)


def _count_rows(layout: CsvLayout) -> int:
    """Data rows of a CSV file (a streaming count; only for files about to be left out)."""
    return int(
        pl.scan_csv(layout.path, separator=layout.separator, infer_schema=False, glob=False)
        .select(pl.len())
        .collect()
        .item()
    )


def _check_unique(keys: pl.DataFrame, file: Path, comp: str) -> None:
    """Raise :class:`DuplicateKeysError` when two rows of a file share (ImageNumber, ObjectNumber)."""
    dup = keys.is_duplicated()
    if not dup.any():
        return
    rows = keys.with_row_index("_row").filter(dup)
    first = rows.row(0, named=True)
    same = rows.filter(
        (pl.col(IMAGE_KEY) == first[IMAGE_KEY]) & (pl.col(OBJECT_KEY) == first[OBJECT_KEY])
    )
    lines = [int(i) + 2 for i in same["_row"]]  # line 1 is the header
    raise duplicate_keys_error(
        f"{file} ({comp} table)",
        comp,
        ("", first[IMAGE_KEY], first[OBJECT_KEY]),
        same.height,
        lines,
    )


def _is_text_column(name: str, compartment: str) -> bool:
    base = name[len(compartment) + 1 :] if name.startswith(compartment + "_") else name
    return base == "TableNumber" or base.startswith("Metadata_")


__all__ = ["CellProfilerCSV", "find_table_folders"]
