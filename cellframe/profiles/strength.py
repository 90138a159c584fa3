"""Strong treatments: Algorithm 1 of the thesis (DOMAIN.md §2).

Per plate p:

1. MCP_p = median profile of the plate's negative-control wells;
2. EDT_p = Euclidean distance of each treatment well to MCP_p;
3. ECT_p = the same for each control well;
4. z = (EDT_p - mean(ECT_p)) / std(ECT_p).

A treatment's strength Z(t) is the sum of its wells' z-scores over all plates;
the strong treatments are the top K by Z(t). Every well's distance and
z-score are kept in the output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from cellframe.columns import PLATE, TREATMENT, is_metadata
from cellframe.errors import InvalidInputError
from cellframe.profiles._common import (
    RowFilter,
    filter_columns,
    require_columns,
    resolve_features,
    row_filter,
    short_list,
    to_numpy64,
)
from cellframe.profiles.normalize import NoControlsError

__all__ = ["StrengthResult", "strong_treatments", "treatment_strength"]

DISTANCE = "Metadata_Distance_To_Controls"
ZSCORE = "Metadata_Strength_Z"
IS_CONTROL = "Metadata_Is_Control"


@dataclass(frozen=True)
class StrengthResult:
    """Per-well distances and z-scores, and per-treatment strengths.

    Attributes
    ----------
    wells : polars.DataFrame
        Every well: its metadata, ``Metadata_Is_Control``,
        ``Metadata_Distance_To_Controls`` (EDT or ECT) and ``Metadata_Strength_Z``.
    treatments : polars.DataFrame
        One row per (non-control) treatment: ``strength`` = Z(t), ``n_wells``,
        ``n_plates``, ``rank`` (1 = strongest), sorted by rank.
    """

    wells: pl.DataFrame
    treatments: pl.DataFrame

    def top(self, k: int) -> list[str]:
        """The ``k`` strongest treatments."""
        return self.treatments.head(k)[self.treatments.columns[0]].to_list()


def treatment_strength(
    lf: pl.LazyFrame | pl.DataFrame,
    *,
    treatment: str = TREATMENT,
    controls: RowFilter = "negcon",
    by: Sequence[str] = (PLATE,),
    features: Sequence[str] | None = None,
    ddof: int = 0,
) -> StrengthResult:
    """Distance of every well to its plate's median control profile, z-scored against the controls.

    Parameters
    ----------
    lf : polars.LazyFrame or DataFrame
        Well profiles (normalized, possibly sphered).
    treatment : str, default "Metadata_Treatment"
        Column naming each well's treatment.
    controls : str, polars.Expr or None, default "negcon"
        The negative-control wells (see ``row_filter``).
    by : sequence of str, default ("Metadata_Plate",)
        Groups that each have their own controls (plates).
    features : sequence of str, optional
        Features spanning the distance (default: all numeric non-metadata columns).
    ddof : int, default 0
        Degrees of freedom of the control std (0: population std).

    Returns
    -------
    StrengthResult

    Raises
    ------
    NoControlsError
        If a plate has no control wells.
    InvalidInputError
        If a plate has too few controls for a std, all its control distances
        are equal, or features have missing values.

    Examples
    --------
    Three control wells around the origin (median control profile (0, 0)) and
    two treatments; distances 1, 1 and sqrt(2) for the controls give the
    z-score scale:

    >>> import polars as pl
    >>> wells = pl.DataFrame({"Metadata_Plate": ["P"] * 5,
    ...                       "Metadata_Control": ["negcon", "negcon", "negcon", None, None],
    ...                       "Metadata_Treatment": ["DMSO", "DMSO", "DMSO", "t1", "t2"],
    ...                       "f1": [0.0, 1.0, -1.0, 0.5, 6.0],
    ...                       "f2": [1.0, 0.0, -1.0, 0.0, 8.0]})
    >>> result = treatment_strength(wells)
    >>> result.wells["Metadata_Distance_To_Controls"].round(4).to_list()
    [1.0, 1.0, 1.4142, 0.5, 10.0]
    >>> result.treatments.select("Metadata_Treatment", "rank").rows()
    [('t2', 1), ('t1', 2)]
    >>> round(result.treatments["strength"][0], 3)
    45.385
    """
    if controls is None or controls == "all":
        raise InvalidInputError(
            "strong-treatment selection needs negative controls; pass controls=..."
        )
    lf = lf.lazy()
    where = "the well profiles"
    by = [by] if isinstance(by, str) else list(by)
    require_columns(lf, [*by, treatment, *filter_columns(controls)], where)
    feats = resolve_features(lf, features, where)
    predicate = row_filter(controls)
    assert predicate is not None
    df = lf.with_columns(predicate.fill_null(False).alias(IS_CONTROL)).collect()
    x = to_numpy64(df, feats)
    # NaN or infinite features make NaN distances and z-scores, and NaN sorts
    # above every number: it would head the top-k. Refuse them here.
    nan_cols = ~np.isfinite(x).all(axis=0)
    if nan_cols.any():
        names = [f for f, b in zip(feats, nan_cols, strict=True) if b]
        n_bad = int((~np.isfinite(x)).sum())
        raise InvalidInputError(
            f"{len(names)} feature(s) of {where} have missing or infinite values "
            f"({n_bad} values; {short_list(names)}); drop or impute them before computing "
            "distances"
        )
    is_ctrl = df[IS_CONTROL].to_numpy()
    group_ids = (
        df.select(pl.struct(by).rank("dense").alias("g"))["g"].to_numpy()
        if by
        else np.zeros(df.height, dtype=np.int64)
    )
    dist = np.empty(df.height)
    z = np.empty(df.height)
    for g in np.unique(group_ids):
        rows = group_ids == g
        label = ", ".join(f"{c}={df[c][int(np.flatnonzero(rows)[0])]!r}" for c in by) or "all wells"
        ctrl = rows & is_ctrl
        n_ctrl = int(ctrl.sum())
        if n_ctrl == 0:
            raise NoControlsError(
                f"{label} has no control wells (controls={controls!r}); Algorithm 1 measures "
                "distances to each plate's controls: add controls or drop that plate"
            )
        if n_ctrl <= ddof or n_ctrl < 2:
            raise InvalidInputError(
                f"{label} has {n_ctrl} control well(s); at least 2 are needed for the "
                "control distances' std"
            )
        mcp = np.median(x[ctrl], axis=0)
        dist[rows] = np.sqrt(((x[rows] - mcp) ** 2).sum(axis=1))
        ect = dist[ctrl]
        sd = ect.std(ddof=ddof)
        if sd == 0:
            raise InvalidInputError(
                f"the control wells of {label} are all equally far from their median"
            )
        z[rows] = (dist[rows] - ect.mean()) / sd
    meta = [c for c in df.columns if is_metadata(c) and c != IS_CONTROL]
    wells = df.select(meta).with_columns(
        df[IS_CONTROL],
        pl.Series(DISTANCE, dist),
        pl.Series(ZSCORE, z),
    )
    treatments = (
        wells.filter(~pl.col(IS_CONTROL))
        .group_by(treatment)
        .agg(
            pl.col(ZSCORE).sum().alias("strength"),
            pl.len().alias("n_wells"),
            (pl.struct(by).n_unique() if by else pl.lit(1)).alias("n_plates"),
        )
        .sort(["strength", treatment], descending=[True, False], nulls_last=True)
        .with_columns(pl.int_range(1, pl.len() + 1).alias("rank"))
    )
    return StrengthResult(wells=wells, treatments=treatments)


def strong_treatments(
    lf: pl.LazyFrame | pl.DataFrame,
    k: int = 10,
    *,
    treatment: str = TREATMENT,
    controls: RowFilter = "negcon",
    by: Sequence[str] = (PLATE,),
    features: Sequence[str] | None = None,
    ddof: int = 0,
) -> pl.DataFrame:
    """The top ``k`` treatments by strength Z(t) (see :func:`treatment_strength`).

    Parameters
    ----------
    lf : polars.LazyFrame or DataFrame
        Well profiles (normalized, possibly sphered).
    k : int, default 10
        How many treatments to keep (at least 1).
    treatment : str, default "Metadata_Treatment"
        Column naming each well's treatment.
    controls : str, polars.Expr or None, default "negcon"
        The negative-control wells (see ``row_filter``).
    by : sequence of str, default ("Metadata_Plate",)
        Groups that each have their own controls (plates).
    features : sequence of str, optional
        Features spanning the distance (default: all numeric non-metadata columns).
    ddof : int, default 0
        Degrees of freedom of the control std (0: population std).

    Returns
    -------
    polars.DataFrame
        The first ``k`` rows of :attr:`StrengthResult.treatments` (treatment,
        ``strength``, ``n_wells``, ``n_plates``, ``rank``), strongest first.

    Raises
    ------
    InvalidInputError
        If ``k`` is below 1, or as :func:`treatment_strength` does.

    Examples
    --------
    >>> import polars as pl
    >>> wells = pl.DataFrame({
    ...     "Metadata_Plate": ["P"] * 5,
    ...     "Metadata_Treatment": ["dmso", "dmso", "dmso", "a", "b"],
    ...     "Metadata_Control": ["negcon"] * 3 + ["", ""],
    ...     "f": [0.0, 1.0, -1.0, 3.0, 10.0]})
    >>> strong_treatments(wells, k=1)["Metadata_Treatment"].to_list()
    ['b']
    """
    if k < 1:
        raise InvalidInputError(f"strong_treatments: k={k}; pass k=1 or more treatments to keep")
    result = treatment_strength(
        lf, treatment=treatment, controls=controls, by=by, features=features, ddof=ddof
    )
    return result.treatments.head(k)
