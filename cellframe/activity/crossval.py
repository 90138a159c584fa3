"""Cross-validation of activity models over given folds.

DOMAIN.md §6 and the reference's nested scheme: for each outer fold the model is
trained on the other folds, with hyper-parameters chosen (and early stopping
done) on an inner validation split of those training compounds; it then predicts
the held-out fold. The result is a long table of predictions for every observed
readout of every test fold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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

__all__ = ["CrossValidationResult", "cross_validate", "predictions_frame"]


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
    hyper = pl.DataFrame(
        hp_rows,
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
    return CrossValidationResult(predictions=pl.concat(preds), hyperparameters=hyper)
