"""What a new user of ``cellframe measure`` reads: warnings with counts, summaries, one-line errors.

Each warning of a run is one line with its counts summed over the sites, the
reason and the option to change; each bad input is one line on stderr with
exit status 2 and leaves the store as it was.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cellframe.cli import main
from cellframe.columns import OBJECT_NUMBER, PLATE, SITE, WELL
from cellframe.errors import (
    IlluminationSitesWarning,
    IlluminationWarning,
    InvalidInputError,
    SizeRangeWarning,
    UndefinedMeasurementWarning,
)
from cellframe.pipeline.measure import (
    MIN_ILLUMINATION_SITES,
    MeasureOptions,
    MeasureReport,
    _Tally,
    _warn_few_sites,
)
from cellframe.segment.classical import identify_primary
from cellframe.store import Store

JUMP = Path(__file__).resolve().parents[2] / "cellframe" / "data" / "demo" / "jump"
CHANNELS = "DNA,ER,RNA,AGP,Mito"


def _disks(diameters: list[float], side: int = 200) -> np.ndarray:
    """Bright disks of the given diameters on a dark image, in a row, none at the border."""
    image = np.zeros((side, side), np.float32)
    yy, xx = np.mgrid[:side, :side]
    x = 20
    for i, d in enumerate(diameters):
        cy = 40 + 60 * (i % 2)
        image[(yy - cy) ** 2 + (xx - x) ** 2 <= (d / 2) ** 2] = 0.8
        x += int(d) + 12
    return image


# ------------------------------------------------------------------ size range
def test_size_range_warning_counts_the_objects_it_drops() -> None:
    # 5 disks 6 px across and 2 of 24 px: the default range (10, 40) drops the 5 small ones
    image = _disks([6, 6, 6, 6, 6, 24, 24])
    with pytest.warns(SizeRangeWarning) as caught:
        labels = identify_primary(image)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "5 of 7 objects lie outside the diameter range 10-40 px (5 smaller, 0 larger" in message
    assert "--nuclei-diameter MIN,MAX" in message and "\n" not in message
    counts = caught[0].message.counts
    assert (counts["objects"], counts["smaller"], counts["larger"]) == (7, 5, 0)
    # the median object's equivalent diameter, from the objects found without the size filter
    found = identify_primary(image, exclude_size=False)
    areas = np.bincount(found.ravel())[1:]
    assert areas.size == 7
    assert counts["median_diameter"] == pytest.approx(2 * np.sqrt(np.median(areas) / np.pi))
    assert 5 < counts["median_diameter"] < 10  # blurred by the threshold smoothing, still < 10
    assert int(labels.max()) == 2  # the result is the same as without the warning
    # a range that fits keeps all 7 and says nothing; dropping a minority says nothing either
    with warnings.catch_warnings():
        warnings.simplefilter("error", SizeRangeWarning)
        assert int(identify_primary(image, size_range=(4, 40)).max()) == 7
        assert int(identify_primary(_disks([6, 24, 24])).max()) == 2


# ------------------------------------------------------------------ NaN measurements
def test_nan_measurements_of_a_run_are_one_warning_with_counts_per_group() -> None:
    nan = float("nan")
    site1 = pl.DataFrame(
        {
            "Nuclei_Texture_Contrast_DNA_10_00_256": [nan, nan, 1.0],
            "Nuclei_Texture_Contrast_DNA_10_01_256": [nan, 2.0, 1.0],
            "Nuclei_Texture_Contrast_DNA_3_00_256": [1.0, 2.0, 1.0],
            "Cells_RadialDistribution_FracAtD_DNA_1of4": [1.0, nan, 1.0],
            "Cells_AreaShape_Area": [1.0, 2.0, 3.0],
        },
        schema_overrides={"Cells_AreaShape_Area": pl.Float32},
    ).with_columns(pl.lit(1, pl.Int64).alias(OBJECT_NUMBER))
    site2 = site1.with_columns(pl.lit(1.0).alias("Nuclei_Texture_Contrast_DNA_10_00_256"))
    site2 = site2.with_columns(pl.lit(1.0).alias("Nuclei_Texture_Contrast_DNA_10_01_256"))
    clean = site1.with_columns(pl.col(c).fill_nan(0.0) for c in site1.columns[:4])
    tally = _Tally()
    for frame in (site1, site2, clean):
        tally.add_nan(frame)
    # site 1: 3 NaN texture values (cells 1, 2) and 1 radial (cell 2); site 2: 1 radial
    assert (tally.nan_values, tally.nan_cells, tally.nan_sites, tally.cells) == (5, 3, 2, 9)
    assert tally.nan_groups == {
        ("Nuclei", "Texture", 10): 2,
        ("Cells", "RadialDistribution", None): 2,
    }
    with pytest.warns(UndefinedMeasurementWarning) as caught:
        tally.warn("DNA")
    assert len(caught) == 1
    message = str(caught[0].message)
    assert message.startswith(
        "5 measured values of 3 of 9 cell(s) on 2 of 3 site(s) are NaN (undefined, kept as NaN): "
        "Cells radialdistribution (2 cells), Nuclei texture at scale 10 (2 cells);"
    )
    assert "--texture-scales" in message and "\n" not in message
    assert message.endswith("check the objects' sizes (--nuclei-diameter)")
    with pytest.warns(UndefinedMeasurementWarning) as caught:  # U-Net nuclei: no diameter range
        tally.warn("DNA", classical=False)
    assert str(caught[0].message).endswith("check the objects' sizes")
    # no NaN: no warning
    quiet = _Tally()
    quiet.add_nan(clean)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet.warn("DNA")


def test_size_range_counts_of_several_sites_are_summed_into_one_warning() -> None:
    tally = _Tally(sites=3)
    for objects, small, median in ((40, 30, 6.0), (20, 12, 7.0)):
        tally.add_size(
            {"objects": objects, "smaller": small, "larger": 1, "median_diameter": median,
             "size_range": (10.0, 40.0)}
        )  # fmt: skip
    with pytest.warns(SizeRangeWarning) as caught:
        tally.warn("DNA")
    assert len(caught) == 1
    assert str(caught[0].message).startswith(
        "the nuclei diameter range 10-40 px dropped most objects found in channel 'DNA' on 2 of "
        "3 site(s): 44 of 60 objects (42 smaller, 2 larger; the sites' median diameter 6.5 px)"
    )


# ------------------------------------------------------------------ illumination
def test_illumination_fitted_from_few_sites_is_one_warning_naming_the_plates() -> None:
    with pytest.warns(IlluminationSitesWarning) as caught:
        _warn_few_sites({"P1": 1, "P2": MIN_ILLUMINATION_SITES, "P3": 4})
    assert len(caught) == 1 and issubclass(caught[0].category, IlluminationWarning)
    assert str(caught[0].message).startswith(
        "the illumination functions of 2 of 3 plate(s) are fitted from fewer than 10 sites "
        "(sites: P1 (1), P3 (4));"
    )
    assert "--no-illumination" in str(caught[0].message)
    with warnings.catch_warnings():  # a plate of 10 sites is enough
        warnings.simplefilter("error")
        _warn_few_sites({"P2": MIN_ILLUMINATION_SITES})


# ------------------------------------------------------------------ summary line
def test_summary_line() -> None:
    report = MeasureReport(
        "cells", sites_measured=3, sites_skipped=1, cells=60, flagged=1, seconds=2.0,
        cells_per_site=[10, 20, 30],
    )  # fmt: skip
    assert report.summary() == (
        "measured 3 site(s), 60 cell(s) into 'cells' (10-30 per site, median 20; 1.50 sites/s, "
        "30.0 cells/s); skipped 1 site(s) measured before (--force measures them again); "
        "1 flagged blurry or saturated (image_quality)"
    )
    assert MeasureReport("cells", sites_skipped=2).summary() == (
        "measured 0 site(s): the 2 site(s) given were measured before (object_labels); "
        "--force measures them again"
    )


def test_embedding_options_are_checked() -> None:
    with pytest.raises(InvalidInputError, match="crop_size must be a whole number >= 1"):
        MeasureOptions(crop_size=0)
    with pytest.raises(InvalidInputError, match="embed_batch_size must be a whole number >= 1"):
        MeasureOptions(embed_batch_size=2.5)  # type: ignore[arg-type]
    # valid but unusual: a one-pixel crop, one cell per batch
    assert (MeasureOptions(crop_size=1, embed_batch_size=1).crop_size, 128) == (1, 128)
    assert MeasureOptions().crop_size == 128 and MeasureOptions().embed_batch_size == 64


# ------------------------------------------------------------------ command line
def _cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["measure", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _error(capsys, store: Path, *args: str) -> str:
    """Run a command that must fail: one line on stderr, exit 2, no table written."""
    code, _, err = _cli(capsys, *args, "--store", str(store), "-q")
    assert code == 2, err
    assert err.startswith("cellframe") and err.count("\n") == 1, err
    if store.exists():
        with Store(store) as s:
            assert not {"cells", "object_labels", "illumination"} & set(s.table_names())
            assert s.read("images").height == 0
    return err


def test_bad_input_at_the_command_line_is_one_line_with_exit_2(tmp_path, capsys) -> None:
    import tifffile

    store = tmp_path / "s.duckdb"
    zarr = str(JUMP / "images.zarr")
    quick = ("--families", "sizeshape", "--no-illumination")
    err = _error(capsys, store, zarr, "--channels", "DNA,ER,RNA,AGP,Actin", *quick)
    assert "channel(s) ['Actin'] not in" in err and "--channel-names" in err
    err = _error(capsys, store, zarr, "--channels", CHANNELS, "--nuclei", "Hoechst", *quick)
    assert "the nuclei channel 'Hoechst' (--nuclei) is not among" in err
    assert "name one of those with --nuclei" in err
    (tmp_path / "empty").mkdir()
    err = _error(capsys, store, str(tmp_path / "empty"), "--channels", CHANNELS, *quick)
    assert "holds no .tif/.tiff files" in err
    err = _error(capsys, store, str(tmp_path / "nothere"), "--channels", CHANNELS, *quick)
    assert "no image file, folder or zarr store at" in err
    bad = tmp_path / "sites.csv"
    bad.write_text("Plate,Well,idx\nP,A01,0\n")
    err = _error(capsys, store, zarr, "--channels", CHANNELS, "--sites", str(bad), *quick)
    assert "lacks required column(s) 'Site'" in err
    bad.write_text("Plate,Well,Site,idx\nP,A01,1,0\nP,A02,two,1\n")
    err = _error(capsys, store, zarr, "--channels", CHANNELS, "--sites", str(bad), *quick)
    assert "line 3: column Site is 'two', not a whole number" in err
    bad.write_text("Plate,Well,Site,path\nP,A01,1,gone.tif\n")
    err = _error(capsys, store, zarr, "--channels", CHANNELS, "--sites", str(bad), *quick)
    assert "line 2: column path names gone.tif, which does not exist" in err
    good = tmp_path / "good.csv"  # valid but unusual: Metadata_ names, an absolute path
    good.write_text(
        f"Metadata_Plate,Metadata_Well,Metadata_Site,path\nP,A01,1,{JUMP / 'images.zarr'}\n"
    )
    code, out, err = _cli(capsys, zarr, "--channels", CHANNELS, "--sites", str(good),
                          "--store", str(tmp_path / "good.duckdb"), "--nuclei-diameter", "20,80",
                          *quick)  # fmt: skip
    assert code == 0 and out.startswith("measured 1 site(s), "), err
    err = _error(capsys, store, zarr, "--channels", CHANNELS, "--sites", str(tmp_path / "x.csv"))
    assert "sites file" in err and "(--sites) does not exist" in err
    # one TIFF per channel (CellProfiler's layout) in other names: the message names the options
    folder = tmp_path / "per-channel"
    folder.mkdir()
    for d in range(3):
        tifffile.imwrite(folder / f"AS_09125_D03f00d{d}.tif", np.zeros((8, 8), np.uint16))
    err = _error(capsys, store, str(folder), "--channels", "DNA,AGP", *quick)
    assert "of 3 of 3 file(s)" in err and "--channel-files" in err and "--load-data" in err
    err = _error(capsys, store, zarr, "--channels", CHANNELS, "--nuclei-diameter", "40,10")
    assert "--nuclei-diameter: '40,10' is not MIN,MAX" in err
    err = _error(capsys, store, zarr, "--channels", CHANNELS, "--nuclei-diameter", "20,80",
                 "--nuclei-method", "otsu")  # fmt: skip
    assert "--nuclei-diameter sets the size range of the classical nuclei" in err
    err = _error(capsys, store, zarr, "--channels", CHANNELS, "--crop-size", "64")
    assert "--crop-size set(s) how cells are embedded, but no --embed MODEL" in err
    err = _error(capsys, store, zarr, "--channels", CHANNELS, "--embed", "resnet50")
    assert "'resnet50' is not a model for --embed; allowed values: efficientnet_lite0" in err


def _reference_nuclei(site: int, size_range: tuple[float, float]) -> int:
    """Nuclei of a bundled JUMP site found directly (no illumination correction)."""
    from cellframe.io.images import read_site
    from cellframe.measure.features import to_unit_range
    from cellframe.segment.classical import segment_site

    pixels, names = read_site(JUMP / "images.zarr", site=site)
    images = {n: to_unit_range(p) for n, p in zip(names, pixels, strict=True)}
    return segment_site(images, nuclei="DNA", cells="AGP", primary={"size_range": size_range}).count


def test_resume_and_force_at_the_command_line(tmp_path, capsys) -> None:
    """A rerun reports the skipped sites and writes nothing; --force replaces them."""
    rows = pl.read_csv(JUMP / "sites.csv", glob=False)
    sites = tmp_path / "one.csv"
    rows[:1].write_csv(sites)
    store = tmp_path / "s.duckdb"
    args = (str(JUMP / "images.zarr"), "--channels", CHANNELS, "--sites", str(sites),
            "--store", str(store), "--families", "sizeshape", "--no-illumination",
            "--nuclei-diameter", "20,80")  # fmt: skip
    expected = _reference_nuclei(0, (20, 80))
    assert expected >= 8  # the site's nuclei (about 30 px across), not fragments of them
    code, out, err = _cli(capsys, *args)
    assert code == 0 and "SizeRangeWarning" not in err
    assert out.startswith(f"measured 1 site(s), {expected} cell(s) into 'cells' (")
    with Store(store) as s:
        first = s.read("cells")
        labels = s.read("object_labels")
    assert first.height == expected
    assert labels.filter(pl.col("Object") == "Nuclei")["Count"].to_list() == [expected]
    assert all(p.endswith(".tif") for p in labels["Path"])
    code, out, _ = _cli(capsys, *args)
    assert code == 0 and out == (
        "measured 0 site(s): the 1 site(s) given were measured before (object_labels); "
        "--force measures them again\n"
    )
    code, out, _ = _cli(capsys, *args, "--force")
    assert code == 0 and out.startswith(f"measured 1 site(s), {expected} cell(s)")
    with Store(store) as s:
        again = s.read("cells")
    assert again.sort(OBJECT_NUMBER).equals(first.sort(OBJECT_NUMBER))  # replaced, not added


def test_default_diameters_on_the_jump_sites_warn_and_name_the_option(tmp_path, capsys) -> None:
    """With illumination fitted from one site per plate, the default range drops most objects."""
    store = tmp_path / "s.duckdb"
    with pytest.warns(UserWarning) as caught:
        code, out, _ = _cli(
            capsys, str(JUMP / "images.zarr"), "--channels", "DNA,AGP", "--store", str(store),
            "--families", "sizeshape",
        )  # fmt: skip
    assert code == 0
    kinds = sorted(w.category.__name__ for w in caught)
    assert kinds == ["IlluminationSitesWarning", "SizeRangeWarning"], kinds
    messages = {w.category.__name__: str(w.message) for w in caught}
    assert not any("\n" in m for m in messages.values())
    illum = messages["IlluminationSitesWarning"]
    assert "2 of 2 plate(s) are fitted from fewer than 10 sites" in illum
    size = messages["SizeRangeWarning"]
    # the counts: objects after border exclusion, from the stored illumination functions
    from cellframe.io.images import read_site
    from cellframe.measure.features import to_unit_range
    from cellframe.measure.illumination import IlluminationFunction
    from cellframe.segment.classical import _drop_border, _primary

    with Store(store) as s:
        functions = s.read("illumination")
        cells = s.read("cells")
    total = small = 0
    for i in (0, 1):
        pixels, names = read_site(JUMP / "images.zarr", site=i)
        plate: str = pl.read_csv(JUMP / "sites.csv", glob=False)["Plate"][i]
        fn = IlluminationFunction.from_frame(
            functions.filter((pl.col(PLATE) == plate) & (pl.col("Metadata_Channel") == "DNA"))
        )
        dna = fn.transform(to_unit_range(pixels[names.index("DNA")]))
        areas = np.bincount(_drop_border(_primary(dna, exclude_size=False).unedited).ravel())[1:]
        areas = areas[areas > 0]
        total += areas.size
        small += int((areas < np.pi * 10 * 10 / 4).sum())
    assert small * 2 > total  # most objects are smaller than 10 px: the warning must fire
    assert f"on 2 of 2 site(s): {small} of {total} objects ({small} smaller, 0 larger" in size
    assert "--nuclei-diameter MIN,MAX" in size
    assert out.startswith(f"measured 2 site(s), {cells.height} cell(s)")
    assert cells.select(PLATE, WELL, SITE).unique().height == 2


def test_example_human_stacked_gives_cellprofilers_nucleus_count(
    shared_data, tmp_path, capsys
) -> None:
    """CellProfiler's ExampleHuman, its three channel files stacked into one TIFF per site."""
    import tifffile

    folder = (
        shared_data / "cellprofiler-outputs" / "tests" / "data" / "cellprofiler" / "ExampleHuman"
    )
    image = pl.read_csv(folder / "Image.csv", glob=False)
    names = ["DNA", "PH3", "cellbody"]
    site = tmp_path / "sites"
    site.mkdir()
    stack = np.stack([tifffile.imread(folder / image[f"FileName_{n}"][0]) for n in names])
    tifffile.imwrite(site / "ExampleHuman_D03_s1.tif", stack, photometric="minisblack")
    pl.DataFrame({"idx": [0, 1, 2], "channel": names}).write_csv(site / "channels.csv")
    store = tmp_path / "s.duckdb"
    # the pipeline's nuclei diameters (8-80 px); one site: no illumination correction
    code, out, err = _cli(
        capsys, str(site), "--channels", ",".join(names), "--cells", "cellbody",
        "--nuclei-diameter", "8,80", "--no-illumination", "--families", "sizeshape",
        "--store", str(store),
    )  # fmt: skip
    assert code == 0, err
    with Store(store) as s:
        labels = s.read("object_labels")
    nuclei = labels.filter(pl.col("Object") == "Nuclei")["Count"][0]
    assert nuclei == int(image["Count_Nuclei"][0]) == 289
    assert out.startswith("measured 1 site(s), 289 cell(s) into 'cells' (0")
