"""Helpers shared by the profiling transforms: feature lists, row filters, registries."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import polars as pl

from cellframe.columns import CONTROL, FEATURE_DTYPE, NEGATIVE_CONTROL, feature_columns
from cellframe.errors import InvalidInputError, MissingColumnsError

T = TypeVar("T")

#: What a ``controls=`` / ``samples=`` argument may be.
RowFilter = str | pl.Expr | None

_QUERY_HINT = re.compile(r"[=<>!]|\bIN\b|\bLIKE\b|\bIS\b|\bAND\b|\bOR\b", re.IGNORECASE)


class ProfilesWarning(UserWarning):
    """A recoverable data problem met while profiling (always carries counts)."""


def schema_of(lf: pl.LazyFrame | pl.DataFrame | pl.Schema) -> pl.Schema:
    """The schema of a frame without reading rows."""
    if isinstance(lf, pl.Schema):
        return lf
    return lf.collect_schema() if isinstance(lf, pl.LazyFrame) else lf.schema


def resolve_features(
    lf: pl.LazyFrame | pl.DataFrame | pl.Schema,
    features: Sequence[str] | None,
    where: str = "the input",
) -> list[str]:
    """The feature columns to work on: ``features`` checked, or every numeric non-metadata column."""
    schema = schema_of(lf)
    if features is None:
        found = feature_columns(schema)
        if not found:
            raise InvalidInputError(
                f"{where} has no feature columns (numeric columns without the "
                "'Metadata_' prefix); pass features=[...] explicitly"
            )
        return found
    features = list(features)
    missing = [c for c in features if c not in schema]
    if missing:
        raise MissingColumnsError(where, missing, "check the feature names or pass features=None")
    return features


def require_columns(
    lf: pl.LazyFrame | pl.DataFrame | pl.Schema, columns: Sequence[str], where: str, hint: str = ""
) -> None:
    """Raise :class:`MissingColumnsError` if any of ``columns`` is absent."""
    schema = schema_of(lf)
    missing = [c for c in columns if c not in schema]
    if missing:
        raise MissingColumnsError(where, missing, hint)


def row_filter(spec: RowFilter, *, column: str = CONTROL) -> pl.Expr | None:
    """Turn a ``controls=`` / ``samples=`` argument into a Polars predicate.

    Parameters
    ----------
    spec : str, polars.Expr or None
        ``None`` or ``"all"``: every row (returns ``None``). A Polars
        expression: used as is. A string holding a comparison, e.g.
        ``"Metadata_pert_type = 'control'"``: a SQL ``WHERE`` condition (the
        counterpart of pycytominer's pandas ``query`` strings). Any other
        string: a value of ``column`` (``"negcon"`` selects rows whose
        ``Metadata_Control`` is ``"negcon"``).
    column : str
        The column a bare value is compared with.
    """
    if spec is None:
        return None
    if isinstance(spec, pl.Expr):
        return spec
    if isinstance(spec, str):
        if spec == "all":
            return None
        if _QUERY_HINT.search(spec):
            try:
                return pl.sql_expr(spec)
            except Exception as exc:  # polars raises several types for bad SQL
                raise InvalidInputError(
                    f"cannot parse the row filter {spec!r} as a SQL condition: {exc}"
                ) from exc
        return pl.col(column) == spec
    raise InvalidInputError(
        f"a row filter must be None, 'all', a column value such as {NEGATIVE_CONTROL!r}, "
        f"a SQL condition string or a Polars expression, not {type(spec).__name__}"
    )


def filter_columns(spec: RowFilter, *, column: str = CONTROL) -> list[str]:
    """Column names a row filter reads (for error messages and projections)."""
    expr = row_filter(spec, column=column)
    if expr is None:
        return []
    return list(expr.meta.root_names())


def resolve_method(choice: str | Callable[..., T], registry: Mapping[str, T], what: str) -> T:
    """Look ``choice`` up in ``registry``; a callable passes through."""
    if callable(choice) and not isinstance(choice, str):
        return choice  # type: ignore[return-value]
    if choice in registry:
        return registry[choice]  # type: ignore[index]
    valid = ", ".join(repr(k) for k in registry)
    raise ValueError(f"unknown {what} {choice!r}; valid: {valid} (or a callable)")


def as_features_frame(lf: pl.LazyFrame, features: Sequence[str]) -> pl.LazyFrame:
    """Cast features to float32 with NaN turned into null (pandas' skip-NaN semantics)."""
    return lf.with_columns([pl.col(f).cast(FEATURE_DTYPE).fill_nan(None) for f in features])


def to_numpy64(df: pl.DataFrame, features: Sequence[str]) -> np.ndarray:
    """Features as a C-contiguous float64 matrix with NaN for missing values."""
    if not features:
        return np.empty((df.height, 0))
    return np.ascontiguousarray(
        df.select([pl.col(f).cast(pl.Float64) for f in features]).to_numpy(), dtype=np.float64
    )


def warn(message: str, stacklevel: int = 3) -> None:
    """Emit a :class:`ProfilesWarning`."""
    warnings.warn(message, ProfilesWarning, stacklevel=stacklevel)


def short_list(items: Sequence[Any], n: int = 5, *, quote: bool = True) -> str:
    """``'a', 'b', ... (+3 more)`` for messages."""
    head = ", ".join((repr(x) if quote else str(x)) for x in list(items)[:n])
    return head + (f", ... (+{len(items) - n} more)" if len(items) > n else "")
