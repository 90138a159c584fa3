"""IN Carta (Molecular Devices) single-object CSV exports.

An IN Carta export is one CSV per plate (or time point) with one row per
object: ``OBJECT ID``, ``Row``, ``Column``, ``FOV`` (site), ``WELL LABEL``
(``"C - 3"``), ``Z``, ``T``, class columns, then measurements named in words
(``"Primary Target Area wv1"``). The plate is the ``Plate ID`` column, else
the file's name without its extension, unless ``plate=`` is given.
Measurement names become SQL-friendly (``Primary_Target_Area_wv1``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from cellframe.columns import METADATA_PREFIX, OBJECT_NUMBER, PLATE, SITE, WELL
from cellframe.errors import MissingColumnsError, UnknownFormatError
from cellframe.io._base import (
    Reader,
    csv_header,
    inspect_csv,
    require_rows,
    scan_csv_batches,
)
from cellframe.io._normalize import (
    cast_features,
    default_batch_rows,
    normalize_keys,
    order_columns,
    sanitize_name,
)

#: IN Carta identifier columns and their cellframe names.
KEY_COLUMNS = {
    "OBJECT ID": OBJECT_NUMBER,
    "WELL LABEL": WELL,
    "FOV": SITE,
    "Row": f"{METADATA_PREFIX}Row",
    "Column": f"{METADATA_PREFIX}Column",
    "Z": f"{METADATA_PREFIX}Z",
    "T": f"{METADATA_PREFIX}T",
    "Class Name": f"{METADATA_PREFIX}Class_Name",
    "Class Color": f"{METADATA_PREFIX}Class_Color",
    "Ancestry Path": f"{METADATA_PREFIX}Ancestry_Path",
    "Plate ID": PLATE,
    "Slice Algorithm": f"{METADATA_PREFIX}Slice_Algorithm",
    "Slice Indicator": f"{METADATA_PREFIX}Slice_Indicator",
}
_TEXT_KEYS = {
    "WELL LABEL",
    "Row",
    "Class Name",
    "Class Color",
    "Ancestry Path",
    "Plate ID",
    "Slice Algorithm",
    "Slice Indicator",
}
#: Columns whose presence marks a CSV as an IN Carta export.
SIGNATURE = ("OBJECT ID", "WELL LABEL")


def is_incarta_csv(path: Path) -> bool:
    r"""Whether a CSV file's header has IN Carta's identifier columns.

    Examples
    --------
    >>> from pathlib import Path
    >>> _ = Path("incarta.csv").write_text("OBJECT ID,WELL LABEL,FOV,Area\n1,C - 3,1,52.5\n")
    >>> _ = Path("cells.csv").write_text("ImageNumber,ObjectNumber,Area\n1,1,52.5\n")
    >>> is_incarta_csv(Path("incarta.csv")), is_incarta_csv(Path("cells.csv"))
    (True, False)
    """
    try:
        header = csv_header(path)
    except (OSError, pl.exceptions.PolarsError):
        return False
    return header is not None and all(c in header for c in SIGNATURE)


class InCartaCSV(Reader):
    """Read IN Carta CSV exports (a file or a folder of them).

    Examples
    --------
    >>> from pathlib import Path
    >>> _ = Path("plate1.csv").write_text(
    ...     "OBJECT ID,WELL LABEL,FOV,Plate ID,Nuclei Area wv1\\n"
    ...     "1,C - 3,1,P1,52.5\\n"
    ...     "2,C - 3,1,P1,61.0\\n")
    >>> frame = next(InCartaCSV("plate1.csv").batches())
    >>> frame.columns
    ['Metadata_Plate', 'Metadata_Well', 'Metadata_Site', 'Metadata_ObjectNumber',
     'Nuclei_Area_wv1']
    >>> frame.rows()  # "C - 3" is well C03
    [('P1', 'C03', 1, 1, 52.5), ('P1', 'C03', 1, 2, 61.0)]
    """

    format = "incarta"

    def __init__(self, path: str | os.PathLike[str], **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        files = [self.path] if self.path.is_file() else sorted(self.path.rglob("*.csv"))
        self.files = [f for f in files if is_incarta_csv(f)]
        if not self.files:
            raise UnknownFormatError(
                f"{self.path} holds no IN Carta CSV (a header with {' and '.join(SIGNATURE)})"
            )

    def _rename(self, header: list[str], file: Path) -> dict[str, str]:
        rename: dict[str, str] = {}
        used: set[str] = set()
        for c in header:
            name = KEY_COLUMNS.get(c) or sanitize_name(c)
            if name in used:  # two names that only differ in punctuation
                name = f"{name}_{len(used)}"
            used.add(name)
            rename[c] = name
        return rename

    def batches(self) -> Iterator[pl.DataFrame]:
        """Yield each file's objects in batches, plate = file name."""
        total = 0
        for file in self.files:
            # Duplicate columns, a cut last row, gzip data and the delimiter, as for CellProfiler.
            layout = inspect_csv(file, table="IN Carta objects", issues=self.issues)
            if layout is None:
                self.issues.add(f"{file} is empty (0 bytes): skipped")
                continue
            header = layout.columns
            missing = [c for c in SIGNATURE if c not in header]
            if missing:
                raise MissingColumnsError(f"{file} (IN Carta export)", missing)
            rename = self._rename(header, file)
            schema = {c: (pl.String if c in _TEXT_KEYS else pl.Float64) for c in header}
            features = [rename[c] for c in header if c not in KEY_COLUMNS]
            where = f"{file} (IN Carta objects)"
            rows = self.batch_rows or default_batch_rows(len(header))
            for raw in scan_csv_batches(
                file, schema, batch_rows=rows, table="IN Carta objects", separator=layout.separator
            ):
                df = raw.rename(rename)
                df = df.with_columns(
                    pl.col(OBJECT_NUMBER).cast(pl.Int64, strict=False),
                    *[
                        pl.col(KEY_COLUMNS[c]).cast(pl.Int64, strict=False)
                        for c in ("Column", "Z", "T")
                        if c in header
                    ],
                )
                plate = self.plate
                if plate is None and PLATE not in df.columns:
                    plate = file.name.rsplit(".", 1)[0]
                df = normalize_keys(df, where=where, plate=plate, well=self.well)
                df = cast_features(df, features, where=where, issues=self.issues)
                total += df.height
                yield order_columns(df)
        require_rows(total, self.path, "objects")


__all__ = ["InCartaCSV", "is_incarta_csv"]
