"""A calibrated ensemble of different models, its members chosen on validation data only.

Issue #19: the tuned trees and the D-MPNN with descriptors make different
errors, so an average of their probabilities can beat each one. Their
probabilities are on different scales (a RandomForest's are the fraction of
trees voting, LightGBM's and the network's come from a log-loss), so each
member's probability of each assay is first calibrated on the validation part
by Platt scaling (a one-feature logistic regression on the member's logit),
and the calibrated probabilities are averaged with equal weights. Which
members are averaged is chosen by the mean validation ROC-AUC over the assays,
among all non-empty subsets of the members (or per assay, ``per_assay=True``;
on a tie the smaller subset); the test part is never looked at.

Caveat, stated in docs/activity.md: the members themselves were already tuned
or stopped early on the same validation part, so validation scores are
optimistic for every member alike; the choice between them is still made
without the test part.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cellframe.errors import InvalidInputError

__all__ = [
    "ENSEMBLE_MEMBERS",
    "CalibratedEnsemble",
    "UncalibratedAssayWarning",
    "platt_fit",
    "platt_transform",
]

#: The members of the default ensemble (names of ``cellframe activity`` kinds).
ENSEMBLE_MEMBERS = ("rf-tuned", "lgbm", "dmpnn-desc")

#: Probabilities are clipped to [EPS, 1 - EPS] before their logit is taken.
EPS = 1e-6


class UncalibratedAssayWarning(UserWarning):
    """Assays whose validation readouts hold one class keep the members' raw probabilities."""


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(q / (1 - q))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    from scipy.special import expit

    return expit(z)  # 1 / (1 + exp(-z)), full relative precision near 0


def platt_fit(prob: np.ndarray, labels: np.ndarray, *, max_iter: int = 100) -> tuple[float, float]:
    """Platt scaling: ``a, b`` of ``sigmoid(a * logit(prob) + b)`` fitted to ``labels``.

    The targets are Platt's smoothed ones, ``(n1 + 1) / (n1 + 2)`` for a hit and
    ``1 / (n0 + 2)`` for a non-hit, so separable data gives finite
    parameters; the log-loss is minimised by Newton's method. The slope is kept
    non-negative: a member that ranks the validation compounds backwards gets
    ``a = 0`` (a constant, the smoothed hit rate) rather than being inverted.

    Parameters
    ----------
    prob : numpy.ndarray, shape (n,)
        A member's probabilities of the validation readouts.
    labels : numpy.ndarray, shape (n,)
        1 (hit) or 0 (no hit); both must occur.
    max_iter : int, default 100

    Returns
    -------
    (float, float)
        Slope ``a`` (>= 0) and intercept ``b``.

    Raises
    ------
    InvalidInputError
        If the shapes differ or ``labels`` hold one class only.

    Examples
    --------
    >>> a, b = platt_fit(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1]))
    >>> a > 0, round(float(platt_transform(np.array([0.5]), a, b)[0]), 3)
    (True, 0.5)
    """
    x = _logit(prob).ravel()
    t = np.asarray(labels, dtype=np.float64).ravel()
    if x.shape != t.shape:
        raise InvalidInputError(
            f"platt_fit: {x.size} probabilities for {t.size} labels; give one label per probability"
        )
    n1 = float(t.sum())
    n0 = float(t.size - n1)
    if n1 == 0 or n0 == 0 or not np.isin(t, (0.0, 1.0)).all():
        raise InvalidInputError(
            "platt_fit: the labels must be 1 or 0 with both classes present "
            f"({int(n1)} hits, {int(n0)} non-hits)"
        )
    target = np.where(t == 1, (n1 + 1) / (n1 + 2), 1 / (n0 + 2))

    def loss(w: np.ndarray, design: np.ndarray) -> float:
        z = design @ w
        return float(np.sum(np.logaddexp(0.0, z) - target * z))

    def newton(design: np.ndarray) -> np.ndarray:
        # Newton's method with backtracking (Lin, Lin & Weng 2007): plain Newton
        # steps can overshoot from the start and diverge.
        w = np.zeros(design.shape[1])
        w[-1] = np.log((n1 + 1) / (n0 + 1))  # start at the smoothed hit rate
        f = loss(w, design)
        for _ in range(max_iter):
            p = _sigmoid(design @ w)
            grad = design.T @ (p - target)
            hess = design.T @ (design * (p * (1 - p))[:, None]) + 1e-12 * np.eye(design.shape[1])
            step = np.linalg.solve(hess, grad)
            t = 1.0
            while t > 1e-10:
                f_new = loss(w - t * step, design)
                if f_new <= f - 1e-4 * t * float(grad @ step):
                    break
                t /= 2
            else:
                break  # no decrease possible: at the minimum to machine precision
            w, f = w - t * step, f_new
            if np.max(np.abs(t * step)) < 1e-10:
                break
        return w

    a, b = newton(np.column_stack([x, np.ones_like(x)]))
    if a < 0:  # backwards on validation: a constant, not an inverted member
        a, b = 0.0, float(newton(np.ones((x.size, 1)))[0])
    return float(a), float(b)


def platt_transform(prob: np.ndarray, a: float, b: float) -> np.ndarray:
    """``sigmoid(a * logit(prob) + b)``, the calibrated probability (float64)."""
    return _sigmoid(a * _logit(prob) + b)


def _auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


@dataclass
class CalibratedEnsemble:
    """Equal-weight average of Platt-calibrated member probabilities; members chosen on validation.

    Used two ways: give ``members`` (name -> unfitted model) to
    :func:`~cellframe.activity.train_holdout`, which fits each on the training
    part, predicts the validation and test parts, calls :meth:`select` with the
    validation predictions and :meth:`combine` with the test ones; or call
    :meth:`select` and :meth:`combine` on member predictions you already have
    (``examples/activity_tox21.py`` builds the ensemble from its cached member
    predictions so, without retraining).

    Parameters
    ----------
    members : dict of str to model, optional
        Unfitted models by name (any model :func:`train_holdout` takes; they
        may take different inputs). Not needed for :meth:`select` / :meth:`combine`.
    per_assay : bool, default False
        Choose the subset of members per assay (by that assay's validation
        ROC-AUC) instead of one subset for all assays. With a few dozen
        validation hits per assay this overfits more easily; off by default.
    calibrate : bool, default True
        Platt-scale each member and assay on the validation part before
        averaging; ``False`` averages the raw probabilities.

    Attributes
    ----------
    names_ : list of str
        The members' names, in the order given to :meth:`select`.
    calibration_ : dict of str to numpy.ndarray, shape (n_assays, 2)
        Per member, Platt's ``(a, b)`` per assay (``(1, 0)``: raw probability,
        where the assay's validation readouts hold one class).
    chosen_ : numpy.ndarray of bool, shape (n_assays, n_members)
        Which members are averaged for each assay.
    members_ : list of str
        The chosen members (with ``per_assay``: those chosen for any assay).
    search_ : list of dict
        Every candidate subset (``members``, ``validation_auroc``: mean over the
        assays; ``chosen``: averaged for some assay), best first.
    """

    members: dict[str, Any] | None = None
    per_assay: bool = False
    calibrate: bool = True
    search_: list[dict[str, Any]] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.members is not None and (not isinstance(self.members, Mapping) or not self.members):
            raise InvalidInputError(
                "CalibratedEnsemble(members=...): give a dict of name -> unfitted model, e.g. "
                '{"rf-tuned": TreeBaseline("rf"), "lgbm": TreeBaseline("lgbm")}'
            )

    def _stack(self, probs: Mapping[str, np.ndarray], names: Sequence[str], what: str) -> Any:
        missing = [n for n in names if n not in probs]
        if missing:
            raise InvalidInputError(
                f"CalibratedEnsemble: no {what} predictions of member(s) {missing}; "
                f"give one array per member ({list(names)})"
            )
        arrays = [np.asarray(probs[n], dtype=np.float64) for n in names]
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1 or arrays[0].ndim != 2:
            raise InvalidInputError(
                f"CalibratedEnsemble: the members' {what} predictions have shapes "
                f"{[a.shape for a in arrays]}; give (n_compounds, n_assays) for every member"
            )
        return np.stack(arrays)

    def select(self, val_probs: Mapping[str, np.ndarray], val_labels: np.ndarray) -> Any:
        """Calibrate each member and choose the members, on the validation part only.

        Parameters
        ----------
        val_probs : mapping of str to numpy.ndarray, shape (n_val, n_assays)
            Each member's probabilities of the validation compounds.
        val_labels : numpy.ndarray, shape (n_val, n_assays)
            1, 0 or NaN (not tested).

        Returns
        -------
        CalibratedEnsemble
            ``self``.

        Raises
        ------
        InvalidInputError
            On mismatched shapes or no member.
        """
        names = list(val_probs)
        if not names:
            raise InvalidInputError("CalibratedEnsemble.select: no member predictions given")
        p = self._stack(val_probs, names, "validation")
        y = np.asarray(val_labels, dtype=np.float64)
        if y.shape != p.shape[1:]:
            raise InvalidInputError(
                f"CalibratedEnsemble.select: labels of shape {y.shape} for predictions of shape "
                f"{p.shape[1:]}; give the validation readouts of the same compounds and assays"
            )
        n_members, _, n_assays = p.shape
        self.names_ = names
        calib = np.tile(np.array([1.0, 0.0]), (n_members, n_assays, 1))
        scorable = []
        for j in range(n_assays):
            obs = ~np.isnan(y[:, j])
            t = y[obs, j]
            ok = bool(t.size) and 0 < t.sum() < t.size
            scorable.append(ok)
            if ok and self.calibrate:
                for m in range(n_members):
                    calib[m, j] = platt_fit(p[m, obs, j], t)
        n_raw = n_assays - sum(scorable)
        if n_raw and self.calibrate:
            warnings.warn(
                f"{n_raw} of {n_assays} assays have validation readouts of one class only; "
                "their members are averaged uncalibrated and chosen with the others",
                UncalibratedAssayWarning,
                stacklevel=2,
            )
        self.calibration_ = {n: calib[m] for m, n in enumerate(names)}
        cal = self._calibrated(p)
        # Candidates: every non-empty subset, the smallest first, so a tie keeps the
        # smaller one (a member Platt-scaled to a constant adds nothing but spread).
        subsets = [
            s for k in range(1, n_members + 1) for s in itertools.combinations(range(n_members), k)
        ]
        scores = np.full((len(subsets), n_assays), np.nan)
        for i, s in enumerate(subsets):
            mean = cal[list(s)].mean(axis=0)
            for j in range(n_assays):
                if scorable[j]:
                    obs = ~np.isnan(y[:, j])
                    scores[i, j] = _auroc(y[obs, j], mean[obs, j])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # no scorable assay: all NaN
            overall = np.nanmean(scores, axis=1) if any(scorable) else np.full(len(subsets), np.nan)
        self.chosen_ = np.zeros((n_assays, n_members), dtype=bool)
        best = int(np.argmax(np.nan_to_num(overall, nan=-np.inf)))
        for j in range(n_assays):
            pick = best
            if self.per_assay and scorable[j]:
                pick = int(np.argmax(scores[:, j]))
            self.chosen_[j, list(subsets[pick])] = True
        self.members_ = [names[m] for m in np.flatnonzero(self.chosen_.any(axis=0))]
        used = {tuple(np.flatnonzero(row)) for row in self.chosen_}
        order = np.argsort(-np.nan_to_num(overall, nan=-np.inf), kind="stable")
        self.search_ = [
            {
                "members": [names[m] for m in subsets[i]],
                "validation_auroc": float(overall[i]),
                "chosen": subsets[i] in used,
            }
            for i in order
        ]
        return self

    def _calibrated(self, p: np.ndarray) -> np.ndarray:
        out = np.empty_like(p)
        for m, n in enumerate(self.names_):
            a, b = self.calibration_[n][:, 0], self.calibration_[n][:, 1]
            out[m] = platt_transform(p[m], a[None, :], b[None, :]) if self.calibrate else p[m]
        return out

    def combine(self, probs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The ensemble's probabilities and its members' spread.

        Parameters
        ----------
        probs : mapping of str to numpy.ndarray, shape (n, n_assays)
            Each member's probabilities (e.g. of the test compounds).

        Returns
        -------
        probability, spread : numpy.ndarray, shape (n, n_assays)
            Mean of the chosen members' calibrated probabilities, and their
            population standard deviation (0 where one member is chosen).

        Raises
        ------
        InvalidInputError
            If :meth:`select` has not run, or a member's predictions are missing.
        """
        if not hasattr(self, "chosen_"):
            raise InvalidInputError(
                "CalibratedEnsemble.combine: call select(validation predictions, labels) first"
            )
        p = self._calibrated(self._stack(probs, self.names_, "test"))
        if p.shape[2] != self.chosen_.shape[0]:
            raise InvalidInputError(
                f"CalibratedEnsemble.combine: predictions of {p.shape[2]} assays for an ensemble "
                f"selected on {self.chosen_.shape[0]}"
            )
        w = self.chosen_.T[:, None, :].astype(np.float64)  # (members, 1, assays)
        mean = (w * p).sum(axis=0) / w.sum(axis=0)
        var = (w * (p - mean) ** 2).sum(axis=0) / w.sum(axis=0)
        return mean, np.sqrt(var)
