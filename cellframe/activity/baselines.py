"""Honest baselines: a model beside a one-covariate model and a permuted-label control.

Issue #19. Cell count alone predicts many assays from morphology screens (Seal
et al., Nat Commun 2026): a compound that kills cells "hits" every cytotoxicity
assay. A morphology or fusion result therefore means something only beside

* the same kind of model trained on that one covariate (cell count per
  compound; for chemical structure, any trivial molecule-level number), and
* the same model trained on permuted labels (each assay's observed training
  and validation readouts shuffled among their compounds; test readouts kept),
  which shows the AUROC that chance and leakage give on this split.

:func:`honest_baselines` trains the three on one partition and returns their
per-assay held-out AUROC side by side, with the predictions they come from.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from cellframe.activity.matrix import AssayMatrix
from cellframe.errors import InvalidInputError

__all__ = [
    "BASELINE_ROLES",
    "BaselineComparison",
    "honest_baselines",
    "permute_labels",
]

#: The three rows of every comparison, in order.
BASELINE_ROLES = ("model", "covariate only", "permuted labels")


def permute_labels(targets: np.ndarray, rows: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Shuffle each assay's observed readouts among ``rows``; other rows and NaN stay put.

    Parameters
    ----------
    targets : numpy.ndarray, shape (n_compounds, n_assays)
        1, 0, NaN (missing).
    rows : numpy.ndarray of int, shape (n_rows,)
        Row indices whose readouts are shuffled (the training and validation parts).
    seed : int, default 0

    Returns
    -------
    numpy.ndarray, shape (n_compounds, n_assays)
        A copy of ``targets``; per assay, the hit count among ``rows`` is kept.

    Examples
    --------
    >>> y = np.array([[1.0], [0.0], [np.nan], [0.0], [1.0]])
    >>> p = permute_labels(y, np.array([0, 1, 2, 3]), seed=0)
    >>> np.isnan(p[2, 0]), float(np.nansum(p[:4, 0])), p[4, 0]
    (np.True_, 1.0, np.float64(1.0))
    """
    y = np.array(targets, dtype=np.float64, copy=True)
    rng = np.random.default_rng(seed)
    rows = np.asarray(rows)
    for j in range(y.shape[1]):
        obs = rows[~np.isnan(y[rows, j])]
        y[obs, j] = rng.permutation(y[obs, j])
    return y


@dataclass
class BaselineComparison:
    """What :func:`honest_baselines` returns.

    Attributes
    ----------
    metrics : polars.DataFrame
        One row per assay and role: ``assay``, ``model`` (the display name),
        ``role`` (one of :data:`BASELINE_ROLES`), ``split``, ``auroc`` (null when
        the test readouts hold one class; the mean over the permutations for
        the control), ``auroc_sd`` and ``n_permutations`` (the control's spread
        and count; null for the other roles), ``n_train``, ``n_test``,
        ``n_test_positive``.
    side_by_side : polars.DataFrame
        One row per assay: ``assay``, ``n_test``, ``n_test_positive`` and the
        held-out AUROC of the three, ``auroc_model``, ``auroc_covariate_only``,
        ``auroc_permuted_labels``, then ``margin_over_covariate`` (model minus
        covariate only).
    predictions : polars.DataFrame
        The held-out predictions the AUROCs come from (``compound``, ``assay``,
        ``model``, ``role``, ``permutation`` (0, 1, ... for the control; null
        otherwise), ``split``, ``readout``, ``probability``).
    """

    metrics: pl.DataFrame
    side_by_side: pl.DataFrame
    predictions: pl.DataFrame


def _default_model() -> Any:
    from cellframe.activity.trees import TreeBaseline

    return TreeBaseline("rf", params={"n_estimators": 100}, grid={})


def honest_baselines(
    matrix: AssayMatrix,
    features: np.ndarray,
    covariate: np.ndarray,
    partition: np.ndarray,
    *,
    make_model: Callable[[], Any] = _default_model,
    names: Sequence[str] = ("morphology", "cell count"),
    split: str = "custom",
    seed: int = 0,
    n_permutations: int = 1,
) -> BaselineComparison:
    """Held-out AUROC of a model, of the same model on one covariate, and on permuted labels.

    Parameters
    ----------
    matrix : AssayMatrix
        Readouts, one row per compound.
    features : numpy.ndarray, shape (n_compounds, n_features)
        Inputs of the model (morphology profiles,
        fused features, fingerprints), rows as ``matrix``.
    covariate : numpy.ndarray, shape (n_compounds,)
        The one covariate (cell count per compound), rows as
        ``matrix``; NaN is allowed where the model accepts it.
    partition : numpy.ndarray of int, shape (n_compounds,)
        0 (train), 1 (validation), 2 (test) per compound, as
        :attr:`~cellframe.activity.HoldoutResult.partition`; -1 leaves a
        compound out.
    make_model : callable, default RandomForest (100 trees) per assay
        Returns a fresh unfitted model with ``fit(x, y[, validation=])`` and
        ``predict_proba``; called once per role so each is trained the same way.
    names : (str, str), default ("morphology", "cell count")
        Display names of the features and the covariate.
    split : str, default "custom"
        Written to the ``split`` column.
    seed : int, default 0
        Seed of the first label permutation (``seed + k`` for the k-th).
    n_permutations : int, default 1
        Permuted-label models trained; the control's AUROC is their mean and
        ``auroc_sd`` their standard deviation (chance is wide on a small test
        part: judge the model against that spread, not against 0.5).

    Returns
    -------
    BaselineComparison

    Raises
    ------
    InvalidInputError
        If the shapes do not match the matrix, or a part of the partition is empty.
    """
    from cellframe.activity.holdout import holdout_metrics

    n = len(matrix.compounds)
    x = np.asarray(features, dtype=np.float32)
    c = np.asarray(covariate, dtype=np.float32)
    part = np.asarray(partition)
    if x.ndim != 2 or x.shape[0] != n or c.shape != (n,) or part.shape != (n,):
        raise InvalidInputError(
            f"honest_baselines: features {x.shape}, covariate {c.shape} and partition "
            f"{part.shape} must have one row per compound of the matrix ({n})"
        )
    if len(names) != 2:
        raise InvalidInputError(f"names={list(names)!r}: give (features name, covariate name)")
    train, val, test = (np.flatnonzero(part == k) for k in range(3))
    for what, rows in (("training", train), ("validation", val), ("test", test)):
        if rows.size == 0:
            raise InvalidInputError(
                f"honest_baselines: the partition leaves the {what} part (value "
                f"{('training', 'validation', 'test').index(what)}) empty"
            )
    if (
        isinstance(n_permutations, bool)
        or not isinstance(n_permutations, int)
        or (n_permutations < 1)
    ):
        raise InvalidInputError(
            f"n_permutations={n_permutations!r}: give a whole number of permutations >= 1"
        )
    y = matrix.values.astype(np.float64)
    shuffled = np.concatenate([train, val])
    runs = [
        (BASELINE_ROLES[0], f"{names[0]}", None, x, y),
        (BASELINE_ROLES[1], f"{names[1]} only", None, c[:, None], y),
    ] + [
        (BASELINE_ROLES[2], f"{names[0]}, permuted labels", k, x,
         permute_labels(y, shuffled, seed=seed + k))
        for k in range(n_permutations)
    ]  # fmt: skip
    n_train = {a: int((~np.isnan(y[train, j])).sum()) for j, a in enumerate(matrix.assays)}
    frames = []
    for role, label, k, inputs, labels in runs:
        model = make_model()
        if "validation" in inspect.signature(model.fit).parameters:
            model.fit(inputs[train], labels[train], validation=(inputs[val], labels[val]))
        else:  # a model that takes no validation part (RandomForestBaseline)
            model.fit(inputs[train], labels[train])
        prob = model.predict_proba(inputs[test])
        obs_r, obs_c = np.nonzero(~np.isnan(y[test]))
        frames.append(
            pl.DataFrame(
                {
                    "compound": [matrix.compounds[test[i]] for i in obs_r],
                    "assay": [matrix.assays[j] for j in obs_c],
                    "model": [label] * obs_r.size,
                    "role": [role] * obs_r.size,
                    "permutation": [k] * obs_r.size,
                    "split": [split] * obs_r.size,
                    "readout": y[test][obs_r, obs_c].astype(np.int8),
                    "probability": prob[obs_r, obs_c].astype(np.float64),
                },
                schema_overrides={"readout": pl.Int8, "permutation": pl.Int64},
            )
        )
    predictions = pl.concat(frames)
    # One AUROC per model and permutation, then the mean (and spread) over permutations.
    keyed = predictions.with_columns(
        pl.format("{}#{}", "model", pl.col("permutation").fill_null(-1)).alias("_key")
    )
    per_run = holdout_metrics(
        keyed.select(pl.col("_key").alias("model"), "assay", "split", "readout", "probability"),
        n_train,
    ).join(keyed.select("_key", "model", "role").unique(), left_on="model", right_on="_key")
    metrics = (
        per_run.group_by("assay", "model_right", "role", "split", maintain_order=True)
        .agg(
            pl.col("auroc").mean(),
            pl.col("auroc").std().alias("auroc_sd"),
            pl.len().cast(pl.Int64).alias("n_permutations"),
            pl.col("n_train", "n_test", "n_test_positive").first(),
        )
        .rename({"model_right": "model"})
        .with_columns(
            pl.when(pl.col("role") == BASELINE_ROLES[2]).then(pl.col("auroc_sd", "n_permutations"))
        )
        .select(
            "assay", "model", "role", "split", "auroc", "auroc_sd", "n_permutations",
            "n_train", "n_test", "n_test_positive",
        )
        .sort("assay", pl.col("role").replace_strict({r: i for i, r in enumerate(BASELINE_ROLES)}))
    )  # fmt: skip
    wide = (
        metrics.with_columns(("auroc_" + pl.col("role").str.replace_all(" ", "_")).alias("col"))
        .pivot(on="col", index=["assay", "n_test", "n_test_positive"], values="auroc")
        .select(
            "assay",
            "n_test",
            "n_test_positive",
            "auroc_model",
            "auroc_covariate_only",
            "auroc_permuted_labels",
        )
        .with_columns(
            (pl.col("auroc_model") - pl.col("auroc_covariate_only")).alias("margin_over_covariate")
        )
    )
    return BaselineComparison(metrics=metrics, side_by_side=wide, predictions=predictions)
