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
from collections.abc import Sequence
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
]

#: Column that receives ``obs_names`` of an AnnData not written by cellframe.
OBS_NAME_COLUMN = "Metadata_obs_name"

_UNS_KEY = "cellframe"


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


def _obs_column(s: pl.Series) -> pd.api.extensions.ExtensionArray | np.ndarray:
    """One metadata column as an array h5ad can write, nulls kept where it can hold them."""
    import pandas as pd

    dtype = s.dtype
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
    if dtype in (pl.Time, pl.Duration):
        # Their text drops sub-second digits: the physical integer round-trips exactly.
        return _obs_column(s.to_physical())
    raise InvalidInputError(
        f"column {s.name!r} has type {dtype}, which AnnData obs cannot hold; cast it to "
        "a string or number, or drop it, before to_anndata"
    )


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
    import pandas as pd

    df = _as_frame(frame)
    feats = list(features) if features is not None else feature_columns(df)
    missing = [c for c in feats if c not in df.columns]
    if missing:
        raise MissingColumnsError("the frame", missing, "pass features= that exist in it")
    if not feats:
        raise EmptyInputError(
            "the frame has no feature columns (numeric, not Metadata_*): AnnData's X would be empty"
        )
    not_numeric = [c for c in feats if not df.schema[c].is_numeric()]
    if not_numeric:
        raise InvalidInputError(
            f"feature column(s) {not_numeric[:5]} are not numeric ({df.schema[not_numeric[0]]}); "
            "AnnData's X holds numbers: leave them out of features="
        )
    x_cols = df.select(feats)
    x = x_cols.select(pl.all().cast(pl.Float32)).to_numpy(order="c").astype(np.float32, copy=False)
    wide = [c for c in feats if df.schema[c] != pl.Float32]
    if wide:
        exact = x_cols.select(wide).select(pl.all().cast(pl.Float64)).to_numpy()
        back = x[:, [feats.index(c) for c in wide]].astype(np.float64)
        changed = int(np.count_nonzero((exact != back) & ~(np.isnan(exact) & np.isnan(back))))
        if changed:
            warnings.warn(
                f"{changed} of {exact.size} values of {len(wide)} feature column(s) "
                f"(e.g. {wide[0]!r}, {df.schema[wide[0]]}) cannot be held exactly in float32 "
                "and are rounded in X",
                PrecisionLossWarning,
                stacklevel=2,
            )
    meta_cols = [c for c in df.columns if c not in set(feats)]
    obs = pd.DataFrame(
        {c: _obs_column(df[c]) for c in meta_cols}, index=[str(i) for i in range(df.height)]
    )
    null_cols, null_pos = [], []
    for c in df.columns:
        if df.schema[c].is_float() and df[c].null_count():
            null_cols.append(c)
            null_pos.append(np.flatnonzero(df[c].is_null().to_numpy()).astype(np.int64))
    record = {
        "schema": _schema_record(df),
        "features": np.asarray(feats, dtype=object),
        "null_columns": np.asarray(null_cols, dtype=object),
        "null_offsets": np.cumsum([0, *[len(p) for p in null_pos]]).astype(np.int64),
        "null_positions": np.concatenate(null_pos) if null_pos else np.zeros(0, np.int64),
    }
    var = pd.DataFrame(index=pd.Index(feats, dtype=object))
    return anndata.AnnData(X=x, obs=obs, var=var, uns={_UNS_KEY: record})


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

    The file is written beside its destination and renamed into place, so a
    failed write leaves no partial file.

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
    dest = Path(path)
    adata = to_anndata(frame, features=features)
    tmp = dest.with_name(f".{dest.name}.partial")
    try:
        adata.write_h5ad(tmp, compression="gzip")
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


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
