"""embed_objects: rows equal the embedder run on each site's crops; store table and provenance."""

from __future__ import annotations

import json

import polars as pl
import pytest
import torch
from polars.testing import assert_frame_equal

from cellframe.embed.crops import crop_objects
from cellframe.embed.embedders import ChannelEmbedder
from cellframe.embed.extract import CropSettings, EmbedTiming, embed_objects, write_embeddings
from cellframe.errors import EmptyInputError, InvalidInputError

from .conftest import CHANNELS, make_objects


@pytest.fixture(scope="module")
def embedder() -> ChannelEmbedder:
    # Small input so the test is quick; the production size is 224.
    return ChannelEmbedder("efficientnet_b0", "random", input_size=16, device="cpu")


@pytest.fixture(scope="module")
def embedded(two_sites, embedder) -> tuple[pl.DataFrame, EmbedTiming]:
    objects, images = two_sites
    timing = EmbedTiming()
    frame = embed_objects(
        objects, images, embedder, channels=CHANNELS, batch_size=2, progress=False, timing=timing
    )
    return frame, timing


def reference(
    objects: pl.DataFrame, images: dict, embedder: ChannelEmbedder, box_size: int = 128
) -> pl.DataFrame:
    """Crop and embed site by site, without the dataset or the loader."""
    parts = []
    for (plate, well, site), group in objects.sort("Metadata_ObjectNumber").group_by(
        ["Metadata_Plate", "Metadata_Well", "Metadata_Site"], maintain_order=True
    ):
        crops = crop_objects(
            images[(plate, well, site)],
            group["Location_Center_X"].to_numpy(),
            group["Location_Center_Y"].to_numpy(),
            box_size=box_size,
        )
        feats = embedder(torch.from_numpy(crops))
        names = embedder.feature_names(CHANNELS)
        parts.append(
            pl.concat(
                [
                    group.select(
                        "Metadata_Plate", "Metadata_Well", "Metadata_Site", "Metadata_ObjectNumber"
                    ),
                    pl.DataFrame(feats, schema=names),
                ],
                how="horizontal",
            )
        )
    return pl.concat(parts).sort(
        ["Metadata_Plate", "Metadata_Well", "Metadata_Site", "Metadata_ObjectNumber"]
    )


def test_embed_objects_equals_site_by_site_reference(two_sites, embedder, embedded) -> None:
    objects, images = two_sites
    got, timing = embedded
    want = reference(objects, images, embedder)
    assert got.shape == (5, 4 + 5 * 672)
    assert got.schema["efficientnet_b0_DNA_0"] == pl.Float32
    assert (
        got.schema["Metadata_Site"] == pl.Int32 and got.schema["Metadata_ObjectNumber"] == pl.Int64
    )
    # Batches of 2 span sites; BatchNorm in eval mode makes rows independent of batching.
    assert_frame_equal(got, want, check_exact=False, rel_tol=1e-4, abs_tol=1e-5)
    assert timing.cells == 5 and 0 < timing.forward_seconds <= timing.wall_seconds
    assert 0 <= timing.outside_forward_share < 1


def test_write_to_store_with_provenance(store, embedder, embedded) -> None:
    frame, _ = embedded
    # Keys and the DNA channel's 672 columns keep the wide-table store round trip quick.
    frame = frame.select(pl.col("^Metadata_.*$"), pl.col("^efficientnet_b0_DNA_.*$"))
    assert write_embeddings(store, frame, embedder, parameters={"channels": CHANNELS}) == 5
    assert_frame_equal(store.read("cells_efficientnet_b0"), frame)
    prov = store.provenance("cells_efficientnet_b0").row(-1, named=True)
    params = json.loads(prov["parameters"])
    assert prov["step"] == "embed"
    assert params["model"] == "efficientnet_b0" and params["weights"] == "random"
    assert params["weights_kind"].startswith("random (tests only")
    # Embedding the plate again replaces its rows.
    write_embeddings(store, frame, embedder)
    assert store.sql("SELECT count(*) AS n FROM cells_efficientnet_b0")["n"][0] == 5
    # Embedding one site again replaces that site only: the plate's other site stays.
    keys = ["Metadata_Plate", "Metadata_Well", "Metadata_Site", "Metadata_ObjectNumber"]
    first = frame.filter(pl.col("Metadata_Well") == frame["Metadata_Well"][0])
    assert 0 < first.height < frame.height
    write_embeddings(store, first, embedder)
    assert_frame_equal(store.read("cells_efficientnet_b0").sort(keys), frame.sort(keys))


def test_empty_site_warns_and_no_objects_raise(two_sites, embedder) -> None:
    objects, images = two_sites
    images = {**images, ("P1", "C03", 1): images[("P1", "A01", 1)]}
    with pytest.warns(UserWarning, match=r"1 site\(s\) have images but no objects.*P1/C03/1"):
        got = embed_objects(
            objects, images, embedder, channels=CHANNELS, image_sites=list(images), progress=False
        )
    assert got.height == 5
    with pytest.raises(EmptyInputError, match="holds no objects"):
        embed_objects(objects.clear(), images, embedder, channels=CHANNELS, progress=False)


def test_bad_sites_are_errors(two_sites, embedder) -> None:
    objects, images = two_sites
    outside = make_objects([("P1", "A01", 1, 9, 80.0, 10.0)])  # the image is 80 wide
    with pytest.raises(InvalidInputError, match="site P1/A01/1: 1 of 1 object centre"):
        embed_objects(outside, images, embedder, channels=CHANNELS, progress=False)
    four = {k: v[:4] for k, v in images.items()}
    with pytest.raises(InvalidInputError, match="has 4 channel"):
        embed_objects(objects, four, embedder, channels=CHANNELS, progress=False)


def test_progress_bar_counts_cells(two_sites, embedder, capsys) -> None:
    objects, images = two_sites
    embed_objects(objects, images, embedder, channels=CHANNELS, progress=True)
    err = capsys.readouterr().err
    assert "5/5" in err and "cell/s" in err


def test_crop_settings_set_the_box(two_sites, embedder) -> None:
    objects, images = two_sites
    got = embed_objects(
        objects,
        images,
        embedder,
        channels=CHANNELS,
        crops=CropSettings(box_size=32),
        progress=False,
    )
    want = reference(objects, images, embedder, box_size=32)
    assert_frame_equal(got, want, check_exact=False, rel_tol=1e-4, abs_tol=1e-5)
    # A 32-pixel box sees less of the image than the default 128: the features differ.
    default = reference(objects, images, embedder)
    assert not got.select(pl.col("^efficientnet.*$")).equals(
        default.select(pl.col("^efficientnet.*$"))
    )


@pytest.mark.parametrize("box_size", [0, -4, 2.5, True])
def test_crop_settings_refuse_a_bad_box(box_size) -> None:
    with pytest.raises(InvalidInputError, match="box_size must be a positive integer"):
        CropSettings(box_size=box_size)
    assert CropSettings(box_size=1).box_size == 1  # the smallest box is valid
