"""Fixtures shared by the measurement tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

#: Channels of the bundled JUMP sites, in ``channels.csv`` order.
JUMP_CHANNELS = ["AGP", "DNA", "ER", "Mito", "RNA"]

#: CellProfiler's ExampleHuman site under ``../shared/data``.
EXAMPLE_HUMAN = "cellprofiler-outputs/tests/data/cellprofiler/ExampleHuman"


@dataclass(frozen=True)
class ExampleHumanSite:
    """ExampleHuman's three images and the objects its pipeline's settings find."""

    folder: Path
    images: dict[str, np.ndarray]  # DNA, PH3, cellbody (CellProfiler's names)
    objects: object  # cellframe.segment.classical.SiteObjects

    @property
    def labels(self) -> dict[str, np.ndarray]:
        """The three compartments' label images by CellProfiler's object names."""
        o = self.objects
        return {"Nuclei": o.nuclei, "Cells": o.cells, "Cytoplasm": o.cytoplasm}


@pytest.fixture(scope="session")
def example_human(shared_data: Path) -> ExampleHumanSite:
    """CellProfiler's ExampleHuman site (512 x 512, 289 nuclei), segmented once per session.

    Objects come from ``segment_site`` with the ExampleHuman pipeline's
    settings (nuclei 8-80 px, cell threshold correction 0.8, no smoothing).
    """
    import tifffile

    from cellframe.segment.classical import segment_site

    folder = shared_data / EXAMPLE_HUMAN
    dna, ph3, cellbody = (
        tifffile.imread(folder / f"AS_09125_050116030001_D03f00d{i}.tif") for i in range(3)
    )
    for image in (dna, ph3, cellbody):
        image.flags.writeable = False  # shared by tests: none may change it
    objects = segment_site(
        {"DNA": dna, "cellbody": cellbody}, nuclei="DNA", cells="cellbody",
        primary={"size_range": (8, 80)},
        secondary={"threshold_correction": 0.8, "smoothing_sigma": 0},
    )  # fmt: skip
    images = {"DNA": dna, "PH3": ph3, "cellbody": cellbody}
    return ExampleHumanSite(folder=folder, images=images, objects=objects)


def jump_site(index: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Pixels by channel and classical objects by compartment of a bundled JUMP site."""
    import zarr

    from cellframe.demo import demo_data_dir
    from cellframe.segment.classical import segment_site

    images = zarr.open(str(demo_data_dir() / "jump" / "images.zarr"), mode="r")["images"]
    pixels = {name: np.asarray(images[index, c]) for c, name in enumerate(JUMP_CHANNELS)}
    objects = segment_site(pixels, nuclei="DNA", cells="AGP")
    labels = {"Nuclei": objects.nuclei, "Cells": objects.cells, "Cytoplasm": objects.cytoplasm}
    return pixels, labels
