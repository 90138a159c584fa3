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
  with recognisable values mapped to ``negcon`` and ``poscon``; without such a
  column, wells with a blank ``broad_sample`` are the vehicle (``negcon``), as
  in the LINCS / cytominer platemaps. A :class:`ControlsDerivedWarning` says
  which rule applied and how many wells each value marked.

The cytominer / pycytominer layout is read too: a ``barcode_platemap.csv``
(``Assay_Plate_Barcode`` -> ``Plate_Map_Name``) beside a ``platemap/`` folder
holding one tab-separated ``<Plate_Map_Name>.txt`` per map (well column
``well_position``). Pass the barcode file or the folder holding it.

Nothing is fixed silently: wells written ``A1`` are read as ``A01`` with a
:class:`PlatemapWarning` stating the count; rows repeating a well identically
are kept once (counted); rows of one well that disagree raise
:class:`~cellframe.errors.DuplicateWellsError` naming every such well.
"""

from __future__ import annotations

import os
import warnings
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
from cellframe.errors import (
    DuplicateWellsError,
    EmptyInputError,
    InvalidInputError,
    MissingColumnsError,
)
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
#: File name of the cytominer barcode -> platemap table, and the folder of its maps.
BARCODE_FILE = "barcode_platemap.csv"
MAP_FOLDER = "platemap"
#: Hidden columns that carry each row's file and line through reading (dropped on return).
_FILE = "__cf_file"
_LINE = "__cf_line"
#: How many offending keys a message lists before it gives only the count.
SHOWN = 10


class PlatemapWarning(UserWarning):
    """A recoverable platemap problem (the message states the count and what was done)."""


class ControlsDerivedWarning(PlatemapWarning):
    """Says which rule derived ``Metadata_Control`` and how many wells each value marked."""


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
    ...     control_expr(pl.col("c")).alias("c"))["c"].to_list()
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
            first = b""
            if not name.endswith(".gz"):
                with path.open("rb") as fh:
                    first = fh.readline()
            separator = "\t" if first.count(b"\t") > first.count(b",") else ","
    try:
        # "NA" is how R and pandas write a missing value (JUMP's DMSO has broad_sample NA).
        df = pl.read_csv(
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
    except pl.exceptions.ComputeError as exc:
        raise InvalidInputError(
            f"platemap {path} cannot be read as a table with separator {separator!r}: "
            f"{str(exc).splitlines()[0]}; fix the file or pass separator="
        ) from exc
    # Line numbers for messages: the header is line 1.
    return df.with_columns(
        pl.lit(str(path)).alias(_FILE), pl.int_range(2, df.height + 2, dtype=pl.Int64).alias(_LINE)
    )


def _shown(items: Sequence[str], n: int | None = None) -> str:
    """``a, b, c`` for the first :data:`SHOWN` items, with ``... (N in all)`` after."""
    n = len(items) if n is None else n
    text = ", ".join(items[:SHOWN])
    return text + (f", ... ({n} in all)" if n > SHOWN else "")


def is_barcode_platemap(path: str | os.PathLike[str]) -> bool:
    r"""Whether ``path`` is a cytominer ``barcode_platemap.csv`` or a folder holding one.

    Parameters
    ----------
    path : str or os.PathLike
        A file or folder.

    Returns
    -------
    bool

    Examples
    --------
    >>> from pathlib import Path
    >>> _ = Path("barcodes.csv").write_text("Assay_Plate_Barcode,Plate_Map_Name\nBR1,MAP1\n")
    >>> _ = Path("map.csv").write_text("well_position,pert_iname\nA01,DMSO\n")
    >>> is_barcode_platemap("barcodes.csv"), is_barcode_platemap("map.csv")
    (True, False)
    """
    p = Path(path)
    if p.is_dir():
        return (p / BARCODE_FILE).is_file()
    if not p.is_file():
        return False
    if p.name.lower() == BARCODE_FILE:
        return True
    try:
        with p.open("rb") as fh:
            header = fh.readline().decode("utf-8-sig", "replace").strip().lower()
    except OSError:
        return False
    names = {h.strip().strip('"') for h in header.replace("\t", ",").split(",")}
    return {"assay_plate_barcode", "plate_map_name"} <= names


def read_barcode_platemap(
    path: str | os.PathLike[str], *, map_folder: str | os.PathLike[str] | None = None
) -> pl.DataFrame:
    """Read a cytominer ``barcode_platemap.csv`` with the maps of its ``platemap/`` folder.

    Each row of the barcode file names an assay plate (``Assay_Plate_Barcode``)
    and its map (``Plate_Map_Name``); the map is the tab-separated file
    ``platemap/<Plate_Map_Name>.txt`` beside the barcode file. The result has
    one row per (barcode, well): the barcode file's columns followed by the
    map's (a map column repeating ``plate_map_name`` is checked and dropped).

    Parameters
    ----------
    path : str or os.PathLike
        The barcode file, or the folder holding ``barcode_platemap.csv``.
    map_folder : str or os.PathLike, optional
        Folder of the ``<name>.txt`` maps (default: ``platemap`` beside the
        barcode file).

    Returns
    -------
    polars.DataFrame
        The barcode file's and the maps' columns as strings, not yet renamed
        (see :func:`read_platemap`), then ``__cf_file`` and ``__cf_line``: the
        map file and line of each row, for messages (:func:`read_platemap`
        drops them).

    Raises
    ------
    MissingColumnsError
        If the barcode file lacks ``Assay_Plate_Barcode`` or ``Plate_Map_Name``.
    InvalidInputError
        If a barcode is listed with two different maps, or a map's
        ``plate_map_name`` column names another map.
    FileNotFoundError
        If none of the maps exists.

    Warns
    -----
    PlatemapWarning
        Barcodes whose map file is absent (counted and named; those plates
        get no annotations).

    Examples
    --------
    Two assay plates laid out with one map:

    >>> from pathlib import Path
    >>> _ = Path("barcode_platemap.csv").write_text(
    ...     "Assay_Plate_Barcode,Plate_Map_Name\\nBR1,MAP1\\nBR2,MAP1\\n")
    >>> Path("platemap").mkdir()
    >>> _ = Path("platemap/MAP1.txt").write_text(
    ...     "plate_map_name\\twell_position\\tpert_iname\\n"
    ...     "MAP1\\tA01\\tDMSO\\n"
    ...     "MAP1\\tA02\\ttaxol\\n")
    >>> maps = read_barcode_platemap(".")
    >>> maps.select("Assay_Plate_Barcode", "well_position", "pert_iname").rows()
    [('BR1', 'A01', 'DMSO'), ('BR1', 'A02', 'taxol'), ('BR2', 'A01', 'DMSO'), ('BR2', 'A02', 'taxol')]
    """
    p = Path(path)
    barcode_file = p / BARCODE_FILE if p.is_dir() else p
    folder = Path(map_folder) if map_folder is not None else barcode_file.parent / MAP_FOLDER
    barcodes = _read_table(barcode_file, None)
    code_col = _find(barcodes.columns, ("assay_plate_barcode",))
    map_col = _find(barcodes.columns, ("plate_map_name",))
    if code_col is None or map_col is None:
        raise MissingColumnsError(
            f"barcode platemap {barcode_file}",
            ["Assay_Plate_Barcode", "Plate_Map_Name"],
            "a cytominer barcode_platemap.csv maps each Assay_Plate_Barcode to a Plate_Map_Name",
        )
    conflicting = (
        barcodes.group_by(code_col)
        .agg(pl.col(map_col).n_unique().alias("n"), pl.col(_LINE))
        .filter(pl.col("n") > 1)
        .sort(code_col)
    )
    if conflicting.height:
        shown = [
            f"{r[code_col]!r} (lines {', '.join(map(str, r[_LINE]))})"
            for r in conflicting.iter_rows(named=True)
        ]
        raise InvalidInputError(
            f"barcode platemap {barcode_file} gives {conflicting.height} barcode(s) more than one "
            f"{map_col}: {_shown(shown, conflicting.height)}; keep one map per barcode"
        )
    barcodes = barcodes.unique(subset=[code_col, map_col], keep="first", maintain_order=True)
    maps: list[pl.DataFrame] = []
    absent: list[str] = []
    for name in barcodes[map_col].drop_nulls().unique(maintain_order=True).to_list():
        candidates = [folder / f"{name}{ext}" for ext in (".txt", ".tsv", ".csv")]
        file = next((c for c in candidates if c.is_file()), None)
        if file is None:
            absent.append(str(name))
            continue
        one = _read_table(file, "\t" if file.suffix != ".csv" else ",")
        own = _find(one.columns, ("plate_map_name",))
        if own is not None:
            other = one.filter(pl.col(own).is_not_null() & (pl.col(own) != name))
            if other.height:
                raise InvalidInputError(
                    f"platemap {file} line {other[_LINE][0]}: column {own!r} says "
                    f"{other[own][0]!r}, but the file is the map {name!r} of {barcode_file}; "
                    "fix the file name or the column"
                )
            one = one.drop(own)
        maps.append(one.with_columns(pl.lit(name, pl.String).alias(map_col)))
    if not maps:
        raise FileNotFoundError(
            f"none of the {len(absent)} map(s) named in {barcode_file} is in {folder} "
            f"(expected e.g. {folder / (absent[0] + '.txt') if absent else folder}); "
            "put <Plate_Map_Name>.txt files there or pass map_folder="
        )
    if absent:
        lost = barcodes.filter(pl.col(map_col).is_in(absent))[code_col].to_list()
        warnings.warn(
            f"barcode platemap {barcode_file}: {len(absent)} map(s) are not in {folder} "
            f"({_shown(absent)}); the {len(lost)} plate(s) using them get no annotations "
            f"({_shown(lost)})",
            PlatemapWarning,
            stacklevel=3,
        )
    layout = pl.concat(maps, how="diagonal_relaxed")
    # The barcode file's own file/line columns are dropped: messages name the map's lines.
    out = barcodes.drop(_FILE, _LINE).join(layout, on=map_col, how="inner", maintain_order="left")
    return out


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
        sniffed), a cytominer ``barcode_platemap.csv`` or the folder holding
        one (detected; see :func:`read_barcode_platemap`), or an already
        loaded table.
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
    DuplicateWellsError
        If rows of one (plate,) well disagree; every such well is named with
        its file lines (the first ten, then the count).
    InvalidInputError
        If a well name is no well (named with its line), or a barcode file
        is inconsistent (see :func:`read_barcode_platemap`).
    EmptyInputError
        If the map has a header but no rows.

    Warns
    -----
    PlatemapWarning
        Wells written ``A1`` read as ``A01``, rows repeating a well
        identically kept once, maps of a barcode file that are absent (each
        with its count).
    ControlsDerivedWarning
        Which rule set ``Metadata_Control`` and how many wells each value marked.

    Examples
    --------
    Unpadded wells and a derived control column are read, each with a warning
    that counts them:

    >>> import polars as pl
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     pm = read_platemap(pl.DataFrame({"well_position": ["A1", "A2"],
    ...                                      "pert_iname": ["DMSO", "taxol"],
    ...                                      "pert_type": ["control", "trt"]}))
    >>> [type(w.message).__name__ for w in caught]
    ['PlatemapWarning', 'ControlsDerivedWarning']
    >>> pm.select("Metadata_Well", "Metadata_Treatment", "Metadata_Control").rows()
    [('A01', 'DMSO', 'negcon'), ('A02', 'taxol', None)]
    """
    if isinstance(path, pl.DataFrame):
        source = "the platemap"
        df = path
    elif is_barcode_platemap(path):
        source = f"barcode platemap {path}"
        df = read_barcode_platemap(path)
    else:
        source = f"platemap {path}"
        df = _read_table(Path(path), separator)
    df = df.with_columns(pl.exclude(_LINE).cast(pl.String))
    if annotations is not None:
        extra = (
            annotations
            if isinstance(annotations, pl.DataFrame)
            else _read_table(Path(annotations), None)
        )
        extra = extra.drop([c for c in (_FILE, _LINE) if c in extra.columns]).with_columns(
            pl.all().cast(pl.String)
        )
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
    hidden = [c for c in (_FILE, _LINE) if c in df.columns]
    where = df.select(hidden) if hidden else None
    df = df.drop(hidden)

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
    blank_sample = None
    if CONTROL not in out.columns and named[CONTROL] is None:
        # cytominer / LINCS maps have no control column: the vehicle wells are the ones
        # without a broad_sample (DMSO only).
        blank_sample = _find(out.columns, ("broad_sample",))
    for target, col in named.items():
        if target in out.columns:
            exprs.append(
                control_expr(pl.col(target)).alias(target) if target == CONTROL else pl.col(target)
            )
        elif target == CONTROL and blank_sample is not None:
            exprs.append(
                pl.when(pl.col(blank_sample).is_null())
                .then(pl.lit(NEGATIVE_CONTROL))
                .otherwise(pl.lit(None, pl.String))
                .alias(target)
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
    raw_well = out[well_col]
    out = out.select([*exprs, *rest])
    if out.height == 0:
        raise EmptyInputError(f"{source} has a header but no rows")
    _check_wells(out, raw_well, source, where)
    out = _drop_duplicate_wells(out, source, where)
    control_source = (
        CONTROL
        if CONTROL in df.columns or CONTROL in rename.values()
        else named[CONTROL] or (f"blank {blank_sample}" if blank_sample else None)
    )
    _report_controls(out, source, control_source)
    return out


def _line_labels(where: pl.DataFrame | None, rows: Sequence[int]) -> list[str]:
    """``file line N`` for row positions (empty strings for an in-memory table)."""
    if where is None or _LINE not in where.columns:
        return [f"row {i + 1}" for i in rows]
    lines = where[_LINE]
    files = where[_FILE] if _FILE in where.columns else None
    return [(f"{files[i]} " if files is not None else "") + f"line {lines[i]}" for i in rows]


def _lines_of(where: pl.DataFrame | None, rows: Sequence[int]) -> str:
    """``<file> lines 2, 386`` (one file), else each row's own label."""
    if where is not None and _FILE in where.columns and _LINE in where.columns:
        files = {where[_FILE][i] for i in rows}
        if len(files) == 1:
            lines = ", ".join(str(where[_LINE][i]) for i in rows)
            return f"{files.pop()} line{'s' if len(rows) > 1 else ''} {lines}"
    return ", ".join(_line_labels(where, rows))


def _check_wells(
    out: pl.DataFrame, raw: pl.Series, source: str, where: pl.DataFrame | None
) -> None:
    """Refuse wells that are not well names; warn (with the count) about A1 -> A01."""
    raw_s = raw.cast(pl.String).str.strip_chars()
    bad = out[WELL].is_null() | ~out[WELL].str.contains(r"^[A-Z]{1,2}\d{2,3}$")
    if bad.any():
        rows = bad.arg_true().to_list()
        labels = _line_labels(where, rows)
        shown = [f"{raw_s[i]!r} ({lab})" for i, lab in zip(rows, labels, strict=True)]
        raise InvalidInputError(
            f"{source}: {len(rows)} well name(s) are not wells such as A01 or A1: "
            f"{_shown(shown, len(rows))}; fix the well column"
        )
    changed = (raw_s != out[WELL]).fill_null(False)
    n = int(changed.sum())
    if n:
        examples = sorted(
            {
                f"{a!r} -> {b!r}"
                for a, b in zip(raw_s.filter(changed), out[WELL].filter(changed), strict=True)
            }
        )
        warnings.warn(
            f"{source}: {n} well name(s) were not written as zero-padded A01 and were read as "
            f"such (e.g. {', '.join(examples[:3])}); profiles join on the padded name",
            PlatemapWarning,
            stacklevel=3,
        )


def _drop_duplicate_wells(
    out: pl.DataFrame, source: str, where: pl.DataFrame | None
) -> pl.DataFrame:
    """Keep one of identical rows of a well (counted); refuse wells whose rows disagree."""
    key_cols = [c for c in (PLATE, WELL) if c in out.columns]
    dup = out.with_row_index("_row").filter(pl.struct(key_cols).is_duplicated())
    if dup.height == 0:
        return out
    groups = dup.group_by(key_cols, maintain_order=True).agg(
        pl.col("_row"),
        pl.struct(pl.exclude("_row", *key_cols)).n_unique().alias("_variants"),
    )
    conflicting = groups.filter(pl.col("_variants") > 1)
    if conflicting.height:
        shown = []
        for r in conflicting.iter_rows(named=True):
            key = f"{r[WELL]!r}" + (f" of plate {r[PLATE]!r}" if PLATE in r else "")
            shown.append(f"{key} ({_lines_of(where, r['_row'])})")
        raise DuplicateWellsError(
            f"{source} lists {conflicting.height} well(s) more than once with different "
            f"contents: {_shown(shown, conflicting.height)}; keep one row per well "
            "(or add a plate column if the map covers several plates)"
        )
    n_extra = dup.height - groups.height
    warnings.warn(
        f"{source}: {n_extra} row(s) repeat another row of the same well exactly "
        f"({groups.height} well(s), e.g. {groups[WELL][0]!r}); each well is kept once",
        PlatemapWarning,
        stacklevel=3,
    )
    return out.unique(subset=key_cols, keep="first", maintain_order=True)


def _report_controls(out: pl.DataFrame, source: str, rule: str | None) -> None:
    """Warn (as information) which rule set ``Metadata_Control`` and how many wells it marked."""
    if rule is None:
        warnings.warn(
            f"{source}: no control column (control, control_type, pert_type, ...) and no "
            f"broad_sample column; Metadata_Control is null for all {out.height} wells. Name the "
            "control wells (e.g. a pert_type column with ctl_vehicle / trt) to normalize "
            "against them",
            ControlsDerivedWarning,
            stacklevel=3,
        )
        return
    counts = out[CONTROL].fill_null("none (treatment)").value_counts(sort=True)
    detail = ", ".join(f"{v}: {n}" for v, n in counts.iter_rows())
    how = (
        f"by the rule 'a well with a {rule} is the vehicle (negcon)' (there is no control column)"
        if rule.startswith("blank ")
        else f"from column {rule!r} (ctl_vehicle/control/DMSO/negcon* -> negcon, "
        "poscon* -> poscon, trt* -> none)"
    )
    warnings.warn(
        f"{source}: Metadata_Control derived {how}; wells marked per value: {detail}",
        ControlsDerivedWarning,
        stacklevel=3,
    )


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

    Examples
    --------
    >>> import polars as pl
    >>> rows = pl.DataFrame({"Metadata_Plate": ["P1", "P1", "P1"],
    ...                      "Metadata_Well": ["A01", "A02", "A03"], "f": [1.0, 2.0, 3.0]})
    >>> platemap = pl.DataFrame({"Metadata_Well": ["A01", "A02"],
    ...                          "Metadata_Treatment": ["DMSO", "taxol"]})
    >>> annotate(rows, platemap).rows()  # A03 is not in the map
    [('P1', 'A01', 1.0, 'DMSO'), ('P1', 'A02', 2.0, 'taxol'), ('P1', 'A03', 3.0, None)]
    """
    on = [c for c in (PLATE, WELL) if c in platemap.columns]
    extra = [c for c in platemap.columns if c not in on]
    lower = {c.lower() for c in extra}  # SQL names are case-insensitive
    base = frame.drop([c for c in frame.columns if c.lower() in lower])
    return base.join(platemap, on=on, how="left", maintain_order="left")


def well_coverage_messages(
    data_wells: pl.DataFrame, platemap: pl.DataFrame, *, n_rows: int = 0
) -> list[str]:
    """Name the data wells the platemap lacks and the mapped wells without data.

    Parameters
    ----------
    data_wells : polars.DataFrame
        Distinct ``Metadata_Plate`` / ``Metadata_Well`` of the rows read.
    platemap : polars.DataFrame
        Output of :func:`read_platemap`.
    n_rows : int, default 0
        Rows in wells the platemap lacks (for the message).

    Returns
    -------
    list of str
        Up to two messages, each with counts and the first few wells.

    Examples
    --------
    >>> import polars as pl
    >>> data = pl.DataFrame({"Metadata_Plate": ["P", "P"], "Metadata_Well": ["A01", "B07"]})
    >>> pm = pl.DataFrame({"Metadata_Well": ["A01", "A02"]})
    >>> for m in well_coverage_messages(data, pm, n_rows=5):
    ...     print(m)
    5 row(s) are in wells the platemap does not list (1 well(s): P/B07); their annotation columns are null
    1 well(s) of the platemap have no rows in the plate(s) read (P/A02); nothing was measured there
    """
    on = [c for c in (PLATE, WELL) if c in platemap.columns]
    data = data_wells.select(PLATE, WELL).unique()
    missing = data.join(platemap.select(on).unique(), on=on, how="anti").sort(PLATE, WELL)
    mapped = (
        platemap.select(on).unique()
        if PLATE in on
        else data.select(PLATE).unique().join(platemap.select(WELL).unique(), how="cross")
    )
    mapped = mapped.filter(pl.col(PLATE).is_in(data[PLATE].unique().to_list()))
    empty = mapped.join(data, on=[PLATE, WELL], how="anti").sort(PLATE, WELL)
    out = []
    if missing.height:
        names = [f"{p}/{w}" for p, w in missing.iter_rows()]
        out.append(
            f"{n_rows} row(s) are in wells the platemap does not list ({missing.height} well(s): "
            f"{_shown(names)}); their annotation columns are null"
        )
    if empty.height:
        names = [f"{p}/{w}" for p, w in empty.iter_rows()]
        out.append(
            f"{empty.height} well(s) of the platemap have no rows in the plate(s) read "
            f"({_shown(names)}); nothing was measured there"
        )
    return out


__all__ = [
    "BARCODE_FILE",
    "ControlsDerivedWarning",
    "PlatemapWarning",
    "annotate",
    "control_expr",
    "is_barcode_platemap",
    "read_barcode_platemap",
    "read_platemap",
    "well_coverage_messages",
]
