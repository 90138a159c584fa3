"""Every Python snippet of the user guide (docs/*.md) runs as written.

Snippets of one page run in order in one namespace, in a temporary working
folder beside a link to ``../shared`` (so ``../shared/data/...`` paths work as
they do from the repository root), as a reader would paste them. A block
fenced as ```python no-run is shown only (reference listings, or work that
takes minutes); every page has runnable blocks, and they must run and pass
their asserts.

Every shell command the README and the guide show runs too (see "shell
commands" below): fenced ```bash blocks in order in a sandbox, inline spans
through concrete commands, a few listed as exempt with the reason; the
tables they leave are checked.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import polars as pl
import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = sorted(p for p in DOCS.glob("*.md") if p.name != "DEVELOPING.md")
FENCE = re.compile(r"^```python([^\n]*)\n(.*?)^```", re.DOTALL | re.MULTILINE)


def snippets(page: Path) -> list[str]:
    return [code for info, code in FENCE.findall(page.read_text()) if "no-run" not in info]


def test_every_layer_has_a_page() -> None:
    names = {p.stem for p in PAGES}
    assert {"store", "engine", "report"} <= names


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_snippets_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = snippets(page)
    assert code, f"{page.name} has no runnable snippet"
    shared = DOCS.parents[1] / "shared"
    if "../shared" in "".join(code) and not shared.is_dir():
        pytest.skip(f"{page.name} reads ../shared/data, which is absent")
    if shared.is_dir():
        (tmp_path / "shared").symlink_to(shared)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    for i, block in enumerate(code):
        try:
            exec(compile(block, f"{page.name}[snippet {i}]", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the failure message is the point
            raise AssertionError(f"{page.name}, snippet {i} failed: {exc!r}\n{block}") from exc


# --------------------------------------------------------------- shell commands
# Every command shown in README.md and docs/*.md (```bash / ```sh blocks, and
# inline `cellframe ...` / `python ...` spans) runs in a test. Fenced blocks run
# line by line, in order, in a copy of a small sandbox holding the files they
# name (a store of three synthetic plates, CellProfiler SQLite files, stacks,
# the bundled images ...), as a reader would paste them; `cellframe` runs
# in-process through cellframe.cli.main, `python` as a subprocess. Long
# commands get short options (SHORTER); inline spans, which show placeholders
# or options in prose, map to concrete commands (INLINE). Commands that cannot
# run here are listed in EXEMPT with the reason.

README = DOCS.parent / "README.md"
COMMAND_PAGES = [README, *PAGES]
EVERY_FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```", re.DOTALL | re.MULTILINE)
SHELL_INFO = ("bash", "sh", "shell", "console")
COMMAND_LINE = re.compile(r"^(?:cellframe|python|\.venv/bin/)\S*\s")
ANY_FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
INLINE_COMMAND = re.compile(r"`((?:cellframe |python |\.venv/bin/)[^`]*)`")

#: Shown commands that are not run, with the reason.
EXEMPT = {
    "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/cellframe demo": (
        "creates a virtual environment and installs from the network; the demo it "
        "ends with runs in test_readme_demo_and_snippet (slow)"
    ),
    "apt-get update -qq && apt-get install -y -qq chromium && python3 -m venv .venv && "
    ".venv/bin/pip install -e '.[test]' && .venv/bin/python -m pytest -n 2": (
        "installs system and Python packages as root and runs this very test suite"
    ),
    ".venv/bin/python -m pytest -m slow": "runs the slow part of this very test suite",
    "cellframe demo": "about 3 minutes: runs in test_readme_demo_and_snippet (slow)",
}
#: Shown commands not run, by pattern, with the reason.
EXEMPT_PATTERNS = {
    r"^(?:\.venv/bin/)?python benchmarks/bench_\w+\.py": (
        "a benchmark: minutes at screen scale, and most run the anchor tool (pycytominer, "
        "copairs, CytoTable) beside cellframe; benchmarks are run by hand"
    ),
}


def is_exempt(command: str) -> bool:
    """Whether a shown command is listed in EXEMPT or matches EXEMPT_PATTERNS."""
    return command in EXEMPT or any(re.match(p, command) for p in EXEMPT_PATTERNS)


#: Inline spans (placeholders, options named in prose) -> the commands run for them.
INLINE = {
    "cellframe ingest SOURCE [SOURCE ...] --platemap platemap.csv": [
        "cellframe ingest plate1.sqlite plate2.sqlite --platemap platemap.csv"
    ],
    "cellframe tables": ["cellframe tables --store screen.duckdb"],
    'cellframe sql "SELECT ..." [--format csv\\|parquet --output FILE]': [
        'cellframe sql --store screen.duckdb "SELECT count(*) FROM cells"',
        'cellframe sql --store screen.duckdb "SELECT * FROM cells" --format csv --output c.csv',
        'cellframe sql --store screen.duckdb "SELECT * FROM cells" --format parquet --output c.pq',
    ],
    "cellframe sql": ['cellframe sql --store screen.duckdb "SELECT 1 AS one"'],
    "cellframe segment run IMAGES --channel DNA": [
        "cellframe segment run BR00123947_G01_s1.tif --channel DNA"
    ],
    "cellframe segment advise --modality fluorescence --dim 2d": [
        "cellframe segment advise --modality fluorescence --dim 2d"
    ],
    # Run in full by the pages' blocks (COVERED): not run twice.
    "cellframe embed": [],
    "cellframe train-embedder": [],
    "cellframe select --engine ray": [
        "cellframe aggregate --store screen.duckdb --engine ray",
        "cellframe select --store screen.duckdb --input wells --engine ray",
    ],
    'cellframe sql "SELECT ..." --write NAME [--as table\\|view] [--replace]': [
        'cellframe sql --store screen.duckdb "SELECT * FROM cells LIMIT 3" --write c3',
        'cellframe sql --store screen.duckdb "SELECT 1 AS one" --write one --as view',
        'cellframe sql --store screen.duckdb "SELECT 2 AS one" --write one --as view --replace',
    ],
    "cellframe evaluate [TABLE] --mode retrieval\\|activity": [
        "cellframe aggregate --store screen.duckdb",
        "cellframe normalize --store screen.duckdb --input wells",
        "cellframe evaluate wells_normalized --store screen.duckdb --mode retrieval",
        "cellframe evaluate wells_normalized --store screen.duckdb --mode activity",
        # [TABLE] left out: the end of the chain the commands write by default.
        "cellframe select --store screen.duckdb",
        "cellframe sphere --store screen.duckdb",
        "cellframe evaluate --store screen.duckdb --mode activity --null-size 1000",
    ],
    "cellframe activity experiment.toml": [],
    "cellframe correct --recipe var_mad_int_featselect_harmony": [
        "cellframe aggregate --store screen.duckdb",
        "cellframe correct --store screen.duckdb --recipe var_mad_int_featselect_harmony",
    ],
    "cellframe evaluate TABLE --mode moa --batch Metadata_Plate": [
        "cellframe aggregate --store screen.duckdb",
        # The sandbox has no MoA: the treatment is the label and the well the "compound".
        "cellframe evaluate wells --store screen.duckdb --mode moa --batch Metadata_Plate "
        "--label Metadata_Treatment --treatment Metadata_Well",
    ],
    "cellframe compare TABLE [TABLE ...] --batch COL --label COL --out report.html": [
        "cellframe aggregate --store screen.duckdb",
        "cellframe normalize --store screen.duckdb --input wells",
        "cellframe compare synthetic/none=wells synthetic/normalized=wells_normalized "
        "--store screen.duckdb --batch Metadata_Plate --label Metadata_Treatment "
        "--out compare.html --csv compare.csv",
    ],
    "cellframe ingest": [
        "cellframe ingest plate1.sqlite --store fresh.duckdb --platemap platemap.csv"
    ],
    "cellframe normalize": [
        "cellframe aggregate --store screen.duckdb",
        "cellframe normalize --store screen.duckdb",
    ],
    "cellframe evaluate --mode activity": [
        "cellframe aggregate --store screen.duckdb",
        "cellframe normalize --store screen.duckdb",
        "cellframe select --store screen.duckdb --input wells_normalized",
        "cellframe sphere --store screen.duckdb --input wells_normalized_selected "
        "--output wells_sphered",
        "cellframe evaluate wells_sphered --store screen.duckdb --mode activity",
    ],
    "cellframe ingest plate1.sqlite plate2.sqlite ... --store\nscreen.duckdb --engine ray "
    "[--address HOST:PORT] [--force]": [
        "cellframe ingest plate1.sqlite plate2.sqlite --store screen.duckdb --engine ray --force "
        "--platemap platemap.csv"
    ],
}

#: Options that keep a documented command short here: subcommand -> (drop, set).
SHORTER: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "segment train": (
        (),
        {"--epochs": "1", "--steps": "2", "--batch-size": "2", "--patch-size": "64"},
    ),
    "train-embedder": (
        (),
        {"--epochs": "1", "--max-steps": "1", "--batch-size": "4"},
    ),
    "embed": ((), {"--workers": "0", "--batch-size": "16"}),
    "measure": ((), {"--families": "sizeshape,intensity"}),
    # A documented cluster address: the test joins the local Ray instead.
    "*": (("--address",), {}),
}
#: Inline spans whose concrete form a page's fenced block runs: span -> page.
COVERED = {
    "cellframe embed": "embed.md",
    "cellframe train-embedder": "embed.md",
    "cellframe activity experiment.toml": "activity.md",
}

#: What a page's commands take as given (its prose says the store has wells).
GIVEN = {
    "store-0": ["cellframe aggregate --store screen.duckdb"],
    "evaluate-0": ["cellframe aggregate --store screen.duckdb"],
}
#: Blocks about a store of other cells than the sandbox's screen.duckdb start without it.
FRESH_STORE = {"io-1"}
PYTHON_SHORTER = {"examples/activity_tox21.py": ["--quick", "--max-compounds", "200"]}


def shell_commands(page: Path) -> list[list[str]]:
    """Each fenced shell block of ``page`` as its commands (continuations joined)."""
    blocks = []
    for info, body in EVERY_FENCE.findall(page.read_text()):
        lines = [x.strip() for x in body.splitlines() if x.strip()]
        # A fence without a language whose lines are all commands is shell too.
        plain = not info.strip() and lines and all(COMMAND_LINE.match(x) for x in lines)
        if info.split()[:1] not in [[x] for x in SHELL_INFO] and not plain:
            continue
        joined = re.sub(r"\\\n\s*", " ", body)
        blocks.append([line.strip() for line in joined.splitlines() if line.strip()])
    return blocks


def inline_commands(page: Path) -> list[str]:
    """Inline command spans of ``page`` outside fenced blocks."""
    return INLINE_COMMAND.findall(ANY_FENCE.sub("", page.read_text()))


def shown_commands() -> dict[str, str]:
    """Every shown command -> the page it is on."""
    shown = {}
    for page in COMMAND_PAGES:
        for block in shell_commands(page):
            for line in block:
                shown[line] = page.name
        for span in inline_commands(page):
            shown[span] = page.name
    return shown


# The README's profile row: `cellframe aggregate`, `normalize`, `select`, ...
INLINE["cellframe aggregate"] = [
    "cellframe aggregate --store screen.duckdb",
    "cellframe normalize --store screen.duckdb",
    "cellframe select --store screen.duckdb --input wells_normalized",
    "cellframe sphere --store screen.duckdb --input wells_normalized_selected",
    "cellframe qc --store screen.duckdb",
    "cellframe strength --store screen.duckdb --input wells_normalized",
    "cellframe profile --store screen.duckdb --config pipeline.toml",
]


def test_every_shown_command_is_run_or_exempt() -> None:
    shown = shown_commands()
    fenced = {line for page in COMMAND_PAGES for block in shell_commands(page) for line in block}
    unknown = {
        c: p for c, p in shown.items() if c not in fenced and c not in INLINE and not is_exempt(c)
    }
    assert not unknown, (
        f"commands shown in the docs but neither run nor exempt: {unknown}; add each to INLINE "
        "(the concrete commands to run) or EXEMPT (why it cannot run) in tests/test_docs.py"
    )
    stale = (set(INLINE) | set(EXEMPT)) - set(shown)
    assert not stale, f"INLINE/EXEMPT name commands no page shows any more: {stale}"
    # The README shows the activity config positionally (--config is not an option).
    assert "cellframe activity experiment.toml" in shown
    assert not any("activity --config" in c for c in shown)


def _write_sandbox(root: Path) -> None:
    """The files the documented commands name, small, from bundled and synthetic data."""
    import gzip

    import numpy as np
    import polars as pl
    import tifffile

    from cellframe.demo import demo_data_dir
    from cellframe.io import ingest
    from cellframe.io._synthetic import write_synthetic_sqlite
    from cellframe.io.images import read_site
    from cellframe.store import Store

    demo = demo_data_dir()
    root.mkdir(parents=True)
    # Three plates of CellProfiler SQLite (wells A01-A16, 2 sites, 25 cells each).
    (root / "plates").mkdir()
    for i, plate in enumerate(("P1", "P2", "P3"), start=1):
        path = root / "plates" / f"plate{i}.sqlite"
        write_synthetic_sqlite(path, n_cells=800, n_features=24, cells_per_image=25,
                               sites_per_well=2, plate=plate, seed=i)  # fmt: skip
        shutil.copy(path, root / path.name)
    wells = [f"A{c:02d}" for c in range(1, 17)]
    treatments = ["DMSO"] * 4 + [f"cmpd{k}" for k in "ABCD" for _ in range(3)]
    moa = [""] * 4 + ["moa1"] * 6 + ["moa2"] * 6
    platemap = pl.DataFrame({
        "well": wells, "treatment": treatments,
        "control": ["negcon" if t == "DMSO" else "" for t in treatments], "moa": moa,
    })  # fmt: skip
    platemap.write_csv(root / "platemap.tsv", separator="\t")
    platemap.write_csv(root / "platemap.csv")
    with Store(root / "screen.duckdb") as store:
        for i in (1, 2, 3):
            ingest(root / f"plate{i}.sqlite", store, platemap=root / "platemap.tsv",
                   progress=False, layout="parquet")  # fmt: skip
        # Image-level quality measurements for `qc --kind images`.
        rng = np.random.default_rng(0)
        images = pl.DataFrame({
            "Metadata_Plate": [p for p in ("P1", "P2", "P3") for _ in range(32)],
            "Metadata_Well": [w for _ in range(3) for w in wells for _ in range(2)],
            "Metadata_Site": pl.Series([s for _ in range(48) for s in (1, 2)], dtype=pl.Int32),
            "Image_ImageQuality_PowerLogLogSlope_DNA": rng.normal(-2, 0.1, 96),
            "Image_ImageQuality_PercentMaximal_DNA": rng.uniform(0, 0.05, 96),
        })  # fmt: skip
        for (plate,), part in images.group_by("Metadata_Plate", maintain_order=True):
            store.write_partition("image_profiles", plate, part, step="test")
        # Objects (2 per site) on 5-channel stacks cut from the bundled JUMP sites.
        channels = ["AGP", "DNA", "ER", "Mito", "RNA"]
        pixels = read_site(demo / "jump" / "images.zarr", site=0, channel_names=channels)[0]
        objects = []
        for folder in ("stacks", "images"):
            (root / folder).mkdir()
        for plate in ("P1", "P2", "P3"):
            for well in ("A01", "A05"):  # DMSO and cmpdA: two classes to train on
                name = f"{plate}_{well}_s1.tif"
                tifffile.imwrite(root / "stacks" / name, pixels[:, :160, :160])
                shutil.copy(root / "stacks" / name, root / "images" / name)
                for n, (x, y) in enumerate(((50.0, 60.0), (110.0, 100.0)), start=1):
                    objects.append({"Metadata_Plate": plate, "Metadata_Well": well,
                                    "Metadata_Site": 1, "Metadata_ObjectNumber": n, "Object": "Nuclei",
                                    "Location_Center_X": x, "Location_Center_Y": y,
                                    "AreaShape_Area": 400.0,
                                    "BoundingBox_MinX": int(x) - 10, "BoundingBox_MinY": int(y) - 10,
                                    "BoundingBox_MaxX": int(x) + 10, "BoundingBox_MaxY": int(y) + 10})  # fmt: skip
        store.write(
            "objects",
            pl.DataFrame(objects).with_columns(
                pl.col("Metadata_Site").cast(pl.Int32),
                pl.col("Metadata_ObjectNumber", "^BoundingBox_.*$").cast(pl.Int32),
            ),
            mode="append",
            step="test",
        )
    # Segmentation inputs: the bundled zarr sites, one stack named by its keys,
    # one single-channel site, and a crop of the DSB 2018 image with its mask.
    shutil.copytree(demo / "jump" / "images.zarr", root / "images.zarr")
    for name in ("sites.csv", "channels.csv"):  # channels.csv names the channels of both
        shutil.copy(demo / "jump" / name, root / name)
    tifffile.imwrite(root / "BR00123947_G01_s1.tif", pixels[:, :192, :192])
    # The same site as one TIFF per channel (docs/measure.md, docs/embed.md): Opera Phenix
    # names in <plate>__<date>/Images/, and a CellProfiler LoadData CSV naming them.
    phenix = root / "BR00123947__2021-05-02T16_02_51-Measurement1" / "Images"
    phenix.mkdir(parents=True)
    load_data: dict[str, list] = {
        "Metadata_Plate": ["BR00123947"], "Metadata_Well": ["G01"], "Metadata_Site": [1],
    }  # fmt: skip
    for k, channel in enumerate(["DNA", "ER", "RNA", "AGP", "Mito"], start=1):
        name = f"r07c01f01p01-ch{k}sk1fk1fl1.tiff"
        tifffile.imwrite(phenix / name, pixels[channels.index(channel)])
        load_data[f"FileName_Orig{channel}"] = [name]
        load_data[f"PathName_Orig{channel}"] = [phenix.relative_to(root).as_posix()]
    pl.DataFrame(load_data).write_csv(root / "load_data.csv")
    tifffile.imwrite(root / "site.tif", pixels[:, :128, :128])
    image = tifffile.imread(demo / "dsb2018" / "img2d.tif")[:128, :128]
    mask = tifffile.imread(demo / "dsb2018" / "mask2d.tif")[:128, :128]
    tifffile.imwrite(root / "img.tif", image)
    tifffile.imwrite(root / "mask.tif", mask)
    import roifile

    rois = []
    for label in np.unique(mask[mask > 0])[:3]:
        ys, xs = np.nonzero(mask == label)
        box = [
            [xs.min(), ys.min()],
            [xs.max(), ys.min()],
            [xs.max(), ys.max()],
            [xs.min(), ys.max()],
        ]
        rois.append(roifile.ImagejRoi.frompoints(np.array(box, dtype=np.float32)))
    roifile.roiwrite(root / "rough_rois.zip", rois)
    # The CSV tree of JUMP plate BR00121431 (`ingest analysis/`), and the same
    # two sites as plate1/site1 and plate1/site3 (`ingest plate1/site3/`).
    tree = demo / "cellprofiler" / "BR00121431"
    shutil.copytree(tree, root / "analysis")
    shutil.copytree(tree / "BR00121431-A01-1", root / "plate1" / "site1")
    shutil.copytree(tree / "BR00121431-A02-1", root / "plate1" / "site3")
    # The profiling chain of docs/profiles.md, as printed there.
    toml = re.search(r"^```toml\n(input = \"cells\".*?)^```", (DOCS / "profiles.md").read_text(),
                     re.DOTALL | re.MULTILINE)  # fmt: skip
    (root / "pipeline.toml").write_text(toml[1])
    # A small compound-activity experiment on 150 Tox21 compounds.
    with gzip.open(demo / "moleculenet" / "tox21.csv.gz", "rt") as f:
        lines = f.read().splitlines()
    (root / "tox21.csv").write_text("\n".join(lines[:151]) + "\n")
    (root / "experiment.toml").write_text(
        '[data]\nmatrix = "tox21.csv"\n\n[split]\nmethod = "random"\nn_folds = 2\n\n'
        '[modalities]\nCS = { kind = "morgan" }\n\n[model]\nmax_epochs = 2\n\n'
        '[output]\nprefix = "activity"\n'
    )
    # A held-out run that keeps its model, and 50 other Tox21 compounds (plus one
    # unparseable SMILES) to predict with it (activity.md, "Predicting a compound library").
    (root / "tox21_heldout.toml").write_text(
        '[data]\nmatrix = "tox21.csv"\n\n[split]\nholdout = true\nmethod = "random"\n\n'
        "[model]\nmax_epochs = 2\nwarmup_epochs = 1\nhidden_sizes = [32]\nencoder_hidden = 32\n"
        "tree_params = { rf = { n_estimators = 20 }, lgbm = { n_estimators = 30 } }\n"
    )
    library = [f"L{i},{line.split(',')[0]}" for i, line in enumerate(lines[151:201])]
    (root / "library.csv").write_text("ID,SMILES\n" + "\n".join([*library, "L50,C1CC"]) + "\n")
    (root / "examples").symlink_to(DOCS.parent / "examples")


@pytest.fixture(scope="session")
def command_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with every file the documented commands name (built once)."""
    root = tmp_path_factory.mktemp("commands") / "sandbox"
    _write_sandbox(root)
    return root


def shorten(args: list[str]) -> list[str]:
    """Apply SHORTER to the arguments of a cellframe command."""
    words = [a for a in args[:2] if not a.startswith("-")]
    rules = [SHORTER["*"]]
    for key in (" ".join(words[:2]), words[0] if words else ""):
        if key in SHORTER:
            rules.append(SHORTER[key])
            break
    out = list(args)
    for drop, set_ in rules:
        for option in drop:
            while option in out:
                i = out.index(option)
                del out[i : i + 2]
        for option, value in set_.items():
            if option in out:
                out[out.index(option) + 1] = value
            else:
                out += [option, value]
    return out


def run_shown(command: str, cwd: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Run one documented command in ``cwd``; return what it printed."""
    import glob
    import shlex
    import subprocess
    import sys

    from cellframe.cli import main

    tokens = shlex.split(command, comments=True)
    expanded: list[str] = []
    for token in tokens:
        matches = sorted(glob.glob(token, root_dir=cwd)) if "*" in token else []
        expanded += matches or [token]
    if "ray" in expanded:
        # Ray workers do not share this process's working folder (the test
        # changed it after Ray started): hand them absolute paths.
        expanded = [
            str(cwd / t) if ("/" in t or "." in t) and (cwd / t).exists() else t for t in expanded
        ]
    program, args = expanded[0], expanded[1:]
    if program.endswith("cellframe"):
        capsys.readouterr()
        code = main(shorten(args))
        captured = capsys.readouterr()
        assert code == 0, f"`{command}` exited {code}: {captured.err.strip()}"
        return captured.out
    if program.startswith("python"):
        extra = PYTHON_SHORTER.get(args[0], [])
        proc = subprocess.run([sys.executable, *args, *extra], cwd=cwd, capture_output=True,
                              text=True, timeout=300)  # fmt: skip
        assert proc.returncode == 0, f"`{command}` failed: {proc.stderr[-2000:]}"
        return proc.stdout
    raise AssertionError(f"no runner for {command!r}: run it here or add it to EXEMPT")


def _read(work: Path, table: str, store: str = "screen.duckdb"):
    from cellframe.store import Store

    with Store(work / store, read_only=True) as s:
        return s.read(table)


def _tables(work: Path, store: str = "screen.duckdb") -> set[str]:
    from cellframe.store import Store

    with Store(work / store, read_only=True) as s:
        return set(s.table_names())


def _check_io(work: Path) -> None:
    # plate1.sqlite holds 800 cells of plate P1 (re-ingested, not duplicated);
    # the CSV tree of BR00121431: 89 cells in A01, 36 in A02 (its Cells.csv files).
    cells = _read(work, "cells")
    assert cells.filter(pl.col("Metadata_Plate") == "P1").height == 800
    assert cells.height == 3 * 800
    jump = _read(work, "cells", "jump.duckdb")
    assert sorted(jump.group_by("Metadata_Well").len().rows()) == [("A01", 89), ("A02", 36)]


def _check_io_sites(work: Path) -> None:
    # plate1/ holds the two sites of BR00121431: 89 cells in A01, 36 in A02.
    cells = _read(work, "cells")
    assert sorted(cells.group_by("Metadata_Well").len().rows()) == [("A01", 89), ("A02", 36)]


def _check_evaluate_sphered(work: Path) -> None:
    # The plain chain sphere -> evaluate is cross-fitted: provenance says so.
    from cellframe.store import Store

    with Store(work / "screen.duckdb", read_only=True) as store:
        made = [t for t in store.table_names() if t.startswith("wells_sphered_")]
        assert made, store.table_names()
        notes = str(store.provenance(made[0]).to_dicts())
    assert "cross-fitted" in notes, notes


def _check_profiles(work: Path) -> None:
    wells = _read(work, "wells")
    assert wells.height == 3 * 16  # 3 plates x 16 wells
    normalized = _read(work, "wells_normalized")
    feature = next(c for c in normalized.columns if not c.startswith("Metadata_"))
    # mad_robustize: the DMSO wells of each plate have median 0.
    medians = (
        normalized.filter(pl.col("Metadata_Control") == "negcon")
        .group_by("Metadata_Plate")
        .agg(pl.col(feature).median())[feature]
    )
    assert medians.abs().max() < 1e-5
    assert {"wells_normalized_selected", "normalize_fit", "sphere_fit"} <= _tables(work)


def _check_store(work: Path) -> None:
    from polars.testing import assert_frame_equal

    keys = ["Metadata_Plate", "Metadata_Well"]
    assert_frame_equal(
        pl.read_parquet(work / "wells.parquet").sort(keys), _read(work, "wells").sort(keys)
    )


def _check_segment(work: Path) -> None:
    import tifffile

    objects = _read(work, "objects")
    sites = set(objects.select("Metadata_Plate", "Metadata_Well", "Metadata_Site").unique().rows())
    assert {("BR00123947", "G01", 1), ("CP-CC9-R1-05", "L07", 0), ("P1", "A01", 1)} <= sites
    assert (work / "unet.pt").stat().st_size > 0 and len(list((work / "labels").iterdir())) == 2
    assert tifffile.imread(work / "labels.tif").max() >= 1


def _check_embed(work: Path) -> None:
    lite0 = _read(work, "cells_efficientnet_lite0")
    assert lite0.height == 12  # 6 sites x 2 objects
    assert sum(not c.startswith("Metadata_") for c in lite0.columns) == 5 * 672
    assert (work / "wsl" / "best.pt").is_file()


def _check_engine(work: Path) -> None:
    assert _read(work, "cells").height == 3 * 800
    assert _read(work, "wells").height == 3 * 16
    assert _read(work, "cells_efficientnet_lite0").height == 12


def _check_activity(work: Path) -> None:
    summary = _read(work, "activity_summary")
    assert summary.height >= 1


def _check_activity_example(work: Path) -> None:
    # The first command stores one mean test ROC-AUC per (split, model) in tox21.duckdb.
    results = _read(work, "moleculenet_results", "tox21.duckdb")
    assert results["model"].n_unique() == 3, results
    for column in ("mean_auroc", "mean_auprc"):
        assert results[column].is_between(0, 1).all(), results
    assert (results["mean_auroc"] > 0.5).any(), results  # some model beats chance


def _check_activity_library(work: Path) -> None:
    # 51 library compounds x 12 assays; the unparseable one kept with nulls.
    table = _read(work, "activity_library_predictions")
    assert table.height == 51 * 12 and table["compound"].n_unique() == 51
    assert table.filter(pl.col("compound") == "L50")["probability"].null_count() == 12
    assert table.drop_nulls()["probability"].is_between(0, 1).all()
    assert (work / "tox21_model" / "model.json").is_file()


def _check_io_anndata(work: Path) -> None:
    # export -> import gives the wells table back exactly; the file is a plain AnnData.
    import anndata
    from polars.testing import assert_frame_equal

    wells = _read(work, "wells")
    assert_frame_equal(_read(work, "wells_from_h5ad"), wells)
    assert anndata.read_h5ad(work / "wells.h5ad").shape[0] == wells.height == 3 * 16


def _check_measure(work: Path) -> None:
    cells = _read(work, "cells", "measure.duckdb")
    labels = _read(work, "object_labels", "measure.duckdb")
    assert cells["Metadata_Plate"].n_unique() == 2 and cells.height > 0
    assert labels.filter(pl.col("Object") == "Cells")["Count"].sum() == cells.height
    assert _read(work, "image_quality", "measure.duckdb").height == 2


def _check_measure_channel_files(work: Path) -> None:
    from polars.testing import assert_frame_equal

    # the LoadData CSV and the Phenix names give the same cells, from one file per channel
    cells = _read(work, "cells", "loaddata.duckdb")
    assert cells.height > 0 and cells["Metadata_Plate"].unique().to_list() == ["BR00123947"]
    assert_frame_equal(cells, _read(work, "cells", "phenix.duckdb"))
    images = _read(work, "images", "phenix.duckdb")
    assert images.height == images["Path"].n_unique() == 5


def _check_embed_measured(work: Path) -> None:
    keys = ["Metadata_Plate", "Metadata_Well", "Metadata_Site", "Metadata_ObjectNumber"]
    cells = _read(work, "cells", "measured.duckdb")
    lite0 = _read(work, "cells_efficientnet_lite0", "measured.duckdb")
    assert lite0.height == cells.height > 0
    assert (
        lite0.select(keys)
        .cast({"Metadata_ObjectNumber": pl.Int64})
        .sort(keys)
        .equals(cells.select(keys).sort(keys))
    )
    assert sum(not c.startswith("Metadata_") for c in lite0.columns) == 5 * 672


#: Values each fenced block must leave behind, checked after it runs.
AFTER = {
    "io-0": _check_io,
    "io-1": _check_io_sites,
    "io-3": _check_io_anndata,
    "profiles-0": _check_profiles,
    "store-0": _check_store,
    "segment-0": _check_segment,
    "embed-0": _check_embed,
    "measure-0": _check_measure,
    "measure-1": _check_measure_channel_files,
    "embed-1": _check_embed_measured,
    "engine-0": _check_engine,
    "activity-0": _check_activity,
    "activity-1": _check_activity_example,
    "activity-5": _check_activity_library,
    "evaluate-0": _check_evaluate_sphered,
}


def _check_sql(work: Path, printed: str) -> None:
    cells = _read(work, "cells")
    assert pl.read_csv(work / "c.csv").height == cells.height == 3 * 800
    assert pl.read_parquet(work / "c.pq").columns == cells.columns


def _check_evaluate(work: Path, printed: str) -> None:
    new = _tables(work) - {"cells", "wells", "wells_normalized", "image_profiles", "images"}
    assert any("retrieval" in t or "map" in t for t in new), new
    assert any("activity" in t for t in new), new
    assert "wells_normalized_selected_sphered_activity_summary" in new, new


def _check_sql_write(work: Path, printed: str) -> None:
    from cellframe.store import Store

    with Store(work / "screen.duckdb", read_only=True) as store:
        assert store.read("c3").height == 3
        assert store.read("one")["one"].to_list() == [2]  # the replaced view
        assert store.provenance("one")["step"].to_list() == ["sql"]


def _check_ingest_two_plates(work: Path, printed: str) -> None:
    # plate1/plate2 re-ingested over the sandbox's three plates: replaced, not duplicated.
    cells = _read(work, "cells")
    assert (
        cells.group_by("Metadata_Plate").len().sort("Metadata_Plate")["len"].to_list() == [800] * 3
    )
    assert "1,600 rows" in printed or "1600 rows" in printed, printed


def _check_tables(work: Path, printed: str) -> None:
    assert "cells" in printed and ("2,400" in printed or "2400" in printed), printed


def _check_sql_one(work: Path, printed: str) -> None:
    assert "one" in printed and "1" in printed.split("one", 1)[1], printed


def _check_segment_run(work: Path, printed: str) -> None:
    from cellframe.store import Store

    # No --store: the command writes to the default store, cellframe.duckdb.
    with Store(work / "cellframe.duckdb", read_only=True) as store:
        objects = store.read("objects")
    assert objects.height > 0 and objects["Metadata_ObjectNumber"].min() >= 1
    assert printed.startswith(f"{objects.height} Nuclei object(s) from 1 site(s)"), printed


def _check_advise(work: Path, printed: str) -> None:
    assert any(word in printed.lower() for word in ("u-net", "unet", "otsu", "cellpose")), printed


def _check_select_ray(work: Path, printed: str) -> None:
    wells, selected = _read(work, "wells"), _read(work, "wells_selected")
    assert selected.height == wells.height == 3 * 16
    assert set(selected.columns) <= set(wells.columns)


def _check_fresh_ingest(work: Path, printed: str) -> None:
    cells = _read(work, "cells", "fresh.duckdb")
    assert cells.height == 800 and cells["Metadata_Plate"].unique().to_list() == ["P1"]
    assert cells["Metadata_Treatment"].null_count() == 0  # the platemap was joined


def _check_normalized(work: Path, printed: str) -> None:
    # standardize (the CLI default): the DMSO wells of each plate have mean 0, std 1.
    normalized = _read(work, "wells_normalized")
    feature = next(c for c in normalized.columns if not c.startswith("Metadata_"))
    stats = (
        normalized.filter(pl.col("Metadata_Control") == "negcon")
        .group_by("Metadata_Plate")
        .agg(pl.col(feature).mean().alias("mean"), pl.col(feature).std(ddof=0).alias("std"))
    )
    assert normalized.height == 3 * 16 and stats["mean"].abs().max() < 1e-5
    assert (stats["std"] - 1).abs().max() < 1e-4


def _check_activity_cli(work: Path, printed: str) -> None:
    summary = _read(work, "wells_sphered_activity_summary")
    # one row per treatment that is not the control: cmpdA ... cmpdD
    assert sorted(summary["Metadata_Treatment"].to_list()) == ["cmpdA", "cmpdB", "cmpdC", "cmpdD"]
    assert "null: cross-fitted" in printed, printed


def _check_ray_ingest(work: Path, printed: str) -> None:
    cells = _read(work, "cells")
    assert cells.filter(pl.col("Metadata_Plate").is_in(["P1", "P2"])).height == 2 * 800
    assert cells.height == 3 * 800


def _check_profile_chain(work: Path, printed: str) -> None:
    assert _read(work, "wells").height == 3 * 16
    chain = {"wells_normalized", "wells_normalized_selected", "wells_normalized_selected_sphered"}
    assert chain <= _tables(work)
    assert _read(work, "wells_normalized_selected_sphered").height == 3 * 16


def _check_compare(work: Path, printed: str) -> None:
    # one row per table, every score in [0, 1], the report written; the store only read
    table = pl.read_csv(work / "compare.csv")
    assert table["method"].to_list() == ["synthetic/none", "synthetic/normalized"], table
    assert table["correction"].to_list() == ["none", "normalized"]
    for column in ("batch_score", "bio_score", "overall_score"):
        assert table[column].is_between(0, 1).all(), table
    assert "Best overall: " in (work / "compare.html").read_text()
    assert "report: compare.html" in printed, printed


def _check_moa_cli(work: Path, printed: str) -> None:
    summary = _read(work, "wells_moa_summary")
    assert summary["protocol"].to_list() == ["NSC", "NSCB"]
    assert summary["n_scored"][0] > 0 and "NSC: accuracy" in printed, printed
    assert _read(work, "wells_moa_per_moa").height > 0


def _check_correct_cli(work: Path, printed: str) -> None:
    import json

    from cellframe.store import Store

    name = "wells_var_mad_int_featselect_harmony"
    with Store(work / "screen.duckdb", read_only=True) as store:
        out = store.read(name)
        record = json.loads(store.provenance(name)["parameters"][-1])
    assert out.height == _read(work, "wells").height
    assert [s["token"] for s in record["steps"]] == ["var", "mad", "int", "featselect", "harmony"]
    assert any(c.startswith("harmony_") for c in out.columns)


AFTER_INLINE = {
    "cellframe correct --recipe var_mad_int_featselect_harmony": _check_correct_cli,
    "cellframe evaluate TABLE --mode moa --batch Metadata_Plate": _check_moa_cli,
    "cellframe compare TABLE [TABLE ...] --batch COL --label COL --out report.html": (
        _check_compare
    ),
    'cellframe sql "SELECT ..." [--format csv\\|parquet --output FILE]': _check_sql,
    'cellframe sql "SELECT ..." --write NAME [--as table\\|view] [--replace]': _check_sql_write,
    "cellframe evaluate [TABLE] --mode retrieval\\|activity": _check_evaluate,
    "cellframe ingest SOURCE [SOURCE ...] --platemap platemap.csv": _check_ingest_two_plates,
    "cellframe tables": _check_tables,
    "cellframe sql": _check_sql_one,
    "cellframe segment run IMAGES --channel DNA": _check_segment_run,
    "cellframe segment advise --modality fluorescence --dim 2d": _check_advise,
    "cellframe select --engine ray": _check_select_ray,
    "cellframe ingest": _check_fresh_ingest,
    "cellframe normalize": _check_normalized,
    "cellframe evaluate --mode activity": _check_activity_cli,
    "cellframe ingest plate1.sqlite plate2.sqlite ... --store\nscreen.duckdb --engine ray "
    "[--address HOST:PORT] [--force]": _check_ray_ingest,
    "cellframe aggregate": _check_profile_chain,
}
# Every inline command that runs is checked for what it leaves or prints.
assert set(AFTER_INLINE) == {span for span, commands in INLINE.items() if commands}


SHELL_BLOCKS = [
    pytest.param(
        page,
        i,
        block,
        id=f"{page.stem}-{i}",
        # Example scripts with several models take minutes even with --quick;
        # tests/test_examples.py runs each example in its short mode.
        marks=[pytest.mark.slow] if any(x.startswith("python examples/") for x in block) else [],
    )
    for page in COMMAND_PAGES
    for i, block in enumerate(shell_commands(page))
    if not all(is_exempt(line) for line in block)
]
# Every block that runs is checked for what it leaves behind.
assert set(AFTER) == {p.id for p in SHELL_BLOCKS}


@pytest.mark.parametrize(("page", "index", "block"), SHELL_BLOCKS)
def test_shell_block_runs(
    page: Path,
    index: int,
    block: list[str],
    command_sandbox: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
) -> None:
    if any("--engine ray" in line for line in block):
        request.getfixturevalue("ray_local")
    work = tmp_path / "work"
    shutil.copytree(command_sandbox, work, symlinks=True)
    monkeypatch.chdir(work)
    if f"{page.stem}-{index}" in FRESH_STORE:
        (work / "screen.duckdb").unlink()
        shutil.rmtree(work / "screen.parts", ignore_errors=True)
    for line in [*GIVEN.get(f"{page.stem}-{index}", []), *block]:
        if not is_exempt(line):
            run_shown(line, work, capsys)
    AFTER[f"{page.stem}-{index}"](work)


def test_covered_spans_run_in_a_block() -> None:
    assert set(COVERED) == {span for span, commands in INLINE.items() if not commands}
    for span, page in COVERED.items():
        lines = [line for block in shell_commands(DOCS / page) for line in block]
        assert any(line.startswith(span + " ") for line in lines), (span, page)


@pytest.mark.parametrize(
    "span", sorted(s for s in INLINE if INLINE[s]), ids=lambda s: s.split("\n")[0][:40]
)
def test_inline_command_runs(
    span: str,
    command_sandbox: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
) -> None:
    if any("--engine ray" in c for c in INLINE[span]):
        request.getfixturevalue("ray_local")
    work = tmp_path / "work"
    shutil.copytree(command_sandbox, work, symlinks=True)
    monkeypatch.chdir(work)
    printed = "".join(run_shown(command, work, capsys) for command in INLINE[span])
    AFTER_INLINE[span](work, printed)


@pytest.mark.slow
def test_readme_demo_and_snippet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """README's set-up ends with `cellframe demo`; its Python block and custom_chart.py use it."""
    import subprocess
    import sys

    from cellframe.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--quiet"]) == 0
    assert (tmp_path / "cellframe-demo" / "report.html").is_file()
    code = FENCE.findall(README.read_text())
    assert len(code) == 1
    namespace: dict[str, object] = {"__name__": "readme"}
    exec(compile(code[0][1], "README.md[snippet 0]", "exec"), namespace)
    store = namespace["store"]
    try:
        summary = store.sql("SELECT * FROM retrieval_summary")
        assert summary.height >= 2 and summary["mean_average_precision"].is_between(0, 1).all()
        assert store.read("phenotypic_activity")["Metadata_Treatment"].n_unique() == 58
    finally:
        store.close()
    # examples/custom_chart.py finds the demo's store in the working folder.
    proc = subprocess.run(
        [sys.executable, str(DOCS.parent / "examples" / "custom_chart.py")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "read the demo's tables from cellframe-demo/cellframe.duckdb" in proc.stdout
    assert (tmp_path / "cellframe-demo" / "custom_report.html").is_file()
