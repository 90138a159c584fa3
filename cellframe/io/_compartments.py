"""Joining CellProfiler compartments (Cells, Cytoplasm, Nuclei) into single-cell rows.

The join is pycytominer's ``SingleCells`` default and CytoTable's
``cellprofiler_*`` presets: each Cytoplasm object is matched, within its image,
with the Cells object named by ``Cytoplasm_Parent_Cells`` and the Nuclei object
named by ``Cytoplasm_Parent_Nuclei`` (inner joins: objects without partners are
left out, and counted in a warning). The image's metadata (plate, well, site,
file names) is attached by image number.

Two ways to stream sources larger than memory:

* :class:`SortedMerge`: when every compartment's rows come ordered by image
  (CellProfiler writes them image by image), the compartment streams are
  merge-joined image range by image range; at most about one batch per
  compartment is in memory, and nothing is copied.
* :class:`Staging`: otherwise every compartment is copied batch by batch into
  a temporary DuckDB database (a :class:`~cellframe.store.Store` in a
  temporary folder), and the join runs there over ranges of images.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import polars as pl

from cellframe.columns import IMAGE_NUMBER, METADATA_PREFIX, OBJECT_NUMBER
from cellframe.errors import (
    DanglingReferenceError,
    DuplicateColumnsError,
    DuplicateKeysError,
    InvalidInputError,
    MissingColumnsError,
)
from cellframe.io._normalize import Issues, cast_features, default_batch_rows, order_columns
from cellframe.store import Store, quote_identifier

#: The compartments joined into a single cell, in pycytominer's default order.
COMPARTMENTS = ("Cells", "Cytoplasm", "Nuclei")

# Internal join keys of the staging tables (never written to the store).
TABLE_KEY = "_cf_table"
IMAGE_KEY = "_cf_image"
OBJECT_KEY = "_cf_object"
INTERNAL = (TABLE_KEY, IMAGE_KEY, OBJECT_KEY)


def _unprefixed(column: str, compartment: str) -> str:
    prefix = compartment + "_"
    return column[len(prefix) :] if column.startswith(prefix) else column


def columns_by_base(columns: Iterable[str], compartment: str) -> dict[str, str]:
    """Map each column name without the compartment prefix to the first column so named.

    CellProfiler writes ``Cells_ImageNumber`` or ``ImageNumber``,
    ``Cells_AreaShape_Area`` or ``AreaShape_Area`` depending on the export.
    """
    by_base: dict[str, str] = {}
    for c in columns:
        by_base.setdefault(_unprefixed(c, compartment), c)
    return by_base


def canonical_compartment(
    df: pl.DataFrame,
    compartment: str,
    *,
    where: str,
    issues: Issues | None,
    table_key: str | None = None,
    image_offset: int = 0,
    object_column: str = "ObjectNumber",
) -> pl.DataFrame:
    """Rename and type one batch of a compartment table.

    CellProfiler names a compartment's columns with or without the compartment
    prefix (``Cells_AreaShape_Area`` in SQLite, ``AreaShape_Area`` in
    ``Cells.csv``). The result has the internal keys ``_cf_table``,
    ``_cf_image``, ``_cf_object``; ``Number_Object_Number`` and ``Parent_*``
    become ``Metadata_<Compartment>_...`` (they are identifiers, not
    measurements); every other column is a Float32 feature
    ``<Compartment>_...``.

    Parameters
    ----------
    df : polars.DataFrame
        One batch of the table, as read.
    compartment : str
        ``"Cells"``, ``"Cytoplasm"`` or ``"Nuclei"``.
    where : str
        File and table, for messages.
    issues : Issues, optional
        Collects NaN/inf counts.
    table_key : str, optional
        Value of ``_cf_table`` when the table has no ``TableNumber`` column.
    image_offset : int
        Added to ``ImageNumber`` so images of different files stay apart.
    object_column : str, default "ObjectNumber"
        The column (without compartment prefix) numbering the objects:
        ``ObjectNumber`` in CSV exports and cytominer-database,
        ``Number_Object_Number`` in ExportToDatabase SQLite. No other column
        stands in for it.

    Returns
    -------
    polars.DataFrame

    Raises
    ------
    MissingColumnsError
        If the table has no ``ImageNumber`` or no ``object_column``.
    DuplicateColumnsError
        If two columns name the same measurement (``Cells_AreaShape_Area``
        and ``AreaShape_Area``).
    """
    base = {c: _unprefixed(c, compartment) for c in df.columns}
    by_base = columns_by_base(df.columns, compartment)
    image_col = by_base.get("ImageNumber")
    object_col = by_base.get(object_column)
    missing = [n for n, c in (("ImageNumber", image_col), (object_column, object_col)) if c is None]
    if missing:
        other = [
            c
            for c in ("ObjectNumber", "Number_Object_Number")
            if c != object_column and c in by_base
        ]
        note = (
            f" ({by_base[other[0]]!r} is there, but it is not the key of this export: cellframe "
            "does not put another column in the key's place)"
            if other and object_column in missing
            else ""
        )
        raise MissingColumnsError(
            where,
            missing,
            f"a CellProfiler object table needs ImageNumber and {object_column} to link objects "
            f"to images and to each other{note}; re-export it with those columns",
        )
    exprs: list[pl.Expr] = []
    table_col = by_base.get("TableNumber")
    if table_col is not None:
        exprs.append(pl.col(table_col).cast(pl.String).alias(TABLE_KEY))
    else:
        exprs.append(pl.lit(table_key or "", pl.String).alias(TABLE_KEY))
    try:
        image = pl.col(image_col).cast(pl.Int64, strict=True)  # type: ignore[arg-type]
        checked = df.select(
            (image + image_offset).alias(IMAGE_KEY),
            pl.col(object_col).cast(pl.Int64, strict=True).alias(OBJECT_KEY),  # type: ignore[arg-type]
        )
    except pl.exceptions.PolarsError as exc:
        raise InvalidInputError(
            f"{where}: ImageNumber/ObjectNumber must be whole numbers ({exc}); fix the table"
        ) from exc
    features: list[str] = []
    meta: list[pl.Expr] = []
    seen: set[str] = set(INTERNAL)
    for c, b in base.items():
        if c in (image_col, table_col) or b == "ObjectNumber":
            continue
        if b == "Number_Object_Number" or b.startswith("Parent_"):
            # Identifiers of this object and of its parents, not measurements.
            name = f"{METADATA_PREFIX}{compartment}_{b}"
            meta.append(pl.col(c).cast(pl.Int64, strict=False).alias(name))
        elif b.startswith(METADATA_PREFIX):
            name = f"{METADATA_PREFIX}{compartment}_{b[len(METADATA_PREFIX) :]}"
            meta.append(pl.col(c).alias(name))
        else:
            name = f"{compartment}_{b}"
            if name in seen:
                first = next(o for o, ob in base.items() if ob == b and o != c)
                raise DuplicateColumnsError(
                    f"{where}: columns {first!r} and {c!r} both hold the measurement "
                    f"{name!r} (one with the compartment prefix, one without); keep one of them "
                    "and ingest again"
                )
            exprs.append(pl.col(c).alias(name))
            features.append(name)
        seen.add(name)
    out = pl.concat([checked, df.select([exprs[0], *meta, *exprs[1:]])], how="horizontal")
    out = out.select(
        [TABLE_KEY, IMAGE_KEY, OBJECT_KEY, *[c for c in out.columns if c not in INTERNAL]]
    )
    return cast_features(out, features, where=where, issues=issues)


class Staging:
    """A temporary DuckDB database holding the compartments of one source.

    Parameters
    ----------
    directory : str or Path, optional
        Where to put the temporary database (default: the system's temp folder).
    memory_limit : str
        DuckDB memory limit of the staging database; larger joins spill to disk.
    threads : int, optional
        DuckDB threads.
    flush_rows : int, default 10000
        Buffered rows per compartment before they are written to the database.
    in_memory : bool, default False
        Keep the compartments as Polars frames and join them in memory (for
        sources that fit comfortably; avoids DuckDB's per-table cost on very
        wide tables).
    """

    def __init__(
        self,
        directory: str | Path | None = None,
        *,
        memory_limit: str = "512MB",
        threads: int | None = None,
        flush_rows: int = 10_000,
        in_memory: bool = False,
    ) -> None:
        self.flush_rows = flush_rows
        self.in_memory = in_memory
        self._buffer: dict[str, list[pl.DataFrame]] = {}
        self._buffered: dict[str, int] = {}
        self._frames: dict[str, list[pl.DataFrame]] = {}
        self._dir: Path | None = None
        self._store: Store | None = None
        if not in_memory:
            self._dir = Path(tempfile.mkdtemp(prefix="cellframe-ingest-", dir=directory))
            self._store = Store(
                self._dir / "staging.duckdb", memory_limit=memory_limit, threads=threads
            )
            self._con = self._store.connection
            spill = (self._dir / "spill").as_posix().replace("'", "''")
            self._con.execute(f"SET temp_directory = '{spill}'")
        self.rows: dict[str, int] = {}
        self.where: dict[str, str] = {}
        self._files: dict[tuple[str, str], str] = {}
        self._columns: dict[str, list[str]] = {}
        self._sorted: dict[str, bool] = {}
        self._last: dict[str, int] = {}

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close and delete the temporary database."""
        self._frames.clear()
        try:
            if self._store is not None:
                self._store.close()
        finally:
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)

    @property
    def compartments(self) -> list[str]:
        """Compartments that received at least one batch (rows or not)."""
        return [c for c in COMPARTMENTS if c in self._columns]

    def append(self, compartment: str, frame: pl.DataFrame, where: str) -> None:
        """Add a canonical batch (see :func:`canonical_compartment`) to a compartment.

        Small batches (one site's objects) are buffered and written together:
        each insert of a wide table costs a fixed time to plan.
        """
        self.where.setdefault(compartment, where)
        if frame.height:
            self._files.setdefault((compartment, str(frame[TABLE_KEY][0])), where)
        buffer = self._buffer.setdefault(compartment, [])
        buffer.append(frame)
        self._buffered[compartment] = self._buffered.get(compartment, 0) + frame.height
        if compartment not in self._columns or self._buffered[compartment] >= self.flush_rows:
            self._flush(compartment)

    def flush(self) -> None:
        """Write every buffered batch."""
        for compartment in list(self._buffer):
            self._flush(compartment)

    def _flush(self, compartment: str) -> None:
        frames = self._buffer.pop(compartment, [])
        self._buffered[compartment] = 0
        if not frames:
            return
        frame = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
        if self.in_memory:
            self._frames.setdefault(compartment, []).append(frame)
            known = self._columns.setdefault(compartment, [])
            have = set(known)
            known.extend(c for c in frame.columns if c not in have)
            self.rows[compartment] = self.rows.get(compartment, 0) + frame.height
            return
        table = quote_identifier(f"stage_{compartment}")
        name = f"_cf_batch_{uuid.uuid4().hex}"
        self._con.register(name, frame.to_arrow())
        try:
            if compartment not in self._columns:
                self._con.execute(f"CREATE TABLE {table} AS SELECT * FROM {name}")
                self._columns[compartment] = list(frame.columns)
            else:
                known = set(self._columns[compartment])
                extra = [c for c in frame.columns if c not in known]
                if extra:
                    types = dict(
                        self._con.execute(
                            f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {name})"
                        ).fetchall()
                    )
                    for c in extra:
                        self._con.execute(
                            f"ALTER TABLE {table} ADD COLUMN {quote_identifier(c)} {types[c]}"
                        )
                    self._columns[compartment].extend(extra)
                if frame.height:
                    self._con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {name}")
        finally:
            self._con.unregister(name)
        if frame.height:
            images = frame[IMAGE_KEY]
            first, last = int(images[0]), int(images[-1])
            ok = self._sorted.get(compartment, True) and bool(images.is_sorted())
            ok = ok and first >= self._last.get(compartment, first)
            self._sorted[compartment] = ok
            self._last[compartment] = last
        self.rows[compartment] = self.rows.get(compartment, 0) + frame.height

    def columns(self, compartment: str) -> list[str]:
        """Columns of a staged compartment."""
        return list(self._columns[compartment])

    # ------------------------------------------------------------------ join
    def _plan(self) -> tuple[str, list[tuple[str, str, str]], str]:
        """Base compartment, joins (compartment, alias, link column) and object-number alias."""
        self.flush()
        return join_plan(self._columns, self.where)

    def check_images(self, image_keys: pl.DataFrame, image_where: str) -> None:
        """Raise when objects of the base compartment have no image row."""
        base, _, _ = self._plan()
        keys = image_keys.select(TABLE_KEY, IMAGE_KEY)
        if self.in_memory:
            orphans = (
                self._table(base)
                .select(TABLE_KEY, IMAGE_KEY)
                .join(keys, on=[TABLE_KEY, IMAGE_KEY], how="anti")
            )
            n, first = orphans.height, orphans[IMAGE_KEY].min() if orphans.height else None
        else:
            name = f"_cf_img_{uuid.uuid4().hex}"
            self._con.register(name, keys.to_arrow())
            try:
                row = self._con.execute(
                    f"SELECT count(*), min(b.{IMAGE_KEY}) FROM {quote_identifier('stage_' + base)} b "
                    f"ANTI JOIN {name} i USING ({TABLE_KEY}, {IMAGE_KEY})"
                ).fetchall()
            finally:
                self._con.unregister(name)
            n, first = row[0] if row else (0, None)
        if n:
            raise _orphans_error(n, base, self.where[base], image_where, int(first))

    def where_of(self, compartment: str, table_key: str) -> str:
        """The file (and table) that holds ``compartment``'s rows of ``table_key``."""
        return self._files.get((compartment, table_key), self.where.get(compartment, compartment))

    def check_keys(self) -> None:
        """Raise :class:`DuplicateKeysError` when two objects of a compartment share a key."""
        self.flush()
        for comp in self.compartments:
            if self.in_memory:
                keys = self._table(comp).select(INTERNAL)
                dupes = keys.filter(keys.is_duplicated())
                first = dupes.row(0) if dupes.height else None
                n = dupes.height
            else:
                rows = self._con.execute(
                    f"SELECT {', '.join(INTERNAL)}, count(*) FROM "
                    f"{quote_identifier('stage_' + comp)} GROUP BY ALL HAVING count(*) > 1"
                ).fetchall()
                first = rows[0][:3] if rows else None
                n = sum(r[3] for r in rows)
            if first is not None:
                raise duplicate_keys_error(self.where_of(comp, first[0]), comp, first, n)

    def check_references(self) -> dict[str, int]:
        """Check every ``Parent_*`` link the join follows; count objects no link reaches.

        Returns
        -------
        dict
            Per joined compartment, its objects that no object of the base
            compartment names (they are left out of the single cells).

        Raises
        ------
        DanglingReferenceError
            If a base object names (a number above 0) a partner that its image lacks.
        """
        base, joins, _ = self._plan()
        if self.in_memory:
            frames = {c: self._table(c) for c in self.compartments}
            return check_references(frames, base, joins, self.where_of)
        unreferenced: dict[str, int] = {}
        b = quote_identifier("stage_" + base)
        for comp, _, link in joins:
            o = quote_identifier("stage_" + comp)
            q = quote_identifier(link)
            on = (
                f"o.{TABLE_KEY} = b.{TABLE_KEY} AND o.{IMAGE_KEY} = b.{IMAGE_KEY} "
                f"AND o.{OBJECT_KEY} = b.{q}"
            )
            rows = self._con.execute(
                f"SELECT b.{TABLE_KEY}, b.{IMAGE_KEY}, b.{OBJECT_KEY}, b.{q}, count(*) OVER () "
                f"FROM {b} b ANTI JOIN {o} o ON {on} WHERE b.{q} > 0 LIMIT 1"
            ).fetchall()
            if rows:
                t, image, obj, ref, n = rows[0]
                raise dangling_error(
                    n, base, comp, link, (t, image, obj, ref), self.where_of, str(t)
                )
            unreferenced[comp] = self._con.execute(
                f"SELECT count(*) FROM {o} o ANTI JOIN {b} b ON {on}"
            ).fetchall()[0][0]
        return unreferenced

    def object_counts(self, compartment: str) -> pl.DataFrame:
        """Objects of ``compartment`` per image: ``_cf_table``, ``_cf_image``, ``n``."""
        self.flush()
        if self.in_memory:
            counts = self._table(compartment).group_by(TABLE_KEY, IMAGE_KEY).len("n")
        else:
            table = self._con.sql(
                f"SELECT {TABLE_KEY}, {IMAGE_KEY}, count(*) AS n FROM "
                f"{quote_identifier('stage_' + compartment)} GROUP BY ALL"
            ).to_arrow_table()
            counts = pl.from_arrow(table)  # type: ignore[assignment]
        return counts.cast({TABLE_KEY: pl.String, IMAGE_KEY: pl.Int64, "n": pl.Int64})  # type: ignore[union-attr]

    def image_keys(self) -> pl.DataFrame:
        """The distinct (``_cf_table``, ``_cf_image``) of every staged object, any compartment."""
        self.flush()
        parts = []
        for comp in self.compartments:
            if self.in_memory:
                parts.append(self._table(comp).select(TABLE_KEY, IMAGE_KEY).unique())
            else:
                table = self._con.sql(
                    f"SELECT DISTINCT {TABLE_KEY}, {IMAGE_KEY} FROM "
                    f"{quote_identifier('stage_' + comp)}"
                ).to_arrow_table()
                parts.append(pl.from_arrow(table))  # type: ignore[arg-type]
        if not parts:
            return pl.DataFrame(schema={TABLE_KEY: pl.String, IMAGE_KEY: pl.Int64})
        return pl.concat(
            [p.cast({TABLE_KEY: pl.String, IMAGE_KEY: pl.Int64}) for p in parts]
        ).unique()

    def iter_joined(
        self, image: pl.DataFrame, batch_rows: int | None = None
    ) -> Iterator[pl.DataFrame]:
        """Join the staged compartments with ``image`` and yield single-cell batches.

        ``image`` holds ``_cf_table``, ``_cf_image`` and the metadata to attach.
        ``batch_rows`` defaults to about 32 MB of Float32 features per batch.
        """
        base, joins, object_alias = self._plan()
        if batch_rows is None:
            batch_rows = default_batch_rows(sum(len(c) for c in self._columns.values()))
        if self.in_memory:
            yield from self._iter_joined_in_memory(image, batch_rows)
            return
        self._con.execute("DROP TABLE IF EXISTS stage_image")
        name = f"_cf_img_{uuid.uuid4().hex}"
        self._con.register(name, image.to_arrow())
        try:
            self._con.execute(f"CREATE TABLE stage_image AS SELECT * FROM {name}")
        finally:
            self._con.unregister(name)
        b_alias = f"t_{base.lower()}"
        image_cols = [c for c in image.columns if c not in (TABLE_KEY, IMAGE_KEY)]
        select = [f"i.{quote_identifier(c)}" for c in image_cols]
        select.append(f"{object_alias}.{OBJECT_KEY} AS {quote_identifier(OBJECT_NUMBER)}")
        order = ["Cells", "Cytoplasm", "Nuclei"]
        present = {base: b_alias, **{c: a for c, a, _ in joins}}
        for comp in order:
            if comp in present:
                cols = [c for c in self._columns[comp] if c not in INTERNAL]
                select += [f"{present[comp]}.{quote_identifier(c)}" for c in cols]
        from_sql = f"{quote_identifier('stage_' + base)} {b_alias}"
        for comp, alias, link in joins:
            from_sql += (
                f" JOIN {quote_identifier('stage_' + comp)} {alias}"
                f" ON {alias}.{TABLE_KEY} = {b_alias}.{TABLE_KEY}"
                f" AND {alias}.{IMAGE_KEY} = {b_alias}.{IMAGE_KEY}"
                f" AND {alias}.{OBJECT_KEY} = {b_alias}.{quote_identifier(link)}"
                f" AND {alias}.{IMAGE_KEY} BETWEEN $lo AND $hi"
            )
        from_sql += (
            f" JOIN stage_image i ON i.{TABLE_KEY} = {b_alias}.{TABLE_KEY}"
            f" AND i.{IMAGE_KEY} = {b_alias}.{IMAGE_KEY}"
        )
        sql = (
            f"SELECT {', '.join(select)} FROM {from_sql} "
            f"WHERE {b_alias}.{IMAGE_KEY} BETWEEN $lo AND $hi"
        )
        if all(self._sorted.get(c, True) for c in self.compartments):
            counts = self._con.execute(
                f"SELECT {IMAGE_KEY}, count(*) FROM {quote_identifier('stage_' + base)} "
                "GROUP BY 1 ORDER BY 1"
            ).fetchall()
            for lo, hi in _ranges(counts, batch_rows):
                table = self._con.sql(sql, params={"lo": lo, "hi": hi}).to_arrow_table()
                if table.num_rows:
                    yield order_columns(pl.from_arrow(table))  # type: ignore[arg-type]
        else:
            # Unsorted source: one streaming query (DuckDB spills to disk past its memory limit).
            reader = self._con.sql(sql, params={"lo": -(2**62), "hi": 2**62}).to_arrow_reader(
                batch_rows
            )
            for batch in reader:
                if batch.num_rows:
                    yield order_columns(pl.from_arrow(batch))  # type: ignore[arg-type]

    def _table(self, compartment: str) -> pl.DataFrame:
        frames = self._frames.get(compartment, [])
        if not frames:
            return pl.DataFrame(schema=dict.fromkeys(self._columns[compartment], pl.Int64))
        if len(frames) > 1:
            self._frames[compartment] = [pl.concat(frames, how="diagonal_relaxed")]
        return self._frames[compartment][0]

    def _iter_joined_in_memory(
        self, image: pl.DataFrame, batch_rows: int
    ) -> Iterator[pl.DataFrame]:
        base, joins, _ = self._plan()
        frames = {c: self._table(c) for c in self.compartments}
        out = join_frames(frames, self._columns, image, base, joins)
        for start in range(0, out.height, batch_rows):
            yield order_columns(out.slice(start, batch_rows))

    def base(self) -> str:
        """The compartment every single-cell row starts from."""
        return self._plan()[0]


def join_plan(
    columns: Mapping[str, Sequence[str]], where: Mapping[str, str]
) -> tuple[str, list[tuple[str, str, str]], str]:
    """How the compartments present are joined.

    Parameters
    ----------
    columns : mapping
        Columns of each compartment present (canonical names).
    where : mapping
        File and table of each compartment, for messages.

    Returns
    -------
    (base, joins, object_alias)
        The compartment every row starts from, the joins as (compartment,
        SQL alias, link column of the base) and the alias whose object number
        becomes ``Metadata_ObjectNumber``.

    Raises
    ------
    InvalidInputError
        If no compartment is present.
    MissingColumnsError
        If the base lacks the parent column that links it to another compartment.
    """
    have = {c for c in COMPARTMENTS if c in columns}
    link = {
        ("Cytoplasm", "Cells"): f"{METADATA_PREFIX}Cytoplasm_Parent_Cells",
        ("Cytoplasm", "Nuclei"): f"{METADATA_PREFIX}Cytoplasm_Parent_Nuclei",
        ("Cells", "Nuclei"): f"{METADATA_PREFIX}Cells_Parent_Nuclei",
    }
    if "Cytoplasm" in have and ("Cells" in have or "Nuclei" in have):
        base = "Cytoplasm"
        joins = [(c, link[("Cytoplasm", c)]) for c in ("Cells", "Nuclei") if c in have]
    elif "Cells" in have and "Nuclei" in have:
        base, joins = "Cells", [("Nuclei", link[("Cells", "Nuclei")])]
    elif len(have) == 1:
        base, joins = next(iter(have)), []
    else:
        raise InvalidInputError("no Cells, Cytoplasm or Nuclei table was found to join")
    for other, col in joins:
        if col not in columns[base]:
            raise MissingColumnsError(
                f"{where[base]} ({base} objects)",
                [col.removeprefix(METADATA_PREFIX)],
                f"it links each {base} object to its {other} object; re-export the "
                f"CellProfiler tables with the {base} parent columns (RelateObjects)",
            )
    aliases = [(c, f"t_{c.lower()}", col) for c, col in joins]
    object_alias = "t_cells" if "Cells" in [c for c, _, _ in aliases] else f"t_{base.lower()}"
    return base, aliases, object_alias


def join_frames(
    frames: Mapping[str, pl.DataFrame],
    columns: Mapping[str, Sequence[str]],
    image: pl.DataFrame,
    base: str,
    joins: Sequence[tuple[str, str, str]],
) -> pl.DataFrame:
    """Join in-memory compartment frames and image metadata into single-cell rows.

    Inner joins, as pycytominer and CytoTable: base objects without a partner
    in a joined compartment (or without an image row) are left out. The
    result holds the image columns, ``Metadata_ObjectNumber`` (the Cells
    object where Cells are joined) and the features of Cells, Cytoplasm and
    Nuclei, in that order.
    """
    keys = [TABLE_KEY, IMAGE_KEY]
    out = frames[base]
    cells_link = next((link for comp, _, link in joins if comp == "Cells"), None)
    object_number = pl.col(cells_link) if cells_link else pl.col(OBJECT_KEY)
    out = out.with_columns(object_number.cast(pl.Int64).alias(OBJECT_NUMBER))
    for comp, _, link in joins:
        other = frames[comp].rename({OBJECT_KEY: link}).with_columns(pl.col(link).cast(pl.Int64))
        out = out.with_columns(pl.col(link).cast(pl.Int64)).join(
            other, on=[*keys, link], how="inner", maintain_order="left"
        )
    out = image.join(out, on=keys, how="inner", maintain_order="right")
    parts = [c for c in image.columns if c not in keys] + [OBJECT_NUMBER]
    joined = {base, *(c for c, _, _ in joins)}
    for comp in COMPARTMENTS:
        if comp in joined:
            parts += [c for c in columns[comp] if c not in INTERNAL and c not in parts]
    return out.select(parts)


class SortedMerge:
    """Merge-join compartment streams whose rows come ordered by image.

    Each stream yields canonical batches (see :func:`canonical_compartment`)
    carrying an integer sort key column ``key`` that never decreases within
    the stream (the image number, or the image's table rank and number).
    Rows of images that every stream has moved past are complete, so they
    are joined and yielded; the rest wait for the next batch. At most about
    one batch per compartment (plus the rows of one image) is held.

    Parameters
    ----------
    streams : mapping
        One iterator of batches per compartment present.
    image : polars.DataFrame
        Image metadata (``_cf_table``, ``_cf_image`` and the columns to attach).
    where : mapping
        File and table of each compartment, for messages.
    image_where : str
        File and table of the image metadata, for messages.
    key : str
        Name of the sort key column in every batch.
    batch_rows : int, optional
        Most rows per yielded batch.

    Attributes
    ----------
    rows : dict
        Objects read per compartment.
    joined : int
        Single-cell rows yielded.
    base : str
        The compartment every row starts from (after the first batch).
    """

    def __init__(
        self,
        streams: Mapping[str, Iterator[pl.DataFrame]],
        image: pl.DataFrame,
        *,
        where: Mapping[str, str],
        image_where: str,
        key: str,
        batch_rows: int | None = None,
    ) -> None:
        self.streams = dict(streams)
        self.batch_rows = batch_rows
        self.image = image
        self.where = dict(where)
        self.image_where = image_where
        self.key = key
        self.rows: dict[str, int] = dict.fromkeys(self.streams, 0)
        self.joined = 0
        self.base = ""
        self.unreferenced: dict[str, int] = {}
        self._seen: list[pl.DataFrame] = []
        self._image_keys = image.select(TABLE_KEY, IMAGE_KEY)

    def __iter__(self) -> Iterator[pl.DataFrame]:
        buffers: dict[str, list[pl.DataFrame]] = {c: [] for c in self.streams}
        last: dict[str, int | None] = dict.fromkeys(self.streams)
        done: dict[str, bool] = dict.fromkeys(self.streams, False)
        columns: dict[str, list[str]] = {}

        def pull(comp: str) -> None:
            for frame in self.streams[comp]:
                columns.setdefault(comp, [c for c in frame.columns if c != self.key])
                self.rows[comp] += frame.height
                if frame.height:
                    buffers[comp].append(frame)
                    last[comp] = int(frame[self.key][-1])
                    return
            done[comp] = True

        for comp in self.streams:
            pull(comp)
        self.base, joins, _ = join_plan(columns, self.where)
        while True:
            active = [c for c in self.streams if not done[c]]
            # Rows before the smallest last key of the unfinished streams are
            # complete everywhere (all rows, once every stream is finished).
            bounds = [last[c] for c in active if last[c] is not None]
            limit = min(bounds) if bounds else None
            parts: dict[str, pl.DataFrame] = {}
            for comp, frames in buffers.items():
                if not frames:
                    parts[comp] = pl.DataFrame(schema=dict.fromkeys(columns[comp], pl.Int64))
                    continue
                held = frames[0] if len(frames) == 1 else pl.concat(frames, how="vertical_relaxed")
                if limit is None:
                    ready, rest = held, None
                else:
                    n = int(held[self.key].search_sorted(limit, side="left"))
                    ready, rest = held.slice(0, n), held.slice(n)
                buffers[comp] = [rest] if rest is not None and rest.height else []
                parts[comp] = ready.drop(self.key)
            if parts[self.base].height:
                pieces = self._join(parts, columns, joins)
            else:
                pieces = []
                for comp, part in parts.items():
                    if part.height:
                        self._seen.append(part.select(TABLE_KEY, IMAGE_KEY).unique())
                        self.unreferenced[comp] = self.unreferenced.get(comp, 0) + part.height
            # Release this range's inputs before the consumer writes its rows.
            parts.clear()
            held = ready = rest = None
            yield from pieces
            pieces = []
            if not active:
                return
            for comp in active:
                if last[comp] is None or last[comp] == limit:
                    pull(comp)

    def image_keys(self) -> pl.DataFrame:
        """The distinct (``_cf_table``, ``_cf_image``) of every object read, any compartment."""
        if not self._seen:
            return pl.DataFrame(schema={TABLE_KEY: pl.String, IMAGE_KEY: pl.Int64})
        return pl.concat(
            [p.cast({TABLE_KEY: pl.String, IMAGE_KEY: pl.Int64}) for p in self._seen]
        ).unique()

    def _join(
        self,
        parts: dict[str, pl.DataFrame],
        columns: dict[str, list[str]],
        joins: list[tuple[str, str, str]],
    ) -> list[pl.DataFrame]:
        for comp, part in parts.items():
            if part.height:
                keys = part.select(INTERNAL)
                dupes = keys.filter(keys.is_duplicated())
                if dupes.height:
                    raise duplicate_keys_error(self.where[comp], comp, dupes.row(0), dupes.height)
                self._seen.append(part.select(TABLE_KEY, IMAGE_KEY).unique())
        counts = check_references(parts, self.base, joins, lambda c, _t: self.where[c])
        for comp, n in counts.items():
            self.unreferenced[comp] = self.unreferenced.get(comp, 0) + n
        base = parts[self.base]
        orphans = base.select(TABLE_KEY, IMAGE_KEY).join(
            self._image_keys, on=[TABLE_KEY, IMAGE_KEY], how="anti"
        )
        if orphans.height:
            first = int(orphans[IMAGE_KEY].min())  # type: ignore[arg-type]
            raise _orphans_error(
                orphans.height, self.base, self.where[self.base], self.image_where, first
            )
        out = join_frames(parts, columns, self.image, self.base, joins)
        self.joined += out.height
        out = order_columns(out)
        if not self.batch_rows or out.height <= self.batch_rows:
            return [out] if out.height else []
        # Split between images (each image's cells stay in one batch).
        ids = [c for c in (f"{METADATA_PREFIX}TableNumber", IMAGE_NUMBER) if c in out.columns]
        starts = (
            out.select(pl.any_horizontal([pl.col(c).ne_missing(pl.col(c).shift(1)) for c in ids]))
            .to_series()
            .arg_true()
            .to_list()
        )
        sizes = [b - a for a, b in zip(starts, [*starts[1:], out.height], strict=True)]
        pieces, lo = [], 0
        for _first, last in _ranges(list(enumerate(sizes)), self.batch_rows):
            hi = starts[last] + sizes[last]
            pieces.append(out.slice(lo, hi - lo))
            lo = hi
        return pieces


def duplicate_keys_error(
    where: str, compartment: str, key: tuple, n: int, lines: Sequence[int] = ()
) -> DuplicateKeysError:
    """The error for objects of one compartment sharing (ImageNumber, ObjectNumber)."""
    at = f" (lines {', '.join(f'{x:,}' for x in lines)})" if lines else ""
    return DuplicateKeysError(
        f"{where}: ImageNumber {int(key[1]) & 0xFFFFFFFF}, ObjectNumber {key[2]} names "
        f"{n if n > 1 else 'more than one'} {compartment} objects{at}; each object of an image "
        "must have its own number, so the file holds rows twice (appended or concatenated "
        "exports): remove the repeated rows, or re-export that image"
    )


def dangling_error(
    n: int,
    base: str,
    comp: str,
    link: str,
    row: tuple,
    where_of: Callable[[str, str], str],
    table_key: str,
) -> DanglingReferenceError:
    """The error for a ``Parent_*`` link to an object its image does not hold."""
    _, image, obj, ref = row
    column = link.removeprefix(f"{METADATA_PREFIX}{base}_")
    return DanglingReferenceError(
        f"{where_of(base, table_key)}: column {column!r} of the {base} object with ImageNumber "
        f"{int(image) & 0xFFFFFFFF}, ObjectNumber {obj} names {comp} object {ref}, which "
        f"{where_of(comp, table_key)} does not hold for that image ({n} such reference(s) in "
        "all); the compartment tables come from different runs, or one was cut short: export "
        "the object tables of that image together again"
    )


def check_references(
    frames: Mapping[str, pl.DataFrame],
    base: str,
    joins: Sequence[tuple[str, str, str]],
    where_of: Callable[[str, str], str],
) -> dict[str, int]:
    """In-memory form of :meth:`Staging.check_references` (``frames`` by compartment)."""
    keys = [TABLE_KEY, IMAGE_KEY]
    typed = [pl.col(TABLE_KEY).cast(pl.String), pl.col(IMAGE_KEY).cast(pl.Int64)]
    unreferenced: dict[str, int] = {}
    refs_all = frames[base]
    for comp, _, link in joins:
        other = frames[comp].select(*typed, pl.col(OBJECT_KEY).cast(pl.Int64).alias(link))
        refs = refs_all.select(*typed, OBJECT_KEY, pl.col(link).cast(pl.Int64))
        dangling = refs.filter(pl.col(link) > 0).join(other, on=[*keys, link], how="anti")
        if dangling.height:
            row = dangling.row(0)
            raise dangling_error(dangling.height, base, comp, link, row, where_of, str(row[0]))
        unreferenced[comp] = other.join(
            refs.select(*keys, link), on=[*keys, link], how="anti"
        ).height
    return unreferenced


def _orphans_error(
    n: int, base: str, where: str, image_where: str, first: int
) -> InvalidInputError:
    """The error for ``n`` objects whose image is missing from the image table."""
    return InvalidInputError(
        f"{n} {base} object(s) in {where} have no row in the image table {image_where} "
        f"(first ImageNumber without one: {first & 0xFFFFFFFF}); the image table gives each "
        "cell its plate, well and site: export it together with the object tables"
    )


def _ranges(counts: Sequence[tuple[int, int]], batch_rows: int) -> Iterator[tuple[int, int]]:
    """Group consecutive images into ranges holding about ``batch_rows`` objects."""
    lo = None
    total = 0
    prev = None
    for image, n in counts:
        if lo is None:
            lo = image
        elif total + n > batch_rows and total:
            yield lo, prev  # type: ignore[misc]
            lo, total = image, 0
        total += n
        prev = image
    if lo is not None:
        yield lo, prev  # type: ignore[misc]


def image_metadata(
    df: pl.DataFrame,
    *,
    table_key: str | None = None,
    image_offset: int = 0,
    where: str,
) -> pl.DataFrame:
    """The columns of an image table that are attached to every cell of the image.

    Keeps ``TableNumber``, ``ImageNumber``, every ``Metadata_*`` column and the
    image file names and folders (``FileName_*``, ``PathName_*`` as
    ``Metadata_FileName_*``, ``Metadata_PathName_*``), with an ``Image_``
    prefix removed. Image measurements are not attached to single cells.
    """
    renamed = {c: _image_name(c) for c in df.columns}
    keep = {c: n for c, n in renamed.items() if n is not None}
    if "ImageNumber" not in keep.values():
        raise MissingColumnsError(
            where, ["ImageNumber"], "the image table links cells to their image by ImageNumber"
        )
    out = df.select([pl.col(c).alias(n) for c, n in keep.items() if n not in ("TableNumber",)])
    tables = (
        df[next(c for c, n in keep.items() if n == "TableNumber")].cast(pl.String)
        if "TableNumber" in keep.values()
        else pl.Series(TABLE_KEY, [table_key or ""] * df.height, pl.String)
    )
    try:
        image_number = out["ImageNumber"].cast(pl.Int64, strict=True)
    except pl.exceptions.PolarsError as exc:
        raise InvalidInputError(f"{where}: ImageNumber must be whole numbers ({exc})") from exc
    out = out.drop("ImageNumber").with_columns(
        tables.alias(TABLE_KEY),
        (image_number + image_offset).alias(IMAGE_KEY),
        image_number.alias(IMAGE_NUMBER),
    )
    if "TableNumber" in keep.values():
        out = out.with_columns(tables.alias(f"{METADATA_PREFIX}TableNumber"))
    return out


def _image_name(column: str) -> str | None:
    name = column[len("Image_") :] if column.startswith("Image_") else column
    if name in ("ImageNumber", "TableNumber"):
        return name
    if name.startswith(METADATA_PREFIX):
        return name
    for part in ("FileName_", "PathName_"):
        if name.startswith(part):
            return METADATA_PREFIX + name
    return None


def check_unique_images(image: pl.DataFrame, where_of: Callable[[str], str]) -> None:
    """Raise :class:`DuplicateKeysError` when an image table holds one image twice.

    Each cell would be joined to both rows: the single cells would be doubled.
    ``where_of(table_key)`` names the file (and table) of an image.
    """
    keys = image.select(TABLE_KEY, IMAGE_KEY)
    dup = keys.is_duplicated()
    if not dup.any():
        return
    rows = keys.with_row_index("_row").filter(dup)
    table, number = rows.row(0)[1:]
    n = rows.filter((pl.col(TABLE_KEY) == table) & (pl.col(IMAGE_KEY) == number)).height
    raise DuplicateKeysError(
        f"{where_of(str(table))}: ImageNumber {int(number) & 0xFFFFFFFF} names {n} image rows; "
        "each cell would be joined to every one of them and counted twice: the image table "
        "holds rows twice (appended or concatenated exports): remove the repeated rows, or "
        "re-export it"
    )


def image_counts(df: pl.DataFrame, *, table_key: str, image_offset: int) -> pl.DataFrame | None:
    """The ``Count_<Compartment>`` columns of an image table, keyed like the staged objects.

    None when the table has no such column (cytominer-database's test sets).
    """
    names = {}
    for comp in COMPARTMENTS:
        for c in (f"Count_{comp}", f"Image_Count_{comp}"):
            if c in df.columns:
                names[comp] = c
                break
    image = next((c for c in ("ImageNumber", "Image_ImageNumber") if c in df.columns), None)
    if not names or image is None:
        return None
    return df.select(
        pl.lit(table_key, pl.String).alias(TABLE_KEY),
        (pl.col(image).cast(pl.Int64, strict=False) + image_offset).alias(IMAGE_KEY),
        *[
            pl.col(c).cast(pl.Int64, strict=False).alias(f"Count_{comp}")
            for comp, c in names.items()
        ],
    )


def check_counts(
    expected: pl.DataFrame,
    counts: Mapping[str, pl.DataFrame],
    where_of: Callable[[str, str], str],
    image_where_of: Callable[[str], str],
    issues: Issues,
) -> None:
    """Warn (with counts) where a compartment holds another number of objects than counted.

    CellProfiler's image table counts each image's objects (``Count_Cells``,
    ...); an object table cut between two rows by an interrupted copy, or
    taken from another run, holds another number. So does a table
    subsampled on purpose (cytominer-database's test sets), which is why this
    is a warning and not an error.

    Parameters
    ----------
    expected : polars.DataFrame
        ``_cf_table``, ``_cf_image`` and ``Count_<Compartment>`` columns (see
        :func:`image_counts`).
    counts : mapping
        Per compartment, its objects per image (``_cf_table``, ``_cf_image``, ``n``).
    where_of, image_where_of : callable
        The file of a compartment's (or the image table's) rows of a table key.
    issues : Issues
        Receives one message per compartment that disagrees.
    """
    keys = [TABLE_KEY, IMAGE_KEY]
    for comp, got in counts.items():
        column = f"Count_{comp}"
        if column not in expected.columns:
            continue
        rows = (
            expected.select(*keys, column)
            .drop_nulls(column)
            .join(got, on=keys, how="left")
            .with_columns(pl.col("n").fill_null(0))
            .filter(pl.col("n") != pl.col(column))
        )
        if rows.height:
            table, image, n_expected, n = rows.row(0)
            issues.add(
                f"{rows.height} image(s) hold another number of {comp} objects than the image "
                f"table counts ({column}); e.g. {where_of(comp, str(table))} holds {n} of "
                f"ImageNumber {int(image) & 0xFFFFFFFF}, {image_where_of(str(table))} counts "
                f"{n_expected}: an object table cut between two rows (an interrupted copy) or "
                "from another run looks like this; check those files (their rows were read as "
                "they are)"
            )


def report_unreferenced(
    issues: Issues, unreferenced: Mapping[str, int], rows: Mapping[str, int], base: str, where: str
) -> None:
    """Warn (with counts) about objects that no base object names as its parent."""
    for comp, n in unreferenced.items():
        if n:
            issues.add(
                f"{n} of {rows.get(comp, n)} {comp} objects in {where} are named by no {base} "
                f"object (Parent_{comp}) and were left out of the single cells (pycytominer and "
                "CytoTable join compartments the same way)"
            )


#: Columns of the store's ``images`` table (sql/schema.sql), in order.
IMAGES_COLUMNS = {
    "Metadata_Plate": pl.String,
    "Metadata_Well": pl.String,
    "Metadata_Site": pl.Int32,
    "Channel": pl.String,
    "Path": pl.String,
    "Frame": pl.Int32,
    "Height": pl.Int32,
    "Width": pl.Int32,
}


def images_table_rows(image: pl.DataFrame) -> pl.DataFrame:
    """One row per image and channel for the store's ``images`` table.

    ``image`` holds the image table's keys (``Metadata_Plate``, ``Metadata_Well``,
    ``Metadata_Site``) and its ``Metadata_FileName_<Channel>`` and
    ``Metadata_PathName_<Channel>`` columns. Images without a plate, well, site
    or file name give no row.
    """
    from cellframe.columns import PLATE, SITE, WELL

    prefix = f"{METADATA_PREFIX}FileName_"
    parts = []
    for column in image.columns:
        if not column.startswith(prefix):
            continue
        channel = column[len(prefix) :]
        folder = f"{METADATA_PREFIX}PathName_{channel}"
        name = pl.col(column).cast(pl.String)
        path = (
            pl.when(pl.col(folder).is_null() | (pl.col(folder).cast(pl.String) == ""))
            .then(name)
            .otherwise(pl.col(folder).cast(pl.String).str.strip_chars_end("/\\") + "/" + name)
            if folder in image.columns
            else name
        )
        parts.append(
            image.select(
                pl.col(PLATE).cast(pl.String),
                pl.col(WELL).cast(pl.String),
                pl.col(SITE).cast(pl.Int32),
                pl.lit(channel, pl.String).alias("Channel"),
                path.alias("Path"),
                pl.lit(None, pl.Int32).alias("Frame"),
                pl.lit(None, pl.Int32).alias("Height"),
                pl.lit(None, pl.Int32).alias("Width"),
            )
        )
    if not parts:
        return pl.DataFrame(schema=IMAGES_COLUMNS)
    return pl.concat(parts).drop_nulls(["Metadata_Plate", "Metadata_Well", "Metadata_Site", "Path"])
