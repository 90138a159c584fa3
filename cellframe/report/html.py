"""One standalone HTML file holding several Altair charts, readable offline.

Vega, Vega-Lite and vega-embed are inlined once (from ``vl-convert-python``),
so the report opens without a network. Each chart renders as SVG into its own
section; rendering errors are collected in ``window.cellframeErrors`` and shown
on the page, so a broken chart is never silent.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import altair as alt
import polars as pl

from cellframe.errors import InvalidInputError
from cellframe.report.images import ReportImage

__all__ = ["ReportSection", "save_png", "write_report"]


@dataclass
class ReportSection:
    """A question, its one-line answer, the chart (and images) that show it, and a caption.

    Attributes
    ----------
    title : str
        Section heading, best phrased as the question the section answers.
    chart : altair.TopLevelMixin or None
        The chart (None for a section of images only).
    caption : str
        What the chart shows and what to look for.
    answer : str
        One line, computed from the data, shown above the chart.
    images : sequence of ReportImage
        Images embedded as PNG data URIs (:mod:`cellframe.report.images`).
    """

    title: str
    chart: alt.TopLevelMixin | None = None
    caption: str = ""
    answer: str = ""
    images: Sequence[ReportImage] = field(default_factory=tuple)


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
  body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #1f2933; }}
  h1 {{ font-size: 1.6rem; }} h2 {{ font-size: 1.15rem; margin-top: 2.2rem; }}
  .caption {{ color: #52606d; max-width: 60rem; }}
  .answer {{ font-size: 1.05rem; font-weight: 600; max-width: 60rem; margin: 0.4rem 0 0.8rem; }}
  section {{ padding-bottom: 0.5rem; border-bottom: 1px solid #e4e7eb; }}
  figure {{ display: inline-block; margin: 0 1.2rem 1rem 0; vertical-align: top; }}
  figure img {{ image-rendering: pixelated; border: 1px solid #cbd2d9; }}
  figcaption {{ color: #52606d; font-size: 0.85rem; max-width: 360px; }}
  table.summary {{ border-collapse: collapse; font-size: 0.9rem; }}
  table.summary td, table.summary th {{ border-bottom: 1px solid #e4e7eb; padding: 0.2rem 0.8rem; text-align: left; }}
  #cellframe-errors {{ color: #b00020; white-space: pre-wrap; }}
  nav ol {{ columns: 2; max-width: 60rem; padding-left: 1.4rem; }}
  nav a {{ color: #2b6cb0; text-decoration: none; }}
  footer {{ margin-top: 3rem; color: #7b8794; font-size: 0.8rem; }}
</style>
<script type="text/javascript">
{bundle}
</script>
</head>
<body>
<h1>{title}</h1>
<p class="caption">{subtitle}</p>
{summary}
{contents}
{sections}
<div id="cellframe-errors"></div>
<footer>Made by cellframe {version} on {when}. Charts: Vega-Lite {vl_version}, rendered in the browser from the data inlined in this file.</footer>
<script type="text/javascript">
  window.cellframeErrors = [];
  window.cellframeRendered = 0;
  const specs = {specs};
  const embeds = specs.map((spec, i) =>
    vegaEmbed("#chart-" + i, spec, {{renderer: "svg", actions: false}})
      .then(() => {{ window.cellframeRendered += 1; }})
      .catch((err) => {{
        window.cellframeErrors.push("chart " + i + ": " + err);
        document.getElementById("cellframe-errors").textContent += "chart " + i + " failed: " + err + "\\n";
      }}));
  window.cellframeDone = Promise.allSettled(embeds);
</script>
</body>
</html>
"""


def _summary_table(summary: Mapping[str, object] | pl.DataFrame | None) -> str:
    if summary is None:
        return ""
    if isinstance(summary, pl.DataFrame):
        head = "".join(f"<th>{html.escape(c)}</th>" for c in summary.columns)
        rows = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
            for row in summary.iter_rows()
        )
        return f'<table class="summary"><tr>{head}</tr>{rows}</table>'
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in summary.items()
    )
    return f'<table class="summary">{rows}</table>'


def _contents(sections: Sequence[ReportSection]) -> str:
    if len(sections) < 3:
        return ""
    items = "".join(
        f'<li><a href="#section-{i}">{html.escape(s.title)}</a></li>'
        for i, s in enumerate(sections)
    )
    return f"<nav><ol>{items}</ol></nav>"


def write_report(
    sections: Sequence[ReportSection],
    path: str | Path,
    *,
    title: str = "cellframe report",
    subtitle: str = "",
    summary: Mapping[str, object] | pl.DataFrame | None = None,
) -> Path:
    """Write charts into one standalone HTML file.

    Parameters
    ----------
    sections : sequence of ReportSection
        The sections (question, answer, chart and/or images, caption), in page order.
    path : str or Path
        Output file (``.html``); its folder is created.
    title, subtitle : str
        Page heading and the line under it.
    summary : mapping or polars.DataFrame, optional
        A small table of key numbers shown above the charts.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    InvalidInputError
        If there are no sections, a section has neither chart nor image, or an
        image is not a data URI (the report must open offline).
    """
    import vl_convert as vlc
    from altair.utils._importers import vl_version_for_vl_convert

    from cellframe import __version__

    if not sections:
        raise InvalidInputError("a report needs at least one section")
    empty = [s.title for s in sections if s.chart is None and not s.images]
    if empty:
        raise InvalidInputError(f"report sections without a chart or an image: {empty}")
    vl_version = vl_version_for_vl_convert()
    bundle = vlc.javascript_bundle(vl_version=vl_version)
    specs = [s.chart.to_dict() for s in sections if s.chart is not None]
    body = []
    n_chart = 0
    for i, s in enumerate(sections):
        parts = [f'<section id="section-{i}"><h2>{html.escape(s.title)}</h2>']
        if s.answer:
            parts.append(f'<p class="answer">{html.escape(s.answer)}</p>')
        if s.caption:
            parts.append(f'<p class="caption">{html.escape(s.caption)}</p>')
        if s.chart is not None:
            parts.append(f'<div class="chart" id="chart-{n_chart}"></div>')
            n_chart += 1
        for img in s.images:
            if not img.src.startswith("data:image/"):
                raise InvalidInputError(
                    f"section {s.title!r}: image {img.caption!r} is not a data URI; "
                    "embed it with cellframe.report.images.png_data_uri"
                )
            width = f' width="{int(img.width)}"' if img.width else ""
            # A wide image (a montage) gets a caption as wide as itself.
            wide = f' style="max-width: {int(img.width)}px"' if img.width else ""
            parts.append(
                f'<figure><img src="{img.src}" alt="{html.escape(img.caption)}"{width}>'
                f"<figcaption{wide}>{html.escape(img.caption)}</figcaption></figure>"
            )
        parts.append("</section>")
        body.append("".join(parts))
    page = _PAGE.format(
        title=html.escape(title),
        subtitle=html.escape(subtitle),
        summary=_summary_table(summary),
        contents=_contents(sections),
        sections="\n".join(body),
        bundle=bundle.replace("</script", "<\\/script"),
        specs=json.dumps(specs).replace("</", "<\\/"),
        version=__version__,
        when=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        vl_version=vl_version,
    )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out


def save_png(chart: alt.TopLevelMixin, path: str | Path, *, scale: float = 2.0) -> Path:
    """Render a chart to PNG with vl-convert (no browser needed).

    Raises
    ------
    ImportError
        If vl-convert-python is not installed.
    """
    import vl_convert as vlc

    png = vlc.vegalite_to_png(chart.to_dict(), scale=scale)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(png)
    return out
