"""The main job: ``cellframe demo`` on the bundled data makes a store and a report that renders."""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import pytest

from cellframe.demo import demo_data_dir, run_demo
from cellframe.store import Store
from tests._browser import render_report


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("demo")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run_demo(out, progress=False)


def cellprofiler_cells() -> int:
    n = 0
    for cells in (demo_data_dir() / "cellprofiler" / "BR00121431").glob("*/Cells.csv.gz"):
        with gzip.open(cells, "rt") as fh:
            n += sum(1 for _ in fh) - 1
    return n


def test_demo_store_holds_every_step(demo) -> None:
    expected = {
        "objects", "cells_efficientnet_lite0", "image_profiles_efficientnet_lite0", "cells",
        "wells_cellprofiler", "wells_lincs", "wells_lincs_normalized", "wells_lincs_sphered",
        "sphering_fit", "sphering_sweep", "retrieval_summary", "retrieval_pr_curve",
        "phenotypic_activity", "qc_wells_lincs", "segmentation_tta", "activity_published_auroc",
    }  # fmt: skip
    assert expected <= set(demo.tables)
    with Store(demo.store_path, read_only=True) as store:
        objects = store.read("objects")
        # Otsu finds 14 and 51 nuclei on these two sites; the U-Net must be close.
        per_site = objects.group_by("Metadata_Plate").len().sort("Metadata_Plate")["len"].to_list()
        assert 10 <= per_site[0] <= 20 and 40 <= per_site[1] <= 65
        # every nucleus is embedded, 672 features per channel x 5 channels
        emb = store.read("cells_efficientnet_lite0")
        assert emb.height == objects.height and emb.width == 4 + 5 * 672
        # every CellProfiler cell of the bundled sites is ingested, annotated from the platemap
        cells = store.read("cells")
        assert cells.height == cellprofiler_cells()
        assert set(cells["Metadata_Well"]) == {"A01", "A02"}
        assert cells["Metadata_pert_iname"].drop_nulls().unique().sort().to_list() == [
            "1-octanol", "quinine",
        ]  # fmt: skip
        wells = store.read("wells_cellprofiler")
        assert wells["Metadata_Count_Cells"].sum() == cells.height
        # LINCS: 384 wells, 24 DMSO controls
        lincs = store.read("wells_lincs")
        assert lincs.height == 384 and (lincs["Metadata_Control"] == "negcon").sum() == 24
        summary = store.read("retrieval_summary")
        assert summary.height == 2
        assert summary["mean_average_precision"].is_between(0.05, 1.0).all()
        sweep = store.read("sphering_sweep")
        assert sweep.height == 5 and sweep["score"].is_between(0, 1).all()
        prov = store.provenance("cells_efficientnet_lite0").row(-1, named=True)
        assert "efficientnet-lite0" in prov["parameters"] and "pretrained" in prov["parameters"]
    assert demo.summary["nuclei segmented (2 JUMP sites)"] == objects.height
    assert demo.summary["assays with median AUROC > 0.9 (published), MO"] == 29


def test_demo_report_renders_offline(demo, tmp_path: Path) -> None:
    seen = render_report(demo.report_path, tmp_path / "demo-report.png", tmp_path / "sections")
    assert seen.errors == [] and seen.console_errors == [] and seen.blocked_requests == []
    assert seen.rendered == len(seen.svgs_per_chart) >= 7
    assert all(n >= 1 for n in seen.svgs_per_chart)
    # every section asks a question and answers it; segmentation shows 2 sites + 1 montage
    assert all(s["title"].endswith("?") and s["answer"] and s["caption"] for s in seen.sections)
    assert len(seen.images) == 3 and all(w >= 100 and h >= 100 for w, h in seen.images)
    assert len(seen.section_screenshots) == len(seen.sections)
