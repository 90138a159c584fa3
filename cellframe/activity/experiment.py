"""An activity experiment end to end: clean, featurize, split, train, evaluate, fuse.

The thin pipeline over the activity functions that ``cellframe activity`` runs
from a TOML file (see docs/activity.md). Every result is a Polars frame written
to the store with provenance, under ``<prefix>_<name>``:

``cleaning`` (report), ``readouts`` (clean matrix, long), ``folds``,
``predictions``, ``hyperparameters``, ``fold_metrics``, ``assay_metrics``,
``summary``.
"""

from __future__ import annotations

import tomllib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from cellframe.activity.columns import COMPOUND, FOLD, SMILES
from cellframe.activity.config_checks import (
    UnusedSettingWarning,
    did_you_mean,
    needs_descriptors,
    needs_validation_part,
    validate_config,
)
from cellframe.errors import InvalidInputError

__all__ = [
    "EmptyFoldsWarning",
    "ExperimentConfig",
    "ExperimentResult",
    "UnusedSettingWarning",
    "check_save_request",
    "load_config",
    "run_experiment",
    "validate_config",
]


@dataclass
class ExperimentConfig:
    """Settings of an activity experiment (the TOML file's tables, see docs/activity.md).

    Attributes
    ----------
    matrix : str
        Assay matrix file (wide/long CSV or Parquet, or ``.mtx``).
    matrix_options : dict
        Keyword arguments of :func:`read_assay_matrix` (``format``,
        ``compound_column``, ``smiles_column``, ``on_conflict``, ...).
    clean : dict
        Keyword arguments of :func:`clean_assay_matrix`; ``enabled = false`` skips it.
    split : dict
        Folds: ``method`` (scaffold / kmeans / random), ``n_folds``, ``seed`` and,
        for k-means, ``features`` (a modality name). One held-out split:
        ``column``, ``files`` or ``holdout = true`` (see holdout_experiment).
    modalities : dict
        Name -> ``{"kind": ...}`` for chemical structure (a kind of
        :data:`~cellframe.activity.holdout_experiment.HOLDOUT_KINDS`, with
        ``descriptors``, ``ensemble``; ``radius`` and ``n_bits`` for a plain
        ``morgan``/``rf``), or ``{"table": store table}`` / ``{"path": file}``
        for profiles (MO, GE), with optional ``on_missing`` (``"drop"``/``"error"``)
        and ``compound_column``.
    model : dict
        :class:`MultitaskClassifier` parameters plus ``grid`` (a mapping; empty
        for no search), ``n_estimators`` for forests, ``tree_params`` and
        ``tree_grid`` (per tree kind, ``rf`` / ``lgbm``).
    fusion : dict
        ``early``, ``late``, ``retrospective``: lists of modality lists.
    prefix : str
        Table name prefix.
    base_dir : Path
        Folder relative paths are resolved against (the TOML file's folder).
    output : dict
        ``[output]`` settings other than ``prefix`` (:func:`validate_config`
        names any unknown one).
    """

    matrix: str
    matrix_options: dict[str, Any] = field(default_factory=dict)
    clean: dict[str, Any] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=lambda: {"method": "scaffold"})
    modalities: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {"CS": {"kind": "morgan"}}
    )
    model: dict[str, Any] = field(default_factory=dict)
    fusion: dict[str, list[list[str]]] = field(default_factory=dict)
    prefix: str = "activity"
    base_dir: Path = field(default_factory=Path.cwd)
    output: dict[str, Any] = field(default_factory=dict)

    def resolve(self, path: str) -> Path:
        """A path from the config, relative to the config's folder."""
        p = Path(path)
        return p if p.is_absolute() else self.base_dir / p


#: The model of a held-out split whose config has no ``[modalities]``: the
#: :class:`~cellframe.activity.CalibratedEnsemble` of rf-tuned, LightGBM and
#: dmpnn-desc. It beat each of them on the validation and the test parts of
#: Tox21's random and scaffold splits, on the mean over the seeds measured
#: (docs/activity.md, "The default model").
DEFAULT_HOLDOUT_MODALITIES = {"ensemble": {"kind": "ensemble"}}


#: The tables of an experiment TOML file.
CONFIG_TABLES = ("data", "clean", "split", "modalities", "model", "fusion", "output")

#: Share of each fold's training compounds held out as its inner validation part.
INNER_VALIDATION_FRACTION = 0.1


class EmptyFoldsWarning(UserWarning):
    """The split filled fewer folds than ``[split] n_folds`` asked for."""


def load_config(path: str | Path) -> ExperimentConfig:
    """Read an :class:`ExperimentConfig` from a TOML file.

    Raises
    ------
    FileNotFoundError
        If the file is absent.
    InvalidInputError
        If it is not valid TOML, lacks ``[data] matrix``, has unknown tables, or
        a table (or a modality) that is not a table.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no experiment config at {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInputError(f"{path} is not valid TOML: {exc}") from exc
    unknown = sorted(set(raw) - set(CONFIG_TABLES))
    if unknown:
        raise InvalidInputError(
            f"{path}: unknown table(s) {unknown}; valid: {sorted(CONFIG_TABLES)}"
            + did_you_mean(unknown, CONFIG_TABLES)
        )
    for key, value in raw.items():
        if not isinstance(value, dict):
            raise InvalidInputError(
                f"{path}: {key} = {value!r} is not a table; write [{key}] and its "
                "settings as key = value lines below it"
            )
    from cellframe.activity.holdout_experiment import is_holdout

    data = dict(raw.get("data", {}))
    split = dict(raw.get("split", {"method": "scaffold"}))
    if "matrix" not in data and "files" not in split:
        raise InvalidInputError(
            f'{path}: [data] needs matrix = "<assay matrix file>" (or [split] files = '
            '{ train = "...", validation = "...", test = "..." })'
        )
    matrix = data.pop("matrix", "")
    if not isinstance(matrix, str):
        raise InvalidInputError(
            f'{path}: [data] matrix = {matrix!r}; give the file as a string, matrix = "tox21.csv"'
        )
    # A held-out split (often a benchmark's own) is cleaned only when [clean] says so.
    clean = dict(raw.get("clean", {"enabled": False} if is_holdout(split) else {}))
    # Without [modalities]: the default model (a held-out split: the calibrated
    # ensemble, docs/activity.md "The default model"; folds: the Morgan network).
    default_models = DEFAULT_HOLDOUT_MODALITIES if is_holdout(split) else {"CS": {"kind": "morgan"}}
    modalities = raw.get("modalities", default_models)
    for name, spec in modalities.items():
        if not isinstance(spec, dict):
            raise InvalidInputError(
                f"{path}: [modalities] {name} = {spec!r} is not a table; write e.g. "
                f'{name} = {{ kind = "morgan" }} or {name} = {{ table = "treatments" }}'
            )
    prefix = raw.get("output", {}).get("prefix", "activity")
    return ExperimentConfig(
        matrix=matrix,
        matrix_options=data,
        clean=clean,
        split=split,
        modalities={k: dict(v) for k, v in modalities.items()},
        model=dict(raw.get("model", {})),
        fusion=dict(raw.get("fusion", {})),
        prefix=prefix,
        base_dir=path.resolve().parent,
        output={k: v for k, v in raw.get("output", {}).items() if k != "prefix"},
    )


@dataclass
class ExperimentResult:
    """Every table of an experiment, by short name (also written to the store)."""

    tables: dict[str, pl.DataFrame]

    def __getitem__(self, name: str) -> pl.DataFrame:
        return self.tables[name]


def _load_profiles(
    spec: Mapping[str, Any], config: ExperimentConfig, store: Any, name: str
) -> pl.DataFrame:
    if "table" in spec:
        frame = store.read(spec["table"])
    else:
        p = config.resolve(spec["path"])
        if not p.exists():
            raise FileNotFoundError(
                f"modality {name!r}: path = {spec['path']!r}: no profile file at {p}; give the "
                "profile table's file (Parquet or CSV), relative to the config's folder"
            )
        frame = (
            pl.read_parquet(p, glob=False) if p.suffix == ".parquet" else pl.read_csv(p, glob=False)
        )
    column = spec.get("compound_column", COMPOUND)
    if column not in frame.columns:
        from cellframe.errors import MissingColumnsError

        where = spec.get("table") or str(config.resolve(spec["path"]))
        raise MissingColumnsError(
            where, [column], f"modality {name!r}: set compound_column to the column of compound IDs"
        )
    if column != COMPOUND:
        frame = frame.rename({column: COMPOUND})
    return frame.with_columns(pl.col(COMPOUND).cast(pl.String))


def check_save_request(
    config: ExperimentConfig, save_model: str | Path | None, model_name: str | None
) -> None:
    """Refuse, before any training, a model that cannot be saved as asked.

    ``cellframe activity`` calls it before it opens the store; :func:`run_experiment`
    too, so a Python caller gets the same refusals.

    Parameters
    ----------
    config : ExperimentConfig
    save_model : str, Path or None
        Where the model goes; None saves nothing (nothing is checked).
    model_name : str or None
        Which ``[modalities]`` model; needed when there are several.

    Raises
    ------
    InvalidInputError
        On a fold split (one model per fold), or a missing or unknown ``model_name``.
    SavedModelError
        If ``save_model`` cannot be written.
    """
    from cellframe.activity.holdout_experiment import check_save_model, holdout_models, is_holdout

    if save_model is None:
        return
    if not is_holdout(config.split):
        raise InvalidInputError(
            "saving a model needs a held-out split ([split] column = ..., files = ..., or "
            f"holdout = true): a fold split trains one model per fold (save_model = {str(save_model)!r})"
        )
    check_save_model(holdout_models(config.modalities, config.model), save_model, model_name)


def run_experiment(
    config: ExperimentConfig,
    store: Any,
    *,
    progress: bool = True,
    save_model: str | Path | None = None,
    model_name: str | None = None,
) -> ExperimentResult:
    """Run the configured experiment and write its tables to ``store``.

    Everything is computed first; the tables are then written in one store
    transaction (a held-out split's too), so an error (a bad setting, a model
    that fails on a fold, a failing write) leaves the store as it was.

    On folds, ``morgan``, ``dmpnn`` and ``rf`` modalities (and profile tables)
    are cross-validated by :func:`~cellframe.activity.cross_validate` (networks
    searched over ``[model] grid`` on an inner validation split); ``rf-tuned``,
    ``lgbm``, ``ensemble``, ``descriptors = true`` and ``ensemble = N`` need a
    validation part and are trained fold by fold as on a held-out split, with
    the same inner split (10 % of each fold's training compounds) as their
    validation part (:func:`~cellframe.activity.crossval.cross_validate_with_validation`).

    Parameters
    ----------
    config : ExperimentConfig
    store : cellframe.store.Store
    progress : bool, default True
    save_model : str or Path, optional
        On a held-out split, keep the fitted model in this directory
        (:func:`~cellframe.activity.holdout_experiment.run_holdout_experiment`);
        refused on folds, which fit one model per fold.
    model_name : str, optional
        Which ``[modalities]`` model to keep; needed when there are several.

    Returns
    -------
    ExperimentResult

    Raises
    ------
    InvalidInputError
        On an inconsistent configuration (unknown modality kind, fusion of an
        unknown modality, k-means without features, ...).
    """
    from cellframe.activity.chem import morgan_fingerprints, parse_smiles
    from cellframe.activity.clean import clean_assay_matrix
    from cellframe.activity.crossval import cross_validate, cross_validate_with_validation
    from cellframe.activity.features import align_profiles
    from cellframe.activity.fusion import early_fusion, late_fusion, retrospective_union
    from cellframe.activity.graph import featurize_molecules
    from cellframe.activity.holdout_experiment import (
        holdout_models,
        is_holdout,
        run_holdout_experiment,
    )
    from cellframe.activity.matrix import matrix_options, read_assay_matrix
    from cellframe.activity.metrics import assay_fold_metrics, assay_metrics, summary_table
    from cellframe.activity.model import DEFAULT_GRID, MultitaskClassifier, RandomForestBaseline
    from cellframe.activity.splits import make_folds

    validate_config(config)
    if is_holdout(config.split):
        with store.transaction():  # its tables, written at its end: all of them or none
            return run_holdout_experiment(
                config, store, progress=progress, save_model=save_model, model_name=model_name
            )
    check_save_request(config, save_model, model_name)  # refuses any model on folds
    matrix_path = config.resolve(config.matrix)
    params_common = {"config_matrix": str(matrix_path)}
    tables: dict[str, pl.DataFrame] = {}
    provenance: dict[str, tuple[str, Mapping[str, Any]]] = {}

    def keep(name: str, frame: pl.DataFrame, step: str, parameters: Mapping[str, Any]) -> None:
        tables[name] = frame
        provenance[name] = (f"activity.{step}", {**params_common, **parameters})

    # 1. ingest and clean
    matrix = read_assay_matrix(matrix_path, **matrix_options(config.matrix_options))
    clean_opts = dict(config.clean)
    if clean_opts.pop("enabled", True):
        cleaned = clean_assay_matrix(matrix, **clean_opts)
        matrix = cleaned.matrix
        keep("cleaning", cleaned.report, "clean", clean_opts)
    keep("readouts", matrix.to_long(), "ingest", config.matrix_options)

    # 2. features per modality
    if matrix.smiles is not None:
        mols = parse_smiles(
            matrix.smiles,
            where=str(matrix_path),
            labels=[f"compound {c!r}" for c in matrix.compounds],
            binaries=matrix.binaries,
        )
        ok = np.array([m is not None for m in mols])
        if not ok.all():
            matrix = matrix.subset(compounds=ok)
            mols = [m for m in mols if m is not None]
    else:
        mols = None
    inputs: dict[str, tuple[Any, Any]] = {}  # name -> (matrix subset, inputs)
    model_kind: dict[str, str] = {}
    raw_features: dict[str, pl.DataFrame] = {}
    validated: dict[str, dict[str, Any]] = {}  # trained as held out, fold by fold
    for name, spec in config.modalities.items():
        kind = spec.get("kind")
        if kind is not None:
            if mols is None:
                raise InvalidInputError(
                    f"modality {name!r} ({kind}) needs SMILES in the assay matrix {matrix_path}; "
                    "name its column with [data] smiles_column"
                )
            if needs_validation_part(spec):
                validated[name] = dict(spec)
            elif kind == "dmpnn":
                inputs[name] = (matrix, featurize_molecules(mols))
            else:
                fp = morgan_fingerprints(
                    mols, radius=spec.get("radius", 2), n_bits=spec.get("n_bits", 2048)
                )
                inputs[name] = (matrix, fp.astype(np.float32))
                raw_features[name] = pl.DataFrame(
                    fp.astype(np.float32), schema=[f"morgan_{i}" for i in range(fp.shape[1])]
                ).insert_column(0, pl.Series(COMPOUND, matrix.compounds, pl.String))
            model_kind[name] = kind
        else:
            frame = _load_profiles(spec, config, store, name)
            aligned = align_profiles(
                matrix, frame, on_missing=spec.get("on_missing", "drop"), name=name
            )
            inputs[name] = (aligned.matrix, aligned.features)
            # Early fusion sees only the compounds left after cleaning.
            raw_features[name] = frame.filter(pl.col(COMPOUND).is_in(matrix.compounds))
            model_kind[name] = "ffn"
    for group in config.fusion.get("early", []):
        fused = early_fusion({g: raw_features[g] for g in group})
        name = "early_" + "+".join(group)
        aligned = align_profiles(matrix, fused, name=name)
        inputs[name] = (aligned.matrix, aligned.features)
        model_kind[name] = "ffn"

    # 3. folds on the cleaned matrix (shared by every modality)
    split = dict(config.split)
    method = split.pop("method", "scaffold")
    kmeans_on = split.pop("features", None)
    n_folds = split.get("n_folds", 5)
    if n_folds > matrix.shape[0]:
        raise InvalidInputError(
            f"[split] n_folds = {n_folds}: {matrix_path} has {matrix.shape[0]} usable compounds "
            "after cleaning; lower n_folds"
        )
    features = None
    if method == "kmeans":
        sub, feats = inputs[kmeans_on]
        if sub.shape[0] != matrix.shape[0]:
            raise InvalidInputError(
                f"the k-means split on {kmeans_on} needs a profile for every compound; "
                f"{matrix.shape[0] - sub.shape[0]} are missing"
            )
        features = feats
    folds = make_folds(
        method,
        smiles=matrix.smiles,
        features=features,
        n=matrix.shape[0],
        n_folds=n_folds,
        seed=split.get("seed", 0),
    )
    n_made = len(np.unique(folds))
    if n_made < n_folds:
        warnings.warn(
            f"[split] n_folds = {n_folds}: the {method} split of the {matrix.shape[0]} compounds "
            f"of {matrix_path} fills {n_made} folds only ({n_folds - n_made} empty; e.g. fewer "
            f"scaffolds than folds); cross-validating over {n_made} (lower n_folds to say so)",
            EmptyFoldsWarning,
            stacklevel=2,
        )
    fold_of = dict(zip(matrix.compounds, folds.tolist(), strict=True))
    folds_frame = pl.DataFrame({COMPOUND: matrix.compounds, FOLD: pl.Series(folds, dtype=pl.Int64)})
    if matrix.smiles is not None:
        folds_frame = folds_frame.insert_column(1, pl.Series(SMILES, matrix.smiles, pl.String))
    keep("folds", folds_frame, "split", {"method": method, **split})

    # 4. train and predict
    model_opts = dict(config.model)
    grid = model_opts.pop("grid", DEFAULT_GRID)
    n_estimators = model_opts.pop("n_estimators", 300)
    network_opts = {k: v for k, v in model_opts.items() if k not in ("tree_params", "tree_grid")}
    seed = model_opts.get("seed", 0)
    preds, hypers = [], []
    for name, (sub, x) in inputs.items():
        sub_folds = np.array([fold_of[c] for c in sub.compounds])
        if model_kind[name] == "rf":
            template: Any = RandomForestBaseline(n_estimators=n_estimators, seed=seed)
        else:
            template = MultitaskClassifier(
                **{**network_opts, "encoder": "dmpnn" if model_kind[name] == "dmpnn" else "ffn"}
            )
        result = cross_validate(
            sub, x, sub_folds, model=template, grid=grid or None, modality=name, progress=progress,
            inner_val_fraction=INNER_VALIDATION_FRACTION,
        )  # fmt: skip
        preds.append(result.predictions)
        hypers.append(result.hyperparameters)
    descriptors = None
    if any(needs_descriptors(spec) for spec in validated.values()):
        from cellframe.activity.descriptors import rdkit_descriptors

        descriptors = rdkit_descriptors(mols)  # once; each fold normalizes on its training part
    for name, spec in validated.items():

        def build(k: int, name: str = name, spec: dict[str, Any] = spec) -> Any:
            # seed + k, as cross_validate seeds its networks on fold k
            return holdout_models({name: spec}, {**config.model, "seed": seed + k})[name]

        result = cross_validate_with_validation(
            matrix, build, folds, modality=name, inner_val_fraction=INNER_VALIDATION_FRACTION,
            seed=seed, descriptors=descriptors, progress=progress,
        )  # fmt: skip
        preds.append(result.predictions)
        hypers.append(result.hyperparameters)
    predictions = pl.concat(preds)
    for group in config.fusion.get("late", []):
        predictions = pl.concat([predictions, late_fusion(predictions, group)])
    keep(
        "predictions",
        predictions,
        "predict",
        {"grid": str(grid), **{k: str(v) for k, v in model_opts.items()}},
    )
    keep("hyperparameters", pl.concat(hypers), "hyperparameters", {})

    # 5. evaluate and fuse retrospectively
    fold_metrics = assay_fold_metrics(predictions)
    keep("fold_metrics", fold_metrics, "evaluate", {})
    per_assay = assay_metrics(fold_metrics)
    for group in config.fusion.get("retrospective", []):
        retro = retrospective_union(per_assay, group)
        per_assay = pl.concat(
            [
                per_assay,
                retro.with_columns(
                    pl.lit(None, pl.Int64).alias("n_folds_evaluated"),
                    pl.lit(None, pl.Int64).alias("n_folds_skipped"),
                ).select(per_assay.columns),
            ]
        )
    keep("assay_metrics", per_assay, "evaluate", {"aggregate": "median"})
    keep("summary", summary_table(per_assay), "summarize", {})

    # 6. every table in one transaction: all are written, or (on any error) none
    with store.transaction():
        for name, frame in tables.items():
            step, parameters = provenance[name]
            store.write(
                f"{config.prefix}_{name}",
                frame,
                mode="replace",
                step=step,
                parameters=parameters,
                source=str(matrix_path),
            )
    return ExperimentResult(tables=tables)
