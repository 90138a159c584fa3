"""Single-cell (or aggregated) profiles already in one table: CytoTable / pycytominer output.

CytoTable's ``convert`` and pycytominer's ``SingleCells.merge_single_cells``
write the joined single cells as Parquet or CSV(.gz), one row per cell, with
``Metadata_*`` keys (pycytominer also writes ``Image_Metadata_Plate`` and
``Image_Metadata_Well``, and ``Metadata_ObjectNumber_cells`` beside its
``Metadata_ObjectNumber``). The reader renames those keys to cellframe's
convention and types the features, streaming the file in batches.

Real files are checked, not trusted:

* Columns whose names differ only in case (LINCS well profiles hold both
  ``Metadata_Plate_Map_Name`` from the barcode platemap and
  ``Metadata_plate_map_name`` from the map file) are one column to SQL. Equal
  values are merged into the first spelling (an :class:`IngestWarning` names
  them); different values raise
  :class:`~cellframe.errors.CaseDuplicateColumnsError`, or, with
  ``case_duplicates="rename"``, the later spelling is kept as ``<name>_2``.
* Every file of a folder must hold the same feature columns; a file that
  differs raises :class:`~cellframe.errors.FeatureMismatchError` naming the
  file, its plates and the differing columns.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import polars as pl

from cellframe.columns import IMAGE_NUMBER, METADATA_PREFIX, OBJECT_NUMBER, PLATE
from cellframe.errors import (
    CaseDuplicateColumnsError,
    FeatureMismatchError,
    InvalidInputError,
    UnknownFormatError,
)
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
#: Choices of ``case_duplicates`` for columns equal up to case whose values differ.
CASE_DUPLICATES = ("error", "rename")
#: Columns a message lists before it gives only the count.
_SHOWN = 8


def _shown(items: list[str]) -> str:
    text = ", ".join(repr(c) for c in items[:_SHOWN])
    return text + (f", ... ({len(items)} in all)" if len(items) > _SHOWN else "")


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

    Parameters
    ----------
    path : str or os.PathLike
        A profile file, or a folder of them (read in name order).
    case_duplicates : {"error", "rename"}, default "error"
        What to do with columns whose names differ only in case and whose
        values differ (equal ones are always merged, with a warning):
        raise :class:`~cellframe.errors.CaseDuplicateColumnsError`, or keep
        the later spelling as ``<name>_2`` (``_3``, ...).
    **kwargs
        Reader parameters (see :class:`~cellframe.io.Reader`).

    Raises
    ------
    CaseDuplicateColumnsError
        See ``case_duplicates``.
    FeatureMismatchError
        If the files of a folder hold different feature columns.

    Examples
    --------
    >>> import polars as pl
    >>> pl.DataFrame({"Metadata_Plate": ["P1", "P1"], "Metadata_Well": ["A01", "A02"],
    ...               "f": [1, 2]}).write_parquet("profiles.parquet")
    >>> frame = next(ProfilesFile("profiles.parquet").batches())
    >>> frame.columns  # keys first, in cellframe's order; features as Float32
    ['Metadata_Plate', 'Metadata_Well', 'Metadata_Site', 'f']
    >>> frame["f"].dtype, frame["f"].to_list()
    (Float32, [1.0, 2.0])
    """

    format = "profiles"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        case_duplicates: Literal["error", "rename"] = "error",
        **kwargs: Any,
    ) -> None:
        super().__init__(path, **kwargs)
        if case_duplicates not in CASE_DUPLICATES:
            raise InvalidInputError(
                f"case_duplicates must be one of {list(CASE_DUPLICATES)}, not {case_duplicates!r}"
            )
        self.case_duplicates = case_duplicates
        self.files = _files(self.path)
        #: (file, lower-case name) -> what was done with the later spelling: "merged" or its new name.
        self._case_decisions: dict[tuple[str, str], str] = {}

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
        reference: tuple[Path, list[str]] | None = None
        for file in self.files:
            offset = 0
            for raw in self._raw_batches(file):
                raw = self._merge_case_duplicates(raw, file, offset)
                offset += raw.height
                frame = self._normalize(raw, file)
                features = [c for c in frame.columns if not c.startswith(METADATA_PREFIX)]
                if reference is None:
                    reference = (file, features)
                elif features != reference[1]:
                    self._feature_mismatch(frame, file, features, *reference)
                n += frame.height
                if frame.height:
                    yield frame
        require_rows(n, self.path, "profile rows")

    @staticmethod
    def _feature_mismatch(
        frame: pl.DataFrame, file: Path, features: list[str], first: Path, expected: list[str]
    ) -> None:
        missing = [c for c in expected if c not in set(features)]
        extra = [c for c in features if c not in set(expected)]
        plates = frame[PLATE].unique().sort().to_list() if PLATE in frame.columns else []
        parts = []
        if missing:
            parts.append(f"lacks {len(missing)} feature(s) of {first.name} ({_shown(missing)})")
        if extra:
            parts.append(f"has {len(extra)} feature(s) {first.name} lacks ({_shown(extra)})")
        if not parts:
            parts.append(f"holds the features of {first.name} in another order")
        raise FeatureMismatchError(
            f"profile file {file} (plate(s) {', '.join(map(str, plates)) or 'unknown'}) "
            + " and ".join(parts)
            + f"; every file of {file.parent} must hold the same features: ingest it into "
            "another table, or select the shared features first"
        )

    def _merge_case_duplicates(self, raw: pl.DataFrame, file: Path, offset: int) -> pl.DataFrame:
        """Merge columns equal up to case when their values are equal; else refuse or rename."""
        groups: dict[str, list[str]] = {}
        for c in raw.columns:
            groups.setdefault(c.lower(), []).append(c)
        drop: list[str] = []
        rename: dict[str, str] = {}
        lower_taken = set(groups)
        for names in groups.values():
            if len(names) < 2:
                continue
            keep = names[0]
            for other in names[1:]:
                key = (str(file), other.lower() + "|" + other)
                same = raw.select(
                    (pl.col(keep).cast(pl.String).eq_missing(pl.col(other).cast(pl.String)))
                    .all()
                    .alias("s")
                ).item()
                decided = self._case_decisions.get(key)
                if same and decided in (None, "merged"):
                    self._case_decisions[key] = "merged"
                    drop.append(other)
                    self.issues.add(
                        f"{file}: columns {keep!r} and {other!r} differ only in case and hold "
                        f"the same values; they were merged into {keep!r}"
                    )
                    continue
                if decided not in (None, "merged"):
                    rename[other] = decided
                    continue
                diff = raw.select(
                    ~pl.col(keep).cast(pl.String).eq_missing(pl.col(other).cast(pl.String))
                ).to_series()
                row = int(diff.arg_true()[0])
                line = (
                    f"row {offset + row + 1}"
                    if file.name.lower().endswith((".parquet", ".pq"))
                    else f"line {offset + row + 2}"
                )
                detail = (
                    f"{file}: columns {keep!r} and {other!r} differ only in case (one column "
                    f"to SQL) but hold different values in {int(diff.sum())} row(s) of this "
                    f"batch (first at {line}: {raw[keep][row]!r} vs {raw[other][row]!r})"
                )
                if decided == "merged":
                    raise CaseDuplicateColumnsError(
                        detail + "; earlier rows were equal and merged. Fix the file, or pass "
                        "case_duplicates='rename' (--case-duplicates rename)"
                    )
                if self.case_duplicates == "error":
                    raise CaseDuplicateColumnsError(
                        detail + "; rename one of them in the file, or pass "
                        "case_duplicates='rename' (CLI: --case-duplicates rename) to keep "
                        f"{other!r} as {other + '_2'!r}"
                    )
                k = 2
                while f"{other}_{k}".lower() in lower_taken:
                    k += 1
                new = f"{other}_{k}"
                lower_taken.add(new.lower())
                self._case_decisions[key] = new
                rename[other] = new
                self.issues.add(detail + f"; {other!r} was kept as {new!r}")
        if drop:
            raw = raw.drop(drop)
        return raw.rename(rename) if rename else raw

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
