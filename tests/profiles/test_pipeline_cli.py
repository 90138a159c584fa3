"""Store-level steps, the TOML pipeline and the CLI commands, checked against the pure transforms."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cellframe.cli import main
from cellframe.columns import PLATE, feature_columns
from cellframe.pipeline import load_step, run_pipeline
from cellframe.profiles import (
    Normalizer,
    Spherizer,
    aggregate,
    feature_select,
    normalize,
    sphere,
    treatment_strength,
)
from cellframe.store import Store

from .conftest import make_screen

CONFIG = """
input = "cells"

[[step]]
run = "aggregate"
level = "well"
path = "thesis"
chunk_rows = 30

[[step]]
run = "normalize"
method = "mad_robustize"
save_fit = "normalize_fit"

[[step]]
run = "select"
operations = ["variance_threshold", "correlation_threshold"]
corr_threshold = 0.95

[[step]]
run = "sphere"
lam = 0.1
save_fit = "sphere_fit"

[[step]]
run = "strength"
input = "wells_normalized"
"""


@pytest.fixture
def screen_store(tmp_path):
    path = tmp_path / "screen.duckdb"
    cells = make_screen(n_plates=2, n_wells=12, n_sites=2, cells_per_site=5, n_features=6)
    with Store(path) as store:
        for (plate,), part in cells.group_by(PLATE, maintain_order=True):
            store.write_partition("cells", plate, part, step="test")
    return path, cells


def _expected_chain(cells: pl.DataFrame):
    wells = aggregate(cells.lazy(), "well", path="thesis").collect()
    normalized = normalize(wells, "mad_robustize").collect()
    selection = feature_select(
        normalized, ["variance_threshold", "correlation_threshold"], corr_threshold=0.95
    )
    selected = selection.apply(normalized).collect()
    sphered = sphere(selected, lam=0.1).collect()
    return wells, normalized, selected, sphered


def test_pipeline_config_matches_pure_chain(screen_store, tmp_path):
    path, cells = screen_store
    wells, normalized, selected, sphered = _expected_chain(cells)
    config = tmp_path / "pipeline.toml"
    config.write_text(CONFIG)
    with Store(path) as store:
        reports = run_pipeline(store, config, progress=False)
        assert [r.output for r in reports] == [
            "wells",
            "wells_normalized",
            "wells_normalized_selected",
            "wells_normalized_selected_sphered",
            "wells_normalized_strength",
        ]
        for table, expected in [
            ("wells", wells),
            ("wells_normalized", normalized),
            ("wells_normalized_selected", selected),
            ("wells_normalized_selected_sphered", sphered),
        ]:
            got = store.read(table).select(expected.columns)
            assert_frame_equal(got, expected, check_dtypes=False, rel_tol=1e-5, abs_tol=1e-5)
        prov = store.provenance("wells_normalized")
        params = json.loads(prov["parameters"][-1])
        assert params["method"] == "mad_robustize" and params["by"] == [PLATE]
        assert (
            store.provenance("wells_normalized_selected_sphered")["step"].to_list()[-1] == "sphere"
        )
        # Saved fits reload and reproduce the tables.
        norm = load_step(store, "normalize_fit", expect=Normalizer)
        assert_frame_equal(norm.transform(wells).collect(), normalized)
        sph = load_step(store, "sphere_fit", expect=Spherizer)
        assert_frame_equal(sph.transform(selected).collect(), sphered)
        strength = store.read("wells_normalized_strength")
        expected = treatment_strength(normalized).treatments
        assert_frame_equal(strength, expected, check_dtypes=False)
        dropped = store.read("wells_normalized_selected_dropped")
        assert set(dropped["feature"]) == set(feature_columns(normalized)) - set(
            feature_columns(selected)
        )


def test_cli_steps(screen_store, tmp_path, capsys):
    path, cells = screen_store
    wells, _normalized, _selected, sphered = _expected_chain(cells)
    s = ["--store", str(path), "--quiet"]
    assert main(["aggregate", *s, "--path", "thesis", "--chunk-rows", "25", "--workers", "3"]) == 0
    assert main(["normalize", *s, "--method", "mad_robustize"]) == 0
    assert (
        main(
            [
                "select",
                *s,
                "--operations",
                "variance_threshold,correlation_threshold",
                "--corr-threshold",
                "0.95",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "sphere",
                *s,
                "--lam",
                "0.1",
                "--input",
                "wells_normalized_selected",
                "--output",
                "wells_sphered",
            ]
        )
        == 0
    )
    assert main(["qc", *s, "--input", "wells", "--n-components", "2"]) == 0
    assert main(["strength", *s, "--k", "2"]) == 0
    with Store(path, read_only=True) as store:
        got = store.read("wells_sphered").select(sphered.columns)
        assert_frame_equal(got, sphered, check_dtypes=False, rel_tol=1e-5, abs_tol=1e-5)
        assert store.read("wells_normalized_strength").height == 2
        qc = store.read("wells_qc")
        assert qc.height == wells.height and "Metadata_QC_Outlier" in qc.columns
    # Bad input is one line on stderr with exit status 2.
    assert (
        main(
            [
                "normalize",
                "--store",
                str(path),
                "--quiet",
                "--input",
                "wells",
                "--controls",
                "Metadata_Control = 'nothing'",
            ]
        )
        == 2
    )
    assert "no control rows match" in capsys.readouterr().err
    # Plain output names the step.
    assert main(["normalize", "--store", str(path), "--input", "wells", "--output", "w2"]) == 0
    assert "normalize: wells -> w2" in capsys.readouterr().out


def test_cli_profile_command(screen_store, tmp_path, capsys):
    path, _ = screen_store
    config = tmp_path / "p.toml"
    config.write_text(CONFIG)
    assert main(["profile", "--store", str(path), "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "sphere" in out and "wells_normalized_selected_sphered" in out
    bad = tmp_path / "bad.toml"
    bad.write_text('input = "cells"\n[[step]]\nrun = "whiten"\n')
    assert main(["profile", "--store", str(path), "--config", str(bad)]) == 2
    assert "run = 'whiten'; valid: aggregate" in capsys.readouterr().err


def test_feature_sets_that_differ_between_plates(tmp_path):
    from cellframe.errors import SchemaMismatchError

    with Store(tmp_path / "s.duckdb") as store:
        cells = make_screen(n_plates=2, n_wells=4)
        p1 = cells.filter(pl.col(PLATE) == "P1")
        p2 = cells.filter(pl.col(PLATE) == "P2").drop("Cells_F5")
        store.write_partition("cells", "P1", p1)
        with pytest.raises(SchemaMismatchError, match="Cells_F5"):
            store.write_partition("cells", "P2", p2)
        # Fitted on one plate's features, applying to a plate without one is refused.
        wells1 = aggregate(p1.lazy(), "well").collect()
        wells2 = aggregate(p2.lazy(), "well").collect()
        norm = Normalizer().fit(wells1)
        from cellframe.errors import MissingColumnsError

        with pytest.raises(MissingColumnsError, match=r"Cells_F5.*select common features"):
            norm.transform(wells2)
        assert np.isfinite(norm.transform(wells1).collect()["Cells_F5"].to_numpy()).all()


def test_profile_config_with_activity_step_cross_fits(tmp_path, capsys):
    """`cellframe profile` with an activity step: the sphering is refitted per fold."""
    rng = np.random.default_rng(7)
    d, n_ctrl = 30, 20
    mix = rng.normal(size=(d, d)) / np.sqrt(d) + np.eye(d)
    zero = rng.normal(size=(6, d)) @ mix  # drawn like the controls
    strong = rng.normal(size=d) * 3 + rng.normal(size=(6, d)) @ mix
    x = np.vstack([zero, strong, rng.normal(size=(n_ctrl, d)) @ mix])
    wells = pl.DataFrame(
        {
            PLATE: [f"P{i % 2}" for i in range(12 + n_ctrl)],
            "Metadata_Well": [f"W{i:02d}" for i in range(12 + n_ctrl)],
            "Metadata_Treatment": ["ZERO"] * 6 + ["STRONG"] * 6 + ["DMSO"] * n_ctrl,
            "Metadata_Control": [None] * 12 + ["negcon"] * n_ctrl,
        }
    ).hstack(pl.DataFrame(x.astype(np.float32), schema=[f"f{i:02d}" for i in range(d)]))
    path = tmp_path / "s.duckdb"
    with Store(path) as s:
        s.write("wells", wells, step="ingest")
    config = tmp_path / "p.toml"
    config.write_text(
        'input = "wells"\n\n[[step]]\nrun = "sphere"\nlam = 0.001\n\n'
        '[[step]]\nrun = "activity"\nnull_size = 2000\n'
    )
    assert main(["profile", "--store", str(path), "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "wells_sphered -> wells_sphered_activity" in out and "null cross-fitted" in out
    with Store(path, read_only=True) as s:
        summary = s.read("wells_sphered_activity").sort("Metadata_Treatment")
        params = json.loads(s.provenance("wells_sphered_activity")["parameters"][0])
    assert summary["Metadata_Treatment"].to_list() == ["STRONG", "ZERO"]
    q = dict(zip(summary["Metadata_Treatment"], summary["corrected_p_value"], strict=True))
    assert q["STRONG"] < 0.05 < q["ZERO"]
    assert params["null"] == "cross-fitted" and params["null_source"] == "wells"
    assert params["refitted_steps"] == ["sphere"]


def test_evaluate_activity_bad_folds_is_one_line_and_changes_nothing(tmp_path, capsys):
    path = tmp_path / "s.duckdb"
    wells = pl.DataFrame(
        {
            PLATE: ["P"] * 6,
            "Metadata_Treatment": ["a", "a", "b", "b", "DMSO", "DMSO"],
            "Metadata_Control": [None] * 4 + ["negcon"] * 2,
            "f1": [1.0, 0.9, 0.0, 0.1, 0.5, -0.5],
            "f2": [0.0, 0.1, 1.0, 0.9, 0.2, 0.3],
        }
    )
    with Store(path) as s:
        s.write("wells", wells, step="ingest")
    main(["sphere", "--store", str(path), "--input", "wells", "--controls", "all", "--quiet"])
    with Store(path, read_only=True) as s:
        before = s.tables()
    code = main(
        ["evaluate", "wells_sphered", "--store", str(path), "--mode", "activity", "--n-folds", "3"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0
    assert "2 control rows for n_folds=3" in err
    with Store(path, read_only=True) as s:
        assert_frame_equal(s.tables(), before)


def test_missing_config_file_is_one_line(screen_store, tmp_path, capsys):
    path, _ = screen_store
    before = path.read_bytes()
    missing = tmp_path / "missing.toml"
    assert main(["profile", "--store", str(path), "--config", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Errno" not in err
    assert f"pipeline config {missing} does not exist" in err
    assert path.read_bytes() == before
    from cellframe.errors import ConfigNotFoundError
    from cellframe.pipeline import load_config

    with pytest.raises(ConfigNotFoundError, match=r"missing\.toml"):
        load_config(missing)
    assert isinstance(ConfigNotFoundError("x"), FileNotFoundError)  # callers catching it still do
    folder = tmp_path / "a_folder.toml"
    folder.mkdir()
    with pytest.raises(ConfigNotFoundError, match="is a folder"):
        load_config(folder)


def test_run_qc_unknown_kind_lists_the_kinds(screen_store):
    from cellframe.errors import InvalidChoiceError
    from cellframe.pipeline import QualityControl

    path, _ = screen_store
    with Store(path) as store:
        with pytest.raises(
            InvalidChoiceError, match=r"unknown QC kind 'cells'.*valid: 'wells', 'images'"
        ):
            QualityControl(kind="cells")
        assert "qc" not in store.tables()["table"].to_list()


def test_cli_select_noise_removal_and_rank_correlation_equal_feature_select(
    screen_store, capsys
) -> None:
    path, _cells = screen_store
    s = ["--store", str(path), "--quiet"]
    assert main(["aggregate", *s]) == 0
    with Store(path, read_only=True) as store:
        wells = store.read("wells")
    group = "Metadata_Treatment" if "Metadata_Treatment" in wells.columns else "Metadata_Well"
    argv = [
        "select",
        *s,
        "--input",
        "wells",
        "--output",
        "wells_noise",
        "--operations",
        "noise_removal,correlation_threshold",
        "--noise-removal-perturb-groups",
        group,
        "--noise-removal-stdev-cutoff",
        "0.5",
        "--corr-method",
        "spearman",
        "--corr-threshold",
        "0.5",
    ]
    assert main(argv) == 0
    expected = feature_select(
        wells,
        ["noise_removal", "correlation_threshold"],
        noise_removal_perturb_groups=group,
        noise_removal_stdev_cutoff=0.5,
        corr_method="spearman",
        corr_threshold=0.5,
    )
    with Store(path, read_only=True) as store:
        got = store.read("wells_noise")
    assert feature_columns(got) == expected.kept
    # Unusual but valid: something was dropped and something kept.
    assert 0 < len(feature_columns(got)) < len(feature_columns(wells))
    # Without the group column noise_removal is refused in one line, exit 2.
    assert main([*argv[:10], "--corr-method", "kendall"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "perturbation-group column" in err
