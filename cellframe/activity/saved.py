"""A trained activity model kept on disk, and its predictions for new compounds.

Issue #19: a held-out run (:func:`~cellframe.activity.train_holdout`,
``cellframe activity CONFIG --save-model DIR``) trains a model the user wants
to apply to their own compound library later, exactly as the run predicted its
test part. :func:`save_activity_model` writes everything that takes, and
:func:`load_activity_model` reads it back:

* every member: a network's weights (``state_dict``) and input scaling as
  safetensors; a RandomForest per assay with skops (``skops.io``: no pickle, only
  scikit-learn's tree type is trusted); a LightGBM model per assay in
  LightGBM's own text format. Nothing is unpickled on load;
* a calibrated ensemble's members chosen on validation, its Platt ``(a, b)``
  per member and assay, and the choice per assay (JSON; floats round-trip);
* the RDKit descriptors of the training compounds, sorted per descriptor (the
  empirical CDF every descriptor-taking member was normalised with);
* the training compounds' SMILES and Morgan fingerprints (radius 2, 2048 bits,
  packed): the applicability domain's reference;
* provenance: cellframe and library versions, the config, the split, the
  validation and test ROC-AUC.

A model directory::

    model.json                 format, versions, assays, the model tree, provenance,
                               the SHA-256 of every other file
    training.safetensors       packed training fingerprints, descriptor CDF reference
    training_smiles.txt        the training compounds' SMILES, one a line
    members/m0.safetensors     a network's weights and input scaling
    members/m1.skops           a RandomForest per assay (skops)
    members/m2-a0.lgbm.txt     the LightGBM model of assay 0 (LightGBM text)

It is written to a temporary sibling folder and renamed into place, so an error
leaves no half-written model (and an older model of that name whole). Loading
checks the format version, the cellframe version and every file's checksum.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from cellframe.activity.chem import InvalidSmilesWarning
from cellframe.errors import InvalidInputError, SavedModelError, SavedModelVersionError

__all__ = [
    "FORMAT_VERSION",
    "PREDICTION_SCHEMA",
    "ActivityModel",
    "LibraryPrediction",
    "SavedModelVersionWarning",
    "UnparsedLibraryWarning",
    "check_model_path",
    "load_activity_model",
    "save_activity_model",
]

#: Name of the format, written to ``model.json``.
FORMAT = "cellframe-activity-model"
#: Version of the directory layout; a model of another version is refused.
FORMAT_VERSION = 1
#: The file holding the model's description.
MODEL_FILE = "model.json"
#: Morgan settings of the applicability domain and of the ``morgan`` inputs
#: (:func:`~cellframe.activity.morgan_fingerprints` defaults; the trees' counts too).
FINGERPRINT = {"radius": 2, "n_bits": 2048}
#: The only types skops may build besides its built-in safe ones.
SKOPS_TRUSTED = ("sklearn.tree._tree.Tree",)
#: Columns of a library prediction table, one row per compound and assay.
PREDICTION_SCHEMA = {
    "compound": pl.String,
    "smiles": pl.String,
    "assay": pl.String,
    "probability": pl.Float64,
    "member_spread": pl.Float64,
    "train_similarity": pl.Float64,
    "in_domain": pl.Boolean,
}


class SavedModelVersionWarning(UserWarning):
    """A saved model was made with other versions of RDKit, scikit-learn, LightGBM or torch.

    Its predictions may then differ from the run's in the last digits (or more,
    where a library changed a descriptor or a tree's arithmetic); the message
    names the libraries and both versions.
    """


class UnparsedLibraryWarning(InvalidSmilesWarning):
    """Library compounds whose SMILES RDKit cannot parse: kept, with null predictions (counted)."""


def _library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("rdkit", "scikit-learn", "lightgbm", "torch", "skops", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:  # pragma: no cover - every one is a dependency
            out[name] = "absent"
    return out


def _cellframe_version() -> str:
    """``cellframe.__version__``, read as the package reads it (a lower layer: no import of it)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cellframe")
    except PackageNotFoundError:  # a source tree that is not installed
        return "0+unknown"


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (descriptor workers)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


# --------------------------------------------------------------------- members
class LightGBMText:
    """A LightGBM binary classifier rebuilt from its text model (``Booster(model_str=...)``).

    ``predict_proba`` is ``LGBMClassifier.predict_proba``'s: the saved text
    holds the trees up to the best validation iteration, which is what the
    fitted classifier predicts with.

    Parameters
    ----------
    text : str
        ``booster_.model_to_string()`` of a fitted ``LGBMClassifier``.
    """

    def __init__(self, text: str) -> None:
        import lightgbm

        self.booster = lightgbm.Booster(model_str=text)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """``(n, 2)``: probability of no hit and of a hit."""
        p = self.booster.predict(x)
        return np.vstack((1.0 - p, p)).T


def _network_spec(net: Any, folder: Path, name: str) -> dict[str, Any]:
    import torch
    from safetensors.torch import save_file

    tensors = {
        f"state.{k}": v.detach().cpu().contiguous().clone()
        for k, v in net.network_.state_dict().items()
    }
    has_scaling = hasattr(net, "_mu")
    if has_scaling:
        tensors["mu"] = torch.from_numpy(np.ascontiguousarray(net._mu))
        tensors["sd"] = torch.from_numpy(np.ascontiguousarray(net._sd))
    rel = f"members/{name}.safetensors"
    save_file(tensors, str(folder / rel))
    params = net.get_params()
    for key in ("device", "progress"):
        params.pop(key)
    params["hidden_sizes"] = [int(h) for h in params["hidden_sizes"]]
    if callable(params["lr_schedule"]):  # training only; the forward does not use it
        params["lr_schedule"] = "constant"
    return {
        "type": "network",
        "file": rel,
        "params": params,
        "n_inputs": len(net._mu) if has_scaling else 0,
        "n_tasks": int(net.network_.head[-1].out_features),
        "standardize": getattr(net, "_standardize", None),
        "has_scaling": has_scaling,
    }


def _forest_file(models: list[Any], folder: Path, name: str) -> str:
    import skops.io

    rel = f"members/{name}.skops"
    skops.io.dump(models, str(folder / rel))
    return rel


def _model_spec(model: Any, folder: Path, counter: list[int]) -> dict[str, Any]:
    """Write ``model``'s arrays under ``folder/members`` and return its JSON description."""
    from cellframe.activity.ensemble import CalibratedEnsemble
    from cellframe.activity.holdout import Ensemble, WithDescriptors
    from cellframe.activity.model import MultitaskClassifier, RandomForestBaseline
    from cellframe.activity.trees import TreeBaseline

    name = f"m{counter[0]}"
    counter[0] += 1
    if isinstance(model, CalibratedEnsemble):
        chosen = model.chosen_.any(axis=0)
        members = model.members or {}
        return {
            "type": "calibrated",
            "per_assay": bool(model.per_assay),
            "calibrate": bool(model.calibrate),
            "names": list(model.names_),
            # Only the members chosen for some assay are kept: the others are
            # averaged with weight 0, so their predictions never count.
            "members": {
                n: _model_spec(members[n], folder, counter) if chosen[m] else None
                for m, n in enumerate(model.names_)
            },
            "calibration": {n: model.calibration_[n].tolist() for n in model.names_},
            "chosen": model.chosen_.tolist(),
            "chosen_members": list(model.members_),
            "search": model.search_,
        }
    if isinstance(model, Ensemble):
        return {
            "type": "seeds",
            "members": [_model_spec(m, folder, counter) for m in model.members],
        }
    if isinstance(model, WithDescriptors):
        return {"type": "with_descriptors", "model": _model_spec(model.model, folder, counter)}
    if isinstance(model, MultitaskClassifier):
        if not hasattr(model, "network_"):
            raise InvalidInputError("save_activity_model: a network is not fitted; train it first")
        return _network_spec(model, folder, name)
    if isinstance(model, RandomForestBaseline):
        return {
            "type": "forest",
            "params": {
                "n_estimators": model.n_estimators,
                "n_jobs": model.n_jobs,
                "seed": model.seed,
                "class_weight": model.class_weight,
                "min_samples_leaf": model.min_samples_leaf,
            },
            "file": _forest_file(model.models_, folder, name),
            "n_constant": int(model.n_constant_),
        }
    if isinstance(model, TreeBaseline):
        if not isinstance(model.model, str):
            raise InvalidInputError(
                f"save_activity_model: TreeBaseline(model={model.name!r}) is a custom factory; "
                "only the named tree models (rf, lgbm) can be saved"
            )
        spec: dict[str, Any] = {
            "type": "trees",
            "model": model.model,
            "params": model.params,
            "seed": model.seed,
            "n_jobs": model.n_jobs,
            "best_params": model.best_params_,
            "search": model.search_,
            "n_constant": int(model.n_constant_),
        }
        if model.model == "rf":
            spec["file"] = _forest_file(model.models_, folder, name)
            return spec
        files: list[str | None] = []
        constants: list[float | None] = []
        for j, m in enumerate(model.models_):
            if isinstance(m, float):
                files.append(None)
                constants.append(m)
                continue
            rel = f"members/{name}-a{j}.lgbm.txt"
            (folder / rel).write_text(m.booster_.model_to_string())
            files.append(rel)
            constants.append(None)
        spec["files"], spec["constants"] = files, constants
        return spec
    raise InvalidInputError(
        f"save_activity_model: cannot save a {type(model).__name__}; give a model that "
        "train_holdout trains (a network, a forest, a TreeBaseline or an ensemble of them)"
    )


def _load_forest(path: Path) -> list[Any]:
    import skops.io

    try:
        untrusted = skops.io.get_untrusted_types(file=str(path))
    except Exception as err:  # a broken zip or JSON schema: corrupted
        raise SavedModelError(
            f"{path}: not a readable skops file ({type(err).__name__}: {err}); the model is "
            "corrupted: save it again (cellframe activity CONFIG --save-model DIR)"
        ) from err
    unexpected = sorted(set(untrusted) - set(SKOPS_TRUSTED))
    if unexpected:
        raise SavedModelError(
            f"{path}: holds types cellframe does not load ({unexpected}); a cellframe model "
            "holds scikit-learn forests only: save the model again with cellframe"
        )
    return list(skops.io.load(str(path), trusted=list(SKOPS_TRUSTED)))


def _restore(spec: Mapping[str, Any], folder: Path, device: str | None) -> Any:
    """Rebuild a fitted model from its :func:`_model_spec` description."""
    from cellframe.activity.ensemble import CalibratedEnsemble
    from cellframe.activity.holdout import Ensemble, WithDescriptors
    from cellframe.activity.model import MultitaskClassifier, RandomForestBaseline
    from cellframe.activity.trees import TreeBaseline

    kind = spec["type"]
    if kind == "calibrated":
        members = {
            n: _restore(s, folder, device) for n, s in spec["members"].items() if s is not None
        }
        model = CalibratedEnsemble(
            members=members, per_assay=spec["per_assay"], calibrate=spec["calibrate"]
        )
        model.names_ = list(spec["names"])
        model.calibration_ = {
            n: np.asarray(spec["calibration"][n], dtype=np.float64) for n in model.names_
        }
        model.chosen_ = np.asarray(spec["chosen"], dtype=bool)
        model.members_ = list(spec["chosen_members"])
        model.search_ = list(spec["search"])
        return model
    if kind == "seeds":
        return Ensemble([_restore(s, folder, device) for s in spec["members"]])
    if kind == "with_descriptors":
        return WithDescriptors(_restore(spec["model"], folder, device))
    if kind == "network":
        import torch
        from safetensors.torch import load_file

        from cellframe.activity.networks import default_device

        params = dict(spec["params"])
        params["hidden_sizes"] = tuple(params["hidden_sizes"])
        net = MultitaskClassifier(**params, device=device)
        net.device_ = torch.device(device) if device else default_device()
        tensors = load_file(str(folder / spec["file"]))
        network = net._build(spec["n_inputs"], spec["n_tasks"])
        state = {k.removeprefix("state."): v for k, v in tensors.items() if k.startswith("state.")}
        network.load_state_dict(state, strict=True)
        net.network_ = network.to(net.device_).eval()
        if spec["has_scaling"]:
            net._mu, net._sd = tensors["mu"].numpy(), tensors["sd"].numpy()
        if spec["standardize"] is not None:
            net._standardize = spec["standardize"]
        return net
    if kind == "forest":
        forest = RandomForestBaseline(**spec["params"])
        forest.models_ = _load_forest(folder / spec["file"])
        forest.n_constant_ = spec["n_constant"]
        return forest
    if kind == "trees":
        trees = TreeBaseline(
            spec["model"], params=dict(spec["params"]), grid={}, seed=spec["seed"],
            n_jobs=spec["n_jobs"],
        )  # fmt: skip
        if spec["model"] == "rf":
            trees.models_ = _load_forest(folder / spec["file"])
        else:
            trees.models_ = [
                float(c) if f is None else LightGBMText((folder / f).read_text())
                for f, c in zip(spec["files"], spec["constants"], strict=True)
            ]
        trees.best_params_ = dict(spec["best_params"])
        trees.search_ = list(spec["search"])
        trees.n_constant_ = spec["n_constant"]
        return trees
    raise SavedModelError(f"{folder / MODEL_FILE}: unknown member type {kind!r}")


def _leaves(model: Any) -> Iterator[Any]:
    """The models that take inputs: an ensemble's (chosen) members, or the model itself."""
    from cellframe.activity.ensemble import CalibratedEnsemble
    from cellframe.activity.holdout import Ensemble

    if isinstance(model, CalibratedEnsemble):
        members = model.members or {}
        names = list(members)
        if hasattr(model, "chosen_"):  # the members averaged with weight 0 take no inputs
            used = model.chosen_.any(axis=0)
            names = [n for n, u in zip(model.names_, used, strict=True) if u and n in members]
        for n in names:
            yield from _leaves(members[n])
    elif isinstance(model, Ensemble):
        yield from model.members
    else:
        yield model


# -------------------------------------------------------------------- the model
@dataclass
class LibraryPrediction:
    """Arrays of :meth:`ActivityModel.predict_arrays`, one row per compound given.

    Attributes
    ----------
    probability : numpy.ndarray of float64, shape (n, n_assays)
        NaN for a compound whose SMILES does not parse.
    member_spread : numpy.ndarray of float64, shape (n, n_assays)
        Standard deviation of the averaged members' probabilities (0 for one member).
    train_similarity : numpy.ndarray of float64, shape (n,)
        Tanimoto similarity to the nearest training compound.
    parsed : numpy.ndarray of bool, shape (n,)
    """

    probability: np.ndarray
    member_spread: np.ndarray
    train_similarity: np.ndarray
    parsed: np.ndarray


@dataclass
class ActivityModel:
    """A fitted activity model with what it needs to predict new SMILES as its run did.

    Build one from a held-out run (:meth:`from_holdout`) or load a saved one
    (:func:`load_activity_model`); :meth:`predict` gives the long table of
    :data:`PREDICTION_SCHEMA`.

    Parameters
    ----------
    model : model
        A fitted model of :func:`~cellframe.activity.train_holdout` (network,
        forest, :class:`~cellframe.activity.trees.TreeBaseline`,
        :class:`~cellframe.activity.Ensemble`, :class:`~cellframe.activity.CalibratedEnsemble`).
    assays : list of str
        Output order of the model's assays.
    training_fingerprints : numpy.ndarray of uint8, shape (n_train, 256)
        The training compounds' Morgan bits (radius 2, 2048), ``np.packbits`` per row.
    descriptor_reference : list of numpy.ndarray of float64, or None
        Sorted finite training values of each RDKit descriptor (the CDF of
        :class:`~cellframe.activity.DescriptorNormalizer`); None when no member
        takes descriptors.
    training_smiles : list of str
    domain_threshold : float
    name : str
    provenance : dict
        JSON-serialisable facts about the run (versions, config, split, scores).
    workers : int or None, default None
        Descriptor worker processes (:func:`~cellframe.activity.rdkit_descriptors`).
    descriptor_cache : str or None, default None
        A descriptor cache file (``rdkit_descriptors(cache=)``): compounds seen
        before are looked up by canonical SMILES instead of computed, new ones
        are computed and added. Values come from the canonical SMILES, so a
        probability can differ from an uncached one in its last bits.
    path : str or None
        The directory it was loaded from.

    Attributes
    ----------
    timings : dict of str to list of float
        After :meth:`predict_arrays`: wall and CPU seconds per stage, summed
        over calls (parse, fingerprints + domain, descriptors, inputs and
        forward of each member, calibration).
    """

    model: Any
    assays: list[str]
    training_fingerprints: np.ndarray = field(repr=False)
    descriptor_reference: list[np.ndarray] | None = field(repr=False)
    training_smiles: list[str] = field(repr=False)
    domain_threshold: float = 0.3
    name: str = "model"
    provenance: dict[str, Any] = field(default_factory=dict, repr=False)
    workers: int | None = None
    descriptor_cache: str | None = None
    path: str | None = None
    timings: dict[str, list[float]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        from cellframe.activity.holdout import _input_kind

        self.kinds = {_input_kind(leaf) for leaf in _leaves(self.model)}
        takes_descriptors = any(k in ("trees", "morgan+desc", "graphs+desc") for k in self.kinds)
        if takes_descriptors and self.descriptor_reference is None:
            raise InvalidInputError(
                f"ActivityModel {self.name!r}: a member takes RDKit descriptors but no training "
                "descriptor reference was given"
            )
        self._reference_fps: list[Any] | None = None

    # ------------------------------------------------------------ construction
    @classmethod
    def from_holdout(
        cls, result: Any, name: str | None = None, *, provenance: Mapping[str, Any] | None = None
    ) -> ActivityModel:
        """The fitted model ``name`` of a :func:`~cellframe.activity.train_holdout` result.

        Parameters
        ----------
        result : HoldoutResult
        name : str, optional
            Which model (a key of ``result.fitted``); needed when there are several.
        provenance : mapping, optional
            Extra facts to keep (e.g. the experiment config); the split, the
            validation and test ROC-AUC and the versions are added.

        Returns
        -------
        ActivityModel

        Raises
        ------
        InvalidInputError
            If ``name`` is not a model of the run, or is needed and not given.
        """
        from cellframe.activity.chem import morgan_fingerprints

        fitted = result.fitted
        if name is None:
            if len(fitted) != 1:
                raise InvalidInputError(
                    f"the run trained {len(fitted)} models ({sorted(fitted)}); name the one to keep"
                )
            name = next(iter(fitted))
        if name not in fitted:
            raise InvalidInputError(
                f"the run has no model {name!r}; its models are {sorted(fitted)}"
            )
        training = result.training
        if training is None:
            raise InvalidInputError("the held-out result has no training set to keep")
        fps = morgan_fingerprints(training.molecules, **FINGERPRINT)
        reference = None
        if training.descriptors is not None:
            from cellframe.activity.descriptors import DescriptorNormalizer

            reference = DescriptorNormalizer().fit(training.descriptors).sorted_
        metrics = result.metrics.filter(pl.col("model") == name)
        test_auroc = metrics["auroc"].cast(pl.Float64).fill_nan(None).mean()
        facts = {
            "model": name,
            "cellframe_version": _cellframe_version(),
            "split": training.split,
            "fractions": list(training.fractions),
            "seed": training.seed,
            "n_train": training.n_parts[0],
            "n_validation": training.n_parts[1],
            "n_test": training.n_parts[2],
            "validation_auroc": _finite(result.validation_auroc.get(name)),
            "test_auroc": _finite(test_auroc),
            "test_auroc_per_assay": dict(
                zip(
                    metrics["assay"].to_list(),
                    map(_finite, metrics["auroc"].to_list()),
                    strict=True,
                )
            ),
            **dict(provenance or {}),
        }
        model = cls(
            model=fitted[name],
            assays=list(training.assays),
            training_fingerprints=np.packbits(fps.astype(bool), axis=1),
            descriptor_reference=reference,
            training_smiles=list(training.smiles),
            domain_threshold=training.domain_threshold,
            name=name,
            provenance=facts,
        )
        # The run's molecules, not the SMILES parsed again: fingerprints straight from them.
        model._reference_fps = _bit_vectors_of(model.training_fingerprints)
        return model

    def provenance_summary(self) -> dict[str, Any]:
        """Scalar facts about the model for the provenance of a prediction table."""
        facts = self.provenance
        keys = ("split", "seed", "n_train", "validation_auroc", "test_auroc", "cellframe_version")
        out = {f"model_{k}": facts[k] for k in keys if k in facts}
        if self.path is not None:
            out["model_path"] = self.path
        return out

    # ------------------------------------------------------------- prediction
    @contextmanager
    def _stage(self, name: str) -> Iterator[None]:
        t0, c0 = time.perf_counter(), _cpu_seconds()
        yield
        wall, cpu = self.timings.setdefault(name, [0.0, 0.0])
        self.timings[name] = [wall + time.perf_counter() - t0, cpu + _cpu_seconds() - c0]

    def _inputs(self, kind: str, mols: list[Any], descriptors: np.ndarray | None) -> Any:
        """A member's inputs, made as :func:`~cellframe.activity.train_holdout` made them."""
        from cellframe.activity.chem import morgan_fingerprints
        from cellframe.activity.descriptors import DescriptorNormalizer
        from cellframe.activity.graph import featurize_molecules

        if kind in ("trees", "morgan+desc", "graphs+desc"):
            assert descriptors is not None and self.descriptor_reference is not None
            # The CDF of the training part: tree_features fills a missing value with
            # NaN (the trees' "missing"), the networks' normalizer with 0.
            norm = DescriptorNormalizer(fill_value=np.nan if kind == "trees" else 0.0)
            norm.sorted_ = self.descriptor_reference
            z = norm.transform(descriptors)
            if kind == "trees":
                counts = morgan_fingerprints(mols, counts=True, **FINGERPRINT).astype(np.float32)
                return np.hstack([counts, z.astype(np.float32)]) if z.shape[1] else counts
            if kind == "graphs+desc":
                return featurize_molecules(mols, extra=z)
            return np.hstack([morgan_fingerprints(mols, **FINGERPRINT).astype(np.float32), z])
        if kind == "graphs":
            return featurize_molecules(mols)
        return morgan_fingerprints(mols, **FINGERPRINT)

    def _forward(self, mols: list[Any], descriptors: np.ndarray | None) -> tuple[Any, Any]:
        from cellframe.activity.ensemble import CalibratedEnsemble
        from cellframe.activity.holdout import Ensemble, _input_kind

        n = len(mols)
        cache: dict[str, Any] = {}

        def predict(label: str, member: Any) -> np.ndarray:
            kind = _input_kind(member)
            if kind not in cache:
                with self._stage(f"inputs: {kind}"):
                    cache[kind] = self._inputs(kind, mols, descriptors)
            with self._stage(f"forward: {label}"):
                if isinstance(member, Ensemble):
                    return member.member_probabilities(cache[kind])
                return member.predict_proba(cache[kind])

        model = self.model
        if isinstance(model, CalibratedEnsemble):
            chosen = model.chosen_.any(axis=0)
            probs = {}
            for m, member_name in enumerate(model.names_):
                if chosen[m]:
                    p = predict(member_name, model.members[member_name])
                    probs[member_name] = p.mean(axis=0) if p.ndim == 3 else p
                else:  # weight 0 in the average: never computed
                    probs[member_name] = np.zeros((n, len(self.assays)))
            with self._stage("calibration"):
                return model.combine(probs)
        p = predict(self.name, model)
        if isinstance(model, Ensemble):
            return p.mean(axis=0), p.std(axis=0)
        return p, np.zeros_like(p)

    def _domain(self, mols: list[Any]) -> np.ndarray:
        from cellframe.activity.uncertainty import nearest_similarity

        if self._reference_fps is None:
            self._reference_fps = _bit_vectors_of(self.training_fingerprints)
        return nearest_similarity(
            mols, self._reference_fps, radius=FINGERPRINT["radius"], n_bits=FINGERPRINT["n_bits"]
        )

    def predict_arrays(self, molecules: Sequence[Any]) -> LibraryPrediction:
        """Probabilities, member spread and training similarity of each molecule.

        Parameters
        ----------
        molecules : sequence of str or rdkit Mol
            SMILES (parsed as given) or molecules; ``None`` or an unparseable
            SMILES gets NaN everywhere (no warning here: :meth:`predict` counts them).

        Returns
        -------
        LibraryPrediction
        """
        from cellframe.activity.chem import parse_smiles

        items = list(molecules)
        with self._stage("parse SMILES"):
            if items and all(isinstance(m, str) or m is None for m in items):
                mols = parse_smiles(items, warn=False)
            else:
                mols = items
        parsed = np.array([m is not None for m in mols], dtype=bool)
        good = [m for m in mols if m is not None]
        n, a = len(mols), len(self.assays)
        prob = np.full((n, a), np.nan)
        spread = np.full((n, a), np.nan)
        similarity = np.full(n, np.nan)
        if good:
            with self._stage("fingerprints + domain"):
                similarity[parsed] = self._domain(good)
            descriptors = None
            if any(k in ("trees", "morgan+desc", "graphs+desc") for k in self.kinds):
                from cellframe.activity.descriptors import rdkit_descriptors

                with self._stage("RDKit descriptors"):
                    descriptors = rdkit_descriptors(
                        good, workers=self.workers, cache=self.descriptor_cache
                    )
            p, s = self._forward(good, descriptors)
            prob[parsed] = np.asarray(p, dtype=np.float64)
            spread[parsed] = np.asarray(s, dtype=np.float64)
        return LibraryPrediction(prob, spread, similarity, parsed)

    def predict(
        self,
        smiles: Sequence[str | None],
        *,
        compounds: Sequence[str] | None = None,
        where: str = "the SMILES given",
    ) -> pl.DataFrame:
        """The long prediction table of some compounds: one row per compound and assay.

        Parameters
        ----------
        smiles : sequence of str
            SMILES, parsed as given (as the run parsed its matrix's).
        compounds : sequence of str, optional
            Identifiers (default: the SMILES).
        where : str
            Name of the source, for the warning.

        Returns
        -------
        polars.DataFrame
            :data:`PREDICTION_SCHEMA`: ``compound``, ``smiles``, ``assay``,
            ``probability``, ``member_spread``, ``train_similarity``,
            ``in_domain``; nulls (never a dropped row) where a SMILES does not parse.

        Warns
        -----
        UnparsedLibraryWarning
            With the count of unparseable SMILES and the first few.

        Examples
        --------
        Train a small forest on a held-out split, keep it, predict two new compounds:

        >>> import warnings
        >>> from cellframe.activity import RandomForestBaseline, train_holdout
        >>> from cellframe.activity.matrix import read_assay_subset
        >>> from cellframe.demo import demo_data_dir
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     tox21 = read_assay_subset(demo_data_dir() / "moleculenet" / "tox21.csv.gz",
        ...                               300, ["SR-ARE", "SR-MMP"])
        ...     run = train_holdout(tox21, {"rf": RandomForestBaseline(n_estimators=10)})
        >>> model = ActivityModel.from_holdout(run)
        >>> table = model.predict(["CCO", "c1ccccc1O"], compounds=["ethanol", "phenol"])
        >>> table.columns
        ['compound', 'smiles', 'assay', 'probability', 'member_spread', 'train_similarity', 'in_domain']
        >>> table.select("compound", "assay").rows()
        [('ethanol', 'SR-ARE'), ('ethanol', 'SR-MMP'), ('phenol', 'SR-ARE'), ('phenol', 'SR-MMP')]
        >>> bool(table["probability"].is_between(0, 1).all())
        True
        """
        smiles = list(smiles)
        ids = list(compounds) if compounds is not None else list(smiles)
        if len(ids) != len(smiles):
            raise InvalidInputError(
                f"{len(ids)} compound ids for {len(smiles)} SMILES; give one id per SMILES"
            )
        out = self.predict_arrays(smiles)
        n_bad = int((~out.parsed).sum())
        if n_bad:
            bad = [f"{ids[i]!r} ({smiles[i]!r})" for i in np.flatnonzero(~out.parsed)[:5]]
            warnings.warn(
                f"{n_bad} of {len(smiles)} compounds of {where} have a SMILES RDKit cannot "
                f"parse ({', '.join(bad)}{', ...' if n_bad > 5 else ''}); their rows are kept "
                "with a null probability",
                UnparsedLibraryWarning,
                stacklevel=2,
            )
        return self.table(ids, smiles, out)

    def table(
        self, compounds: Sequence[Any], smiles: Sequence[Any], out: LibraryPrediction
    ) -> pl.DataFrame:
        """The long table (:data:`PREDICTION_SCHEMA`) of :meth:`predict_arrays`' output.

        Parameters
        ----------
        compounds, smiles : sequence
            One per row of ``out`` (written as they are).
        out : LibraryPrediction

        Returns
        -------
        polars.DataFrame
            One row per compound and assay, compounds in order; NaN written as null.
        """
        n, a = out.probability.shape
        sim = np.repeat(out.train_similarity, a)
        frame = pl.DataFrame(
            {
                "compound": pl.Series(
                    np.repeat(np.array(compounds, dtype=object), a), dtype=pl.String
                ),
                "smiles": pl.Series(np.repeat(np.array(smiles, dtype=object), a), dtype=pl.String),
                "assay": pl.Series(
                    np.tile(np.array(self.assays, dtype=object), n), dtype=pl.String
                ),
                "probability": pl.Series(out.probability.ravel(), dtype=pl.Float64),
                "member_spread": pl.Series(out.member_spread.ravel(), dtype=pl.Float64),
                "train_similarity": pl.Series(sim, dtype=pl.Float64),
            }
        )
        frame = frame.with_columns(
            pl.col("probability", "member_spread", "train_similarity").fill_nan(None)
        )
        return frame.with_columns(
            (pl.col("train_similarity") >= self.domain_threshold).alias("in_domain")
        )

    # ------------------------------------------------------------------ saving
    def save(self, path: str | Path) -> Path:
        """Write the model to the directory ``path``, atomically.

        Parameters
        ----------
        path : str or Path
            The model directory. An existing cellframe model there is replaced
            (only once the new one is complete); any other existing path is refused.

        Returns
        -------
        Path

        Raises
        ------
        SavedModelError
            If ``path`` is an existing file or a folder that is not a cellframe model,
            or its parent folder does not exist. Nothing is left behind on error.
        """
        path = Path(path)
        staged = self._stage_files(path)
        _commit(staged, path)
        return path

    def _stage_files(self, path: Path) -> Path:
        """Write every file to a temporary sibling of ``path``; returns that folder."""
        from safetensors.numpy import save_file

        check_model_path(path)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
        try:
            (tmp / "members").mkdir()
            spec = _model_spec(self.model, tmp, [0])
            arrays = {"fingerprints": np.ascontiguousarray(self.training_fingerprints)}
            if self.descriptor_reference is not None:
                ref = self.descriptor_reference
                arrays["descriptor_values"] = (
                    np.concatenate(ref) if ref else np.zeros(0, dtype=np.float64)
                ).astype(np.float64)
                arrays["descriptor_counts"] = np.array([r.size for r in ref], dtype=np.int64)
            save_file(arrays, str(tmp / "training.safetensors"))
            bad = [s for s in self.training_smiles if "\n" in s or "\r" in s]
            if bad:
                raise InvalidInputError(f"a training SMILES holds a line break: {bad[0]!r}")
            (tmp / "training_smiles.txt").write_text(
                "".join(s + "\n" for s in self.training_smiles)
            )
            files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
            doc = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "cellframe_version": _cellframe_version(),
                "versions": _library_versions(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "name": self.name,
                "assays": list(self.assays),
                "fingerprint": dict(FINGERPRINT),
                "domain_threshold": self.domain_threshold,
                "n_training_compounds": len(self.training_smiles),
                "descriptors": self.descriptor_reference is not None,
                "model": spec,
                "provenance": self.provenance,
                "files": {f: _sha256(tmp / f) for f in files},
            }
            (tmp / MODEL_FILE).write_text(json.dumps(doc, indent=1, default=_json_default) + "\n")
            # mkdtemp makes a private folder: give the model the user's usual permissions.
            umask = os.umask(0)
            os.umask(umask)
            for p in [tmp, *tmp.rglob("*")]:
                os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~umask)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return tmp


def _finite(value: Any) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple | set):
        return list(value)
    return str(value)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _bit_vectors_of(packed: np.ndarray) -> list[Any]:
    from rdkit import DataStructs

    out = []
    n_bits = FINGERPRINT["n_bits"]
    for row in np.unpackbits(packed, axis=1, count=n_bits):
        fp = DataStructs.ExplicitBitVect(n_bits)
        fp.SetBitsFromList(np.flatnonzero(row).tolist())
        out.append(fp)
    return out


def _is_model_dir(path: Path) -> bool:
    try:
        return json.loads((path / MODEL_FILE).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def check_model_path(path: str | Path) -> Path:
    """Refuse a model path that cannot be written, before any training.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    Path

    Raises
    ------
    SavedModelError
        If the parent folder is missing, or ``path`` exists and is not a cellframe model.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise SavedModelError(
            f"cannot save the model to {path}: the folder {path.parent} does not exist; create "
            "it first"
        )
    if path.exists() and not (path.is_dir() and _is_model_dir(path)):
        raise SavedModelError(
            f"cannot save the model to {path}: it exists and is not a cellframe activity model "
            "(it is never overwritten); choose another path or remove it"
        )
    return path


def _commit(staged: Path, path: Path) -> None:
    """Rename the staged folder to ``path``, replacing an older model only once it is whole."""
    old = None
    if path.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
        os.rename(path, old / path.name)
    try:
        os.rename(staged, path)
    except BaseException:
        if old is not None:
            os.rename(old / path.name, path)
            shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(staged, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def save_activity_model(
    result: Any,
    path: str | Path,
    *,
    name: str | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> ActivityModel:
    """Save the fitted model ``name`` of a held-out run to the directory ``path``.

    Parameters
    ----------
    result : HoldoutResult
        Of :func:`~cellframe.activity.train_holdout`.
    path : str or Path
        The model directory (written atomically; see :meth:`ActivityModel.save`).
    name : str, optional
        Which of the run's models (needed when it trained several).
    provenance : mapping, optional
        Extra facts to keep (the config, ...).

    Returns
    -------
    ActivityModel
        The in-memory model that was saved.

    Raises
    ------
    InvalidInputError
        If ``name`` is not one of the run's models.
    SavedModelError
        If ``path`` cannot be written (see :func:`check_model_path`).
    """
    model = ActivityModel.from_holdout(result, name, provenance=provenance)
    model.save(path)
    return model


def _corrupt(path: Path, what: str) -> SavedModelError:
    return SavedModelError(
        f"{path}: {what}; the model directory is corrupted or incomplete: save it again "
        "(cellframe activity CONFIG --save-model DIR)"
    )


def load_activity_model(
    path: str | Path,
    *,
    device: str | None = None,
    workers: int | None = None,
    descriptor_cache: str | Path | None = None,
) -> ActivityModel:
    """Read a model directory written by :func:`save_activity_model`.

    Parameters
    ----------
    path : str or Path
        The model directory.
    device : str, optional
        Where the networks run (``"cpu"``, ``"cuda"``); default: CUDA when present.
    workers : int, optional
        Descriptor worker processes for predictions (default: one per core
        from 2,000 molecules on).
    descriptor_cache : str or Path, optional
        A descriptor cache file kept across predictions (see
        :class:`ActivityModel`): re-predicting a library costs a lookup.

    Returns
    -------
    ActivityModel

    Raises
    ------
    SavedModelError
        If ``path`` is not a model directory, a file is missing, or a file's
        checksum differs from the one recorded (corrupted).
    SavedModelVersionError
        If the model was written by another format version or another
        cellframe version (retrain, or use that version).

    Warns
    -----
    SavedModelVersionWarning
        When RDKit, scikit-learn, LightGBM, torch, skops or NumPy differ from
        the versions the model was saved with.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(path)
    meta_path = path / MODEL_FILE
    if not path.is_dir():
        from cellframe.errors import InputNotFoundError

        raise InputNotFoundError(
            f"no activity model at {path}: save one with cellframe activity CONFIG "
            "--save-model DIR (or save_activity_model)"
        )
    if not meta_path.is_file():
        raise SavedModelError(
            f"{path} holds no {MODEL_FILE}: it is not a cellframe activity model directory; "
            "give the folder written by cellframe activity CONFIG --save-model DIR"
        )
    try:
        doc = json.loads(meta_path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise _corrupt(meta_path, f"not valid JSON ({err})") from err
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise SavedModelError(
            f"{meta_path}: not a cellframe activity model (format {doc.get('format') if isinstance(doc, dict) else None!r}); "
            "give the folder written by cellframe activity CONFIG --save-model DIR"
        )
    if doc.get("format_version") != FORMAT_VERSION:
        raise SavedModelVersionError(
            f"{meta_path}: model format version {doc.get('format_version')!r}, this cellframe "
            f"reads version {FORMAT_VERSION}; retrain and save the model with this cellframe "
            "(cellframe activity CONFIG --save-model DIR)"
        )
    version = _cellframe_version()
    if doc.get("cellframe_version") != version:
        raise SavedModelVersionError(
            f"{meta_path}: saved by cellframe {doc.get('cellframe_version')!r}, this is "
            f"cellframe {version}; its features may differ: retrain and save the model with "
            f"this cellframe, or install cellframe {doc.get('cellframe_version')} to use it"
        )
    try:
        files = dict(doc["files"])
        for rel, digest in files.items():
            f = path / rel
            if not f.is_file():
                raise _corrupt(f, "missing")
            if _sha256(f) != digest:
                raise _corrupt(f, "its SHA-256 differs from the one recorded in model.json")
        changed = {
            k: (v, now)
            for k, now in _library_versions().items()
            if (v := doc.get("versions", {}).get(k)) is not None and v != now
        }
        if changed:
            shown = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in sorted(changed.items()))
            warnings.warn(
                f"{meta_path}: saved with other library versions ({shown}); predictions may "
                "differ from the run's: retrain the model with these versions to be sure",
                SavedModelVersionWarning,
                stacklevel=2,
            )
        with warnings.catch_warnings():
            # skops/sklearn warn when the scikit-learn version differs: said once above.
            warnings.filterwarnings("ignore", message=".*[Vv]ersion.*")
            model = _restore(doc["model"], path, device)
        arrays = load_file(str(path / "training.safetensors"))
        reference = None
        if doc["descriptors"]:
            values, counts = arrays["descriptor_values"], arrays["descriptor_counts"]
            reference = list(np.split(values, np.cumsum(counts)[:-1])) if counts.size else []
        smiles = (path / "training_smiles.txt").read_text().splitlines()
        fingerprints = arrays["fingerprints"]
        if not len(smiles) == fingerprints.shape[0] == doc["n_training_compounds"]:
            raise _corrupt(path, "the training SMILES and fingerprints do not match")
        return ActivityModel(
            model=model,
            assays=list(doc["assays"]),
            training_fingerprints=fingerprints,
            descriptor_reference=reference,
            training_smiles=smiles,
            domain_threshold=float(doc["domain_threshold"]),
            name=str(doc["name"]),
            provenance=dict(doc.get("provenance", {})),
            workers=workers,
            descriptor_cache=None if descriptor_cache is None else str(descriptor_cache),
            path=str(path),
        )
    except SavedModelError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError, OSError, SafetensorError) as err:
        raise _corrupt(path, f"cannot be read ({type(err).__name__}: {err})") from err
