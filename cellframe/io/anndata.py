"""AnnData in and out: a profile frame as ``AnnData`` (``obs`` = metadata, ``X`` = features).

scanpy-based tools (and pycytominer users who hand profiles to them) work on
``AnnData``. :func:`to_anndata` puts a frame's feature columns into ``X``
(float32, one column per feature, ``var_names`` = feature names) and every
other column into ``obs``; :func:`from_anndata` turns it back into a Polars
frame. The round trip through an ``.h5ad`` file is exact: columns, order,
dtypes, nulls and NaNs come back as they were. What h5ad cannot hold itself
is recorded in ``uns["cellframe"]``:

* the frame's schema (an empty Arrow IPC frame, base64), so dtypes that h5ad
  writes differently (strings become categoricals, dates and times are written
  as ISO text) are cast back, and the original column order returns;
* where float columns hold nulls (h5ad has no nullable float: a null would come
  back as NaN), their positions.

A file cellframe wrote and another tool then subset (rows, variables) or
extended (new ``obs`` columns) keeps the recorded dtypes of the columns it
still has; new columns come after them as read. Reading a ``layer`` or an
``obsm`` embedding restores the ``obs`` columns only (the record describes ``X``).

An ``AnnData`` written by another tool has no such record: categorical
``obs`` columns become strings, nullable integers and booleans keep their
nulls, and ``obs_names`` that are not ``0 .. n-1`` become a column
(``Metadata_obs_name``). Content a wide frame cannot hold (``layers`` other
than the one read, ``obsm``, ``varm``, ``obsp``, ``varp``, ``var`` annotation
columns, ``raw``) is named in an :class:`AnnDataContentWarning`, never
dropped in silence; read a layer or an embedding (``obsm["X_pca"]``,
Harmony's output) as the features with ``layer=`` / ``obsm=``.
"""

from __future__ import annotations

import base64
import io
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from cellframe.columns import feature_columns
from cellframe.errors import (
    CorruptFileError,
    DuplicateColumnsError,
    EmptyInputError,
    InvalidInputError,
    MissingColumnsError,
    PrecisionLossWarning,
)

if TYPE_CHECKING:  # anndata is imported where it is used
    import anndata
    import pandas as pd

__all__ = [
    "OBS_NAME_COLUMN",
    "AnnDataContentWarning",
    "from_anndata",
    "read_h5ad",
    "to_anndata",
    "write_h5ad",
    "write_h5ad_batches",
]

#: Column that receives ``obs_names`` of an AnnData not written by cellframe.
OBS_NAME_COLUMN = "Metadata_obs_name"

_UNS_KEY = "cellframe"
#: Target bytes of one HDF5 chunk of ``X`` (whole rows; gzip works chunk by chunk).
_CHUNK_BYTES = 2**20
#: Rows of a frame per batch when :func:`write_h5ad` writes it (about 64 MB of float32).
_BATCH_BYTES = 2**26


class AnnDataContentWarning(UserWarning):
    """An AnnData holds content a profile frame cannot take (layers, obsm, ...): the message names it."""


def _as_frame(frame: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    if isinstance(frame, pl.LazyFrame):
        return frame.collect()
    if isinstance(frame, pl.DataFrame):
        return frame
    raise InvalidInputError(
        f"to_anndata: expected a Polars DataFrame or LazyFrame, got {type(frame).__name__}"
    )


def _schema_record(frame: pl.DataFrame) -> str:
    buf = io.BytesIO()
    frame.clear().write_ipc(buf)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _schema_from_record(record: str) -> pl.Schema:
    return pl.read_ipc(io.BytesIO(base64.b64decode(record))).schema


def _check_obs_dtype(name: str, dtype: pl.DataType) -> None:
    """Refuse a metadata type that ``obs`` cannot hold (before anything is written)."""
    if (
        dtype.is_integer()
        or dtype.is_float()
        or dtype in (pl.Boolean, pl.String, pl.Categorical, pl.Date, pl.Datetime, pl.Null)
        or dtype in (pl.Time, pl.Duration)
        or isinstance(dtype, pl.Enum)
    ):
        return
    raise InvalidInputError(
        f"column {name!r} has type {dtype}, which AnnData obs cannot hold; cast it to "
        "a string or number, or drop it, before writing AnnData"
    )


def _obs_column(s: pl.Series) -> pd.api.extensions.ExtensionArray | np.ndarray:
    """One metadata column as an array h5ad can write, nulls kept where it can hold them."""
    import pandas as pd

    dtype = s.dtype
    _check_obs_dtype(s.name, dtype)
    has_null = s.null_count() > 0
    if dtype.is_integer():
        values = s.fill_null(0).to_numpy()
        if not has_null:
            return values
        return pd.arrays.IntegerArray(values, s.is_null().to_numpy())
    if dtype == pl.Boolean:
        if not has_null:
            return s.to_numpy()
        return pd.arrays.BooleanArray(s.fill_null(False).to_numpy(), s.is_null().to_numpy())
    if dtype.is_float():
        return s.to_numpy()  # nulls become NaN here; their positions are recorded
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        text = s.cast(pl.String)
        if has_null:
            return pd.Categorical(text.to_list())
        return np.asarray(text.to_list(), dtype=object)
    if dtype in (pl.Date, pl.Datetime) or dtype == pl.Null:
        # h5ad cannot write dates: ISO text, parsed back from the schema record.
        return pd.Categorical(s.cast(pl.String).to_list())
    # Time, Duration: their text drops sub-second digits; the physical integer round-trips.
    return _obs_column(s.to_physical())


def to_anndata(
    frame: pl.DataFrame | pl.LazyFrame,
    *,
    features: Sequence[str] | None = None,
) -> anndata.AnnData:
    """A profile frame as ``AnnData``: ``X`` = float32 features, ``obs`` = every other column.

    Parameters
    ----------
    frame : polars.DataFrame or LazyFrame
        Profiles, one row each.
    features : sequence of str, optional
        Feature columns, in ``X`` order (default: every numeric non-``Metadata_``
        column, as everywhere in cellframe).

    Returns
    -------
    anndata.AnnData
        ``obs_names`` ``"0" .. "n-1"``, ``var_names`` the feature names, the
        schema record in ``uns["cellframe"]`` (see the module docstring).

    Raises
    ------
    EmptyInputError
        No feature column.
    MissingColumnsError
        A named feature is absent.
    InvalidInputError
        A feature is not numeric, or a metadata column has a type ``obs``
        cannot hold (lists, structs, binary).

    Warns
    -----
    PrecisionLossWarning
        With the count of feature values that float32 cannot hold exactly
        (float64 or large integer features); those values are rounded in ``X``.

    Examples
    --------
    >>> import polars as pl
    >>> df = pl.DataFrame({"Metadata_Well": ["A01", "A02"], "f1": [1.0, 2.0]},
    ...                   schema_overrides={"f1": pl.Float32})
    >>> adata = to_anndata(df)
    >>> adata.shape, list(adata.obs.columns), list(adata.var_names)
    ((2, 1), ['Metadata_Well'], ['f1'])
    """
    import anndata

    df = _as_frame(frame)
    feats, meta_cols = _plan(df.schema, features)
    x, changed = _x_block(df, feats)
    _warn_rounded(changed, df.height, feats, df.schema, stacklevel=3)
    nulls = {c: np.flatnonzero(df[c].is_null().to_numpy()) for c in _float_columns(df.schema)}
    obs, var, record = _obs_var_record(df.select(meta_cols), feats, df.clear(), nulls)
    return anndata.AnnData(X=x, obs=obs, var=var, uns={_UNS_KEY: record})


def _plan(schema: pl.Schema, features: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """Feature and metadata columns of a frame with this schema; refusals before any work."""
    feats = list(features) if features is not None else feature_columns(schema)
    missing = [c for c in feats if c not in schema]
    if missing:
        raise MissingColumnsError("the frame", missing, "pass features= that exist in it")
    if not feats:
        raise EmptyInputError(
            "the frame has no feature columns (numeric, not Metadata_*): AnnData's X would be empty"
        )
    not_numeric = [c for c in feats if not schema[c].is_numeric()]
    if not_numeric:
        raise InvalidInputError(
            f"feature column(s) {not_numeric[:5]} are not numeric ({schema[not_numeric[0]]}); "
            "AnnData's X holds numbers: leave them out of features="
        )
    meta_cols = [c for c in schema.names() if c not in set(feats)]
    for c in meta_cols:
        _check_obs_dtype(c, schema[c])
    return feats, meta_cols


def _float_columns(schema: pl.Schema) -> list[str]:
    return [c for c in schema.names() if schema[c].is_float()]


def _x_block(df: pl.DataFrame, feats: list[str]) -> tuple[np.ndarray, int]:
    """Rows of ``X`` (float32, C order) and how many values float32 rounded."""
    x_cols = df.select(feats)
    x = x_cols.select(pl.all().cast(pl.Float32)).to_numpy(order="c").astype(np.float32, copy=False)
    wide = [c for c in feats if df.schema[c] != pl.Float32]
    if not wide:
        return x, 0
    exact = x_cols.select(wide).select(pl.all().cast(pl.Float64)).to_numpy()
    back = x[:, [feats.index(c) for c in wide]].astype(np.float64)
    return x, int(np.count_nonzero((exact != back) & ~(np.isnan(exact) & np.isnan(back))))


def _warn_rounded(
    changed: int, n_rows: int, feats: list[str], schema: pl.Schema, stacklevel: int
) -> None:
    if changed:
        wide = [c for c in feats if schema[c] != pl.Float32]
        warnings.warn(
            f"{changed} of {n_rows * len(wide)} values of {len(wide)} feature column(s) "
            f"(e.g. {wide[0]!r}, {schema[wide[0]]}) cannot be held exactly in float32 "
            "and are rounded in X",
            PrecisionLossWarning,
            stacklevel=stacklevel,
        )


def _obs_var_record(
    meta: pl.DataFrame, feats: list[str], empty: pl.DataFrame, nulls: dict[str, np.ndarray]
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """``obs``, ``var`` and the ``uns`` record (``nulls``: float column -> null row positions)."""
    import pandas as pd

    obs = pd.DataFrame(
        {c: _obs_column(meta[c]) for c in meta.columns}, index=[str(i) for i in range(meta.height)]
    )
    null_cols = [c for c, pos in nulls.items() if len(pos)]
    null_pos = [np.asarray(nulls[c], dtype=np.int64) for c in null_cols]
    record = {
        "schema": _schema_record(empty),
        "features": np.asarray(feats, dtype=object),
        "null_columns": np.asarray(null_cols, dtype=object),
        "null_offsets": np.cumsum([0, *[len(p) for p in null_pos]]).astype(np.int64),
        "null_positions": np.concatenate(null_pos) if null_pos else np.zeros(0, np.int64),
    }
    var = pd.DataFrame(index=pd.Index(feats, dtype=object))
    return obs, var, record


def _pandas_column_to_polars(name: str, values: pd.Series) -> pl.Series:
    import pandas as pd

    if isinstance(values.dtype, pd.CategoricalDtype):
        cats = values.cat.categories
        if cats.dtype.kind in "iufb":
            return pl.Series(name, values.astype(cats.dtype if not values.isna().any() else object))
        return pl.Series(name, values.astype(object).where(values.notna(), None), dtype=pl.String)
    if values.dtype == object:
        return pl.Series(name, values.where(values.notna(), None).tolist(), dtype=pl.String)
    if isinstance(values.dtype, np.dtype):  # NaN stays NaN (pandas' conversion makes it null)
        return pl.Series(name, values.to_numpy())
    return pl.Series(name, pl.from_pandas(values))


def _unimported(adata: anndata.AnnData, *, layer: str | None, obsm: str | None) -> list[str]:
    parts = []
    for what, keys, used in (
        ("layers", list(adata.layers.keys()), layer),
        ("obsm", list(adata.obsm.keys()), obsm),
        ("varm", list(adata.varm.keys()), None),
        ("obsp", list(adata.obsp.keys()), None),
        ("varp", list(adata.varp.keys()), None),
        ("var columns", list(adata.var.columns), None),
    ):
        left = [k for k in keys if k != used]
        if left:
            parts.append(f"{what} {left[:5]}" + (f" (+{len(left) - 5})" if len(left) > 5 else ""))
    if adata.raw is not None:
        parts.append(f"raw ({adata.raw.shape[1]} variables)")
    return parts


def from_anndata(
    adata: anndata.AnnData,
    *,
    layer: str | None = None,
    obsm: str | None = None,
    source: str = "the AnnData",
) -> pl.DataFrame:
    """An ``AnnData`` as a Polars profile frame: ``obs`` columns, then one column per feature.

    Parameters
    ----------
    adata : anndata.AnnData
        In memory (or backed).
    layer : str, optional
        Read the features from ``adata.layers[layer]`` instead of ``X``.
    obsm : str, optional
        Read the features from ``adata.obsm[obsm]`` (an embedding such as
        ``"X_pca"`` or Harmony's ``"X_pca_harmony"``), named ``<obsm>_<i>``.
    source : str
        Name used in messages (the file).

    Returns
    -------
    polars.DataFrame
        Features as Float32 (``X`` as written by :func:`to_anndata`: the
        original columns, order, dtypes and nulls).

    Raises
    ------
    InvalidInputError
        ``X`` (or the layer / embedding) is not numeric or not 2-D, both
        ``layer`` and ``obsm`` are given, or a key is absent.
    DuplicateColumnsError
        ``obs`` names a column twice, a feature name repeats, or a feature has
        the name of an ``obs`` column.

    Warns
    -----
    AnnDataContentWarning
        Naming the content that is not imported (other layers, ``obsm``, ...).

    Examples
    --------
    >>> import polars as pl
    >>> df = pl.DataFrame({"Metadata_Well": ["A01", None], "f1": [1.0, None]},
    ...                   schema_overrides={"f1": pl.Float32})
    >>> from_anndata(to_anndata(df)).equals(df)
    True
    """
    import scipy.sparse as sp

    if layer is not None and obsm is not None:
        raise InvalidInputError("give layer= or obsm=, not both: one matrix becomes the features")
    obs = adata.obs
    dup = obs.columns[obs.columns.duplicated()].tolist()
    if dup:
        raise DuplicateColumnsError(
            f"{source}: obs names column(s) {dup[:5]} more than once; rename or drop the "
            "duplicates (adata.obs = adata.obs.loc[:, ~adata.obs.columns.duplicated()])"
        )
    if obsm is not None:
        if obsm not in adata.obsm:
            raise InvalidInputError(
                f"{source} has no obsm[{obsm!r}]; its obsm keys are {list(adata.obsm.keys())}"
            )
        matrix = adata.obsm[obsm]
        if hasattr(matrix, "to_numpy"):  # a DataFrame embedding
            matrix = matrix.to_numpy()
        names = [f"{obsm}_{i}" for i in range(np.shape(matrix)[1])] if np.ndim(matrix) == 2 else []
        what = f"obsm[{obsm!r}]"
    elif layer is not None:
        if layer not in adata.layers:
            raise InvalidInputError(
                f"{source} has no layer {layer!r}; its layers are {list(adata.layers.keys())}"
            )
        matrix, names, what = (
            adata.layers[layer],
            list(map(str, adata.var_names)),
            f"layer {layer!r}",
        )
    else:
        matrix, names, what = adata.X, list(map(str, adata.var_names)), "X"
    if matrix is None:
        raise InvalidInputError(f"{source} has no {what}: there are no features to read")
    if sp.issparse(matrix):
        matrix = matrix.toarray()
    matrix = np.asarray(matrix)
    if matrix.ndim != 2:
        raise InvalidInputError(f"{source}: {what} has {matrix.ndim} dimensions; expected 2")
    if not (np.issubdtype(matrix.dtype, np.number) or matrix.dtype == bool):
        raise InvalidInputError(
            f"{source}: {what} holds {matrix.dtype} values, not numbers; features must be "
            "numeric (convert them, or read a numeric layer= / obsm=)"
        )
    dup_names = (
        sorted({n for n in names if names.count(n) > 1}) if len(set(names)) < len(names) else []
    )
    if dup_names:
        raise DuplicateColumnsError(
            f"{source}: feature name(s) {dup_names[:5]} occur more than once in var_names; "
            "make them unique (adata.var_names_make_unique())"
        )
    clash = sorted(set(names) & set(map(str, obs.columns)))
    if clash:
        raise DuplicateColumnsError(
            f"{source}: feature name(s) {clash[:5]} are also obs columns; rename one of them"
        )
    left = _unimported(adata, layer=layer, obsm=obsm)
    if left:
        warnings.warn(
            f"{source}: not imported (a profile frame holds obs and one feature matrix): "
            + "; ".join(left),
            AnnDataContentWarning,
            stacklevel=2,
        )
    record = adata.uns.get(_UNS_KEY)
    columns = [_pandas_column_to_polars(str(c), obs[c]) for c in obs.columns]
    obs_names = list(map(str, obs.index))
    # cellframe writes obs_names "0" .. "n-1" (the rows' positions); a subset of
    # rows keeps them. Anything else (barcodes, well ids) is data: it becomes a column.
    try:
        positions = np.asarray([int(v) for v in obs_names], dtype=np.int64)
    except ValueError:
        positions = None
    if record is None and obs_names != [str(i) for i in range(adata.n_obs)]:
        positions = None
    if positions is None and adata.n_obs:
        if OBS_NAME_COLUMN in obs.columns or OBS_NAME_COLUMN in names:
            raise DuplicateColumnsError(
                f"{source}: obs_names would become column {OBS_NAME_COLUMN!r}, which exists"
            )
        columns.insert(0, pl.Series(OBS_NAME_COLUMN, obs_names, dtype=pl.String))
    x = pl.DataFrame(matrix.astype(np.float32, copy=False), schema=names, orient="row")
    if adata.n_obs == 0:
        x = pl.DataFrame(schema=dict.fromkeys(names, pl.Float32))
    df = pl.DataFrame(columns).hstack(x) if columns else x
    if record is not None:
        # The record describes X: a layer or an embedding only gets obs restored.
        scope = set(map(str, obs.columns)) if (layer or obsm) else set(df.columns)
        df = _restore(df, record, source, positions=positions, scope=scope)
    return df


def _restore(
    df: pl.DataFrame,
    record: dict,
    source: str,
    *,
    positions: np.ndarray | None,
    scope: set[str],
) -> pl.DataFrame:
    """Cast the recorded columns back to their dtypes and order; put recorded nulls back.

    Columns the record does not know (added later, or ``Metadata_obs_name``)
    stay as read, after the known ones; recorded columns that are gone (a
    subset of variables) are simply absent. ``positions`` are the rows'
    original positions (from ``obs_names``), so a subset of rows keeps its nulls.
    """
    try:
        schema = _schema_from_record(str(record["schema"]))
    except Exception as exc:  # a damaged record: say so rather than guess the dtypes
        raise CorruptFileError(
            f"{source}: uns['cellframe']['schema'] cannot be read ({type(exc).__name__}); "
            "delete uns['cellframe'] to read the AnnData as written by another tool"
        ) from None
    offsets = np.asarray(record.get("null_offsets", [0]), dtype=np.int64)
    null_positions = np.asarray(record.get("null_positions", []), dtype=np.int64)
    null_columns = [str(c) for c in np.asarray(record.get("null_columns", []), dtype=object)]
    unplaced = []
    nulls = {}
    for i, name in enumerate(null_columns):
        if name not in scope:
            continue
        if positions is None:
            unplaced.append(name)
            continue
        nulls[name] = np.isin(positions, null_positions[offsets[i] : offsets[i + 1]])
    if unplaced:
        warnings.warn(
            f"{source}: obs_names are not the row numbers cellframe wrote, so the nulls of "
            f"{len(unplaced)} float column(s) ({unplaced[:3]}) cannot be placed: they read as NaN",
            AnnDataContentWarning,
            stacklevel=3,
        )
    known = [c for c in schema.names() if c in scope]
    out = [df[c] for c in df.columns if c == OBS_NAME_COLUMN]
    for name in known:
        s, dtype = df[name], schema[name]
        if name in nulls:
            s = s.set(pl.Series(nulls[name]), None)
        if s.dtype == dtype:
            out.append(s)
            continue
        try:
            if dtype in (pl.Date, pl.Datetime) and s.dtype == pl.String:
                out.append(s.str.strptime(dtype))
            else:
                out.append(s.cast(dtype))
        except pl.exceptions.PolarsError as exc:
            raise CorruptFileError(
                f"{source}: column {name!r} no longer fits the {dtype} that uns['cellframe'] "
                f"records ({type(exc).__name__}); it was changed after cellframe wrote the "
                "file: delete uns['cellframe'] to read it as it is"
            ) from None
    out += [df[c] for c in df.columns if c not in set(known) and c != OBS_NAME_COLUMN]
    return pl.DataFrame(out)


def write_h5ad(
    frame: pl.DataFrame | pl.LazyFrame,
    path: str | Path,
    *,
    features: Sequence[str] | None = None,
) -> Path:
    """Write a profile frame to an ``.h5ad`` file (:func:`to_anndata`, gzip-compressed).

    ``X`` is written in blocks of rows (:func:`write_h5ad_batches`), so no
    float32 copy of the whole matrix is made. The file is written beside its
    destination and renamed into place, so a failed write leaves no partial file.

    Parameters
    ----------
    frame : polars.DataFrame or LazyFrame
        Profiles.
    path : str or Path
        Destination ``.h5ad``.
    features : sequence of str, optional
        As in :func:`to_anndata`.

    Returns
    -------
    Path
        The written file.

    Examples
    --------
    >>> import polars as pl
    >>> df = pl.DataFrame({"Metadata_Well": ["A01", "A02"], "f1": [1.0, 2.0]},
    ...                   schema_overrides={"f1": pl.Float32})
    >>> write_h5ad(df, "wells.h5ad").name
    'wells.h5ad'
    >>> read_h5ad("wells.h5ad").equals(df)
    True
    """
    df = _as_frame(frame)
    rows = max(1, _BATCH_BYTES // (4 * max(1, df.width)))
    slices = (df.slice(start, rows) for start in range(0, df.height, rows))
    return write_h5ad_batches(slices, path, schema=df.schema, features=features)


def write_h5ad_batches(
    batches: Iterable[pl.DataFrame],
    path: str | Path,
    *,
    schema: pl.Schema,
    features: Sequence[str] | None = None,
) -> Path:
    """Write profiles that arrive in blocks of rows to one ``.h5ad`` file, ``X`` block by block.

    The file equals :func:`write_h5ad`'s for the concatenated frame (read back,
    ``X``, ``obs``, ``var`` and ``uns`` are the same), but ``X`` is an HDF5
    dataset (float32, gzip, chunks of whole rows of about 1 MB) grown by each
    block, so memory holds one block of features at a time, plus the metadata
    columns of every row: ``obs`` is written at the end by anndata, which
    writes a data frame (its categoricals need every value) in one piece.

    Parameters
    ----------
    batches : iterable of polars.DataFrame
        The rows in order, each block with the columns of ``schema``
        (e.g. ``store.scan(table).collect_batches()``, or DuckDB record batches).
    path : str or Path
        Destination ``.h5ad``; written beside it and renamed into place, so
        a failed write leaves no partial file.
    schema : polars.Schema
        The frame's schema: the columns are checked against it before
        anything is read or written, and it is recorded when no row comes.
    features : sequence of str, optional
        As in :func:`to_anndata`.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    EmptyInputError, MissingColumnsError, InvalidInputError
        As :func:`to_anndata`, and for a block whose columns differ from ``schema``.

    Warns
    -----
    PrecisionLossWarning
        As :func:`to_anndata`, one warning counting the values of all blocks.

    Examples
    --------
    >>> import polars as pl
    >>> df = pl.DataFrame({"Metadata_Well": ["A01", "A02", "A03"], "f1": [1.0, 2.0, 3.0]},
    ...                   schema_overrides={"f1": pl.Float32})
    >>> blocks = [df.slice(0, 2), df.slice(2, 1)]
    >>> write_h5ad_batches(blocks, "blocks.h5ad", schema=df.schema).name
    'blocks.h5ad'
    >>> read_h5ad("blocks.h5ad").equals(df)
    True
    """
    import anndata
    import h5py

    feats, meta_cols = _plan(schema, features)
    floats = _float_columns(schema)
    dest = Path(path)
    tmp = dest.with_name(f".{dest.name}.partial")
    tmp_rest = dest.with_name(f".{dest.name}.obs.partial")
    chunk_rows = 1 << max(0, (_CHUNK_BYTES // (4 * len(feats))).bit_length() - 1)
    meta_parts: list[pl.DataFrame] = []
    nulls: dict[str, list[np.ndarray]] = {c: [] for c in floats}
    empty = pl.DataFrame(schema=schema)
    n = changed = 0
    try:
        # a cache of 16 chunks keeps a chunk that one block fills partly until the next
        with h5py.File(tmp, "w", rdcc_nbytes=16 * _CHUNK_BYTES) as f:
            x = f.create_dataset(
                "X",
                shape=(0, len(feats)),
                maxshape=(None, len(feats)),
                dtype=np.float32,
                chunks=(chunk_rows, len(feats)),
                compression="gzip",
            )
            x.attrs["encoding-type"], x.attrs["encoding-version"] = "array", "0.2.0"
            for block in _checked(batches, schema):
                if n == 0:
                    empty = block.clear()  # the dtypes as read (the record of write_h5ad)
                values, rounded = _x_block(block, feats)
                x.resize(n + block.height, axis=0)
                x[n : n + block.height] = values
                del values
                changed += rounded
                meta_parts.append(block.select(meta_cols))
                for c in floats:
                    pos = np.flatnonzero(block[c].is_null().to_numpy())
                    if len(pos):
                        nulls[c].append(pos + n)
                n += block.height
        _warn_rounded(changed, n, feats, schema, stacklevel=3)
        meta = pl.concat(meta_parts) if meta_parts else empty.select(meta_cols)
        del meta_parts
        null_pos = {c: np.concatenate(p) if p else np.zeros(0, np.int64) for c, p in nulls.items()}
        obs, var, record = _obs_var_record(meta, feats, empty, null_pos)
        del meta
        # obs, var, uns and the empty groups as anndata writes them, then moved beside X
        anndata.AnnData(obs=obs, var=var, uns={_UNS_KEY: record}).write_h5ad(
            tmp_rest, compression="gzip"
        )
        with h5py.File(tmp_rest, "r") as rest, h5py.File(tmp, "a") as f:
            for key in rest:
                if key != "X":
                    rest.copy(rest[key], f, name=key)
            f.attrs.update(rest.attrs)
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
        tmp_rest.unlink(missing_ok=True)
    return dest


def _checked(batches: Iterable[pl.DataFrame], schema: pl.Schema) -> Iterator[pl.DataFrame]:
    for i, block in enumerate(batches):
        if block.columns != schema.names():
            raise InvalidInputError(
                f"block {i} of the rows has columns {block.columns[:5]}... where the schema "
                f"names {schema.names()[:5]}...: every block must hold the frame's columns "
                "in order"
            )
        if block.height:
            yield block


def read_h5ad(
    path: str | Path, *, layer: str | None = None, obsm: str | None = None
) -> pl.DataFrame:
    """Read an ``.h5ad`` file as a profile frame (:func:`from_anndata`).

    Parameters
    ----------
    path : str or Path
        The ``.h5ad`` file.
    layer, obsm : str, optional
        As in :func:`from_anndata`.

    Returns
    -------
    polars.DataFrame

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    CorruptFileError
        The file is not a readable h5ad (not HDF5, truncated, or not AnnData).

    Examples
    --------
    >>> import polars as pl
    >>> _ = write_h5ad(pl.DataFrame({"Metadata_Well": ["A01", "A02"], "f1": [1.0, 2.0]}),
    ...                "wells.h5ad")
    >>> read_h5ad("wells.h5ad").rows()  # features come back as Float32
    [('A01', 1.0), ('A02', 2.0)]
    """
    import anndata

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such file: {p}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            adata = anndata.read_h5ad(p)
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise CorruptFileError(
            f"{p} is not a readable .h5ad file ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else 'no detail'}); check that it is "
            "an AnnData written with write_h5ad and was copied completely"
        ) from None
    return from_anndata(adata, layer=layer, obsm=obsm, source=str(p))
