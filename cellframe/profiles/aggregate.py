"""Aggregation of profiles: cell -> image -> well -> treatment (DOMAIN.md §2).

The thesis workflow takes the **median** of each feature over the cells of an
image (site), the **mean** over the images of a well and the **mean** over the
replicate wells of a treatment. pycytominer's ``aggregate`` default is the
shortcut cell -> well median. Both are offered; each output row carries
``Metadata_Count_Cells``, the number of cells behind it.

The transforms here are pure LazyFrame functions.
:func:`cellframe.pipeline.aggregate_table` runs them over a store table plate
by plate (and, for big plates, a few wells at a time), so a cell table larger
than memory aggregates with bounded memory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import polars as pl

from cellframe.columns import (
    COUNT_CELLS,
    FEATURE_DTYPE,
    IMAGE_NUMBER,
    LEVEL_KEYS,
    OBJECT_NUMBER,
    SITE,
    is_metadata,
)
from cellframe.errors import InvalidInputError
from cellframe.profiles._common import (
    GROUP_KERNELS,
    Workspace,
    feature_blocks,
    group_layout,
    group_reduce,
    require_columns,
    resolve_features,
    resolve_method,
    schema_of,
)

__all__ = [
    "AGGREGATIONS",
    "aggregate",
    "aggregate_by",
]

#: Aggregation functions by name; ``method=`` also accepts a callable ``Expr -> Expr``.
AGGREGATIONS: dict[str, Callable[[pl.Expr], pl.Expr]] = {
    "median": lambda e: e.median(),
    "mean": lambda e: e.mean(),
}

Level = Literal["image", "well", "treatment"]

LEVELS: tuple[str, ...] = ("image", "well", "treatment")

#: Method of each step of the thesis path (DOMAIN.md §2).
THESIS_METHODS: dict[str, str] = {"image": "median", "well": "mean", "treatment": "mean"}

#: Keys finer than a level never describe a whole group; they are not carried up.
_PER_ROW_KEYS = {OBJECT_NUMBER, IMAGE_NUMBER, SITE, "ImageNumber", "ObjectNumber"}


def _carry_columns(
    schema: pl.Schema, strata: Sequence[str], keep: Sequence[str] | str | None
) -> list[str]:
    if keep is None:
        return []
    if isinstance(keep, str):
        if keep != "auto":
            raise InvalidInputError(
                f"keep must be 'auto', None or a list of column names, not {keep!r}"
            )
        return [
            c
            for c in schema
            if is_metadata(c) and c not in strata and c not in _PER_ROW_KEYS and c != COUNT_CELLS
        ]
    keep = [c for c in keep if c not in strata]
    require_columns(
        schema, keep, "the input", "keep= names columns to carry to the aggregated rows"
    )  # type: ignore[arg-type]
    return list(keep)


def aggregate_by(
    lf: pl.LazyFrame,
    strata: Sequence[str],
    *,
    method: str | Callable[[pl.Expr], pl.Expr] = "median",
    features: Sequence[str] | None = None,
    keep: Sequence[str] | str | None = "auto",
) -> pl.LazyFrame:
    """Aggregate rows by any strata in one step.

    Parameters
    ----------
    lf : polars.LazyFrame
        Profiles (cells, images or wells).
    strata : sequence of str
        Grouping columns, e.g. ``["Metadata_Plate", "Metadata_Well"]``.
    method : {"median", "mean"} or callable, default "median"
        Aggregation of each feature; a callable maps ``pl.col(f)`` to an
        aggregation expression.
    features : sequence of str, optional
        Features to aggregate (default: every numeric non-metadata column).
    keep : "auto", list of str or None, default "auto"
        Metadata columns to carry along. ``"auto"`` carries every
        ``Metadata_*`` column except per-row keys (site, object and image
        numbers); a carried column is null in a group where it is not constant.

    Returns
    -------
    polars.LazyFrame
        One row per group, sorted by ``strata``: the strata,
        ``Metadata_Count_Cells`` (rows per group, or the sum of the input's
        counts when it already has them), carried metadata, then the features
        as Float32. Missing values (null or NaN) are skipped, as pandas does.

    Examples
    --------
    >>> import polars as pl
    >>> cells = pl.LazyFrame({"Metadata_Plate": ["P", "P", "P"], "Metadata_Well": ["A01", "A01", "B01"],
    ...                       "f": [1.0, 3.0, 5.0]})
    >>> aggregate_by(cells, ["Metadata_Plate", "Metadata_Well"]).collect()["f"].to_list()
    [2.0, 5.0]
    """
    strata = list(strata)
    if not strata:
        raise InvalidInputError("aggregation needs at least one strata column")
    schema = schema_of(lf)
    require_columns(lf, strata, "the input to aggregate", "name existing columns in strata=")
    features = resolve_features(lf, features, "the input to aggregate")
    features = [f for f in features if f not in strata and f != COUNT_CELLS]
    agg = resolve_method(method, AGGREGATIONS, "aggregation method")
    carry = _carry_columns(schema, strata, keep)
    if isinstance(method, str) and method in GROUP_KERNELS:
        # Named methods run on the NumPy group kernels (see _common.py): the
        # same values as the Polars expressions below for less CPU, most on
        # small groups (cell -> image median: ~2.8x less).
        has_count = COUNT_CELLS in schema
        needed = list(
            dict.fromkeys([*strata, *carry, *features, *([COUNT_CELLS] if has_count else [])])
        )
        out_schema: dict[str, Any] = {s: schema[s] for s in strata}
        out_schema[COUNT_CELLS] = pl.Int64
        out_schema.update({c: schema[c] for c in carry})
        out_schema.update({f: FEATURE_DTYPE for f in features})
        return lf.select(needed).map_batches(
            lambda df: _aggregate_frame(df, strata, method, features, carry),
            schema=out_schema,
            streamable=False,
        )
    count = (
        pl.col(COUNT_CELLS).sum().cast(pl.Int64)
        if COUNT_CELLS in schema
        else pl.len().cast(pl.Int64)
    ).alias(COUNT_CELLS)
    values = [agg(pl.col(f)).cast(FEATURE_DTYPE).alias(f) for f in features]
    # NaN -> null before grouping: the aggregations then skip missing values
    # (as pandas does) on Polars' plain group-by fast path.
    lf = lf.with_columns(pl.col(features).cast(FEATURE_DTYPE).fill_nan(None))
    return (
        lf.group_by(strata)
        .agg([count, *_carried_exprs(carry), *values])
        .sort(strata, nulls_last=True)
    )


def _carried_exprs(carry: Sequence[str]) -> list[pl.Expr]:
    """A carried column keeps its value where it is constant in the group, else null."""
    return [
        pl.when(pl.col(c).n_unique() == 1).then(pl.col(c).first()).otherwise(None).alias(c)
        for c in carry
    ]


def _aggregate_frame(
    df: pl.DataFrame,
    strata: Sequence[str],
    method: str,
    features: Sequence[str],
    carry: Sequence[str],
    n_threads: int | None = None,
    workspace: Workspace | None = None,
) -> pl.DataFrame:
    """Eager aggregation of ``df`` with the NumPy group kernels (same output as the Polars path).

    ``workspace`` (scratch memory reused across calls of one thread) is passed
    on to :func:`feature_blocks`.
    """
    strata = list(strata)
    order, runs = group_layout(df.select(strata))
    has_count = COUNT_CELLS in df.columns
    meta = df.select(list(dict.fromkeys([*strata, *carry, *([COUNT_CELLS] if has_count else [])])))
    if order is not None:
        meta = meta[pl.Series(order)]
    count = (
        pl.col(COUNT_CELLS).sum().cast(pl.Int64) if has_count else pl.len().cast(pl.Int64)
    ).alias(COUNT_CELLS)
    group = "__cellframe_group__"
    head = (
        meta.with_columns(pl.Series(group, runs.row_group()))
        .group_by(group)
        .agg([pl.col(s).first() for s in strata] + [count, *_carried_exprs(carry)])
        .sort(group)
        .drop(group)
    )
    clean, clean_idx, missing, missing_idx = feature_blocks(df, features, order, workspace)
    threads = n_threads if n_threads is not None else pl.thread_pool_size()
    rc, rm = group_reduce(clean, missing, runs, method, n_threads=threads)
    del clean, missing
    values = np.empty((len(features), runs.n_groups), dtype=np.float32)
    values[clean_idx] = rc.T
    values[missing_idx] = rm.T
    feats = pl.DataFrame(
        [pl.Series(f, values[j], dtype=FEATURE_DTYPE) for j, f in enumerate(features)]
    )
    if len(missing_idx):
        feats = feats.with_columns(pl.col([features[j] for j in missing_idx]).fill_nan(None))
    return pl.concat([head, feats], how="horizontal")


def _level_strata(level: str, strata: Sequence[str] | None) -> list[str]:
    if level not in LEVELS:
        raise InvalidInputError(f"unknown level {level!r}; valid: {', '.join(map(repr, LEVELS))}")
    return list(strata) if strata is not None else list(LEVEL_KEYS[level])


def aggregate(
    lf: pl.LazyFrame,
    level: Level = "well",
    *,
    path: Literal["direct", "thesis"] = "direct",
    strata: Sequence[str] | None = None,
    method: str | Callable[[pl.Expr], pl.Expr] | None = None,
    features: Sequence[str] | None = None,
    keep: Sequence[str] | str | None = "auto",
) -> pl.LazyFrame:
    """Aggregate profiles to the image, well or treatment level.

    Parameters
    ----------
    lf : polars.LazyFrame
        Profiles of a finer level (single cells for ``path="thesis"``).
    level : {"image", "well", "treatment"}, default "well"
        Level of the output rows.
    path : {"direct", "thesis"}, default "direct"
        ``"direct"``: one aggregation from the input rows (cell -> well median
        is pycytominer's default). ``"thesis"``: cells -> image median ->
        well mean -> treatment mean, stopping at ``level``.
    strata : sequence of str, optional
        Keys of the output level (default ``cellframe.columns.LEVEL_KEYS[level]``:
        plate/well/site for images, plate/well for wells, treatment).
    method : {"median", "mean"} or callable, optional
        Method of the direct path (default: median for image and well,
        mean for treatment). Ignored by the thesis path, whose methods are fixed.
    features : sequence of str, optional
        Features to aggregate (default: every numeric non-metadata column).
    keep : "auto", list of str or None, default "auto"
        Metadata columns to carry (see :func:`aggregate_by`).

    Returns
    -------
    polars.LazyFrame
        One row per group with ``Metadata_Count_Cells`` and Float32 features.

    Examples
    --------
    >>> import polars as pl
    >>> cells = pl.LazyFrame({"Metadata_Plate": ["P"] * 4,
    ...                       "Metadata_Well": ["A01", "A01", "A01", "B01"],
    ...                       "f": [1.0, 2.0, 9.0, 4.0]})
    >>> wells = aggregate(cells, "well").sort("Metadata_Well").collect()
    >>> wells.to_dict(as_series=False)  # the median of each well
    {'Metadata_Plate': ['P', 'P'], 'Metadata_Well': ['A01', 'B01'],
     'Metadata_Count_Cells': [3, 1], 'f': [2.0, 4.0]}
    >>> wells.schema["f"]
    Float32
    """
    if path not in ("direct", "thesis"):
        raise InvalidInputError(f"unknown path {path!r}; valid: 'direct', 'thesis'")
    final_strata = _level_strata(level, strata)
    if path == "direct":
        chosen = method if method is not None else ("mean" if level == "treatment" else "median")
        return aggregate_by(lf, final_strata, method=chosen, features=features, keep=keep)
    features = resolve_features(lf, features, "the cells to aggregate")
    out = lf
    for step in LEVELS[: LEVELS.index(level) + 1]:
        step_strata = final_strata if step == level else list(LEVEL_KEYS[step])
        out = aggregate_by(
            out, step_strata, method=THESIS_METHODS[step], features=features, keep=keep
        )
    return out
