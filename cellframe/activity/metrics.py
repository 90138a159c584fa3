"""Per-assay metrics, their aggregation over folds and the Table 1 summary.

DOMAIN.md §6 and the reference's addendum: AUROC (primary) and AUPRC per assay
and fold, computed only where the test fold holds both classes (other folds are
skipped and counted); per assay the median over evaluated folds; an assay is
*well predicted* when that median AUROC exceeds 0.9. AUPRC is scikit-learn's
average precision.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from cellframe.activity.columns import ASSAY, FOLD, MODALITY, PROBABILITY, READOUT
from cellframe.errors import MissingColumnsError

__all__ = [
    "AUROC_THRESHOLDS",
    "WELL_PREDICTED_AUROC",
    "assay_fold_metrics",
    "assay_metrics",
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
        raise ValueError(f"aggregate must be 'median' or 'mean', not {aggregate!r}")
    _require(fold_metrics, [MODALITY, ASSAY, "evaluated", "auroc", "auprc"], "the fold metrics")
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
        .with_columns(
            (pl.col("auroc").fill_nan(None) > WELL_PREDICTED_AUROC)
            .fill_null(False)
            .alias("well_predicted")
        )
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
                (pl.col("auroc") > t).sum().cast(pl.Int64).alias(f"n_auroc_gt_{t:g}")
                for t in thresholds
            ],
        )
        .sort(MODALITY)
    )
