"""The compare report: the batch-vs-biology chart holds the panel's numbers and renders offline."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from cellframe.errors import InvalidInputError, MissingColumnsError
from cellframe.evaluate.batch import BATCH_METRICS, BIO_METRICS
from cellframe.report import (
    compare_chart,
    compare_metrics_chart,
    compare_section,
    write_compare_report,
)
from tests._browser import render_report


def panel_table() -> pl.DataFrame:
    """A compare table with known metric values (what cellframe.evaluate.compare returns)."""
    rows = []
    for name, b, bio in (("cp/none", 0.2, 0.5), ("cp/center", 0.8, 0.55), ("cp/sphere", 0.7, 0.6)):
        row = {"method": name, "feature_source": "cp", "correction": name.split("/")[1]}
        row |= {"n_profiles": 96, "n_batches": 4, "n_labels": 12}
        row |= {m: b for m in BATCH_METRICS} | {m: bio for m in BIO_METRICS}
        row |= {"batch_score": b, "bio_score": bio, "overall_score": 0.4 * b + 0.6 * bio}
        rows.append(row)
    rows[2]["kbet"] = 0.1  # one weak metric, for the heatmap's answer line
    return pl.DataFrame(rows)


def _data(spec: dict) -> dict[str, list[dict]]:
    return spec["datasets"]


def test_compare_chart_points_and_iso_lines():
    table = panel_table()
    spec = compare_chart(table).to_dict()
    layers = spec["layer"]
    assert [layer["mark"]["type"] for layer in layers] == ["line", "point", "text"]
    assert layers[2]["encoding"]["color"]["field"] == "method"  # a moved label keeps its colour
    assert layers[1]["encoding"]["x"]["field"] == "batch_score"
    assert layers[1]["encoding"]["y"]["field"] == "bio_score"
    assert layers[1]["encoding"]["x"]["scale"]["domain"] == [0, 1]
    datasets = list(_data(spec).values())
    points = next(d for d in datasets if "overall_score" in d[0])
    assert [(p["method"], p["batch_score"], p["bio_score"]) for p in points] == [
        ("cp/none", 0.2, 0.5),
        ("cp/center", 0.8, 0.55),
        ("cp/sphere", 0.7, 0.6),
    ]
    # each dashed line is the overall score's level set: bio = (overall - 0.4 batch) / 0.6
    iso = next(d for d in datasets if "overall_score" not in d[0] and "label_x" not in d[0])
    line = [p for p in iso if p["method"] == "cp/center"]
    overall = 0.4 * 0.8 + 0.6 * 0.55
    assert [(p["batch_score"], p["bio_score"]) for p in line] == [
        (0.0, pytest.approx(overall / 0.6)),
        (1.0, pytest.approx((overall - 0.4) / 0.6)),
    ]
    # through the method's own point
    assert (overall - 0.4 * 0.8) / 0.6 == pytest.approx(0.55)
    # labels sit at their points; cp/center's (0.8, 0.55) would overlap cp/sphere's
    # (0.7, 0.6) label (0.1 apart in x, 0.05 in y: clear) -> stays; a close pair moves down
    labels = next(d for d in datasets if "label_x" in d[0])
    assert [(p["label_x"], p["label_y"]) for p in labels] == [(0.2, 0.5), (0.8, 0.55), (0.7, 0.6)]
    close = table.with_columns(
        pl.when(pl.col("method") == "cp/center").then(0.59).otherwise(pl.col("bio_score"))
        .alias("bio_score")
    )  # fmt: skip
    labels = next(d for d in _data(compare_chart(close).to_dict()).values() if "label_x" in d[0])
    assert labels[1]["label_y"] == pytest.approx(0.59 - 0.035)  # below cp/sphere's label
    assert labels[2]["label_y"] == 0.6


def test_compare_section_answer_and_heatmap_values():
    table = panel_table()
    section = compare_section(table)
    assert section.answer.startswith("Best overall: cp/center (overall 0.650; batch 0.800")
    assert "silhouette_batch, ilisi, kbet, graph_connectivity" in section.caption
    spec = compare_metrics_chart(table).to_dict()
    cells = next(iter(_data(spec).values()))
    kbet = {c["method"]: c["value"] for c in cells if c["metric"] == "kbet"}
    assert kbet == {"cp/none": 0.2, "cp/center": 0.8, "cp/sphere": 0.1}
    halves = {c["metric"]: c["half"] for c in cells}
    assert halves["ilisi"] == "batch" and halves["clisi"] == "biology"
    assert halves["overall_score"] == "score"


def test_compare_chart_refusals():
    table = panel_table()
    with pytest.raises(MissingColumnsError, match="bio_score"):
        compare_chart(table.drop("bio_score"))
    with pytest.raises(InvalidInputError, match="no rows"):
        compare_chart(table.clear())
    nan = table.with_columns(pl.when(pl.col("method") == "cp/none").then(float("nan"))
                             .otherwise(pl.col("batch_score")).alias("batch_score"))  # fmt: skip
    with pytest.raises(InvalidInputError, match=r"NaN scores in \['batch_score'\]"):
        compare_chart(nan)


def test_compare_report_renders_offline_in_chromium(tmp_path: Path):
    table = panel_table()
    path = write_compare_report(table, tmp_path / "compare.html", subtitle="batch: plate")
    html = path.read_text()
    assert "cp/sphere" in html and "0.65" in html  # the summary table's overall score
    seen = render_report(path, tmp_path / "compare.png", sections_dir=tmp_path / "sections")
    assert seen.errors == [] and seen.console_errors == [] and seen.blocked_requests == []
    assert seen.rendered == 2 and all(n >= 1 for n in seen.svgs_per_chart)
    assert seen.sections[0]["answer"].startswith("Best overall: cp/center")
    assert seen.sections[1]["answer"] == (
        "Weakest metric per method: cp/none: silhouette_batch 0.20; "
        "cp/center: leiden_nmi 0.55; cp/sphere: kbet 0.10."
    )
    assert (tmp_path / "compare.png").stat().st_size > 10_000
