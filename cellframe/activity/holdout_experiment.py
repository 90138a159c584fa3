"""``cellframe activity`` on one train / validation / test split, the user's or a made one.

The held-out counterpart of the cross-validated experiment: chosen when the
config's ``[split]`` names a column of the matrix file (``column = "split"``:
train / validation / test per row), three files (``files = {train = ...,
validation = ..., test = ...}``), or ``holdout = true`` with ``method =
"scaffold"`` or ``"random"`` (``fractions``, ``seed``). Every model of
``[modalities]`` is trained on the training part, tuned or stopped early on the
validation part, and scored once on the test part
(:func:`~cellframe.activity.train_holdout`). Tables written under
``<prefix>_``: ``readouts``, ``partition``, ``predictions`` (with the
applicability domain and the ensemble spread), ``metrics``, ``summary``, and
``ensemble`` (the candidate members of a ``kind = "ensemble"`` model with their
validation ROC-AUC) when there is one.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from cellframe.errors import InvalidChoiceError, InvalidInputError, MissingColumnsError

__all__ = [
    "HOLDOUT_KINDS",
    "PART_NAMES",
    "check_save_model",
    "holdout_models",
    "is_holdout",
    "run_holdout_experiment",
    "split_column_partition",
]

#: Values of a split column (case-insensitive) -> part: 0 train, 1 validation, 2 test.
PART_NAMES: dict[str, int] = {
    "train": 0,
    "training": 0,
    "validation": 1,
    "valid": 1,
    "val": 1,
    "test": 2,
}

#: Model kinds of a held-out experiment (``[modalities] NAME = { kind = ... }``).
HOLDOUT_KINDS = ("morgan", "dmpnn", "rf", "rf-tuned", "lgbm", "ensemble")

#: Members a ``kind = "ensemble"`` may name (``members = [...]``): the kinds
#: above, and ``dmpnn-desc`` / ``morgan-desc`` for a network with descriptors.
ENSEMBLE_MEMBER_KINDS = ("rf", "rf-tuned", "lgbm", "morgan", "morgan-desc", "dmpnn", "dmpnn-desc")

#: Network settings of the ensemble's networks unless ``[model]`` sets them:
#: Chemprop's recipe (docs/activity.md, ``dmpnn-desc``).
ENSEMBLE_NETWORK = {
    "encoder_hidden": 300,
    "encoder_depth": 3,
    "hidden_sizes": (300,),
    "dropout": 0.0,
    "lr": 1e-3,
    "lr_schedule": "noam",
    "warmup_epochs": 2.0,
    "max_epochs": 30,
    "patience": 30,
}

_SPLIT_KEYS = {"column", "files", "holdout", "method", "fractions", "seed"}
_SPEC_KEYS = {"kind", "descriptors", "ensemble"}
_ENSEMBLE_KEYS = {"kind", "members", "per_assay", "ensemble"}


def is_holdout(split: Mapping[str, Any]) -> bool:
    """Whether a ``[split]`` table asks for one train / validation / test split."""
    return bool(split.get("holdout")) or "column" in split or "files" in split


def _n_members(name: str, spec: Mapping[str, Any]) -> int:
    n_members = spec.get("ensemble", 1)
    if isinstance(n_members, bool) or not isinstance(n_members, int) or n_members < 1:
        raise InvalidInputError(
            f"modality {name!r}: ensemble = {n_members!r}; give a whole number of members "
            "(seeds) >= 1"
        )
    return n_members


def holdout_models(modalities: Mapping[str, Mapping[str, Any]], model: Mapping[str, Any]) -> dict:
    """The models of ``[modalities]``, with ``[model]`` settings, by name.

    Parameters
    ----------
    modalities : mapping
        Name -> ``{kind = "morgan" | "dmpnn" | "rf" | "rf-tuned" | "lgbm",
        descriptors = true/false, ensemble = N}`` (``ensemble``: N members with
        seeds ``seed .. seed + N - 1``, averaged, :class:`~cellframe.activity.holdout.Ensemble`). ``morgan``/``dmpnn`` are
        :class:`~cellframe.activity.MultitaskClassifier` networks (with
        ``descriptors = true``: RDKit 2D descriptors CDF-normalized on the training
        part, Chemprop's recipe); ``rf`` is the RandomForest on Morgan bits;
        ``rf-tuned`` and ``lgbm`` the tree baselines
        (:class:`~cellframe.activity.trees.TreeBaseline`: count Morgan +
        descriptors, grid chosen on the validation part). ``{kind = "ensemble",
        members = [...], per_assay = false, ensemble = N}`` is a
        :class:`~cellframe.activity.CalibratedEnsemble` of the named
        members (default ``["rf-tuned", "lgbm", "dmpnn-desc"]``, names from
        :data:`ENSEMBLE_MEMBER_KINDS`), which of them are averaged chosen on
        the validation part; its networks use :data:`ENSEMBLE_NETWORK` unless
        ``[model]`` says otherwise, ``ensemble = N`` averages N seeds of each network.
    model : mapping
        :class:`~cellframe.activity.MultitaskClassifier` parameters (``lr_schedule``,
        ``warmup_epochs``, ``max_epochs``, ``hidden_sizes``, ...), plus
        ``n_estimators`` (``rf``), ``tree_grid`` and ``tree_params`` (per tree
        kind, e.g. ``tree_params = { lgbm = { learning_rate = 0.05 } }``) and ``seed``.

    Returns
    -------
    dict of str to model

    Raises
    ------
    InvalidChoiceError
        On an unknown kind or member (the message lists the valid ones).
    InvalidInputError
        On ``descriptors`` for a kind that cannot take them, a profile modality,
        an unknown key, or a bad network setting.
    """
    from cellframe.activity.ensemble import ENSEMBLE_MEMBERS, CalibratedEnsemble
    from cellframe.activity.holdout import Ensemble, WithDescriptors
    from cellframe.activity.model import MultitaskClassifier, RandomForestBaseline
    from cellframe.activity.trees import TreeBaseline

    opts = dict(model)
    n_estimators = opts.pop("n_estimators", 300)
    tree_grid = opts.pop("tree_grid", {})
    tree_params = opts.pop("tree_params", {})
    opts.pop("grid", None)  # the networks are stopped early, not searched, on one split
    seed = opts.get("seed", 0)

    def build(kind: str, descriptors: bool, k: int, network: Mapping[str, Any]) -> Any:
        """The model of ``kind`` with seed ``seed + k``."""
        if kind in ("morgan", "dmpnn"):
            net = MultitaskClassifier(
                **{**network, "seed": seed + k, "encoder": "dmpnn" if kind == "dmpnn" else "ffn"}
            )
            return WithDescriptors(net) if descriptors else net
        if kind == "rf":
            return RandomForestBaseline(n_estimators=n_estimators, seed=seed + k)
        base = "rf" if kind == "rf-tuned" else "lgbm"
        return TreeBaseline(
            base, params=dict(tree_params.get(base, {})), grid=tree_grid.get(base), seed=seed + k
        )

    def seeds(kind: str, descriptors: bool, n: int, network: Mapping[str, Any]) -> Any:
        if n == 1:
            return build(kind, descriptors, 0, network)
        return Ensemble([build(kind, descriptors, k, network) for k in range(n)])

    out: dict[str, Any] = {}
    for name, spec in modalities.items():
        kind = spec.get("kind")
        if kind is None:
            raise InvalidInputError(
                f"modality {name!r}: a held-out split ([split] column / files / holdout) trains "
                f"chemical-structure models only; give kind = one of {list(HOLDOUT_KINDS)}, or "
                "use a fold split (method = ...) for profile tables"
            )
        if kind not in HOLDOUT_KINDS:
            raise InvalidChoiceError(
                f"modality {name!r}: unknown kind {kind!r}; valid: {list(HOLDOUT_KINDS)}"
            )
        valid_keys = _ENSEMBLE_KEYS if kind == "ensemble" else _SPEC_KEYS
        unknown = sorted(set(spec) - valid_keys)
        if unknown:
            raise InvalidInputError(
                f"modality {name!r}: unknown key(s) {unknown} for kind {kind!r}; valid: "
                f"{', '.join(sorted(valid_keys))}"
            )
        n_members = _n_members(name, spec)
        if kind == "ensemble":
            members = spec.get("members", list(ENSEMBLE_MEMBERS))
            if (
                isinstance(members, str)
                or not isinstance(members, list)
                or not members
                or not all(isinstance(m, str) for m in members)
            ):
                raise InvalidInputError(
                    f"modality {name!r}: members = {members!r}; give a list of kinds, e.g. "
                    f"members = {list(ENSEMBLE_MEMBERS)}"
                )
            bad = [m for m in members if m not in ENSEMBLE_MEMBER_KINDS]
            if bad:
                raise InvalidChoiceError(
                    f"modality {name!r}: unknown ensemble member(s) {bad}; valid: "
                    f"{list(ENSEMBLE_MEMBER_KINDS)}"
                )
            if len(set(members)) != len(members):
                raise InvalidInputError(
                    f"modality {name!r}: members = {members!r} names a kind twice; use "
                    "ensemble = N for several seeds of the networks"
                )
            per_assay = spec.get("per_assay", False)
            if not isinstance(per_assay, bool):
                raise InvalidInputError(
                    f"modality {name!r}: per_assay = {per_assay!r}; use true or false"
                )
            network = {**ENSEMBLE_NETWORK, **opts}
            built = {}
            for m in members:
                base = m.removesuffix("-desc")
                is_net = base in ("morgan", "dmpnn")
                built[m] = seeds(base, m.endswith("-desc"), n_members if is_net else 1, network)
            out[name] = CalibratedEnsemble(built, per_assay=per_assay)
            continue
        descriptors = spec.get("descriptors", False)
        if not isinstance(descriptors, bool):
            raise InvalidInputError(
                f"modality {name!r}: descriptors = {descriptors!r}; use true or false"
            )
        if descriptors and kind not in ("morgan", "dmpnn"):
            raise InvalidInputError(
                f"modality {name!r}: descriptors = true applies to kind morgan or dmpnn; "
                "rf-tuned and lgbm always use them, rf never"
            )
        out[name] = seeds(kind, descriptors, n_members, opts)
    return out


def check_save_model(models: Mapping[str, Any], path: str | Path, name: str | None) -> None:
    """Refuse, before any training, a model that cannot be saved as asked.

    Parameters
    ----------
    models : mapping
        The run's models (:func:`holdout_models`).
    path : str or Path
        Where the model goes (:func:`~cellframe.activity.saved.check_model_path`).
    name : str or None
        Which model; needed when there are several.

    Raises
    ------
    InvalidInputError
        If ``name`` is missing or names no model.
    SavedModelError
        If ``path`` cannot be written.
    """
    from cellframe.activity.saved import check_model_path

    check_model_path(path)
    if name is None and len(models) != 1:
        raise InvalidInputError(
            f"[modalities] trains {len(models)} models ({', '.join(models)}); name the one "
            "to save (--save-model-name NAME, or [output] model_name = NAME)"
        )
    if name is not None and name not in models:
        raise InvalidInputError(
            f"cannot save model {name!r}: [modalities] has {list(models)}; name one of them"
        )


def split_column_partition(path: str | Path, column: str, matrix: Any, options: dict) -> np.ndarray:
    """0 / 1 / 2 per compound of ``matrix`` from a train / validation / test column of its file.

    Parameters
    ----------
    path : str or Path
        The matrix file (CSV/TSV/Parquet) holding the column.
    column : str
        The split column; values (case-insensitive) in :data:`PART_NAMES`.
    matrix : AssayMatrix
        The matrix read from ``path`` (compounds as read, SMILES canonical).
    options : dict
        The :func:`~cellframe.activity.matrix.matrix_options` it was read with.

    Returns
    -------
    numpy.ndarray of int64, shape (n_compounds,)
        Part per compound.

    Raises
    ------
    MissingColumnsError
        If the column is absent.
    InvalidInputError
        On a value that names no part (the message gives the line and the valid
        names), or a compound whose rows name two parts.
    """
    from cellframe.activity.chem import canonical_smiles

    path = Path(path)
    cols = options["columns"]
    id_col = cols.compound or cols.smiles
    if path.name.lower().endswith(".parquet"):
        df = pl.read_parquet(path, glob=False)
    else:
        sep = "\t" if ".tsv" in path.name.lower() else ","
        df = pl.read_csv(path, separator=sep, infer_schema_length=0, glob=False)
    if column not in df.columns:
        raise MissingColumnsError(
            str(path), [column], f'[split] column = "{column}" must be a column of the matrix file'
        )
    raw = df[id_col].cast(pl.String).to_list()
    if cols.compound is None and options.get("canonicalize", True):
        canonical, _ = canonical_smiles(raw)
        keys = [c if c is not None else r for c, r in zip(canonical, raw, strict=True)]
    else:
        keys = raw
    values = df[column].cast(pl.String).str.strip_chars().str.to_lowercase().to_list()
    part_of: dict[str, tuple[int, int]] = {}
    for i, (key, value) in enumerate(zip(keys, values, strict=True)):
        line = i + 2
        if value not in PART_NAMES:
            raise InvalidInputError(
                f"{path}, line {line}, column {column!r}: {df[column][i]!r} names no part; "
                f"use one of {sorted(PART_NAMES)}"
            )
        part = PART_NAMES[value]
        seen = part_of.setdefault(key, (part, line))
        if seen[0] != part:
            raise InvalidInputError(
                f"{path}, column {column!r}: compound {key!r} is in part {seen[0]} on line "
                f"{seen[1]} and part {part} on line {line}; put each compound in one part"
            )
    missing = [c for c in matrix.compounds if c not in part_of]
    if missing:
        raise InvalidInputError(
            f"{path}: {len(missing)} compound(s) of the matrix have no {column!r} value, "
            f"e.g. {missing[0]!r}; give every row a part"
        )
    return np.array([part_of[c][0] for c in matrix.compounds], dtype=np.int64)


def _matrix_from_files(files: Mapping[str, str], config: Any, options: dict) -> tuple[Any, Any]:
    """One matrix from the train / validation / test files, and its partition."""
    from cellframe.activity.matrix import AssayMatrix, read_assay_matrix

    valid = {"train": 0, "validation": 1, "test": 2}
    if not isinstance(files, Mapping) or set(files) != set(valid):
        got = sorted(files) if isinstance(files, Mapping) else files
        raise InvalidInputError(
            f'[split] files = {got!r}: give files = {{ train = "...", validation = "...", '
            'test = "..." }'
        )
    parts = {k: read_assay_matrix(config.resolve(files[k]), **options) for k in valid}
    assays = list(dict.fromkeys(a for m in parts.values() for a in m.assays))
    seen: dict[str, str] = {}
    compounds, smiles, rows, part = [], [], [], []
    for name, m in parts.items():
        for c in m.compounds:
            if c in seen:
                raise InvalidInputError(
                    f"compound {c!r} is in both the {seen[c]} file ({files[seen[c]]}) and the "
                    f"{name} file ({files[name]}); put each compound in one part"
                )
            seen[c] = name
        values = np.full((m.shape[0], len(assays)), np.nan, dtype=np.float32)
        values[:, [assays.index(a) for a in m.assays]] = m.values
        compounds += m.compounds
        smiles += m.smiles or [None] * m.shape[0]
        rows.append(values)
        part += [valid[name]] * m.shape[0]
    has_smiles = all(s is not None for s in smiles)
    matrix = AssayMatrix(
        compounds=compounds,
        assays=assays,
        values=np.vstack(rows),
        smiles=smiles if has_smiles else None,
    )
    return matrix, np.array(part, dtype=np.int64)


def run_holdout_experiment(
    config: Any,
    store: Any,
    *,
    progress: bool = True,
    save_model: str | Path | None = None,
    model_name: str | None = None,
) -> Any:
    """Run a held-out experiment (see the module docstring) and write its tables.

    Parameters
    ----------
    config : ExperimentConfig
    store : cellframe.store.Store
    progress : bool, default True
    save_model : str or Path, optional
        Keep the fitted model in this directory
        (:func:`~cellframe.activity.saved.save_activity_model`: every member,
        the calibration, the descriptor CDF, the training fingerprints and the
        provenance), for ``cellframe activity-predict``. Checked before
        training; written atomically after the tables.
    model_name : str, optional
        Which ``[modalities]`` model to keep; needed when there are several.

    Returns
    -------
    ExperimentResult

    Raises
    ------
    InvalidInputError
        On an inconsistent configuration; nothing is written then.
    SavedModelError
        If ``save_model`` cannot be written (its folder is missing, or it is
        an existing path that is not a cellframe model); checked before training.
    """
    from cellframe.activity.clean import clean_assay_matrix
    from cellframe.activity.experiment import ExperimentResult
    from cellframe.activity.holdout import mean_auroc_per_model, train_holdout
    from cellframe.activity.matrix import matrix_options, read_assay_matrix

    split = dict(config.split)
    unknown = sorted(set(split) - _SPLIT_KEYS)
    if unknown:
        raise InvalidInputError(
            f"[split] unknown key(s) {unknown} for a held-out split; valid: {sorted(_SPLIT_KEYS)}"
        )
    options = matrix_options(config.matrix_options)
    models = holdout_models(config.modalities, config.model)  # checked before any reading
    if save_model is not None:
        check_save_model(models, save_model, model_name)
    from cellframe.activity.holdout import HOLDOUT_SPLITS

    method = split.get("method", "scaffold")
    if "column" not in split and "files" not in split and method not in HOLDOUT_SPLITS:
        raise InvalidChoiceError(
            f"[split] method = {method!r} with holdout = true: valid {sorted(HOLDOUT_SPLITS)} "
            "(or give column = ... or files = ...)"
        )
    if config.fusion:
        raise InvalidInputError(
            "[fusion] needs a fold split (method = ...); a held-out split has no fusion"
        )
    user_part: np.ndarray | None = None
    if "files" in split:
        matrix, user_part = _matrix_from_files(split["files"], config, options)
        source = ", ".join(str(config.resolve(f)) for f in split["files"].values())
    else:
        path = config.resolve(config.matrix)
        source = str(path)
        if "column" in split:
            cols = options["columns"]
            if split["column"] not in cols.identifiers:  # the split column is not an assay
                options["columns"] = type(cols)(
                    **{**cols.__dict__, "identifiers": (*cols.identifiers, split["column"])}
                )
        matrix = read_assay_matrix(path, **options)
        if "column" in split:
            user_part = split_column_partition(path, split["column"], matrix, options)
    tables: dict[str, pl.DataFrame] = {}

    def write(name: str, frame: pl.DataFrame, step: str, parameters: Mapping[str, Any]) -> None:
        tables[name] = frame
        store.write(
            f"{config.prefix}_{name}", frame, mode="replace", step=f"activity.{step}",
            parameters={"config_matrix": source, **parameters}, source=source,
        )  # fmt: skip

    clean_opts = dict(config.clean)
    clean_opts_enabled = clean_opts.pop("enabled", True)
    if clean_opts_enabled:
        before = list(matrix.compounds)
        cleaned = clean_assay_matrix(matrix, **clean_opts)
        matrix = cleaned.matrix
        if user_part is not None:
            index = {c: i for i, c in enumerate(before)}
            user_part = user_part[[index[c] for c in matrix.compounds]]
    if user_part is not None:
        from cellframe.activity.chem import parse_smiles

        if matrix.smiles is None:
            raise InvalidInputError(f"{source}: the models need a SMILES column")
        # train_holdout leaves out the compounds RDKit cannot parse; so does the partition
        mols = parse_smiles(matrix.smiles, warn=False, binaries=matrix.binaries)
        fixed = user_part[[m is not None for m in mols]]

        def partition(smiles: Any, fractions: Any, seed: int) -> np.ndarray:
            return fixed

        partition.__name__ = "column" if "column" in split else "files"
        chosen: Any = partition
    else:
        chosen = method
    fractions = split.get("fractions", (0.8, 0.1, 0.1))
    result = train_holdout(
        matrix, models, split=chosen, fractions=fractions, seed=split.get("seed", 0),
        where=source,
    )  # fmt: skip
    staged = None
    if save_model is not None:
        import dataclasses

        from cellframe.activity.saved import ActivityModel

        config_facts = json.loads(json.dumps(dataclasses.asdict(config), default=str))
        kept = ActivityModel.from_holdout(result, model_name, provenance={"config": config_facts})
        staged = kept._stage_files(Path(save_model))  # renamed into place after the tables
    try:
        # Written only now: an error above leaves the store as it was.
        if clean_opts_enabled:
            write("cleaning", cleaned.report, "clean", clean_opts)
        write("readouts", matrix.to_long(), "ingest", config.matrix_options)
        write(
            "partition",
            pl.DataFrame(
                {
                    "compound": matrix.compounds,
                    "part": pl.Series(result.partition, dtype=pl.Int64),
                }
            ),
            "split",
            {k: str(v) for k, v in split.items()},
        )
        model_params = {k: str(v) for k, v in config.model.items()}
        write("predictions", result.predictions, "predict", model_params)
        write("metrics", result.metrics, "evaluate", {})
        write("summary", mean_auroc_per_model(result.metrics), "summarize", {})
        if result.selection.height:  # the ensemble's candidates, scored on validation only
            write("ensemble", result.selection, "select", {})
    except BaseException:
        if staged is not None:
            shutil.rmtree(staged, ignore_errors=True)
        raise
    if staged is not None:
        from cellframe.activity.saved import _commit

        _commit(staged, Path(save_model))  # type: ignore[arg-type]
    return ExperimentResult(tables=tables)
