"""Report sections built around a scientist's questions, each with an answer computed from the data.

Every function returns a :class:`~cellframe.report.html.ReportSection` whose
``title`` is the question, ``answer`` one line computed from the table (never
hard-coded), ``chart`` the evidence and ``caption`` what to look for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import altair as alt
import numpy as np
import polars as pl

from cellframe.columns import (
    CONTROL,
    COUNT_CELLS,
    MOA,
    PLATE,
    TREATMENT,
    WELL,
    feature_columns,
)
from cellframe.errors import InvalidInputError
from cellframe.report.assays import assay_prediction_chart, well_predicted_counts
from cellframe.report.charts import (
    finite_rows,
    lambda_sweep_chart,
    pca_before_after_chart,
    tta_delta_chart,
)
from cellframe.report.compounds import (
    compound_activity_chart,
    moa_retrieval_chart,
    moa_summary,
    replicate_similarity_chart,
)
from cellframe.report.html import ReportSection
from cellframe.report.images import ReportImage, crop_montage, outline_overlay, png_data_uri
from cellframe.report.plate import plate_heatmap_chart, plate_layout

__all__ = [
    "activity_answer",
    "assay_prediction_section",
    "compound_activity_section",
    "control_separation",
    "correction_section",
    "moa_retrieval_section",
    "plate_health_section",
    "replicate_section",
    "segmentation_section",
    "tta_section",
]


def activity_answer(
    activity: pl.DataFrame,
    *,
    q_column: str = "corrected_p_value",
    map_column: str = "mean_average_precision",
    source: str | None = "source",
    threshold: float = 0.05,
) -> str:
    """One line: how many compounds are active (q < threshold), per source.

    Rows with a missing or NaN q or mAP are not counted and the line says how many.
    """
    groups = (
        activity.partition_by(source, maintain_order=True, as_dict=True)
        if source is not None and source in activity.columns
        else {("",): activity}
    )
    parts = []
    for (name,), part in groups.items():
        kept, dropped = finite_rows(part, [q_column, map_column])
        n = int((kept[q_column] < threshold).sum())
        text = f"{n} of {kept.height} compounds ({n / max(kept.height, 1):.0%})"
        if name:
            text = f"{name}: {text}"
        if dropped:
            text += f", {dropped} without a q-value not counted"
        parts.append(text)
    return f"Active at q < {threshold:g}: " + "; ".join(parts) + "."


def compound_activity_section(
    activity: pl.DataFrame,
    *,
    threshold: float = 0.05,
    label: str | None = None,
    tooltip: Sequence[str] = (),
    caption: str = "",
) -> ReportSection:
    """Which compounds have a phenotype? mAP against -log10 q, labelled, with the threshold.

    Parameters
    ----------
    activity : polars.DataFrame
        Per-compound mAP and q-values (``phenotypic_activity`` table:
        ``Metadata_Treatment``, ``mean_average_precision``, ``corrected_p_value``,
        optionally ``source``).
    threshold : float, default 0.05
        q-value threshold.
    label, tooltip : optional
        Label column and extra tooltip columns (see :func:`compound_activity_chart`).
    caption : str
        Appended to the standard caption (e.g. how the null was built).
    """
    chart = compound_activity_chart(activity, threshold=threshold, label=label, tooltip=tooltip)
    return ReportSection(
        "Which compounds have a phenotype?",
        chart,
        "Each point is a compound: how well its replicate wells retrieve each other against "
        "the negative-control wells (mAP, x) and how surprising that is under a permutation "
        f"null (-log10 of the BH-corrected p-value, y). Points above the dashed line (q = "
        f"{threshold:g}) are called active; the labelled ones have the highest mAP. Look for "
        "compounds far right and high; a panel where every compound is active deserves "
        "suspicion of the null rather than celebration. " + caption,
        answer=activity_answer(activity, threshold=threshold),
    )


def replicate_section(
    profiles: pl.DataFrame,
    *,
    replicate_groups: Sequence[str] = (TREATMENT,),
    quantile: float = 0.95,
    caption: str = "",
) -> ReportSection:
    """Do replicates agree? Replicate-pair correlations against the non-replicate null.

    The answer line is computed with :func:`cellframe.evaluate.percent_replicating`.
    """
    from cellframe.evaluate import percent_replicating

    result = percent_replicating(
        profiles, replicate_groups=list(replicate_groups), quantile=quantile
    )
    per_group = result.per_group
    agree = int((per_group["median_similarity"] > result.threshold).sum())
    answer = (
        f"{result.percent_replicating:.0%} of replicate pairs correlate above the "
        f"{quantile:.0%} quantile of non-replicate pairs (r = {result.threshold:.2f}; "
        f"{1 - quantile:.0%} expected by chance); {agree} of {per_group.height} groups have "
        "a median replicate correlation above it."
    )
    return ReportSection(
        "Do replicates agree?",
        replicate_similarity_chart(profiles, replicate_groups=replicate_groups, quantile=quantile),
        "Pearson correlation of every pair of wells that share "
        + ", ".join(g.removeprefix("Metadata_") for g in replicate_groups)
        + " (red) and of every other pair (grey, the null). The dashed line is the null's "
        f"{quantile:.0%} quantile. Look for the red histogram sitting right of the grey one; "
        "overlapping histograms mean the replicates are no more alike than random wells. "
        + caption,
        answer=answer,
    )


def moa_retrieval_section(
    per_query: pl.DataFrame,
    *,
    n_unscored: int = 0,
    moa: str = MOA,
    min_compounds: int = 2,
    caption: str = "",
) -> ReportSection:
    """Which MoAs are retrieved? Per-MoA mAP bars with counts, MoAs with >= ``min_compounds``.

    Parameters
    ----------
    per_query : polars.DataFrame
        ``RetrievalResult.per_query`` of :func:`cellframe.evaluate.retrieval_metrics`.
    n_unscored : int
        Queries left out because no other compound shares their MoA
        (``RetrievalResult.summary["n_unscored"]``), stated in the caption.
    """
    per_moa = moa_summary(per_query, moa=moa, min_compounds=min_compounds)
    n_queries = per_query.height + n_unscored
    if per_moa.height:
        best = per_moa.row(0, named=True)
        above = int((per_moa["mAP"] > per_moa["random_mAP"] * 2).sum())
        answer = (
            f"{per_moa.height} MoAs have {min_compounds}+ compounds; best retrieved: "
            f"{best[moa]} (mAP {best['mAP']:.2f} vs {best['random_mAP']:.2f} at random); "
            f"{above} of {per_moa.height} at least twice random."
        )
    else:
        answer = f"No MoA has {min_compounds} compounds: MoA retrieval cannot be measured here."
    note = ""
    if n_unscored:
        note = (
            f" {n_unscored} of {n_queries} MoA queries have no positive (no other compound "
            "shares their MoA) and are not scored: with so few compounds per MoA, this plate "
            "cannot say much about MoA retrieval."
        )
    return ReportSection(
        "Which MoAs are retrieved?",
        moa_retrieval_chart(per_query, moa=moa, min_compounds=min_compounds),
        "Bars: mean average precision of each compound retrieving the other compounds of its "
        "MoA among all compounds (n = compounds of that MoA); red tick: what a random ranking "
        "would give. Look for bars well past their tick."
        + note
        + (" " + caption if caption else ""),
        answer=answer,
    )


def _edge(row: pl.Expr, column: pl.Expr, rows: int, columns: int) -> pl.Expr:
    return (row == "A") | (row == chr(ord("A") + rows - 1)) | (column == 1) | (column == columns)


def plate_health_section(
    qc: pl.DataFrame,
    *,
    flag: str = "Metadata_QC_Outlier",
    reason: str | None = "Metadata_QC_Reason",
    second: str | None = None,
    second_title: str | None = None,
    second_log: bool = False,
    rows: int = 16,
    columns: int = 24,
    caption: str = "",
) -> ReportSection:
    """Is the plate healthy? Plate-layout heatmaps of the QC flags and of cell count.

    Parameters
    ----------
    qc : polars.DataFrame
        One row per well of one plate with ``Metadata_Well`` and the boolean
        ``flag`` (:func:`cellframe.profiles.flag_outlier_wells`).
    flag, reason : str
        QC flag and reason columns.
    second : str, optional
        A numeric column for the second heatmap; default the cell count
        (``Metadata_Count_Cells``) when the table has it, else none.
    second_title : str, optional
        Its legend title, with units.
    second_log : bool, default False
        Log colour scale for the second map (e.g. a dose series).
    """
    if flag not in qc.columns:
        from cellframe.errors import MissingColumnsError

        raise MissingColumnsError("the QC table for the plate heatmap", [flag])
    if second is None and COUNT_CELLS in qc.columns:
        second, second_title = COUNT_CELLS, second_title or "cells per well (count)"
    layout = plate_layout(qc.select(WELL, flag), rows=rows, columns=columns)
    present = layout.filter(pl.col(flag).is_not_null())
    edge = _edge(pl.col("plate_row"), pl.col("plate_column"), rows, columns)
    n_flag = int(present[flag].sum())
    n_edge_flag = int(present.filter(edge & pl.col(flag)).height)
    edge_share = present.filter(edge).height / max(present.height, 1)
    answer = (
        f"{n_flag} of {present.height} wells flagged by QC; {n_edge_flag} of them on the outer "
        f"edge ({edge_share * n_flag:.0f} expected if flags ignored position)"
    )
    view = qc.with_columns(
        pl.when(pl.col(flag)).then(pl.lit("outlier")).otherwise(pl.lit("kept")).alias("QC")
    )
    tips = [c for c in (reason, TREATMENT, CONTROL) if c is not None and c in qc.columns]
    charts = [
        plate_heatmap_chart(
            view,
            "QC",
            title="QC flag per well",
            value_title="QC flag",
            tooltip=tips,
            colors={"kept": "#bcccdc", "outlier": "#d62728"},
            rows=rows,
            columns=columns,
        )
    ]
    if second is not None:
        values, dropped = finite_rows(qc, [second])
        flagged = values.filter(pl.col(flag))[second].median()
        kept = values.filter(~pl.col(flag))[second].median()
        answer += (
            f"; median {second_title or second}: {flagged:.3g} in flagged wells, "
            f"{kept:.3g} in kept wells"
        )
        if dropped:
            answer += f" ({dropped} wells without a value)"
        charts.append(
            plate_heatmap_chart(
                qc,
                second,
                title=f"{second_title or second} per well",
                value_title=second_title,
                tooltip=tips,
                log_scale=second_log,
                rows=rows,
                columns=columns,
            )
        )
    return ReportSection(
        "Is the plate healthy?",
        alt.vconcat(*charts).resolve_scale(color="independent"),
        "Plate layout, 16 rows x 24 columns. QC flags wells whose profile is extreme on the "
        "first principal components. Look for flags clustered in rows, columns or the edge "
        "(a handling or imaging fault) rather than following the compound layout (strong "
        "phenotypes). Grey wells have no data. " + caption,
        answer=answer + ".",
    )


def control_separation(
    profiles: pl.DataFrame, *, control: str = CONTROL, features: Sequence[str] | None = None
) -> float:
    """Median distance of treated wells to the control centroid over that of control wells.

    A correction fitted on the controls (sphering) makes controls compact, so
    this ratio grows when treated wells stand out from the controls more after it.

    Raises
    ------
    InvalidInputError
        If there are no control or no treated rows with finite features.
    """
    feats = list(features) if features is not None else feature_columns(profiles)
    complete, _ = finite_rows(profiles, feats)
    is_ctrl = complete[control].is_not_null().to_numpy()
    if is_ctrl.all() or not is_ctrl.any():
        raise InvalidInputError(f"control_separation needs rows with and without {control!r}")
    x = complete.select(feats).to_numpy().astype(np.float64)
    centre = x[is_ctrl].mean(axis=0)
    dist = np.linalg.norm(x - centre, axis=1)
    return float(np.median(dist[~is_ctrl]) / np.median(dist[is_ctrl]))


def correction_section(
    before: pl.DataFrame,
    after: pl.DataFrame,
    sweep: pl.DataFrame | None = None,
    *,
    best: float | None = None,
    score_title: str = "MoA mAP",
    flat_below: float = 0.01,
    caption: str = "",
) -> ReportSection:
    """What did the correction do? PCA before/after by control and plate, and the lambda sweep.

    Parameters
    ----------
    before, after : polars.DataFrame
        The same wells before and after the correction; ``Metadata_Control``
        set on the control wells.
    sweep : polars.DataFrame, optional
        ``lambda`` and ``score`` (:func:`cellframe.profiles.lambda_sweep`).
    best : float, optional
        The lambda used.
    score_title : str
        What the sweep's score is (axis title).
    flat_below : float, default 0.01
        A sweep whose scores span less than this is called flat in the answer.
    """
    ratio_before, ratio_after = control_separation(before), control_separation(after)
    answer = (
        f"Treated wells lie {ratio_before:.2f}x as far from the DMSO centroid as DMSO wells "
        f"before the correction and {ratio_after:.2f}x after"
    )
    controls = sorted(after[CONTROL].drop_nulls().unique().to_list())
    dark = ["#1f2933", "#2b6cb0", "#6b46c1", "#2f855a"]
    colors = {c: dark[i % len(dark)] for i, c in enumerate(controls)} | {"treated": "#f6ad55"}
    panels = [pca_before_after_chart(before, after, color=CONTROL, shape=CONTROL, colors=colors)]
    n_plates = after[PLATE].n_unique() if PLATE in after.columns else 1
    if n_plates > 1:
        panels.append(pca_before_after_chart(before, after, color=PLATE, shape=CONTROL))
    else:
        answer += " (one plate, so no plate effect to remove)"
    if sweep is not None:
        scores, _ = finite_rows(sweep, ["score"])
        lo, hi = float(scores["score"].min()), float(scores["score"].max())
        lams = sweep["lambda"]
        if hi - lo < flat_below:
            answer += (
                f"; the lambda sweep is flat ({score_title} {lo:.3f} to {hi:.3f} over lambda "
                f"{lams.min():g} to {lams.max():g}), so the choice of lambda does not matter here"
            )
        else:
            answer += (
                f"; lambda matters: {score_title} ranges {lo:.3f} to {hi:.3f}, best at lambda "
                f"{float(scores.sort('score', descending=True)['lambda'][0]):g}"
            )
        panels.append(lambda_sweep_chart(sweep, score_title=score_title, best=best))
    return ReportSection(
        "What did the correction do?",
        alt.vconcat(*panels),
        "PCA of the well profiles before and after the correction (each its own PCA), DMSO "
        "(negcon) wells drawn on top of the treated wells. Sphering whitens the DMSO wells, so "
        "after it they should form a tight cloud and treated wells with a phenotype should stand "
        "away from it. The line chart scores each regularisation strength lambda; its y axis "
        "spans the actual range of the scores. " + caption,
        answer=answer + ".",
    )


def segmentation_section(
    images: Mapping[tuple[str, str, int], np.ndarray],
    labels: Mapping[tuple[str, str, int], np.ndarray],
    objects: pl.DataFrame,
    *,
    channels: Sequence[str],
    outline_channel: str = "DNA",
    n_cells: int = 8,
    crop_size: int = 48,
    caption: str = "",
) -> ReportSection:
    """What did segmentation find? Sites with nuclei outlines and a montage of crops per channel.

    Parameters
    ----------
    images : mapping
        ``(plate, well, site) -> (C, H, W)`` pixels.
    labels : mapping
        ``(plate, well, site) -> (H, W)`` label image of the same sites.
    objects : polars.DataFrame
        The ``objects`` rows of these sites.
    channels : sequence of str
        Channel names in array order.
    outline_channel : str
        Channel drawn under the outlines.
    """
    if outline_channel not in channels:
        raise InvalidInputError(
            f"outline channel {outline_channel!r} is not one of the channels {list(channels)}"
        )
    ch = list(channels).index(outline_channel)
    shown = []
    counts = []
    for key, pixels in images.items():
        if key not in labels:
            raise InvalidInputError(f"segmentation section: no label image for site {key}")
        n = int(len(np.unique(labels[key])) - (1 if (labels[key] == 0).any() else 0))
        counts.append(n)
        plate, well, site = key
        shown.append(
            ReportImage(
                png_data_uri(outline_overlay(pixels[ch], labels[key])),
                f"{plate} {well} site {site}: {outline_channel} channel, {n} nuclei outlined",
                width=360,
            )
        )
    montage, cells = crop_montage(
        images, objects, channels=channels, n_cells=n_cells, size=crop_size
    )
    shown.append(
        ReportImage(
            png_data_uri(montage),
            f"{cells.height} nuclei from smallest to largest area "
            f"({int(cells['AreaShape_Area'].min())} to {int(cells['AreaShape_Area'].max())} px), "
            f"one column each; rows: the channels {', '.join(channels)} "
            f"({crop_size} x {crop_size} px crops around each centroid)",
            width=max(240, 2 * montage.shape[1]),
        )
    )
    areas = objects["AreaShape_Area"]
    answer = (
        f"{sum(counts)} nuclei on {len(counts)} sites ("
        + ", ".join(f"{n}" for n in counts)
        + f"); median area {areas.median():.0f} px (range {areas.min():.0f} to {areas.max():.0f})."
    )
    return ReportSection(
        "What did segmentation find?",
        None,
        "Yellow: the outline of each nucleus the U-Net found, over the DNA channel. Look for "
        "nuclei missed, merged or split, and for outlines on debris. The montage shows a "
        "square crop around a few nuclei, per channel; each channel is scaled over its site. "
        + caption,
        answer=answer,
        images=shown,
    )


def tta_section(tta: pl.DataFrame, *, caption: str = "") -> ReportSection:
    """Does test-time augmentation help? Per-tile change of the DSB score."""
    kept, dropped = finite_rows(tta, ["original", "tta"])
    better = int((kept["tta"] > kept["original"]).sum())
    answer = (
        f"TTA raised the DSB 2018 score on {better} of {kept.height} held-out tiles; mean "
        f"{kept['original'].mean():.3f} without, {kept['tta'].mean():.3f} with."
    )
    if dropped:
        answer += f" {dropped} tiles without a score not counted."
    return ReportSection(
        "Does test-time augmentation help segmentation?",
        tta_delta_chart(tta),
        "DSB 2018 score (mean precision over IoU thresholds 0.5 to 0.95, 0-1) of each held-out "
        "tile with TTA minus without. Green bars: TTA helped. With four tiles, treat the mean "
        "as a hint, not a measurement. " + caption,
        answer=answer,
    )


def assay_prediction_section(
    published: pl.DataFrame,
    trained: pl.DataFrame | None = None,
    *,
    threshold: float = 0.9,
    caption: str = "",
) -> ReportSection:
    """How well are assays predicted? Published per-modality counts beside the demo's models."""
    counts, nan_rows = well_predicted_counts(published, threshold=threshold)
    same_total = counts["of"].n_unique() == 1
    answer = f"Published, assays with AUROC > {threshold:g}: " + " / ".join(
        f"{r['modality']} {r['assays']}" + ("" if same_total else f" of {r['of']}")
        for r in counts.iter_rows(named=True)
    )
    if same_total:
        answer += f" of {counts['of'][0]}"
    if nan_rows:
        answer += f" ({nan_rows} NaN AUROCs not counted)"
    if trained is not None:
        kept, _ = finite_rows(trained, ["auroc"])
        per_model = (
            kept.group_by("model")
            .agg(pl.col("auroc").mean().alias("mean"), pl.len().alias("n"))
            .sort("model")
        )
        answer += "; trained here, mean held-out AUROC: " + ", ".join(
            f"{r['model']} {r['mean']:.3f} ({r['n']} assays)"
            for r in per_model.iter_rows(named=True)
        )
    return ReportSection(
        "How well are assays predicted?",
        assay_prediction_chart(published, trained, threshold=threshold),
        "Left: Moshkov et al. 2023 (scaffold split), the number of the assays each profile "
        "modality predicts with median AUROC above the threshold: chemical structure (CS), "
        "gene expression (GE), morphology (MO). Right (when the demo trained models): each "
        "model's AUROC on held-out test compounds per assay; 0.5 is chance. Look at whether "
        "the demo's models beat chance and how they compare with the published range. " + caption,
        answer=answer + ".",
    )
