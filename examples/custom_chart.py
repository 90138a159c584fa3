"""Build your own Altair chart from cellframe metric tables, next to cellframe's own charts.

Run after the demo (``cellframe demo``)::

    python examples/custom_chart.py [cellframe-demo/cellframe.duckdb]

Reads the per-compound phenotypic-activity table the demo wrote, draws mAP
against -log10(q) per compound with plain Altair, puts it beside a cellframe
chart, and saves both as an offline HTML report and a PNG.
"""

from __future__ import annotations

import sys
from pathlib import Path

import altair as alt
import polars as pl

from cellframe.report import ReportSection, lambda_sweep_chart, save_png, write_report
from cellframe.store import Store


def volcano(activity: pl.DataFrame) -> alt.Chart:
    """mAP vs significance per compound: a chart cellframe does not ship."""
    data = activity.with_columns(
        (-pl.col("corrected_p_value").clip(1e-6, 1.0).log10()).alias("minus_log10_q")
    )
    return (
        alt.Chart(data.to_pandas(), title="Phenotypic activity per compound")
        .mark_circle(size=60, opacity=0.7)
        .encode(
            x=alt.X("mean_average_precision:Q", title="mAP vs DMSO"),
            y=alt.Y("minus_log10_q:Q", title="-log10(q)"),
            color=alt.Color("source:N", title="Profiles"),
            tooltip=["Metadata_Treatment", "mean_average_precision", "corrected_p_value"],
        )
        .properties(width=340, height=260)
    )


def main(path: str) -> None:
    with Store(path, read_only=True) as store:
        activity = store.read("phenotypic_activity")
        sweep = store.read("sphering_sweep")
    chart = volcano(activity)
    report = write_report(
        [
            ReportSection("Phenotypic activity", chart, "Each point is a compound."),
            ReportSection("Sphering sweep", lambda_sweep_chart(sweep), "cellframe's own chart."),
        ],
        Path(path).with_name("custom_report.html"),
        title="My own charts",
    )
    png = save_png(chart, Path(path).with_name("activity.png"))
    print(f"wrote {report} and {png}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "cellframe-demo/cellframe.duckdb")
