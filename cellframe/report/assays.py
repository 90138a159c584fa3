"""Compound-activity prediction: assays predicted above an AUROC, published and trained."""

from __future__ import annotations

import math

import altair as alt
import polars as pl

from cellframe.report.charts import _require, finite_rows

__all__ = ["assay_prediction_chart", "well_predicted_counts"]

_WHOLE_LABELS = alt.Legend(orient="bottom", direction="vertical", labelLimit=0)


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
        ``auroc`` (held-out test), ``n_train``, ``n_test``, ``n_test_positive``;
        rows of :func:`cellframe.activity.baselines.honest_baselines`' controls
        (a one-covariate model, permuted labels) are shown as further models.
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
    if kept["model"].str.ends_with("permuted labels").any():  # honest_baselines' controls
        right_title += ", beside a one-covariate model and permuted labels"
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
                # Permuted-label controls can fall well below 0.5: keep every point in view.
                scale=alt.Scale(domain=[min(0.3, math.floor(kept["auroc"].min() * 10) / 10), 1.0]),
            ),
            y=alt.Y("assay:N", title="assay"),
            # Model names are long ("RandomForest on Morgan fingerprints, permuted labels"):
            # a legend below the chart shows them whole instead of cutting them at the edge.
            color=alt.Color("model:N", title="model", legend=_WHOLE_LABELS),
            shape=alt.Shape("model:N", legend=_WHOLE_LABELS),
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
    return alt.hconcat(left, right).resolve_legend(color="independent", shape="independent")


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
