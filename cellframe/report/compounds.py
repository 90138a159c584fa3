"""Charts of compound-level results: activity (mAP vs q), replicate agreement, MoA retrieval."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import altair as alt
import numpy as np
import polars as pl

from cellframe.columns import MOA, TREATMENT, feature_columns
from cellframe.errors import InvalidInputError
from cellframe.report.charts import _padded_domain, _require, finite_rows

__all__ = [
    "PlotArea",
    "compound_activity_chart",
    "moa_retrieval_chart",
    "moa_summary",
    "place_labels",
    "replicate_similarity_chart",
]


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
            .sort([map_column, q_column, treatment], descending=[True, False, False])
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
        area = PlotArea(x_domain=x_domain, y_domain=y_domain, width=340, height=280)
        placed = place_labels(
            top, x=map_column, y="neg_log10_q", label=label, area=area, obstacles=data
        )
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


@dataclass(frozen=True)
class PlotArea:
    """The data domains and the pixel size of a chart's plotting area.

    Parameters
    ----------
    x_domain, y_domain : (float, float)
        Data values at the left/right and bottom/top edges (the scales' domains).
    width, height : float
        Size of the plotting area in pixels.

    Raises
    ------
    InvalidInputError
        For a domain that is not two distinct finite numbers, or a size that is
        not positive.

    Examples
    --------
    >>> PlotArea(x_domain=(0, 1), y_domain=(0, 4), width=340, height=280).x_domain
    (0.0, 1.0)
    """

    x_domain: Sequence[float]
    y_domain: Sequence[float]
    width: float
    height: float

    def __post_init__(self) -> None:
        for name in ("x_domain", "y_domain"):
            value = getattr(self, name)
            try:
                lo, hi = (float(v) for v in value)
            except (TypeError, ValueError):
                raise InvalidInputError(
                    f"PlotArea: {name} must be two numbers (low, high), got {value!r}"
                ) from None
            if not (np.isfinite(lo) and np.isfinite(hi)) or lo == hi:
                raise InvalidInputError(
                    f"PlotArea: {name} must be two distinct finite numbers, got {value!r}"
                )
            object.__setattr__(self, name, (lo, hi))
        for name in ("width", "height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise InvalidInputError(
                    f"PlotArea: {name} must be a positive number of pixels, got {value!r}"
                )


def place_labels(
    points: pl.DataFrame,
    *,
    x: str,
    y: str,
    label: str,
    area: PlotArea,
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

    Parameters
    ----------
    points : polars.DataFrame
        The points to label.
    x, y, label : str
        Columns of the coordinates (data units) and of the label text.
    area : PlotArea
        The chart's data domains and plotting size in pixels.
    obstacles : polars.DataFrame, optional
        Points (same ``x``/``y`` columns) that labels must not cover.
    char_px, line_px, point_px : float
        Width of a character, height of a line of text and half-size of a
        point, in pixels (for 10 px text).

    Returns
    -------
    polars.DataFrame
        The rows of ``points`` that found room, in their order, with
        ``label_x``, ``label_y`` (data units) and ``align`` ("left"/"right").
    """
    (x0, x1), (y0, y1) = area.x_domain, area.y_domain
    width, height = area.width, area.height

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
