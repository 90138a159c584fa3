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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from cellframe._progress import progress
from cellframe.errors import UnknownFormatError
from cellframe.io._base import Reader, csv_header, require_rows, scan_csv_batches
from cellframe.io._compartments import (
    COMPARTMENTS,
    Staging,
    canonical_compartment,
    image_metadata,
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
    >>> reader = CellProfilerCSV("analysis/", plate="P1")   # doctest: +SKIP
    >>> for frame in reader.batches():                       # doctest: +SKIP
    ...     print(frame.shape)
    """

    format = "cellprofiler_csv"

    def __init__(self, path: str | os.PathLike[str], **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        root = self.path.parent if self.path.is_file() else self.path
        self.root = root
        self.folders = find_table_folders(root)
        if not self.folders:
            raise UnknownFormatError(
                f"{self.path} holds no CellProfiler CSV tables (Image.csv, Cells.csv, "
                "Cytoplasm.csv, Nuclei.csv); point at the folder CellProfiler wrote them to"
            )
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
        if csv_header(file) is None:
            self.issues.add(f"{file} is empty (0 bytes): skipped")
            return None
        return pl.read_csv(file, infer_schema_length=None, glob=False)

    def batches(self) -> Iterator[pl.DataFrame]:
        """Yield single-cell (or, for image-only trees, image-level) batches."""
        if self.level == "image":
            yield from self._image_level()
            return
        images: list[pl.DataFrame] = []
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
                if df is not None and df.height:
                    where = f"{tables['Image']} (Image table)"
                    images.append(
                        image_metadata(df, table_key=rel, image_offset=offset, where=where)
                    )
                elif set(tables) & set(COMPARTMENTS):
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
                for comp in COMPARTMENTS:
                    if comp not in tables:
                        continue
                    n_objects += self._stage(staging, comp, tables[comp], rel, offset)
            if not staging.compartments:
                require_rows(0, self.path, "objects", self.issues)
            require_rows(n_objects, self.path, "objects", self.issues)
            image = self._keys(images)
            staging.check_images(image, f"Image.csv under {self.root}")
            n_out = 0
            for frame in staging.iter_joined(image, self.batch_rows):
                n_out += frame.height
                yield frame
            self._report_unmatched(staging, n_out)

    def _stage(self, staging: Staging, comp: str, file: Path, rel: str, offset: int) -> int:
        header = csv_header(file)
        where = f"{file} ({comp} table)"
        if header is None:
            self.issues.add(
                f"{file} is empty (0 bytes): skipped; objects of the other tables in "
                f"{file.parent} have no {comp} partner and are left out"
            )
            return 0
        schema = {c: (pl.String if _is_text_column(c, comp) else pl.Float64) for c in header}
        batch_rows = self.batch_rows or default_batch_rows(len(header))
        n = 0
        for raw in scan_csv_batches(file, schema, batch_rows=batch_rows, table=comp):
            frame = canonical_compartment(
                raw, comp, where=where, issues=self.issues, table_key=rel, image_offset=offset
            )
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
        return n

    def _keys(self, images: list[pl.DataFrame]) -> pl.DataFrame:
        if not images:
            require_rows(0, self.path, "Image.csv rows")
        image = pl.concat(images, how="diagonal_relaxed")
        return normalize_keys(
            image, where=f"Image.csv files under {self.root}", plate=self.plate, well=self.well
        )

    def _report_unmatched(self, staging: Staging, n_out: int) -> None:
        base = staging.base()
        left = staging.rows.get(base, 0) - n_out
        if left > 0:
            self.issues.add(
                f"{left} of {staging.rows[base]} {base} objects had no matching "
                f"{' and '.join(c for c in staging.compartments if c != base)} object and were "
                "left out (pycytominer and CytoTable join compartments the same way)"
            )

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


def _is_text_column(name: str, compartment: str) -> bool:
    base = name[len(compartment) + 1 :] if name.startswith(compartment + "_") else name
    return base == "TableNumber" or base.startswith("Metadata_")


__all__ = ["CellProfilerCSV", "find_table_folders"]
