"""Per-site CellProfiler folders cut from the bundled demo plate, and a store's bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl

DEMO_PLATE = (
    Path(__file__).parents[2] / "cellframe" / "data" / "demo" / "cellprofiler" / "BR00121431"
)


def slim_site(src: Path, dest: Path, site: int | None = None, files: bool = False) -> None:
    """Copy one CellProfiler site folder with its keys and a few features (quick to ingest).

    With ``files`` Image.csv keeps its FileName_*/PathName_* columns (the store's
    images table then gets the site's rows).
    """
    image_prefixes = ("Metadata_", "Count_", *(("FileName_", "PathName_") if files else ()))
    dest.mkdir(parents=True)
    for name in ("Image", "Cells", "Cytoplasm", "Nuclei"):
        frame = pl.read_csv(src / f"{name}.csv.gz", infer_schema_length=None)
        if name == "Image":
            keep = [c for c in frame.columns if c == "ImageNumber" or c.startswith(image_prefixes)]
            frame = frame.select(keep)
            if site is not None:
                frame = frame.with_columns(pl.lit(site).alias("Metadata_Site"))
        else:
            shape = [c for c in frame.columns if c.startswith("AreaShape_")][:6]
            keep = [
                c
                for c in frame.columns
                if c in ("ImageNumber", "ObjectNumber")
                or c.startswith(("Parent_", "Location_Center"))
            ]
            frame = frame.select([*keep, *shape])
        frame.write_csv(dest / f"{name}.csv")


def write_site_folders(root: Path, files: bool = False) -> tuple[Path, list[Path]]:
    """Plate BR00121431 as three per-site folders under ``root``.

    A01 site 1 (89 cells), A01 site 2 (a copy of site 1 with the site renumbered,
    89 cells) and A02 site 1 (36 cells). Returns the plate folder and the sites.
    ``files`` keeps the image file names (see :func:`slim_site`).
    """
    plate = root / "BR00121431"
    sites = [
        (DEMO_PLATE / "BR00121431-A01-1", plate / "A01-1", None),
        (DEMO_PLATE / "BR00121431-A01-1", plate / "A01-2", 2),
        (DEMO_PLATE / "BR00121431-A02-1", plate / "A02-1", None),
    ]
    for src, dest, site in sites:
        slim_site(src, dest, site, files)
    return plate, [dest for _, dest, _ in sites]


def write_empty_site(dest: Path, well: str, site: int) -> Path:
    """An empty site of plate BR00121431 in ``dest`` (made if absent): no objects.

    Image.csv holds one image (``well``, ``site``; with its file names, so the
    store's images table can hold it) whose Count_* are 0, and Cells.csv,
    Cytoplasm.csv and Nuclei.csv hold only the slim sites' headers.
    """
    src = DEMO_PLATE / "BR00121431-A01-1"
    dest.mkdir(parents=True, exist_ok=True)
    image = pl.read_csv(src / "Image.csv.gz", infer_schema=False)
    keep = [
        c
        for c in image.columns
        if c == "ImageNumber" or c.startswith(("Metadata_", "Count_", "FileName_", "PathName_"))
    ]
    counts = [c for c in keep if c.startswith("Count_")]
    image.select(keep).with_columns(
        pl.lit(well).alias("Metadata_Well"),
        pl.lit(str(site)).alias("Metadata_Site"),
        *[pl.lit("0").alias(c) for c in counts],
    ).write_csv(dest / "Image.csv")
    probe = dest.parent / f".probe-{dest.name}"
    slim_site(src, probe)
    for name in ("Cells", "Cytoplasm", "Nuclei"):
        header = (probe / f"{name}.csv").read_text().split("\n")[0]
        (dest / f"{name}.csv").write_text(header + "\n")
    for f in probe.iterdir():
        f.unlink()
    probe.rmdir()
    return dest


def store_bytes(db: Path) -> dict[str, str]:
    """SHA-256 of the database file and of every file in its partitions folder, by path."""
    files = [db, *sorted(p for p in db.with_name(db.stem + ".parts").rglob("*") if p.is_file())]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files if p.exists()}
