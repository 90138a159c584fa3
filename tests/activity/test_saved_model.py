"""A saved activity model predicts new SMILES exactly as its held-out run predicted its test part."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cellframe.activity import train_holdout
from cellframe.activity.ensemble import CalibratedEnsemble
from cellframe.activity.holdout import Ensemble, WithDescriptors
from cellframe.activity.matrix import AssayMatrix
from cellframe.activity.model import MultitaskClassifier, RandomForestBaseline
from cellframe.activity.saved import (
    PREDICTION_SCHEMA,
    ActivityModel,
    SavedModelVersionWarning,
    UnparsedLibraryWarning,
    load_activity_model,
    save_activity_model,
)
from cellframe.activity.trees import TreeBaseline
from cellframe.errors import (
    InputNotFoundError,
    InvalidInputError,
    SavedModelError,
    SavedModelVersionError,
)

CORES = ["c1ccccc1", "c1ccncc1", "C1CCCCC1", "c1ccc2ccccc2c1", "C1CCNCC1", "c1ccsc1"]
TAILS = ["O", "N", "OC(=O)", "Cl", "CC", "CO", "F", "N#C", "S", "O=CN", "OCC", "Br", "CCN"]


def _matrix() -> AssayMatrix:
    """78 compounds, 2 assays tied to their tails; SMILES as written (no canonical binaries)."""
    smiles = [f"{t}{c}" for c in CORES for t in TAILS]
    tail = np.tile(np.arange(len(TAILS)), len(CORES))
    core = np.repeat(np.arange(len(CORES)), len(TAILS))
    values = np.stack([(tail % 2 == 0), (tail + core) % 3 == 0], axis=1).astype(np.float32)
    values[np.arange(len(smiles)) % 7 == 3, 1] = np.nan  # some readouts missing
    return AssayMatrix(
        compounds=[f"T{i:03d}" for i in range(len(smiles))],
        assays=["A", "B"],
        values=values,
        smiles=smiles,
    )


def _network(encoder: str, seed: int = 0) -> MultitaskClassifier:
    return MultitaskClassifier(
        encoder=encoder, hidden_sizes=(16,), encoder_hidden=16, max_epochs=2, patience=2,
        seed=seed, lr_schedule="noam", warmup_epochs=1,
    )  # fmt: skip


def _models() -> dict:
    """Every kind a held-out run trains, small enough for seconds."""
    return {
        "rf": RandomForestBaseline(n_estimators=10),
        "rf-tuned": TreeBaseline(
            "rf", params={"n_estimators": 10}, grid={"min_samples_leaf": [1, 3]}
        ),
        "lgbm": TreeBaseline("lgbm", params={"n_estimators": 20, "min_child_samples": 3}),
        "morgan": _network("ffn"),
        "morgan-desc": WithDescriptors(_network("ffn")),
        "dmpnn-seeds": Ensemble([_network("dmpnn", 0), _network("dmpnn", 1)]),
        "ensemble": CalibratedEnsemble(
            {
                "rf-tuned": TreeBaseline("rf", params={"n_estimators": 10}, grid={}),
                "lgbm": TreeBaseline("lgbm", params={"n_estimators": 20, "min_child_samples": 3}),
                "dmpnn-desc": WithDescriptors(_network("dmpnn")),
            }
        ),
    }


@pytest.fixture(scope="module")
def run():
    matrix = _matrix()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = train_holdout(matrix, _models(), split="random", fractions=(0.6, 0.2, 0.2), seed=1)
    test = np.flatnonzero(result.partition == 2)
    return matrix, result, test


@pytest.fixture(scope="module")
def saved(run, tmp_path_factory):
    """name -> (in-memory model, loaded model) for every model of the run."""
    _, result, _ = run
    root = tmp_path_factory.mktemp("models")
    out = {}
    for name in result.fitted:
        memory = ActivityModel.from_holdout(result, name)
        memory.save(root / name)
        out[name] = (memory, load_activity_model(root / name, device="cpu"))
    return root, out


@pytest.mark.parametrize(
    "name", ["rf", "rf-tuned", "lgbm", "morgan", "morgan-desc", "dmpnn-seeds", "ensemble"]
)
def test_loaded_model_predicts_the_runs_test_part_bit_for_bit(run, saved, name):
    matrix, result, test = run
    memory, loaded = saved[1][name]
    smiles = [matrix.smiles[i] for i in test]
    ids = [matrix.compounds[i] for i in test]
    in_memory = memory.predict(smiles, compounds=ids)
    from_disk = loaded.predict(smiles, compounds=ids)
    assert from_disk.schema == pl.Schema(PREDICTION_SCHEMA)
    assert from_disk.height == len(test) * 2
    assert_frame_equal(from_disk, in_memory, check_exact=True)
    # The run's own test predictions (observed readouts only): every column equal.
    cols = ["probability", "member_spread", "train_similarity", "in_domain"]
    ran = result.predictions.filter(pl.col("model") == name).select("compound", "assay", *cols)
    joined = ran.join(from_disk, on=["compound", "assay"], how="left", suffix="_loaded")
    assert joined.height == ran.height > 0
    for c in cols:
        assert joined[f"{c}_loaded"].null_count() == 0
        assert (joined[c] == joined[f"{c}_loaded"]).all(), c
    spread = from_disk["member_spread"]
    averaged = name == "dmpnn-seeds" or (name == "ensemble" and len(loaded.model.members_) > 1)
    if averaged:  # several members averaged: they disagree somewhere
        assert (spread >= 0).all() and (spread > 0).any()
    else:  # one model: no spread
        assert (spread == 0).all()
    assert memory.provenance["validation_auroc"] == pytest.approx(result.validation_auroc[name])


def test_spread_is_the_members_std_and_domain_the_nearest_neighbour(run, saved):
    """Hand-check the two uncertainty columns against their definitions."""
    from rdkit import DataStructs
    from rdkit.Chem import AllChem, MolFromSmiles

    matrix, result, test = run
    _, loaded = saved[1]["dmpnn-seeds"]
    smiles = [matrix.smiles[i] for i in test[:5]]
    table = loaded.predict(smiles)
    x = loaded._inputs("graphs", [MolFromSmiles(s) for s in smiles], None)
    members = np.stack([m.predict_proba(x) for m in loaded.model.members]).astype(np.float64)
    np.testing.assert_allclose(
        table["member_spread"].to_numpy().reshape(5, 2), members.std(axis=0), atol=1e-7
    )
    train = [matrix.smiles[i] for i in np.flatnonzero(result.partition == 0)]
    fp = lambda s: AllChem.GetMorganFingerprintAsBitVect(MolFromSmiles(s), 2, nBits=2048)  # noqa: E731
    ref = [fp(s) for s in train]
    expected = [max(DataStructs.BulkTanimotoSimilarity(fp(s), ref)) for s in smiles]
    got = table.unique("compound", maintain_order=True)["train_similarity"].to_list()
    assert got == expected
    assert table["in_domain"].to_list() == [s >= 0.3 for s in np.repeat(expected, 2)]


def test_ensemble_keeps_only_its_chosen_members(run, saved):
    _, result, _ = run
    root, models = saved
    doc = json.loads((root / "ensemble" / "model.json").read_text())
    spec = doc["model"]
    chosen = set(models["ensemble"][0].model.members_)
    assert {n for n, s in spec["members"].items() if s is not None} == chosen
    assert set(spec["names"]) == {"rf-tuned", "lgbm", "dmpnn-desc"}
    calib = models["ensemble"][1].model.calibration_
    for n, ab in models["ensemble"][0].model.calibration_.items():
        np.testing.assert_array_equal(calib[n], ab)  # Platt (a, b) exactly, through JSON
    facts = doc["provenance"]
    assert (facts["split"], facts["n_train"] + facts["n_validation"] + facts["n_test"]) == (
        "random",
        78,
    )
    mean_test = result.metrics.filter(pl.col("model") == "ensemble")["auroc"].mean()
    assert facts["test_auroc"] == pytest.approx(mean_test)
    # No pickle anywhere: safetensors, skops (scikit-learn's tree type only), LightGBM text.
    files = [p for p in (root / "ensemble").rglob("*") if p.is_file()]
    assert all(p.name.endswith((".json", ".safetensors", ".txt", ".skops")) for p in files)
    assert set(doc["files"]) == {str(p.relative_to(root / "ensemble")) for p in files} - {
        "model.json"
    }
    import skops.io

    for p in (root / "rf-tuned" / "members").glob("*.skops"):
        assert skops.io.get_untrusted_types(file=str(p)) == ["sklearn.tree._tree.Tree"]


def test_unparseable_smiles_keep_their_rows_with_nulls(saved):
    _, loaded = saved[1]["ensemble"]
    with pytest.warns(UnparsedLibraryWarning, match=r"2 of 4 compounds .*'C1CC'"):
        table = loaded.predict(["CCO", "C1CC", None, "c1ccccc1O"], compounds=["a", "b", "c", "d"])
    assert table["compound"].to_list() == ["a", "a", "b", "b", "c", "c", "d", "d"]
    bad = table.filter(pl.col("compound").is_in(["b", "c"]))
    assert bad.select(pl.all().exclude("compound", "smiles", "assay")).null_count().row(0) == (
        4, 4, 4, 4,
    )  # fmt: skip
    alone = loaded.predict(["CCO", "c1ccccc1O"], compounds=["a", "d"])
    assert_frame_equal(table.filter(pl.col("compound").is_in(["a", "d"])), alone, check_exact=True)


def test_save_is_atomic_and_never_overwrites_other_things(run, tmp_path, monkeypatch):
    _, result, _ = run
    with pytest.raises(SavedModelError, match="does not exist; create it"):
        save_activity_model(result, tmp_path / "no" / "model", name="rf")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("mine")
    with pytest.raises(SavedModelError, match="is not a cellframe activity model"):
        save_activity_model(result, tmp_path / "notes", name="rf")
    assert (tmp_path / "notes" / "a.txt").read_text() == "mine"
    with pytest.raises(InvalidInputError, match="name the one to keep"):
        save_activity_model(result, tmp_path / "m")
    # An error while writing leaves nothing behind; an older model stays whole.
    save_activity_model(result, tmp_path / "m", name="rf")
    before = (tmp_path / "m" / "model.json").read_text()
    import cellframe.activity.saved as saved_module

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(saved_module, "_model_spec", broken)
    with pytest.raises(OSError, match="disk full"):
        save_activity_model(result, tmp_path / "m", name="lgbm")
    with pytest.raises(OSError, match="disk full"):
        save_activity_model(result, tmp_path / "new", name="lgbm")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "notes"]
    assert (tmp_path / "m" / "model.json").read_text() == before
    monkeypatch.undo()
    # Saving over a model replaces it (the valid case).
    save_activity_model(result, tmp_path / "m", name="lgbm")
    assert json.loads((tmp_path / "m" / "model.json").read_text())["name"] == "lgbm"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "notes"]


def _copy(saved, tmp_path, name="lgbm") -> Path:
    import shutil

    root, _ = saved
    target = tmp_path / name
    shutil.copytree(root / name, target)
    return target


def _edit_json(folder: Path, **changes) -> None:
    doc = json.loads((folder / "model.json").read_text())
    doc.update(changes)
    (folder / "model.json").write_text(json.dumps(doc))


def test_loading_errors_name_the_file_and_the_fix(saved, tmp_path):
    with pytest.raises(InputNotFoundError, match=r"no activity model at .*--save-model DIR"):
        load_activity_model(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SavedModelError, match=r"empty holds no model.json"):
        load_activity_model(tmp_path / "empty")
    model = _copy(saved, tmp_path)
    member = next((model / "members").glob("*.lgbm.txt"))
    member.write_text(member.read_text().replace("tree", "tr3e", 1))
    with pytest.raises(
        SavedModelError, match=rf"{member.name}: its SHA-256 differs.*save it again"
    ):
        load_activity_model(model)
    member.unlink()
    with pytest.raises(SavedModelError, match=rf"{member.name}: missing"):
        load_activity_model(model)
    model = _copy(saved, tmp_path, "rf")
    (model / "model.json").write_text('{"format": "cellframe-activity-model", ')
    with pytest.raises(SavedModelError, match=r"model\.json: not valid JSON"):
        load_activity_model(model)


def test_another_version_is_refused_and_other_libraries_warned(saved, tmp_path):
    model = _copy(saved, tmp_path)
    _edit_json(model, format_version=99)
    with pytest.raises(SavedModelVersionError, match=r"format version 99.*retrain"):
        load_activity_model(model)
    _edit_json(model, format_version=1, cellframe_version="0.0.1")
    with pytest.raises(SavedModelVersionError, match=r"saved by cellframe '0.0.1'.*retrain"):
        load_activity_model(model)
    import cellframe

    doc = json.loads((model / "model.json").read_text())
    versions = {**doc["versions"], "lightgbm": "3.0.0"}
    _edit_json(model, cellframe_version=cellframe.__version__, versions=versions)
    with pytest.warns(SavedModelVersionWarning, match=r"lightgbm 3.0.0 -> "):
        loaded = load_activity_model(model)
    # Still the same model (the control: an unusual but valid directory loads).
    _, reference = saved[1]["lgbm"]
    assert_frame_equal(loaded.predict(["CCO"]), reference.predict(["CCO"]), check_exact=True)
