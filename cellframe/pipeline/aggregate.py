"""Aggregate a store table into another, plate by plate (the store-to-store step).

The transforms are :mod:`cellframe.profiles.aggregate`'s and the chunked
executor is :class:`~cellframe.engine.LocalEngine`'s
(:meth:`~cellframe.engine.LocalEngine.map_units`); this module says what an
aggregation is (:class:`Aggregation`), which steps of the chain can run chunk
by chunk, and writes the result with provenance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import polars as pl

from cellframe.columns import COUNT_CELLS, LEVEL_KEYS, PLATE, WELL
from cellframe.engine.base import Plates
from cellframe.engine.local import LocalEngine
from cellframe.errors import InvalidInputError
from cellframe.profiles._common import GROUP_KERNELS, Workspace, resolve_features
from cellframe.profiles.aggregate import (
    LEVELS,
    THESIS_METHODS,
    Level,
    _aggregate_frame,
    _carry_columns,
    _level_strata,
    aggregate_by,
)

if TYPE_CHECKING:
    from cellframe.store import Store

__all__ = ["Aggregation", "aggregate_table"]


@dataclass(frozen=True)
class Aggregation:
    """An aggregation step: cells to images, wells or treatments (DOMAIN.md §2).

    Parameters
    ----------
    level : {"image", "well", "treatment"}, default "well"
        Output level.
    path : {"direct", "thesis"}, default "direct"
        ``"direct"``: one step (cell -> well median, pycytominer's default);
        ``"thesis"``: cell -> image median -> well mean -> treatment mean.
    strata : sequence of str, optional
        Output keys (default: the level's keys).
    method : str or callable, optional
        The direct path's method (default: median; mean for treatments).
    features : sequence of str, optional
        Feature columns (default: every feature column).
    keep : sequence of str, "auto" or None, default "auto"
        Metadata columns to carry (see :func:`cellframe.profiles.aggregate`).

    Raises
    ------
    InvalidInputError
        For an unknown ``level`` or ``path``.

    Examples
    --------
    >>> Aggregation("image", path="thesis").level
    'image'
    """

    level: Level = "well"
    path: Literal["direct", "thesis"] = "direct"
    strata: Sequence[str] | None = None
    method: Any = None
    features: Sequence[str] | None = None
    keep: Sequence[str] | str | None = "auto"

    def __post_init__(self) -> None:
        if self.path not in ("direct", "thesis"):
            raise InvalidInputError(f"unknown path {self.path!r}; valid: 'direct', 'thesis'")
        if self.level not in LEVELS:
            raise InvalidInputError(
                f"unknown level {self.level!r}; valid: {', '.join(map(repr, LEVELS))}"
            )

    def parameters(self) -> dict[str, Any]:
        """The parameters recorded in provenance."""
        return {
            "level": self.level,
            "path": self.path,
            "strata": self.strata,
            "method": self.method,
        }


def aggregate_table(
    store: Store,
    source: str,
    dest: str,
    aggregation: Aggregation | str = "well",
    *,
    engine: LocalEngine | None = None,
    progress: bool = True,
) -> int:
    """Aggregate a store table into another, one plate (or a few wells) at a time.

    Parameters
    ----------
    store : cellframe.store.Store
        The store holding ``source``; ``dest`` is replaced.
    source, dest : str
        Input and output table names.
    aggregation : Aggregation or str, default "well"
        What to compute; a level name is ``Aggregation(level)``.
    engine : LocalEngine, optional
        Chunk size (``chunk_rows``), workers and memory budget of the
        chunked read (default: ``LocalEngine()``: 256 MiB chunks, one worker
        per Polars thread within 4 GiB).
    progress : bool, default True
        Show a progress bar over work units.

    Returns
    -------
    int
        Rows written to ``dest``.

    Notes
    -----
    The steps of the chain that group within a plate (and within a well, for
    chunks smaller than a plate) run chunk by chunk on the engine's worker
    threads, on the NumPy kernels (each worker thread reuses one scratch
    matrix); the remaining steps (e.g. wells -> treatments) run on the small
    aggregated result. See :meth:`cellframe.engine.LocalEngine.map_units`
    for how a table is cut into work units.

    Examples
    --------
    >>> import polars as pl
    >>> from cellframe.store import Store
    >>> store = Store()
    >>> cells = pl.DataFrame({"Metadata_Plate": ["P1"] * 3, "Metadata_Well": ["A01"] * 3,
    ...                       "f": [1.0, 2.0, 10.0]})
    >>> _ = store.write("cells", cells, step="example")
    >>> aggregate_table(store, "cells", "wells", progress=False)
    1
    >>> store.read("wells")["f"].to_list()
    [2.0]
    """
    spec = Aggregation(aggregation) if isinstance(aggregation, str) else aggregation
    engine = engine if engine is not None else LocalEngine()
    level, path, method, keep = spec.level, spec.path, spec.method, spec.keep
    final_strata = _level_strata(level, spec.strata)
    columns = store.columns(source)
    schema = store.schema(source)
    feats = resolve_features(schema, spec.features, f"store table {source!r}")
    row_bytes = 4 * max(len(feats), 1)
    chunk_rows = engine.unit_rows(row_bytes)
    # Which step strata does the chain use? The table can be split along any
    # key that every step groups by.
    steps = (
        [final_strata]
        if path == "direct"
        else [
            final_strata if s == level else list(LEVEL_KEYS[s])
            for s in LEVELS[: LEVELS.index(level) + 1]
        ]
    )
    # The chain runs chunk by chunk for the steps that group within a plate
    # (and within a well, for chunks smaller than a plate); the remaining
    # steps (e.g. wells -> treatments) run on the small aggregated result.
    n_split = 0
    while n_split < len(steps) and PLATE in steps[n_split] and PLATE in columns:
        n_split += 1
    by_well = n_split > 0 and WELL in columns and all(WELL in s for s in steps[:n_split])
    carry = _carry_columns(schema, [], keep)
    needed = list(
        dict.fromkeys(
            [*(c for s in steps for c in s if c in columns), *carry, *feats]
            + ([COUNT_CELLS] if COUNT_CELLS in columns else [])
        )
    )
    parameters: dict[str, Any] = {
        "source": source,
        "level": level,
        "path": path,
        "strata": final_strata,
        "method": method,
        "n_features": len(feats),
        "chunk_rows": chunk_rows,
    }
    step_methods = (
        [method if method is not None else ("mean" if level == "treatment" else "median")]
        if path == "direct"
        else [THESIS_METHODS[s] for s in LEVELS[: len(steps)]]
    )

    def run(lf: pl.LazyFrame, part: slice) -> pl.LazyFrame:
        for s, m in zip(steps[part], step_methods[part], strict=True):
            lf = aggregate_by(lf, s, method=m, features=feats, keep=keep)
        return lf

    def write(data: Any) -> int:
        return store.write(
            dest, data, mode="replace", step="aggregate", parameters=parameters, source=source
        )

    if n_split == 0:
        return write(run(store.scan(source, needed), slice(None)).collect(engine="streaming"))

    def compute(frame: pl.DataFrame, threads: int, scratch: dict[str, Any]) -> pl.DataFrame:
        workspace = scratch.setdefault("workspace", Workspace())
        # The plate-level steps run eagerly on the NumPy kernels; a callable
        # method falls back to the Polars expressions.
        for s, m in zip(steps[:n_split], step_methods[:n_split], strict=True):
            if m in GROUP_KERNELS:
                s_feats = [f for f in feats if f not in s and f != COUNT_CELLS]
                carry_s = _carry_columns(frame.schema, s, keep)
                frame = _aggregate_frame(frame, s, m, s_feats, carry_s, threads, workspace)
            else:
                frame = aggregate_by(frame.lazy(), s, method=m, features=feats, keep=keep).collect()
        return frame

    results = engine.map_units(
        Plates(store, source), needed, compute, by_well=by_well, row_bytes=row_bytes,
        desc=f"aggregate {source}", progress=progress,
    )  # fmt: skip
    # Units hold whole groups; sorting their rows puts the groups in key order
    # (a plate's row-range units follow its storage order, not the key order).
    partial = (
        pl.concat(results, how="vertical").sort(steps[n_split - 1], nulls_last=True)
        if results
        else run(store.scan(source, needed).head(0), slice(0, n_split)).collect()
    )
    if n_split == len(steps):
        return write(partial)
    return write(run(partial.lazy(), slice(n_split, None)).collect())
