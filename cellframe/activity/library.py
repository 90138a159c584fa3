"""A compound library (CSV, TSV, Parquet or .smi) predicted by a saved activity model, in chunks.

``cellframe activity-predict MODEL LIBRARY`` (issue #19): the library is read
:data:`CHUNK_SIZE` compounds at a time (so a file of millions of compounds
takes bounded memory), each chunk predicted by an
:class:`~cellframe.activity.saved.ActivityModel` and streamed into one store
table, one row per compound and assay, in one transaction (an error anywhere
leaves the store as it was). A compound whose SMILES RDKit cannot parse keeps
its rows, with null predictions, and is counted in one
:class:`~cellframe.activity.saved.UnparsedLibraryWarning`.
"""

from __future__ import annotations

import csv
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from cellframe.errors import InputNotFoundError, InvalidInputError, MissingColumnsError

__all__ = [
    "CHUNK_SIZE",
    "Library",
    "LibraryChunk",
    "LibraryReport",
    "open_library",
    "predict_library",
]

#: Compounds read and predicted at a time: a multiple of the networks' batch
#: of 500, so a chunked prediction equals one of the whole library bit for bit.
CHUNK_SIZE = 10_000
#: SMILES column names tried, in order, when none is named (case-insensitive).
SMILES_NAMES = ("smiles", "canonical_smiles", "isomeric_smiles", "metadata_smiles", "smi")
#: Identifier column names tried when none is named (case-insensitive).
ID_NAMES = ("compound", "compound_id", "metadata_compound", "id", "name", "mol_id")
#: Suffixes by format.
FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet",
           ".smi": "smi", ".smiles": "smi"}  # fmt: skip


@dataclass
class LibraryChunk:
    """Compounds of one chunk: ids, SMILES and where each is in the file (``line 7``, ``row 3``)."""

    compounds: list[str]
    smiles: list[str | None]
    labels: list[str]


@dataclass
class Library:
    """An opened library: its format and columns, checked; :meth:`chunks` reads it."""

    path: Path
    format: str
    smiles_column: str | None
    id_column: str | None
    n_rows: int | None

    def chunks(self, size: int = CHUNK_SIZE) -> Iterator[LibraryChunk]:
        """The compounds, ``size`` at a time, in file order.

        Raises
        ------
        InvalidInputError
            When the file cannot be parsed (the message names it and the reason).
        """
        if self.format == "smi":
            yield from self._smi_chunks(size)
            return
        try:
            yield from self._table_chunks(size)
        except InvalidInputError:
            raise
        except Exception as err:  # pyarrow's parse errors: named, one line
            raise InvalidInputError(
                f"{self.path}: cannot be read as {self.format} ({type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''}); fix the file or give it "
                "the right suffix (.csv, .tsv, .parquet, .smi)"
            ) from err

    def _table_chunks(self, size: int) -> Iterator[LibraryChunk]:
        import pyarrow as pa

        cols = [c for c in (self.id_column, self.smiles_column) if c is not None]
        if self.format == "parquet":
            import pyarrow.parquet as pq

            batches: Any = pq.ParquetFile(self.path).iter_batches(batch_size=size, columns=cols)
            first_line, unit = 1, "row"
        else:
            from pyarrow import csv as pacsv

            batches = pacsv.open_csv(
                self.path,
                read_options=pacsv.ReadOptions(block_size=1 << 22),
                parse_options=pacsv.ParseOptions(delimiter="\t" if self.format == "tsv" else ","),
                convert_options=pacsv.ConvertOptions(
                    include_columns=cols, column_types={c: pa.string() for c in cols}
                ),
            )
            first_line, unit = 2, "line"
        done = 0
        pending: list[Any] = []
        n_pending = 0

        def emit(table: Any) -> LibraryChunk:
            nonlocal done
            smiles = table.column(self.smiles_column).cast(pa.string()).to_pylist()
            if self.id_column is None:
                ids = [s if s is not None else "" for s in smiles]
            else:
                ids = table.column(self.id_column).cast(pa.string()).to_pylist()
            labels = [f"{unit} {first_line + done + i}" for i in range(len(smiles))]
            ids = [lab if c is None else c for c, lab in zip(ids, labels, strict=True)]
            done += len(smiles)
            return LibraryChunk(ids, smiles, labels)

        for batch in batches:
            pending.append(batch)
            n_pending += batch.num_rows
            while n_pending >= size:
                table = pa.Table.from_batches(pending)
                yield emit(table.slice(0, size))
                rest = table.slice(size)
                pending, n_pending = rest.to_batches(), rest.num_rows
        if n_pending:
            yield emit(pa.Table.from_batches(pending))

    def _smi_chunks(self, size: int) -> Iterator[LibraryChunk]:
        ids: list[str] = []
        smiles: list[str | None] = []
        labels: list[str] = []
        try:
            with open(self.path, encoding="utf-8") as f:
                for number, line in enumerate(f, start=1):
                    text = line.strip()
                    if not text or text.startswith("#"):
                        continue
                    parts = text.split(maxsplit=1)
                    if number == 1 and parts[0].lower() in SMILES_NAMES:
                        continue  # a header line
                    label = f"line {number}"
                    smiles.append(parts[0])
                    ids.append(parts[1] if len(parts) > 1 else label)
                    labels.append(label)
                    if len(smiles) == size:
                        yield LibraryChunk(ids, smiles, labels)
                        ids, smiles, labels = [], [], []
        except UnicodeDecodeError as err:
            raise InvalidInputError(
                f"{self.path}: not UTF-8 text ({err}); save the .smi file as UTF-8"
            ) from err
        if smiles:
            yield LibraryChunk(ids, smiles, labels)


def _pick(names: Sequence[str], wanted: str | None, candidates: Sequence[str]) -> str | None:
    if wanted is not None:
        return wanted if wanted in names else None
    lowered = {n.lower(): n for n in reversed(names)}
    for c in candidates:
        if c in lowered:
            return lowered[c]
    smiles_like = [n for n in names if "smiles" in n.lower()] if candidates is SMILES_NAMES else []
    return smiles_like[0] if len(smiles_like) == 1 else None


def open_library(
    path: str | Path, *, smiles_column: str | None = None, id_column: str | None = None
) -> Library:
    """Check a library file and find its SMILES and identifier columns (nothing is read yet).

    Parameters
    ----------
    path : str or Path
        ``.csv``, ``.tsv`` (``.tab``), ``.parquet`` (``.pq``) with a header, or
        ``.smi`` (``SMILES [name]`` per line, no header needed, ``#`` comments).
    smiles_column : str, optional
        Default: the first of :data:`SMILES_NAMES` present (any case), or the one
        column whose name contains ``smiles``.
    id_column : str, optional
        The compound identifier kept in the output. Default: the first of
        :data:`ID_NAMES` present (any case); without one the SMILES is the id.

    Returns
    -------
    Library

    Raises
    ------
    InputNotFoundError
        If the file does not exist.
    UnknownFormatError
        For another suffix.
    MissingColumnsError
        If a named column is absent, or no SMILES column is found (the message
        lists the columns and the option to name it).

    Examples
    --------
    >>> from pathlib import Path
    >>> _ = Path("lib.csv").write_text("ID,SMILES,vendor\\nA1,CCO,x\\nA2,c1ccccc1O,y\\n")
    >>> lib = open_library("lib.csv")
    >>> lib.smiles_column, lib.id_column, lib.n_rows
    ('SMILES', 'ID', 2)
    >>> [(c.compounds, c.smiles, c.labels) for c in lib.chunks()]
    [(['A1', 'A2'], ['CCO', 'c1ccccc1O'], ['line 2', 'line 3'])]
    """
    from cellframe.errors import UnknownFormatError

    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(
            f"no compound library at {path}: give a CSV, TSV, Parquet or .smi file of SMILES"
        )
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UnknownFormatError(
            f"{path}: unknown library format {path.suffix!r}; use .csv, .tsv, .parquet or .smi "
            "(SMILES and an optional name per line)"
        )
    if fmt == "smi":
        if smiles_column is not None or id_column is not None:
            raise InvalidInputError(
                f"{path}: a .smi file has no named columns (SMILES, then a name, per line); "
                "leave out --smiles-column / --id-column, or give a CSV"
            )
        with open(path, "rb") as f:
            n_rows = sum(1 for line in f if line.strip() and not line.startswith(b"#"))
        return Library(path, fmt, None, None, n_rows)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            meta = pq.ParquetFile(path)
        except Exception as err:
            raise InvalidInputError(
                f"{path}: not a readable Parquet file ({type(err).__name__}: {err})"
            ) from err
        names, n_rows = list(meta.schema_arrow.names), meta.metadata.num_rows
    else:
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            names = next(csv.reader(f, delimiter="\t" if fmt == "tsv" else ","), [])
        with open(path, "rb") as f:
            n_rows = max(
                0, sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b"")) - 1
            )
    smiles = _pick(names, smiles_column, SMILES_NAMES)
    if smiles is None:
        wanted = [smiles_column] if smiles_column else ["smiles"]
        raise MissingColumnsError(
            str(path), wanted,
            f"no SMILES column among {names[:20]}{' ...' if len(names) > 20 else ''}; name it "
            "with --smiles-column (smiles_column=)",
        )  # fmt: skip
    ident = _pick(names, id_column, ID_NAMES)
    if id_column is not None and ident is None:
        raise MissingColumnsError(
            str(path), [id_column], f"the identifier column is not among {names[:20]}"
        )
    if ident == smiles:
        ident = None
    return Library(path, fmt, smiles, ident, n_rows)


@dataclass
class LibraryReport:
    """What :func:`predict_library` did.

    Attributes
    ----------
    table : str
    n_compounds, n_unparsed, n_rows : int
        Compounds read, of which RDKit could not parse, and rows written.
    seconds : float
        Wall time of the whole call.
    timings : dict of str to (float, float)
        Wall and CPU seconds per stage (reading, the model's stages, the table,
        writing to the store).
    """

    table: str
    n_compounds: int
    n_unparsed: int
    n_rows: int
    seconds: float
    timings: dict[str, tuple[float, float]] = field(default_factory=dict)


def predict_library(
    model: Any,
    library: str | Path | Library,
    store: Any,
    *,
    table: str = "activity_library_predictions",
    chunk_size: int = CHUNK_SIZE,
    progress: bool = True,
    parameters: dict[str, Any] | None = None,
) -> LibraryReport:
    """Predict every compound of a library file and write the long table to ``store``.

    Parameters
    ----------
    model : ActivityModel
        From :func:`~cellframe.activity.saved.load_activity_model`.
    library : str, Path or Library
        A file (its SMILES and id columns detected) or :func:`open_library`'s result.
    store : cellframe.store.Store
    table : str, default "activity_library_predictions"
        Replaced in one transaction; an error leaves the store unchanged.
    chunk_size : int, default :data:`CHUNK_SIZE`
        Compounds per chunk (memory grows with it, not with the library).
    progress : bool, default True
        A progress bar over compounds.
    parameters : dict, optional
        More provenance of the written table.

    Returns
    -------
    LibraryReport

    Warns
    -----
    UnparsedLibraryWarning
        Once, with the count of SMILES RDKit cannot parse and the first few
        (their rows are written with null predictions).

    Examples
    --------
    >>> import warnings
    >>> from cellframe.activity import RandomForestBaseline, train_holdout
    >>> from cellframe.activity.matrix import read_assay_subset
    >>> from cellframe.activity.saved import ActivityModel
    >>> from cellframe.demo import demo_data_dir
    >>> from cellframe.store import Store
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     tox21 = read_assay_subset(demo_data_dir() / "moleculenet" / "tox21.csv.gz",
    ...                               300, ["SR-ARE"])
    ...     run = train_holdout(tox21, {"rf": RandomForestBaseline(n_estimators=10)})
    >>> model = ActivityModel.from_holdout(run)
    >>> _ = open("lib.smi", "w").write("CCO ethanol\\nC1CC broken\\nc1ccccc1O phenol\\n")
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     report = predict_library(model, "lib.smi", Store(), progress=False)
    >>> report.n_compounds, report.n_unparsed, report.n_rows
    (3, 1, 3)
    >>> str(caught[0].message)[:52]
    '1 of 3 compounds of lib.smi have a SMILES RDKit cann'
    """
    from cellframe.activity.saved import PREDICTION_SCHEMA, UnparsedLibraryWarning, _cpu_seconds

    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise InvalidInputError(f"chunk_size={chunk_size!r}: give a whole number of compounds >= 1")
    lib = library if isinstance(library, Library) else open_library(library)
    t_start, c_start = time.perf_counter(), _cpu_seconds()
    model.timings.clear()
    counts = {"compounds": 0, "rows": 0}
    bad: list[str] = []
    n_bad = 0
    stages: dict[str, list[float]] = {"read library": [0.0, 0.0], "prediction table": [0.0, 0.0]}

    def add(name: str, t0: float, c0: float) -> None:
        stages[name][0] += time.perf_counter() - t0
        stages[name][1] += _cpu_seconds() - c0

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=lib.n_rows, desc=f"predicting {lib.path.name}", unit="compound",
                   dynamic_ncols=True, leave=False)  # fmt: skip

    def frames() -> Iterator[pl.DataFrame]:
        nonlocal n_bad
        chunks = lib.chunks(chunk_size)
        while True:
            t0, c0 = time.perf_counter(), _cpu_seconds()
            chunk = next(chunks, None)
            add("read library", t0, c0)
            if chunk is None:
                break
            out = model.predict_arrays(chunk.smiles)
            t0, c0 = time.perf_counter(), _cpu_seconds()
            frame = model.table(chunk.compounds, chunk.smiles, out)
            add("prediction table", t0, c0)
            for i in np.flatnonzero(~out.parsed):
                n_bad += 1
                if len(bad) < 5:
                    bad.append(f"{chunk.labels[i]} {chunk.smiles[i]!r}")
            counts["compounds"] += len(chunk.smiles)
            counts["rows"] += frame.height
            if bar is not None:
                bar.update(len(chunk.smiles))
            yield frame
        if counts["compounds"] == 0:
            yield pl.DataFrame(schema=PREDICTION_SCHEMA)

    try:
        store.write(
            table, frames(), mode="replace", step="activity.predict_library",
            parameters={"library": str(lib.path), "smiles_column": lib.smiles_column,
                        "id_column": lib.id_column, "model": model.name,
                        **model.provenance_summary(), **(parameters or {})},
            source=str(lib.path),
        )  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
    wall, cpu = time.perf_counter() - t_start, _cpu_seconds() - c_start
    timings = {k: (v[0], v[1]) for k, v in stages.items()}
    timings.update({k: (v[0], v[1]) for k, v in model.timings.items()})
    done_wall = sum(v[0] for v in timings.values())
    done_cpu = sum(v[1] for v in timings.values())
    timings["write (DuckDB)"] = (max(0.0, wall - done_wall), max(0.0, cpu - done_cpu))
    if n_bad:
        warnings.warn(
            f"{n_bad} of {counts['compounds']} compounds of {lib.path} have a SMILES RDKit "
            f"cannot parse ({'; '.join(bad)}{'; ...' if n_bad > len(bad) else ''}); their rows "
            f"are written with a null probability",
            UnparsedLibraryWarning,
            stacklevel=2,
        )
    return LibraryReport(table, counts["compounds"], n_bad, counts["rows"], wall, timings)
