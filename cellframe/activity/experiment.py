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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from cellframe.activity.columns import COMPOUND, FOLD, SMILES
from cellframe.errors import InvalidInputError

__all__ = [
    "ExperimentConfig",
    "ExperimentResult",
    "load_config",
    "run_experiment",
    "validate_config",
]

_CS_KINDS = ("morgan", "dmpnn", "rf")


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
        ``method`` (scaffold / kmeans / random), ``n_folds``, ``seed`` and, for
        k-means, ``features`` (a modality name).
    modalities : dict
        Name -> ``{"kind": "morgan" | "dmpnn" | "rf"}`` for chemical structure, or
        ``{"table": store table}`` / ``{"path": file}`` for profiles (MO, GE),
        with optional ``on_missing`` (``"drop"``/``"error"``).
    model : dict
        :class:`MultitaskClassifier` parameters plus ``grid`` (a mapping; empty
        for no search) and ``n_estimators`` for forests.
    fusion : dict
        ``early``, ``late``, ``retrospective``: lists of modality lists.
    prefix : str
        Table name prefix.
    base_dir : Path
        Folder relative paths are resolved against (the TOML file's folder).
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


def load_config(path: str | Path) -> ExperimentConfig:
    """Read an :class:`ExperimentConfig` from a TOML file.

    Raises
    ------
    FileNotFoundError
        If the file is absent.
    InvalidInputError
        If it is not valid TOML, lacks ``[data] matrix`` or has unknown tables.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no experiment config at {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInputError(f"{path} is not valid TOML: {exc}") from exc
    known = {"data", "clean", "split", "modalities", "model", "fusion", "output"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InvalidInputError(f"{path}: unknown table(s) {unknown}; valid: {sorted(known)}")
    from cellframe.activity.holdout_experiment import is_holdout

    data = dict(raw.get("data", {}))
    split = dict(raw.get("split", {"method": "scaffold"}))
    if "matrix" not in data and "files" not in split:
        raise InvalidInputError(
            f'{path}: [data] needs matrix = "<assay matrix file>" (or [split] files = '
            '{ train = "...", validation = "...", test = "..." })'
        )
    matrix = data.pop("matrix", "")
    # A held-out split (often a benchmark's own) is cleaned only when [clean] says so.
    clean = dict(raw.get("clean", {"enabled": False} if is_holdout(split) else {}))
    # Without [modalities]: the default model (a held-out split: the calibrated
    # ensemble, docs/activity.md "The default model"; folds: the Morgan network).
    default_models = DEFAULT_HOLDOUT_MODALITIES if is_holdout(split) else {"CS": {"kind": "morgan"}}
    return ExperimentConfig(
        matrix=matrix,
        matrix_options=data,
        clean=clean,
        split=split,
        modalities={k: dict(v) for k, v in raw.get("modalities", default_models).items()},
        model=dict(raw.get("model", {})),
        fusion={k: [list(x) for x in v] for k, v in raw.get("fusion", {}).items()},
        prefix=raw.get("output", {}).get("prefix", "activity"),
        base_dir=path.resolve().parent,
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
    elif "path" in spec:
        p = config.resolve(spec["path"])
        if not p.exists():
            raise FileNotFoundError(f"no {name} profile file at {p}")
        frame = (
            pl.read_parquet(p, glob=False) if p.suffix == ".parquet" else pl.read_csv(p, glob=False)
        )
    else:
        raise InvalidInputError(
            f'modality {name!r}: give kind = "morgan"/"dmpnn"/"rf", table = "<store table>" '
            'or path = "<file>"'
        )
    column = spec.get("compound_column", COMPOUND)
    if column != COMPOUND:
        frame = frame.rename({column: COMPOUND})
    return frame.with_columns(pl.col(COMPOUND).cast(pl.String))


def validate_config(config: ExperimentConfig) -> None:
    """Check a configuration before any work is done.

    Raises
    ------
    InvalidInputError
        On an unknown modality kind, a modality without a source, unknown fusion
        keys, or fusion of modalities that are not configured.
    """
    from cellframe.activity.holdout_experiment import holdout_models, is_holdout
    from cellframe.activity.matrix import matrix_options

    matrix_options(config.matrix_options)  # unknown [data] keys and bad column lists
    if not config.modalities:
        raise InvalidInputError('[modalities] is empty; add e.g. CS = { kind = "morgan" }')
    if is_holdout(config.split):
        holdout_models(config.modalities, config.model)  # kinds, descriptors, network settings
        return
    for name, spec in config.modalities.items():
        kind = spec.get("kind")
        if kind is not None and kind not in _CS_KINDS:
            raise InvalidInputError(
                f"modality {name!r}: unknown kind {kind!r} for a fold split; valid: "
                f"{list(_CS_KINDS)} (rf-tuned, lgbm, ensemble and descriptors = true need a held-out "
                "split: [split] holdout = true, column = ... or files = ...)"
            )
        if spec.get("descriptors"):
            raise InvalidInputError(
                f"modality {name!r}: descriptors = true needs a held-out split ([split] "
                "holdout = true, column = ... or files = ...); a fold split has none"
            )
        if kind is None and "table" not in spec and "path" not in spec:
            raise InvalidInputError(
                f'modality {name!r}: give kind = "morgan"/"dmpnn"/"rf", '
                'table = "<store table>" or path = "<file>"'
            )
    unknown_keys = sorted(set(config.fusion) - {"early", "late", "retrospective"})
    if unknown_keys:
        raise InvalidInputError(
            f"[fusion] has unknown keys {unknown_keys}; valid: early, late, retrospective"
        )
    early = {"early_" + "+".join(g) for g in config.fusion.get("early", [])}
    for kind, groups in config.fusion.items():
        allowed = set(config.modalities) | (set() if kind == "early" else early)
        for group in groups:
            missing = [m for m in group if m not in allowed]
            if missing or len(group) < 2:
                raise InvalidInputError(
                    f"[fusion] {kind} = {group}: needs two or more configured modalities; "
                    f"{missing or group} not usable (configured: {sorted(allowed)})"
                )
    from cellframe.activity.splits import FOLD_METHODS

    method = config.split.get("method", "scaffold")
    if method not in FOLD_METHODS:
        raise InvalidInputError(f"[split] method {method!r} unknown; valid: {sorted(FOLD_METHODS)}")


def run_experiment(
    config: ExperimentConfig, store: Any, *, progress: bool = True
) -> ExperimentResult:
    """Run the configured experiment and write its tables to ``store``.

    Parameters
    ----------
    config : ExperimentConfig
    store : cellframe.store.Store
    progress : bool, default True

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
    from cellframe.activity.crossval import cross_validate
    from cellframe.activity.features import align_profiles
    from cellframe.activity.fusion import early_fusion, late_fusion, retrospective_union
    from cellframe.activity.graph import featurize_molecules
    from cellframe.activity.holdout_experiment import is_holdout, run_holdout_experiment
    from cellframe.activity.matrix import matrix_options, read_assay_matrix
    from cellframe.activity.metrics import assay_fold_metrics, assay_metrics, summary_table
    from cellframe.activity.model import DEFAULT_GRID, MultitaskClassifier, RandomForestBaseline
    from cellframe.activity.splits import make_folds

    validate_config(config)
    if is_holdout(config.split):
        return run_holdout_experiment(config, store, progress=progress)
    matrix_path = config.resolve(config.matrix)
    params_common = {"config_matrix": str(matrix_path)}
    tables: dict[str, pl.DataFrame] = {}

    def write(name: str, frame: pl.DataFrame, step: str, parameters: Mapping[str, Any]) -> None:
        tables[name] = frame
        store.write(
            f"{config.prefix}_{name}",
            frame,
            mode="replace",
            step=f"activity.{step}",
            parameters={**params_common, **parameters},
            source=str(matrix_path),
        )

    # 1. ingest and clean
    matrix = read_assay_matrix(matrix_path, **matrix_options(config.matrix_options))
    clean_opts = dict(config.clean)
    if clean_opts.pop("enabled", True):
        cleaned = clean_assay_matrix(matrix, **clean_opts)
        matrix = cleaned.matrix
        write("cleaning", cleaned.report, "clean", clean_opts)
    write("readouts", matrix.to_long(), "ingest", config.matrix_options)

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
    for name, spec in config.modalities.items():
        kind = spec.get("kind")
        if kind is not None:
            if mols is None:
                raise InvalidInputError(
                    f"modality {name!r} ({kind}) needs SMILES in the assay matrix"
                )
            if kind == "dmpnn":
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
        missing = [g for g in group if g not in raw_features]
        if missing:
            raise InvalidInputError(
                f"early fusion of {group}: no feature table for {missing} "
                "(early fusion needs Morgan or profile modalities)"
            )
        fused = early_fusion({g: raw_features[g] for g in group})
        name = "early_" + "+".join(group)
        aligned = align_profiles(matrix, fused, name=name)
        inputs[name] = (aligned.matrix, aligned.features)
        model_kind[name] = "ffn"

    # 3. folds on the cleaned matrix (shared by every modality)
    split = dict(config.split)
    method = split.pop("method", "scaffold")
    kmeans_on = split.pop("features", None)
    features = None
    if method == "kmeans":
        if kmeans_on not in inputs or not isinstance(inputs[kmeans_on][1], np.ndarray):
            raise InvalidInputError(
                'the k-means split needs [split] features = "<modality with a feature table>"'
            )
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
        n_folds=split.get("n_folds", 5),
        seed=split.get("seed", 0),
    )
    fold_of = dict(zip(matrix.compounds, folds.tolist(), strict=True))
    folds_frame = pl.DataFrame({COMPOUND: matrix.compounds, FOLD: pl.Series(folds, dtype=pl.Int64)})
    if matrix.smiles is not None:
        folds_frame = folds_frame.insert_column(1, pl.Series(SMILES, matrix.smiles, pl.String))
    write("folds", folds_frame, "split", {"method": method, **split})

    # 4. train and predict
    model_opts = dict(config.model)
    grid = model_opts.pop("grid", DEFAULT_GRID)
    n_estimators = model_opts.pop("n_estimators", 300)
    preds, hypers = [], []
    for name, (sub, x) in inputs.items():
        sub_folds = np.array([fold_of[c] for c in sub.compounds])
        if model_kind[name] == "rf":
            template: Any = RandomForestBaseline(
                n_estimators=n_estimators, seed=model_opts.get("seed", 0)
            )
        else:
            template = MultitaskClassifier(
                **{**model_opts, "encoder": "dmpnn" if model_kind[name] == "dmpnn" else "ffn"}
            )
        result = cross_validate(
            sub, x, sub_folds, model=template, grid=grid or None, modality=name, progress=progress
        )
        preds.append(result.predictions)
        hypers.append(result.hyperparameters)
    predictions = pl.concat(preds)
    for group in config.fusion.get("late", []):
        predictions = pl.concat([predictions, late_fusion(predictions, group)])
    write(
        "predictions",
        predictions,
        "predict",
        {"grid": str(grid), **{k: str(v) for k, v in model_opts.items()}},
    )
    write("hyperparameters", pl.concat(hypers), "hyperparameters", {})

    # 5. evaluate and fuse retrospectively
    fold_metrics = assay_fold_metrics(predictions)
    write("fold_metrics", fold_metrics, "evaluate", {})
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
    write("assay_metrics", per_assay, "evaluate", {"aggregate": "median"})
    summary = summary_table(per_assay)
    write("summary", summary, "summarize", {})
    return ExperimentResult(tables=tables)
