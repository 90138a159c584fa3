"""Train on one part of an assay matrix, score on a held-out part.

The quick, single-split counterpart of :func:`cellframe.activity.cross_validate`,
used by ``cellframe demo``: one train/validation/test partition (scaffold or
random, fixed seed), each model trained once on the training part (the network
stops early on the validation part; a forest ignores it), and per-assay AUROC
on the test part. The held-out predictions are returned too, so every AUROC can
be recomputed from them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from cellframe.activity.chem import InvalidSmilesWarning
from cellframe.activity.columns import ASSAY, FOLD, MODALITY, PROBABILITY, READOUT
from cellframe.activity.ensemble import CalibratedEnsemble
from cellframe.activity.graph import GraphSet
from cellframe.activity.matrix import AssayMatrix
from cellframe.activity.model import MultitaskClassifier, RandomForestBaseline
from cellframe.activity.splits import random_partition, scaffold_partition
from cellframe.activity.trees import TreeBaseline
from cellframe.activity.uncertainty import DOMAIN_THRESHOLD
from cellframe.errors import InvalidChoiceError, InvalidInputError, MissingColumnsError

__all__ = [
    "HOLDOUT_SPLITS",
    "Ensemble",
    "HoldoutResult",
    "TrainingSet",
    "UnparsedCompoundsWarning",
    "UnscoredAssayWarning",
    "WithDescriptors",
    "holdout_metrics",
    "mean_auroc_per_model",
    "train_holdout",
]

#: Column names of the tables :func:`train_holdout` returns (plain names: the
#: demo stores them as ``activity_trained`` and ``activity_predictions``).
COMPOUND_COL, SMILES_COL, ASSAY_COL, MODEL_COL, SPLIT_COL = (
    "compound",
    "smiles",
    "assay",
    "model",
    "split",
)

Partition = Callable[..., np.ndarray]

#: Columns of :attr:`HoldoutResult.selection`.
SELECTION_SCHEMA = {
    "model": pl.String,
    "members": pl.String,
    "validation_auroc": pl.Float64,
    "chosen": pl.Boolean,
}


def _scaffold(smiles: Sequence[str], fractions: Sequence[float], seed: int) -> np.ndarray:
    return scaffold_partition(smiles, fractions=fractions)  # deterministic: no seed needed


def _random(smiles: Sequence[str], fractions: Sequence[float], seed: int) -> np.ndarray:
    return random_partition(len(smiles), fractions=fractions, seed=seed)


#: Train/validation/test partitions by name: ``f(smiles, fractions, seed)`` ->
#: 0 (train), 1 (validation) or 2 (test) per compound.
HOLDOUT_SPLITS: dict[str, Partition] = {"random": _random, "scaffold": _scaffold}


class UnparsedCompoundsWarning(InvalidSmilesWarning):
    """Compounds whose SMILES RDKit cannot parse were left out of training and testing.

    An :class:`~cellframe.activity.chem.InvalidSmilesWarning`, so one filter on
    that class covers every report of unparseable SMILES.
    """


class UnscoredAssayWarning(UserWarning):
    """An assay's held-out readouts hold one class only, so it has no AUROC."""


@dataclass
class TrainingSet:
    """What a fitted model of :func:`train_holdout` needs to predict new compounds as the run did.

    Kept by :attr:`HoldoutResult.training` so that
    :func:`~cellframe.activity.saved.save_activity_model` can write the model
    with its inputs' settings; nothing here is recomputed.

    Attributes
    ----------
    smiles : list of str
        The training compounds' SMILES, as the matrix holds them.
    molecules : list of rdkit.Chem.Mol
        The training compounds as the run parsed them (their Morgan fingerprints
        are the applicability domain's reference).
    descriptors : numpy.ndarray of float64, shape (n_train, n_descriptors), or None
        The training compounds' raw RDKit descriptors (the CDF of every model
        that takes descriptors is fitted on them); None when no model took any.
    assays : list of str
        The assays, in the models' output order.
    split : str
        Name of the partition (``"scaffold"``, ``"random"``, ``"column"``, ...).
    fractions : tuple of float
        Train, validation and test fractions asked for.
    seed : int
        Seed of the partition.
    n_parts : tuple of int
        Compounds in the training, validation and test parts.
    domain_threshold : float
        ``in_domain`` is ``train_similarity >= domain_threshold``.
    """

    smiles: list[str]
    molecules: list[Any] = field(repr=False)
    descriptors: np.ndarray | None = field(repr=False)
    assays: list[str]
    split: str
    fractions: tuple[float, ...]
    seed: int
    n_parts: tuple[int, int, int]
    domain_threshold: float


@dataclass
class HoldoutResult:
    """What :func:`train_holdout` made.

    Attributes
    ----------
    metrics : polars.DataFrame
        One row per model and assay: ``assay`` (str), ``model`` (str), ``split``
        (str), ``auroc`` (float; null where the test readouts hold one class
        only), ``n_train``, ``n_test``, ``n_test_positive`` (int64; observed
        readouts of that assay among the training and test compounds).
    predictions : polars.DataFrame
        One row per model and observed test readout: ``compound``, ``smiles``,
        ``assay``, ``model``, ``split``, ``readout`` (Int8, 0/1),
        ``probability`` (Float64), and the uncertainty of that prediction:
        ``train_similarity`` (Float64, Tanimoto of the compound's Morgan
        fingerprint to its nearest training compound), ``in_domain`` (Boolean,
        ``train_similarity >= domain_threshold``), ``member_spread`` (Float64,
        standard deviation over the members of an :class:`Ensemble`; 0 for a
        single model), ``ensemble_spread`` (Float64, standard deviation of the
        probabilities the run's models give this compound and assay; 0 with one
        model) and ``n_models`` (Int64).
    partition : numpy.ndarray, shape (n_compounds,)
        0 (train), 1 (validation), 2 (test) per compound kept; -1 for the
        compounds left out because RDKit cannot parse their SMILES.
    n_unparsed : int
        Compounds left out because RDKit cannot parse their SMILES.
    selection : polars.DataFrame
        For each :class:`~cellframe.activity.CalibratedEnsemble`, every candidate
        subset of its members: ``model`` (str), ``members`` (str, comma-separated),
        ``validation_auroc`` (Float64, mean over the assays of the calibrated
        average on the validation part) and ``chosen`` (Boolean), best first.
        Empty without an ensemble.
    fitted : dict of str to model
        The models given to :func:`train_holdout`, now fitted, by name
        (:func:`~cellframe.activity.saved.save_activity_model` saves one).
    training : TrainingSet or None
        The training compounds and the settings the models' inputs were made with.
    validation_auroc : dict of str to float
        Mean validation ROC-AUC over the assays, per model (NaN where no
        assay's validation readouts hold both classes); a
        :class:`~cellframe.activity.CalibratedEnsemble`'s is that of its chosen members.
    """

    metrics: pl.DataFrame
    predictions: pl.DataFrame
    partition: np.ndarray
    n_unparsed: int
    selection: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=SELECTION_SCHEMA))
    fitted: dict[str, Any] = field(default_factory=dict, repr=False)
    training: TrainingSet | None = field(default=None, repr=False)
    validation_auroc: dict[str, float] = field(default_factory=dict)


@dataclass
class WithDescriptors:
    """A :class:`MultitaskClassifier` that also gets the RDKit 2D descriptors.

    In :func:`train_holdout` the 217 descriptors, mapped through the empirical
    CDF of the training part (:class:`~cellframe.activity.DescriptorNormalizer`),
    are appended to the Morgan fingerprints (``encoder="ffn"``) or to the pooled
    D-MPNN encoding (``encoder="dmpnn"``): Chemprop's ``rdkit_2d_normalized``
    recipe (docs/activity.md, ``dmpnn-desc``).

    Parameters
    ----------
    model : MultitaskClassifier
    """

    model: MultitaskClassifier

    def __post_init__(self) -> None:
        if not isinstance(self.model, MultitaskClassifier):
            raise InvalidInputError(
                f"WithDescriptors wraps a MultitaskClassifier, not a {type(self.model).__name__}; "
                "a TreeBaseline gets the descriptors already"
            )

    def fit(self, *args: Any, **kwargs: Any) -> WithDescriptors:
        """Fit the wrapped network (same arguments as :meth:`MultitaskClassifier.fit`)."""
        self.model.fit(*args, **kwargs)
        return self

    def predict_proba(self, inputs: Any) -> np.ndarray:
        """Probabilities of the wrapped network."""
        return self.model.predict_proba(inputs)


@dataclass
class Ensemble:
    """Members of one kind (seeds of a network or a tree model) averaged into one model.

    In :func:`train_holdout` every member is fitted on the same parts; the
    ensemble predicts the mean of the members' probabilities, and its rows of
    the prediction table carry ``member_spread``: the standard deviation of the
    members' probabilities (the per-compound uncertainty of the ensemble).

    Parameters
    ----------
    members : list
        Unfitted models of one input kind, e.g. ``[MultitaskClassifier(seed=s)
        for s in range(3)]`` (docs/activity.md: ``--ensemble 3``).
    """

    members: list[Any]

    def __post_init__(self) -> None:
        if not self.members:
            raise InvalidInputError("Ensemble(members=[]): give at least one model")
        kinds = {_input_kind(m) for m in self.members}
        if len(kinds) > 1:
            raise InvalidInputError(
                f"Ensemble members take different inputs ({sorted(kinds)}); give models of one kind"
            )

    def fit(self, x: Any, y: np.ndarray, validation: Any = None) -> Ensemble:
        """Fit every member (with the validation part where the member takes one)."""
        for m in self.members:
            if isinstance(m, MultitaskClassifier | TreeBaseline | WithDescriptors):
                m.fit(x, y, validation=validation)
            else:
                m.fit(x, y)
        return self

    def member_probabilities(self, inputs: Any) -> np.ndarray:
        """``(n_members, n_compounds, n_assays)`` probabilities."""
        return np.stack([m.predict_proba(inputs) for m in self.members])

    def predict_proba(self, inputs: Any) -> np.ndarray:
        """Mean of the members' probabilities."""
        return self.member_probabilities(inputs).mean(axis=0)


def _input_kind(model: Any) -> str:
    """``"graphs"`` (D-MPNN), ``"trees"`` (TreeBaseline) or ``"morgan"`` (forest, dense net).

    A :class:`WithDescriptors` network gets its kind plus ``"+desc"``.
    """
    if isinstance(model, WithDescriptors):
        return _input_kind(model.model) + "+desc"
    if isinstance(model, Ensemble):
        return _input_kind(model.members[0])
    if isinstance(model, CalibratedEnsemble):
        if not model.members:
            raise InvalidInputError(
                "CalibratedEnsemble without members: give members={name: model} to train it"
            )
        for member in model.members.values():
            _input_kind(member)  # each member must be a model train_holdout can train
        return "mixed"
    if isinstance(model, MultitaskClassifier) and model.encoder == "dmpnn":
        return "graphs"
    if isinstance(model, TreeBaseline):
        return "trees"
    if isinstance(model, MultitaskClassifier | RandomForestBaseline):
        return "morgan"
    raise InvalidInputError(
        f"cannot train a {type(model).__name__}: give a TreeBaseline, a RandomForestBaseline "
        "or a MultitaskClassifier (encoder 'ffn' on Morgan fingerprints or 'dmpnn' on graphs)"
    )


def _featurize(
    kind: str, mols: list[Any], train: np.ndarray, descriptors: np.ndarray | None
) -> np.ndarray | GraphSet:
    from cellframe.activity.chem import morgan_fingerprints
    from cellframe.activity.graph import featurize_molecules
    from cellframe.activity.trees import tree_features

    if kind == "trees":  # descriptor CDF from the training part only
        return tree_features(mols, train=train, descriptors=descriptors)
    if kind.endswith("+desc"):
        from cellframe.activity.descriptors import DescriptorNormalizer, rdkit_descriptors

        raw = rdkit_descriptors(mols) if descriptors is None else descriptors
        z = DescriptorNormalizer().fit(raw[train]).transform(raw)
        if kind == "graphs+desc":
            return featurize_molecules(mols, extra=z)
        return np.hstack([morgan_fingerprints(mols).astype(np.float32), z])
    return featurize_molecules(mols) if kind == "graphs" else morgan_fingerprints(mols)


def _take(inputs: np.ndarray | GraphSet, index: np.ndarray) -> np.ndarray | GraphSet:
    return inputs.subset(index) if isinstance(inputs, GraphSet) else inputs[index]


def holdout_metrics(predictions: pl.DataFrame, n_train: Mapping[str, int]) -> pl.DataFrame:
    """Per-assay held-out AUROC of each model, from long predictions.

    AUROC is computed by :func:`cellframe.activity.assay_fold_metrics`
    (scikit-learn's ``roc_auc_score``); an assay whose test readouts hold one
    class only gets a null AUROC and an :class:`UnscoredAssayWarning` stating
    how many such rows there are.

    Parameters
    ----------
    predictions : polars.DataFrame
        ``assay, model, split, readout, probability`` per observed test readout.
    n_train : mapping of str to int
        Observed training readouts per assay.

    Returns
    -------
    polars.DataFrame
        ``assay, model, split, auroc, n_train, n_test, n_test_positive``,
        sorted by model and assay.
    """
    from cellframe.activity.metrics import assay_fold_metrics

    split = predictions.select(MODEL_COL, SPLIT_COL).unique()
    per_fold = assay_fold_metrics(
        predictions.select(
            pl.col(MODEL_COL).alias(MODALITY),
            pl.col(ASSAY_COL).alias(ASSAY),
            pl.lit(0, pl.Int64).alias(FOLD),
            pl.col(READOUT),
            pl.col(PROBABILITY),
        )
    )
    metrics = (
        per_fold.join(split, left_on=MODALITY, right_on=MODEL_COL, how="left")
        .select(
            pl.col(ASSAY).alias(ASSAY_COL),
            pl.col(MODALITY).alias(MODEL_COL),
            pl.col(SPLIT_COL),
            pl.col("auroc").cast(pl.Float64),
            pl.col(ASSAY).replace_strict(dict(n_train), return_dtype=pl.Int64).alias("n_train"),
            (pl.col("n_positive") + pl.col("n_negative")).cast(pl.Int64).alias("n_test"),
            pl.col("n_positive").cast(pl.Int64).alias("n_test_positive"),
        )
        .sort(MODEL_COL, ASSAY_COL)
    )
    n_null = int(metrics["auroc"].is_null().sum())
    if n_null:
        warnings.warn(
            f"{n_null} of {metrics.height} model x assay rows have no AUROC: their test "
            "readouts hold one class only (auroc is null there)",
            UnscoredAssayWarning,
            stacklevel=2,
        )
    return metrics


def mean_auroc_per_model(metrics: pl.DataFrame) -> pl.DataFrame:
    """Mean held-out AUROC per model over the assays that have one.

    Parameters
    ----------
    metrics : polars.DataFrame
        ``model`` and ``auroc`` columns (:attr:`HoldoutResult.metrics`); null or
        NaN = no AUROC (never averaged, counted in ``n_without``).

    Returns
    -------
    polars.DataFrame
        ``model``, ``mean_auroc`` (null when no assay has a value), ``n_assays``,
        ``n_without``, in order of first appearance.

    Examples
    --------
    >>> m = pl.DataFrame({"model": ["a", "a", "b"], "auroc": [0.8, float("nan"), None]})
    >>> mean_auroc_per_model(m).rows()
    [('a', 0.8, 2, 1), ('b', None, 1, 1)]
    """
    missing = [c for c in (MODEL_COL, "auroc") if c not in metrics.columns]
    if missing:
        raise MissingColumnsError("the held-out metrics", missing)
    value = pl.col("auroc").cast(pl.Float64).fill_nan(None)
    return metrics.group_by(MODEL_COL, maintain_order=True).agg(
        value.mean().alias("mean_auroc"),
        pl.len().cast(pl.Int64).alias("n_assays"),
        value.is_null().sum().cast(pl.Int64).alias("n_without"),
    )


def train_holdout(
    matrix: AssayMatrix,
    models: Mapping[
        str,
        MultitaskClassifier
        | RandomForestBaseline
        | TreeBaseline
        | WithDescriptors
        | Ensemble
        | CalibratedEnsemble,
    ],
    *,
    split: str | Partition = "scaffold",
    fractions: Sequence[float] = (0.7, 0.1, 0.2),
    seed: int = 0,
    where: str = "the assay matrix",
    descriptors: np.ndarray | None = None,
    domain_threshold: float = DOMAIN_THRESHOLD,
) -> HoldoutResult:
    """Train each model on one partition of ``matrix`` and score it on the held-out part.

    Compounds whose SMILES RDKit cannot parse are left out (counted in an
    :class:`UnparsedCompoundsWarning` and in :attr:`HoldoutResult.n_unparsed`). Every model sees the same
    partition: it is fitted on the training part (a :class:`MultitaskClassifier`
    stops early on the validation part; a :class:`RandomForestBaseline` ignores
    it) and predicts the test part.

    Parameters
    ----------
    matrix : AssayMatrix
        Readouts with SMILES.
    models : mapping of str to model
        Name (written to the ``model`` column) -> unfitted model. A forest and a
        ``"ffn"`` network get 2048-bit Morgan fingerprints (radius 2); a
        ``"dmpnn"`` network gets molecular graphs; a :class:`TreeBaseline` count
        Morgan + descriptors; a :class:`WithDescriptors` network its inputs plus
        the descriptors; an :class:`Ensemble` its members' inputs; a
        :class:`~cellframe.activity.CalibratedEnsemble` fits each member on its
        own inputs, then chooses and calibrates on the validation part
        (:attr:`HoldoutResult.selection`).
    split : {"scaffold", "random"} or callable, default "scaffold"
        Partition (:data:`HOLDOUT_SPLITS`): Bemis-Murcko scaffold groups, largest
        first into train (:func:`cellframe.activity.scaffold_partition`), or random;
        a callable ``f(smiles, fractions, seed)`` returning 0/1/2 per compound is
        used as is (its ``__name__`` goes to the ``split`` column).
    fractions : sequence of 3 float, default (0.7, 0.1, 0.2)
        Train, validation and test fractions.
    seed : int, default 0
        Seed of the random partition (the scaffold partition has no randomness).
    where : str, default "the assay matrix"
        Name of the source, for warnings and messages.
    descriptors : numpy.ndarray, shape (n_compounds, n_descriptors), optional
        RDKit 2D descriptors of the matrix's compounds (one row per compound of
        ``matrix``, :func:`~cellframe.activity.rdkit_descriptors`) for the
        :class:`~cellframe.activity.trees.TreeBaseline` and :class:`WithDescriptors`
        models; computed when needed and not given (about 6 ms of CPU a compound, over worker processes from 2,000 on). Zero columns: none.
    domain_threshold : float, default 0.3
        ``in_domain`` is true where ``train_similarity`` (Tanimoto to the nearest
        training compound) is at least this
        (:data:`~cellframe.activity.uncertainty.DOMAIN_THRESHOLD`).

    Returns
    -------
    HoldoutResult

    Raises
    ------
    InvalidChoiceError
        For an unknown ``split`` (the message lists the valid ones).
    InvalidInputError
        If the matrix has no SMILES, no model is given, a model is of an unknown
        kind, or a part of the partition is empty.
    """
    from cellframe.activity.chem import parse_smiles

    if callable(split):
        partition, split_name = split, getattr(split, "__name__", "custom")
    elif split in HOLDOUT_SPLITS:
        partition, split_name = HOLDOUT_SPLITS[split], split
    else:
        raise InvalidChoiceError(
            f"unknown split {split!r}; valid: {sorted(HOLDOUT_SPLITS)} or a callable"
        )
    if matrix.smiles is None:
        raise InvalidInputError("train_holdout needs an assay matrix with SMILES")
    if not models:
        raise InvalidInputError("give at least one model to train")
    kinds = {name: _input_kind(model) for name, model in models.items()}
    needed = {
        _input_kind(member)
        for model in models.values()
        if isinstance(model, CalibratedEnsemble)
        for member in (model.members or {}).values()
    } | set(kinds.values())
    mols = parse_smiles(matrix.smiles, warn=False, binaries=matrix.binaries)
    kept = np.flatnonzero([m is not None for m in mols])
    n_unparsed = len(mols) - kept.size
    if n_unparsed:
        bad = [repr(matrix.smiles[i]) for i, m in enumerate(mols) if m is None]
        shown = ", ".join(bad[:3]) + (", ..." if len(bad) > 3 else "")
        warnings.warn(
            f"{n_unparsed} of {len(mols)} compounds of {where} have a SMILES RDKit cannot "
            f"parse ({shown}); they are left out of training and testing",
            UnparsedCompoundsWarning,
            stacklevel=2,
        )
    data = matrix.subset(compounds=kept)
    mols = [mols[i] for i in kept]
    part = np.asarray(partition(data.smiles, fractions, seed))
    if part.shape != (len(mols),) or not np.isin(part, (0, 1, 2)).all():
        raise InvalidInputError(
            f"the {split_name} partition must give 0, 1 or 2 for each of the {len(mols)} compounds"
        )
    train, val, test = (np.flatnonzero(part == p) for p in (0, 1, 2))
    for name, rows in (("training", train), ("validation", val), ("test", test)):
        if rows.size == 0:
            raise InvalidInputError(
                f"the {split_name} partition {list(fractions)} of the {len(mols)} compounds of "
                f"{where} leaves the {name} part empty; use more compounds or other fractions"
            )
    y = data.values
    n_train = {a: int((~np.isnan(y[train, j])).sum()) for j, a in enumerate(data.assays)}
    if descriptors is not None:
        descriptors = np.asarray(descriptors, dtype=np.float64)
        if descriptors.ndim != 2 or descriptors.shape[0] != len(matrix.compounds):
            raise InvalidInputError(
                f"descriptors of shape {descriptors.shape} for the {len(matrix.compounds)} "
                f"compounds of {where}; give one row per compound (rdkit_descriptors)"
            )
        descriptors = descriptors[kept]
    elif any(k in ("trees", "morgan+desc", "graphs+desc") for k in needed):
        from cellframe.activity.descriptors import rdkit_descriptors

        descriptors = rdkit_descriptors(mols)  # once for every model that needs them
    features: dict[str, np.ndarray | GraphSet] = {}
    frames = []
    validation_auroc: dict[str, float] = {}
    selections = [pl.DataFrame(schema=SELECTION_SCHEMA)]

    def inputs(model: Any) -> np.ndarray | GraphSet:
        kind = _input_kind(model)
        if kind not in features:
            features[kind] = _featurize(kind, mols, train, descriptors)
        return features[kind]

    def fit(model: Any, x: np.ndarray | GraphSet) -> None:
        if isinstance(model, MultitaskClassifier | TreeBaseline | WithDescriptors | Ensemble):
            model.fit(_take(x, train), y[train], validation=(_take(x, val), y[val]))
        else:
            model.fit(x[train], y[train])

    for name, model in models.items():
        if isinstance(model, CalibratedEnsemble):
            # Each member on its own inputs; members and calibration chosen on validation only.
            val_probs, test_probs = {}, {}
            for member_name, member in (model.members or {}).items():
                x = inputs(member)
                fit(member, x)
                val_probs[member_name] = member.predict_proba(_take(x, val))
                test_probs[member_name] = member.predict_proba(_take(x, test))
            model.select(val_probs, y[val])
            prob, spread = model.combine(test_probs)
            validation_auroc[name] = _mean_auroc(y[val], model.combine(val_probs)[0])
            selections.append(
                pl.DataFrame(
                    [
                        (name, ", ".join(c["members"]), c["validation_auroc"], c["chosen"])
                        for c in model.search_
                    ],
                    schema=SELECTION_SCHEMA,
                    orient="row",
                )
            )
        elif isinstance(model, Ensemble):
            x = inputs(model)
            fit(model, x)
            members = model.member_probabilities(_take(x, test))
            prob, spread = members.mean(axis=0), members.std(axis=0)
            validation_auroc[name] = _mean_auroc(y[val], model.predict_proba(_take(x, val)))
        else:
            x = inputs(model)
            fit(model, x)
            prob = model.predict_proba(_take(x, test))
            spread = np.zeros_like(prob)
            validation_auroc[name] = _mean_auroc(y[val], model.predict_proba(_take(x, val)))
        frame = _long_predictions(data, prob, test, model=name, split=split_name)
        values = data.values[test]
        r, c = np.nonzero(~np.isnan(values))
        frames.append(frame.with_columns(pl.Series("member_spread", spread[r, c], pl.Float64)))
    predictions = _with_uncertainty(pl.concat(frames), data, mols, train, test, domain_threshold)
    full_part = np.full(len(matrix.compounds), -1, dtype=np.int64)
    full_part[kept] = part
    assert data.smiles is not None
    training = TrainingSet(
        smiles=[data.smiles[i] for i in train],
        molecules=[mols[i] for i in train],
        descriptors=None if descriptors is None else descriptors[train],
        assays=list(data.assays),
        split=split_name,
        fractions=tuple(float(f) for f in fractions),
        seed=int(seed),
        n_parts=(int(train.size), int(val.size), int(test.size)),
        domain_threshold=float(domain_threshold),
    )
    return HoldoutResult(
        metrics=holdout_metrics(predictions, n_train),
        predictions=predictions,
        partition=full_part,
        n_unparsed=n_unparsed,
        selection=pl.concat(selections).cast(SELECTION_SCHEMA),
        fitted=dict(models),
        training=training,
        validation_auroc=validation_auroc,
    )


def _mean_auroc(y: np.ndarray, prob: np.ndarray) -> float:
    from cellframe.activity.model import mean_auroc

    return mean_auroc(y, prob)


def _with_uncertainty(
    predictions: pl.DataFrame,
    data: AssayMatrix,
    mols: list[Any],
    train: np.ndarray,
    test: np.ndarray,
    threshold: float,
) -> pl.DataFrame:
    """Add the applicability domain and the spread across the run's models."""
    from cellframe.activity.uncertainty import applicability_domain, prediction_spread

    domain = applicability_domain(
        [mols[i] for i in train], [mols[i] for i in test], threshold=threshold
    ).with_columns(pl.Series(COMPOUND_COL, [data.compounds[i] for i in test], pl.String))
    spread = prediction_spread(predictions, keys=(COMPOUND_COL, ASSAY_COL)).select(
        COMPOUND_COL, ASSAY_COL, "ensemble_spread", pl.col("n_members").alias("n_models")
    )
    return predictions.join(domain, on=COMPOUND_COL, how="left", maintain_order="left").join(
        spread, on=[COMPOUND_COL, ASSAY_COL], how="left", maintain_order="left"
    )


def _long_predictions(
    data: AssayMatrix, prob: np.ndarray, rows: np.ndarray, *, model: str, split: str
) -> pl.DataFrame:
    values = data.values[rows]
    r, c = np.nonzero(~np.isnan(values))
    n = len(r)
    assert data.smiles is not None
    return pl.DataFrame(
        {
            COMPOUND_COL: pl.Series([data.compounds[rows[i]] for i in r], dtype=pl.String),
            SMILES_COL: pl.Series([data.smiles[rows[i]] for i in r], dtype=pl.String),
            ASSAY_COL: pl.Series([data.assays[j] for j in c], dtype=pl.String),
            MODEL_COL: pl.Series([model] * n, dtype=pl.String),
            SPLIT_COL: pl.Series([split] * n, dtype=pl.String),
            READOUT: pl.Series(values[r, c].astype(np.int8), dtype=pl.Int8),
            PROBABILITY: pl.Series(prob[r, c].astype(np.float64), dtype=pl.Float64),
        }
    )
