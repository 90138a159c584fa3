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
    "finite_rows",
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
    explained : numpy.ndarray, shape (k,)
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
    on_top: str | None = CONTROL,
    features: Sequence[str] | None = None,
    title: str = "PCA of well profiles",
    missing_label: str = "treated",
    colors: Mapping[str, str] | None = None,
) -> alt.LayerChart:
    """Scatter of the first two principal components, coloured by a column.

    Parameters
    ----------
    profiles : polars.DataFrame
        Well (or any level) profiles.
    color : str, default "Metadata_Plate"
        Column that colours the points.
    shape : str or None, default "Metadata_Control"
        Column that sets the point shape (ignored when absent).
    on_top : str or None, default "Metadata_Control"
        Rows where this column is set (the controls) are drawn in a second
        layer over the others, so a few control wells are never hidden under
        hundreds of treated wells (ignored when absent).
    features : sequence of str, optional
        Feature columns (default: all).
    title : str
        Chart title.
    missing_label : str, default "treated"
        Shown for null values of ``color`` and ``shape``.
    colors : mapping of str to str, optional
        Value of ``color`` -> colour (default: Vega's category colours).

    Returns
    -------
    altair.LayerChart
        The points under ``on_top`` first, then those with it set.
    """
    _require(profiles, [color], "PCA")
    coords, explained = pca_coordinates(profiles, features=features)
    left_out = profiles.height - coords.height
    if left_out:
        title = f"{title} ({left_out} profiles with missing values left out)"
    top = (
        coords[on_top].is_not_null().to_numpy()
        if on_top is not None and on_top in coords.columns
        else np.zeros(coords.height, dtype=bool)
    )
    for c in {color, shape} - {None}:
        if c in coords.columns:
            coords = coords.with_columns(pl.col(c).cast(pl.String).fill_null(missing_label))
    tooltip = [c for c in coords.columns if c.startswith("Metadata_")][:6]
    enc = {
        "x": alt.X("PC1:Q", title=f"PC1 ({explained[0]:.0%} of variance)"),
        "y": alt.Y("PC2:Q", title=f"PC2 ({explained[1]:.0%} of variance)"),
        "color": alt.Color(
            f"{color}:N",
            title=color.removeprefix("Metadata_"),
            scale=alt.Scale(domain=list(colors), range=list(colors.values()))
            if colors
            else alt.Undefined,
        ),
        "tooltip": tooltip,
    }
    if shape is not None and shape != color and shape in coords.columns:
        enc["shape"] = alt.Shape(f"{shape}:N", title=shape.removeprefix("Metadata_"))
    under = coords.filter(pl.Series(~top))
    over = coords.filter(pl.Series(top))
    layers = [
        alt.Chart(part.to_pandas())
        .mark_point(filled=True, opacity=opacity, size=size)
        .encode(**enc)
        for part, opacity, size in ((under, 0.45, 30), (over, 0.95, 60))
        if part.height
    ]
    return alt.layer(*layers, title=title).properties(width=320, height=280)


def pca_before_after_chart(
    before: pl.DataFrame,
    after: pl.DataFrame,
    *,
    color: str = PLATE,
    shape: str | None = CONTROL,
    on_top: str | None = CONTROL,
    labels: tuple[str, str] = ("Before sphering", "After sphering"),
    colors: Mapping[str, str] | None = None,
) -> alt.HConcatChart:
    """PCA of profiles before and after a correction, side by side (each its own PCA).

    Parameters
    ----------
    before, after : polars.DataFrame
        The same wells before and after the correction.
    color, shape, on_top, colors
        As in :func:`pca_chart` (controls drawn on top by default).
    labels : (str, str)
        Panel titles.

    Returns
    -------
    altair.HConcatChart
    """
    return alt.hconcat(
        pca_chart(before, color=color, shape=shape, on_top=on_top, title=labels[0], colors=colors),
        pca_chart(after, color=color, shape=shape, on_top=on_top, title=labels[1], colors=colors),
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


def _padded_domain(values: np.ndarray, *, min_span: float = 0.0) -> list[float]:
    """Axis domain around the finite values, padded by 10% of their range (at least ``min_span``)."""
    v = values[np.isfinite(values)]
    lo, hi = float(v.min()), float(v.max())
    pad = max((hi - lo) * 0.1, min_span / 2)
    return [lo - pad, hi + pad]


def lambda_sweep_chart(
    sweep: pl.DataFrame,
    *,
    lambda_column: str = "lambda",
    score_column: str = "score",
    score_title: str = "score",
    group: str | None = None,
    best: float | None = None,
) -> alt.LayerChart:
    """Evaluation score (e.g. mAP) over the sphering regularisation sweep (log x axis).

    Parameters
    ----------
    sweep : polars.DataFrame
        One row per lambda (:func:`cellframe.profiles.lambda_sweep`).
    lambda_column, score_column : str
        Column names.
    score_title : str
        Y axis title (name the score and its unit).
    group : str, optional
        Column that draws one line per group.
    best : float, optional
        The lambda used downstream, marked with a vertical rule.

    Returns
    -------
    altair.LayerChart
        The y axis spans the scores' actual range (not from zero), so a small
        difference is visible; the title states the range.

    Raises
    ------
    InvalidInputError
        If no score is finite or a lambda is not positive (log axis).
    """
    _require(sweep, [lambda_column, score_column], "lambda sweep")
    scores = sweep[score_column].cast(pl.Float64).to_numpy()
    if not np.isfinite(scores).any():
        raise InvalidInputError(f"the lambda sweep has no finite {score_column!r}")
    if (sweep[lambda_column] <= 0).any():
        raise InvalidInputError(
            f"the lambda sweep's {lambda_column!r} must be positive for the log axis"
        )
    domain = _padded_domain(scores, min_span=0.01)
    lo, hi = np.nanmin(scores), np.nanmax(scores)
    enc = {
        "x": alt.X(
            f"{lambda_column}:Q",
            axis=alt.Axis(values=sorted(set(sweep[lambda_column].to_list())), format="~g"),
            scale=alt.Scale(type="log"),
            title="lambda (ridge added to the control covariance, log scale)",
        ),
        "y": alt.Y(
            f"{score_column}:Q", title=score_title, scale=alt.Scale(domain=domain, zero=False)
        ),
        "tooltip": [
            alt.Tooltip(f"{lambda_column}:Q", format="g"),
            alt.Tooltip(f"{score_column}:Q", format=".4f"),
        ],
    }
    if group is not None:
        enc["color"] = alt.Color(f"{group}:N")
    title = f"Sphering: {score_title} over lambda (range {lo:.3f} to {hi:.3f})"
    line = alt.Chart(sweep.to_pandas()).mark_line(point=True).encode(**enc)
    layers = [line]
    if best is not None:
        layers.append(
            alt.Chart(pl.DataFrame({lambda_column: [best]}).to_pandas())
            .mark_rule(strokeDash=[4, 3], color="#7b8794")
            .encode(
                x=f"{lambda_column}:Q",
                tooltip=[alt.Tooltip(f"{lambda_column}:Q", title="lambda used", format="g")],
            )
        )
    return alt.layer(*layers, title=title).properties(width=360, height=240)


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
    """Per-image change of the segmentation score with test-time augmentation.

    Parameters
    ----------
    deltas : polars.DataFrame
        One row per image: ``image``, ``delta`` (score with TTA minus without)
        and, when present, ``original`` and ``tta`` (shown in the tooltip).

    Returns
    -------
    altair.Chart
        Bars sorted by the change; green where TTA helped, red where it hurt.
    """
    _require(deltas, [image, delta], "TTA delta")
    tips = [alt.Tooltip(f"{image}:N")] + [
        alt.Tooltip(f"{c}:Q", format=".3f", title=t)
        for c, t in (
            ("original", "score without TTA"),
            ("tta", "score with TTA"),
            (delta, "change"),
        )
        if c in deltas.columns
    ]
    return (
        alt.Chart(deltas.to_pandas(), title="Test-time augmentation: score change per image")
        .mark_bar()
        .encode(
            x=alt.X(f"{image}:N", sort="-y", title="Held-out image", axis=alt.Axis(labelAngle=0)),
            y=alt.Y(f"{delta}:Q", title="DSB score with TTA minus without (0-1 scale)"),
            color=alt.condition(
                f"datum['{delta}'] >= 0", alt.value("#2ca02c"), alt.value("#d62728")
            ),
            tooltip=tips,
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
    kept, _ = finite_rows(per_assay, [auroc])  # NaN > t is true in Polars: never count it
    for (mod,), group in kept.group_by(modality, maintain_order=True):
        values = group[auroc].to_numpy()
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


def finite_rows(df: pl.DataFrame, columns: Sequence[str]) -> tuple[pl.DataFrame, int]:
    """Rows whose ``columns`` are all non-null (and finite, for float columns), and how many were left out.

    Polars and DuckDB order NaN above every number (``NaN > 0.9`` is true), so
    every count or threshold in a chart goes through this first.
    """
    floats = [c for c in columns if df.schema[c].is_float()]
    others = [c for c in columns if c not in set(floats)]
    checks = []
    if floats:
        checks.append(pl.all_horizontal(pl.col(floats).is_finite().fill_null(False)))
    if others:
        checks.append(pl.all_horizontal(pl.col(others).is_not_null()))
    kept = df.filter(*checks) if checks else df
    return kept, df.height - kept.height
