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
from cellframe.errors import InvalidInputError

__all__ = [
    "EmptyFoldsWarning",
    "ExperimentConfig",
    "ExperimentResult",
    "UnusedSettingWarning",
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
        ``[output]`` settings other than ``prefix`` (none are valid today;
        :func:`validate_config` names any as unknown).
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

#: Keys of ``[split]`` for folds (a held-out split's are in holdout_experiment).
FOLD_SPLIT_KEYS = ("method", "n_folds", "seed", "features")

#: Keys of ``[split]`` for one held-out split (holdout_experiment checks them too).
HOLDOUT_SPLIT_KEYS = ("column", "files", "holdout", "method", "fractions", "seed")

#: Keys of ``[output]``.
OUTPUT_KEYS = ("prefix",)

#: Keys of a profile modality (``{table = ...}`` or ``{path = ...}``).
PROFILE_KEYS = ("table", "path", "on_missing", "compound_column")

#: Keys of a chemical-structure modality on folds, by kind (the rest: kind, descriptors, ensemble).
_KIND_KEYS = {
    "morgan": ("kind", "radius", "n_bits", "descriptors", "ensemble"),
    "rf": ("kind", "radius", "n_bits", "ensemble"),
    "ensemble": ("kind", "members", "per_assay", "ensemble"),
}

#: ``[model]`` keys besides the :class:`~cellframe.activity.MultitaskClassifier` settings.
MODEL_EXTRA_KEYS = ("grid", "n_estimators", "tree_grid", "tree_params")

#: Share of each fold's training compounds held out as its inner validation part.
INNER_VALIDATION_FRACTION = 0.1


class UnusedSettingWarning(UserWarning):
    """A ``[model]`` setting that no configured model uses (it has no effect)."""


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
            + _did_you_mean(unknown, CONFIG_TABLES)
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


def _did_you_mean(unknown: list[str], valid: Any) -> str:
    import difflib

    hints = [
        f"{u!r} -> {m[0]!r}"
        for u in unknown
        if (m := difflib.get_close_matches(u, [str(v) for v in valid], n=1))
    ]
    return f" (did you mean {', '.join(hints)}?)" if hints else ""


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _network_keys() -> list[str]:
    """The :class:`MultitaskClassifier` settings a ``[model]`` table may give."""
    from dataclasses import fields

    from cellframe.activity.model import MultitaskClassifier

    # The encoder follows the modality's kind (morgan / profiles: ffn; dmpnn: graphs).
    return [f.name for f in fields(MultitaskClassifier) if f.init and f.name != "encoder"]


def _checked(what: str, make: Any) -> Any:
    """``make()``, with a cellframe error's message prefixed by the setting it came from."""
    from cellframe.errors import InvalidChoiceError

    try:
        return make()
    except InvalidChoiceError as exc:
        raise InvalidChoiceError(f"{what}: {exc}") from exc
    except InvalidInputError as exc:
        raise InvalidInputError(f"{what}: {exc}") from exc


def _is_validated(spec: Mapping[str, Any]) -> bool:
    """Whether a chemical-structure modality needs a validation part (trained as held-out).

    Tree baselines tune on it, descriptor networks normalize and stop on it,
    seed ensembles and the calibrated ensemble are averaged/chosen with it; in
    cross-validation it is each fold's inner validation split.
    """
    return (
        spec.get("kind") in ("rf-tuned", "lgbm", "ensemble")
        or spec.get("descriptors", False) is not False
        or spec.get("ensemble", 1) != 1
    )


def _has_features(spec: Mapping[str, Any]) -> bool:
    """Whether a modality gives a feature table (early fusion, the k-means split)."""
    return spec.get("kind") is None or (
        spec.get("kind") in ("morgan", "rf") and not _is_validated(spec)
    )


def _check_model(model: Mapping[str, Any]) -> None:
    """``[model]``: known keys, and values the models accept (checked before any work)."""
    from cellframe.activity.model import MultitaskClassifier
    from cellframe.activity.trees import TreeBaseline

    network_keys = _network_keys()
    valid = [*network_keys, *MODEL_EXTRA_KEYS]
    unknown = sorted(set(model) - set(valid))
    if unknown:
        hint = _did_you_mean(unknown, valid)
        if "encoder" in unknown:
            hint += " (the encoder follows each modality's kind: morgan ffn, dmpnn graphs)"
        raise InvalidInputError(
            f"[model] unknown key(s) {unknown}; valid: {', '.join(sorted(valid))}{hint}"
        )
    network = {k: v for k, v in model.items() if k in network_keys}
    if isinstance(network.get("hidden_sizes"), list):
        network["hidden_sizes"] = tuple(network["hidden_sizes"])
    _checked("[model]", lambda: MultitaskClassifier(**network))
    n_estimators = model.get("n_estimators", 300)
    if not _whole(n_estimators) or n_estimators < 1:
        raise InvalidInputError(
            f"[model] n_estimators = {n_estimators!r}: give the RandomForest's number of trees, "
            "a whole number >= 1 (e.g. 300)"
        )
    grid = model.get("grid", {})
    searchable = [k for k in network_keys if k not in ("seed", "device", "progress")]
    if not isinstance(grid, dict):
        raise InvalidInputError(
            f"[model] grid = {grid!r}: give a table of setting -> list of values, e.g. "
            "grid = { dropout = [0.2, 0.5] } (grid = {} for no search)"
        )
    for key, values in grid.items():
        if key not in searchable:
            raise InvalidInputError(
                f"[model] grid: {key!r} is not a network setting; valid: {', '.join(searchable)}"
                + _did_you_mean([key], searchable)
            )
        if not isinstance(values, list) or not values:
            raise InvalidInputError(
                f"[model] grid {key} = {values!r}: give a non-empty list of values, e.g. "
                f"{key} = [{values!r}]"
            )
    import itertools

    for combo in itertools.product(*grid.values()):
        point = dict(zip(grid, combo, strict=True))
        point = {k: tuple(v) if isinstance(v, list) else v for k, v in point.items()}
        _checked(
            f"[model] grid point {point}", lambda p=point: MultitaskClassifier(**{**network, **p})
        )
    for key in ("tree_params", "tree_grid"):
        table = model.get(key, {})
        bad = (
            not isinstance(table, dict)
            or set(table) - {"rf", "lgbm"}
            or not all(isinstance(v, dict) for v in table.values())
        )
        if bad:
            raise InvalidInputError(
                f"[model] {key} = {table!r}: give a table per tree kind (rf for rf-tuned, lgbm), "
                f"e.g. {key} = {{ lgbm = {{ num_leaves = "
                + ("[15, 31]" if key == "tree_grid" else "31")
                + " } }"
            )
    for base in ("rf", "lgbm"):
        params = model.get("tree_params", {}).get(base, {})
        tree_grid = model.get("tree_grid", {}).get(base)
        _checked(
            f"[model] tree_params/tree_grid {base}",
            lambda b=base, pr=params, g=tree_grid: TreeBaseline(b, params=dict(pr), grid=g),
        )


def _used_model_keys(config: ExperimentConfig, holdout: bool) -> set[str]:
    """What the configured models read of ``[model]``: network, grid, n_estimators, tree:rf/lgbm."""
    from cellframe.activity.ensemble import ENSEMBLE_MEMBERS

    used: set[str] = set()

    def member(kind: str, plain: bool) -> None:
        base = kind.removesuffix("-desc")
        if base in ("morgan", "dmpnn"):
            used.add("network")
            if plain and not holdout and not kind.endswith("-desc"):
                used.add("grid")
        elif base == "rf":
            used.add("n_estimators")
        elif base in ("rf-tuned", "lgbm"):
            used.add("tree:rf" if base == "rf-tuned" else "tree:lgbm")

    for spec in config.modalities.values():
        kind = spec.get("kind")
        if kind is None:  # a profile network (a fold split only)
            used |= {"network", "grid"}
        elif kind == "ensemble":
            for m in spec.get("members", list(ENSEMBLE_MEMBERS)):
                member(str(m), plain=False)
        else:
            member(kind + ("-desc" if spec.get("descriptors") else ""), not _is_validated(spec))
    if config.fusion.get("early"):
        used |= {"network", "grid"}
    return used


def _warn_unused(config: ExperimentConfig, holdout: bool) -> None:
    used = _used_model_keys(config, holdout)
    network_keys = set(_network_keys()) - {"seed"}
    unused = []
    for key, value in config.model.items():
        if key in network_keys and "network" not in used:
            unused.append(key)
        elif key in ("grid", "n_estimators") and key not in used and value != {}:
            unused.append(key)
        elif key in ("tree_params", "tree_grid"):
            unused += [f"{key}.{b}" for b in value if f"tree:{b}" not in used]
    if unused:
        why = {
            "network": "network settings: kinds morgan/dmpnn, ensemble members morgan/dmpnn, "
            "profile tables",
            "grid": "grid: plain morgan/dmpnn and profile networks on folds",
            "n_estimators": "n_estimators: kind rf",
            "rf": "tree_params/tree_grid rf: kind rf-tuned",
            "lgbm": "tree_params/tree_grid lgbm: kind lgbm",
        }
        groups = [
            k if k in ("grid", "n_estimators") else k.split(".")[-1] if "." in k else "network"
            for k in unused
        ]
        reasons = "; ".join(why[g] for g in dict.fromkeys(groups))
        warnings.warn(
            f"{len(unused)} [model] setting(s) have no effect, no configured model uses them: "
            f"{', '.join(unused)} ({reasons}); remove them or add a model that takes them",
            UnusedSettingWarning,
            stacklevel=3,
        )


def _check_prefix(prefix: Any) -> None:
    import re

    if not isinstance(prefix, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", prefix):
        raise InvalidInputError(
            f"[output] prefix = {prefix!r}: the tables are named <prefix>_summary, ...; use "
            "letters, digits and underscores, starting with a letter or underscore"
        )


def _check_clean(clean: Mapping[str, Any]) -> None:
    import inspect

    from cellframe.activity.clean import clean_assay_matrix

    valid = [n for n in inspect.signature(clean_assay_matrix).parameters if n != "matrix"]
    unknown = sorted(set(clean) - {"enabled", *valid})
    if unknown:
        raise InvalidInputError(
            f"[clean] unknown key(s) {unknown}; valid: enabled, {', '.join(valid)}"
            + _did_you_mean(unknown, ["enabled", *valid])
        )
    if not isinstance(clean.get("enabled", True), bool):
        raise InvalidInputError(
            f"[clean] enabled = {clean['enabled']!r}; use true or false (false skips cleaning)"
        )


def _check_holdout_split(split: Mapping[str, Any]) -> None:
    unknown = sorted(set(split) - set(HOLDOUT_SPLIT_KEYS))
    if unknown:
        hint = (
            " (n_folds and features apply to a fold split: remove column / files / holdout)"
            if set(unknown) & {"n_folds", "features"}
            else _did_you_mean(unknown, HOLDOUT_SPLIT_KEYS)
        )
        raise InvalidInputError(
            f"[split] unknown key(s) {unknown} for a held-out split; valid: "
            f"{', '.join(HOLDOUT_SPLIT_KEYS)}{hint}"
        )
    if "holdout" in split and not isinstance(split["holdout"], bool):
        raise InvalidInputError(f"[split] holdout = {split['holdout']!r}; use true or false")
    if "column" in split and (not isinstance(split["column"], str) or not split["column"]):
        raise InvalidInputError(
            f"[split] column = {split['column']!r}; give the name of the matrix file's "
            'train / validation / test column, e.g. column = "set"'
        )
    if "seed" in split and not _whole(split["seed"]):
        raise InvalidInputError(f"[split] seed = {split['seed']!r}; give a whole number")
    if "fractions" in split:
        if "column" in split or "files" in split:
            raise InvalidInputError(
                "[split] fractions apply to holdout = true (a made split); the parts of "
                "column = ... or files = ... are the user's: remove fractions"
            )
        f = split["fractions"]
        numbers = isinstance(f, list) and all(
            isinstance(x, int | float) and not isinstance(x, bool) for x in f
        )
        if not numbers or len(f) != 3 or min(f) < 0 or abs(sum(f) - 1) > 1e-6:
            total = f" (they sum to {sum(f):g})" if numbers else ""
            raise InvalidInputError(
                f"[split] fractions = {f!r}{total}: give three non-negative numbers (train, "
                "validation, test) summing to 1, e.g. fractions = [0.8, 0.1, 0.1]"
            )


def _check_fold_split(split: Mapping[str, Any], modalities: Mapping[str, Any]) -> None:
    from cellframe.activity.splits import FOLD_METHODS

    unknown = sorted(set(split) - set(FOLD_SPLIT_KEYS))
    if unknown:
        hint = (
            " (fractions apply to one held-out split: add holdout = true)"
            if "fractions" in unknown
            else _did_you_mean(unknown, FOLD_SPLIT_KEYS)
        )
        raise InvalidInputError(
            f"[split] unknown key(s) {unknown} for a fold split; valid: "
            f"{', '.join(FOLD_SPLIT_KEYS)}, or column / files / holdout for one held-out "
            f"split{hint}"
        )
    method = split.get("method", "scaffold")
    if not isinstance(method, str) or method not in FOLD_METHODS:
        raise InvalidInputError(f"[split] method {method!r} unknown; valid: {sorted(FOLD_METHODS)}")
    n_folds = split.get("n_folds", 5)
    if not _whole(n_folds) or n_folds < 2:
        raise InvalidInputError(f"[split] n_folds = {n_folds!r}; give a whole number >= 2")
    if "seed" in split and not _whole(split["seed"]):
        raise InvalidInputError(f"[split] seed = {split['seed']!r}; give a whole number")
    usable = sorted(n for n, spec in modalities.items() if _has_features(spec))
    if method == "kmeans" and split.get("features") not in usable:
        raise InvalidInputError(
            f'[split] method = "kmeans" needs features = one of {usable} (a profile or plain '
            f"morgan/rf modality, its feature table is clustered); got {split.get('features')!r}"
        )
    if method != "kmeans" and "features" in split:
        raise InvalidInputError(
            f'[split] features = {split["features"]!r} applies to method = "kmeans" only; '
            f"remove it or set the method"
        )


def _check_modality(name: str, spec: Mapping[str, Any]) -> None:
    """One fold-split modality's keys and values (the models' own checks come later)."""
    from cellframe.activity.holdout_experiment import HOLDOUT_KINDS

    kind = spec.get("kind")
    if kind is None:
        sources = [k for k in ("table", "path") if k in spec]
        if len(sources) != 1:
            raise InvalidInputError(
                f'modality {name!r}: give kind = "morgan" (or {", ".join(HOLDOUT_KINDS[1:])}), '
                'table = "<store table>" or path = "<file>"'
                + ("; not both table and path" if len(sources) == 2 else "")
            )
        unknown = sorted(set(spec) - set(PROFILE_KEYS))
        if unknown:
            raise InvalidInputError(
                f"modality {name!r}: unknown key(s) {unknown} for a profile table; valid: "
                f"{', '.join(PROFILE_KEYS)}" + _did_you_mean(unknown, PROFILE_KEYS)
            )
        for key in ("table", "path", "compound_column"):
            if key in spec and (not isinstance(spec[key], str) or not spec[key]):
                raise InvalidInputError(f"modality {name!r}: {key} = {spec[key]!r}; give a name")
        if spec.get("on_missing", "drop") not in ("drop", "error"):
            raise InvalidInputError(
                f"modality {name!r}: on_missing = {spec['on_missing']!r}; valid: 'drop', 'error'"
            )
        return
    if kind not in HOLDOUT_KINDS:
        from cellframe.errors import InvalidChoiceError

        raise InvalidChoiceError(
            f"modality {name!r}: unknown kind {kind!r}; valid: {list(HOLDOUT_KINDS)}"
            + _did_you_mean([str(kind)], HOLDOUT_KINDS)
        )
    valid = _KIND_KEYS.get(kind, ("kind", "descriptors", "ensemble"))
    unknown = sorted(set(spec) - set(valid) - set(PROFILE_KEYS) - {"radius", "n_bits"})
    if unknown:
        raise InvalidInputError(
            f"modality {name!r}: unknown key(s) {unknown} for kind {kind!r}; valid: "
            f"{', '.join(valid)}" + _did_you_mean(unknown, valid)
        )
    n_members = spec.get("ensemble", 1)
    if not _whole(n_members) or n_members < 1:
        raise InvalidInputError(
            f"modality {name!r}: ensemble = {n_members!r}; give a whole number of members "
            "(seeds) >= 1"
        )
    if not isinstance(spec.get("descriptors", False), bool):
        raise InvalidInputError(
            f"modality {name!r}: descriptors = {spec['descriptors']!r}; use true or false"
        )
    fingerprint = [k for k in ("radius", "n_bits") if k in spec]
    if fingerprint and (kind not in ("morgan", "rf") or _is_validated(spec)):
        raise InvalidInputError(
            f"modality {name!r}: {', '.join(fingerprint)} apply to a plain kind morgan or rf "
            "(no descriptors, ensemble = 1); this one takes the 2048-bit radius-2 Morgan "
            f"fingerprints of the held-out models: remove {', '.join(fingerprint)}"
        )
    if "radius" in spec and (not _whole(spec["radius"]) or spec["radius"] < 0):
        raise InvalidInputError(
            f"modality {name!r}: radius = {spec['radius']!r}; give 0, 1, 2, ..."
        )
    if "n_bits" in spec and (not _whole(spec["n_bits"]) or spec["n_bits"] < 1):
        raise InvalidInputError(
            f"modality {name!r}: n_bits = {spec['n_bits']!r}; give a whole number >= 1, e.g. 2048"
        )
    for key in ("table", "path", "on_missing", "compound_column"):
        if key in spec:
            raise InvalidInputError(
                f"modality {name!r}: {key} applies to a profile table, not kind {kind!r}; "
                "remove kind or " + key
            )


def validate_config(config: ExperimentConfig) -> None:
    """Check a configuration before any work is done.

    Every table is checked for unknown keys (the message lists the valid ones)
    and for values the models would refuse later, so a bad setting fails in a
    second instead of after training. A ``[model]`` setting that no configured
    model reads warns (:class:`UnusedSettingWarning`).

    Raises
    ------
    InvalidInputError
        On an unknown key or kind, a value of the wrong type or range, a modality
        without a source, unknown fusion keys, fusion of modalities that are not
        configured (or, early, without a feature table), split fractions that do
        not sum to 1, or an invalid table prefix.
    """
    from cellframe.activity.holdout_experiment import holdout_models, is_holdout
    from cellframe.activity.matrix import matrix_options

    _check_prefix(config.prefix)
    unknown = sorted(config.output)
    if unknown:
        raise InvalidInputError(
            f"[output] unknown key(s) {unknown}; valid: {', '.join(OUTPUT_KEYS)}"
            + _did_you_mean(unknown, OUTPUT_KEYS)
        )
    matrix_options(config.matrix_options)  # unknown [data] keys and bad column lists
    _check_clean(config.clean)
    if not config.modalities:
        raise InvalidInputError('[modalities] is empty; add e.g. CS = { kind = "morgan" }')
    _check_model(config.model)
    holdout = is_holdout(config.split)
    if holdout:
        _check_holdout_split(config.split)
        holdout_models(config.modalities, config.model)  # kinds, descriptors, network settings
        _warn_unused(config, holdout=True)
        return
    for name, spec in config.modalities.items():
        _check_modality(name, spec)
    chemical = {
        name: {k: v for k, v in spec.items() if k not in ("radius", "n_bits")}
        for name, spec in config.modalities.items()
        if spec.get("kind") is not None
    }
    holdout_models(chemical, config.model)  # descriptors, ensemble members, seeds: as held out
    _check_fold_split(config.split, config.modalities)
    _check_fusion(config)
    _warn_unused(config, holdout=False)


def _check_fusion(config: ExperimentConfig) -> None:
    unknown_keys = sorted(set(config.fusion) - {"early", "late", "retrospective"})
    if unknown_keys:
        raise InvalidInputError(
            f"[fusion] has unknown keys {unknown_keys}; valid: early, late, retrospective"
        )
    for kind, groups in config.fusion.items():
        if not isinstance(groups, list) or not all(
            isinstance(g, list) and all(isinstance(m, str) for m in g) for g in groups
        ):
            raise InvalidInputError(
                f'[fusion] {kind} = {groups!r}: give a list of modality lists, e.g. {kind} = [["CS", "MO"]]'
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
    for group in config.fusion.get("early", []):
        bare = [m for m in group if not _has_features(config.modalities[m])]
        if bare:
            raise InvalidInputError(
                f"[fusion] early = {group}: {bare} have no feature table to join (early fusion "
                "joins profile tables and plain morgan/rf fingerprints); fuse them late instead"
            )


def _needs_descriptors(spec: Mapping[str, Any]) -> bool:
    from cellframe.activity.ensemble import ENSEMBLE_MEMBERS

    kind = spec.get("kind")
    if kind == "ensemble":
        members = spec.get("members", list(ENSEMBLE_MEMBERS))
        return any(m in ("rf-tuned", "lgbm") or m.endswith("-desc") for m in members)
    return kind in ("rf-tuned", "lgbm") or bool(spec.get("descriptors"))


def run_experiment(
    config: ExperimentConfig, store: Any, *, progress: bool = True
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
            return run_holdout_experiment(config, store, progress=progress)
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
            if _is_validated(spec):
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
    if any(_needs_descriptors(spec) for spec in validated.values()):
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
