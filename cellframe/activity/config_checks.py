"""Checks of a ``cellframe activity`` config before any work is done.

Each TOML table's keys (an unknown one is named with the valid ones and the
likely meant one) and values (types and ranges the models would refuse later),
so a bad setting fails in a second with one line naming the key and the fix,
instead of a traceback after training. :func:`validate_config` runs them all.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cellframe.errors import InvalidInputError

if TYPE_CHECKING:
    from cellframe.activity.experiment import ExperimentConfig

__all__ = [
    "FOLD_SPLIT_KEYS",
    "HOLDOUT_SPLIT_KEYS",
    "MODEL_EXTRA_KEYS",
    "OUTPUT_KEYS",
    "PROFILE_KEYS",
    "UnusedSettingWarning",
    "did_you_mean",
    "needs_descriptors",
    "needs_validation_part",
    "validate_config",
]

#: Keys of ``[split]`` for folds (a held-out split's are in holdout_experiment).
FOLD_SPLIT_KEYS = ("method", "n_folds", "seed", "features")

#: Keys of ``[split]`` for one held-out split (holdout_experiment checks them too).
HOLDOUT_SPLIT_KEYS = ("column", "files", "holdout", "method", "fractions", "seed")

#: Keys of ``[output]``: the tables' prefix; ``model`` and ``model_name`` (where
#: ``cellframe activity`` saves the trained model, and which) are read by
#: cellframe/cli/activity.py.
OUTPUT_KEYS = ("prefix", "model", "model_name")

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


class UnusedSettingWarning(UserWarning):
    """A ``[model]`` setting that no configured model uses (it has no effect)."""


def did_you_mean(unknown: list[str], valid: Any) -> str:
    """`` (did you mean 'nfolds' -> 'n_folds'?)`` for the unknown names close to a valid one.

    Parameters
    ----------
    unknown : list of str
    valid : iterable of str

    Returns
    -------
    str
        The hint with a leading space, or ``""`` when no name is close.

    Examples
    --------
    >>> did_you_mean(["nfolds"], ["method", "n_folds"])
    " (did you mean 'nfolds' -> 'n_folds'?)"
    """
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


def needs_validation_part(spec: Mapping[str, Any]) -> bool:
    """Whether a chemical-structure modality needs a validation part (trained as held-out).

    Parameters
    ----------
    spec : mapping
        A ``[modalities]`` entry.

    Returns
    -------
    bool

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
        spec.get("kind") in ("morgan", "rf") and not needs_validation_part(spec)
    )


def _check_model(model: Mapping[str, Any]) -> None:
    """``[model]``: known keys, and values the models accept (checked before any work)."""
    from cellframe.activity.model import MultitaskClassifier
    from cellframe.activity.trees import TreeBaseline

    network_keys = _network_keys()
    valid = [*network_keys, *MODEL_EXTRA_KEYS]
    unknown = sorted(set(model) - set(valid))
    if unknown:
        hint = did_you_mean(unknown, valid)
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
                + did_you_mean([key], searchable)
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
            member(
                kind + ("-desc" if spec.get("descriptors") else ""), not needs_validation_part(spec)
            )
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
            + did_you_mean(unknown, ["enabled", *valid])
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
            else did_you_mean(unknown, HOLDOUT_SPLIT_KEYS)
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
            else did_you_mean(unknown, FOLD_SPLIT_KEYS)
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
                f"{', '.join(PROFILE_KEYS)}" + did_you_mean(unknown, PROFILE_KEYS)
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
            + did_you_mean([str(kind)], HOLDOUT_KINDS)
        )
    valid = _KIND_KEYS.get(kind, ("kind", "descriptors", "ensemble"))
    unknown = sorted(set(spec) - set(valid) - set(PROFILE_KEYS) - {"radius", "n_bits"})
    if unknown:
        raise InvalidInputError(
            f"modality {name!r}: unknown key(s) {unknown} for kind {kind!r}; valid: "
            f"{', '.join(valid)}" + did_you_mean(unknown, valid)
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
    if fingerprint and (kind not in ("morgan", "rf") or needs_validation_part(spec)):
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
    unknown = sorted(set(config.output) - set(OUTPUT_KEYS))
    if unknown:
        raise InvalidInputError(
            f"[output] unknown key(s) {unknown}; valid: {', '.join(OUTPUT_KEYS)}"
            + did_you_mean(unknown, OUTPUT_KEYS)
        )
    for key in ("model", "model_name"):
        value = config.output.get(key)
        if value is not None and not isinstance(value, str):
            raise InvalidInputError(
                f"[output] {key} = {value!r}: give a string (e.g. {key} = "
                f"{'tox21_model' if key == 'model' else 'best'!r})"
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


def needs_descriptors(spec: Mapping[str, Any]) -> bool:
    """Whether a ``[modalities]`` entry's model reads the RDKit 2D descriptors.

    Parameters
    ----------
    spec : mapping
        A ``[modalities]`` entry.

    Returns
    -------
    bool
        True for ``rf-tuned``, ``lgbm``, ``descriptors = true`` and an
        ensemble with such a member.
    """
    from cellframe.activity.ensemble import ENSEMBLE_MEMBERS

    kind = spec.get("kind")
    if kind == "ensemble":
        members = spec.get("members", list(ENSEMBLE_MEMBERS))
        return any(m in ("rf-tuned", "lgbm") or m.endswith("-desc") for m in members)
    return kind in ("rf-tuned", "lgbm") or bool(spec.get("descriptors"))
