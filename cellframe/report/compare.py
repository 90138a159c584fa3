"""The batch-correction ``compare`` report: batch score against biology score per method.

Takes the table of :func:`cellframe.evaluate.batch.compare` (one row per
(feature source, correction)) and draws it with Altair; :func:`write_compare_report`
writes it as one offline HTML file through :func:`cellframe.report.write_report`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import altair as alt
import polars as pl

from cellframe.errors import InvalidInputError, MissingColumnsError
from cellframe.evaluate.batch import BATCH_METRICS, BATCH_WEIGHT, BIO_METRICS
from cellframe.report.html import ReportSection, write_report

__all__ = [
    "compare_chart",
    "compare_metrics_chart",
    "compare_section",
    "write_compare_report",
]

_SCORES = ("batch_score", "bio_score", "overall_score")


def _require(table: pl.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise MissingColumnsError(
            f"the table for the {what}", missing, "pass the output of cellframe.evaluate.compare"
        )
    if table.height == 0:
        raise InvalidInputError(f"the table for the {what} has no rows")
    bad = table.select(pl.col(c).is_null().sum() + pl.col(c).is_nan().sum() for c in _SCORES)
    if any(v for v in bad.row(0)):
        raise InvalidInputError(
            f"the table for the {what} holds null or NaN scores in "
            f"{[c for c, v in zip(_SCORES, bad.row(0), strict=True) if v]}; recompute the panel"
        )


def compare_chart(table: pl.DataFrame, *, method: str = "method") -> alt.LayerChart:
    """Batch score (x) against biology score (y), one labelled point per method.

    Both axes run from 0 to 1; labels that would overlap are moved down, in
    their point's colour; the dashed lines are equal overall score
    (0.4 x batch + 0.6 x biology) through each method, so a point up and to the
    right of another is better on both halves.

    Parameters
    ----------
    table : polars.DataFrame
        Output of :func:`cellframe.evaluate.compare`.
    method : str
        Column naming each point.

    Returns
    -------
    altair.LayerChart

    Raises
    ------
    MissingColumnsError
        If a score or ``method`` column is absent.
    InvalidInputError
        No rows, or null/NaN scores.
    """
    _require(table, [method, *_SCORES], "batch vs biology chart")
    data = table.select(method, *_SCORES).to_pandas()
    base = alt.Chart(data, title="Batch removal against biology conservation")
    x = alt.X("batch_score:Q", title="Batch score (mean of batch metrics)").scale(domain=[0, 1])
    y = alt.Y("bio_score:Q", title="Biology score (mean of biology metrics)").scale(domain=[0, 1])
    points = base.mark_point(filled=True, size=140).encode(
        x=x,
        y=y,
        color=alt.Color(f"{method}:N", legend=None),
        tooltip=[
            alt.Tooltip(f"{method}:N"),
            *(alt.Tooltip(f"{c}:Q", format=".3f") for c in _SCORES),
        ],
    )
    placed = _label_positions(data["batch_score"].tolist(), data["bio_score"].tolist())
    label_data = pl.DataFrame(
        {
            method: data[method].tolist(),
            "label_x": [p[0] for p in placed],
            "label_y": [p[1] for p in placed],
        }
    ).to_pandas()
    labels = (
        alt.Chart(label_data)
        .mark_text(dx=9, align="left", fontSize=12)
        .encode(
            x="label_x:Q",
            y="label_y:Q",
            text=f"{method}:N",
            color=alt.Color(f"{method}:N", legend=None),  # a moved label keeps its point's colour
        )
    )
    # iso-overall lines: bio = (overall - 0.4 batch) / 0.6 over batch in [0, 1], clipped to the box
    w = BATCH_WEIGHT
    iso_rows = []
    for name, overall in zip(data[method], data["overall_score"], strict=True):
        for b in (0.0, 1.0):
            iso_rows.append(
                {method: name, "batch_score": b, "bio_score": (overall - w * b) / (1 - w)}
            )
    iso = (
        alt.Chart(pl.DataFrame(iso_rows).to_pandas())
        .mark_line(strokeDash=[4, 4], opacity=0.35, clip=True)
        .encode(
            x="batch_score:Q",
            y="bio_score:Q",
            color=alt.Color(f"{method}:N", legend=None),
            detail=f"{method}:N",
        )
    )
    return (iso + points + labels).properties(width=420, height=380)


def _label_positions(
    x: list[float], y: list[float], *, width: float = 0.3, height: float = 0.035
) -> list[tuple[float, float]]:
    """Label anchors in data units: at each point, moved down past labels already placed.

    A label is about ``width`` x ``height`` of the unit square (12 px text on a
    420 x 380 chart); from the highest point down, a label that would overlap an
    earlier one steps down by ``height`` until it is clear.
    """
    order = sorted(range(len(x)), key=lambda i: (-y[i], x[i]))
    out: dict[int, tuple[float, float]] = {}
    for i in order:
        ly = y[i]
        while any(abs(x[i] - px) < width and abs(ly - py) < height for px, py in out.values()):
            ly -= height
        out[i] = (x[i], ly)
    return [out[i] for i in range(len(x))]


def compare_metrics_chart(table: pl.DataFrame, *, method: str = "method") -> alt.Chart:
    """Heatmap of every panel metric (columns) for every method (rows), value in the cell.

    Parameters
    ----------
    table : polars.DataFrame
        Output of :func:`cellframe.evaluate.compare`.
    method : str
        Column naming each row.

    Returns
    -------
    altair.LayerChart
    """
    metrics = [*BATCH_METRICS, *BIO_METRICS, *_SCORES]
    _require(table, [method, *metrics], "metric heatmap")
    group = {m: "batch" for m in BATCH_METRICS} | {m: "biology" for m in BIO_METRICS}
    long = (
        table.select(method, *metrics)
        .unpivot(index=method, variable_name="metric", value_name="value")
        .with_columns(
            pl.col("metric").replace_strict(group, default="score").alias("half"),
        )
    ).to_pandas()
    base = alt.Chart(long, title="Every metric of the panel (higher is better)").encode(
        x=alt.X("metric:N", sort=metrics, title=None, axis=alt.Axis(labelAngle=-40)),
        y=alt.Y(f"{method}:N", title=None, sort=table[method].to_list()),
    )
    cells = base.mark_rect().encode(
        color=alt.Color("value:Q", scale=alt.Scale(domain=[0, 1], scheme="viridis"), title="value"),
        tooltip=[f"{method}:N", "metric:N", "half:N", alt.Tooltip("value:Q", format=".3f")],
    )
    text = base.mark_text(fontSize=10).encode(
        text=alt.Text("value:Q", format=".2f"),
        color=alt.condition("datum.value > 0.55", alt.value("black"), alt.value("white")),
    )
    return (cells + text).properties(width=52 * len(metrics), height=28 * table.height + 20)


def compare_section(table: pl.DataFrame, *, method: str = "method") -> ReportSection:
    """The report section of :func:`compare_chart`, with the best method as its answer."""
    chart = compare_chart(table, method=method)
    best = table.sort("overall_score", descending=True).row(0, named=True)
    answer = (
        f"Best overall: {best[method]} (overall {best['overall_score']:.3f}; batch "
        f"{best['batch_score']:.3f}, biology {best['bio_score']:.3f}) of {table.height} method(s)."
    )
    caption = (
        f"Batch score = mean of {', '.join(BATCH_METRICS)}; biology score = mean of "
        f"{', '.join(BIO_METRICS)}; overall = {BATCH_WEIGHT} x batch + "
        f"{1 - BATCH_WEIGHT:.1f} x biology. Dashed lines: equal overall score through each point."
    )
    return ReportSection(
        title="Which correction removes batch effects and keeps the biology?",
        chart=chart,
        answer=answer,
        caption=caption,
    )


def write_compare_report(
    table: pl.DataFrame,
    path: str | Path,
    *,
    method: str = "method",
    title: str = "cellframe compare: batch correction",
    subtitle: str = "",
) -> Path:
    """Write the compare report: the score chart, the metric heatmap and a score table.

    Parameters
    ----------
    table : polars.DataFrame
        Output of :func:`cellframe.evaluate.compare`.
    path : str or Path
        Output ``.html`` file (opens offline).
    method : str
        Column naming each method.
    title, subtitle : str
        Page heading and the line under it.

    Returns
    -------
    Path
        The written file.
    """
    _require(table, [method, *_SCORES, "n_profiles", "n_batches", "n_labels"], "compare report")
    metrics_section = ReportSection(
        title="Which metrics drive each score?",
        chart=compare_metrics_chart(table, method=method),
        answer=_weakest(table, method),
        caption=(
            "Each metric is scaled to [0, 1] as in scib (Luecken et al. 2022); ARI can dip "
            "below 0 for a clustering worse than chance."
        ),
    )
    summary = table.select(
        method, *(pl.col(c).round(3) for c in _SCORES), "n_profiles", "n_batches", "n_labels"
    )
    return write_report(
        [compare_section(table, method=method), metrics_section],
        path,
        title=title,
        subtitle=subtitle,
        summary=summary,
    )


def _weakest(table: pl.DataFrame, method: str) -> str:
    metrics = [*BATCH_METRICS, *BIO_METRICS]
    parts = []
    for row in table.iter_rows(named=True):
        worst = min(metrics, key=lambda m: row[m])
        parts.append(f"{row[method]}: {worst} {row[worst]:.2f}")
    return "Weakest metric per method: " + "; ".join(parts) + "."
