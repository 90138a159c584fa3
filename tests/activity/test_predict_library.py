"""``cellframe activity --save-model`` then ``cellframe activity-predict MODEL LIBRARY``."""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cellframe.activity.library import open_library, predict_library
from cellframe.activity.saved import UnparsedLibraryWarning, load_activity_model
from cellframe.cli import main
from cellframe.errors import (
    InputNotFoundError,
    InvalidInputError,
    MissingColumnsError,
    UnknownFormatError,
)
from cellframe.store import Store
from tests.activity._screens import scaffold_screen

CONFIG = """
[data]
matrix = "challenge.csv"
compound_column = "ID"

[split]
column = "set"

[modalities]
best = {{ kind = "ensemble", members = ["rf-tuned", "lgbm", "dmpnn-desc"] }}

[model]
max_epochs = 2
warmup_epochs = 1
patience = 2
hidden_sizes = [16]
encoder_hidden = 16
tree_params = {{ lgbm = {{ n_estimators = 20, min_child_samples = 3 }}, rf = {{ n_estimators = 10 }} }}
tree_grid = {{ rf = {{ min_samples_leaf = [1] }}, lgbm = {{ num_leaves = [7] }} }}

[output]
prefix = "tox"
{output}
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A held-out run of the CLI with [output] model = "tox_model", and its store."""
    root = tmp_path_factory.mktemp("predict")
    scaffold_screen().write_csv(root / "challenge.csv")
    (root / "heldout.toml").write_text(CONFIG.format(output='model = "tox_model"'))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["activity", str(root / "heldout.toml"), "--store", str(root / "s.duckdb"),
                     "--quiet"])  # fmt: skip
    assert code == 0
    return root


def test_cli_saves_then_predicts_the_runs_test_part_exactly(trained, capsys):
    root = trained
    assert (root / "tox_model" / "model.json").is_file()  # from [output] model, beside the config
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["activity-predict", str(root / "tox_model"), str(root / "challenge.csv"),
                     "--store", str(root / "s.duckdb"), "--chunk-size", "7"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "predicted 60 compounds x 2 assays = 120 rows into activity_library_predictions" in out
    with Store(root / "s.duckdb", read_only=True) as store:
        table = store.read("activity_library_predictions")
        ran = store.read("tox_predictions")
        assert store.provenance("activity_library_predictions")["step"].to_list() == [
            "activity.predict_library"
        ]
    # The ID column is kept as the compound, every compound x assay once, in file order.
    assert table["compound"].to_list() == [f"T{i:03d}" for i in range(60) for _ in range(2)]
    assert table["assay"].to_list() == ["A", "B"] * 60
    cols = ["probability", "member_spread", "train_similarity", "in_domain"]
    joined = ran.select("compound", "assay", *cols).join(
        table, on=["compound", "assay"], how="left", suffix="_library"
    )
    assert joined.height == ran.height == 24  # 12 test compounds x 2 assays
    for c in cols:
        assert (joined[c] == joined[f"{c}_library"]).all(), c
    # Training compounds are in the domain with similarity 1.
    with Store(root / "s.duckdb", read_only=True) as store:
        part = store.read("tox_partition")
    train = set(part.filter(pl.col("part") == 0)["compound"])
    own = table.filter(pl.col("compound").is_in(train))
    assert (own["train_similarity"] == 1.0).all() and own["in_domain"].all()


def test_chunks_give_the_same_table_as_one_call(trained, tmp_path):
    root = trained
    model = load_activity_model(root / "tox_model", device="cpu")
    frame = pl.read_csv(root / "challenge.csv")
    whole = model.predict(frame["smiles"].to_list(), compounds=frame["ID"].to_list())
    with Store(tmp_path / "p.duckdb") as store:
        report = predict_library(model, root / "challenge.csv", store, chunk_size=7, progress=False)
        chunked = store.read("activity_library_predictions")
    assert (report.n_compounds, report.n_unparsed, report.n_rows) == (60, 0, 120)
    assert_frame_equal(chunked, whole, check_exact=True)
    stages = set(report.timings)
    assert {"parse SMILES", "RDKit descriptors", "forward: lgbm", "write (DuckDB)"} <= stages


def test_a_descriptor_cache_gives_the_same_predictions_and_is_reused(trained, tmp_path, capsys):
    root = trained
    cache = tmp_path / "library_descriptors.parquet"
    model = load_activity_model(root / "tox_model", device="cpu")
    smiles = pl.read_csv(root / "challenge.csv")["smiles"].to_list()
    plain = model.predict(smiles)
    cached = load_activity_model(root / "tox_model", device="cpu", descriptor_cache=cache)
    first = cached.predict(smiles)
    assert pl.read_parquet(cache).height == 60  # every compound's descriptors kept
    again = cached.predict(smiles)
    assert_frame_equal(again, first, check_exact=True)  # read back exactly
    # From canonical SMILES: equal to the uncached run up to float rounding.
    np.testing.assert_allclose(
        first["probability"].to_numpy(), plain["probability"].to_numpy(), rtol=0, atol=1e-9
    )
    # The command line takes the same cache.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["activity-predict", str(root / "tox_model"), str(root / "challenge.csv"),
                     "--store", str(tmp_path / "c.duckdb"), "--descriptors-cache", str(cache),
                     "--quiet"])  # fmt: skip
    assert code == 0
    with Store(tmp_path / "c.duckdb", read_only=True) as store:
        table = store.read("activity_library_predictions")
    assert (table["probability"] == first["probability"]).all()


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet", "smi"])
def test_library_formats(trained, tmp_path, fmt):
    model = load_activity_model(trained / "tox_model", device="cpu")
    ids = ["x1", "x2", "x3", "x4"]
    smiles = ["Oc1ccccc1", "C1CC", "c1ccncc1CC", ""]
    path = tmp_path / f"lib.{fmt}"
    frame = pl.DataFrame({"Compound_ID": ids, "canonical_smiles": smiles, "batch": [1, 2, 3, 4]})
    if fmt == "csv":
        frame.write_csv(path)
    elif fmt == "tsv":
        frame.write_csv(path, separator="\t")
    elif fmt == "parquet":
        frame.with_columns(pl.Series("Compound_ID", [11, 12, 13, 14])).write_parquet(path)
        ids = ["11", "12", "13", "14"]
    else:  # .smi: a header, a comment, a name-less line, no empty SMILES possible
        path.write_text("smiles name\nOc1ccccc1 x1\n# a comment\nC1CC x2\nc1ccncc1CC\n")
        ids, smiles = ["x1", "x2", "line 5"], smiles[:3]
    with Store(tmp_path / "p.duckdb") as store:
        with pytest.warns(UnparsedLibraryWarning) as caught:
            report = predict_library(model, path, store, progress=False)
        table = store.read("activity_library_predictions")
    n_bad = 1 if fmt == "smi" else 2
    assert f"{n_bad} of {len(ids)} compounds" in str(caught[0].message)
    line = {"csv": "line 3", "tsv": "line 3", "parquet": "row 2", "smi": "line 4"}[fmt]
    assert f"{line} 'C1CC'" in str(caught[0].message)
    assert report.n_unparsed == n_bad
    assert table["compound"].unique(maintain_order=True).to_list() == ids
    expected = model.predict(["Oc1ccccc1", "c1ccncc1CC"])["probability"].to_list()
    good = table.filter(pl.col("smiles").is_in(["Oc1ccccc1", "c1ccncc1CC"]))
    assert good["probability"].to_list() == expected
    assert table["probability"].null_count() == 2 * n_bad


def test_library_errors(tmp_path):
    with pytest.raises(InputNotFoundError, match="no compound library at"):
        open_library(tmp_path / "absent.csv")
    (tmp_path / "lib.xlsx").write_text("x")
    with pytest.raises(UnknownFormatError, match=r"unknown library format '\.xlsx'"):
        open_library(tmp_path / "lib.xlsx")
    (tmp_path / "lib.csv").write_text("ID,structure\nA,CCO\n")
    with pytest.raises(MissingColumnsError, match=r"no SMILES column among \['ID', 'structure'\]"):
        open_library(tmp_path / "lib.csv")
    lib = open_library(tmp_path / "lib.csv", smiles_column="structure")
    assert (lib.smiles_column, lib.id_column) == ("structure", "ID")  # the valid control
    with pytest.raises(MissingColumnsError, match="Name"):
        open_library(tmp_path / "lib.csv", smiles_column="structure", id_column="Name")
    with pytest.raises(InvalidInputError, match=r"a \.smi file has no named columns"):
        (tmp_path / "lib.smi").write_text("CCO a\n")
        open_library(tmp_path / "lib.smi", smiles_column="x")


def test_a_bad_library_leaves_the_store_unchanged(trained, tmp_path, capsys):
    root = trained
    store_path = tmp_path / "p.duckdb"
    with Store(store_path) as store:
        store.write("activity_library_predictions", pl.DataFrame({"kept": [1, 2]}))
    bad = tmp_path / "bad.csv"
    bad.write_text("ID,smiles\n" + "".join(f"c{i},CCO\n" for i in range(30)) + "c30,CCO,extra\n")
    code = main(["activity-predict", str(root / "tox_model"), str(bad), "--store", str(store_path),
                 "--chunk-size", "10", "--quiet"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "bad.csv: cannot be read as csv" in err
    with Store(store_path, read_only=True) as store:
        assert store.read("activity_library_predictions")["kept"].to_list() == [1, 2]
    # A missing model and a missing library are one line each, and nothing is written.
    for args, message in (
        ([str(tmp_path / "nomodel"), str(bad)], "no activity model at"),
        ([str(root / "tox_model"), str(tmp_path / "none.csv")], "no compound library at"),
    ):
        code = main(["activity-predict", *args, "--store", str(tmp_path / "new.duckdb")])
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "new.duckdb").exists()


def test_save_model_needs_a_held_out_split_and_a_name(trained, tmp_path, capsys):
    root = trained
    fold = tmp_path / "fold.toml"
    fold.write_text(f'[data]\nmatrix = "{root / "challenge.csv"}"\ncompound_column = "ID"\n')
    code = main(["activity", str(fold), "--store", str(tmp_path / "s.duckdb"), "--save-model",
                 str(tmp_path / "m")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "saving a model needs a held-out split" in err
    two = tmp_path / "two.toml"
    two.write_text(
        CONFIG.format(output="").replace("challenge.csv", str(root / "challenge.csv"))
        + '[modalities.rf]\nkind = "rf"\n'
    )
    code = main(["activity", str(two), "--store", str(tmp_path / "s.duckdb"), "--save-model",
                 str(tmp_path / "m")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "name the one to save (--save-model-name NAME" in err
    assert not (tmp_path / "s.duckdb").exists()  # refused before the store opens
    assert not (tmp_path / "m").exists()
