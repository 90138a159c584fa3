"""Quality control on an engine: image flags per plate, PCA from exact cross-plate moments.

* Image QC (:func:`image_qc_plates`) is a pure function of one plate's images
  when its robust z-scores are taken per plate (the default): it is mapped
  over plates.
* The PCA of well profiles (:func:`fit_pca_plates`) is fitted on the driver
  from per-plate statistics: non-missing counts, means and cross-products
  about the plate mean (:class:`cellframe.engine.select.CrossMoments`),
  re-based to the global mean and added: the covariance of all wells, exactly.
  Its eigenvectors are the principal axes, signed as in
  :func:`cellframe.profiles.pca_profiles` (each axis' largest absolute loading
  positive). Scores and the per-plate outlier flags are then mapped over plates.
* A grouping that spans plates (``by`` without ``Metadata_Plate``) needs
  medians over several plates: the small per-plate results (scores, or the
  image-quality columns) are gathered and finished on the driver.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from cellframe.columns import PLATE, is_metadata
from cellframe.engine.base import MapReport
from cellframe.engine.run import map_plates, reduce_plates
from cellframe.engine.select import combine_statistics, select_statistics
from cellframe.errors import EmptyInputError, InvalidInputError, MissingColumnsError
from cellframe.profiles._common import resolve_features, short_list, to_numpy64, warn
from cellframe.profiles.qc import (
    OUTLIER,
    PCAResult,
    _flag_scores,
    _image_flags,
    image_quality_columns,
)
from cellframe.store import quote_identifier

if TYPE_CHECKING:
    from cellframe.store import Store

__all__ = [
    "FittedPCA",
    "fit_pca_plates",
    "flag_outlier_wells_plates",
    "image_qc_plates",
    "pca_plates",
]


@dataclass(frozen=True)
class FittedPCA:
    """Principal axes fitted over every plate.

    Attributes
    ----------
    features : list of str
        Features used (complete in every row; constant ones left out when standardized).
    mean, scale : numpy.ndarray
        Profiles are scored as ``((x - mean) / scale) @ components.T``.
    components : numpy.ndarray
        k x d loadings, each row's largest absolute loading positive.
    explained_variance_ratio : numpy.ndarray
        Fraction of the total variance each component explains.
    n_rows : int
        Profiles the PCA was fitted on.
    """

    features: list[str]
    mean: np.ndarray
    scale: np.ndarray
    components: np.ndarray
    explained_variance_ratio: np.ndarray
    n_rows: int

    def scores(self, frame: pl.DataFrame) -> pl.DataFrame:
        """The metadata columns of ``frame``, then ``PC1 ... PCk`` (Float64)."""
        x = (to_numpy64(frame, self.features) - self.mean) / self.scale
        values = x @ self.components.T
        meta = frame.select([c for c in frame.columns if is_metadata(c)])
        pcs = pl.DataFrame(
            {f"PC{i + 1}": values[:, i] for i in range(values.shape[1])},
            schema={f"PC{i + 1}": pl.Float64 for i in range(values.shape[1])},
        )
        return pl.concat([meta, pcs], how="horizontal")


def fit_pca_plates(
    store: Store,
    source: str,
    n_components: int = 2,
    *,
    features: Sequence[str] | None = None,
    standardize: bool = False,
    engine: str = "local",
    address: str | None = None,
    progress: bool = True,
) -> FittedPCA:
    """Fit a PCA of every row of ``source`` from exact per-plate moments.

    Equals :func:`cellframe.profiles.pca_profiles` on the whole table (to
    floating-point rounding): the same features (those with a missing value
    anywhere are left out, with a warning), the same axes and signs.

    Parameters
    ----------
    store, source
        The store and the (well) profile table.
    n_components : int, default 2
    features : sequence of str, optional
        Default: every numeric non-metadata column.
    standardize : bool, default False
        PCA of the correlation matrix (features without spread left out).
    engine, address, progress
        As in :func:`cellframe.engine.map_plates`.

    Returns
    -------
    FittedPCA

    Raises
    ------
    InvalidInputError
        With fewer than 2 rows, no complete feature or ``n_components < 1``.
    """
    feats = resolve_features(store.schema(source), features, f"table {source!r}")
    fn = functools.partial(select_statistics, features=feats, moments=True)
    stats = reduce_plates(
        store, source, fn, combine_statistics, engine=engine, address=address, progress=progress,
        desc="PCA statistics",
    )  # fmt: skip
    if stats is None:
        raise EmptyInputError(f"table {source!r} has no plates")
    complete = stats.count == stats.n_rows
    if not complete.all():
        gone = [f for f, c in zip(feats, complete, strict=True) if not c]
        warn(f"{len(gone)} feature(s) with missing values left out of the PCA: {short_list(gone)}")
    index = np.flatnonzero(complete)
    n, d = stats.n_rows, index.size
    k = min(n_components, n, d)
    if n < 2 or d == 0 or n_components < 1:
        raise InvalidInputError(
            f"PCA needs at least 2 profiles and 1 complete feature (got {n} x {d}) "
            f"and n_components >= 1 (got {n_components})"
        )
    assert stats.moments is not None
    moments = stats.moments.subset(index)
    _, s, _ = moments.full()
    cov = (n * moments.p - s * s.T) / (n * n)
    cov = (cov + cov.T) / 2
    mean = stats.mean[index]
    scale = np.ones(d)
    if standardize:
        std = np.sqrt(np.clip(np.diag(cov), 0.0, None))
        keep = (std > 0) & ~stats.constant[index]
        index, mean, std = index[keep], mean[keep], std[keep]
        cov = cov[np.ix_(keep, keep)] / np.outer(std, std)
        scale = std
    evals, evecs = np.linalg.eigh(cov)
    order = np.argsort(evals)[::-1]
    k = min(k, index.size)
    components = evecs[:, order[:k]].T
    signs = np.sign(components[np.arange(k), np.argmax(np.abs(components), axis=1)])
    signs[signs == 0] = 1.0
    components = components * signs[:, None]
    total = float(np.trace(cov))
    ratio = np.clip(evals[order[:k]], 0.0, None) / total if total > 0 else np.zeros(k)
    return FittedPCA(
        features=[feats[i] for i in index],
        mean=mean,
        scale=scale,
        components=components,
        explained_variance_ratio=ratio,
        n_rows=int(n),
    )


def _scores_one(frame: pl.DataFrame, *, pca: FittedPCA) -> pl.DataFrame:
    return pca.scores(frame)


def _concat(parts: Iterable[pl.DataFrame]) -> pl.DataFrame:
    return pl.concat(list(parts), how="vertical_relaxed")


def pca_plates(
    store: Store,
    source: str,
    n_components: int = 2,
    *,
    features: Sequence[str] | None = None,
    standardize: bool = False,
    engine: str = "local",
    address: str | None = None,
    progress: bool = True,
) -> PCAResult:
    """:func:`cellframe.profiles.pca_profiles` of a whole table, fitted and scored plate by plate.

    The scores (metadata and ``PC1..PCk``, one row per profile, plate by
    plate) are gathered on the driver; they are small.
    """
    pca = fit_pca_plates(
        store, source, n_components, features=features, standardize=standardize,
        engine=engine, address=address, progress=progress,
    )  # fmt: skip
    fn = functools.partial(_scores_one, pca=pca)
    scores = reduce_plates(
        store, source, fn, _concat, engine=engine, address=address, progress=progress,
        desc="PCA scores",
    )  # fmt: skip
    return PCAResult(
        scores=scores,
        explained_variance_ratio=pca.explained_variance_ratio,
        components=pca.components,
        features=pca.features,
    )


def _per_plate(by: Sequence[str] | None) -> bool:
    """True when the groups of ``by`` never span plates."""
    return bool(by) and PLATE in list(by or ())


def _flag_one(
    frame: pl.DataFrame, *, pca: FittedPCA, z_threshold: float, by: Sequence[str] | None
) -> pl.DataFrame:
    return _flag_scores(pca.scores(frame), z_threshold=z_threshold, by=by)


def _count_flagged(store: Store, dest: str) -> int:
    query = f"SELECT count(*) AS n FROM {quote_identifier(dest)} WHERE {quote_identifier(OUTLIER)}"
    return int(store.sql(query)["n"][0])


def _write_on_driver(
    store: Store,
    source: str,
    dest: str,
    out: pl.DataFrame,
    *,
    engine: str,
    step: str,
    parameters: dict[str, Any],
) -> MapReport:
    rows = store.write(dest, out, mode="replace", step=step, parameters=parameters, source=source)
    plates = out[PLATE].unique(maintain_order=True).to_list() if PLATE in out.columns else []
    return MapReport(table=dest, engine=engine, computed=plates, rows=rows)


def flag_outlier_wells_plates(
    store: Store,
    source: str,
    dest: str,
    *,
    n_components: int = 3,
    z_threshold: float = 3.5,
    by: Sequence[str] | None = (PLATE,),
    features: Sequence[str] | None = None,
    engine: str = "local",
    address: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> MapReport:
    """:func:`cellframe.profiles.flag_outlier_wells` of ``source`` into ``dest`` on an engine.

    The PCA is fitted over every plate (:func:`fit_pca_plates`); with ``by``
    holding ``Metadata_Plate`` (the default) scores and flags are computed
    plate by plate (on Ray: one Parquet partition per plate; a re-run skips
    complete plates unless ``force``). Otherwise the scores are gathered and
    flagged on the driver, into a native table.

    Returns
    -------
    MapReport

    Raises
    ------
    MissingColumnsError
        If a ``by`` column is not a metadata column of ``source``.
    """
    schema = store.schema(source)
    missing = [c for c in (by or ()) if c not in schema or not is_metadata(c)]
    if missing:
        raise MissingColumnsError(f"table {source!r} (QC groups)", missing, "check by=")
    pca = fit_pca_plates(
        store, source, n_components, features=features, engine=engine, address=address,
        progress=progress,
    )  # fmt: skip
    params = {
        "kind": "wells",
        "n_components": n_components,
        "z_threshold": z_threshold,
        "by": list(by or []),
        "features": pca.features,
    }
    if _per_plate(by):
        fn = functools.partial(_flag_one, pca=pca, z_threshold=z_threshold, by=by)
        report = map_plates(
            store, source, dest, fn, engine=engine, address=address, force=force, step="qc",
            parameters=params, progress=progress,
        )  # fmt: skip
    else:
        fn_scores = functools.partial(_scores_one, pca=pca)
        scores = reduce_plates(
            store, source, fn_scores, _concat, engine=engine, address=address,
            progress=progress, desc="PCA scores",
        )  # fmt: skip
        out = _flag_scores(scores, z_threshold=z_threshold, by=by)
        report = _write_on_driver(
            store, source, dest, out, engine=engine, step="qc", parameters=params
        )
    n_out = _count_flagged(store, dest)
    if n_out:
        n_total = store.sql(f"SELECT count(*) AS n FROM {quote_identifier(dest)}")["n"][0]
        k = len(pca.components)
        warn(f"{n_out} of {n_total} well(s) flagged as outliers on the first {k} PC(s)")
    return report


def _image_one(
    frame: pl.DataFrame, *, focus_z: float, max_saturated_percent: float, by: Sequence[str] | None
) -> pl.DataFrame:
    return _image_flags(frame, focus_z=focus_z, max_saturated_percent=max_saturated_percent, by=by)


def _image_columns(frame: pl.DataFrame, *, columns: Sequence[str]) -> pl.DataFrame:
    return frame.select(columns)


def image_qc_plates(
    store: Store,
    source: str,
    dest: str,
    *,
    focus_z: float = 4.0,
    max_saturated_percent: float = 1.0,
    by: Sequence[str] | None = (PLATE,),
    engine: str = "local",
    address: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> MapReport:
    """:func:`cellframe.profiles.image_qc` of ``source`` into ``dest`` on an engine.

    Per plate (the default ``by``): mapped over plates (on Ray: one Parquet
    partition per plate, resumable). With groups that span plates, the
    metadata and image-quality columns of every plate are gathered and
    flagged on the driver.

    Raises
    ------
    MissingColumnsError
        If ``source`` has no image-quality column.
    """
    schema = store.schema(source)
    focus, satur = image_quality_columns(schema)
    params = {
        "kind": "images",
        "focus_z": focus_z,
        "max_saturated_percent": max_saturated_percent,
        "by": list(by or []),
    }
    if _per_plate(by):
        fn = functools.partial(
            _image_one, focus_z=focus_z, max_saturated_percent=max_saturated_percent, by=by
        )
        report = map_plates(
            store, source, dest, fn, engine=engine, address=address, force=force, step="qc",
            parameters=params, progress=progress,
        )  # fmt: skip
    else:
        columns = [c for c in schema if is_metadata(c)] + [c for c, _ in focus + satur]
        gathered = reduce_plates(
            store, source, functools.partial(_image_columns, columns=columns), _concat,
            engine=engine, address=address, progress=progress, desc="image QC columns",
        )  # fmt: skip
        out = _image_flags(
            gathered, focus_z=focus_z, max_saturated_percent=max_saturated_percent, by=by
        )
        report = _write_on_driver(
            store, source, dest, out, engine=engine, step="qc", parameters=params
        )
    n_out = _count_flagged(store, dest)
    if n_out:
        n_total = store.sql(f"SELECT count(*) AS n FROM {quote_identifier(dest)}")["n"][0]
        warn(f"{n_out} of {n_total} image(s) flagged by image QC")
    return report
