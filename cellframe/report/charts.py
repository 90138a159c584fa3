"""Altair charts of cellframe tables (DOMAIN.md §7).

Each function takes a Polars frame (a store table or a metric table) and
returns an ``alt.Chart`` (or a compound chart), so analysts can compose,
restyle and save them like any Altair chart. Column names are parameters with
the defaults cellframe's own tables use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import altair as alt
import numpy as np
import polars as pl

from cellframe.columns import CONTROL, PLATE, feature_columns
from cellframe.errors import InvalidInputError, MissingColumnsError

__all__ = [
    "auroc_threshold_chart",
    "lambda_sweep_chart",
    "map_vs_enrichment_chart",
    "pca_before_after_chart",
    "pca_chart",
    "pca_coordinates",
    "precision_recall_chart",
    "qc_outlier_chart",
    "tta_delta_chart",
    "umap_chart",
    "well_predicted_overlap_chart",
]


def _require(df: pl.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise MissingColumnsError(f"the table for the {what} chart", missing)
    if df.height == 0:
        raise InvalidInputError(f"the table for the {what} chart has no rows")


def pca_coordinates(
    profiles: pl.DataFrame,
    *,
    features: Sequence[str] | None = None,
    n_components: int = 2,
) -> tuple[pl.DataFrame, np.ndarray]:
    """Project profiles on their first principal components.

    Parameters
    ----------
    profiles : polars.DataFrame
        Profiles with ``Metadata_*`` columns and features.
    features : sequence of str, optional
        Feature columns (default: every feature column).
    n_components : int, default 2
        Number of components.

    Returns
    -------
    coordinates : polars.DataFrame
        The non-feature columns and ``PC1`` ... ``PCk``.
    explained : numpy.ndarray
        Fraction of the total variance explained by each component.

    Notes
    -----
    Features are centred (not scaled); rows with a missing or infinite value
    are left out.
    """
    feats = list(features) if features is not None else feature_columns(profiles)
    if len(feats) < n_components:
        raise InvalidInputError(
            f"PCA needs at least {n_components} feature columns; the profiles have {len(feats)}"
        )
    complete = profiles.drop_nulls(feats).filter(
        pl.all_horizontal([pl.col(c).is_finite() for c in feats])
    )
    if complete.height < 2:
        raise InvalidInputError("PCA needs at least 2 profiles without missing values")
    x = complete.select(feats).to_numpy().astype(np.float64)
    x -= x.mean(axis=0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    scores = u[:, :n_components] * s[:n_components]
    explained = (s**2 / np.sum(s**2))[:n_components]
    meta = complete.select([c for c in complete.columns if c not in set(feats)])
    coords = meta.with_columns([pl.Series(f"PC{i + 1}", scores[:, i]) for i in range(n_components)])
    return coords, explained


def pca_chart(
    profiles: pl.DataFrame,
    *,
    color: str = PLATE,
    shape: str | None = CONTROL,
    features: Sequence[str] | None = None,
    title: str = "PCA of well profiles",
) -> alt.Chart:
    """Scatter of the first two principal components, coloured by a column.

    Parameters
    ----------
    profiles : polars.DataFrame
        Well (or any level) profiles.
    color : str, default "Metadata_Plate"
        Column that colours the points.
    shape : str or None, default "Metadata_Control"
        Column that sets the point shape (ignored when absent).
    features : sequence of str, optional
        Feature columns (default: all).
    title : str
        Chart title.

    Returns
    -------
    altair.Chart
    """
    _require(profiles, [color], "PCA")
    coords, explained = pca_coordinates(profiles, features=features)
    left_out = profiles.height - coords.height
    if left_out:
        title = f"{title} ({left_out} profiles with missing values left out)"
    if shape is not None and shape in coords.columns:
        coords = coords.with_columns(pl.col(shape).fill_null("none"))
    tooltip = [c for c in coords.columns if c.startswith("Metadata_")][:6]
    enc = {
        "x": alt.X("PC1:Q", title=f"PC1 ({explained[0]:.0%})"),
        "y": alt.Y("PC2:Q", title=f"PC2 ({explained[1]:.0%})"),
        "color": alt.Color(f"{color}:N"),
        "tooltip": tooltip,
    }
    if shape is not None and shape in coords.columns:
        enc["shape"] = alt.Shape(f"{shape}:N")
    return (
        alt.Chart(coords.to_pandas(), title=title)
        .mark_point(filled=True, opacity=0.7)
        .encode(**enc)
        .properties(width=320, height=280)
    )


def pca_before_after_chart(
    before: pl.DataFrame,
    after: pl.DataFrame,
    *,
    color: str = PLATE,
    shape: str | None = CONTROL,
) -> alt.HConcatChart:
    """PCA of profiles before and after batch correction, side by side."""
    return alt.hconcat(
        pca_chart(before, color=color, shape=shape, title="Before sphering"),
        pca_chart(after, color=color, shape=shape, title="After sphering"),
    )


def umap_chart(
    profiles: pl.DataFrame,
    *,
    color: str = PLATE,
    features: Sequence[str] | None = None,
    random_state: int = 0,
    title: str = "UMAP of well profiles",
) -> alt.Chart:
    """UMAP embedding of profiles (needs the optional ``umap-learn`` package).

    Raises
    ------
    ImportError
        If umap-learn is not installed (use :func:`pca_chart` instead).
    """
    try:
        import umap
    except ImportError as exc:
        raise ImportError("umap_chart needs umap-learn: pip install umap-learn") from exc
    _require(profiles, [color], "UMAP")
    feats = list(features) if features is not None else feature_columns(profiles)
    complete = profiles.drop_nulls(feats)
    xy = umap.UMAP(random_state=random_state).fit_transform(complete.select(feats).to_numpy())
    coords = complete.select(color).with_columns(
        pl.Series("UMAP1", xy[:, 0]), pl.Series("UMAP2", xy[:, 1])
    )
    return (
        alt.Chart(coords.to_pandas(), title=title)
        .mark_point(filled=True, opacity=0.7)
        .encode(x="UMAP1:Q", y="UMAP2:Q", color=f"{color}:N")
        .properties(width=320, height=280)
    )


def map_vs_enrichment_chart(
    summary: pl.DataFrame,
    *,
    source: str = "source",
    map_column: str = "mAP",
    enrichment_column: str = "folds_of_enrichment",
) -> alt.Chart:
    """mAP against folds of enrichment, one point per feature source.

    Parameters
    ----------
    summary : polars.DataFrame
        One row per feature source (CellProfiler, pre-trained CNN, trained CNN).
    """
    _require(summary, [source, map_column, enrichment_column], "mAP vs enrichment")
    base = alt.Chart(summary.to_pandas(), title="Retrieval of MoA by feature source")
    points = base.mark_point(filled=True, size=120).encode(
        x=alt.X(
            f"{enrichment_column}:Q",
            title="Folds of enrichment (top 1%)",
            scale=alt.Scale(zero=False, padding=30),
        ),
        y=alt.Y(f"{map_column}:Q", title="mAP", scale=alt.Scale(zero=False, padding=30)),
        color=alt.Color(f"{source}:N", legend=None),
        tooltip=[source, map_column, enrichment_column],
    )
    labels = base.mark_text(dx=8, align="left").encode(
        x=f"{enrichment_column}:Q", y=f"{map_column}:Q", text=f"{source}:N"
    )
    return (points + labels).properties(width=320, height=280)


def lambda_sweep_chart(
    sweep: pl.DataFrame,
    *,
    lambda_column: str = "lambda",
    score_column: str = "score",
    group: str | None = None,
) -> alt.Chart:
    """Evaluation score (e.g. mAP) over the sphering regularisation sweep (log x axis)."""
    _require(sweep, [lambda_column, score_column], "lambda sweep")
    enc = {
        "x": alt.X(f"{lambda_column}:Q", scale=alt.Scale(type="log"), title="lambda"),
        "y": alt.Y(f"{score_column}:Q", title=score_column),
        "tooltip": [lambda_column, score_column],
    }
    if group is not None:
        enc["color"] = alt.Color(f"{group}:N")
    return (
        alt.Chart(sweep.to_pandas(), title="Sphering: score over lambda")
        .mark_line(point=True)
        .encode(**enc)
        .properties(width=320, height=240)
    )


def precision_recall_chart(
    curves: pl.DataFrame,
    *,
    recall: str = "recall",
    precision: str = "precision",
    group: str | None = None,
) -> alt.Chart:
    """Averaged (interpolated) precision-recall curves."""
    _require(curves, [recall, precision], "precision-recall")
    enc = {
        "x": alt.X(f"{recall}:Q", scale=alt.Scale(domain=[0, 1]), title="Recall"),
        "y": alt.Y(f"{precision}:Q", scale=alt.Scale(domain=[0, 1]), title="Precision"),
    }
    if group is not None:
        enc["color"] = alt.Color(f"{group}:N")
    return (
        alt.Chart(curves.to_pandas(), title="Averaged precision-recall")
        .mark_line()
        .encode(**enc)
        .properties(width=320, height=240)
    )


def qc_outlier_chart(
    qc: pl.DataFrame,
    *,
    x: str = "PC1",
    y: str = "PC2",
    outlier: str = "is_outlier",
    reason: str | None = "reason",
) -> alt.Chart:
    """Well profiles on two PCs, outliers highlighted, reasons in the tooltip."""
    _require(qc, [x, y, outlier], "QC outlier")
    tooltip = [c for c in (PLATE, "Metadata_Well", reason) if c is not None and c in qc.columns]
    return (
        alt.Chart(qc.to_pandas(), title="QC: outlier wells")
        .mark_point(filled=True)
        .encode(
            x=f"{x}:Q",
            y=f"{y}:Q",
            color=alt.Color(f"{outlier}:N", scale=alt.Scale(range=["#9aa5b1", "#d62728"])),
            tooltip=tooltip,
        )
        .properties(width=320, height=280)
    )


def tta_delta_chart(
    deltas: pl.DataFrame, *, image: str = "image", delta: str = "delta"
) -> alt.Chart:
    """Per-image change of the segmentation score with test-time augmentation."""
    _require(deltas, [image, delta], "TTA delta")
    return (
        alt.Chart(deltas.to_pandas(), title="Test-time augmentation: score change per image")
        .mark_bar()
        .encode(
            x=alt.X(f"{image}:N", sort="-y", title="Image"),
            y=alt.Y(f"{delta}:Q", title="merged - original"),
            color=alt.condition(
                f"datum['{delta}'] >= 0", alt.value("#2ca02c"), alt.value("#d62728")
            ),
        )
        .properties(width=360, height=220)
    )


def auroc_threshold_chart(
    per_assay: pl.DataFrame,
    *,
    modality: str = "modality",
    auroc: str = "auroc",
    thresholds: Sequence[float] | None = None,
) -> alt.Chart:
    """Number of assays predicted with AUROC above each threshold, per modality.

    Parameters
    ----------
    per_assay : polars.DataFrame
        One row per (modality, assay) with the assay's (median) AUROC.
    thresholds : sequence of float, optional
        Thresholds (default 0.50 to 1.00 by 0.01).
    """
    _require(per_assay, [modality, auroc], "AUROC threshold")
    grid = (
        np.round(np.arange(0.5, 1.0001, 0.01), 2) if thresholds is None else np.asarray(thresholds)
    )
    rows = []
    for (mod,), group in per_assay.group_by(modality, maintain_order=True):
        values = group[auroc].drop_nulls().to_numpy()
        for t in grid:
            rows.append({modality: mod, "threshold": float(t), "assays": int((values > t).sum())})
    return (
        alt.Chart(pl.DataFrame(rows).to_pandas(), title="Assays predicted above an AUROC threshold")
        .mark_line()
        .encode(
            x=alt.X("threshold:Q", title="AUROC threshold"),
            y=alt.Y("assays:Q", title="Number of assays"),
            color=alt.Color(f"{modality}:N"),
        )
        .properties(width=320, height=240)
    )


def well_predicted_overlap_chart(sets: Mapping[str, Sequence[str]]) -> alt.Chart:
    """Sizes of every intersection of the well-predicted assay sets of the modalities.

    Parameters
    ----------
    sets : mapping of str to sequence of str
        Modality -> ids of its well-predicted assays (median AUROC > 0.9).

    Returns
    -------
    altair.Chart
        A bar per exact combination of modalities (UpSet-style), labelled
        e.g. ``CS+MO``.
    """
    if not sets:
        raise InvalidInputError("no modalities given for the overlap chart")
    names = list(sets)
    membership: dict[str, set[str]] = {}
    for name in names:
        for assay in sets[name]:
            membership.setdefault(assay, set()).add(name)
    counts: dict[str, int] = {}
    for members in membership.values():
        key = "+".join(n for n in names if n in members)
        counts[key] = counts.get(key, 0) + 1
    df = pl.DataFrame({"modalities": list(counts), "assays": list(counts.values())})
    return (
        alt.Chart(df.to_pandas(), title="Well-predicted assays shared between modalities")
        .mark_bar()
        .encode(
            x=alt.X("modalities:N", sort="-y", title="Exactly these modalities"),
            y=alt.Y("assays:Q", title="Assays"),
            tooltip=["modalities", "assays"],
        )
        .properties(width=320, height=240)
    )
