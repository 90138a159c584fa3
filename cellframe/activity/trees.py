"""Tree baselines: RandomForest and LightGBM, one model per assay, tuned on validation data.

Issue #19: fusion and deep models must be judged against a strong tree baseline,
as on the Tox21 leaderboard (its RandomForest reaches 0.829 mean ROC-AUC). Inputs
are count-based Morgan fingerprints (radius 2, 2048 bins, counts capped at 255)
and the RDKit 2D descriptors mapped through the training compounds' empirical
CDF (:class:`~cellframe.activity.descriptors.DescriptorNormalizer`; a monotone
map, so trees split as on the raw values, and infinite or huge values cannot
break float32). Each assay gets its own model trained on its observed readouts
(NaN labels masked). Hyper-parameters come from a small grid
(:data:`TREE_GRIDS`), chosen by the mean validation ROC-AUC over the assays;
the test part is never seen.
"""

from __future__ import annotations

import itertools
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cellframe._progress import progress as _progress
from cellframe.errors import InvalidChoiceError, InvalidInputError

__all__ = [
    "TREE_GRIDS",
    "TREE_MODELS",
    "ConstantAssayWarning",
    "TreeBaseline",
    "tree_features",
]


class ConstantAssayWarning(UserWarning):
    """Assays whose training readouts hold one class only predict a constant (counted)."""


def _random_forest(params: Mapping[str, Any], seed: int, n_jobs: int) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    defaults = {"n_estimators": 300, "max_features": "sqrt", "min_samples_leaf": 1}
    return RandomForestClassifier(**{**defaults, **params}, random_state=seed, n_jobs=n_jobs)


def _lightgbm(params: Mapping[str, Any], seed: int, n_jobs: int) -> Any:
    from lightgbm import LGBMClassifier

    # Learning rate 0.05 with up to 1,000 rounds, stopped early on the validation
    # readouts of the assay; row and column subsampling as usual for sparse fingerprints.
    defaults = {
        "n_estimators": 1000,
        "learning_rate": 0.05,
        "num_leaves": 31,
        "min_child_samples": 20,
        "subsample": 0.8,
        "subsample_freq": 1,
        "colsample_bytree": 0.3,
        "reg_lambda": 1.0,
    }
    return LGBMClassifier(**{**defaults, **params}, random_state=seed, n_jobs=n_jobs, verbose=-1)


#: Tree model factories by name: ``f(params, seed, n_jobs)`` -> an unfitted
#: scikit-learn-style binary classifier.
TREE_MODELS: dict[str, Callable[[Mapping[str, Any], int, int], Any]] = {
    "lgbm": _lightgbm,
    "rf": _random_forest,
}

#: The small grids searched on the validation part. RandomForest: 2 points
#: (``max_features=0.1`` was much slower and scored lower on the validation part,
#: 0.76-0.77 against 0.78-0.79, on 2,000 Tox21 compounds); LightGBM: 4 points,
#: each stopped early on the validation readouts.
TREE_GRIDS: dict[str, dict[str, list[Any]]] = {
    "rf": {"min_samples_leaf": [1, 3]},
    "lgbm": {"num_leaves": [15, 63], "colsample_bytree": [0.1, 0.3]},
}


def tree_features(
    molecules: Sequence[Any],
    *,
    train: np.ndarray | None = None,
    descriptors: np.ndarray | None = None,
    n_bits: int = 2048,
) -> np.ndarray:
    """Count-based Morgan fingerprints and CDF-normalized RDKit descriptors, side by side.

    Parameters
    ----------
    molecules : sequence of str or rdkit Mol
        SMILES or molecules (an unparseable one gives zero counts and missing descriptors).
    train : numpy.ndarray of int or bool, shape (n_train,) or (n_molecules,), optional
        Rows (indices or mask) whose descriptor values define the CDF; default all.
        Pass the training rows so validation and test compounds inform nothing.
    descriptors : numpy.ndarray, shape (n_molecules, n_descriptors), optional
        Precomputed :func:`~cellframe.activity.descriptors.rdkit_descriptors` of
        ``molecules`` (they take about 6 ms of CPU a molecule); an array with zero
        columns leaves descriptors out.
    n_bits : int, default 2048
        Fingerprint length.

    Returns
    -------
    numpy.ndarray of float32, shape (n, n_bits + n_descriptors)
        Descriptor values in [0, 1],
        NaN where RDKit gave none (the trees treat NaN as missing).

    Raises
    ------
    InvalidInputError
        If ``descriptors`` has another number of rows than ``molecules``.

    Examples
    --------
    >>> import numpy as np
    >>> x = tree_features(["CCO", "CCCCO"], descriptors=np.zeros((2, 0)))
    >>> x.shape, int(x[1].sum()) > int(x[0].sum())
    ((2, 2048), True)
    """
    from cellframe.activity.chem import _as_mols, morgan_fingerprints
    from cellframe.activity.descriptors import DescriptorNormalizer, rdkit_descriptors

    mols = _as_mols(molecules, "the SMILES given to tree_features")
    counts = morgan_fingerprints(mols, n_bits=n_bits, counts=True).astype(np.float32)
    desc = rdkit_descriptors(mols) if descriptors is None else np.asarray(descriptors, float)
    if desc.ndim != 2 or desc.shape[0] != len(mols):
        raise InvalidInputError(
            f"tree_features: descriptors have shape {desc.shape} for {len(mols)} molecules; "
            "give one row per molecule (rdkit_descriptors(molecules))"
        )
    if desc.shape[1] == 0:
        return counts
    rows = np.arange(len(mols)) if train is None else train
    norm = DescriptorNormalizer(fill_value=np.nan).fit(desc[rows])
    return np.hstack([counts, norm.transform(desc).astype(np.float32)])


def _mean_auroc(y: np.ndarray, prob: np.ndarray) -> float:
    from cellframe.activity.model import mean_auroc

    return mean_auroc(y, prob)


def _early_stopping(x_val: np.ndarray, y_val: np.ndarray) -> dict[str, Any]:
    """LightGBM fit arguments: stop when validation AUROC has not improved for 50 rounds."""
    import inspect

    from lightgbm import LGBMClassifier, early_stopping

    # lightgbm 4.6 renamed eval_set=[(X, y)] to eval_X=, eval_y= (the old name warns)
    if "eval_X" in inspect.signature(LGBMClassifier.fit).parameters:
        data: dict[str, Any] = {"eval_X": (x_val,), "eval_y": (y_val,)}
    else:  # pragma: no cover - lightgbm < 4.6
        data = {"eval_set": [(x_val, y_val)]}
    return {
        **data,
        "eval_metric": "auc",
        "callbacks": [early_stopping(50, first_metric_only=True, verbose=False)],
    }


@dataclass
class TreeBaseline:
    """One tree model per assay (RandomForest or LightGBM), tuned on validation data.

    Parameters
    ----------
    model : {"rf", "lgbm"} or callable, default "rf"
        A name of :data:`TREE_MODELS` or a factory ``f(params, seed, n_jobs)``.
    params : dict, optional
        Estimator parameters over the factory's defaults (RandomForest: 300
        trees, ``max_features="sqrt"``; LightGBM: learning rate 0.05, up to
        1,000 rounds stopped early on the validation readouts, 31 leaves,
        ``colsample_bytree=0.3``).
    grid : dict of str to list, optional
        Parameters searched when fitted with validation data; by default
        :data:`TREE_GRIDS` of the model name (``{}`` for no search). Every grid
        point is fitted on the training part and scored by mean validation
        ROC-AUC over the assays; the best is kept (ties: the first).
    seed : int, default 0
        Seed of assay ``j`` is ``seed + j``.
    n_jobs : int, default 1
        Threads of each estimator.
    progress : bool, default False

    Attributes
    ----------
    models_ : list
        Per assay: a fitted estimator, or a float (the training hit rate of an
        assay whose training readouts hold one class; counted in
        :class:`ConstantAssayWarning`).
    best_params_ : dict
        The grid point used.
    search_ : list of dict
        Every grid point with its mean validation ROC-AUC and fit seconds.
    """

    model: str | Callable[..., Any] = "rf"
    params: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] | None = None
    seed: int = 0
    n_jobs: int = 1
    progress: bool = False

    def __post_init__(self) -> None:
        if not callable(self.model) and self.model not in TREE_MODELS:
            raise InvalidChoiceError(
                f"TreeBaseline(model={self.model!r}): unknown tree model; valid: "
                f"{sorted(TREE_MODELS)} or a callable f(params, seed, n_jobs)"
            )
        grid = self._grid()
        bad = [k for k, v in grid.items() if isinstance(v, str) or not isinstance(v, Sequence)]
        if bad or any(len(v) == 0 for v in grid.values()):
            raise InvalidInputError(
                f"TreeBaseline(grid={grid!r}): each grid entry is a non-empty list of values, "
                "e.g. grid={'min_samples_leaf': [1, 3]}"
            )
        if isinstance(self.model, str):  # a misspelt parameter fails here, not after hours
            valid = set(self._factory()({}, 0, 1).get_params())
            unknown = sorted((set(self.params) | set(grid)) - valid)
            if unknown:
                raise InvalidInputError(
                    f"TreeBaseline({self.model!r}): unknown parameter(s) {unknown} in params/grid; "
                    f"valid: {', '.join(sorted(valid))}"
                )

    @property
    def name(self) -> str:
        """The model's name (``"rf"``, ``"lgbm"`` or the factory's name)."""
        return self.model if isinstance(self.model, str) else self.model.__name__

    def _grid(self) -> dict[str, list[Any]]:
        if self.grid is not None:
            return dict(self.grid)
        return dict(TREE_GRIDS.get(self.model, {})) if isinstance(self.model, str) else {}

    def _factory(self) -> Callable[..., Any]:
        return self.model if callable(self.model) else TREE_MODELS[self.model]

    def fit(
        self,
        features: np.ndarray,
        targets: np.ndarray,
        validation: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> TreeBaseline:
        """Fit one model per assay on its observed readouts, tuning on ``validation``.

        Parameters
        ----------
        features : numpy.ndarray, shape (n, n_features)
            Training inputs (e.g. :func:`tree_features`).
        targets : numpy.ndarray, shape (n, n_assays)
            1, 0, NaN (missing, left out of that assay's model).
        validation : (features, targets), optional
            Validation part: the grid is searched on it and LightGBM stops early
            on it. Required when the grid is not empty.

        Returns
        -------
        TreeBaseline
            ``self``, fitted.

        Raises
        ------
        InvalidInputError
            On mismatched shapes, or a grid without validation data.
        """
        x, y = self._check(features, targets, "training")
        grid = self._grid()
        if validation is None and grid:
            raise InvalidInputError(
                f"TreeBaseline({self.name!r}) searches {grid} on validation data: call "
                "fit(x, y, validation=(x_val, y_val)), or pass grid={} to use the defaults"
            )
        xv, yv = (None, None) if validation is None else self._check(*validation, "validation")
        if xv is not None and xv.shape[1] != x.shape[1]:
            raise InvalidInputError(
                f"validation features have {xv.shape[1]} columns, training {x.shape[1]}; "
                "featurize both the same way"
            )
        points = [dict(zip(grid, v, strict=True)) for v in itertools.product(*grid.values())]
        self.search_: list[dict[str, Any]] = []
        best: tuple[float, list[Any], dict[str, Any], int] | None = None
        for point in points or [{}]:
            t0 = time.perf_counter()
            models, n_constant = self._fit_point(x, y, xv, yv, point)
            seconds = time.perf_counter() - t0
            score = float("nan")
            if xv is not None:
                score = _mean_auroc(yv, self._predict(models, xv))
            self.search_.append({**point, "validation_auroc": score, "seconds": seconds})
            if best is None or (np.isfinite(score) and not score <= best[0]):
                best = (score if np.isfinite(score) else -np.inf, models, point, n_constant)
        assert best is not None
        _, self.models_, self.best_params_, self.n_constant_ = best
        if self.n_constant_:
            warnings.warn(
                f"{self.n_constant_} of {y.shape[1]} assays have one class only in the training "
                "readouts; they predict their training hit rate",
                ConstantAssayWarning,
                stacklevel=2,
            )
        return self

    def _check(self, features: np.ndarray, targets: np.ndarray, what: str) -> tuple[Any, Any]:
        x = np.asarray(features, dtype=np.float32)
        y = np.asarray(targets, dtype=np.float32)
        if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
            raise InvalidInputError(
                f"TreeBaseline: {what} features {x.shape} and targets {y.shape} must be "
                "(n_compounds, n_features) and (n_compounds, n_assays)"
            )
        return x, y

    def _fit_point(
        self,
        x: np.ndarray,
        y: np.ndarray,
        xv: np.ndarray | None,
        yv: np.ndarray | None,
        point: Mapping[str, Any],
    ) -> tuple[list[Any], int]:
        factory = self._factory()
        params = {**self.params, **point}
        models: list[Any] = []
        n_constant = 0
        steps = _progress(range(y.shape[1]), desc=self.name, unit="assay", enabled=self.progress)
        for j in steps:
            obs = ~np.isnan(y[:, j])
            t = y[obs, j]
            if t.size == 0 or t.min() == t.max():
                models.append(float(t.mean()) if t.size else 0.0)
                n_constant += 1
                continue
            est = factory(params, self.seed + j, self.n_jobs)
            fit_kw: dict[str, Any] = {}
            if self.name == "lgbm" and xv is not None and yv is not None:
                vobs = ~np.isnan(yv[:, j])
                tv = yv[vobs, j]
                if tv.size and 0 < tv.sum() < tv.size:
                    fit_kw = _early_stopping(xv[vobs], tv.astype(np.int64))
            models.append(est.fit(x[obs], t.astype(np.int64), **fit_kw))
        return models, n_constant

    @staticmethod
    def _predict(models: list[Any], x: np.ndarray) -> np.ndarray:
        out = np.empty((x.shape[0], len(models)), dtype=np.float32)
        for j, m in enumerate(models):
            out[:, j] = m if isinstance(m, float) else m.predict_proba(x)[:, 1]
        return out

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Probability of a hit, ``(n_compounds, n_assays)``.

        Raises
        ------
        InvalidInputError
            If the model is not fitted.
        """
        if not hasattr(self, "models_"):
            raise InvalidInputError(f"TreeBaseline({self.name!r}) is not fitted; call fit first")
        return self._predict(self.models_, np.asarray(features, dtype=np.float32))
