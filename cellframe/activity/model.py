"""Multitask activity classifiers: the PyTorch network and a RandomForest baseline.

DOMAIN.md §6. :class:`MultitaskClassifier` trains :class:`MultitaskNetwork` on
dense features (Morgan fingerprints, MO or GE profiles) or, with
``encoder="dmpnn"``, jointly with a D-MPNN on molecular graphs; mini-batches of
50 compounds, masked BCE over observed readouts, early stopping on an inner
validation split. :func:`search_hyperparameters` picks a configuration from a
small grid on that split. :class:`RandomForestBaseline` fits one scikit-learn
forest per assay on its observed readouts.
"""

from __future__ import annotations

import copy
import itertools
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cellframe._progress import progress as _progress
from cellframe.activity.graph import GraphSet
from cellframe.errors import InvalidChoiceError, InvalidInputError

__all__ = [
    "DEFAULT_GRID",
    "LR_SCHEDULES",
    "MultitaskClassifier",
    "RandomForestBaseline",
    "SearchResult",
    "mean_auroc",
    "noam_learning_rate",
    "search_hyperparameters",
]

Inputs = np.ndarray | GraphSet

#: The small hyper-parameter grid searched by default (DOMAIN.md §6).
DEFAULT_GRID: dict[str, list[Any]] = {
    "hidden_sizes": [(512,), (1024, 512)],
    "dropout": [0.2, 0.5],
}


def noam_learning_rate(
    step: int,
    *,
    steps_per_epoch: int,
    total_epochs: int,
    warmup_epochs: float = 2.0,
    init_lr: float = 1e-4,
    max_lr: float = 1e-3,
    final_lr: float = 1e-4,
) -> float:
    """Learning rate of Chemprop's Noam-like schedule at optimisation step ``step``.

    Linear warm-up from ``init_lr`` to ``max_lr`` over the first
    ``warmup_epochs * steps_per_epoch`` steps, then exponential decay that reaches
    ``final_lr`` at step ``total_epochs * steps_per_epoch`` (Yang et al. 2019;
    Chemprop's defaults are the defaults here). Steps past the end stay at
    ``final_lr``.

    Parameters
    ----------
    step : int
        0-based optimisation step (one mini-batch).
    steps_per_epoch : int
    total_epochs : int
    warmup_epochs : float, default 2.0
    init_lr, max_lr, final_lr : float
        Rates at the start, the end of warm-up and the end of training.

    Returns
    -------
    float

    Raises
    ------
    InvalidInputError
        If a count is not positive or warm-up is not shorter than training
        (a ``ValueError`` too).

    Examples
    --------
    >>> noam_learning_rate(0, steps_per_epoch=10, total_epochs=4)
    0.0001
    >>> round(noam_learning_rate(20, steps_per_epoch=10, total_epochs=4), 6)
    0.001
    >>> round(noam_learning_rate(30, steps_per_epoch=10, total_epochs=4), 6)  # sqrt(1e-3 * 1e-4)
    0.000316
    """
    if steps_per_epoch < 1 or total_epochs < 1:
        raise InvalidInputError(
            f"noam_learning_rate: steps_per_epoch ({steps_per_epoch}) and total_epochs "
            f"({total_epochs}) must be positive integers"
        )
    warmup = warmup_epochs * steps_per_epoch
    total = total_epochs * steps_per_epoch
    if not 0 <= warmup < total:
        raise InvalidInputError(
            f"noam_learning_rate: warmup_epochs ({warmup_epochs}) must be >= 0 and below "
            f"total_epochs ({total_epochs}): valid values are 0 <= warmup_epochs < "
            f"{total_epochs}; shorten the warm-up or train for more epochs"
        )
    if step < warmup:
        return init_lr + (max_lr - init_lr) * step / warmup
    gamma = (final_lr / max_lr) ** (1.0 / (total - warmup))
    return max_lr * gamma ** min(step - warmup, total - warmup)


def _constant_schedule(model: MultitaskClassifier) -> Callable[[int, int, int], float]:
    return lambda step, steps_per_epoch, total_epochs: model.lr


def _noam_schedule(model: MultitaskClassifier) -> Callable[[int, int, int], float]:
    def schedule(step: int, steps_per_epoch: int, total_epochs: int) -> float:
        return noam_learning_rate(
            step,
            steps_per_epoch=steps_per_epoch,
            total_epochs=total_epochs,
            warmup_epochs=model.warmup_epochs,
            init_lr=model.lr / 10,
            max_lr=model.lr,
            final_lr=model.lr / 10,
        )

    return schedule


#: Learning-rate schedules by name: model -> f(step, steps_per_epoch, max_epochs) -> rate.
LR_SCHEDULES: dict[str, Callable[[MultitaskClassifier], Callable[[int, int, int], float]]] = {
    "constant": _constant_schedule,
    "noam": _noam_schedule,
}


def mean_auroc(y: np.ndarray, prob: np.ndarray) -> float:
    """Mean AUROC over assays with both classes among the observed readouts (NaN = missing).

    Returns NaN when no assay has both classes.
    """
    from sklearn.metrics import roc_auc_score

    scores = []
    for j in range(y.shape[1]):
        obs = ~np.isnan(y[:, j])
        t = y[obs, j]
        if t.size and 0 < t.sum() < t.size:
            scores.append(roc_auc_score(t, prob[obs, j]))
    return float(np.mean(scores)) if scores else float("nan")


def _check_targets(inputs: Inputs, targets: np.ndarray) -> np.ndarray:
    y = np.asarray(targets, dtype=np.float32)
    if y.ndim != 2:
        raise InvalidInputError(f"targets must be (n_compounds, n_assays), got shape {y.shape}")
    if len(inputs) != y.shape[0]:
        raise InvalidInputError(f"{len(inputs)} input rows for {y.shape[0]} target rows")
    return y


def _take(inputs: Inputs, index: np.ndarray) -> Inputs:
    return inputs.subset(index) if isinstance(inputs, GraphSet) else inputs[index]


@dataclass
class MultitaskClassifier:
    """Multitask feed-forward network (optionally over a jointly trained D-MPNN).

    Parameters
    ----------
    encoder : {"ffn", "dmpnn"}, default "ffn"
        ``"ffn"``: dense input features; ``"dmpnn"``: molecular graphs (:class:`GraphSet`).
    hidden_sizes : sequence of int, default (512,)
        Hidden layers of the head.
    dropout : float, default 0.2
    encoder_hidden, encoder_depth : int
        D-MPNN width and number of message-passing steps.
    lr : float, default 1e-3
        Adam learning rate (the peak rate under ``lr_schedule="noam"``).
    lr_schedule : {"constant", "noam"} or callable, default "constant"
        ``"noam"``: Chemprop's schedule (:func:`noam_learning_rate`), linear warm-up
        from ``lr / 10`` to ``lr`` over ``warmup_epochs``, then exponential decay
        to ``lr / 10`` at the end of ``max_epochs``. A callable
        ``f(step, steps_per_epoch, max_epochs) -> learning rate`` is used as is.
    warmup_epochs : float, default 2.0
        Warm-up length of the ``"noam"`` schedule.
    weight_decay : float, default 0.0
    batch_size : int, default 50
        DOMAIN.md §6.
    max_epochs : int, default 100
    patience : int, default 10
        Epochs without improvement of the validation score before stopping.
    standardize : bool or None, default None
        Standardise dense inputs with training statistics; ``None``: unless
        every value is 0 or 1 (fingerprints).
    device : str, optional
        ``"cpu"``/``"cuda"``; default: CUDA when present, chosen once in ``fit``.
    seed : int, default 0
    progress : bool, default False
        Epoch progress bar.

    Attributes
    ----------
    network_ : MultitaskNetwork
    history_ : list of dict
        Per epoch: ``epoch``, ``train_loss``, ``val_loss``, ``val_auroc`` and ``lr``
        (the learning rate of the epoch's last step).
    best_epoch_ : int
    """

    encoder: str = "ffn"
    hidden_sizes: Sequence[int] = (512,)
    dropout: float = 0.2
    encoder_hidden: int = 300
    encoder_depth: int = 3
    lr: float = 1e-3
    lr_schedule: str | Callable[[int, int, int], float] = "constant"
    warmup_epochs: float = 2.0
    weight_decay: float = 0.0
    batch_size: int = 50
    max_epochs: int = 100
    patience: int = 10
    standardize: bool | None = None
    device: str | None = None
    seed: int = 0
    progress: bool = False
    history_: list[dict[str, float]] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        self._check_settings()

    def _check_settings(self) -> None:
        """Refuse settings that would fail (or train nonsense) later, naming them and the valid values."""
        if self.encoder not in ("dmpnn", "ffn"):
            raise InvalidChoiceError(
                f"MultitaskClassifier encoder={self.encoder!r}; valid: 'dmpnn', 'ffn'"
            )
        if not callable(self.lr_schedule) and self.lr_schedule not in LR_SCHEDULES:
            raise InvalidChoiceError(
                f"MultitaskClassifier lr_schedule={self.lr_schedule!r}; valid: "
                f"{sorted(LR_SCHEDULES)} "
                "or a callable f(step, steps_per_epoch, max_epochs)"
            )
        if not isinstance(self.max_epochs, int | np.integer) or self.max_epochs < 1:
            raise InvalidInputError(
                f"MultitaskClassifier max_epochs={self.max_epochs!r} must be an integer >= 1"
            )

        def whole(value: Any) -> bool:
            return isinstance(value, int | np.integer) and not isinstance(value, bool)

        def number(value: Any) -> bool:
            return isinstance(value, int | float | np.number) and not isinstance(value, bool)

        for name in ("batch_size", "patience", "encoder_hidden", "encoder_depth"):
            if not whole(getattr(self, name)) or getattr(self, name) < 1:
                raise InvalidInputError(
                    f"MultitaskClassifier {name}={getattr(self, name)!r} must be an integer >= 1"
                )
        sizes = self.hidden_sizes
        if (
            isinstance(sizes, str | bytes)
            or not isinstance(sizes, Sequence)
            or not all(whole(h) and h >= 1 for h in sizes)
        ):
            raise InvalidInputError(
                f"MultitaskClassifier hidden_sizes={sizes!r} must be a list of layer widths "
                "(integers >= 1), e.g. [512] or [1024, 512]; [] for none"
            )
        if not number(self.dropout) or not 0 <= self.dropout < 1:
            raise InvalidInputError(
                f"MultitaskClassifier dropout={self.dropout!r} must be a number in [0, 1)"
            )
        if not number(self.lr) or not self.lr > 0:
            raise InvalidInputError(f"MultitaskClassifier lr={self.lr!r} must be a number > 0")
        if not number(self.weight_decay) or not self.weight_decay >= 0:
            raise InvalidInputError(
                f"MultitaskClassifier weight_decay={self.weight_decay!r} must be a number >= 0"
            )
        if not number(self.warmup_epochs):
            raise InvalidInputError(
                f"MultitaskClassifier warmup_epochs={self.warmup_epochs!r} must be a number >= 0"
            )
        if not whole(self.seed):
            raise InvalidInputError(f"MultitaskClassifier seed={self.seed!r} must be an integer")
        if self.lr_schedule == "noam" and not 0 <= self.warmup_epochs < self.max_epochs:
            raise InvalidInputError(
                f"MultitaskClassifier(lr_schedule='noam', warmup_epochs={self.warmup_epochs!r}, "
                f"max_epochs={self.max_epochs!r}): the warm-up must end before training does; "
                f"valid values are 0 <= warmup_epochs < {self.max_epochs} (lower warmup_epochs "
                "or raise max_epochs)"
            )

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters (for cloning with other values)."""
        return {
            k: getattr(self, k)
            for k in (
                "encoder hidden_sizes dropout encoder_hidden encoder_depth lr lr_schedule "
                "warmup_epochs weight_decay "
                "batch_size max_epochs patience standardize device seed progress"
            ).split()
        }

    # ---------------------------------------------------------------- batching
    def _prepare(self, inputs: Inputs, fit: bool) -> Inputs:
        if self.encoder == "dmpnn":
            if not isinstance(inputs, GraphSet):
                raise InvalidInputError(
                    "encoder='dmpnn' needs a GraphSet (cellframe.activity.featurize_molecules)"
                )
            if inputs.extra is None:
                return inputs
            extra = inputs.extra.astype(np.float32)
            if fit:
                self._mu = np.nanmean(extra, axis=0)
                sd = np.nanstd(extra, axis=0)
                self._sd = np.where(sd > 0, sd, 1.0)
            extra = np.nan_to_num((extra - self._mu) / self._sd).astype(np.float32)
            return GraphSet(**{**inputs.__dict__, "extra": extra})
        if self.encoder != "ffn":
            raise InvalidChoiceError(f"unknown encoder {self.encoder!r}; valid: 'dmpnn', 'ffn'")
        if isinstance(inputs, GraphSet):
            raise InvalidInputError("encoder='ffn' needs a dense feature array, not a GraphSet")
        x = np.asarray(inputs, dtype=np.float32)
        if x.ndim != 2:
            raise InvalidInputError(f"features must be 2-D, got shape {x.shape}")
        if not np.isfinite(x).all():
            raise InvalidInputError("features contain NaN or inf; impute or drop those compounds")
        if fit:
            binary = bool(np.isin(x, (0.0, 1.0)).all())
            self._standardize = (not binary) if self.standardize is None else self.standardize
            self._mu = x.mean(axis=0)
            sd = x.std(axis=0)
            self._sd = np.where(sd > 0, sd, 1.0)
        if self._standardize:
            x = (x - self._mu) / self._sd
        return x.astype(np.float32)

    def _batch(self, inputs: Inputs, index: np.ndarray) -> dict[str, Any]:
        import torch

        dev = self.device_
        if isinstance(inputs, GraphSet):
            raw = inputs.batch(index)
            out = {}
            for k, v in raw.items():
                if k == "n_mols":
                    out[k] = int(v)
                elif v.dtype == np.int64:
                    out[k] = torch.from_numpy(v).to(dev)
                else:
                    out[k] = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)).to(dev)
            return out
        return {"x": torch.from_numpy(inputs[index]).to(dev)}

    def _build(self, n_inputs: int, n_tasks: int) -> Any:
        from cellframe.activity.networks import DMPNNEncoder, MultitaskNetwork

        enc = None
        if self.encoder == "dmpnn":
            enc = DMPNNEncoder(
                hidden_size=self.encoder_hidden,
                depth=self.encoder_depth,
                dropout=0.0,
                extra_dim=n_inputs,
            )
        return MultitaskNetwork(
            n_inputs, n_tasks, hidden_sizes=self.hidden_sizes, dropout=self.dropout, encoder=enc
        )

    def _schedule(self) -> Callable[[int, int, int], float]:
        if callable(self.lr_schedule):
            return self.lr_schedule
        self._check_settings()
        return LR_SCHEDULES[self.lr_schedule](self)

    # ----------------------------------------------------------------- fitting
    def fit(
        self,
        inputs: Inputs,
        targets: np.ndarray,
        *,
        validation: tuple[Inputs, np.ndarray] | None = None,
        val_fraction: float = 0.1,
    ) -> MultitaskClassifier:
        """Train with early stopping on a validation split.

        Parameters
        ----------
        inputs : numpy.ndarray, shape (n_compounds, n_features), or GraphSet
            Training compounds.
        targets : numpy.ndarray, shape (n_compounds, n_assays)
            1, 0 or NaN (missing).
        validation : (inputs, targets), optional
            Validation compounds; default: a random ``val_fraction`` of ``inputs``.
        val_fraction : float, default 0.1

        Returns
        -------
        MultitaskClassifier
            ``self``.
        """
        import torch

        from cellframe.activity.networks import default_device, masked_bce_loss

        y = _check_targets(inputs, targets)
        if validation is None:
            rng = np.random.default_rng(self.seed)
            perm = rng.permutation(len(inputs))
            n_val = max(1, round(val_fraction * len(inputs)))
            val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
            validation = (_take(inputs, val_idx), y[val_idx])
            inputs, y = _take(inputs, train_idx), y[train_idx]
        x_val_raw, y_val = validation
        y_val = _check_targets(x_val_raw, y_val)
        self.device_ = torch.device(self.device) if self.device else default_device()
        torch.manual_seed(self.seed)
        x = self._prepare(inputs, fit=True)
        x_val = self._prepare(x_val_raw, fit=False)
        n_inputs = 0
        if isinstance(x, GraphSet):
            n_inputs = 0 if x.extra is None else x.extra.shape[1]
        else:
            n_inputs = x.shape[1]
        net = self._build(n_inputs, y.shape[1]).to(self.device_)
        schedule = self._schedule()
        opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        steps_per_epoch = max(1, sum(len(x) - s >= 2 for s in range(0, len(x), self.batch_size)))
        step = 0
        schedule(0, steps_per_epoch, self.max_epochs)  # bad schedule settings fail before training
        y_t = torch.from_numpy(np.nan_to_num(y)).to(self.device_)
        m_t = torch.from_numpy(~np.isnan(y)).to(self.device_)
        rng = np.random.default_rng(self.seed)
        best_score, best_state, since = -np.inf, None, 0
        self.history_ = []
        epochs = _progress(
            range(self.max_epochs),
            total=self.max_epochs,
            desc="epochs",
            unit="epoch",
            enabled=self.progress,
        )
        for epoch in epochs:
            net.train()
            total, n_batches = 0.0, 0
            order = rng.permutation(len(x))
            for start in range(0, len(x), self.batch_size):
                idx = order[start : start + self.batch_size]
                if len(idx) < 2 and len(x) > 1:
                    continue  # a batch of one adds noise only
                logits = net(self._batch(x, idx))
                loss = masked_bce_loss(logits, y_t[idx], m_t[idx])
                for group in opt.param_groups:
                    group["lr"] = schedule(step, steps_per_epoch, self.max_epochs)
                step += 1
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item()
                n_batches += 1
            prob_val = self._predict(net, x_val)
            val_auroc = mean_auroc(y_val, prob_val)
            val_loss = _masked_bce_np(y_val, prob_val)
            # Mean validation AUROC decides; the loss when no assay has both classes.
            score = val_auroc if np.isfinite(val_auroc) else -val_loss
            self.history_.append(
                {
                    "epoch": epoch,
                    "train_loss": total / max(n_batches, 1),
                    "val_loss": val_loss,
                    "val_auroc": val_auroc,
                    "lr": opt.param_groups[0]["lr"],
                }
            )
            if score > best_score + 1e-6:
                best_score, best_state, since = score, copy.deepcopy(net.state_dict()), 0
                self.best_epoch_ = epoch
            else:
                since += 1
                if since >= self.patience:
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        self.network_ = net
        self.best_score_ = float(best_score)
        return self

    def _predict(self, net: Any, x: Inputs, batch_size: int = 500) -> np.ndarray:
        import torch

        net.eval()
        out = []
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                idx = np.arange(start, min(start + batch_size, len(x)))
                out.append(torch.sigmoid(net(self._batch(x, idx))).cpu().numpy())
        if not out:
            return np.zeros((0, net.head[-1].out_features), dtype=np.float32)
        return np.concatenate(out).astype(np.float32)

    def predict_proba(self, inputs: Inputs) -> np.ndarray:
        """Probability of a hit, ``(n_compounds, n_assays)``."""
        if not hasattr(self, "network_"):
            raise InvalidInputError("call fit() before predict_proba()")
        return self._predict(self.network_, self._prepare(inputs, fit=False))


def _masked_bce_np(y: np.ndarray, prob: np.ndarray) -> float:
    obs = ~np.isnan(y)
    if not obs.any():
        return float("nan")
    p = np.clip(prob[obs].astype(np.float64), 1e-7, 1 - 1e-7)
    t = y[obs]
    return float(-np.mean(t * np.log(p) + (1 - t) * np.log(1 - p)))


@dataclass
class SearchResult:
    """Outcome of :func:`search_hyperparameters`.

    Attributes
    ----------
    best : MultitaskClassifier
        The model fitted with the best parameters (early-stopped on the inner split).
    best_params : dict
    table : list of dict
        One row per candidate: its parameters, ``val_auroc`` and ``best_epoch``.
    """

    best: MultitaskClassifier
    best_params: dict[str, Any]
    table: list[dict[str, Any]]


def search_hyperparameters(
    inputs: Inputs,
    targets: np.ndarray,
    *,
    grid: Mapping[str, Sequence[Any]] | None = None,
    base: MultitaskClassifier | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    progress: bool = False,
) -> SearchResult:
    """Small grid search on one inner validation split (DOMAIN.md §6).

    Every combination of ``grid`` is trained on the inner training part with early
    stopping on the inner validation part (a random ``val_fraction`` of
    ``inputs``); the one with the best validation mean AUROC wins.

    Parameters
    ----------
    inputs, targets
        Training compounds and readouts (NaN = missing).
    grid : mapping, optional
        Parameter name -> candidate values (default :data:`DEFAULT_GRID`).
    base : MultitaskClassifier, optional
        Parameters not in ``grid``.
    val_fraction : float, default 0.1
    seed : int, default 0
    progress : bool, default False

    Returns
    -------
    SearchResult
    """
    grid = dict(DEFAULT_GRID if grid is None else grid)
    base = base or MultitaskClassifier()
    y = _check_targets(inputs, targets)
    perm = np.random.default_rng(seed).permutation(len(inputs))
    n_val = max(1, round(val_fraction * len(inputs)))
    val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    x_tr, x_val = _take(inputs, train_idx), _take(inputs, val_idx)
    names = list(grid)
    combos = list(itertools.product(*(grid[n] for n in names)))
    table: list[dict[str, Any]] = []
    best: MultitaskClassifier | None = None
    best_params: dict[str, Any] = {}
    for values in _progress(combos, desc="hyper-parameters", unit="config", enabled=progress):
        params = dict(zip(names, values, strict=True))
        model = MultitaskClassifier(**{**base.get_params(), **params, "progress": False})
        model.fit(x_tr, y[train_idx], validation=(x_val, y[val_idx]))
        score = model.best_score_
        table.append({**params, "val_score": score, "best_epoch": model.best_epoch_})
        if best is None or score > best.best_score_:
            best, best_params = model, params
    assert best is not None
    return SearchResult(best=best, best_params=best_params, table=table)


@dataclass
class RandomForestBaseline:
    """One scikit-learn RandomForest per assay, trained on its observed readouts.

    Parameters
    ----------
    n_estimators : int, default 300
    n_jobs : int, default 1
    seed : int, default 0
    class_weight : str or None, default None
        Passed to ``RandomForestClassifier``.
    min_samples_leaf : int, default 1

    Attributes
    ----------
    n_constant_ : int
        Assays whose training readouts hold one class only; they predict that
        class's training frequency (counted, with a warning).
    """

    n_estimators: int = 300
    n_jobs: int = 1
    seed: int = 0
    class_weight: str | None = None
    min_samples_leaf: int = 1
    progress: bool = False

    def fit(self, features: np.ndarray, targets: np.ndarray) -> RandomForestBaseline:
        """Fit one forest per assay (NaN targets = missing, left out)."""
        from sklearn.ensemble import RandomForestClassifier

        x = np.asarray(features)
        y = _check_targets(x, targets)
        self.models_: list[Any] = []
        self.n_constant_ = 0
        for j in _progress(range(y.shape[1]), desc="forests", unit="assay", enabled=self.progress):
            obs = ~np.isnan(y[:, j])
            t = y[obs, j]
            if t.size == 0 or t.min() == t.max():
                self.models_.append(float(t.mean()) if t.size else 0.0)
                self.n_constant_ += 1
                continue
            rf = RandomForestClassifier(
                n_estimators=self.n_estimators,
                n_jobs=self.n_jobs,
                random_state=self.seed + j,
                class_weight=self.class_weight,
                min_samples_leaf=self.min_samples_leaf,
            )
            self.models_.append(rf.fit(x[obs], t.astype(np.int64)))
        if self.n_constant_:
            warnings.warn(
                f"{self.n_constant_} of {y.shape[1]} assays have one class only in the training "
                "readouts; they predict a constant",
                stacklevel=2,
            )
        return self

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Probability of a hit, ``(n_compounds, n_assays)``."""
        x = np.asarray(features)
        out = np.empty((x.shape[0], len(self.models_)), dtype=np.float32)
        for j, m in enumerate(self.models_):
            out[:, j] = m if isinstance(m, float) else m.predict_proba(x)[:, 1]
        return out
