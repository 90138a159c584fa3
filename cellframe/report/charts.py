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

from cellframe.columns import CONTROL, MOA, PLATE, TREATMENT, WELL, feature_columns
from cellframe.errors import InvalidInputError, MissingColumnsError

__all__ = [
    "assay_prediction_chart",
    "auroc_threshold_chart",
    "compound_activity_chart",
    "finite_rows",
    "lambda_sweep_chart",
    "map_vs_enrichment_chart",
    "moa_retrieval_chart",
    "moa_summary",
    "pca_before_after_chart",
    "pca_chart",
    "pca_coordinates",
    "plate_heatmap_chart",
    "plate_layout",
    "precision_recall_chart",
    "qc_outlier_chart",
    "replicate_similarity_chart",
    "tta_delta_chart",
    "umap_chart",
    "well_predicted_counts",
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


def compound_activity_chart(
    activity: pl.DataFrame,
    *,
    treatment: str = TREATMENT,
    map_column: str = "mean_average_precision",
    q_column: str = "corrected_p_value",
    source: str | None = "source",
    threshold: float = 0.05,
    n_labels: int = 6,
    label: str | None = None,
    tooltip: Sequence[str] = (),
) -> alt.HConcatChart:
    """mAP against -log10 q per compound (a volcano-style plot), with the q threshold.

    Parameters
    ----------
    activity : polars.DataFrame
        One row per compound (and ``source``): the output of
        :func:`cellframe.evaluate.mean_average_precision` on phenotypic-activity APs.
    treatment, map_column, q_column : str
        Column names (the compound, its mAP, its BH-corrected p-value).
    source : str or None, default "source"
        One panel per value of this column (e.g. before and after sphering);
        ignored when absent.
    threshold : float, default 0.05
        q-value drawn as a dashed line; points below it are called active.
    n_labels : int, default 6
        The active compounds with the highest mAP are labelled, per panel.
    label : str, optional
        Column holding the text of the labels (default ``treatment``).
    tooltip : sequence of str
        Extra columns shown in the tooltip (e.g. the MoA).

    Returns
    -------
    altair.HConcatChart
        One panel per source, sharing both axes. Rows with a missing or NaN
        mAP or q are left out and counted in the panel title.

    Raises
    ------
    MissingColumnsError
        If a column is missing.
    InvalidInputError
        If the table is empty or no row has a finite mAP and q.
    """
    _require(activity, [treatment, map_column, q_column], "compound activity")
    if not 0 < threshold < 1:
        raise InvalidInputError(f"threshold must be in (0, 1), got {threshold}")
    label = label or treatment
    kept, _ = finite_rows(activity, [map_column, q_column])
    if kept.height == 0:
        raise InvalidInputError(
            f"compound activity chart: no row has a finite {map_column!r} and {q_column!r}"
        )
    floor = float(kept.filter(pl.col(q_column) > 0)[q_column].min() or 1e-4)
    panels = (
        activity.partition_by(source, maintain_order=True, as_dict=True)
        if source is not None and source in activity.columns
        else {("",): activity}
    )
    neglog = -np.log10(np.clip(kept[q_column].to_numpy(), floor, 1.0))
    y_domain = [0.0, float(max(neglog.max(), -np.log10(threshold))) * 1.08]
    x_domain = _padded_domain(kept[map_column].to_numpy().astype(np.float64), min_span=0.05)
    x_domain = [max(0.0, x_domain[0]), min(1.0, x_domain[1])]
    charts = []
    for (name,), part in panels.items():
        data, dropped = finite_rows(part, [map_column, q_column])
        data = data.with_columns(
            (-pl.col(q_column).clip(floor, 1.0).log10()).alias("neg_log10_q"),
            pl.when(pl.col(q_column) < threshold)
            .then(pl.lit(f"active (q < {threshold:g})"))
            .otherwise(pl.lit("not active"))
            .alias("call"),
        )
        n_active = int((data[q_column] < threshold).sum())
        top = (
            data.filter(pl.col(q_column) < threshold)
            .sort(map_column, descending=True)
            .head(n_labels)
        )
        title = (
            f"{name}: {n_active} of {data.height} active"
            if name
            else f"{n_active} of {data.height} active"
        )
        if dropped:
            title += f" ({dropped} without a finite mAP or q left out)"
        tips = [
            alt.Tooltip(f"{treatment}:N"),
            *[alt.Tooltip(f"{c}:N") for c in tooltip if c in data.columns],
            alt.Tooltip(f"{map_column}:Q", title="mAP", format=".3f"),
            alt.Tooltip(f"{q_column}:Q", title="q (BH)", format=".3g"),
        ]
        x = alt.X(
            f"{map_column}:Q",
            title="mAP (replicates vs DMSO, 0-1)",
            scale=alt.Scale(domain=x_domain),
        )
        y = alt.Y(
            "neg_log10_q:Q",
            title="-log10 q (BH-corrected permutation p)",
            scale=alt.Scale(domain=y_domain),
        )
        points = (
            alt.Chart(data.to_pandas())
            .mark_circle(size=55, opacity=0.75)
            .encode(
                x=x,
                y=y,
                color=alt.Color(
                    "call:N",
                    title="call",
                    scale=alt.Scale(
                        domain=[f"active (q < {threshold:g})", "not active"],
                        range=["#d62728", "#9aa5b1"],
                    ),
                ),
                tooltip=tips,
            )
        )
        rule = (
            alt.Chart(pl.DataFrame({"q": [threshold], "y": [-np.log10(threshold)]}).to_pandas())
            .mark_rule(strokeDash=[5, 4], color="#52606d")
            .encode(y="y:Q", tooltip=[alt.Tooltip("q:Q", title="threshold q")])
        )
        placed = place_labels(
            top, x=map_column, y="neg_log10_q", label=label,
            x_domain=x_domain, y_domain=y_domain, width=340, height=280, obstacles=data,
        )  # fmt: skip
        layers = [points, rule]
        if placed.height:
            layers.append(
                alt.Chart(placed.to_pandas())
                .mark_rule(color="#9aa5b1", strokeWidth=0.7)
                .encode(x=x, y=y, x2="label_x:Q", y2="label_y:Q")
            )
            for align in ("left", "right"):
                part = placed.filter(pl.col("align") == align)
                if part.height:
                    layers.append(
                        alt.Chart(part.to_pandas())
                        .mark_text(align=align, baseline="middle", fontSize=10)
                        .encode(
                            x=alt.X("label_x:Q", scale=alt.Scale(domain=x_domain)),
                            y=alt.Y("label_y:Q", scale=alt.Scale(domain=y_domain)),
                            text=f"{label}:N",
                            tooltip=tips,
                        )
                    )
        charts.append(alt.layer(*layers, title=title).properties(width=340, height=280))
    return alt.hconcat(*charts)


def place_labels(
    points: pl.DataFrame,
    *,
    x: str,
    y: str,
    label: str,
    x_domain: Sequence[float],
    y_domain: Sequence[float],
    width: float,
    height: float,
    obstacles: pl.DataFrame | None = None,
    char_px: float = 5.6,
    line_px: float = 13.0,
    point_px: float = 4.0,
) -> pl.DataFrame:
    """Greedy positions for point labels that do not overlap one another.

    Each label goes beside its point (right of it, or left near the right
    edge); when that spot is taken it moves up or down by whole lines, so tied
    points (many compounds at the same q) get a stack of labels joined to
    their points by the connector the caller draws. Labels also keep clear of
    the points in ``obstacles`` (e.g. every point of the chart).

    Returns
    -------
    polars.DataFrame
        The rows of ``points`` that found room, in their order, with
        ``label_x``, ``label_y`` (data units) and ``align`` ("left"/"right").
    """
    x0, x1 = float(x_domain[0]), float(x_domain[1])
    y0, y1 = float(y_domain[0]), float(y_domain[1])

    def to_px(xv: float, yv: float) -> tuple[float, float]:
        return (xv - x0) / (x1 - x0) * width, height - (yv - y0) / (y1 - y0) * height

    boxes: list[tuple[float, float, float, float]] = []
    if obstacles is not None:
        for xv, yv in zip(obstacles[x].to_list(), obstacles[y].to_list(), strict=True):
            ox, oy = to_px(xv, yv)
            boxes.append((ox - point_px, oy - point_px, ox + point_px, oy + point_px))
    keep, lx, ly, al = [], [], [], []
    for i, row in enumerate(points.iter_rows(named=True)):
        px, py = to_px(row[x], row[y])
        w = char_px * len(str(row[label]))
        right = px + 8 + w <= width
        found = None
        for step in (0, -1, 1, -2, 2, -3, 3, -4, 4, -5, 5, -6, 6, -7, 7, -8, 8):
            cy = py + step * line_px
            if not 0 <= cy <= height:
                continue
            bx0, bx1 = (px + 6, px + 6 + w) if right else (px - 6 - w, px - 6)
            box = (bx0, cy - line_px / 2, bx1, cy + line_px / 2)
            if all(
                box[2] <= b[0] or box[0] >= b[2] or box[3] <= b[1] or box[1] >= b[3] for b in boxes
            ):
                found = (box, cy)
                break
        if found is None:
            continue
        box, cy = found
        boxes.append(box)
        keep.append(i)
        anchor = box[0] if right else box[2]
        lx.append(x0 + anchor / width * (x1 - x0))
        ly.append(y0 + (height - cy) / height * (y1 - y0))
        al.append("left" if right else "right")
    return points[keep].with_columns(
        pl.Series("label_x", lx, dtype=pl.Float64),
        pl.Series("label_y", ly, dtype=pl.Float64),
        pl.Series("align", al, dtype=pl.String),
    )


def replicate_similarity_chart(
    profiles: pl.DataFrame,
    *,
    replicate_groups: Sequence[str] = (TREATMENT,),
    features: Sequence[str] | None = None,
    quantile: float = 0.95,
    bins: int = 40,
) -> alt.LayerChart:
    """Pearson correlation of replicate pairs against non-replicate pairs (the null).

    Parameters
    ----------
    profiles : polars.DataFrame
        One row per profile (e.g. the treated wells of a plate).
    replicate_groups : sequence of str
        Two profiles are replicates when equal on all these columns.
    features : sequence of str, optional
        Feature columns (default: all).
    quantile : float, default 0.95
        The non-replicate quantile drawn as the threshold (percent replicating).
    bins : int, default 40
        Histogram bins over [-1, 1].

    Returns
    -------
    altair.LayerChart
        Two histograms as percent of their own pairs, and a rule at the null's
        ``quantile``; the title gives the fraction of replicate pairs above it.

    Raises
    ------
    InvalidInputError
        If there are no replicate or no non-replicate pairs.
    """
    groups = list(replicate_groups)
    _require(profiles, groups, "replicate similarity")
    feats = list(features) if features is not None else feature_columns(profiles)
    complete, _ = finite_rows(profiles, feats)
    x = complete.select(feats).to_numpy().astype(np.float64)
    x = x - x.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    corr = x @ x.T
    gid = complete.select(pl.struct(groups).rank("dense").alias("g"))["g"].to_numpy()
    iu = np.triu_indices(len(gid), k=1)
    sims = corr[iu]
    rep = gid[iu[0]] == gid[iu[1]]
    if not rep.any() or rep.all():
        raise InvalidInputError(
            f"replicate similarity needs replicate and non-replicate pairs of {groups}"
        )
    threshold = float(np.quantile(sims[~rep], quantile))
    edges = np.linspace(-1.0, 1.0, bins + 1)
    rows = []
    kinds = (
        "replicates (same " + ", ".join(g.removeprefix("Metadata_") for g in groups) + ")",
        "non-replicates (null)",
    )
    for kind, values in zip(kinds, (sims[rep], sims[~rep]), strict=True):
        counts = np.histogram(np.clip(values, -1.0, 1.0), bins=edges)[0]
        for lo, hi, n in zip(edges[:-1], edges[1:], counts, strict=True):
            rows.append({"pairs": kind, "from": float(lo), "to": float(hi), "n": int(n),
                         "percent": 100.0 * n / len(values)})  # fmt: skip
    hist = pl.DataFrame(rows)
    above = float((sims[rep] > threshold).mean())
    bars = (
        alt.Chart(hist.to_pandas())
        .mark_bar(opacity=0.55, binSpacing=0)
        .encode(
            x=alt.X("from:Q", bin="binned", title="Pearson correlation between two wells"),
            x2="to:Q",
            y=alt.Y("percent:Q", stack=None, title="Pairs (% of their kind)"),
            color=alt.Color(
                "pairs:N",
                title="pairs",
                scale=alt.Scale(domain=list(kinds), range=["#d62728", "#7b8794"]),
            ),
            tooltip=[
                "pairs:N",
                alt.Tooltip("from:Q", format=".2f"),
                alt.Tooltip("to:Q", format=".2f"),
                "n:Q",
                alt.Tooltip("percent:Q", format=".1f"),
            ],
        )
    )
    rule = (
        alt.Chart(pl.DataFrame({"threshold": [threshold]}).to_pandas())
        .mark_rule(strokeDash=[5, 4], color="#1f2933")
        .encode(
            x="threshold:Q",
            tooltip=[
                alt.Tooltip("threshold:Q", title=f"null {quantile:.0%} quantile", format=".3f")
            ],
        )
    )
    title = (
        f"{above:.0%} of {int(rep.sum())} replicate pairs above the {quantile:.0%} "
        f"quantile of {int((~rep).sum())} non-replicate pairs ({threshold:.2f})"
    )
    return alt.layer(bars, rule, title=title).properties(width=520, height=240)


def moa_retrieval_chart(
    per_query: pl.DataFrame,
    *,
    moa: str = MOA,
    average_precision: str = "average_precision",
    n_candidates: str = "n_candidates",
    min_compounds: int = 2,
) -> alt.LayerChart:
    """Per-MoA mAP bars with compound counts, beside the mAP a random ranking would give.

    Parameters
    ----------
    per_query : polars.DataFrame
        One row per query compound: ``RetrievalResult.per_query`` of
        :func:`cellframe.evaluate.retrieval_metrics` (its MoA, AP and number
        of candidates).
    moa, average_precision, n_candidates : str
        Column names.
    min_compounds : int, default 2
        MoAs with fewer compounds have no positive to retrieve and are left out.

    Returns
    -------
    altair.LayerChart
        A bar per MoA (mAP over its compounds, the count written at the bar's
        end) and a tick at the expected AP of a random ranking,
        ``(n - 1) / n_candidates``.

    Raises
    ------
    InvalidInputError
        If no MoA has ``min_compounds`` compounds with a finite AP.
    """
    _require(per_query, [moa, average_precision, n_candidates], "MoA retrieval")
    per_moa = moa_summary(per_query, moa=moa, average_precision=average_precision,
                          n_candidates=n_candidates, min_compounds=min_compounds)  # fmt: skip
    if per_moa.height == 0:
        raise InvalidInputError(
            f"no MoA has {min_compounds} compounds with a finite {average_precision!r}: "
            "nothing to chart"
        )
    per_moa = per_moa.with_columns(
        (pl.col(moa) + " (n=" + pl.col("n_compounds").cast(pl.String) + ")").alias("label")
    )
    order = per_moa.sort("mAP", descending=True)["label"].to_list()
    y = alt.Y("label:N", sort=order, title=f"{moa.removeprefix('Metadata_')} (compounds)")
    tips = [alt.Tooltip(f"{moa}:N"), alt.Tooltip("n_compounds:Q", title="compounds"),
            alt.Tooltip("mAP:Q", format=".3f"), alt.Tooltip("random_mAP:Q", title="random ranking", format=".3f")]  # fmt: skip
    base = alt.Chart(per_moa.to_pandas())
    bars = base.mark_bar(color="#3e7cb1").encode(
        x=alt.X(
            "mAP:Q",
            title="mAP of retrieving same-MoA compounds (0-1)",
            scale=alt.Scale(domain=[0, 1]),
        ),
        y=y,
        tooltip=tips,
    )
    chance = base.mark_tick(color="#d62728", thickness=2, size=14).encode(
        x="random_mAP:Q", y=y, tooltip=tips
    )
    return alt.layer(bars, chance, title="Per-MoA retrieval (red tick: random ranking)").properties(
        width=420, height=max(120, 22 * per_moa.height)
    )


def moa_summary(
    per_query: pl.DataFrame,
    *,
    moa: str = MOA,
    average_precision: str = "average_precision",
    n_candidates: str = "n_candidates",
    min_compounds: int = 2,
) -> pl.DataFrame:
    """mAP per MoA over its compounds, with the mAP expected from a random ranking.

    Returns
    -------
    polars.DataFrame
        ``moa``, ``n_compounds``, ``mAP`` and ``random_mAP`` (mean of
        ``(n_compounds - 1) / n_candidates``), for MoAs with at least
        ``min_compounds`` compounds whose AP is finite; highest mAP first.
    """
    kept, _ = finite_rows(per_query, [average_precision])
    return (
        kept.filter(pl.col(moa).is_not_null())
        .group_by(moa)
        .agg(
            pl.len().alias("n_compounds"),
            pl.col(average_precision).mean().alias("mAP"),
            ((pl.len() - 1) / pl.col(n_candidates)).mean().alias("random_mAP"),
        )
        .filter(pl.col("n_compounds") >= min_compounds)
        .sort(["mAP", moa], descending=[True, False])
    )


_ROWS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def plate_layout(
    wells: pl.DataFrame, *, well: str = WELL, rows: int = 16, columns: int = 24
) -> pl.DataFrame:
    """Every position of a plate, joined with the rows of ``wells`` (nulls where absent).

    Parameters
    ----------
    wells : polars.DataFrame
        One row per well, with well names such as ``A01`` (or ``A1``).
    well : str
        Well column.
    rows, columns : int, default 16 and 24
        Plate geometry (384 wells).

    Returns
    -------
    polars.DataFrame
        ``rows * columns`` rows: ``plate_row`` (letter), ``plate_column`` (int),
        ``well`` and the columns of ``wells``.

    Raises
    ------
    InvalidInputError
        If a well name does not parse, lies outside the plate or repeats.
    """
    _require(wells, [well], "plate layout")
    names = wells[well].cast(pl.String)
    parsed = names.str.extract_groups(r"^([A-Za-z])(\d{1,2})$")
    r = parsed.struct.field("1").str.to_uppercase()
    c = parsed.struct.field("2").cast(pl.Int64)
    bad = names.filter(r.is_null() | c.is_null()).head(3).to_list()
    if bad:
        raise InvalidInputError(
            f"column {well!r}: well names such as {bad} do not read as A01 ... P24"
        )
    r_idx = r.map_elements(_ROWS.index, return_dtype=pl.Int64)
    outside = names.filter((r_idx >= rows) | (c < 1) | (c > columns)).head(3).to_list()
    if outside:
        raise InvalidInputError(
            f"column {well!r}: wells {outside} lie outside a {rows} x {columns} plate"
        )
    keyed = wells.with_columns(r.alias("plate_row"), c.alias("plate_column"))
    dup = (
        keyed.filter(pl.struct("plate_row", "plate_column").is_duplicated())[well].head(3).to_list()
    )
    if dup:
        raise InvalidInputError(
            f"column {well!r}: wells {dup} appear more than once; chart one plate"
        )
    grid = pl.DataFrame(
        {
            "plate_row": [_ROWS[i] for i in range(rows) for _ in range(columns)],
            "plate_column": [j + 1 for _ in range(rows) for j in range(columns)],
        }
    )
    return grid.join(keyed.drop(well), on=["plate_row", "plate_column"], how="left").with_columns(
        (pl.col("plate_row") + pl.col("plate_column").cast(pl.String).str.zfill(2)).alias("well")
    )


def plate_heatmap_chart(
    wells: pl.DataFrame,
    value: str,
    *,
    well: str = WELL,
    title: str | None = None,
    value_title: str | None = None,
    tooltip: Sequence[str] = (),
    colors: Mapping[str, str] | None = None,
    log_scale: bool = False,
    rows: int = 16,
    columns: int = 24,
) -> alt.LayerChart:
    """A plate-layout heatmap (16 x 24 wells by default) of one value per well.

    Parameters
    ----------
    wells : polars.DataFrame
        One row per well of one plate.
    value : str
        Column coloured: numeric (sequential colours) or boolean / text
        (categories, e.g. a QC flag).
    well : str
        Well column (``A01`` ... ``P24``).
    title, value_title : str, optional
        Chart title and legend title (give the unit).
    tooltip : sequence of str
        Extra columns in the tooltip.
    colors : mapping of str to str, optional
        Category -> colour, for a categorical ``value``.
    log_scale : bool, default False
        Log colour scale for a positive numeric ``value`` (e.g. a dose).
    rows, columns : int
        Plate geometry.

    Returns
    -------
    altair.LayerChart
        Wells without a row in ``wells`` (or a null or NaN value) are drawn
        light grey with "no data" in the tooltip.
    """
    _require(wells, [well, value], "plate heatmap")
    extra = [c for c in dict.fromkeys(tooltip) if c not in (well, value) and c in wells.columns]
    grid = plate_layout(wells.select(well, value, *extra), well=well, rows=rows, columns=columns)
    dtype = grid.schema[value]
    if dtype == pl.Boolean:
        grid = grid.with_columns(pl.col(value).cast(pl.String))
    numeric = dtype.is_numeric()
    if numeric and dtype.is_float():
        grid = grid.with_columns(
            pl.when(pl.col(value).is_nan()).then(None).otherwise(pl.col(value)).alias(value)
        )
    if numeric and log_scale and (grid[value] <= 0).any():
        raise InvalidInputError(
            f"column {value!r}: a log colour scale needs positive values; null the others"
        )
    legend = value_title or value
    if numeric:
        scale = alt.Scale(scheme="viridis", type="log" if log_scale else "linear")
        color = alt.Color(f"{value}:Q", title=legend, scale=scale)
    elif colors:
        color = alt.Color(
            f"{value}:N", title=legend,
            scale=alt.Scale(domain=list(colors), range=list(colors.values())),
        )  # fmt: skip
    else:
        color = alt.Color(f"{value}:N", title=legend, scale=alt.Scale(scheme="category10"))
    x = alt.X("plate_column:O", title="plate column", axis=alt.Axis(labelAngle=0))
    y = alt.Y("plate_row:O", title="plate row")
    tips = [
        alt.Tooltip("well:N", title="well"),
        alt.Tooltip(f"{value}:{'Q' if numeric else 'N'}", title=legend),
        *[alt.Tooltip(f"{c}:N") for c in extra],
    ]
    present = grid.filter(pl.col(value).is_not_null())
    missing = grid.filter(pl.col(value).is_null()).with_columns(pl.lit("no data").alias("status"))
    layers = []
    if missing.height:
        layers.append(
            alt.Chart(missing.select("well", "plate_row", "plate_column", "status").to_pandas())
            .mark_rect(stroke="white", strokeWidth=1, color="#e4e7eb")
            .encode(
                x=x, y=y, tooltip=[alt.Tooltip("well:N"), alt.Tooltip("status:N", title=legend)]
            )
        )
    if present.height:
        layers.append(
            alt.Chart(present.to_pandas())
            .mark_rect(stroke="white", strokeWidth=1)
            .encode(x=x, y=y, color=color, tooltip=tips)
        )
    return alt.layer(*layers, title=title or f"{legend} per well").properties(
        width=24 * columns, height=20 * rows
    )


def assay_prediction_chart(
    published: pl.DataFrame,
    trained: pl.DataFrame | None = None,
    *,
    threshold: float = 0.9,
    modality: str = "modality",
    auroc: str = "auroc",
) -> alt.HConcatChart:
    """Assays predicted above an AUROC: published counts per modality, and the demo's own models.

    Parameters
    ----------
    published : polars.DataFrame
        One row per (modality, assay) with the published median AUROC.
    trained : polars.DataFrame, optional
        The demo's ``activity_trained`` table: ``assay``, ``model``, ``split``,
        ``auroc`` (held-out test), ``n_train``, ``n_test``, ``n_test_positive``.
    threshold : float, default 0.9
        AUROC above which an assay counts as well predicted.
    modality, auroc : str
        Column names of ``published``.

    Returns
    -------
    altair.HConcatChart
        Left: bars of the number of assays with AUROC > ``threshold`` per
        modality (NaN AUROCs excluded and counted in the title). Right, with
        ``trained``: each model's held-out AUROC per assay, with rules at 0.5
        (chance) and ``threshold``.
    """
    _require(published, [modality, auroc], "assay prediction")
    counts, nan_rows = well_predicted_counts(
        published, threshold=threshold, modality=modality, auroc=auroc
    )
    title = f"Published: assays with AUROC > {threshold:g}"
    if nan_rows:
        title += f" ({nan_rows} NaN AUROCs not counted)"
    left_base = alt.Chart(counts.to_pandas(), title=title)
    left = alt.layer(
        left_base.mark_bar(color="#3e7cb1").encode(
            x=alt.X(f"{modality}:N", title="profile modality", axis=alt.Axis(labelAngle=0)),
            y=alt.Y(
                "assays:Q",
                title=f"assays with AUROC > {threshold:g} (count)",
                scale=alt.Scale(domain=[0, max(1, int(counts["assays"].max() or 0)) * 1.12]),
            ),
            tooltip=[f"{modality}:N", "assays:Q", "of:Q"],
        ),
        left_base.mark_text(dy=-6).encode(x=f"{modality}:N", y="assays:Q", text="assays:Q"),
    ).properties(width=200, height=260)
    if trained is None:
        return alt.hconcat(left)
    need = ["assay", "model", "split", "auroc", "n_train", "n_test", "n_test_positive"]
    _require(trained, need, "trained assay prediction")
    kept, dropped = finite_rows(trained, ["auroc"])
    right_title = "Trained by this demo: held-out AUROC per assay"
    if dropped:
        right_title += f" ({dropped} without an AUROC left out)"
    tips = [alt.Tooltip(c) for c in ("assay", "model", "split")] + [
        alt.Tooltip("auroc:Q", format=".3f"),
        "n_train:Q",
        "n_test:Q",
        "n_test_positive:Q",
    ]
    points = (
        alt.Chart(kept.to_pandas())
        .mark_point(filled=True, size=90)
        .encode(
            x=alt.X(
                "auroc:Q",
                title="AUROC on held-out test compounds (0-1)",
                scale=alt.Scale(domain=[0.3, 1.0]),
            ),
            y=alt.Y("assay:N", title="assay"),
            color=alt.Color("model:N", title="model"),
            shape=alt.Shape("model:N"),
            tooltip=tips,
        )
    )
    rules = (
        alt.Chart(
            pl.DataFrame(
                {"x": [0.5, threshold], "what": ["chance", f"threshold {threshold:g}"]}
            ).to_pandas()
        )
        .mark_rule(strokeDash=[4, 3], color="#7b8794")
        .encode(x="x:Q", tooltip=["what:N"])
    )
    right = alt.layer(points, rules, title=right_title).properties(
        width=340, height=max(120, 28 * kept["assay"].n_unique())
    )
    return alt.hconcat(left, right)


def well_predicted_counts(
    per_assay: pl.DataFrame,
    *,
    threshold: float = 0.9,
    modality: str = "modality",
    auroc: str = "auroc",
) -> tuple[pl.DataFrame, int]:
    """Assays with AUROC above ``threshold`` per modality; NaN and null AUROCs are not counted.

    Returns
    -------
    counts : polars.DataFrame
        ``modality``, ``assays`` (above the threshold) and ``of`` (assays with
        a finite AUROC), sorted by modality.
    left_out : int
        Rows whose AUROC is NaN or null.
    """
    kept, dropped = finite_rows(per_assay, [auroc])
    counts = (
        per_assay.select(modality).unique()
        .join(
            kept.group_by(modality).agg(
                (pl.col(auroc) > threshold).sum().cast(pl.Int64).alias("assays"),
                pl.len().cast(pl.Int64).alias("of"),
            ),
            on=modality,
            how="left",
        )
        .with_columns(pl.col("assays", "of").fill_null(0))
        .sort(modality)
    )  # fmt: skip
    return counts, dropped
