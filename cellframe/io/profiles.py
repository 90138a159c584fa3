"""Single-cell (or aggregated) profiles already in one table: CytoTable / pycytominer output.

CytoTable's ``convert`` and pycytominer's ``SingleCells.merge_single_cells``
write the joined single cells as Parquet or CSV(.gz), one row per cell, with
``Metadata_*`` keys (pycytominer also writes ``Image_Metadata_Plate`` and
``Image_Metadata_Well``, and ``Metadata_ObjectNumber_cells`` beside its
``Metadata_ObjectNumber``). The reader renames those keys to cellframe's
convention and types the features, streaming the file in batches.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from cellframe.columns import IMAGE_NUMBER, METADATA_PREFIX, OBJECT_NUMBER
from cellframe.errors import UnknownFormatError
from cellframe.io._base import Reader, csv_header, require_rows, scan_csv_batches
from cellframe.io._normalize import (
    cast_features,
    default_batch_rows,
    normalize_keys,
    order_columns,
)

#: Columns that are identifiers or text, not measurements, though they lack the prefix.
_METADATA_PARTS = ("FileName_", "PathName_", "URL_", "MD5Digest_")
_PROFILE_SUFFIXES = (".parquet", ".pq", ".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".txt.gz")


def _metadata_name(column: str) -> str | None:
    """The ``Metadata_`` name of a non-feature column, or None for a feature."""
    if column.startswith(METADATA_PREFIX):
        return column
    if column.startswith("Image_Metadata_"):
        return column[len("Image_") :]
    if column in ("ImageNumber", "ObjectNumber", "TableNumber"):
        return METADATA_PREFIX + column
    body = column.split("_", 1)[1] if "_" in column else column
    if any(body.startswith(p) or column.startswith(p) for p in _METADATA_PARTS):
        return METADATA_PREFIX + column
    if body == "Number_Object_Number" or body.startswith("Parent_"):
        return METADATA_PREFIX + column
    return None


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(
        p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(_PROFILE_SUFFIXES)
    )
    if not files:
        raise UnknownFormatError(f"{path} holds no Parquet or CSV profile files")
    return files


class ProfilesFile(Reader):
    """Read CytoTable / pycytominer profiles from Parquet or CSV(.gz) files.

    Every column that is not ``Metadata_*`` (after the renames in the module
    docstring) is a feature and must be numeric.

    Examples
    --------
    >>> reader = ProfilesFile("SQ00014613.parquet")     # doctest: +SKIP
    >>> next(reader.batches()).columns[:3]               # doctest: +SKIP
    ['Metadata_Plate', 'Metadata_Well', 'Metadata_Site']
    """

    format = "profiles"

    def __init__(self, path: str | os.PathLike[str], **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.files = _files(self.path)

    def _lazy(self, file: Path) -> tuple[pl.LazyFrame | None, str]:
        name = file.name.lower()
        if name.endswith((".parquet", ".pq")):
            return pl.scan_parquet(file, glob=False), "parquet"
        separator = "\t" if ".tsv" in name or ".txt" in name else ","
        return None, separator

    def _raw_batches(self, file: Path) -> Iterator[pl.DataFrame]:
        lf, kind = self._lazy(file)
        if lf is not None:
            n_cols = len(lf.collect_schema())
            yield from lf.collect_batches(chunk_size=self.batch_rows or default_batch_rows(n_cols))
            return
        separator = kind
        compressed = file.name.lower().endswith(".gz")
        if compressed:
            # Polars reads gzip only whole; read it in one go, then slice (a .csv.gz of a
            # full plate should be converted to Parquet first for streaming).
            df = pl.read_csv(file, separator=separator, infer_schema=False, glob=False)
            header = df.columns
        else:
            header = csv_header(file, separator=separator)
            if header is None:
                require_rows(0, file, "rows (the file is empty)")
        schema = {
            c: (pl.String if _metadata_name(c) is not None else pl.Float64)
            for c in header  # type: ignore[union-attr]
        }
        rows = self.batch_rows or default_batch_rows(len(schema))
        if compressed:
            try:
                df = df.select(
                    [
                        pl.col(c) if t == pl.String else pl.col(c).cast(pl.Float64)
                        for c, t in schema.items()
                    ]
                )
            except pl.exceptions.InvalidOperationError:
                # cast_features names the column and value.
                pass
            for start in range(0, max(df.height, 1), rows):
                yield df.slice(start, rows)
            return
        yield from scan_csv_batches(
            file, schema, batch_rows=rows, table="profiles", separator=separator
        )

    def batches(self) -> Iterator[pl.DataFrame]:
        """Yield the profiles in batches, keys renamed and features Float32."""
        n = 0
        for file in self.files:
            for raw in self._raw_batches(file):
                frame = self._normalize(raw, file)
                n += frame.height
                if frame.height:
                    yield frame
        require_rows(n, self.path, "profile rows")

    def _normalize(self, raw: pl.DataFrame, file: Path) -> pl.DataFrame:
        where = f"{file}"
        rename: dict[str, str] = {}
        taken = set(raw.columns)
        # pycytominer's merge keeps several object numbers; the cell's is the one of Cells.
        if f"{OBJECT_NUMBER}_cells" in taken:
            if OBJECT_NUMBER in taken:
                rename[OBJECT_NUMBER] = f"{OBJECT_NUMBER}_nuclei"
            rename[f"{OBJECT_NUMBER}_cells"] = OBJECT_NUMBER
        for c in raw.columns:
            if c in rename:
                continue
            m = _metadata_name(c)
            if m is not None and m != c and m not in taken:
                rename[c] = m
                taken.add(m)
        df = raw.rename(rename)
        # pandas writes its index as a column; it is not data.
        df = df.drop([c for c in df.columns if c.startswith("__index_level_")])
        meta = {c for c in df.columns if c.startswith(METADATA_PREFIX)}
        features = [c for c in df.columns if c not in meta]
        df = normalize_keys(df, where=where, plate=self.plate, well=self.well)
        ids = [
            c
            for c in df.columns
            if c in (OBJECT_NUMBER, IMAGE_NUMBER)
            or (
                c.startswith(METADATA_PREFIX)
                and ("_Parent_" in c or c.endswith("Number_Object_Number"))
            )
            or c.startswith(f"{OBJECT_NUMBER}_")
        ]
        if ids:
            df = df.with_columns(pl.col(ids).cast(pl.Int64, strict=False))
        df = cast_features(df, features, where=where, issues=self.issues)
        return order_columns(df)


__all__ = ["ProfilesFile"]
