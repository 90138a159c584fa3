"""Every script in examples/ runs as on a fresh install and prints the right numbers.

A fresh install has no ``../shared/data`` beside it. Each example is copied to a
temporary folder (so no path relative to the script can reach the checkout's
``../shared``) and run as a subprocess from an empty working folder, with
``CELLFRAME_SHARED_DATA`` pointing to a folder that does not exist; the package
itself is imported from this checkout. Each run uses the example's short mode
and the test checks a value the example prints or writes against one computed
here from the bundled data.
"""

from __future__ import annotations

import csv
import gzip
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cellframe.demo import demo_data_dir
from cellframe.store import Store

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
LINCS = demo_data_dir() / "lincs" / "SQ00015054_normalized_feature_select.csv.gz"

#: Every example and the test that runs it (a new example needs a test here).
TESTED = {
    "activity_tox21.py",
    "custom_chart.py",
    "embed_jump.py",
    "engine_select_qc.py",
    "evaluate_lincs.py",
    "ingest_and_query.py",
    "measure_jump.py",
    "profile_pipeline.py",
    "segment_dsb.py",
}


def run_example(name: str, *args: str, tmp_path: Path, timeout: int = 240) -> str:
    """Run ``examples/name`` as a user would after ``pip install``; return its stdout."""
    fresh = tmp_path / "fresh"
    scripts = fresh / "examples"
    work = fresh / "work"
    scripts.mkdir(parents=True, exist_ok=True)
    work.mkdir(exist_ok=True)
    script = scripts / name
    shutil.copy(EXAMPLES / name, script)
    # The layouts examples used to reach: ../shared beside the script's parent
    # folder, beside the working folder, and $CELLFRAME_SHARED_DATA.
    for parent in (script.parents[1], script.parents[2], work.parent):
        assert not (parent / "shared").exists()
    env = {**os.environ, "CELLFRAME_SHARED_DATA": str(tmp_path / "no-shared-data")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["RAY_DISABLE_IMPORT_WARNING"] = "1"
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, (
        f"{name} {args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc.stdout


def lincs_compounds(path: Path = LINCS) -> set[str]:
    """Compounds (not DMSO) of the bundled LINCS plate, read with the csv module."""
    with gzip.open(path, "rt", newline="") as f:
        return {r["Metadata_broad_sample"] for r in csv.DictReader(f)} - {"DMSO"}


def test_every_example_is_tested_and_none_reads_shared() -> None:
    scripts = {p.name for p in EXAMPLES.glob("*.py")}
    assert scripts == TESTED
    for name in scripts:
        source = (EXAMPLES / name).read_text()
        assert "shared/data" not in source and '"shared"' not in source, name
        assert "argparse" in source and '"--data"' in source, f"{name} takes no --data"


def test_evaluate_lincs(tmp_path: Path) -> None:
    out = run_example("evaluate_lincs.py", "--quick", tmp_path=tmp_path)
    m = re.search(r"mAP ([\d.]+) over (\d+) compounds, ([\d.]+)% significant", out)
    assert m, out
    assert int(m[2]) == len(lincs_compounds()) == 58
    assert 0 < float(m[1]) < 1 and 0 < float(m[3]) < 100  # some, not all, compounds active
    pr = [
        float(x)
        for x in re.findall(r"percent replicating \(Pearson, quantile [\d.]+\): ([\d.]+)", out)
    ]
    assert len(pr) == 2 and 0 < pr[1] < pr[0] < 1  # a stricter null quantile, fewer replicate


def test_evaluate_lincs_on_your_own_file(tmp_path: Path) -> None:
    # A user's own Parquet file: 10 compounds and the DMSO wells of the plate.
    wells = pl.read_csv(LINCS, infer_schema_length=10000, glob=False)
    keep = [*sorted(lincs_compounds())[:10], "DMSO"]
    path = tmp_path / "my plate.parquet"
    wells.filter(pl.col("Metadata_broad_sample").is_in(keep)).write_parquet(path)
    out = run_example("evaluate_lincs.py", "--quick", "--data", str(path), tmp_path=tmp_path)
    assert re.search(r"over 10 compounds", out), out


def test_segment_dsb(tmp_path: Path) -> None:
    import tifffile

    out = run_example("segment_dsb.py", "--quick", tmp_path=tmp_path)
    truth = tifffile.imread(demo_data_dir() / "dsb2018" / "mask2d.tif")[256:]
    n_true = len(np.unique(truth[truth > 0]))
    assert f"held-out bottom half: {n_true} true nuclei" in out
    rows = {
        m[1]: (int(m[2]), float(m[3]), float(m[4]))
        for m in re.finditer(r"│ (\w+)\s+┆\s+(\d+)\s+┆\s+([\d.]+)\s+┆\s+([\d.]+)", out)
    }
    assert set(rows) == {"otsu", "unet_small", "unet_small_tta", "unet_shipped", "unet_shipped_tta"}
    objects, jaccard, _ = rows["unet_shipped"]
    # The shipped model finds most nuclei and beats Otsu's pixel overlap.
    assert 0.6 * n_true < objects < 1.4 * n_true
    assert jaccard > 0.8 and jaccard > rows["otsu"][1]


def test_ingest_and_query(tmp_path: Path) -> None:
    out = run_example(
        "ingest_and_query.py", "--store", str(tmp_path / "s.duckdb"), tmp_path=tmp_path
    )
    root = demo_data_dir() / "cellprofiler" / "BR00121431"
    for well in ("A01", "A02"):
        with gzip.open(root / f"BR00121431-{well}-1" / "Cells.csv.gz", "rt", newline="") as f:
            n_cells = sum(1 for _ in csv.DictReader(f))
        assert f"well {well}: {n_cells} cells" in out
    with Store(tmp_path / "s.duckdb", read_only=True) as store:
        treatments = store.sql(
            "SELECT DISTINCT Metadata_Well, Metadata_Treatment FROM cells ORDER BY 1"
        )
    # From the bundled platemap: A01 is 1-octanol, A02 quinine.
    assert treatments.rows() == [("A01", "1-octanol"), ("A02", "quinine")]


def test_profile_pipeline(tmp_path: Path) -> None:
    out = run_example(
        "profile_pipeline.py", "--store", str(tmp_path / "p.duckdb"), tmp_path=tmp_path
    )
    with Store(tmp_path / "p.duckdb", read_only=True) as store:
        activity = store.read("phenotypic_activity")
        sphered = store.read("wells_sphered")
    q = {
        (r["profiles"], r["Metadata_Treatment"]): r["corrected_p_value"]
        for r in activity.iter_rows(named=True)
    }
    assert len(q) == 12
    # cmpd5 moves the features most: active however the null is built.
    assert q[("normalized", "cmpd5")] < 0.05 and q[("sphered", "cmpd5")] < 0.05
    # cmpd0 has no effect: before any fitted correction, it is not called active.
    assert q[("normalized", "cmpd0")] > 0.05
    null = activity.filter(
        (pl.col("profiles") == "sphered") & (pl.col("Metadata_Treatment") == "cmpd0")
    ).row(0, named=True)
    assert f"null compound cmpd0, sphered profiles: mAP {null['mean_average_precision']:.3f}" in out
    # After sphering, the activity call is cross-fitted (correction=sphering): the
    # null compound stays inactive and the strong ones stay active (in the same
    # call, testing against the DMSO wells sphering was fitted on, cmpd0 came out
    # active: q = 0.026).
    source = (EXAMPLES / "profile_pipeline.py").read_text()
    call = re.search(r"^\s+ap_sphered = phenotypic_activity\((.*)\)$", source, re.M)
    assert call and "correction=sphering" in call[1], "the marked activity line is missing"
    assert q[("sphered", "cmpd0")] > 0.05
    assert all(q[("sphered", f"cmpd{k}")] < 0.05 for k in (2, 3, 4, 5))
    assert "null compound cmpd0, sphered profiles" in out and "ACTIVE" not in out
    # Sphering whitens the 12 DMSO wells it was fitted on: their covariance is
    # near the identity (regularized ZCA, lam = 0.01, so slightly below it).
    features = [c for c in sphered.columns if not c.startswith("Metadata_")]
    controls = sphered.filter(pl.col("Metadata_Control") == "negcon").select(features).to_numpy()
    assert controls.shape[0] == 12
    assert np.abs(controls.mean(axis=0)).max() < 1e-4


def test_engine_select_qc(tmp_path: Path) -> None:
    out = run_example(
        "engine_select_qc.py",
        "--plates",
        "2",
        "--store",
        str(tmp_path / "e.duckdb"),
        tmp_path=tmp_path,
    )
    assert "same dropped features and reasons: True" in out
    assert "same QC flags: True" in out
    with Store(tmp_path / "e.duckdb", read_only=True) as store:
        dropped = store.read("selected_dropped")
        kept = store.columns("selected")
        flagged = store.read("qc").filter(pl.col("Metadata_QC_Outlier"))
    names = set(dropped["feature"].to_list())
    # f000-f004 are 1.0 but for the odd well of each plate (+60), so perfectly
    # correlated: one stays. The 10%-missing f190-f199 go (na_cutoff 5%).
    assert len(names & {f"Cells_f{j:03d}" for j in range(5)}) == 4
    assert {f"Cells_f{j:03d}" for j in range(190, 200)} <= names
    # The near copies f005-f014 of f015-f024 (r > 0.9) keep one of each pair.
    for j in range(5, 15):
        assert (f"Cells_f{j:03d}" in kept) != (f"Cells_f{j + 10:03d}" in kept)
    assert "Cells_f100" in kept
    # One odd well a plate (+60 on every feature): each plate has a flag.
    assert set(flagged["Metadata_Plate"]) == {"P0", "P1"}


def test_measure_jump(tmp_path: Path) -> None:
    out = run_example(
        "measure_jump.py", "--quick", "--store", str(tmp_path / "m.duckdb"), tmp_path=tmp_path
    )
    with Store(tmp_path / "m.duckdb", read_only=True) as store:
        cells = store.read("cells")
        labels = store.read("object_labels").filter(pl.col("Object") == "Cells")
    # The printed per-site numbers, recomputed from the stored cells.
    for plate, site in cells.group_by("Metadata_Plate"):
        area = float(np.median(site["Nuclei_AreaShape_Area"].to_numpy()))
        assert (
            f"{plate[0]}/" in out
            and f"{site.height} cells, median nucleus area {area:.1f} px" in out
        )
    assert labels["Count"].sum() == cells.height > 0  # one row per saved cell object
    assert "aggregate -> 2 well profiles" in out
    assert cells.schema["Cells_AreaShape_Area"] == pl.Float32


def test_embed_jump(tmp_path: Path) -> None:
    out = run_example(
        "embed_jump.py", "--quick", "--store", str(tmp_path / "j.duckdb"), tmp_path=tmp_path
    )
    with Store(tmp_path / "j.duckdb", read_only=True) as store:
        cells = store.read("cells_efficientnet_lite0").sort(
            "Metadata_Plate", "Metadata_ObjectNumber"
        )
    assert cells.height == 12 and cells["Metadata_Plate"].value_counts()["count"].to_list() == [
        6,
        6,
    ]
    features = [c for c in cells.columns if not c.startswith("Metadata_")]
    assert len(features) == 5 * 672
    # The printed similarities, recomputed in float64 from the stored cells.
    x = cells.select(features).to_numpy().astype(np.float64)
    plates = cells["Metadata_Plate"].to_numpy()
    names = sorted(set(plates))
    profiles = np.stack([np.median(x[plates == p], axis=0) for p in names])
    profiles /= np.linalg.norm(profiles, axis=1, keepdims=True)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    own = np.array([names.index(p) for p in plates])
    sim = x @ profiles.T
    expected_own = sim[np.arange(len(x)), own].mean()
    expected_other = sim[np.arange(len(x)), 1 - own].mean()
    m = re.search(r"own site profile ([\d.]+), to the other site's ([\d.]+)", out)
    assert m, out
    assert abs(float(m[1]) - expected_own) < 1.5e-3 and abs(float(m[2]) - expected_other) < 1.5e-3
    assert expected_own > expected_other


def test_activity_tox21(tmp_path: Path) -> None:
    out = run_example(
        "activity_tox21.py", "--quick", "--store", str(tmp_path / "t.duckdb"), tmp_path=tmp_path
    )
    with Store(tmp_path / "t.duckdb", read_only=True) as store:
        results = store.read("moleculenet_results")
        assays = store.read("moleculenet_assays")
    assert results.height == 1 and results["model"][0] == "rf"
    row = results.row(0, named=True)
    assert row["n_assays_evaluated"] + row["n_assays_skipped"] == 12
    evaluated = assays.filter(pl.col("evaluated"))
    assert evaluated.height == row["n_assays_evaluated"]
    assert row["mean_auroc"] == pytest.approx(evaluated["auroc"].mean(), abs=1e-12)
    # 1,000 compounds and 50 trees: well above chance, below the full-data 0.81.
    assert 0.65 < row["mean_auroc"] < 0.9
    assert f"mean test ROC-AUC {row['mean_auroc']:.4f}" in out
    assert "tox21: AssayMatrix(1000 compounds x 12 assays" in out


def test_custom_chart_without_a_demo_store(tmp_path: Path) -> None:
    out = run_example("custom_chart.py", tmp_path=tmp_path)
    work = tmp_path / "fresh" / "work"
    assert "computing the tables from the bundled LINCS plate" in out
    counts = re.findall(
        r"^(normalized|sphered \(lambda=[\d.e-]+\)): (\d+) compounds, (\d+) with q < 0.05",
        out,
        re.M,
    )
    assert [c[0].split()[0] for c in counts] == ["normalized", "sphered"]
    n = len(lincs_compounds())
    assert all(int(c[1]) == n for c in counts)
    # Cross-fitted nulls: some compounds active, not all (tested against the
    # controls the sphering was fitted on, all 58 came out active).
    assert all(0 < int(c[2]) < n for c in counts)
    assert (work / "activity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (work / "custom_report.html").read_text()
    assert "Phenotypic activity per compound" in html
