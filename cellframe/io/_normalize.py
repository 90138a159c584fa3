"""Shared helpers of the readers: key columns, feature typing, collected warnings.

Every reader hands its rows through these functions, so each format ends in
the same shape (DOMAIN.md §1): ``Metadata_Plate`` (str), ``Metadata_Well``
(str, zero-padded ``A01``), ``Metadata_Site`` (int32),
``Metadata_ObjectNumber`` (int64), other ``Metadata_*`` annotations, and
Float32 features.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import polars as pl

from cellframe.columns import (
    FEATURE_DTYPE,
    IMAGE_NUMBER,
    METADATA_PREFIX,
    OBJECT_NUMBER,
    PLATE,
    SITE,
    WELL,
)
from cellframe.errors import InvalidInputError, MissingColumnsError

#: Columns that name the plate, first match wins (after an ``Image_`` prefix is stripped).
PLATE_CANDIDATES = (
    PLATE,
    "Metadata_plate",
    "Metadata_Barcode",
    "Metadata_PlateID",
    "Metadata_Plate_ID",
    "Metadata_Assay_Plate_Barcode",
)
#: Columns that name the well.
WELL_CANDIDATES = (WELL, "Metadata_well", "Metadata_WellID", "Metadata_well_position")
#: Columns that number the site (field of view).
SITE_CANDIDATES = (SITE, "Metadata_site", "Metadata_FieldID", "Metadata_Field", "Metadata_FOV")
#: Row and column of the well, used when there is no well name.
ROW_CANDIDATES = ("Metadata_Row", "Metadata_WellRow")
COLUMN_CANDIDATES = ("Metadata_Col", "Metadata_Column", "Metadata_WellColumn")

_WELL = re.compile(r"^\s*([A-Za-z]{1,2})\s*-?\s*0*(\d{1,3})\s*$")

#: Row numbers of plates up to 1536 wells (32 rows) to letters.
_ROW_LETTERS = {str(i): chr(64 + i) if i <= 26 else "A" + chr(64 + i - 26) for i in range(1, 33)}


def normalize_well(value: str) -> str:
    """Zero-pad a well name: ``"C6"``, ``"c06"`` and ``"C - 6"`` all become ``"C06"``.

    Names that do not look like a row letter and a column number are returned
    unchanged.

    Examples
    --------
    >>> normalize_well("C6"), normalize_well("c - 3"), normalize_well("AF48")
    ('C06', 'C03', 'AF48')
    """
    m = _WELL.match(value)
    if not m:
        return value
    return m.group(1).upper() + m.group(2).zfill(2)


def well_expr(expr: pl.Expr) -> pl.Expr:
    """Polars expression form of :func:`normalize_well`."""
    s = expr.cast(pl.String).str.strip_chars()
    letters = s.str.extract(r"^([A-Za-z]{1,2})\s*-?\s*0*\d{1,3}$", 1).str.to_uppercase()
    digits = s.str.extract(r"^[A-Za-z]{1,2}\s*-?\s*0*(\d{1,3})$", 1)
    # 0* may swallow a lone "0"; the column number is then 0.
    digits = pl.when(digits.is_null() & letters.is_not_null()).then(pl.lit("0")).otherwise(digits)
    return pl.when(letters.is_not_null()).then(letters + digits.str.zfill(2)).otherwise(s)


def _row_col_well(row: pl.Expr, col: pl.Expr) -> pl.Expr:
    r = row.cast(pl.String).str.strip_chars()
    r = (
        pl.when(r.str.contains(r"^\d+$"))
        .then(r.replace(_ROW_LETTERS))
        .otherwise(r.str.to_uppercase())
    )
    c = col.cast(pl.String).str.strip_chars().str.replace(r"\.0$", "")
    return well_expr(r + c)


def site_expr(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Site as Int32; text such as ``"s1"`` or ``"f03"`` keeps its number."""
    if dtype.is_numeric():
        return expr.cast(pl.Int32, strict=False)
    return expr.cast(pl.String).str.extract(r"(\d+)\s*$", 1).cast(pl.Int32, strict=False)


def _text_key(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """A key as text; whole floats lose their '.0' (barcodes read as numbers)."""
    if dtype.is_float():
        return (
            pl.when(expr == expr.round(0))
            .then(expr.cast(pl.Int64, strict=False).cast(pl.String))
            .otherwise(expr.cast(pl.String))
        )
    return expr.cast(pl.String)


def strip_image_prefix(name: str) -> str:
    """``Image_Metadata_Plate`` -> ``Metadata_Plate``; other names unchanged."""
    return name[len("Image_") :] if name.startswith("Image_") else name


def _first(names: Sequence[str], candidates: Sequence[str]) -> str | None:
    have = set(names)
    return next((c for c in candidates if c in have), None)


def normalize_keys(
    df: pl.DataFrame,
    *,
    where: str,
    plate: str | None = None,
    well: str | None = None,
    require_well: bool = True,
) -> pl.DataFrame:
    """Find, rename and type the plate, well and site columns of ``df``.

    Parameters
    ----------
    df : polars.DataFrame
        Rows whose metadata columns already carry the ``Metadata_`` prefix.
    where : str
        The file and table the rows come from, for error messages.
    plate : str, optional
        Plate name given by the user; replaces any plate column.
    well : str, optional
        Well given by the user, for sources without one.
    require_well : bool, default True
        Raise when no well can be found.

    Returns
    -------
    polars.DataFrame
        ``df`` with ``Metadata_Plate`` (str), ``Metadata_Well`` (str) and
        ``Metadata_Site`` (int32, null when the source has no site) first.

    Raises
    ------
    MissingColumnsError
        If no plate (and no ``plate``) or no well (and no ``well``) is found.
    InvalidInputError
        If ``well`` is given for a source that has wells.
    """
    names = df.columns
    exprs: list[pl.Expr] = []
    used: list[str] = []
    plate_col = _first(names, PLATE_CANDIDATES)
    if plate is not None:
        exprs.append(pl.lit(str(plate), pl.String).alias(PLATE))
    elif plate_col is not None:
        exprs.append(_text_key(pl.col(plate_col), df.schema[plate_col]).alias(PLATE))
    else:
        raise MissingColumnsError(
            where,
            [PLATE],
            f"no plate column was found (looked for {', '.join(PLATE_CANDIDATES)}, also with an "
            "'Image_' prefix); pass plate='NAME' (command line: --plate NAME)",
        )
    if plate_col is not None:
        used.append(plate_col)

    well_col = _first(names, WELL_CANDIDATES)
    row_col = _first(names, ROW_CANDIDATES)
    col_col = _first(names, COLUMN_CANDIDATES)
    if well is not None:
        if well_col is not None:
            raise InvalidInputError(
                f"{where} already has a well column {well_col!r}; leave out well='...'"
            )
        exprs.append(pl.lit(normalize_well(str(well)), pl.String).alias(WELL))
    elif well_col is not None:
        exprs.append(well_expr(pl.col(well_col)).alias(WELL))
        used.append(well_col)
    elif row_col is not None and col_col is not None:
        exprs.append(_row_col_well(pl.col(row_col), pl.col(col_col)).alias(WELL))
    elif require_well:
        raise MissingColumnsError(
            where,
            [WELL],
            f"no well column was found (looked for {', '.join(WELL_CANDIDATES)}, or a row and a "
            "column such as Metadata_Row and Metadata_Col); add one, or pass well='A01' for a "
            "single-well source",
        )
    else:
        exprs.append(pl.lit(None, pl.String).alias(WELL))

    site_col = _first(names, SITE_CANDIDATES)
    if site_col is not None:
        exprs.append(site_expr(pl.col(site_col), df.schema[site_col]).alias(SITE))
        used.append(site_col)
    else:
        exprs.append(pl.lit(None, pl.Int32).alias(SITE))
    # The key columns replace the columns they came from (Metadata_Barcode -> Metadata_Plate).
    rest = [c for c in names if c not in set(used) | {PLATE, WELL, SITE}]
    return df.select([*exprs, *rest])


def order_columns(df: pl.DataFrame) -> pl.DataFrame:
    """Keys first (plate, well, site, image, object), then metadata, then features."""
    keys = [c for c in (PLATE, WELL, SITE, IMAGE_NUMBER, OBJECT_NUMBER) if c in df.columns]
    meta = [c for c in df.columns if c.startswith(METADATA_PREFIX) and c not in keys]
    rest = [c for c in df.columns if not c.startswith(METADATA_PREFIX)]
    return df.select([*keys, *meta, *rest])


@dataclass
class Issues:
    """Recoverable problems met while reading, reported as warnings with counts."""

    messages: list[str] = field(default_factory=list)
    #: (where, column) -> number of NaN values stored as null.
    nan: dict[tuple[str, str], int] = field(default_factory=dict)
    #: (where, column) -> number of +-inf values stored as null.
    inf: dict[tuple[str, str], int] = field(default_factory=dict)
    #: (where, column) -> number of empty fields (null as read).
    empty: dict[tuple[str, str], int] = field(default_factory=dict)
    #: kind of recovery -> files it applied to (see :data:`FILE_NOTES`).
    files: dict[str, list[str]] = field(default_factory=dict)

    def add(self, message: str) -> None:
        """Record one message (kept once)."""
        if message not in self.messages:
            self.messages.append(message)

    def count(self, kind: str, where: str, column: str, n: int) -> None:
        """Add ``n`` values of ``kind`` (``"nan"``, ``"inf"``, ``"empty"``) in ``column``."""
        counts = getattr(self, kind)
        key = (where, column)
        counts[key] = counts.get(key, 0) + n

    def note_file(self, kind: str, file: str) -> None:
        """Record that a recovery of ``kind`` (a key of :data:`FILE_NOTES`) applied to ``file``."""
        files = self.files.setdefault(kind, [])
        if file not in files:
            files.append(file)

    def summary(self) -> list[str]:
        """Every message, with one line per kind of value count and of file recovery."""
        out = list(self.messages)
        for kind, files in self.files.items():
            shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
            out.append(f"{len(files)} {FILE_NOTES.get(kind, kind)}: {shown}")
        if self.nan or self.inf:
            n_nan, n_inf = sum(self.nan.values()), sum(self.inf.values())
            both = {**self.nan}
            for k, n in self.inf.items():
                both[k] = both.get(k, 0) + n
            out.append(
                f"{n_nan} NaN and {n_inf} infinite value(s) in "
                f"{len({c for _, c in both})} feature column(s) were stored as null (rows are "
                f"kept; e.g. {_worst(both)})"
            )
        if self.empty:
            out.append(
                f"{sum(self.empty.values())} empty field(s) in "
                f"{len({c for _, c in self.empty})} feature column(s) are null (rows are kept; "
                f"e.g. {_worst(self.empty)})"
            )
        return out


#: Recoveries a reader applies to a whole file, and how the warning names them.
FILE_NOTES = {
    "gzip": "file(s) named .csv hold gzip-compressed data and were read by their magic bytes",
    "delimiter": "file(s) are not comma-separated; the delimiter was sniffed from the header",
    "no_final_newline": "file(s) do not end with a line break, as an interrupted copy leaves "
    "them; their last row has every field and was read as it is: check that it is complete",
}


def _worst(counts: dict[tuple[str, str], int]) -> str:
    worst = sorted(counts.items(), key=lambda kv: -kv[1])[:5]
    return "; ".join(f"{c} in {w}: {n}" for (w, c), n in worst)


def cast_features(
    df: pl.DataFrame,
    features: Sequence[str],
    *,
    where: str,
    issues: Issues | None,
) -> pl.DataFrame:
    """Cast feature columns to Float32, turning NaN and +-inf into null (counted).

    NaN, infinite values and empty fields (null as read) are counted apart in
    ``issues``.

    Parameters
    ----------
    df : polars.DataFrame
        The rows.
    features : sequence of str
        Columns to treat as features.
    where : str
        The file and table, for messages.
    issues : Issues, optional
        Collects the NaN/inf counts.

    Returns
    -------
    polars.DataFrame

    Raises
    ------
    InvalidInputError
        If a feature column holds text that is not a number.
    """
    features = list(features)
    if not features:
        return df
    schema = df.schema
    text = [c for c in features if schema[c] == pl.String]
    for c in text:
        s = df[c].str.strip_chars()
        parsed = s.cast(pl.Float64, strict=False)
        bad = s.is_not_null() & (s != "") & parsed.is_null()
        if bad.any():
            i = int(bad.arg_true()[0])
            raise InvalidInputError(
                f"{where}: column {c!r} holds non-numeric values (e.g. {df[c][i]!r} in data row "
                f"{i + 1} of this batch); every column that is not a key or Metadata_ column is "
                "read as a feature and must be numeric: fix the values, or rename the column "
                "with a 'Metadata_' prefix to keep it as an annotation"
            )
    if text:
        df = df.with_columns(_blank_to_null(pl.col(text)))
    to_cast = [c for c in features if schema[c] != FEATURE_DTYPE]
    if to_cast:
        df = df.with_columns(pl.col(to_cast).cast(FEATURE_DTYPE, strict=False))
    if issues is not None:
        # null_count is O(1): Arrow arrays keep it.
        nulls = df.select(features).null_count().row(0, named=True)
        for c, n in nulls.items():
            if n:
                issues.count("empty", where, c, int(n))
    # One pass finds the columns holding either; only those are counted apart (usually none).
    counts = df.select((~pl.col(features).is_finite()).sum()).row(0, named=True)
    bad_cols = [c for c, n in counts.items() if n]
    if bad_cols:
        if issues is not None:
            nan = df.select(pl.col(bad_cols).is_nan().sum()).row(0, named=True)
            for c in bad_cols:
                if nan[c]:
                    issues.count("nan", where, c, int(nan[c]))
                if counts[c] - nan[c]:
                    issues.count("inf", where, c, int(counts[c] - nan[c]))
        df = df.with_columns(
            pl.when(pl.col(bad_cols).is_finite()).then(pl.col(bad_cols)).name.keep()
        )
    return df


def _blank_to_null(expr: pl.Expr) -> pl.Expr:
    s = expr.str.strip_chars()
    return pl.when(s != "").then(s)


def sanitize_name(name: str) -> str:
    """A column name SQL can use unquoted: runs of other characters become ``_``.

    Examples
    --------
    >>> sanitize_name("Primary Target Intensity/Global Bckg wv1")
    'Primary_Target_Intensity_Global_Bckg_wv1'
    """
    out = re.sub(r"[^0-9A-Za-z_]+", "_", name.strip()).strip("_")
    return out or "column"


def default_batch_rows(n_columns: int, *, mb: int = 32) -> int:
    """Rows per batch so a Float32 batch holds about ``mb`` MB (at least 1,000 rows)."""
    return max(1_000, (mb * 2**20) // (4 * max(n_columns, 1)))
