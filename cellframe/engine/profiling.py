"""Profiling steps on an engine: per-plate maps and exact cross-plate fits.

* Aggregation to images or wells and per-plate normalization are pure
  functions of one plate's rows: :func:`map_plates` runs them.
* A normalization whose groups span plates, and sphering, need statistics over
  every plate. Sphering's regularized ZCA is fitted from exact sufficient
  statistics of the control rows (count, sum, X^T X in float64) combined on the
  driver. Medians (``robustize``, ``mad_robustize``) and pycytominer's SVD
  methods have no finite sufficient statistics, so their fit gathers the
  control rows of every plate (a small fraction of a screen) and fits on them:
  exact as well.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from cellframe.columns import PLATE
from cellframe.engine.base import MapReport
from cellframe.engine.run import map_plates, reduce_plates
from cellframe.errors import EmptyInputError, InvalidInputError

if TYPE_CHECKING:
    from cellframe.profiles.normalize import Normalizer
    from cellframe.profiles.sphere import Spherizer
    from cellframe.store import Store

__all__ = [
    "aggregate_plates",
    "fit_normalizer",
    "fit_spherizer",
    "normalize_plates",
    "sphere_plates",
]


# --------------------------------------------------------------- aggregation
def _aggregate_one(frame: pl.DataFrame, **kwargs: Any) -> pl.DataFrame:
    from cellframe.profiles.aggregate import aggregate

    return aggregate(frame.lazy(), **kwargs).collect()


def aggregate_plates(
    store: Store,
    source: str,
    dest: str,
    *,
    level: str = "well",
    path: str = "direct",
    strata: Sequence[str] | None = None,
    method: str | None = None,
    features: Sequence[str] | None = None,
    engine: str = "local",
    address: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> MapReport:
    """Aggregate ``source`` into ``dest`` plate by plate on an engine.

    Parameters are those of :func:`cellframe.profiles.aggregate`; the output
    level's keys must include ``Metadata_Plate`` (treatment profiles span
    plates: aggregate the well table to treatments locally).
    """
    from cellframe.columns import LEVEL_KEYS

    keys = list(strata) if strata is not None else list(LEVEL_KEYS.get(level, ()))
    if PLATE not in keys:
        raise InvalidInputError(
            f"per-plate aggregation needs {PLATE} among the output keys (level {level!r} has "
            f"{keys}); aggregate the well table to treatments with the local engine"
        )
    fn = functools.partial(
        _aggregate_one, level=level, path=path, strata=strata, method=method, features=features
    )
    params = {"level": level, "path": path, "strata": strata, "method": method}
    return map_plates(
        store, source, dest, fn, engine=engine, address=address, force=force,
        step="aggregate", parameters=params, progress=progress,
    )  # fmt: skip


# ------------------------------------------------------------- normalization
def _control_rows(
    frame: pl.DataFrame, *, controls: Any, columns: Sequence[str] | None
) -> pl.DataFrame:
    from cellframe.profiles._common import row_filter

    predicate = row_filter(controls)
    rows = frame if predicate is None else frame.filter(predicate)
    return rows if columns is None else rows.select(columns)


def _concat(parts: Iterable[pl.DataFrame]) -> pl.DataFrame:
    parts = [p for p in parts if p.height]
    if not parts:
        raise EmptyInputError(
            "no control rows on any plate; name the controls or use controls='all'"
        )
    return pl.concat(parts, how="vertical")


def _gather_controls(
    store: Store,
    source: str,
    controls: Any,
    *,
    engine: str,
    address: str | None,
    progress: bool,
    desc: str,
) -> pl.DataFrame:
    """The control rows of every plate, gathered plate by plate (in parallel on Ray)."""
    fn = functools.partial(_control_rows, controls=controls, columns=None)
    return reduce_plates(
        store, source, fn, _concat, engine=engine, address=address, progress=progress, desc=desc
    )


def fit_normalizer(
    store: Store,
    source: str,
    normalizer: Normalizer,
    *,
    engine: str = "local",
    address: str | None = None,
    progress: bool = True,
) -> Normalizer:
    """Fit ``normalizer`` on the control rows of every plate of ``source``.

    The control rows are gathered plate by plate (on Ray: in parallel) and the
    normalizer is fitted on them, which equals fitting on the whole table.
    """
    controls = _gather_controls(
        store, source, normalizer.controls, engine=engine, address=address, progress=progress,
        desc="normalization fit",
    )  # fmt: skip
    return normalizer.fit(controls)


def _normalize_one(frame: pl.DataFrame, *, normalizer: Normalizer, refit: bool) -> pl.DataFrame:
    import copy

    norm = copy.deepcopy(normalizer).fit(frame) if refit else normalizer
    return norm.transform(frame).collect()


def normalize_plates(
    store: Store,
    source: str,
    dest: str,
    normalizer: Normalizer,
    *,
    engine: str = "local",
    address: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> MapReport:
    """Normalize ``source`` into ``dest`` on an engine.

    With the default grouping (per plate), each plate is fitted and normalized
    on its own, a pure per-plate function. Otherwise (groups spanning plates,
    or no grouping) the fit is done once on every plate's controls
    (:func:`fit_normalizer`) and applied plate by plate. An already fitted
    normalizer is applied as it is.
    """
    fitted = hasattr(normalizer, "stats_")
    per_plate = not fitted and list(normalizer.by) == [PLATE]
    if not per_plate and not fitted:
        normalizer = fit_normalizer(
            store, source, normalizer, engine=engine, address=address, progress=progress
        )
    fn = functools.partial(_normalize_one, normalizer=normalizer, refit=per_plate)
    return map_plates(
        store, source, dest, fn, engine=engine, address=address, force=force,
        step="normalize", parameters=normalizer.parameters(), progress=progress,
    )  # fmt: skip


# ----------------------------------------------------------------- sphering
def _moments(
    frame: pl.DataFrame, *, controls: Any, features: Sequence[str]
) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    rows = _control_rows(frame, controls=controls, columns=features)
    x = rows.to_numpy().astype(np.float64)
    nan_counts = np.isnan(x).sum(axis=0)
    x = np.nan_to_num(x)
    return x.shape[0], x.sum(axis=0), x.T @ x, nan_counts


def _add_moments(
    parts: Iterable[tuple[int, np.ndarray, np.ndarray, np.ndarray]],
) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    n, s, xtx, nans = 0, 0.0, 0.0, 0
    for pn, ps, pxtx, pnan in parts:
        n, s, xtx, nans = n + pn, s + ps, xtx + pxtx, nans + pnan
    return n, np.asarray(s), np.asarray(xtx), np.asarray(nans)


def fit_spherizer(
    store: Store,
    source: str,
    spherizer: Spherizer,
    *,
    engine: str = "local",
    address: str | None = None,
    progress: bool = True,
) -> Spherizer:
    """Fit ``spherizer`` on the control rows of every plate of ``source``.

    The regularized ZCA is fitted from per-plate sufficient statistics
    (n, sum, X^T X), so the driver never holds the control rows; the
    pycytominer-compatible methods gather the control rows and fit on them.
    """
    from cellframe.columns import feature_columns
    from cellframe.profiles.sphere import _regularized_w

    if spherizer.method != "regularized":
        controls = _gather_controls(
            store, source, spherizer.controls, engine=engine, address=address,
            progress=progress, desc="sphering fit",
        )  # fmt: skip
        return spherizer.fit(controls)
    features = spherizer.features or feature_columns(store.schema(source))
    fn = functools.partial(_moments, controls=spherizer.controls, features=features)
    n, total, xtx, nans = reduce_plates(
        store, source, fn, _add_moments, engine=engine, address=address, progress=progress,
        desc="sphering fit",
    )  # fmt: skip
    if n < 2:
        raise EmptyInputError(
            f"sphering needs at least 2 control profiles, found {n} (controls={spherizer.controls!r})"
        )
    if np.any(nans):
        bad = [f for f, k in zip(features, nans, strict=True) if k]
        raise InvalidInputError(
            f"{len(bad)} feature(s) have missing values in the control profiles, e.g. {bad[:5]}; "
            "drop them (drop_na_columns) or impute before sphering"
        )
    mean = total / n
    cov = xtx / n - np.outer(mean, mean)
    evals, evecs = np.linalg.eigh((cov + cov.T) / 2)
    evals = np.clip(evals, 0.0, None)
    spherizer.features_ = list(features)
    spherizer.n_controls_ = int(n)
    spherizer.mean_ = mean
    spherizer.scale_ = np.ones(len(features))
    spherizer.eigenvalues_ = evals[::-1].copy()
    spherizer.W_ = _regularized_w(evals, evecs, spherizer.lam)
    spherizer.output_names_ = list(features)
    return spherizer


def _sphere_one(frame: pl.DataFrame, *, spherizer: Spherizer) -> pl.DataFrame:
    return spherizer.transform(frame).collect()


def sphere_plates(
    store: Store,
    source: str,
    dest: str,
    spherizer: Spherizer,
    *,
    engine: str = "local",
    address: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> MapReport:
    """Fit ``spherizer`` across plates (unless already fitted) and apply it plate by plate."""
    if not hasattr(spherizer, "W_"):
        spherizer = fit_spherizer(
            store, source, spherizer, engine=engine, address=address, progress=progress
        )
    fn = functools.partial(_sphere_one, spherizer=spherizer)
    return map_plates(
        store, source, dest, fn, engine=engine, address=address, force=force,
        step="sphere", parameters=spherizer.parameters(), progress=progress,
    )  # fmt: skip
