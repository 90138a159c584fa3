"""Report charts hold the right numbers, and the HTML report renders offline in Chromium."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cellframe.errors import InvalidInputError, MissingColumnsError
from cellframe.report import (
    ReportImage,
    ReportSection,
    auroc_threshold_chart,
    lambda_sweep_chart,
    map_vs_enrichment_chart,
    pca_chart,
    pca_coordinates,
    png_data_uri,
    precision_recall_chart,
    qc_outlier_chart,
    save_png,
    tta_delta_chart,
    well_predicted_overlap_chart,
    write_report,
)
from tests._browser import render_report


def profiles(seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n = 40
    return pl.DataFrame(
        {
            "Metadata_Plate": np.repeat(["P1", "P2"], n // 2),
            "Metadata_Well": [f"A{i:02d}" for i in range(n)],
            "Metadata_Control": ["negcon", None] * (n // 2),
            "f1": rng.normal(size=n),
            "f2": rng.normal(size=n) * 3,
            "f3": rng.normal(size=n),
        }
    )


def test_pca_coordinates_match_sklearn() -> None:
    from sklearn.decomposition import PCA

    df = profiles()
    coords, explained = pca_coordinates(df)
    ref = PCA(n_components=2).fit(df.select("f1", "f2", "f3").to_numpy())
    ref_scores = ref.transform(df.select("f1", "f2", "f3").to_numpy())
    for i in range(2):  # components are defined up to sign
        got = coords[f"PC{i + 1}"].to_numpy()
        sign = np.sign(got @ ref_scores[:, i])
        np.testing.assert_allclose(sign * got, ref_scores[:, i], atol=1e-10)
    np.testing.assert_allclose(explained, ref.explained_variance_ratio_, rtol=1e-10)
    assert coords.columns[:3] == ["Metadata_Plate", "Metadata_Well", "Metadata_Control"]


def test_pca_chart_leaves_out_missing_rows_and_says_so() -> None:
    df = profiles().with_columns(
        pl.when(pl.col("Metadata_Well") == "A03").then(None).otherwise(pl.col("f1")).alias("f1")
    )
    spec = pca_chart(df).to_dict()
    assert "1 profiles with missing values left out" in spec["title"]
    # treated wells in one layer, controls drawn over them in a second
    assert sum(len(d) for d in spec["datasets"].values()) == 39
    assert [len(spec["datasets"][layer["data"]["name"]]) for layer in spec["layer"]] == [19, 20]


def test_auroc_threshold_counts() -> None:
    per_assay = pl.DataFrame(
        {"modality": ["CS", "CS", "CS", "MO"], "auroc": [0.95, 0.72, 0.55, 0.91]}
    )
    spec = auroc_threshold_chart(per_assay, thresholds=[0.5, 0.7, 0.9]).to_dict()
    rows = {
        (r["modality"], r["threshold"]): r["assays"] for r in next(iter(spec["datasets"].values()))
    }
    assert rows == {
        ("CS", 0.5): 3,
        ("CS", 0.7): 2,
        ("CS", 0.9): 1,
        ("MO", 0.5): 1,
        ("MO", 0.7): 1,
        ("MO", 0.9): 1,
    }


def test_overlap_counts_exact_combinations() -> None:
    spec = well_predicted_overlap_chart(
        {"CS": ["a", "b", "c"], "MO": ["b", "c", "d"], "GE": ["c"]}
    ).to_dict()
    rows = {r["modalities"]: r["assays"] for r in next(iter(spec["datasets"].values()))}
    assert rows == {"CS": 1, "CS+MO": 1, "CS+MO+GE": 1, "MO": 1}


def test_missing_columns_and_empty_tables_are_named() -> None:
    with pytest.raises(MissingColumnsError, match="score"):
        lambda_sweep_chart(pl.DataFrame({"lambda": [1.0]}))
    with pytest.raises(InvalidInputError, match="no rows"):
        tta_delta_chart(pl.DataFrame({"image": [], "delta": []}))
    with pytest.raises(InvalidInputError, match="at least one section"):
        write_report([], "x.html")
    with pytest.raises(InvalidInputError, match="without a chart or an image"):
        write_report([ReportSection("Empty?")], "x.html")
    with pytest.raises(InvalidInputError, match="not a data URI"):
        write_report(
            [ReportSection("Linked?", images=[ReportImage("https://x.org/a.png", "remote")])],
            "x.html",
        )


def all_sections() -> list[ReportSection]:
    df = profiles()
    qc = pca_coordinates(df)[0].with_columns(
        (pl.col("PC1").abs() > 2).alias("is_outlier"), pl.lit("|z| > 2 on PC1").alias("reason")
    )
    return [
        ReportSection("PCA", pca_chart(df), "Wells coloured by plate."),
        ReportSection(
            "mAP vs enrichment",
            map_vs_enrichment_chart(
                pl.DataFrame(
                    {
                        "source": ["CellProfiler", "CNN"],
                        "mAP": [0.09, 0.1],
                        "folds_of_enrichment": [50.3, 53.9],
                    }
                )
            ),
        ),
        ReportSection(
            "Sweep",
            lambda_sweep_chart(
                pl.DataFrame({"lambda": [1e-4, 1e-2, 1.0], "score": [0.2, 0.3, 0.25]})
            ),
        ),
        ReportSection(
            "PR",
            precision_recall_chart(
                pl.DataFrame({"recall": [0.0, 0.5, 1.0], "precision": [1.0, 0.6, 0.3]})
            ),
        ),
        ReportSection("QC", qc_outlier_chart(qc)),
        ReportSection(
            "TTA", tta_delta_chart(pl.DataFrame({"image": ["a", "b"], "delta": [0.02, -0.01]}))
        ),
        ReportSection(
            "AUROC",
            auroc_threshold_chart(pl.DataFrame({"modality": ["CS", "MO"], "auroc": [0.93, 0.7]})),
        ),
        ReportSection("Overlap", well_predicted_overlap_chart({"CS": ["a"], "MO": ["a", "b"]})),
    ]


def test_png_export(tmp_path: Path) -> None:
    out = save_png(pca_chart(profiles()), tmp_path / "pca.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_renders_offline_in_chromium(tmp_path: Path) -> None:
    sections = all_sections()
    path = write_report(
        sections, tmp_path / "report.html", title="Test report", summary={"plates": 2}
    )
    html_text = path.read_text()
    assert "cdn.jsdelivr" not in html_text and "<script src" not in html_text
    seen = render_report(path, tmp_path / "report.png")
    assert seen.errors == [] and seen.console_errors == [] and seen.blocked_requests == []
    assert seen.rendered == len(sections)
    assert len(seen.svgs_per_chart) == len(sections) and all(n >= 1 for n in seen.svgs_per_chart)
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_report_with_answers_and_images_renders_in_chromium(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(40, 60), dtype=np.uint8)
    sections = [
        ReportSection(
            "Which wells differ?",
            pca_chart(profiles()),
            "Look for controls apart from treated wells.",
            answer="3 of 40 wells differ.",
        ),
        ReportSection(
            "What do the cells look like?",
            None,
            "Look for outlines on debris.",
            answer="66 nuclei on 2 sites.",
            images=[ReportImage(png_data_uri(image), "site 1", width=120)],
        ),
        ReportSection(
            "PR",
            precision_recall_chart(pl.DataFrame({"recall": [0.0, 1.0], "precision": [1.0, 0.5]})),
        ),
    ]
    path = write_report(sections, tmp_path / "report.html")
    seen = render_report(path, tmp_path / "report.png", tmp_path / "sections")
    assert seen.errors == [] and seen.console_errors == [] and seen.blocked_requests == []
    assert seen.rendered == 2 and all(n >= 1 for n in seen.svgs_per_chart)
    assert seen.images == [(60, 40)]  # decoded at its own size
    assert [(s["title"], s["answer"], s["charts"], s["images"]) for s in seen.sections] == [
        ("Which wells differ?", "3 of 40 wells differ.", 1, 0),
        ("What do the cells look like?", "66 nuclei on 2 sites.", 0, 1),
        ("PR", "", 1, 0),
    ]
    assert [p.name for p in seen.section_screenshots] == [
        "section-0.png", "section-1.png", "section-2.png",
    ]  # fmt: skip
