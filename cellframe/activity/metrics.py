"""Per-assay metrics, their aggregation over folds and the Table 1 summary.

DOMAIN.md §6 and the reference's addendum: AUROC (primary) and AUPRC per assay
and fold, computed only where the test fold holds both classes (other folds are
skipped and counted); per assay the median over evaluated folds; an assay is
*well predicted* when that median AUROC exceeds 0.9. AUPRC is scikit-learn's
average precision.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import polars as pl

from cellframe.activity.columns import ASSAY, FOLD, MODALITY, PROBABILITY, READOUT
from cellframe.errors import InvalidChoiceError, MissingColumnsError, NaNExcludedWarning

__all__ = [
    "AUROC_THRESHOLDS",
    "WELL_PREDICTED_AUROC",
    "above",
    "assay_fold_metrics",
    "assay_metrics",
    "count_above",
    "count_above_by",
    "summary_table",
]

#: AUROC thresholds counted in the summary (the reference's Table 1).
AUROC_THRESHOLDS = (0.5, 0.7, 0.9)
#: Median AUROC above which an assay is well predicted.
WELL_PREDICTED_AUROC = 0.9


def _require(frame: pl.DataFrame, cols: Sequence[str], where: str) -> None:
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise MissingColumnsError(where, missing)


def above(column: str | pl.Expr, threshold: float) -> pl.Expr:
    """``column > threshold`` as a Polars expression that is False for NaN and null.

    In Polars (and DuckDB) NaN sorts above every number, so a bare
    ``pl.col("auroc") > 0.9`` is True for a NaN AUROC. Use this in every count
    or filter on a float column; :func:`count_above` also reports what it left out.

    Examples
    --------
    >>> import polars as pl
    >>> pl.DataFrame({"auroc": [0.95, float("nan"), None, 0.5]}).select(above("auroc", 0.9))["auroc"].to_list()
    [True, False, False, False]
    """
    expr = pl.col(column) if isinstance(column, str) else column
    return (expr.cast(pl.Float64).fill_nan(None) > threshold).fill_null(False)


def _not_a_number(values: pl.Series) -> pl.Series:
    v = values.cast(pl.Float64)
    return v.is_null() | v.is_nan().fill_null(True)


def count_above(
    values: pl.Series | np.ndarray | Sequence[float | None],
    threshold: float,
    *,
    what: str = "values",
) -> int:
    """How many values are strictly above ``threshold``; NaN and null are excluded and reported.

    Parameters
    ----------
    values : polars.Series, numpy array or sequence of float
        E.g. per-assay median AUROCs.
    threshold : float
        Counted when ``value > threshold``.
    what : str
        Name of the values in the warning.

    Returns
    -------
    int

    Warns
    -----
    NaNExcludedWarning
        With the number of NaN/null values left out.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     count_above([0.95, float("nan"), 0.91, 0.2], 0.9)
    2
    """
    series = values if isinstance(values, pl.Series) else pl.Series(np.asarray(values, dtype=float))
    missing = int(_not_a_number(series).sum())
    if missing:
        warnings.warn(
            f"{missing} of {series.len()} {what} are NaN or null: left out of the count "
            f"above {threshold:g} (not counted as above)",
            NaNExcludedWarning,
            stacklevel=2,
        )
    return int(series.to_frame("v").select(above("v", threshold).sum()).item())


def count_above_by(
    frame: pl.DataFrame, column: str, threshold: float, *, by: str | Sequence[str]
) -> pl.DataFrame:
    """Per group, how many ``column`` values are above ``threshold``, and how many were NaN/null.

    Parameters
    ----------
    frame : polars.DataFrame
    column : str
        Float column to count (e.g. ``"auroc"``).
    threshold : float
        Counted when ``value > threshold``.
    by : str or sequence of str
        Group columns (e.g. the modality).

    Returns
    -------
    polars.DataFrame
        ``by`` columns, ``n`` (rows), ``n_above``, ``n_excluded`` (NaN or null,
        never counted as above), sorted by ``by``.

    Warns
    -----
    NaNExcludedWarning
        With the total number of NaN/null values left out.

    Raises
    ------
    MissingColumnsError
        If ``column`` or a ``by`` column is absent.
    """
    keys = [by] if isinstance(by, str) else list(by)
    _require(frame, [*keys, column], "the table to count")
    value = pl.col(column).cast(pl.Float64)
    out = (
        frame.group_by(keys)
        .agg(
            pl.len().cast(pl.Int64).alias("n"),
            above(column, threshold).sum().cast(pl.Int64).alias("n_above"),
            (value.is_null() | value.is_nan().fill_null(True))
            .sum()
            .cast(pl.Int64)
            .alias("n_excluded"),
        )
        .sort(keys)
    )
    missing = int(out["n_excluded"].sum())
    if missing:
        warnings.warn(
            f"{missing} of {frame.height} {column!r} values are NaN or null: left out of the "
            f"counts above {threshold:g} (see n_excluded)",
            NaNExcludedWarning,
            stacklevel=2,
        )
    return out


def assay_fold_metrics(predictions: pl.DataFrame) -> pl.DataFrame:
    """AUROC and AUPRC per modality, assay and fold.

    Parameters
    ----------
    predictions : polars.DataFrame
        One row per observed test readout with ``Metadata_Modality``,
        ``Metadata_Assay``, ``Metadata_Fold``, ``readout`` (0/1) and
        ``probability``.

    Returns
    -------
    polars.DataFrame
        ``Metadata_Modality, Metadata_Assay, Metadata_Fold, n_positive, n_negative,
        evaluated, auroc, auprc``; ``evaluated`` is False (metrics null) for folds
        with one class only.

    Raises
    ------
    MissingColumnsError
        If a column is absent.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    keys = [MODALITY, ASSAY, FOLD]
    _require(predictions, [*keys, READOUT, PROBABILITY], "the predictions table")
    bad = _not_a_number(predictions[PROBABILITY]) | _not_a_number(predictions[READOUT])
    n_bad = int(bad.sum())
    if n_bad:
        # scikit-learn rejects NaN scores; a missing prediction is not a ranked one.
        warnings.warn(
            f"{n_bad} of {predictions.height} predictions have a NaN or null "
            f"{PROBABILITY!r} or {READOUT!r}: left out of AUROC/AUPRC (and of "
            "n_positive/n_negative)",
            NaNExcludedWarning,
            stacklevel=2,
        )
        predictions = predictions.filter(~bad)
    rows = []
    for key, group in predictions.sort(keys).group_by(keys, maintain_order=True):
        y = group[READOUT].to_numpy().astype(np.int64)
        p = group[PROBABILITY].to_numpy().astype(np.float64)
        n_pos = int(y.sum())
        n_neg = int(y.size - n_pos)
        ok = n_pos > 0 and n_neg > 0
        rows.append(
            (
                *key,
                n_pos,
                n_neg,
                ok,
                float(roc_auc_score(y, p)) if ok else None,
                float(average_precision_score(y, p)) if ok else None,
            )
        )
    schema = {
        MODALITY: pl.String,
        ASSAY: pl.String,
        FOLD: pl.Int64,
        "n_positive": pl.Int64,
        "n_negative": pl.Int64,
        "evaluated": pl.Boolean,
        "auroc": pl.Float64,
        "auprc": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema, orient="row")


def assay_metrics(fold_metrics: pl.DataFrame, *, aggregate: str = "median") -> pl.DataFrame:
    """Aggregate fold metrics per modality and assay.

    Parameters
    ----------
    fold_metrics : polars.DataFrame
        Output of :func:`assay_fold_metrics`.
    aggregate : {"median", "mean"}, default "median"
        Over evaluated folds (the reference reports the median).

    Returns
    -------
    polars.DataFrame
        ``Metadata_Modality, Metadata_Assay, auroc, auprc, n_folds_evaluated,
        n_folds_skipped, well_predicted``; assays never evaluated have null
        metrics and are not well predicted.
    """
    if aggregate not in ("median", "mean"):
        raise InvalidChoiceError(f"aggregate must be 'median' or 'mean', not {aggregate!r}")
    _require(fold_metrics, [MODALITY, ASSAY, "evaluated", "auroc", "auprc"], "the fold metrics")
    fold_metrics = fold_metrics.with_columns(
        pl.col("auroc").cast(pl.Float64).fill_nan(None),
        pl.col("auprc").cast(pl.Float64).fill_nan(None),
    )
    nan_evaluated = fold_metrics.filter(
        pl.col("evaluated") & (pl.col("auroc").is_null() | pl.col("auprc").is_null())
    ).height
    if nan_evaluated:
        warnings.warn(
            f"{nan_evaluated} evaluated fold(s) have a NaN or null AUROC/AUPRC: left out of "
            f"the {aggregate}",
            NaNExcludedWarning,
            stacklevel=2,
        )
    agg = getattr(pl.col("auroc").filter(pl.col("evaluated")), aggregate)
    agg_pr = getattr(pl.col("auprc").filter(pl.col("evaluated")), aggregate)
    return (
        fold_metrics.group_by(MODALITY, ASSAY, maintain_order=True)
        .agg(
            agg().alias("auroc"),
            agg_pr().alias("auprc"),
            pl.col("evaluated").sum().cast(pl.Int64).alias("n_folds_evaluated"),
            (~pl.col("evaluated")).sum().cast(pl.Int64).alias("n_folds_skipped"),
        )
        .with_columns(above("auroc", WELL_PREDICTED_AUROC).alias("well_predicted"))
    )


def summary_table(
    per_assay: pl.DataFrame, *, thresholds: Sequence[float] = AUROC_THRESHOLDS
) -> pl.DataFrame:
    """The reference's Table 1 per modality.

    Parameters
    ----------
    per_assay : polars.DataFrame
        ``Metadata_Modality, Metadata_Assay, auroc`` (and ``auprc`` when known),
        e.g. from :func:`assay_metrics`. NaN/null AUROC = assay not evaluated.
    thresholds : sequence of float
        Counted as ``n_auroc_gt_<t>`` (strictly greater).

    Returns
    -------
    polars.DataFrame
        ``Metadata_Modality, n_assays, n_evaluated, mean_auprc, mean_auroc`` and
        one count column per threshold (``n_auroc_gt_0.9`` = well predicted).
    """
    _require(per_assay, [MODALITY, ASSAY, "auroc"], "the per-assay metrics")
    frame = per_assay.with_columns(pl.col("auroc").cast(pl.Float64).fill_nan(None))
    n_missing = int(frame["auroc"].null_count())
    if n_missing:
        warnings.warn(
            f"{n_missing} of {frame.height} assays have a NaN or null AUROC: counted in "
            "n_assays but not in n_evaluated, the means or any n_auroc_gt_* count",
            NaNExcludedWarning,
            stacklevel=2,
        )
    if "auprc" in frame.columns:
        frame = frame.with_columns(pl.col("auprc").cast(pl.Float64).fill_nan(None))
    else:
        frame = frame.with_columns(pl.lit(None, pl.Float64).alias("auprc"))
    return (
        frame.group_by(MODALITY, maintain_order=True)
        .agg(
            pl.len().cast(pl.Int64).alias("n_assays"),
            pl.col("auroc").is_not_null().sum().cast(pl.Int64).alias("n_evaluated"),
            pl.col("auprc").mean().alias("mean_auprc"),
            pl.col("auroc").mean().alias("mean_auroc"),
            *[
                above("auroc", t).sum().cast(pl.Int64).alias(f"n_auroc_gt_{t:g}")
                for t in thresholds
            ],
        )
        .sort(MODALITY)
    )
