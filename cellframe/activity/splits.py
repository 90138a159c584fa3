"""Cross-validation folds of compounds: scaffold, same-size k-means, random.

DOMAIN.md §6. Every splitter returns one integer fold label (0 .. n_folds - 1)
per compound. ``scaffold`` groups compounds by Bemis-Murcko scaffold and adds the
groups, largest first, to the currently smallest fold (this reproduces the five
published folds of Moshkov et al. 2023 exactly; see tests). ``kmeans`` clusters
any feature table (GE or MO profiles) into clusters of equal size. The
``*_partition`` functions make the MoleculeNet-style train/validation/test
(80/10/10) split.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from cellframe.errors import InvalidChoiceError, InvalidInputError

__all__ = [
    "FOLD_METHODS",
    "kmeans_folds",
    "make_folds",
    "random_folds",
    "random_partition",
    "scaffold_folds",
    "scaffold_groups",
    "scaffold_partition",
]


def _check_folds(n: int, n_folds: int) -> None:
    if n_folds < 2:
        raise InvalidInputError(f"n_folds must be at least 2, got {n_folds}")
    if n < n_folds:
        raise InvalidInputError(f"cannot split {n} compounds into {n_folds} folds")


def scaffold_groups(
    smiles: Sequence[str], *, scaffolds: Sequence[str | None] | None = None
) -> list[np.ndarray]:
    """Compound indices grouped by Bemis-Murcko scaffold, largest group first.

    Ties keep the order in which scaffolds first appear. Compounds whose SMILES
    cannot be parsed each form their own group (counted in a warning).

    Parameters
    ----------
    smiles : sequence of str or rdkit Mol
        SMILES (or parsed molecules) per compound.
    scaffolds : sequence of str, optional
        Precomputed scaffolds (skips RDKit).

    Returns
    -------
    list of numpy.ndarray of int, each shape (n_group,)
        The compound indices of each scaffold group.
    """
    if scaffolds is None:
        from cellframe.activity.chem import murcko_scaffolds

        scaffolds = murcko_scaffolds(smiles)  # SMILES or already parsed molecules
    groups: dict[Any, list[int]] = defaultdict(list)
    n_bad = 0
    for i, s in enumerate(scaffolds):
        if s is None:
            n_bad += 1
            groups[("unparsed", i)].append(i)
        else:
            groups[s].append(i)
    if n_bad:
        warnings.warn(
            f"{n_bad} compound(s) without a scaffold (unparseable SMILES) form groups of their own",
            stacklevel=2,
        )
    # sorted() is stable: equal sizes keep first-appearance order.
    return [np.asarray(g) for g in sorted(groups.values(), key=len, reverse=True)]


def scaffold_folds(
    smiles: Sequence[str], *, n_folds: int = 5, scaffolds: Sequence[str | None] | None = None
) -> np.ndarray:
    """Scaffold-grouped folds: largest scaffold group first into the smallest fold.

    Parameters
    ----------
    smiles : sequence of str
        SMILES per compound.
    n_folds : int, default 5
        Number of folds.
    scaffolds : sequence of str, optional
        Precomputed scaffolds.

    Returns
    -------
    numpy.ndarray of int64, shape (n_compounds,)
        Fold label per compound.

    Examples
    --------
    >>> scaffold_folds(["c1ccccc1O", "c1ccccc1N", "C1CCCCC1", "CCO"], n_folds=2).tolist()
    [0, 0, 1, 1]
    """
    _check_folds(len(smiles), n_folds)
    folds = np.full(len(smiles), -1, dtype=np.int64)
    sizes = np.zeros(n_folds, dtype=np.int64)
    for group in scaffold_groups(smiles, scaffolds=scaffolds):
        k = int(np.argmin(sizes))  # first of the smallest folds
        folds[group] = k
        sizes[k] += len(group)
    return folds


def random_folds(n: int, *, n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """Random folds of (almost) equal size.

    Parameters
    ----------
    n : int
        Number of compounds.
    n_folds : int, default 5
    seed : int, default 0

    Returns
    -------
    numpy.ndarray of int, shape (n_compounds,)
        Fold label per compound; fold sizes differ by at most one.
    """
    _check_folds(n, n_folds)
    rng = np.random.default_rng(seed)
    folds = np.empty(n, dtype=np.int64)
    folds[rng.permutation(n)] = np.arange(n) % n_folds
    return folds


def kmeans_folds(
    features: np.ndarray, *, n_folds: int = 5, seed: int = 0, max_iter: int = 50
) -> np.ndarray:
    """Same-size k-means: clusters of equal size (differing by at most one) as folds.

    Starts from scikit-learn's k-means centres, then alternates a capacity-
    constrained assignment (points that lose most by not getting their nearest
    centre choose first, as in same-size k-means) with centre updates until the
    labels stop changing.

    Parameters
    ----------
    features : numpy.ndarray, shape (n_compounds, n_features)
        E.g. GE or MO profiles.
    n_folds : int, default 5
    seed : int, default 0
    max_iter : int, default 50

    Returns
    -------
    numpy.ndarray of int, shape (n_compounds,)
        Fold (cluster) label per compound.

    Raises
    ------
    InvalidInputError
        If ``features`` holds NaN or has too few rows.
    """
    from sklearn.cluster import KMeans

    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise InvalidInputError(f"features must be 2-D, got shape {x.shape}")
    _check_folds(x.shape[0], n_folds)
    if not np.isfinite(x).all():
        raise InvalidInputError(
            "features for the k-means split contain NaN or inf; impute or drop them"
        )
    n = x.shape[0]
    capacity = np.full(n_folds, n // n_folds)
    capacity[: n % n_folds] += 1
    centres = KMeans(n_clusters=n_folds, n_init=10, random_state=seed).fit(x).cluster_centers_
    labels = np.full(n, -1, dtype=np.int64)
    for _ in range(max_iter):
        d = (x**2).sum(axis=1)[:, None] - 2.0 * x @ centres.T + (centres**2).sum(axis=1)[None, :]
        # Points with the largest gap between their best and worst centre go first.
        order = np.argsort(d.min(axis=1) - d.max(axis=1), kind="stable")
        left = capacity.copy()
        new = np.empty(n, dtype=np.int64)
        prefs = np.argsort(d, axis=1, kind="stable")
        for i in order:
            for k in prefs[i]:
                if left[k] > 0:
                    new[i] = k
                    left[k] -= 1
                    break
        if np.array_equal(new, labels):
            break
        labels = new
        centres = np.stack([x[labels == k].mean(axis=0) for k in range(n_folds)])
    return labels


def random_partition(
    n: int, *, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> np.ndarray:
    """Random train/validation/test partition (MoleculeNet style).

    Returns
    -------
    numpy.ndarray of int, shape (n_compounds,)
        0 (train), 1 (validation) or 2 (test) per compound; sizes are
        ``int(f * n)`` for train and validation, the rest test.
    """
    _check_fractions(fractions)
    perm = np.random.default_rng(seed).permutation(n)
    n_train = int(fractions[0] * n)
    n_val = int(fractions[1] * n)
    part = np.full(n, 2, dtype=np.int64)
    part[perm[:n_train]] = 0
    part[perm[n_train : n_train + n_val]] = 1
    return part


def scaffold_partition(
    smiles: Sequence[str],
    *,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    scaffolds: Sequence[str | None] | None = None,
) -> np.ndarray:
    """Scaffold train/validation/test partition: groups, largest first, fill train, then validation.

    A group goes to train if it fits in train's quota, else to validation if it
    fits there, else to test, so no scaffold spans two parts.

    Returns
    -------
    numpy.ndarray of int, shape (n_compounds,)
        0 (train), 1 (validation) or 2 (test) per compound.
    """
    _check_fractions(fractions)
    n = len(smiles)
    quota = [fractions[0] * n, fractions[1] * n]
    sizes = [0, 0]
    part = np.full(n, 2, dtype=np.int64)
    for group in scaffold_groups(smiles, scaffolds=scaffolds):
        for p in (0, 1):
            if sizes[p] + len(group) <= quota[p]:
                part[group] = p
                sizes[p] += len(group)
                break
    return part


def _check_fractions(fractions: Sequence[float]) -> None:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise InvalidInputError(
            f"fractions must be three non-negative numbers summing to 1, got {list(fractions)}"
        )


#: Fold methods by name; ``make_folds`` also accepts a callable.
FOLD_METHODS: dict[str, Callable[..., np.ndarray]] = {
    "kmeans": kmeans_folds,
    "random": random_folds,
    "scaffold": scaffold_folds,
}


def make_folds(
    method: str | Callable[..., np.ndarray],
    *,
    smiles: Sequence[str] | None = None,
    features: np.ndarray | None = None,
    n: int | None = None,
    n_folds: int = 5,
    seed: int = 0,
) -> np.ndarray:
    """Folds by method name (``"scaffold"``, ``"kmeans"``, ``"random"``) or callable.

    Parameters
    ----------
    method : str or callable
        A name in :data:`FOLD_METHODS`, or ``f(smiles=, features=, n=, n_folds=, seed=)``.
    smiles : sequence of str, optional
        Needed by ``"scaffold"``.
    features : numpy.ndarray, shape (n_compounds, n_features), optional
        Needed by ``"kmeans"``.
    n : int, optional
        Number of compounds for ``"random"`` (default: from smiles/features).
    n_folds, seed : int

    Returns
    -------
    numpy.ndarray of int, shape (n_compounds,)

    Raises
    ------
    ValueError
        For an unknown method name (the message lists the valid ones).
    InvalidInputError
        When the input the method needs is missing.
    """
    if callable(method):
        return np.asarray(method(smiles=smiles, features=features, n=n, n_folds=n_folds, seed=seed))
    if method not in FOLD_METHODS:
        raise InvalidChoiceError(f"unknown fold method {method!r}; valid: {sorted(FOLD_METHODS)}")
    if method == "scaffold":
        if smiles is None:
            raise InvalidInputError("the scaffold split needs SMILES")
        return scaffold_folds(smiles, n_folds=n_folds)
    if method == "kmeans":
        if features is None:
            raise InvalidInputError("the k-means split needs a feature table (GE or MO profiles)")
        return kmeans_folds(features, n_folds=n_folds, seed=seed)
    if n is None:
        n = len(smiles) if smiles is not None else (len(features) if features is not None else None)
    if n is None:
        raise InvalidInputError("the random split needs n (or smiles/features to count)")
    return random_folds(n, n_folds=n_folds, seed=seed)
