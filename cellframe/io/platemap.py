"""Platemaps: what was put in each well, as CSV or TSV files.

A platemap names each well (``well_position``, ``Well``, ...) and what it
holds (``broad_sample``, ``pert_iname``, a dose, ``moa``, a control flag).
:func:`read_platemap` renames its columns to the ``Metadata_`` convention and
fills the store's fixed annotation columns:

* ``Metadata_Well``, zero-padded (``A1`` -> ``A01``) so it joins the profiles;
* ``Metadata_Plate`` when the map has a plate/barcode column (otherwise it
  applies to every plate);
* ``Metadata_Treatment`` from the first of ``treatment``, ``pert_iname``,
  ``broad_sample``, ``compound``, ``gene``, ... (the source column is kept too);
* ``Metadata_MoA`` from ``moa`` / ``pathway``;
* ``Metadata_Control`` from ``control`` / ``control_type`` / ``pert_type``,
  with recognisable values mapped to ``negcon`` and ``poscon``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from cellframe.columns import (
    CONTROL,
    METADATA_PREFIX,
    MOA,
    NEGATIVE_CONTROL,
    PLATE,
    POSITIVE_CONTROL,
    TREATMENT,
    WELL,
)
from cellframe.errors import EmptyInputError, InvalidInputError, MissingColumnsError
from cellframe.io._normalize import well_expr

#: Source columns (without any Metadata_ prefix, compared case-insensitively), first match wins.
WELL_COLUMNS = ("well", "well_position", "wellposition", "well_id", "wellname", "well_name")
PLATE_COLUMNS = ("plate", "plate_id", "barcode", "assay_plate_barcode", "plate_barcode")
TREATMENT_COLUMNS = (
    "treatment",
    "pert_iname",
    "broad_sample",
    "compound",
    "compound_name",
    "pert_id",
    "gene",
    "gene_symbol",
    "perturbation",
)
MOA_COLUMNS = ("moa", "mechanism", "mechanism_of_action", "pathway")
CONTROL_COLUMNS = ("control", "control_type", "controltype", "pert_type", "is_control")

_NEGCON = {
    "negcon",
    "neg",
    "negative",
    "negative_control",
    "negative control",
    "ctl_vehicle",
    "vehicle",
    "dmso",
    "control",
    "ctrl",
}
_EMPTY = {"", "na", "nan", "none", "trt", "treatment", "trt_cp", "trt_oe", "trt_sh", "false"}


def _base(name: str) -> str:
    return name.removeprefix(METADATA_PREFIX).lower()


def _find(columns: Sequence[str], candidates: Sequence[str]) -> str | None:
    by_base = {}
    for c in columns:
        by_base.setdefault(_base(c), c)
    return next((by_base[c] for c in candidates if c in by_base), None)


def control_expr(expr: pl.Expr) -> pl.Expr:
    """Map control labels to ``negcon`` / ``poscon`` / null; others keep their text.

    Examples
    --------
    >>> import polars as pl
    >>> pl.DataFrame({"c": ["ctl_vehicle", "poscon_orf", "trt", "odd"]}).select(
    ...     control_expr(pl.col("c")))["c"].to_list()
    ['negcon', 'poscon', None, 'odd']
    """
    s = expr.cast(pl.String).str.strip_chars()
    low = s.str.to_lowercase()
    return (
        pl.when(low.is_in(list(_NEGCON)) | low.str.starts_with("negcon"))
        .then(pl.lit(NEGATIVE_CONTROL))
        .when(low.str.starts_with("poscon") | low.is_in(["pos", "positive", "positive_control"]))
        .then(pl.lit(POSITIVE_CONTROL))
        .when(low.is_null() | low.is_in(list(_EMPTY)))
        .then(pl.lit(None, pl.String))
        .otherwise(s)
    )


def _read_table(path: Path, separator: str | None) -> pl.DataFrame:
    if separator is None:
        name = path.name.lower()
        if name.endswith((".tsv", ".txt", ".tsv.gz", ".txt.gz")):
            separator = "\t"
        else:
            first = path.open("rb").readline() if not name.endswith(".gz") else b""
            separator = "\t" if first.count(b"\t") > first.count(b",") else ","
    try:
        # "NA" is how R and pandas write a missing value (JUMP's DMSO has broad_sample NA).
        return pl.read_csv(
            path,
            separator=separator,
            infer_schema=False,
            null_values=["", "NA", "NaN", "nan"],
            glob=False,
        )
    except pl.exceptions.NoDataError as exc:
        raise EmptyInputError(
            f"platemap {path} is empty; pass a CSV/TSV with a header row"
        ) from exc


def read_platemap(
    path: str | os.PathLike[str] | pl.DataFrame,
    *,
    plate: str | None = None,
    annotations: str | os.PathLike[str] | pl.DataFrame | None = None,
    on: str | None = None,
    separator: str | None = None,
) -> pl.DataFrame:
    """Read a platemap (CSV or TSV) into the ``Metadata_`` convention.

    Parameters
    ----------
    path : str, os.PathLike or polars.DataFrame
        The platemap file (``.csv``, ``.tsv``, ``.txt``; the separator is
        sniffed) or an already loaded table.
    plate : str, optional
        Plate the map belongs to, when it has no plate column.
    annotations : str, os.PathLike or polars.DataFrame, optional
        A second table describing the perturbations (e.g. JUMP's
        ``*_compound_metadata.tsv`` with ``pert_type``, ``control_type``,
        ``target``), joined to the map on ``on``.
    on : str, optional
        Column shared by the map and ``annotations`` (default: the first
        shared column, e.g. ``broad_sample``).
    separator : str, optional
        Field separator (default: sniffed).

    Returns
    -------
    polars.DataFrame
        One row per (plate,) well: ``Metadata_Plate`` (if known),
        ``Metadata_Well``, ``Metadata_Treatment``, ``Metadata_MoA``,
        ``Metadata_Control`` and every other column as ``Metadata_<name>``
        (all strings).

    Raises
    ------
    MissingColumnsError
        If no well column is found.
    InvalidInputError
        If a well appears twice for the same plate.

    Examples
    --------
    >>> import polars as pl
    >>> pm = read_platemap(pl.DataFrame({"well_position": ["A1", "A2"],
    ...                                  "pert_iname": ["DMSO", "taxol"],
    ...                                  "pert_type": ["control", "trt"]}))
    >>> pm.select("Metadata_Well", "Metadata_Treatment", "Metadata_Control").rows()
    [('A01', 'DMSO', 'negcon'), ('A02', 'taxol', None)]
    """
    source = "the platemap" if isinstance(path, pl.DataFrame) else f"platemap {path}"
    df = path if isinstance(path, pl.DataFrame) else _read_table(Path(path), separator)
    df = df.with_columns(pl.all().cast(pl.String))
    if annotations is not None:
        extra = (
            annotations
            if isinstance(annotations, pl.DataFrame)
            else _read_table(Path(annotations), None)
        ).with_columns(pl.all().cast(pl.String))
        key = on or next((c for c in df.columns if c in extra.columns), None)
        if key is None or key not in df.columns or key not in extra.columns:
            raise MissingColumnsError(
                f"annotations for {source}",
                [on or "a column shared with the platemap"],
                "pass on='<column in both tables>' (e.g. broad_sample)",
            )
        extra = extra.unique(subset=[key], keep="first", maintain_order=True)
        # An empty key matches an empty key: JUMP lists its DMSO wells with no broad_sample
        # in both the platemap and the compound table.
        df = df.join(
            extra, on=key, how="left", suffix="_annotation", maintain_order="left", nulls_equal=True
        )

    well_col = _find(df.columns, WELL_COLUMNS)
    if well_col is None:
        raise MissingColumnsError(
            source,
            ["well_position"],
            f"name the well column one of {', '.join(WELL_COLUMNS)} (A01 or A1 style)",
        )
    plate_col = _find(df.columns, PLATE_COLUMNS)
    rename: dict[str, str] = {}
    for c in df.columns:
        if c in (well_col, plate_col):
            continue
        new = c if c.startswith(METADATA_PREFIX) else METADATA_PREFIX + c
        rename[c] = new
    out = df.rename(rename)
    exprs = []
    if plate is not None:
        exprs.append(pl.lit(plate, pl.String).alias(PLATE))
    elif plate_col is not None:
        exprs.append(pl.col(plate_col).alias(PLATE))
    exprs.append(well_expr(pl.col(well_col)).alias(WELL))
    named = {
        TREATMENT: _find(out.columns, TREATMENT_COLUMNS),
        MOA: _find(out.columns, MOA_COLUMNS),
        CONTROL: _find(out.columns, CONTROL_COLUMNS),
    }
    for target, col in named.items():
        if target in out.columns:
            exprs.append(
                control_expr(pl.col(target)).alias(target) if target == CONTROL else pl.col(target)
            )
        elif col is None:
            exprs.append(pl.lit(None, pl.String).alias(target))
        elif target == CONTROL:
            exprs.append(control_expr(pl.col(col)).alias(target))
        else:
            exprs.append(pl.col(col).alias(target))
    keys = {PLATE, WELL, TREATMENT, MOA, CONTROL}
    # SQL names are case-insensitive: a source column 'treatment' (now Metadata_treatment)
    # is the same name as Metadata_Treatment, which already holds its values.
    taken = {k.lower() for k in keys}
    rest = []
    for c in out.columns:
        if c in keys or c in (well_col, plate_col) or c.lower() in taken:
            continue
        taken.add(c.lower())
        rest.append(c)
    out = out.select([*exprs, *rest])
    key_cols = [c for c in (PLATE, WELL) if c in out.columns]
    dup = out.filter(pl.struct(key_cols).is_duplicated())
    if dup.height:
        first = dup.row(0, named=True)
        raise InvalidInputError(
            f"{source} lists well {first[WELL]!r}"
            + (f" of plate {first[PLATE]!r}" if PLATE in first else "")
            + " more than once; keep one row per well "
            "(or add a plate column if the map covers several plates)"
        )
    if out.height == 0:
        raise EmptyInputError(f"{source} has a header but no rows")
    return out


def annotate(
    frame: pl.DataFrame,
    platemap: pl.DataFrame,
) -> pl.DataFrame:
    """Add a platemap's columns to rows, joined on plate and well (or well only).

    Columns the rows already have (compared without case, as SQL does) are
    replaced by the platemap's (the map is the annotation source of truth). Rows whose well the map lacks keep null
    annotations.

    Parameters
    ----------
    frame : polars.DataFrame
        Rows with ``Metadata_Plate`` and ``Metadata_Well``.
    platemap : polars.DataFrame
        Output of :func:`read_platemap`.

    Returns
    -------
    polars.DataFrame
    """
    on = [c for c in (PLATE, WELL) if c in platemap.columns]
    extra = [c for c in platemap.columns if c not in on]
    lower = {c.lower() for c in extra}  # SQL names are case-insensitive
    base = frame.drop([c for c in frame.columns if c.lower() in lower])
    return base.join(platemap, on=on, how="left", maintain_order="left")


__all__ = ["annotate", "control_expr", "read_platemap"]
