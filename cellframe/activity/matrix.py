"""The compound x assay readout matrix: 1 hit, 0 no hit, missing = not tested.

DOMAIN.md §6. The matrix is read from a wide table (one row per compound, one
column per assay, blanks for missing; MoleculeNet's CSVs), a long table (one row
per observed readout) or a MatrixMarket file (stored entries are readouts,
absent entries are missing), and kept in memory as a float32 array with NaN for
missing readouts. ``to_long`` turns it into the store's long table.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from cellframe.activity.columns import ASSAY, COMPOUND, READOUT, SMILES
from cellframe.errors import (
    EmptyInputError,
    InvalidChoiceError,
    InvalidInputError,
    MissingColumnsError,
)

__all__ = [
    "AssayMatrix",
    "IgnoredColumnsWarning",
    "MatrixColumns",
    "MatrixMarketNames",
    "MatrixReading",
    "ReadoutWarning",
    "assay_matrix_from_long",
    "assay_matrix_from_wide",
    "matrix_options",
    "read_assay_matrix",
    "read_assay_subset",
]

_log = logging.getLogger(__name__)

ConflictPolicy = Literal["missing", "hit", "error"]


class ReadoutWarning(UserWarning):
    """Rows of one compound were merged, or conflicting readouts resolved (with counts)."""


class IgnoredColumnsWarning(UserWarning):
    """Columns of an assay-matrix file were not read (counted, each named with the reason)."""


@dataclass(frozen=True)
class MatrixColumns:
    """Which columns of an assay-matrix table are what (for :func:`read_assay_matrix`).

    Parameters
    ----------
    assays : sequence of str, optional
        Assay columns of a wide table, in this order. By default every column
        that is not the compound, SMILES or an identifier column is an assay;
        one that is not binary is then refused, naming the column.
    identifiers : sequence of str, default ()
        Columns of a wide table that identify or describe compounds (a
        challenge CSV's ``ID``, a ``mol_id``): not readouts; reported as such
        and not read.
    compound : str, optional
        Compound identifier column; by default the SMILES column of a wide
        table, ``Metadata_Compound`` of a long one.
    smiles : str or None, default "smiles"
        SMILES column; ``None`` when the table has none.
    assay, readout : str
        Assay and readout columns of a long table (one row per readout).

    Examples
    --------
    >>> MatrixColumns(compound="ID", identifiers=["Name"]).identifiers
    ('Name',)
    """

    assays: Sequence[str] | None = None
    identifiers: Sequence[str] = ()
    compound: str | None = None
    smiles: str | None = "smiles"
    assay: str = ASSAY
    readout: str = READOUT

    def __post_init__(self) -> None:
        for name in ("assays", "identifiers"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise InvalidInputError(
                    f"MatrixColumns({name}={value!r}): give a list of column names, "
                    f"e.g. {name}=[{value!r}]"
                )
            if value is not None:
                object.__setattr__(self, name, tuple(str(c) for c in value))
        named = [*(self.assays or ()), *self.identifiers]
        both = sorted({c for c in named if named.count(c) > 1})
        if both:
            raise InvalidInputError(
                f"MatrixColumns: column(s) {both} are named twice (as assays and/or identifiers); "
                "name each column once"
            )
        keys = {self.compound, self.smiles} - {None}
        taken = sorted(keys & set(self.assays or ()))
        if taken:
            raise InvalidInputError(
                f"MatrixColumns: {taken} is the compound or SMILES column and cannot also be an "
                "assay; leave it out of assays"
            )


@dataclass(frozen=True)
class MatrixMarketNames:
    """Row and column names of a MatrixMarket assay matrix (compounds as rows).

    Each is a sequence of str or a text file with one name per line; by
    default rows and columns are named by position.
    """

    compounds: Sequence[str] | str | Path | None = None
    assays: Sequence[str] | str | Path | None = None
    smiles: Sequence[str] | str | Path | None = None


@dataclass(frozen=True)
class MatrixReading:
    """What :func:`read_assay_matrix` took from a file (``AssayMatrix.reading``).

    Attributes
    ----------
    source : str
        The file.
    layout : str
        ``"wide"``, ``"long"`` or ``"mtx"``.
    n_compounds, n_assays, n_readouts : int
        Size of the matrix read (readouts = observed entries).
    compound_column, smiles_column : str or None
        The columns that identify compounds and hold their structure.
    assay_columns : tuple of str
        The columns read as assays (wide) or the assays found (long, mtx).
    identifier_columns : tuple of str
        Columns named as identifiers (not readouts, not read).
    ignored : dict of str to str
        Every other column of the file -> why it was not read.
    """

    source: str
    layout: str
    n_compounds: int
    n_assays: int
    n_readouts: int
    compound_column: str | None
    smiles_column: str | None
    assay_columns: tuple[str, ...]
    identifier_columns: tuple[str, ...] = ()
    ignored: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        shown = ", ".join(self.assay_columns[:5]) + (", ..." if self.n_assays > 5 else "")
        line = (
            f"{self.source} ({self.layout}): {self.n_compounds} compounds x {self.n_assays} "
            f"assays ({shown}), {self.n_readouts} readouts; compounds identified by "
            f"{self.compound_column!r}, SMILES {self.smiles_column!r}; "
            f"{len(self.identifier_columns)} identifier column(s)"
        )
        if self.identifier_columns:
            line += f" {list(self.identifier_columns)}"
        line += f"; {len(self.ignored)} column(s) ignored"
        if self.ignored:
            line += " (" + "; ".join(f"{c!r}: {why}" for c, why in self.ignored.items()) + ")"
        return line


@dataclass(frozen=True)
class AssayMatrix:
    """Readouts of compounds (rows) in assays (columns).

    Parameters
    ----------
    compounds : list of str
        Compound identifiers, unique.
    assays : list of str
        Assay identifiers, unique.
    values : numpy.ndarray of float32, shape (n_compounds, n_assays)
        1.0 hit, 0.0 no hit, NaN missing.
    smiles : list of str, optional
        SMILES per compound (same order as ``compounds``).
    binaries : list of bytes or None, optional
        RDKit molecule of each SMILES as ``Mol.ToBinary()`` bytes (None where it
        does not parse), set by the readers that canonicalize SMILES so that
        cleaning and training rebuild the molecules instead of parsing the SMILES
        again (:func:`~cellframe.activity.chem.parse_smiles`); kept by
        :meth:`subset`. Not part of equality or the repr.
    reading : MatrixReading, optional
        What :func:`read_assay_matrix` took from its file (None otherwise; not
        kept by :meth:`subset`). Not part of equality or the repr.
    """

    compounds: list[str]
    assays: list[str]
    values: np.ndarray
    smiles: list[str] | None = None
    binaries: list[bytes | None] | None = field(default=None, compare=False, repr=False)
    reading: MatrixReading | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=np.float32)
        object.__setattr__(self, "values", values)
        if values.shape != (len(self.compounds), len(self.assays)):
            raise InvalidInputError(
                f"assay matrix values have shape {values.shape}, expected "
                f"({len(self.compounds)} compounds, {len(self.assays)} assays)"
            )
        if self.smiles is not None and len(self.smiles) != len(self.compounds):
            raise InvalidInputError(
                f"{len(self.smiles)} SMILES for {len(self.compounds)} compounds; give one per compound"
            )
        if self.binaries is not None and (
            self.smiles is None or len(self.binaries) != len(self.smiles)
        ):
            raise InvalidInputError(
                "assay matrix molecule binaries need SMILES, one binary per SMILES; "
                "leave binaries=None to parse the SMILES instead"
            )
        observed = values[~np.isnan(values)]
        bad = np.setdiff1d(np.unique(observed), [0.0, 1.0])
        if bad.size:
            raise InvalidInputError(
                f"assay readouts must be 1 (hit), 0 (no hit) or missing; found {bad[:5].tolist()}; "
                "binarise the readouts first"
            )
        for name, ids in (("compound", self.compounds), ("assay", self.assays)):
            if len(set(ids)) != len(ids):
                raise InvalidInputError(f"{name} identifiers of the assay matrix are not unique")

    # ------------------------------------------------------------- properties
    @property
    def shape(self) -> tuple[int, int]:
        """``(n_compounds, n_assays)``."""
        return self.values.shape  # type: ignore[return-value]

    @property
    def observed(self) -> np.ndarray:
        """Boolean mask of observed readouts."""
        return ~np.isnan(self.values)

    @property
    def hits(self) -> np.ndarray:
        """Boolean mask of hits (``values == 1``)."""
        return self.values == 1.0

    def __repr__(self) -> str:
        n_obs = int(self.observed.sum())
        return (
            f"AssayMatrix({self.shape[0]} compounds x {self.shape[1]} assays, "
            f"{n_obs} observed readouts, {int(self.hits.sum())} hits)"
        )

    # ---------------------------------------------------------------- subsets
    def subset(
        self,
        compounds: np.ndarray | Sequence[int] | None = None,
        assays: np.ndarray | Sequence[int] | None = None,
    ) -> AssayMatrix:
        """Rows and/or columns by integer position or boolean mask."""
        rows = _as_index(compounds, len(self.compounds))
        cols = _as_index(assays, len(self.assays))
        return AssayMatrix(
            compounds=[self.compounds[i] for i in rows],
            assays=[self.assays[j] for j in cols],
            values=self.values[np.ix_(rows, cols)],
            smiles=None if self.smiles is None else [self.smiles[i] for i in rows],
            binaries=None if self.binaries is None else [self.binaries[i] for i in rows],
        )

    # ---------------------------------------------------------------- frames
    def to_long(self) -> pl.DataFrame:
        """One row per observed readout: compound, assay, readout (Int8)."""
        rows, cols = np.nonzero(self.observed)
        return pl.DataFrame(
            {
                COMPOUND: pl.Series([self.compounds[i] for i in rows], dtype=pl.String),
                ASSAY: pl.Series([self.assays[j] for j in cols], dtype=pl.String),
                READOUT: pl.Series(self.values[rows, cols].astype(np.int8), dtype=pl.Int8),
            }
        )

    def to_wide(self) -> pl.DataFrame:
        """One row per compound, one Int8 column per assay (null = missing)."""
        data: dict[str, pl.Series] = {COMPOUND: pl.Series(self.compounds, dtype=pl.String)}
        if self.smiles is not None:
            data[SMILES] = pl.Series(self.smiles, dtype=pl.String)
        for j, name in enumerate(self.assays):
            col = self.values[:, j]
            data[name] = pl.Series(
                np.where(np.isnan(col), 0, col).astype(np.int8), dtype=pl.Int8
            ).scatter(np.flatnonzero(np.isnan(col)), None)
        return pl.DataFrame(data)

    def compounds_frame(self) -> pl.DataFrame:
        """Compound ids with their SMILES (if known)."""
        data = {COMPOUND: pl.Series(self.compounds, dtype=pl.String)}
        if self.smiles is not None:
            data[SMILES] = pl.Series(self.smiles, dtype=pl.String)
        return pl.DataFrame(data)


def _as_index(sel: np.ndarray | Sequence[int] | None, n: int) -> np.ndarray:
    if sel is None:
        return np.arange(n)
    arr = np.asarray(sel)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise InvalidInputError(f"boolean mask of length {arr.shape} for {n} items")
        return np.flatnonzero(arr)
    return arr.astype(np.int64)


# ---------------------------------------------------------------- readers
def _check_empty_assays(assays: list[str], values: np.ndarray, where: str) -> None:
    empty = [a for a, n in zip(assays, (~np.isnan(values)).sum(axis=0), strict=True) if n == 0]
    if empty:
        shown = ", ".join(repr(a) for a in empty[:5]) + (" ..." if len(empty) > 5 else "")
        warnings.warn(
            f"{len(empty)} assay(s) of {where} have no observed readouts ({shown}); "
            "clean_assay_matrix drops them",
            ReadoutWarning,
            stacklevel=3,
        )


def _row_labels(n: int, first_line: int | None) -> list[str]:
    """``line N`` of a text file (``first_line`` = line of the first row), else ``row N``."""
    if first_line is None:
        return [f"row {i + 1}" for i in range(n)]
    return [f"line {i + first_line}" for i in range(n)]


def _warn_bad_smiles(
    where: str, labels: list[str], raw: list[Any], reasons: list[str | None], action: str
) -> None:
    from cellframe.activity.chem import InvalidSmilesWarning, describe_bad_smiles

    n_bad = sum(r is not None for r in reasons)
    if n_bad:
        warnings.warn(
            f"{where}: {n_bad} of {len(raw)} SMILES cannot be parsed by RDKit ({action}): "
            f"{describe_bad_smiles(labels, raw, reasons)}",
            InvalidSmilesWarning,
            stacklevel=3,
        )


def _same_molecule_ids(
    raw: list[Any], canonical: list[str | None], labels: list[str], where: str
) -> tuple[list[str | None], int]:
    """Each row's id as the first spelling of its canonical molecule; warn where spellings differ.

    Returns the ids (None for empty SMILES) and the number of rows that spelled a
    molecule differently from its first row.
    """
    from cellframe.activity.chem import SameMoleculeWarning

    first: dict[str, tuple[str, str]] = {}
    ids: list[str | None] = []
    rewritten: list[str] = []
    for s, c, lab in zip(raw, canonical, labels, strict=True):
        if not isinstance(s, str) or not s.strip():
            ids.append(None)
            continue
        key = c if c is not None else s
        if key not in first:
            first[key] = (s, lab)
        spelled, at = first[key]
        if s != spelled:
            rewritten.append(f"{lab} {s!r} = {at} {spelled!r}")
        ids.append(spelled)
    if rewritten:
        shown = "; ".join(rewritten[:5]) + (" ..." if len(rewritten) > 5 else "")
        warnings.warn(
            f"{where}: {len(rewritten)} row(s) write a molecule that an earlier row wrote "
            f"differently (same RDKit canonical SMILES: {shown}); they are the same compound, "
            "so their readouts are merged under the first spelling",
            SameMoleculeWarning,
            stacklevel=3,
        )
    return ids, len(rewritten)


def assay_matrix_from_long(
    frame: pl.DataFrame | pl.LazyFrame,
    *,
    compound_column: str = COMPOUND,
    assay_column: str = ASSAY,
    readout_column: str = READOUT,
    smiles_column: str | None = SMILES,
    on_conflict: ConflictPolicy = "missing",
    where: str = "the long readout table",
    canonicalize: bool = True,
    first_line: int | None = None,
) -> AssayMatrix:
    """Build an :class:`AssayMatrix` from one row per (compound, assay) readout.

    Repeated rows of one compound and assay are merged: equal readouts count
    once; conflicting readouts (a 1 and a 0) follow ``on_conflict``.

    Parameters
    ----------
    frame : DataFrame or LazyFrame
        Long readout table; null readouts are treated as missing.
    compound_column, assay_column, readout_column : str
        Column names.
    smiles_column : str or None
        SMILES column (optional; used when present).
    on_conflict : {"missing", "hit", "error"}, default "missing"
        ``"missing"`` sets conflicting readouts to missing, ``"hit"`` keeps the
        hit, ``"error"`` raises. The first two warn with the count.
    where : str
        Name of the source for messages.
    canonicalize : bool, default True
        Compare SMILES as RDKit canonical SMILES, so one structure written
        two ways for a compound is not "two SMILES"; unparseable and empty
        SMILES are warned per row with RDKit's reason (and kept, for
        :func:`~cellframe.activity.clean.clean_assay_matrix` to drop).
    first_line : int, optional
        File line of the first row (2 below a header), for messages; rows are
        numbered from 1 otherwise.

    Returns
    -------
    AssayMatrix

    Raises
    ------
    MissingColumnsError
        If a required column is absent.
    InvalidInputError
        On readouts other than 0/1, on conflicting readouts with
        ``on_conflict="error"``, or a compound with two different structures.
    EmptyInputError
        If there is no readout at all.
    """
    if on_conflict not in ("missing", "hit", "error"):
        raise InvalidChoiceError(
            f"on_conflict must be 'missing', 'hit' or 'error', not {on_conflict!r}"
        )
    df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
    required = [compound_column, assay_column, readout_column]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise MissingColumnsError(
            where, missing, "name them with compound_column=/assay_column=/readout_column="
        )
    has_smiles = smiles_column is not None and smiles_column in df.columns
    df = df.with_columns(
        pl.col(compound_column).cast(pl.String),
        pl.col(assay_column).cast(pl.String),
    )
    by_text: dict[str, bytes] | None = None
    if has_smiles and canonicalize:
        from cellframe.activity.chem import canonical_molecules

        raw = df[smiles_column].cast(pl.String).to_list()
        canonical, reasons, binaries = canonical_molecules(raw)
        by_text = _binaries_by_text(raw, binaries)
        labels = _row_labels(df.height, first_line)
        _warn_bad_smiles(where, labels, raw, reasons, "kept; cleaning drops them")
        key = pl.Series(
            "__cf_structure",
            [c if c is not None else s for c, s in zip(canonical, raw, strict=True)],
            pl.String,
        )
        structures = df.select(compound_column, smiles_column).with_columns(key)
    elif has_smiles:
        structures = df.select(compound_column, smiles_column).with_columns(
            pl.col(smiles_column).alias("__cf_structure")
        )
    if has_smiles:
        per_compound = structures.unique(
            subset=[compound_column, "__cf_structure"], keep="first", maintain_order=True
        )
        if per_compound[compound_column].is_duplicated().any():
            bad = per_compound.filter(pl.col(compound_column).is_duplicated())
            first = bad[compound_column][0]
            spellings = bad.filter(pl.col(compound_column) == first)[smiles_column].to_list()
            raise InvalidInputError(
                f"{where}: compound {first!r} has {len(spellings)} different structures "
                f"({', '.join(repr(x) for x in spellings[:3])}), and "
                f"{bad[compound_column].n_unique()} compound(s) in all have more than one; "
                "give each compound one structure"
            )
        compounds_df = per_compound.select(compound_column, smiles_column)
    else:
        compounds_df = df.select(compound_column).unique(maintain_order=True)
    compounds = compounds_df[compound_column].to_list()
    smiles = compounds_df[smiles_column].to_list() if has_smiles else None
    assays = df[assay_column].unique(maintain_order=True).to_list()
    obs = df.filter(pl.col(readout_column).is_not_null())
    if obs.height == 0:
        raise EmptyInputError(f"{where} holds no observed readout")
    try:
        readout = obs[readout_column].cast(pl.Float64, strict=True)
    except pl.exceptions.InvalidOperationError as exc:
        raise InvalidInputError(
            f"{where}: readout column {readout_column!r} is not numeric; use 1 (hit) / 0 (no hit)"
        ) from exc
    bad = readout.filter(~readout.is_in([0.0, 1.0])).unique().to_list()
    if bad:
        raise InvalidInputError(
            f"{where}: readouts must be 1 (hit), 0 (no hit) or blank; found {bad[:5]}"
        )
    cpd_index = {c: i for i, c in enumerate(compounds)}
    assay_index = {a: j for j, a in enumerate(assays)}
    merged = (
        obs.select(
            pl.col(compound_column).replace_strict(cpd_index, return_dtype=pl.Int64).alias("_i"),
            pl.col(assay_column).replace_strict(assay_index, return_dtype=pl.Int64).alias("_j"),
            readout.alias("_r"),
        )
        .group_by("_i", "_j")
        .agg(pl.col("_r").min().alias("_lo"), pl.col("_r").max().alias("_hi"))
    )
    conflicts = merged.filter(pl.col("_lo") != pl.col("_hi"))
    values = np.full((len(compounds), len(assays)), np.nan, dtype=np.float32)
    if conflicts.height:
        example = conflicts.row(0, named=True)
        msg = (
            f"{where}: {conflicts.height} (compound, assay) pair(s) have conflicting readouts "
            f"(both 1 and 0), e.g. compound {compounds[example['_i']]!r} in assay "
            f"{assays[example['_j']]!r}"
        )
        if on_conflict == "error":
            raise InvalidInputError(msg + "; resolve them, or pass on_conflict='missing' or 'hit'")
        merged = merged.with_columns(
            pl.when(pl.col("_lo") == pl.col("_hi"))
            .then(pl.col("_lo"))
            .otherwise(1.0 if on_conflict == "hit" else None)
            .alias("_lo")
        )
        action = "kept as hits" if on_conflict == "hit" else "set to missing"
        warnings.warn(
            msg + f"; {action} (on_conflict={on_conflict!r})", ReadoutWarning, stacklevel=2
        )
    i = merged["_i"].to_numpy()
    j = merged["_j"].to_numpy()
    values[i, j] = merged["_lo"].to_numpy().astype(np.float32)
    _check_empty_assays(assays, values, where)
    return AssayMatrix(
        compounds=compounds,
        assays=assays,
        values=values,
        smiles=smiles,
        binaries=None if by_text is None else _binaries_of(smiles, by_text),
    )


def _binaries_by_text(raw: list[Any], binaries: list[bytes | None]) -> dict[str, bytes]:
    """SMILES text -> its molecule's bytes (the texts that parsed)."""
    return {s: b for s, b in zip(raw, binaries, strict=True) if b is not None}


def _binaries_of(smiles: list[Any] | None, by_text: dict[str, bytes]) -> list[bytes | None] | None:
    """The bytes of each SMILES text (parsed once, at reading), None where it did not parse."""
    return None if smiles is None else [by_text.get(s) for s in smiles]


def assay_matrix_from_wide(
    frame: pl.DataFrame | pl.LazyFrame,
    *,
    compound_column: str | None = None,
    smiles_column: str | None = "smiles",
    assays: Sequence[str] | None = None,
    on_conflict: ConflictPolicy = "missing",
    where: str = "the wide readout table",
    canonicalize: bool = True,
    first_line: int | None = None,
) -> AssayMatrix:
    """Build an :class:`AssayMatrix` from one row per compound, one column per assay.

    Parameters
    ----------
    frame : DataFrame or LazyFrame
        Blanks/nulls are missing readouts.
    compound_column : str, optional
        Identifier column; by default the SMILES column identifies compounds
        (MoleculeNet files have no other id).
    smiles_column : str or None, default "smiles"
        SMILES column; ``None`` when the table has none.
    assays : sequence of str, optional
        Assay columns (default: every other column).
    on_conflict : {"missing", "hit", "error"}, default "missing"
        How duplicate compounds with conflicting readouts (a 1 and a 0 in one
        assay) are merged: set to missing, kept as a hit, or refused; the
        first two warn with the number of (compound, assay) pairs.
    where : str
        Name of the source for messages.
    canonicalize : bool, default True
        Identify compounds by their RDKit canonical SMILES when the SMILES
        column is the identifier, so one molecule written two ways is one
        compound (its rows merged, with a warning naming the lines, under
        ``on_conflict``); rows with an empty SMILES and no other id are
        skipped with a warning naming their lines. Unparseable SMILES are
        warned per line with RDKit's reason.
    first_line : int, optional
        File line of the first row (2 below a header), for messages.

    Returns
    -------
    AssayMatrix

    Raises
    ------
    MissingColumnsError
        If the id/SMILES/assay columns are absent.
    InvalidInputError
        On readouts other than 0/1 or unresolved conflicts.
    """
    df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
    id_col = compound_column or smiles_column
    if id_col is None:
        raise InvalidInputError("give compound_column= or smiles_column= to identify compounds")
    keys = [c for c in (id_col, smiles_column) if c is not None]
    missing = [c for c in dict.fromkeys(keys) if c not in df.columns]
    if missing:
        raise MissingColumnsError(where, missing, f"columns present: {df.columns[:8]}")
    assay_cols = list(assays) if assays is not None else [c for c in df.columns if c not in keys]
    absent = [c for c in assay_cols if c not in df.columns]
    if absent:
        raise MissingColumnsError(where, absent)
    if not assay_cols:
        raise EmptyInputError(f"{where} has no assay columns")
    # Checked on the rows as given, before any is merged or skipped, so lines are right.
    _check_binary_columns(
        df, df.select([pl.col(c).cast(pl.Float64, strict=False) for c in assay_cols]), where,
        first_line,
    )  # fmt: skip
    by_text: dict[str, bytes] | None = None
    if smiles_column is not None and canonicalize:
        df, by_text = _canonical_rows(df, id_col, smiles_column, where, first_line)
    ids = df.select(pl.col(id_col).cast(pl.String).alias(COMPOUND))
    smiles = (
        df.select(pl.col(smiles_column).cast(pl.String).alias(SMILES))
        if smiles_column is not None
        else None
    )
    readouts = df.select([pl.col(c).cast(pl.Float64, strict=False).alias(c) for c in assay_cols])
    duplicated = ids[COMPOUND].is_duplicated()
    if not duplicated.any():
        values = readouts.to_numpy().astype(np.float64)
        _check_empty_assays(assay_cols, values, where)
        smiles_list = None if smiles is None else smiles[SMILES].to_list()
        return AssayMatrix(
            compounds=ids[COMPOUND].to_list(),
            assays=assay_cols,
            values=values.astype(np.float32),
            smiles=smiles_list,
            binaries=None if by_text is None else _binaries_of(smiles_list, by_text),
        )
    n_dup = int(ids[COMPOUND].filter(duplicated).n_unique())
    warnings.warn(
        f"{where}: {n_dup} compound(s) appear on more than one row; their readouts are merged",
        ReadoutWarning,
        stacklevel=2,
    )
    long = pl.concat(
        [ids, *([smiles] if smiles is not None else []), readouts], how="horizontal"
    ).unpivot(
        index=[COMPOUND, *([SMILES] if smiles is not None else [])],
        variable_name=ASSAY,
        value_name=READOUT,
    )
    merged = assay_matrix_from_long(
        long,
        smiles_column=SMILES if smiles is not None else None,
        on_conflict=on_conflict,
        where=where,
        canonicalize=False,  # done above, per file line
    )
    if by_text is None:
        return merged
    return dataclasses.replace(merged, binaries=_binaries_of(merged.smiles, by_text))


#: How a user names what a column is, in the messages of the wide reader.
_NAME_IT = (
    "if it is not an assay, name it: MatrixColumns(compound={c!r}) if it identifies the "
    "compounds, or MatrixColumns(identifiers=[{c!r}]) (TOML [data] compound_column = {t} or "
    "identifier_columns = [{t}]); or list the assays: MatrixColumns(assays=[...]) (TOML "
    "[data] assay_columns = [...])"
)


def _check_binary_columns(
    df: pl.DataFrame, readouts: pl.DataFrame, where: str, first_line: int | None
) -> None:
    """Refuse an assay column holding anything but 1, 0 or blank, naming it and the fix."""
    labels: list[str] | None = None
    for c in readouts.columns:
        raw = df[c]
        given = raw.is_not_null() & (raw.cast(pl.String).str.strip_chars() != "")
        value = readouts[c]
        bad = given & (value.is_null() | ~value.is_in([0.0, 1.0]))
        if not bad.any():
            continue
        rows = np.flatnonzero(bad.to_numpy())
        labels = labels or _row_labels(df.height, first_line)
        raise InvalidInputError(
            f"{where}: column {c!r} was read as an assay but {rows.size} of its "
            f"{int(given.sum())} values are not 1 (hit), 0 (no hit) or blank, e.g. "
            f"{raw[int(rows[0])]!r} on {labels[int(rows[0])]}; {_NAME_IT.format(c=c, t=json.dumps(c))}; "
            "binarise it if it is a readout"
        )


def _warn_shared_structures(
    ids: list[str | None], canonical: list[str | None], labels: list[str], where: str
) -> None:
    """Warn (counted) where one molecule is listed under several compound ids."""
    from cellframe.activity.chem import SameMoleculeWarning

    seen: dict[str, dict[str | None, str]] = {}
    for i, c, lab in zip(ids, canonical, labels, strict=True):
        if c is not None:
            seen.setdefault(c, {}).setdefault(i, lab)
    shared = [v for v in seen.values() if len(v) > 1]
    if shared:
        shown = "; ".join(
            " = ".join(f"{i!r} ({lab})" for i, lab in list(v.items())[:3]) for v in shared[:3]
        )
        warnings.warn(
            f"{where}: {len(shared)} molecule(s) (one RDKit canonical SMILES) are listed under "
            f"more than one compound id ({shown}); they are kept apart as the ids say. Give "
            "them one id to merge their readouts",
            SameMoleculeWarning,
            stacklevel=4,
        )


def _canonical_rows(
    df: pl.DataFrame, id_col: str, smiles_column: str, where: str, first_line: int | None
) -> tuple[pl.DataFrame, dict[str, bytes]]:
    """Warn about bad SMILES per line; where SMILES are the ids, one id per molecule.

    Also returns each SMILES text that parsed with its molecule's bytes.
    """
    from cellframe.activity.chem import InvalidSmilesWarning, canonical_molecules

    raw = df[smiles_column].cast(pl.String).to_list()
    canonical, reasons, binaries = canonical_molecules(raw)
    by_text = _binaries_by_text(raw, binaries)
    labels = _row_labels(df.height, first_line)
    if id_col != smiles_column:
        _warn_bad_smiles(where, labels, raw, reasons, "kept; cleaning drops them")
        _warn_shared_structures(df[id_col].cast(pl.String).to_list(), canonical, labels, where)
        return df, by_text
    empty = [r == "empty SMILES" for r in reasons]
    unparsed = [r if r != "empty SMILES" else None for r in reasons]
    _warn_bad_smiles(where, labels, raw, unparsed, "kept; cleaning drops them")
    ids, _ = _same_molecule_ids(raw, canonical, labels, where)
    out = df.with_columns(pl.Series(smiles_column, ids, pl.String))
    if any(empty):
        lines = [lab for lab, e in zip(labels, empty, strict=True) if e]
        shown = ", ".join(lines[:10]) + (f", ... ({len(lines)} in all)" if len(lines) > 10 else "")
        warnings.warn(
            f"{where}: {len(lines)} row(s) have an empty SMILES, which is also their only "
            f"identifier ({shown}); they are skipped. Fill in the structure, or give the "
            "table a compound id column (compound_column=)",
            InvalidSmilesWarning,
            stacklevel=3,
        )
        out = out.filter(~pl.Series(empty))
        if out.height == 0:
            raise EmptyInputError(f"{where}: every row has an empty SMILES")
    return out, by_text


def _read_names(
    names: Sequence[str] | str | Path | None, n: int, what: str, path: Path
) -> list[str]:
    if names is None:
        return [str(i) for i in range(n)]
    if isinstance(names, (str, Path)):
        lines = [ln.strip() for ln in Path(names).read_text().splitlines() if ln.strip()]
        names = lines
    names = [str(x) for x in names]
    if len(names) != n:
        raise InvalidInputError(f"{path} has {n} {what}s but {len(names)} {what} names were given")
    return names


def read_assay_matrix(
    path: str | Path,
    *,
    format: Literal["auto", "wide", "long", "mtx"] = "auto",
    columns: MatrixColumns | None = None,
    names: MatrixMarketNames | None = None,
    on_conflict: ConflictPolicy = "missing",
    canonicalize: bool = True,
) -> AssayMatrix:
    """Read an assay matrix from a wide or long CSV/Parquet file or a MatrixMarket file.

    What was taken is logged at INFO level (logger ``cellframe.activity.matrix``)
    and kept in ``AssayMatrix.reading`` (:class:`MatrixReading`: compounds,
    assays, identifier columns, and every column not read with the reason);
    columns not read also raise an :class:`IgnoredColumnsWarning` with their count.

    Parameters
    ----------
    path : str or Path
        ``.csv``, ``.csv.gz``, ``.tsv``, ``.parquet`` or ``.mtx`` (MatrixMarket,
        compounds as rows; stored entries are readouts, absent ones missing).
    format : {"auto", "wide", "long", "mtx"}
        ``"auto"``: ``.mtx`` is MatrixMarket; a table with the long layout's
        assay and readout columns is long; anything else wide.
    columns : MatrixColumns, optional
        Assay, identifier, compound and SMILES columns (default
        ``MatrixColumns()``: SMILES in ``smiles``, every other column of a wide
        table an assay).
    names : MatrixMarketNames, optional
        Row/column names and SMILES of a MatrixMarket file (default: positions).
    on_conflict : {"missing", "hit", "error"}, default "missing"
        Merging of duplicate compounds (the same id, or the same canonical
        molecule) with conflicting readouts; see :func:`assay_matrix_from_wide`.
    canonicalize : bool, default True
        Compare SMILES as RDKit canonical SMILES and report bad ones per file
        line with RDKit's reason (see :func:`assay_matrix_from_wide`).

    Returns
    -------
    AssayMatrix

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    UnknownFormatError
        If the file type is not one of the above.
    MissingColumnsError
        If a named column is not in the file.
    InvalidInputError
        If a column read as an assay holds anything but 1, 0 or blank (the
        message names the column and how to mark it as an identifier).

    Examples
    --------
    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "challenge.csv"
    >>> _ = f.write_text("ID,smiles,NR-AR,SR-MMP\\nT1,CCO,0,1\\nT2,c1ccccc1O,1,\\n")
    >>> m = read_assay_matrix(f, columns=MatrixColumns(compound="ID"))
    >>> m.compounds, m.assays
    (['T1', 'T2'], ['NR-AR', 'SR-MMP'])
    >>> m.reading.n_compounds, m.reading.assay_columns, m.reading.ignored
    (2, ('NR-AR', 'SR-MMP'), {})
    """
    from cellframe.errors import UnknownFormatError

    columns = columns if columns is not None else MatrixColumns()
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no assay matrix at {path}")
    name = path.name.lower()
    if format == "mtx" or (format == "auto" and name.endswith((".mtx", ".mtx.gz"))):
        names = names if names is not None else MatrixMarketNames()
        m = _read_matrix_market(
            path, compounds=names.compounds, assays=names.assays, smiles=names.smiles
        )
        return _with_reading(m, str(path), "mtx", None, None, tuple(m.assays), (), {})
    first_line: int | None = None
    if name.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt")):
        sep = "\t" if ".tsv" in name else ","
        df = pl.read_csv(
            path, separator=sep, infer_schema_length=0, glob=False
        )  # all strings: cast later
        first_line = 2  # below the header
    elif name.endswith(".parquet"):
        df = pl.read_parquet(path, glob=False)
    else:
        raise UnknownFormatError(
            f"cannot read {path} as an assay matrix: use .csv/.tsv(.gz), .parquet or .mtx"
        )
    named = [*(columns.assays or ()), *columns.identifiers]
    absent = [c for c in named if c not in df.columns]
    if absent:
        raise MissingColumnsError(
            str(path), absent, f"columns present: {df.columns[:14]}; fix the assay/identifier names"
        )
    is_long = format == "long" or (
        format == "auto" and columns.assay in df.columns and columns.readout in df.columns
    )
    if is_long:
        compound = columns.compound or COMPOUND
        smiles = columns.smiles if columns.smiles in df.columns else None
        used = {compound, columns.assay, columns.readout, smiles, *columns.identifiers}
        ignored = {c: "not a column of the long layout" for c in df.columns if c not in used}
        m = assay_matrix_from_long(
            df,
            compound_column=compound,
            assay_column=columns.assay,
            readout_column=columns.readout,
            smiles_column=smiles,
            on_conflict=on_conflict,
            where=str(path),
            canonicalize=canonicalize,
            first_line=first_line,
        )
        return _with_reading(
            m, str(path), "long", compound, smiles, tuple(m.assays), columns.identifiers, ignored
        )
    keys = [c for c in (columns.compound, columns.smiles) if c is not None]
    not_assays = {*keys, *columns.identifiers}
    if columns.assays is not None:
        assays = list(columns.assays)
        ignored = {
            c: "not named in assay_columns" for c in df.columns if c not in {*not_assays, *assays}
        }
    else:
        assays = [c for c in df.columns if c not in not_assays]
        ignored = {}
    m = assay_matrix_from_wide(
        df,
        compound_column=columns.compound,
        smiles_column=columns.smiles,
        assays=assays,
        on_conflict=on_conflict,
        where=str(path),
        canonicalize=canonicalize,
        first_line=first_line,
    )
    return _with_reading(
        m,
        str(path),
        "wide",
        columns.compound or columns.smiles,
        columns.smiles,
        tuple(assays),
        columns.identifiers,
        ignored,
    )


def _with_reading(
    m: AssayMatrix,
    source: str,
    layout: str,
    compound: str | None,
    smiles: str | None,
    assays: tuple[str, ...],
    identifiers: Sequence[str],
    ignored: dict[str, str],
) -> AssayMatrix:
    """Attach (and log, and warn about ignored columns) what a read took."""
    reading = MatrixReading(
        source=source,
        layout=layout,
        n_compounds=m.shape[0],
        n_assays=m.shape[1],
        n_readouts=int(m.observed.sum()),
        compound_column=compound,
        smiles_column=smiles,
        assay_columns=assays,
        identifier_columns=tuple(identifiers),
        ignored=ignored,
    )
    _log.info("read assay matrix %s", reading)
    if ignored:
        warnings.warn(
            f"{source}: {len(ignored)} column(s) not read: "
            + "; ".join(f"{c!r} ({why})" for c, why in ignored.items()),
            IgnoredColumnsWarning,
            stacklevel=3,
        )
    return dataclasses.replace(m, reading=reading)


#: TOML ``[data]`` keys (and ``matrix_options`` keys) -> where they go.
_COLUMN_KEYS = {
    "assay_columns": "assays",
    "identifier_columns": "identifiers",
    "compound_column": "compound",
    "smiles_column": "smiles",
    "assay_column": "assay",
    "readout_column": "readout",
}
_NAME_KEYS = {"compounds": "compounds", "assays": "assays", "smiles": "smiles"}
_PLAIN_KEYS = ("format", "on_conflict", "canonicalize")


def matrix_options(options: dict[str, Any], where: str = "[data]") -> dict[str, Any]:
    """Keyword arguments of :func:`read_assay_matrix` from flat settings (a TOML ``[data]``).

    Parameters
    ----------
    options : dict
        Any of ``assay_columns``, ``identifier_columns``, ``compound_column``,
        ``smiles_column`` (``""`` for none), ``assay_column``, ``readout_column``
        (a :class:`MatrixColumns`), ``compounds``, ``assays``, ``smiles``
        (a :class:`MatrixMarketNames`), ``format``, ``on_conflict``, ``canonicalize``.
    where : str
        Name of the settings' source, for messages.

    Returns
    -------
    dict
        ``format``, ``columns``, ``names``, ``on_conflict``, ``canonicalize`` as given.

    Raises
    ------
    InvalidInputError
        On an unknown key (the message lists the valid ones) or a bad column list.

    Examples
    --------
    >>> opts = matrix_options({"compound_column": "ID", "assay_columns": ["NR-AR"]})
    >>> opts["columns"].compound, opts["columns"].assays
    ('ID', ('NR-AR',))
    """
    valid = sorted([*_COLUMN_KEYS, *_NAME_KEYS, *_PLAIN_KEYS])
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise InvalidInputError(
            f"{where}: unknown key(s) {unknown}; valid: matrix, {', '.join(valid)}"
        )
    col = {_COLUMN_KEYS[k]: v for k, v in options.items() if k in _COLUMN_KEYS}
    if col.get("smiles") == "":
        col["smiles"] = None
    for k in ("assays", "identifiers"):
        v = col.get(k)
        if v is not None and (isinstance(v, str) or not all(isinstance(x, str) for x in v)):
            key = "assay_columns" if k == "assays" else "identifier_columns"
            raise InvalidInputError(
                f'{where} {key} = {v!r}: give a list of column names, e.g. {key} = ["NR-AR"]'
            )
    out: dict[str, Any] = {k: options[k] for k in _PLAIN_KEYS if k in options}
    out["columns"] = MatrixColumns(**col)
    name = {_NAME_KEYS[k]: v for k, v in options.items() if k in _NAME_KEYS}
    if name:
        out["names"] = MatrixMarketNames(**name)
    return out


def read_assay_subset(
    path: str | Path,
    n_rows: int,
    assays: Sequence[str],
    *,
    smiles_column: str = "smiles",
    compound_column: str | None = None,
    on_conflict: ConflictPolicy = "missing",
    canonicalize: bool = True,
) -> AssayMatrix:
    """The first ``n_rows`` rows and the named assays of a wide CSV assay matrix.

    For a small matrix taken from a large one (the demo trains on the first
    2,000 Tox21 compounds and three of its assays): only those rows are read
    and canonicalized, and the result is what :func:`read_assay_matrix` gives
    on a file holding those rows and columns (messages name the lines of
    ``path``).

    Parameters
    ----------
    path : str or Path
        ``.csv``, ``.csv.gz``, ``.tsv`` or ``.tsv.gz`` file, one row per compound.
    n_rows : int
        How many data rows (below the header, in file order) to take; one row
        is one compound in MoleculeNet's files (rows of one molecule are merged).
    assays : sequence of str
        Assay columns to take, in this order.
    smiles_column, compound_column : str
        As in :func:`assay_matrix_from_wide`.
    on_conflict : {"missing", "hit", "error"}, default "missing"
        As in :func:`assay_matrix_from_wide`.
    canonicalize : bool, default True
        As in :func:`assay_matrix_from_wide`.

    Returns
    -------
    AssayMatrix

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    InvalidInputError
        If ``n_rows`` is not positive, the file has fewer data rows, or no
        assay is named.
    MissingColumnsError
        If a named column is not in the file.
    UnknownFormatError
        If ``path`` is not a CSV/TSV file.

    Examples
    --------
    >>> from cellframe.demo import demo_data_dir
    >>> m = read_assay_subset(
    ...     demo_data_dir() / "moleculenet" / "tox21.csv.gz", 5, ["NR-AhR", "SR-MMP"]
    ... )
    >>> m.assays, m.values[:, 0].tolist()
    (['NR-AhR', 'SR-MMP'], [1.0, 0.0, nan, 0.0, 0.0])
    """
    from cellframe.errors import UnknownFormatError

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no assay matrix at {path}")
    name = path.name.lower()
    if not name.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz")):
        raise UnknownFormatError(
            f"read_assay_subset reads .csv/.tsv(.gz) files, not {path}; "
            "use read_assay_matrix and AssayMatrix.subset"
        )
    if isinstance(n_rows, bool) or not isinstance(n_rows, (int, np.integer)) or n_rows < 1:
        raise InvalidInputError(
            f"n_rows must be a positive number of rows of {path} to take, not {n_rows!r}"
        )
    assays = list(assays)
    if not assays:
        raise InvalidInputError(f"name at least one assay column of {path} to take")
    if len(set(assays)) != len(assays):
        raise InvalidInputError(f"assay columns named twice for {path}: {assays}")
    df = pl.read_csv(
        path,
        separator="\t" if ".tsv" in name else ",",
        infer_schema_length=0,  # all strings, cast later, as read_assay_matrix
        n_rows=int(n_rows),
        glob=False,
    )
    keys = [c for c in dict.fromkeys((compound_column, smiles_column)) if c is not None]
    missing = [c for c in [*keys, *assays] if c not in df.columns]
    if missing:
        raise MissingColumnsError(str(path), missing, f"columns present: {df.columns[:14]}")
    if df.height < n_rows:
        raise InvalidInputError(
            f"{path} has {df.height} data rows, fewer than the {n_rows} asked for; "
            f"ask for at most {df.height}"
        )
    return assay_matrix_from_wide(
        df.select([*keys, *assays]),
        compound_column=compound_column,
        smiles_column=smiles_column,
        assays=assays,
        on_conflict=on_conflict,
        where=str(path),
        canonicalize=canonicalize,
        first_line=2,
    )


def _read_matrix_market(
    path: Path,
    *,
    compounds: Sequence[str] | str | Path | None,
    assays: Sequence[str] | str | Path | None,
    smiles: Sequence[str] | str | Path | None,
) -> AssayMatrix:
    import scipy.io
    import scipy.sparse

    try:
        mat = scipy.io.mmread(str(path))
    except ValueError as exc:
        raise InvalidInputError(f"{path} is not a valid MatrixMarket file: {exc}") from exc
    if scipy.sparse.issparse(mat):
        coo = mat.tocoo()
        # Explicit zeros are "no hit": take the entries as stored; absent ones are missing.
        values = np.full(coo.shape, np.nan, dtype=np.float32)
        values[coo.row, coo.col] = coo.data
    else:  # array format: every entry present, NaN marks a missing readout
        values = np.asarray(mat, dtype=np.float32)
    n_cpd, n_assay = values.shape
    cpd = _read_names(compounds, n_cpd, "compound", path)
    asy = _read_names(assays, n_assay, "assay", path)
    smi = None if smiles is None else _read_names(smiles, n_cpd, "compound", path)
    _check_empty_assays(asy, values, str(path))
    return AssayMatrix(compounds=cpd, assays=asy, values=values, smiles=smi)
