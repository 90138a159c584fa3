"""`cellframe embed` and `cellframe train-embedder` end to end on a tiny store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cellframe.cli import main
from cellframe.store import Store

from .conftest import CHANNELS


@pytest.fixture
def tiny_screen(tmp_path: Path, two_sites) -> tuple[Path, Path]:
    objects, images = two_sites
    folder = tmp_path / "stacks"
    folder.mkdir()
    for (plate, well, site), image in images.items():
        np.save(folder / f"{plate}_{well}_s{site}.npy", image[:2])  # DNA and ER: narrower tables
    db = tmp_path / "screen.duckdb"
    with Store(db) as store:
        full = objects.with_columns(
            pl.lit("Nuclei").alias("Object"),
            *[pl.lit(None, dtype=pl.Float64).alias("AreaShape_Area")],
            *[
                pl.lit(None, dtype=pl.Int32).alias(f"BoundingBox_{c}")
                for c in ("MinX", "MinY", "MaxX", "MaxY")
            ],
        )
        store.write("objects", full, step="test")
        store.write(
            "platemap",
            pl.DataFrame(
                {
                    "Metadata_Plate": ["P1", "P1"],
                    "Metadata_Well": ["A01", "B02"],
                    "Metadata_Treatment": ["DMSO", "X"],
                    "Metadata_MoA": [None, None],
                    "Metadata_Control": ["negcon", None],
                },
                schema_overrides={"Metadata_MoA": pl.String, "Metadata_Control": pl.String},
            ),
            step="test",
        )
    return db, folder


def test_cli_module_does_not_import_torch() -> None:
    code = "import sys, cellframe.cli.embed, cellframe.embed; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_embed_command_writes_the_table(tiny_screen, capsys) -> None:
    db, folder = tiny_screen
    argv = [
        "embed",
        "--store",
        str(db),
        "--images",
        str(folder),
        "--weights",
        "random",
        "--input-size",
        "16",
    ]
    argv += ["--channels", "DNA,ER"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "wrote 5 cells x 1344 features to cells_efficientnet_b0" in out and "cells/s" in out
    with Store(db, read_only=True) as store:
        frame = store.read("cells_efficientnet_b0")
        params = json.loads(store.provenance("cells_efficientnet_b0")["parameters"][-1])
    assert frame.height == 5 and frame.width == 4 + 2 * 672
    assert frame.columns[4] == f"efficientnet_b0_{CHANNELS[0]}_0"
    assert frame.columns[4 + 672] == f"efficientnet_b0_{CHANNELS[1]}_0"
    assert params["weights"] == "random" and params["channels"] == CHANNELS[:2]


def test_embed_command_errors(tiny_screen, capsys) -> None:
    db, folder = tiny_screen
    assert main(["embed", "--store", str(db), "--images", str(folder)]) == 2
    assert "exactly one of --weights" in capsys.readouterr().err
    argv = [
        "embed",
        "--store",
        str(db),
        "--images",
        str(folder),
        "--weights",
        "random",
        "--channels",
        "DNA,ER,RNA",
    ]
    assert main(argv) == 2
    assert "has 2 channel(s) but 3 are named" in capsys.readouterr().err
    assert (
        main(
            [
                "embed",
                "--store",
                str(db),
                "--images",
                str(folder),
                "--weights",
                str(folder / "none.pth"),
            ]
        )
        == 2
    )
    assert "not found" in capsys.readouterr().err


def test_train_then_embed_with_the_checkpoint(tiny_screen, tmp_path: Path, capsys) -> None:
    db, folder = tiny_screen
    ckpt = tmp_path / "ckpt"
    argv = [
        "train-embedder",
        "--store",
        str(db),
        "--images",
        str(folder),
        "--arch",
        "tinynet_e",
        "--epochs",
        "2",
        "--box-size",
        "16",
        "--channels",
        "DNA,ER",
        "--checkpoint-dir",
        str(ckpt),
        "--train-fraction",
        "0.5",
        "-q",
    ]
    assert main(argv) == 0
    with Store(db, read_only=True) as store:
        history = store.read("training_wsl_tinynet_e")
    assert history["epoch"].to_list() == [1, 2]
    assert history["train_loss"][0] == pytest.approx(np.log(2), abs=1e-6)
    argv = [
        "embed",
        "--store",
        str(db),
        "--images",
        str(folder),
        "--checkpoint",
        str(ckpt / "best.pt"),
        "--box-size",
        "16",
    ]
    argv += ["--channels", "DNA,ER", "-q"]
    assert main(argv) == 0
    with Store(db, read_only=True) as store:
        frame = store.read("cells_wsl_tinynet_e")
    assert frame.shape == (5, 4 + 336)
    assert frame.select(pl.all().exclude("^Metadata_.*$").is_nan().any()).row(0) == (False,) * 336


@pytest.mark.parametrize(
    ("arch", "defect"),
    [
        ("resnet18", "timm's 'resnet18' has no module 'blocks.5.0.bn2'"),
        ("efficientnet_b9", "timm's registry has no architecture 'efficientnet_b9'"),
    ],
)
def test_train_embedder_refuses_an_architecture_it_cannot_use(
    tiny_screen, tmp_path: Path, capsys, arch, defect
) -> None:
    db, folder = tiny_screen
    before = db.read_bytes()
    argv = ["train-embedder", "--store", str(db), "--images", str(folder), "--arch", arch]
    argv += ["--epochs", "1", "--box-size", "16", "--channels", "DNA,ER"]
    argv += ["--checkpoint-dir", str(tmp_path / "ckpt"), "-q"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "KeyError" not in err
    assert f"--arch {arch!r}: {defect}" in err
    # The valid ones are read from timm's registry, closest first.
    assert "architectures of timm.list_models(module='efficientnet')" in err
    assert "'efficientnet_b" in err
    assert db.read_bytes() == before and not (tmp_path / "ckpt").exists()


def test_check_architecture_accepts_the_efficientnet_family() -> None:
    from cellframe.embed.embedders import check_architecture
    from cellframe.errors import InvalidChoiceError

    for arch in ("efficientnet_b0", "efficientnet_lite0", "tinynet_e", "mixnet_s"):
        assert check_architecture(arch) == arch
    with pytest.raises(InvalidChoiceError, match="TrainConfig arch 'vit_tiny_patch16_224'"):
        check_architecture("vit_tiny_patch16_224", option="TrainConfig arch")
