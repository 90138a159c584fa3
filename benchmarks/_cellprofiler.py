"""CellProfiler 5, run headless from its own venv, for the parity test and bench_measure.py.

CellProfiler pins NumPy 1.26 and SciPy 1.10, so it lives in a venv of its own
(recipe: ../shared/ANCHORS.md) named by the environment variable
``CELLPROFILER_VENV``; without it :func:`cellprofiler_venv` returns None and
callers skip. Everything that imports ``cellprofiler_core`` runs in that venv's
Python in a subprocess: :func:`build_pipeline` writes a small script that loads
a ``.cppipe`` with the ``cellprofiler_core`` API and adds modules to it.

* :func:`build_pipeline` -- ExampleHuman's pipeline, optionally renamed to other
  channels, with illumination correction (CorrectIlluminationCalculate "All" +
  CorrectIlluminationApply, as Cell Painting pipelines do it), with every
  measurement family cellframe computes (MeasureObjectIntensity,
  MeasureObjectSizeShape with Zernikes and Feret, MeasureTexture at cellframe's
  scales and 256 grey levels, MeasureGranularity, MeasureObjectIntensityDistribution,
  MeasureColocalization) and with the label images exported as 16-bit TIFFs.
* :func:`run_cellprofiler` -- runs ``cellprofiler -c -r`` on a folder, returns the
  wall time, the peak RSS of the process and the time of each module (its log).
* :func:`read_objects` -- a compartment's CSV export as a Polars frame.
* :func:`compare_features` / :func:`feature_agreement` -- parity on the same masks.
* :func:`match_objects` -- IoU matching of two label images.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

#: Environment variable naming CellProfiler's venv (``$CELLPROFILER_VENV/bin/cellprofiler``).
ENV = "CELLPROFILER_VENV"
#: ExampleHuman's images and pipeline, relative to ../shared/data.
EXAMPLE_HUMAN = Path("cellprofiler-outputs/tests/data/cellprofiler/ExampleHuman")
EXAMPLE_HUMAN_PIPELINE = Path("cellprofiler-pipelines/ExampleHuman.cppipe")
EXAMPLE_HUMAN_CHANNELS = ("DNA", "PH3", "cellbody")
COMPARTMENTS = ("Nuclei", "Cells", "Cytoplasm")
#: Measurement groups: the first word of a CellProfiler feature name.
GROUPS = (
    "AreaShape",
    "Location",
    "Intensity",
    "Texture",
    "Granularity",
    "RadialDistribution",
    "Correlation",
)


def cellprofiler_venv() -> Path | None:
    """CellProfiler's venv from ``$CELLPROFILER_VENV``, or None when unset or incomplete.

    Returns
    -------
    pathlib.Path or None
        The venv folder (it holds ``bin/cellprofiler`` and ``bin/python``).
    """
    value = os.environ.get(ENV)
    if not value:
        return None
    venv = Path(value)
    if (venv / "bin" / "cellprofiler").exists() and (venv / "bin" / "python").exists():
        return venv
    return None


@dataclass(frozen=True)
class PipelineSpec:
    """What :func:`build_pipeline` adds to ExampleHuman's pipeline.

    Parameters
    ----------
    channels : tuple of str
        Image names, in the order of the file suffixes ``d0.tif``, ``d1.tif``, ...
    nuclei, cells : str
        Channels IdentifyPrimaryObjects and IdentifySecondaryObjects read.
    measure : bool
        Add every measurement family cellframe computes (else only the
        pipeline's own MeasureObjectIntensity and MeasureObjectSizeShape).
    labels : bool
        Export the Nuclei, Cells and Cytoplasm label images
        (``<first file>_<Compartment>_labels.tiff``).
    texture_scales : tuple of int
        MeasureTexture's scales (cellframe's default (3, 5, 10)), 256 grey levels.
    illumination : bool
        Correct illumination first (CorrectIlluminationCalculate "Regular", "All",
        median filter of ``illumination_size`` px, rescaled; then Divide).
    illumination_size : int
        The median filter's size.
    """

    channels: tuple[str, ...] = EXAMPLE_HUMAN_CHANNELS
    nuclei: str = "DNA"
    cells: str = "cellbody"
    measure: bool = True
    labels: bool = True
    texture_scales: tuple[int, ...] = (3, 5, 10)
    illumination: bool = False
    illumination_size: int = 50


# Runs inside CellProfiler's venv: argv[1] a JSON config, writes config["output"].
_BUILD_SCRIPT = r"""
import json, sys
import cellprofiler_core.preferences as prefs
prefs.set_headless()
from cellprofiler_core.pipeline import Pipeline
from cellprofiler.modules.convertobjectstoimage import ConvertObjectsToImage
from cellprofiler.modules.correctilluminationapply import CorrectIlluminationApply
from cellprofiler.modules.correctilluminationcalculate import CorrectIlluminationCalculate
from cellprofiler.modules.measurecolocalization import MeasureColocalization
from cellprofiler.modules.measuregranularity import MeasureGranularity
from cellprofiler.modules.measureobjectintensitydistribution import MeasureObjectIntensityDistribution
from cellprofiler.modules.measuretexture import MeasureTexture
from cellprofiler.modules.saveimages import SaveImages

cfg = json.load(open(sys.argv[1]))
channels = cfg["channels"]
objects = ["Nuclei", "Cells", "Cytoplasm"]
p = Pipeline()
p.load(cfg["source"])


def named(name):
    return [m for m in p.modules() if m.module_name == name]


# cellframe identifies no PH3 objects and draws no overlay: leave them out.
for m in list(p.modules()):
    if m.module_name in ("OverlayOutlines", "RelateObjects", "SaveImages") or (
        m.module_name == "IdentifyPrimaryObjects" and m.y_name.value != "Nuclei"
    ):
        p.remove_module(m.module_num)

prefix = "Orig" if cfg["illumination"] else ""
nt = named("NamesAndTypes")[0]
while len(nt.assignments) < len(channels):
    nt.add_assignment()
for i, (group, name) in enumerate(zip(nt.assignments, channels)):
    group.rule_filter.value = 'and (file does contain "d%d.tif")' % i
    group.image_name.value = prefix + name
named("IdentifyPrimaryObjects")[0].x_name.value = cfg["nuclei"]
named("IdentifySecondaryObjects")[0].image_name.value = cfg["cells"]
export = named("ExportToSpreadsheet")[0]


def insert(module, before):
    module.set_module_num(before.module_num)
    p.add_module(module)


if cfg["illumination"]:
    first = named("IdentifyPrimaryObjects")[0]
    apply = CorrectIlluminationApply()
    for i, name in enumerate(channels):
        calc = CorrectIlluminationCalculate()
        calc.image_name.value = prefix + name
        calc.illumination_image_name.value = "Illum" + name
        calc.intensity_choice.value = "Regular"
        calc.each_or_all.value = "All"
        calc.smoothing_method.value = "Median Filter"
        calc.automatic_object_width.value = "Manually"
        calc.size_of_smoothing_filter.value = cfg["illumination_size"]
        calc.rescale_option.value = "Yes"
        insert(calc, first)
        if i:
            apply.add_image()
        group = apply.images[i]
        group.image_name.value = prefix + name
        group.corrected_image_name.value = name
        group.illum_correct_function_image_name.value = "Illum" + name
        group.divide_or_subtract.value = "Divide"
    insert(apply, first)

for m in named("MeasureObjectIntensity"):
    m.images_list.value = ", ".join(channels)
    m.objects_list.value = ", ".join(objects)
for m in named("MeasureObjectSizeShape"):
    m.objects_list.value = ", ".join(objects)
    m.calculate_zernikes.value = True
    m.calculate_advanced.value = False  # cellframe measures no moments/inertia tensors

if cfg["measure"]:
    texture = MeasureTexture()
    texture.images_list.value = ", ".join(channels)
    texture.objects_list.value = ", ".join(objects)
    texture.gray_levels.value = 256
    texture.images_or_objects.value = "Objects"
    for i, scale in enumerate(cfg["texture_scales"]):
        if i:
            texture.add_scale()
        texture.scale_groups[i].scale.value = scale
    insert(texture, export)
    granularity = MeasureGranularity()
    granularity.images_list.value = ", ".join(channels)
    granularity.wants_objects.value = True
    granularity.objects_list.value = ", ".join(objects)
    insert(granularity, export)
    radial = MeasureObjectIntensityDistribution()
    radial.images_list.value = ", ".join(channels)
    for i, name in enumerate(objects):
        if i:
            radial.add_object()
        radial.objects[i].object_name.value = name
        radial.objects[i].center_choice.value = "These objects"
    radial.bin_counts[0].bin_count.value = 4
    radial.bin_counts[0].wants_scaled.value = True
    radial.wants_zernikes.value = "None"
    insert(radial, export)
    coloc = MeasureColocalization()
    coloc.images_list.value = ", ".join(channels)
    coloc.objects_list.value = ", ".join(objects)
    coloc.images_or_objects.value = "Within objects"
    coloc.do_all.value = False
    coloc.do_corr_and_slope.value = True
    coloc.do_manders.value = True
    coloc.do_rwc.value = True
    coloc.do_overlap.value = True
    coloc.do_costes.value = False  # cellframe's default (costes=False)
    insert(coloc, export)

if cfg["labels"]:
    for name in objects:
        c = ConvertObjectsToImage()
        c.object_name.value, c.image_name.value, c.image_mode.value = name, name + "Labels", "uint16"
        insert(c, export)
        s = SaveImages()
        s.save_image_or_figure.value, s.image_name.value = "Image", name + "Labels"
        s.file_name_method.value, s.file_image_name.value = "From image filename", prefix + channels[0]
        s.wants_file_name_suffix.value, s.file_name_suffix.value = True, "_" + name + "_labels"
        s.file_format.value, s.bit_depth.value = "tiff", "16-bit integer"
        insert(s, export)

with open(cfg["output"], "w") as fh:
    p.dump(fh)
print(json.dumps([m.module_name for m in p.modules()]))
"""


def build_pipeline(
    venv: Path, source: Path, output: Path, spec: PipelineSpec = PipelineSpec()
) -> list[str]:
    """Write ``output``: ``source`` (ExampleHuman's ``.cppipe``) with the additions of ``spec``.

    Parameters
    ----------
    venv : pathlib.Path
        CellProfiler's venv (:func:`cellprofiler_venv`).
    source : pathlib.Path
        ExampleHuman.cppipe.
    output : pathlib.Path
        Where to write the new pipeline.
    spec : PipelineSpec
        Channels, measurements, label export, illumination.

    Returns
    -------
    list of str
        The module names of the written pipeline, in order.
    """
    config = {
        "source": str(source),
        "output": str(output),
        "channels": list(spec.channels),
        "nuclei": spec.nuclei,
        "cells": spec.cells,
        "measure": spec.measure,
        "labels": spec.labels,
        "texture_scales": list(spec.texture_scales),
        "illumination": spec.illumination,
        "illumination_size": spec.illumination_size,
    }
    with tempfile.TemporaryDirectory() as tmp:
        script, cfg = Path(tmp) / "build.py", Path(tmp) / "config.json"
        script.write_text(_BUILD_SCRIPT)
        cfg.write_text(json.dumps(config))
        done = subprocess.run(
            [str(venv / "bin" / "python"), str(script), str(cfg)],
            capture_output=True,
            text=True,
            timeout=300,
        )
    if done.returncode != 0:
        raise RuntimeError(f"building the CellProfiler pipeline failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@dataclass
class CellProfilerRun:
    """One ``cellprofiler -c -r`` run: times, memory and where its exports are.

    ``module_times`` maps each module (``"7 MeasureTexture"``) to its summed
    (CPU s, wall s) over the image sets; ``stage_times`` groups them as
    :data:`STAGES` does.
    """

    output: Path
    wall_s: float
    peak_rss_mb: float
    module_times: dict[str, tuple[float, float]] = field(default_factory=dict)
    log: str = ""
    cpu_s: float = 0.0

    def stage_times(self, cpu: bool = False) -> dict[str, float]:
        """Seconds per stage (illumination, nuclei, cells, cytoplasm, each family, other).

        Wall seconds, or with ``cpu=True`` CPU seconds (CellProfiler's ``os.times()``
        user + system of the process and its children), summed over the image sets.
        """
        out: dict[str, float] = {}
        for key, (cpu_s, wall) in self.module_times.items():
            name = key.split(" ", 1)[1]
            stage = STAGES.get(name, "other")
            out[stage] = out.get(stage, 0.0) + (cpu_s if cpu else wall)
        return out


#: CellProfiler module -> the stage it is reported under.
STAGES = {
    "CorrectIlluminationCalculate": "illumination",
    "CorrectIlluminationApply": "illumination",
    "IdentifyPrimaryObjects": "nuclei",
    "IdentifySecondaryObjects": "cells",
    "IdentifyTertiaryObjects": "cytoplasm",
    "MeasureObjectSizeShape": "sizeshape",
    "MeasureObjectIntensity": "intensity",
    "MeasureTexture": "texture",
    "MeasureGranularity": "granularity",
    "MeasureObjectIntensityDistribution": "radial_distribution",
    "MeasureColocalization": "correlation",
}

# e.g. "Wed Dec  2 10:00:00 2026: Image # 1, module IdentifyPrimaryObjects # 5: CPU_time = 0.32 secs, Wall_time = 1.10 secs"
_MODULE_TIME = re.compile(
    r"module (\w+) # (\d+): CPU_time = ([\d.]+) secs, Wall_time = ([\d.]+) secs"
)


def parse_module_times(log: str) -> dict[str, tuple[float, float]]:
    """Sum CellProfiler's per-module CPU and wall times over the image sets of a log.

    Parameters
    ----------
    log : str
        CellProfiler's stderr/stdout.

    Returns
    -------
    dict of str to (float, float)
        ``"<module number> <module name>"`` -> (CPU s, wall s).
    """
    times: dict[str, tuple[float, float]] = {}
    for name, number, cpu, wall in _MODULE_TIME.findall(log):
        key = f"{int(number)} {name}"
        old = times.get(key, (0.0, 0.0))
        times[key] = (old[0] + float(cpu), old[1] + float(wall))
    return times


def image_wall_times(log: str) -> list[float]:
    """Wall seconds of each image set (the sum of its modules' wall times), in image order.

    Parameters
    ----------
    log : str
        CellProfiler's log.

    Returns
    -------
    list of float
    """
    per: dict[int, float] = {}
    for image, wall in re.findall(r"Image # (\d+), module \w+ # \d+: .*?Wall_time = ([\d.]+)", log):
        per[int(image)] = per.get(int(image), 0.0) + float(wall)
    return [per[k] for k in sorted(per)]


def run_cellprofiler(
    venv: Path, pipeline: Path, inputs: Path, output: Path, *, timeout: float = 3600
) -> CellProfilerRun:
    """Run CellProfiler headless on a folder of images; time it and measure its peak RSS.

    Parameters
    ----------
    venv : pathlib.Path
        CellProfiler's venv.
    pipeline : pathlib.Path
        A ``.cppipe`` (:func:`build_pipeline`).
    inputs, output : pathlib.Path
        Input images folder; output folder for the CSVs and label images.
    timeout : float
        Seconds before the run is killed.

    Returns
    -------
    CellProfilerRun
    """
    output.mkdir(parents=True, exist_ok=True)
    command = [
        str(venv / "bin" / "cellprofiler"),
        "-c",
        "-r",
        "-p",
        str(pipeline),
        "-i",
        str(inputs),
        "-o",
        str(output),
        "-e",
        "imageio_reader",  # Bio-Formats wants to download Java artifacts
        "-L",
        "INFO",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    with tempfile.TemporaryFile("w+") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                raise TimeoutError(f"CellProfiler ran past {timeout} s on {inputs}")
            time.sleep(0.05)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        text = log.read()
    if proc.returncode != 0:
        raise RuntimeError(f"CellProfiler failed ({proc.returncode}) on {inputs}:\n{text[-3000:]}")
    # ru_maxrss is in KiB on Linux
    return CellProfilerRun(
        output,
        wall,
        usage.ru_maxrss / 1024,
        parse_module_times(text),
        text,
        cpu_s=usage.ru_utime + usage.ru_stime,
    )


def read_objects(output: Path, compartment: str) -> pl.DataFrame:
    """One compartment's CSV export (``Nuclei.csv``, ...) with numeric columns as Float64.

    Parameters
    ----------
    output : pathlib.Path
        CellProfiler's output folder.
    compartment : str
        ``"Nuclei"``, ``"Cells"`` or ``"Cytoplasm"``.

    Returns
    -------
    polars.DataFrame
        ``ImageNumber``, ``ObjectNumber`` (Int64) and every measurement (Float64).
    """
    frame = pl.read_csv(output / f"{compartment}.csv", infer_schema_length=0)
    keys = ["ImageNumber", "ObjectNumber"]
    return frame.with_columns(
        pl.col(keys).cast(pl.Int64),
        pl.col([c for c in frame.columns if c not in keys]).cast(pl.Float64, strict=False),
    )


# ------------------------------------------------------------------ parity
#: The agreement tolerance and the floor of the denominator (values below it are ~0).
RTOL = 1e-3
EPS = 1e-6


def relative_error(ours: np.ndarray, theirs: np.ndarray, eps: float = EPS) -> np.ndarray:
    """``|a - b| / max(|b|, eps)`` per value; 0 where both are NaN, inf where one is.

    Parameters
    ----------
    ours, theirs : numpy.ndarray of float, shape (n,)
        cellframe's and CellProfiler's values of one feature, matched by object.
    eps : float
        Floor of the denominator, so values that are zero up to rounding do not
        divide by ~0.

    Returns
    -------
    numpy.ndarray of float64, shape (n,)
    """
    a = np.asarray(ours, dtype=np.float64)
    b = np.asarray(theirs, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        rel = np.abs(a - b) / np.maximum(np.abs(b), eps)
    both = np.isnan(a) & np.isnan(b)
    rel[both] = 0.0
    rel[np.isnan(a) ^ np.isnan(b)] = np.inf
    return rel


def feature_agreement(ours: pl.DataFrame, theirs: pl.DataFrame) -> pl.DataFrame:
    """Per feature, how far cellframe's values are from CellProfiler's on the same objects.

    Parameters
    ----------
    ours : polars.DataFrame
        cellframe's measurements (``ObjectNumber`` and CellProfiler names).
    theirs : polars.DataFrame
        CellProfiler's export of the same compartment, one image.

    Returns
    -------
    polars.DataFrame
        One row per feature both have: ``feature``, ``group`` (its first word),
        ``n`` objects compared, ``undefined`` objects left out (cellframe's NaN
        where CellProfiler 5 writes 0 for an undefined value), ``median_rel`` (median over objects of
        :func:`relative_error`), ``share_within`` (share of objects within
        :data:`RTOL`), ``pearson_r`` (over objects with both values finite;
        NaN when one side is constant), ``max_rel``.
    """
    joined = ours.join(theirs, on="ObjectNumber", how="inner", suffix="_cp")
    common = [c for c in ours.columns if is_measurement(c) and c in theirs.columns]
    rows = []
    for name in common:
        a = joined[name].cast(pl.Float64).to_numpy()
        b = joined[f"{name}_cp"].cast(pl.Float64).to_numpy()
        # CellProfiler 5 writes 0 where a value is undefined (texture of an object
        # with no pixel pair at that distance); cellframe keeps NaN and counts it.
        undefined = np.isnan(a) & (b == 0)
        rel = relative_error(a[~undefined], b[~undefined])
        finite = np.isfinite(a) & np.isfinite(b)
        r = np.nan
        if finite.sum() > 2 and np.std(a[finite]) > 0 and np.std(b[finite]) > 0:
            r = float(np.corrcoef(a[finite], b[finite])[0, 1])
        rows.append(
            {
                "feature": name,
                "group": name.split("_", 1)[0],
                "n": int(rel.size),
                "undefined": int(undefined.sum()),
                "median_rel": float(np.median(rel)) if rel.size else np.nan,
                "share_within": float(np.mean(rel <= RTOL)) if rel.size else np.nan,
                "pearson_r": r,
                "max_rel": float(np.max(rel)) if rel.size else np.nan,
            }
        )
    schema = {
        "feature": pl.String,
        "group": pl.String,
        "n": pl.Int64,
        "undefined": pl.Int64,
        "median_rel": pl.Float64,
        "share_within": pl.Float64,
        "pearson_r": pl.Float64,
        "max_rel": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema)


def is_measurement(name: str) -> bool:
    """Whether a column is a measurement of one of :data:`GROUPS` (not a key or parent)."""
    return name.split("_", 1)[0] in GROUPS


def summarize_agreement(per_feature: pl.DataFrame) -> pl.DataFrame:
    """Per compartment and group: features compared, share agreeing, Pearson r, worst features.

    Parameters
    ----------
    per_feature : polars.DataFrame
        :func:`feature_agreement` rows with a ``compartment`` column.

    Returns
    -------
    polars.DataFrame
        ``compartment``, ``group``, ``features``, ``share_features_agree``
        (share of features whose ``median_rel`` <= :data:`RTOL`),
        ``share_values_agree`` (share of (object, feature) values within
        :data:`RTOL`, objects weighted equally), ``median_r`` and ``min_r``
        (Pearson r over features, NaN r left out), ``worst`` (the three
        features with the largest ``median_rel``).
    """
    return (
        per_feature.sort("median_rel", descending=True, nulls_last=True)
        .group_by("compartment", "group", maintain_order=True)
        .agg(
            pl.len().alias("features"),
            (pl.col("median_rel") <= RTOL).mean().alias("share_features_agree"),
            ((pl.col("share_within") * pl.col("n")).sum() / pl.col("n").sum()).alias(
                "share_values_agree"
            ),
            pl.col("pearson_r").fill_nan(None).median().alias("median_r"),
            pl.col("pearson_r").fill_nan(None).min().alias("min_r"),
            pl.concat_str(
                pl.col("feature"),
                pl.lit(" ("),
                pl.col("median_rel").round_sig_figs(2).cast(str),
                pl.lit(")"),
            )
            .head(3)
            .str.join(", ")
            .alias("worst"),
        )
        .sort("compartment", "group")
    )


def read_channels(folder: Path, channels: Sequence[str], stem: str) -> dict[str, np.ndarray]:
    """The images ``<stem>d0.tif``, ``<stem>d1.tif``, ... of a site as channel name -> array."""
    import tifffile

    return {name: tifffile.imread(folder / f"{stem}d{i}.tif") for i, name in enumerate(channels)}


def read_labels(output: Path, stem: str) -> dict[str, np.ndarray]:
    """CellProfiler's exported label images of a site (``<stem>_<Compartment>_labels.tiff``)."""
    import tifffile

    return {
        name: tifffile.imread(output / f"{stem}_{name}_labels.tiff").astype(np.int32)
        for name in COMPARTMENTS
    }


def same_mask_parity(
    output: Path,
    images: Mapping[str, np.ndarray],
    stem: str,
    *,
    texture_scales: Sequence[int] = (3, 5, 10),
) -> pl.DataFrame:
    """Measure CellProfiler's own label images with cellframe; compare every common feature.

    Parameters
    ----------
    output : pathlib.Path
        A CellProfiler output folder holding the CSVs and the label images of
        one image set (:func:`build_pipeline` with ``labels=True``).
    images : Mapping[str, numpy.ndarray]
        The images CellProfiler measured (corrected, if it corrected them).
    stem : str
        The first channel's file name without ``.tif`` (the labels' prefix).
    texture_scales : sequence of int
        As in the pipeline.

    Returns
    -------
    polars.DataFrame
        :func:`feature_agreement` rows of every compartment, with ``compartment``.
    """
    from cellframe.measure import features

    families = [*features.DEFAULT_FAMILIES]
    labels = read_labels(output, stem)
    frames = []
    for compartment in COMPARTMENTS:
        ours = features.measure_objects(
            labels[compartment], images, families=families, texture_scales=texture_scales
        )
        theirs = read_objects(output, compartment)
        frames.append(feature_agreement(ours, theirs).with_columns(compartment=pl.lit(compartment)))
    return pl.concat(frames)


def name_coverage(output: Path, ours: Mapping[str, Sequence[str]]) -> dict[str, dict[str, list]]:
    """Measurement names only CellProfiler or only cellframe writes, per compartment.

    Parameters
    ----------
    output : pathlib.Path
        CellProfiler's output folder.
    ours : Mapping[str, sequence of str]
        Compartment -> cellframe's column names.

    Returns
    -------
    dict
        Compartment -> ``{"only_cellprofiler": [...], "only_cellframe": [...]}``.
    """
    out = {}
    for compartment, names in ours.items():
        theirs = {c for c in read_objects(output, compartment).columns if is_measurement(c)}
        mine = {c for c in names if is_measurement(c)}
        out[compartment] = {
            "only_cellprofiler": sorted(theirs - mine),
            "only_cellframe": sorted(mine - theirs),
        }
    return out


def match_objects(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """For each object of ``reference``, its best IoU with an object of ``other`` (0: none).

    Parameters
    ----------
    reference, other : numpy.ndarray of int, shape (H, W)
        Label images (0 = background).

    Returns
    -------
    numpy.ndarray of float64, shape (reference.max(),)
        IoU of reference object i + 1 with the ``other`` object overlapping
        it most by IoU; 0 for numbers absent from ``reference``.
    """
    n_ref = int(reference.max())
    if n_ref == 0:
        return np.zeros(0)
    ref_area = np.bincount(reference.ravel(), minlength=n_ref + 1)
    oth_area = np.bincount(other.ravel(), minlength=int(other.max()) + 1)
    both = (reference > 0) & (other > 0)
    pairs = np.stack([reference[both], other[both]], axis=1).astype(np.int64)
    best = np.zeros(n_ref + 1)
    if pairs.size:
        uniq, inter = np.unique(pairs, axis=0, return_counts=True)
        union = ref_area[uniq[:, 0]] + oth_area[uniq[:, 1]] - inter
        iou = inter / union
        np.maximum.at(best, uniq[:, 0], iou)
    present = ref_area[1:] > 0
    return best[1:][present]


#: cellframe's settings for ExampleHuman's pipeline as CellProfiler 5 runs it (its
#: basic-mode threshold smoothing is scale 1: sigma 1 / 0.6744 / 2; docs/measure.md).
EXAMPLE_HUMAN_SEGMENTATION = {
    "primary": {"size_range": (8, 80), "smoothing_sigma": 1 / 0.6744 / 2},
    "secondary": {"regularization": 0.05, "threshold_correction": 0.8, "smoothing_sigma": 0},
}


def own_objects_parity(
    output: Path,
    images: Mapping[str, np.ndarray],
    stem: str,
    *,
    nuclei: str = "DNA",
    cells: str = "cellbody",
    features: Sequence[str] = ("AreaShape_Area",),
) -> pl.DataFrame:
    """cellframe's own objects (``segment_site``) against CellProfiler's, per compartment.

    Parameters
    ----------
    output : pathlib.Path
        CellProfiler's output folder (CSVs and label images of one image set).
    images : Mapping[str, numpy.ndarray]
        The images CellProfiler segmented.
    stem : str
        The labels' prefix (first channel's file name without ``.tif``).
    nuclei, cells : str
        The channels the two identification steps read.
    features : sequence of str
        Features whose per-image median is shown side by side (CellProfiler
        names without the compartment prefix).

    Returns
    -------
    polars.DataFrame
        One row per compartment: ``cellprofiler_objects``, ``cellframe_objects``,
        ``matched`` (share of CellProfiler's objects whose best IoU with a
        cellframe object is >= 0.5), ``iou_min``, ``iou_q05/q25/q50/q75`` (quantiles of that
        best IoU over CellProfiler's objects, 0 where nothing overlaps), and
        ``<feature>_cellprofiler`` / ``<feature>_cellframe`` medians over the
        image's objects.
    """
    from cellframe.measure import features as measure
    from cellframe.segment import segment_site

    theirs = read_labels(output, stem)
    ours = segment_site(images, nuclei=nuclei, cells=cells, **EXAMPLE_HUMAN_SEGMENTATION).labels()
    scales = sorted({int(f.split("_")[-3]) for f in features if f.startswith("Texture_")}) or [3]
    rows = []
    for compartment in COMPARTMENTS:
        iou = match_objects(theirs[compartment], ours[compartment])
        row: dict[str, object] = {
            "compartment": compartment,
            "cellprofiler_objects": int(np.unique(theirs[compartment]).size - 1),
            "cellframe_objects": int(np.unique(ours[compartment]).size - 1),
            "matched": float(np.mean(iou >= 0.5)) if iou.size else np.nan,
        }
        row["iou_min"] = float(iou.min()) if iou.size else np.nan
        for q in (0.05, 0.25, 0.5, 0.75):
            row[f"iou_q{round(q * 100):02d}"] = float(np.quantile(iou, q)) if iou.size else np.nan
        measured = measure.measure_objects(
            ours[compartment],
            images,
            families=["sizeshape", "intensity", "texture"],
            texture_scales=scales,
        )
        exported = read_objects(output, compartment)
        for name in features:
            row[f"{name}_cellprofiler"] = float(exported[name].median())
            row[f"{name}_cellframe"] = float(measured[name].median())
        rows.append(row)
    return pl.DataFrame(rows)
