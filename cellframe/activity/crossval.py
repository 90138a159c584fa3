"""Cross-validation of activity models over given folds.

DOMAIN.md §6 and the reference's nested scheme: for each outer fold the model is
trained on the other folds, with hyper-parameters chosen (and early stopping
done) on an inner validation split of those training compounds; it then predicts
the held-out fold. The result is a long table of predictions for every observed
readout of every test fold.

:func:`cross_validate` trains the networks (grid-searched) and the RandomForest on
given inputs; :func:`cross_validate_with_validation` trains any model of
:func:`~cellframe.activity.train_holdout` (tree baselines, networks with
descriptors, seed ensembles, the calibrated ensemble) fold by fold, with the same
inner validation split as its validation part.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from cellframe._progress import progress as _progress
from cellframe.activity.columns import ASSAY, COMPOUND, FOLD, MODALITY, PROBABILITY, READOUT
from cellframe.activity.graph import GraphSet
from cellframe.activity.matrix import AssayMatrix
from cellframe.activity.model import (
    MultitaskClassifier,
    RandomForestBaseline,
    search_hyperparameters,
)
from cellframe.errors import InvalidInputError

__all__ = [
    "CrossValidationResult",
    "cross_validate",
    "cross_validate_with_validation",
    "inner_split",
    "predictions_frame",
]


@dataclass
class CrossValidationResult:
    """Predictions and chosen hyper-parameters of a cross-validation.

    Attributes
    ----------
    predictions : polars.DataFrame
        ``Metadata_Modality, Metadata_Compound, Metadata_Assay, Metadata_Fold,
        readout, probability`` for each observed test readout.
    hyperparameters : polars.DataFrame
        One row per fold and candidate: ``Metadata_Modality, Metadata_Fold,
        params`` (JSON), ``val_score``, ``best_epoch``, ``chosen``.
    """

    predictions: pl.DataFrame
    hyperparameters: pl.DataFrame


def predictions_frame(
    matrix: AssayMatrix, probabilities: np.ndarray, rows: np.ndarray, *, fold: int, modality: str
) -> pl.DataFrame:
    """Long predictions for the observed readouts of ``matrix`` rows ``rows``.

    Parameters
    ----------
    matrix : AssayMatrix
    probabilities : numpy.ndarray, shape (len(rows), n_assays)
    rows : numpy.ndarray of int, shape (n_rows,)
        Compound positions in ``matrix``.
    fold : int
    modality : str

    Returns
    -------
    polars.DataFrame
    """
    values = matrix.values[rows]
    r, c = np.nonzero(~np.isnan(values))
    n = len(r)
    return pl.DataFrame(
        {
            MODALITY: pl.Series([modality] * n, dtype=pl.String),
            COMPOUND: pl.Series([matrix.compounds[rows[i]] for i in r], dtype=pl.String),
            ASSAY: pl.Series([matrix.assays[j] for j in c], dtype=pl.String),
            FOLD: pl.Series(np.full(n, fold, dtype=np.int64)),
            READOUT: pl.Series(values[r, c].astype(np.int8), dtype=pl.Int8),
            PROBABILITY: pl.Series(probabilities[r, c].astype(np.float32), dtype=pl.Float32),
        }
    )


def inner_split(n_train: int, *, fraction: float = 0.1, seed: int = 0) -> np.ndarray:
    """Positions (into a fold's training compounds) of its inner validation part.

    The draw :class:`~cellframe.activity.MultitaskClassifier` ``fit(val_fraction=...)``
    and :func:`~cellframe.activity.search_hyperparameters` make with the same seed,
    so every model of a cross-validation is stopped early, tuned and calibrated
    on the same compounds of a fold.

    Parameters
    ----------
    n_train : int
        Training compounds of the fold.
    fraction : float, default 0.1
        Share held out for validation (at least one compound).
    seed : int, default 0

    Returns
    -------
    numpy.ndarray of int, shape (max(1, round(fraction * n_train)),)
        Sorted positions.

    Examples
    --------
    >>> inner_split(20, fraction=0.1, seed=0).tolist()
    [4, 19]
    """
    perm = np.random.default_rng(seed).permutation(n_train)
    return np.sort(perm[: max(1, round(fraction * n_train))])


def _take(inputs: np.ndarray | GraphSet, index: np.ndarray) -> np.ndarray | GraphSet:
    return inputs.subset(index) if isinstance(inputs, GraphSet) else inputs[index]


def cross_validate(
    matrix: AssayMatrix,
    inputs: np.ndarray | GraphSet,
    folds: np.ndarray | Sequence[int],
    *,
    model: MultitaskClassifier | RandomForestBaseline | None = None,
    grid: Mapping[str, Sequence[Any]] | None = None,
    modality: str = "CS",
    inner_val_fraction: float = 0.1,
    progress: bool = True,
) -> CrossValidationResult:
    """Train on all folds but one, predict that one, for every fold.

    Parameters
    ----------
    matrix : AssayMatrix
        Readouts, rows aligned with ``inputs``.
    inputs : numpy.ndarray, shape (n_compounds, n_features), or GraphSet
        Features (or graphs) per compound.
    folds : array of int, shape (n_compounds,)
        Fold label per compound.
    model : MultitaskClassifier or RandomForestBaseline, optional
        Template (default: ``MultitaskClassifier()``); cloned per fold.
    grid : mapping, optional
        Hyper-parameter grid for :func:`search_hyperparameters` (network only);
        ``None`` trains the template's parameters with early stopping.
    modality : str, default "CS"
        Written to ``Metadata_Modality``.
    inner_val_fraction : float, default 0.1
        Inner validation split of each training part.
    progress : bool, default True

    Returns
    -------
    CrossValidationResult

    Raises
    ------
    InvalidInputError
        If the lengths of ``matrix``, ``inputs`` and ``folds`` differ.
    """
    import json

    folds = np.asarray(folds, dtype=np.int64)
    if not (len(folds) == len(inputs) == matrix.shape[0]):
        raise InvalidInputError(
            f"matrix ({matrix.shape[0]}), inputs ({len(inputs)}) and folds ({len(folds)}) "
            "must have one row per compound"
        )
    template = model if model is not None else MultitaskClassifier()
    preds, hp_rows = [], []
    labels = np.unique(folds)
    for k in _progress(labels, desc=f"{modality} folds", unit="fold", enabled=progress):
        train = np.flatnonzero(folds != k)
        test = np.flatnonzero(folds == k)
        x_train, y_train = _take(inputs, train), matrix.values[train]
        if isinstance(template, RandomForestBaseline):
            fitted = RandomForestBaseline(**{**template.__dict__}).fit(x_train, y_train)
            hp_rows.append(
                (modality, int(k), json.dumps({"model": "random_forest"}), None, None, True)
            )
        elif grid:
            result = search_hyperparameters(
                x_train,
                y_train,
                grid=grid,
                base=template,
                val_fraction=inner_val_fraction,
                seed=template.seed + int(k),
            )
            fitted = result.best
            for row in result.table:
                params = {p: v for p, v in row.items() if p not in ("val_score", "best_epoch")}
                hp_rows.append(
                    (
                        modality,
                        int(k),
                        json.dumps(params, default=list),
                        float(row["val_score"]),
                        int(row["best_epoch"]),
                        params == result.best_params,
                    )
                )
        else:
            fitted = MultitaskClassifier(
                **{**template.get_params(), "seed": template.seed + int(k)}
            )
            fitted.fit(x_train, y_train, val_fraction=inner_val_fraction)
            hp_rows.append(
                (modality, int(k), json.dumps({}), fitted.best_score_, fitted.best_epoch_, True)
            )
        prob = fitted.predict_proba(_take(inputs, test))
        preds.append(predictions_frame(matrix, prob, test, fold=int(k), modality=modality))
    return CrossValidationResult(
        predictions=pl.concat(preds), hyperparameters=_hyperparameter_frame(hp_rows)
    )


def _hyperparameter_rows(model: Any, modality: str, fold: int) -> list[tuple[Any, ...]]:
    """What a model of :func:`train_holdout` chose on the validation part, as table rows."""
    import json

    from cellframe.activity.ensemble import CalibratedEnsemble
    from cellframe.activity.holdout import Ensemble, WithDescriptors
    from cellframe.activity.trees import TreeBaseline

    if isinstance(model, CalibratedEnsemble):
        return [
            (modality, fold, json.dumps({"members": list(c["members"])}),
             float(c["validation_auroc"]), None, bool(c["chosen"]))
            for c in model.search_
        ]  # fmt: skip
    if isinstance(model, Ensemble):
        return [row for m in model.members for row in _hyperparameter_rows(m, modality, fold)]
    if isinstance(model, TreeBaseline):
        return [
            (modality, fold,
             json.dumps({k: v for k, v in point.items() if k not in ("validation_auroc", "seconds")},
                        default=str),
             float(point["validation_auroc"]), None,
             {k: v for k, v in point.items() if k not in ("validation_auroc", "seconds")}
             == model.best_params_)
            for point in model.search_
        ]  # fmt: skip
    net = model.model if isinstance(model, WithDescriptors) else model
    if isinstance(net, MultitaskClassifier):
        return [(modality, fold, json.dumps({"seed": net.seed}), net.best_score_,
                 net.best_epoch_, True)]  # fmt: skip
    return [(modality, fold, json.dumps({"model": "random_forest"}), None, None, True)]


def cross_validate_with_validation(
    matrix: AssayMatrix,
    build: Callable[[int], Any],
    folds: np.ndarray | Sequence[int],
    *,
    modality: str = "CS",
    inner_val_fraction: float = 0.1,
    seed: int = 0,
    descriptors: np.ndarray | None = None,
    progress: bool = True,
) -> CrossValidationResult:
    """Cross-validate a model that needs a validation part, as on a held-out split per fold.

    For each fold ``k``: the compounds of the other folds are split into an
    inner training and an inner validation part (:func:`inner_split` with seed
    ``seed + k``: the split :func:`cross_validate` stops its networks on), and
    :func:`~cellframe.activity.train_holdout` fits ``build(k)`` on the inner
    training part, tunes, stops or calibrates it on the inner validation part
    (a :class:`~cellframe.activity.trees.TreeBaseline`'s grid, a network's
    early stopping, a :class:`~cellframe.activity.CalibratedEnsemble`'s
    members and Platt scaling) and predicts fold ``k``. The test fold is never
    seen before it is predicted.

    Parameters
    ----------
    matrix : AssayMatrix
        Readouts with SMILES that RDKit parses (one row per compound).
    build : callable
        ``build(k)`` returns a new, unfitted model for fold ``k`` (any model
        :func:`~cellframe.activity.train_holdout` takes).
    folds : array of int, shape (n_compounds,)
        Fold label per compound.
    modality : str, default "CS"
        Written to ``Metadata_Modality``.
    inner_val_fraction : float, default 0.1
        Inner validation share of each fold's training compounds.
    seed : int, default 0
        Seed of fold ``k``'s inner split is ``seed + k``.
    descriptors : numpy.ndarray, shape (n_compounds, n_descriptors), optional
        RDKit 2D descriptors of the compounds, computed once for every fold
        (each fold's normalization is fitted on its inner training part); computed
        per fold when needed and not given.
    progress : bool, default True

    Returns
    -------
    CrossValidationResult
        The predictions as :func:`cross_validate`'s; the hyper-parameters hold
        what each fold chose on its validation part (a tree grid point, an
        ensemble's member subsets with their validation ROC-AUC, a network's
        best epoch).

    Raises
    ------
    InvalidInputError
        If ``folds`` has not one label per compound, the matrix has no SMILES,
        or a fold leaves a part empty.
    """
    from cellframe.activity.holdout import train_holdout

    folds = np.asarray(folds, dtype=np.int64)
    if len(folds) != matrix.shape[0]:
        raise InvalidInputError(
            f"matrix ({matrix.shape[0]}) and folds ({len(folds)}) must have one row per compound"
        )
    preds, hp_rows = [], []
    for k in _progress(np.unique(folds), desc=f"{modality} folds", unit="fold", enabled=progress):
        train = np.flatnonzero(folds != k)
        part = np.where(folds == k, 2, 0)
        part[train[inner_split(len(train), fraction=inner_val_fraction, seed=seed + int(k))]] = 1

        def partition(smiles: Any, fractions: Any, seed: int, part: np.ndarray = part) -> Any:
            return part

        partition.__name__ = f"fold {int(k)}"
        model = build(int(k))
        result = train_holdout(
            matrix, {modality: model}, split=partition, descriptors=descriptors,
            where=f"fold {int(k)} of {modality}",
        )  # fmt: skip
        p = result.predictions
        preds.append(
            pl.DataFrame(
                {
                    MODALITY: p["model"],
                    COMPOUND: p["compound"],
                    ASSAY: p["assay"],
                    FOLD: pl.Series(np.full(p.height, int(k), dtype=np.int64)),
                    READOUT: p[READOUT].cast(pl.Int8),
                    PROBABILITY: p[PROBABILITY].cast(pl.Float32),
                }
            )
        )
        hp_rows += _hyperparameter_rows(model, modality, int(k))
    return CrossValidationResult(
        predictions=pl.concat(preds), hyperparameters=_hyperparameter_frame(hp_rows)
    )


def _hyperparameter_frame(rows: list[tuple[Any, ...]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            MODALITY: pl.String,
            FOLD: pl.Int64,
            "params": pl.String,
            "val_score": pl.Float64,
            "best_epoch": pl.Int64,
            "chosen": pl.Boolean,
        },
        orient="row",
    )
