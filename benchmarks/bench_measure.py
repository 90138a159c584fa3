"""Benchmark: cellframe's measurement against CellProfiler 5, side by side (issue 17).

Same sites, same objects settings (ExampleHuman's pipeline), same feature set
(intensity, size/shape with Zernike and Feret, texture at scales 3, 5, 10 and
256 grey levels, granularity, radial distribution, colocalization; every
channel, three compartments), each tool in its own subprocess with one BLAS
thread, one site at a time:

* ExampleHuman (3 channels, 512 x 512, no illumination correction: its pipeline has none);
* synthetic Cell Painting sites (5 channels, 1080 x 1080 uint16 TIFFs, fixed seed:
  blob nuclei, larger cell bodies, ER/RNA/Mito texture, vignetting, noise),
  with illumination correction (CorrectIlluminationCalculate "All" + Apply
  against cellframe's IlluminationFunction, median filter of the same size).

Prints per dataset: wall seconds per site (process wall / sites, imports and
start-up included), peak RSS, seconds per stage (CellProfiler's per-module log;
cellframe's stage functions timed here, each family measured for the three
compartments together as ``measure_site`` measures them), and the ratio
CellProfiler / cellframe; beside each, CPU seconds (user + system of the
process, and CellProfiler's per-module ``CPU_time``; cellframe's stages the
same way), which depend much less than wall seconds on what else the machine
runs; and the load average when each tool's run started and ended. The last
line says whether cellframe is at least 2x faster per site (issue 17's goal).
``--memory`` also runs both tools on 2 and 8 synthetic sites with the shape and
intensity families only, to show whether peak memory grows with the number of
sites. ``--parity`` prints the same-mask and own-object parity of
ExampleHuman (benchmarks/_cellprofiler.py; tests/measure/test_cellprofiler_parity.py).

CellProfiler runs from ``$CELLPROFILER_VENV`` (../shared/ANCHORS.md); without it
only cellframe runs.

    CELLPROFILER_VENV=/tmp/cp-venv python benchmarks/bench_measure.py --quick --parity
    CELLPROFILER_VENV=/tmp/cp-venv python benchmarks/bench_measure.py --sites 2 --memory
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _cellprofiler as cp

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CELL_PAINTING = ("DNA", "ER", "RNA", "AGP", "Mito")
#: cellframe families reported under CellProfiler's MeasureObjectSizeShape.
FAMILY_STAGE = {"zernike": "sizeshape", "feret": "sizeshape"}
STAGE_ORDER = (
    "illumination",
    "nuclei",
    "cells",
    "cytoplasm",
    "sizeshape",
    "intensity",
    "texture",
    "granularity",
    "radial_distribution",
    "correlation",
)
ILLUMINATION_SIZE = 100


# ------------------------------------------------------------------ synthetic sites
def synthetic_site(seed: int, size: int = 1080) -> dict[str, np.ndarray]:
    """A Cell Painting-like site: 5 uint16 channels, ~150 cells of a fixed seed.

    Nuclei are ellipses (diameter ~18-30 px), dome-shaped with faint texture, on a
    jittered grid; cells grow ~30 px around them until they touch (DNA, cell-body AGP with
    brighter edges, ER near the nucleus, RNA with nucleoli, punctate Mito);
    then a vignetting illumination field, background, blur and noise.
    """
    from scipy import ndimage as ndi
    from skimage.segmentation import expand_labels

    rng = np.random.default_rng(seed)
    grid = 13
    step = size / grid
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    nuclei = np.zeros((size, size), np.int32)
    n = 0
    for gy in range(grid):
        for gx in range(grid):
            if rng.random() < 0.12:
                continue
            cy = (gy + 0.5) * step + rng.uniform(-0.25, 0.25) * step
            cx = (gx + 0.5) * step + rng.uniform(-0.25, 0.25) * step
            a, b = rng.uniform(9, 15), rng.uniform(8, 12)
            theta = rng.uniform(0, np.pi)
            y0, y1 = int(max(cy - 16, 0)), int(min(cy + 17, size))
            x0, x1 = int(max(cx - 16, 0)), int(min(cx + 17, size))
            dy, dx = yy[y0:y1, x0:x1] - cy, xx[y0:y1, x0:x1] - cx
            u = dx * np.cos(theta) + dy * np.sin(theta)
            v = -dx * np.sin(theta) + dy * np.cos(theta)
            inside = (u / a) ** 2 + (v / b) ** 2 <= 1
            n += 1
            nuclei[y0:y1, x0:x1][inside & (nuclei[y0:y1, x0:x1] == 0)] = n
    cells = expand_labels(nuclei, distance=int(rng.integers(28, 36)))  # neighbours touch
    cytoplasm = (cells > 0) & (nuclei == 0)
    brightness = rng.uniform(0.6, 1.4, n + 1)
    brightness[0] = 0
    texture = ndi.gaussian_filter(rng.standard_normal((size, size)).astype(np.float32), 1.5)
    dist_nuc = ndi.distance_transform_edt(nuclei == 0).astype(np.float32)
    edges = (cells > 0) & (ndi.grey_erosion(cells, size=3) != cells)
    spots = ndi.gaussian_filter((rng.random((size, size)) < 0.01).astype(np.float32), 1.2) * 8
    nucleoli = ndi.gaussian_filter((rng.random((size, size)) < 0.004).astype(np.float32), 1.5) * 6
    # a dome per nucleus (one maximum, so declumping keeps it whole), faint chromatin
    dome = ndi.gaussian_filter(brightness[nuclei] * 0.4, 3)
    channels = {
        "DNA": dome * (nuclei > 0) * (1 + 0.05 * texture),
        "ER": cytoplasm * brightness[cells] * 0.12 * np.exp(-dist_nuc / 12) + (nuclei > 0) * 0.02,
        "RNA": cytoplasm * 0.06 * brightness[cells] + (nuclei > 0) * (0.03 + nucleoli * 0.08),
        "AGP": (cells > 0) * 0.08 * brightness[cells] + edges * 0.10,
        "Mito": cytoplasm * (0.03 + spots * 0.05) * brightness[cells],
    }
    radius2 = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (size / 2) ** 2
    vignette = 1.0 - 0.35 * radius2  # bright centre, dim corners, as an uneven lamp
    out = {}
    for name, signal in channels.items():
        image = ndi.gaussian_filter(signal.astype(np.float32), 1.0) + 0.01
        image = image * vignette + rng.normal(0, 0.004, image.shape)
        out[name] = (np.clip(image, 0, 1) * 65535).astype(np.uint16)
    return out


def write_synthetic(folder: Path, n_sites: int) -> None:
    """``SYNTH_s<i>_d<c>.tif`` for ``n_sites`` sites (channel c in CELL_PAINTING order)."""
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    for site in range(n_sites):
        images = synthetic_site(seed=1000 + site)
        for c, name in enumerate(CELL_PAINTING):
            tifffile.imwrite(folder / f"SYNTH_s{site:02d}_d{c}.tif", images[name])


# ------------------------------------------------------------------ cellframe worker
def cellframe_worker(config: dict) -> dict:
    """Run cellframe's stages on every site of a folder; times and peak RSS (in this process)."""
    import resource

    start = time.perf_counter()
    import tifffile

    from cellframe.measure import IlluminationFunction, apply_illumination
    from cellframe.measure.features import _measure_compartments, to_unit_range
    from cellframe.segment import classical

    folder = Path(config["input"])
    channels = config["channels"]
    stems = sorted({p.name[: -len("d0.tif")] for p in folder.glob("*d0.tif")})
    stages: dict[str, float] = {}
    stages_cpu: dict[str, float] = {}

    def cpu() -> float:  # this process's CPU seconds, as CellProfiler's per-module log counts them
        return sum(os.times()[:4])

    def add(stage: str, seconds: float, cpu_seconds: float = 0.0) -> None:
        stages[stage] = stages.get(stage, 0.0) + seconds
        stages_cpu[stage] = stages_cpu.get(stage, 0.0) + cpu_seconds

    def read(stem: str) -> dict[str, np.ndarray]:
        return {c: tifffile.imread(folder / f"{stem}d{i}.tif") for i, c in enumerate(channels)}

    functions = {}
    if config["illumination"]:
        t, c0 = time.perf_counter(), cpu()
        steps = {c: IlluminationFunction(size=config["illumination_size"]) for c in channels}
        stats: dict[str, object] = {}
        for stem in stems:  # one site in memory at a time: statistics merge exactly
            for c, image in read(stem).items():
                part = steps[c].statistics([image])
                stats[c] = part if c not in stats else stats[c].merge(part)
        functions = {c: steps[c].from_statistics(stats[c]) for c in channels}
        add("illumination", time.perf_counter() - t, cpu() - c0)
    seg = cp.EXAMPLE_HUMAN_SEGMENTATION
    per_site, cells = [], 0
    for stem in stems:
        t_site = time.perf_counter()
        raw = read(stem)
        t, c0 = time.perf_counter(), cpu()
        if functions:
            images = {c: apply_illumination(raw[c], functions[c]) for c in channels}
            add("illumination", time.perf_counter() - t, cpu() - c0)
        else:
            images = {c: to_unit_range(raw[c]) for c in channels}
        t, c0 = time.perf_counter(), cpu()
        primary = classical._primary(images[config["nuclei"]], **seg["primary"])
        add("nuclei", time.perf_counter() - t, cpu() - c0)
        t, c0 = time.perf_counter(), cpu()
        cell_labels, _ = classical._secondary(
            images[config["cells"]],
            primary.labels,
            unfiltered_nuclei=primary.unedited,
            **seg["secondary"],
        )
        add("cells", time.perf_counter() - t, cpu() - c0)
        t, c0 = time.perf_counter(), cpu()
        cytoplasm = classical.identify_tertiary(cell_labels, primary.labels, shrink=True)
        add("cytoplasm", time.perf_counter() - t, cpu() - c0)
        cells += int(cell_labels.max())
        compartments = {"Nuclei": primary.labels, "Cells": cell_labels, "Cytoplasm": cytoplasm}
        for family in config["families"]:
            # as measure_site measures them: the three compartments together (granularity
            # spectra and radial geometry shared), one family at a time to time it
            t, c0 = time.perf_counter(), cpu()
            _measure_compartments(
                compartments,
                images,
                {"families": [family], "texture_scales": config["texture_scales"]},
            )
            add(FAMILY_STAGE.get(family, family), time.perf_counter() - t, cpu() - c0)
        per_site.append(time.perf_counter() - t_site)
    return {
        "wall_s": time.perf_counter() - start,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "stages": stages,
        "stages_cpu": stages_cpu,
        "per_site_s": per_site,
        "sites": len(stems),
        "objects": cells,
    }


def run_cellframe(folder: Path, config: dict) -> dict:
    """:func:`cellframe_worker` in a fresh subprocess (one BLAS thread); wall and CPU from outside."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        cfg, result = Path(tmp) / "config.json", Path(tmp) / "result.json"
        cfg.write_text(json.dumps({**config, "input": str(folder)}))
        load = os.getloadavg()[0]
        with open(Path(tmp) / "log", "w+") as log:
            start = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, __file__, "--worker", str(cfg), str(result)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - start
            log.seek(0)
            text = log.read()
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"cellframe worker failed:\n{text[-3000:]}")
        out = json.loads(result.read_text())
    out["process_wall_s"] = wall
    out["process_cpu_s"] = usage.ru_utime + usage.ru_stime
    out["load"] = (load, os.getloadavg()[0])
    return out


# ------------------------------------------------------------------ one dataset
def compare(
    name: str,
    folder: Path,
    spec: cp.PipelineSpec,
    families: list[str],
    venv: Path | None,
    work: Path,
) -> dict:
    """Both tools on one folder; returns their results."""
    config = {
        "channels": list(spec.channels),
        "nuclei": spec.nuclei,
        "cells": spec.cells,
        "illumination": spec.illumination,
        "illumination_size": spec.illumination_size,
        "families": families,
        "texture_scales": list(spec.texture_scales),
    }
    result = {"name": name, "cellframe": run_cellframe(folder, config)}
    if venv is not None:
        pipeline = work / f"{name}.cppipe"
        cp.build_pipeline(venv, SHARED / cp.EXAMPLE_HUMAN_PIPELINE, pipeline, spec)
        load = os.getloadavg()[0]
        run = cp.run_cellprofiler(venv, pipeline, folder, work / f"{name}-out", timeout=3600)
        objects = cp.read_objects(run.output, "Cells").height
        result["cellprofiler"] = {
            "process_wall_s": run.wall_s,
            "process_cpu_s": run.cpu_s,
            "load": (load, os.getloadavg()[0]),
            "peak_rss_mb": run.peak_rss_mb,
            "stages": run.stage_times(),
            "stages_cpu": run.stage_times(cpu=True),
            "sites": result["cellframe"]["sites"],
            "objects": objects,
            "per_site_s": cp.image_wall_times(run.log),
        }
    return result


def print_result(result: dict) -> None:
    """Per site: wall and CPU seconds of both tools, per stage, and the ratios CP / cf."""
    ours, theirs = result["cellframe"], result.get("cellprofiler")
    sites = ours["sites"]
    loads = [ours["load"]] + ([theirs["load"]] if theirs else [])
    load_text = ", ".join(f"{a:.1f}-{b:.1f}" for a, b in loads)
    print(
        f"\n## {result['name']}: {sites} site(s); load average at start-end (cf, CP): {load_text}"
    )
    print(
        f"{'':<30}{'cellframe':>10}{'CP 5':>10}{'CP / cf':>9}  |{'cf CPU':>9}{'CP CPU':>9}{'CP / cf':>9}"
    )

    def stage(run: dict | None, key: str, name: str) -> float | None:
        return None if run is None else run[key].get(name, 0.0) / sites

    def median(run: dict | None) -> float | None:
        return None if run is None else float(np.median(run["per_site_s"]))

    rows = [
        ("objects (cells)", ours["objects"], theirs and theirs["objects"], None, None),
        ("per site, process s", ours["process_wall_s"] / sites,
         theirs and theirs["process_wall_s"] / sites, ours["process_cpu_s"] / sites,
         theirs and theirs["process_cpu_s"] / sites),
        ("  median site (in the loop) s", median(ours), median(theirs), None, None),
        ("peak RSS MB", ours["peak_rss_mb"], theirs and theirs["peak_rss_mb"], None, None),
    ] + [
        (f"  {name} s / site", stage(ours, "stages", name), stage(theirs, "stages", name),
         stage(ours, "stages_cpu", name), stage(theirs, "stages_cpu", name))
        for name in STAGE_ORDER
        if name in ours["stages"] or (theirs and name in theirs["stages"])
    ]  # fmt: skip

    def cells(a: float | None, b: float | None) -> str:
        if a is None:
            return f"{'':>29}"
        # no ratio of a stage that takes cellframe under 10 ms (cytoplasm: one subtraction)
        ratio = f"{b / a:9.2f}" if b is not None and a >= 0.01 else f"{'':>9}"
        b_text = f"{b:10.2f}" if b is not None else f"{'-':>10}"
        return f"{a:10.2f}{b_text}{ratio}"

    for label, a, b, a_cpu, b_cpu in rows:
        print(f"{label:<30}{cells(a, b)}  |{cells(a_cpu, b_cpu)[1:]}")
    if theirs:
        wall = theirs["process_wall_s"] / ours["process_wall_s"]
        cpu = theirs["process_cpu_s"] / ours["process_cpu_s"]
        verdict = "meets" if min(wall, cpu) >= 2 else "misses"
        print(f"cellframe is {wall:.2f}x (wall) / {cpu:.2f}x (CPU) faster per site than "
              f"CellProfiler 5: {verdict} the 2x goal")  # fmt: skip


def parity_report(venv: Path, work: Path) -> None:
    """Same-mask and own-object parity on ExampleHuman, printed."""
    import polars as pl

    folder = work / "example_human"
    pipeline = work / "parity.cppipe"
    cp.build_pipeline(venv, SHARED / cp.EXAMPLE_HUMAN_PIPELINE, pipeline)
    run = cp.run_cellprofiler(venv, pipeline, folder, work / "parity-out")
    stem = "AS_09125_050116030001_D03f00"
    images = cp.read_channels(folder, cp.EXAMPLE_HUMAN_CHANNELS, stem)
    per = cp.same_mask_parity(run.output, images, stem + "d0")
    with pl.Config(
        tbl_rows=40, tbl_width_chars=200, fmt_str_lengths=120, tbl_hide_dataframe_shape=True
    ):
        print("\n## Parity (a): cellframe on CellProfiler 5's own label images, ExampleHuman")
        print(
            f"agree: median over objects of |cf - cp| / max(|cp|, {cp.EPS:g}) <= {cp.RTOL:g}; "
            "values: share of (object, feature) within it"
        )
        print(cp.summarize_agreement(per).drop("worst").with_columns(pl.col(pl.Float64).round(4)))
        worst = per.sort("median_rel", descending=True).head(8)
        print(worst.select("compartment", "feature", "median_rel", "share_within", "pearson_r"))
        print("\n## Parity (b): cellframe's own objects vs CellProfiler 5's, ExampleHuman")
        own = cp.own_objects_parity(
            run.output, images, stem + "d0",
            features=("AreaShape_Area", "Intensity_MeanIntensity_DNA",
                      "Texture_Contrast_DNA_3_00_256"),
        )  # fmt: skip
        print(own.with_columns(pl.col(pl.Float64).round(4)).transpose(include_header=True))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="ExampleHuman + 1 synthetic site")
    parser.add_argument("--sites", type=int, default=2, help="synthetic 1080 x 1080 sites")
    parser.add_argument("--memory", action="store_true", help="peak RSS at 2 vs 8 sites")
    parser.add_argument("--parity", action="store_true", help="print the parity report")
    parser.add_argument("--workdir", type=Path, help="keep inputs and outputs here")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        config = json.loads(Path(args.worker[0]).read_text())
        Path(args.worker[1]).write_text(json.dumps(cellframe_worker(config)))
        return
    venv = cp.cellprofiler_venv()
    if venv is None:
        print(f"${cp.ENV} not set or incomplete: CellProfiler skipped, cellframe only")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_measure_"))
    work.mkdir(parents=True, exist_ok=True)
    example = work / "example_human"
    example.mkdir(exist_ok=True)
    for tif in (SHARED / cp.EXAMPLE_HUMAN).glob("AS_09125_050116030001_D03f00d?.tif"):
        shutil.copy(tif, example)
    from cellframe.measure.features import DEFAULT_FAMILIES

    families = list(DEFAULT_FAMILIES)
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; work in {work}")
    results = [
        compare("ExampleHuman", example, cp.PipelineSpec(labels=False), families, venv, work)
    ]
    print_result(results[-1])
    n_sites = 1 if args.quick else args.sites
    synth = work / f"synthetic_{n_sites}"
    write_synthetic(synth, n_sites)
    spec = cp.PipelineSpec(
        channels=CELL_PAINTING,
        cells="AGP",
        labels=False,
        illumination=True,
        illumination_size=ILLUMINATION_SIZE,
    )
    results.append(compare(f"synthetic_{n_sites}", synth, spec, families, venv, work))
    print_result(results[-1])
    if args.memory and not args.quick:
        light = cp.PipelineSpec(
            channels=CELL_PAINTING, cells="AGP", labels=False, measure=False,
            illumination=True, illumination_size=ILLUMINATION_SIZE,
        )  # fmt: skip
        for n in (2, 8):
            folder = work / f"memory_{n}"
            write_synthetic(folder, n)
            results.append(
                compare(f"memory_{n}", folder, light, ["sizeshape", "zernike", "feret", "intensity"],
                        venv, work)
            )  # fmt: skip
            print_result(results[-1])
    (work / "results.json").write_text(json.dumps(results, indent=1, default=float))
    if args.parity and venv is None:
        print(f"--parity needs CellProfiler (${cp.ENV}): skipped")
    elif args.parity:
        parity_report(venv, work)


if __name__ == "__main__":
    main()
