"""`cellframe segment` on the real JUMP sites; advise; bad input at the command line."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cellframe.cli import main
from cellframe.io.images import read_labels, read_site
from cellframe.segment.objects import objects_table
from cellframe.segment.otsu import otsu_segment
from cellframe.store import Store


@pytest.fixture
def jump(shared_data):
    return shared_data / "cellpainting-images-jump" / "jump_rab30_mini"


def test_segment_jump_zarr_with_otsu(tmp_path, jump, capsys):
    db, out = tmp_path / "s.duckdb", tmp_path / "labels"
    rc = main(
        [
            "segment",
            "run",
            str(jump / "images.zarr"),
            "--sites",
            str(jump / "sites.csv"),
            "--channel",
            "DNA",
            "--method",
            "otsu",
            "--labels-dir",
            str(out),
            "--store",
            str(db),
            "--quiet",
        ]
    )
    assert rc == 0
    with Store(db) as store:
        objects = store.read("objects").sort("Metadata_Plate", "Metadata_ObjectNumber")
        prov = store.provenance("objects")
    assert prov["step"].to_list() == ["segment"]
    expected = []
    for idx, (plate, well, site) in enumerate(
        [("BR00123947", "G01", 1), ("CP-CC9-R1-05", "L07", 0)]
    ):
        dna = read_site(jump / "images.zarr", site=idx, channels="DNA").pixels
        labels = read_labels(out / f"{plate}_{well}_s{site}_Nuclei.tif")
        np.testing.assert_array_equal(labels, otsu_segment(dna))
        assert 10 < labels.max() < 100  # a 384x384 crop holds some tens of nuclei
        expected.append(objects_table(labels, plate=plate, well=well, site=site))
    assert_frame_equal(
        objects,
        pl.concat(expected).sort("Metadata_Plate", "Metadata_ObjectNumber"),
        check_dtypes=False,
    )
    # running again without --replace refuses to duplicate
    rc = main(
        [
            "segment",
            "run",
            str(jump / "images.zarr"),
            "--sites",
            str(jump / "sites.csv"),
            "--method",
            "otsu",
            "--store",
            str(db),
            "--quiet",
        ]
    )
    assert rc == 2 and "--replace" in capsys.readouterr().err


def test_segment_jump_tiff_with_shipped_unet(tmp_path, jump):
    db = tmp_path / "s.duckdb"
    tif = jump / "site1_CP-CC9-R1-05_L07_s0.tif"
    assert (
        main(
            [
                "segment",
                "run",
                str(tif),
                "--channel",
                "DNA",
                "--store",
                str(db),
                "--labels-dir",
                str(tmp_path),
                "--quiet",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    with Store(db) as store:
        objects = store.read("objects")
    assert set(objects["Metadata_Plate"]) == {"CP-CC9-R1-05"}
    assert set(objects["Metadata_Well"]) == {"L07"} and set(objects["Metadata_Site"]) == {0}
    labels = read_labels(tmp_path / "CP-CC9-R1-05_L07_s0_Nuclei.tif")
    assert objects.height == labels.max()
    # the U-Net and Otsu agree on where the nuclei are (pixel Jaccard of foregrounds)
    otsu = otsu_segment(read_site(tif, channels="DNA").pixels)
    inter = np.count_nonzero((labels > 0) & (otsu > 0))
    assert inter / np.count_nonzero((labels > 0) | (otsu > 0)) > 0.6


def test_bad_input_at_the_command_line(tmp_path, jump, capsys):
    tif = jump / "site0_BR00123947_G01_s1.tif"
    db = str(tmp_path / "s.duckdb")
    assert main(["segment", "run", str(tif), "--channel", "Hoechst", "--store", db, "-q"]) == 2
    assert "['Hoechst'] not in" in capsys.readouterr().err
    bad = tmp_path / "P1_A01_s1.tif"
    bad.write_bytes(b"II*\x00garbage-garbage-garbage")
    assert main(["segment", "run", str(bad), "--store", db, "-q", "--method", "otsu"]) == 2
    assert "as a TIFF" in capsys.readouterr().err
    odd = tmp_path / "odd_name.tif"
    odd.write_bytes(tif.read_bytes())
    assert main(["segment", "run", str(odd), "--store", db, "-q", "--method", "otsu"]) == 2
    assert "cannot tell the plate" in capsys.readouterr().err
    ck = tmp_path / "other.pt"
    import torch

    torch.save({"weight": torch.zeros(3)}, ck)
    assert main(["segment", "run", str(tif), "--checkpoint", str(ck), "--store", db, "-q"]) == 2
    assert "another architecture" in capsys.readouterr().err


def test_advise(capsys):
    assert (
        main(
            [
                "segment",
                "advise",
                "--modality",
                "fluorescence",
                "--dim",
                "2d",
                "--challenge",
                "touching",
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith(("Mask R-CNN", "U-Net"))  # implemented + handles touching first
    assert any("[cellframe: cellframe.segment.otsu_segment]" in ln for ln in lines)
    assert not any(ln.startswith(("PlantSeg", "HoVer-Net")) for ln in lines)  # 3-D only / H&E only
    assert main(["segment", "advise", "--modality", "x-ray"]) == 2
    assert "known:" in capsys.readouterr().err


def test_train_command_writes_a_loadable_checkpoint(tmp_path):
    import tifffile

    from cellframe.segment.unet import UNetConfig, load_unet
    from tests.segment.conftest import disks

    img, lab = disks((48, 48), centres=((15, 15, 6), (32, 30, 8)))
    tifffile.imwrite(tmp_path / "img.tif", img.astype(np.uint16))
    tifffile.imwrite(tmp_path / "lab.tif", lab.astype(np.uint16))
    ck = tmp_path / "m.pt"
    args = [
        "segment",
        "train",
        str(tmp_path / "img.tif"),
        str(tmp_path / "lab.tif"),
        "--out",
        str(ck),
        "--outputs",
        "3",
        "--depth",
        "1",
        "--width",
        "2",
        "--epochs",
        "2",
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--patch-size",
        "32",
        "-q",
    ]
    assert main(args) == 0
    model = load_unet(ck)
    assert model.config == UNetConfig(1, 3, 1, 2)
    assert model.checkpoint_meta["epochs"] == 2 and model.checkpoint_meta["steps_per_epoch"] == 2
