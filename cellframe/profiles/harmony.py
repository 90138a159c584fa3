"""Harmony batch correction on a PCA of the profiles (DOMAIN.md §7; Korsunsky et al. 2019).

The profiles are centred and projected on their first ``n_components``
principal components; ``harmonypy`` then clusters the rows softly and removes,
per cluster, the linear effect of the batch key (``Metadata_Plate``, a source
column, ...). The output holds the corrected components as ``harmony_0 ...
harmony_{k-1}`` (the JUMP recipe's names) next to every non-feature column.

Harmony is transductive: its correction is a property of the rows it saw, with
no transform to apply to new rows. As a fitted step
(:mod:`cellframe.profiles._fitted`) it therefore **needs all rows**:
:meth:`Harmony.statistics` keeps the rows themselves
(:class:`~cellframe.profiles._fitted.Rows`, ``needs_all_rows``), an engine
gathers every plate before :meth:`Harmony.from_statistics` runs, and
:meth:`Harmony.transform` returns the corrected rows only for rows it was
fitted on (any subset, e.g. one plate at a time, so
:func:`cellframe.engine.fitted.apply_plates` can write the output plate by
plate).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from cellframe.columns import FEATURE_DTYPE, PLATE
from cellframe.errors import EmptyInputError, HarmonyNotConvergedWarning, InvalidInputError
from cellframe.profiles._common import require_columns, resolve_features, to_numpy64, warn
from cellframe.profiles._fitted import Rows

__all__ = ["Harmony", "harmony"]

#: Prefix of the corrected components (the JUMP recipe writes ``harmony_0`` ...).
PREFIX = "harmony_"

#: Column of :meth:`Harmony.to_frame` telling what each row holds.
ROW = "Metadata_Row"


def _positive_int(name: str, value: Any, *, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise InvalidInputError(
            f"Harmony {name}={value!r} must be a positive integer"
            + (" or None (harmonypy's default)" if allow_none else "")
        )
    return int(value)


def _row_keys(batch: np.ndarray, x: np.ndarray) -> list[bytes]:
    """A 128-bit digest of each row: its batch and its float64 feature values.

    Identical rows (same batch, same values) share a key; Harmony gives them
    the same output, so a key identifies a row's correction.
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    return [
        hashlib.blake2b(row.tobytes() + str(b).encode(), digest_size=16).digest()
        for b, row in zip(batch, x, strict=True)
    ]


class Harmony:
    """Harmony on the first principal components of the profiles, as a fitted step.

    Parameters
    ----------
    batch_key : str, default "Metadata_Plate"
        Column naming each row's batch (plate, source, ...). Rows with a null
        batch are refused.
    n_components : int or None, default 50
        Principal components Harmony corrects; more than ``min(rows,
        features)`` is reduced to that with a ``ProfilesWarning`` (the number
        used is ``n_components_used`` in :meth:`parameters`). ``None`` keeps every component: a rotation of the
        centred features, as the JUMP recipe runs Harmony on the features.
    n_clusters : int or None, default None
        Harmony's clusters (``nclust``); ``None`` is harmonypy's
        ``min(rows / 30, 100)``. The JUMP recipe uses 300. More than the rows
        is reduced to the rows with a ``ProfilesWarning``.
    max_iter : int, default 20
        Harmony iterations at most (the JUMP recipe's 20).
    seed : int, default 0
        Random state of Harmony's k-means initialisation; the same seed on the
        same rows gives the same output bit for bit.
    theta : float, default 2.0
        Diversity penalty (harmonypy's default).
    epsilon : float, default 1e-2
        Convergence threshold on the relative change of Harmony's objective.
    features : sequence of str, optional
        Features to correct (default: every numeric non-metadata column).

    Attributes
    ----------
    features_ : list of str
    mean_ : numpy.ndarray, shape (d,)
        Feature means subtracted before the projection.
    components_ : numpy.ndarray, shape (k, d)
        Principal axes (rows), signs fixed so each axis's largest loading is positive.
    explained_variance_ : numpy.ndarray, shape (k,)
    output_names_ : list of str
        ``harmony_0 ... harmony_{k-1}``.
    n_iterations_ : int
        Harmony iterations run.
    converged_ : bool
        True when the objective's relative change fell below ``epsilon``.
    objective_ : list of float
        Harmony's objective after initialisation and after each iteration.
    n_rows_ : int
    """

    def __init__(
        self,
        batch_key: str = PLATE,
        *,
        n_components: int | None = 50,
        n_clusters: int | None = None,
        max_iter: int = 20,
        seed: int = 0,
        theta: float = 2.0,
        epsilon: float = 1e-2,
        features: Sequence[str] | None = None,
    ) -> None:
        if not isinstance(batch_key, str) or not batch_key:
            raise InvalidInputError(
                f"Harmony batch_key={batch_key!r} must be a column name, e.g. {PLATE!r}"
            )
        self.batch_key = batch_key
        self.n_components = _positive_int("n_components", n_components, allow_none=True)
        self.n_clusters = _positive_int("n_clusters", n_clusters, allow_none=True)
        self.max_iter = _positive_int("max_iter", max_iter)
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise InvalidInputError(f"Harmony seed={seed!r} must be an integer >= 0")
        self.seed = int(seed)
        for name, value in (("theta", theta), ("epsilon", epsilon)):
            if not (isinstance(value, int | float) and np.isfinite(value) and value >= 0):
                raise InvalidInputError(f"Harmony {name}={value!r} must be a finite number >= 0")
        self.theta = float(theta)
        self.epsilon = float(epsilon)
        self.features = None if features is None else list(features)

    def parameters(self) -> dict[str, Any]:
        """JSON-serialisable parameters, and the convergence once fitted (recorded in provenance)."""
        params: dict[str, Any] = {
            "batch_key": self.batch_key,
            "n_components": self.n_components,
            "n_clusters": self.n_clusters,
            "max_iter": self.max_iter,
            "seed": self.seed,
            "theta": self.theta,
            "epsilon": self.epsilon,
        }
        if hasattr(self, "n_iterations_"):
            params.update(
                n_components_used=len(self.output_names_),
                n_clusters_used=self.n_clusters_used_,
                n_iterations=self.n_iterations_,
                converged=self.converged_,
                n_rows=self.n_rows_,
            )
        return params

    # ------------------------------------------------------------------ fitting
    def statistics(self, frame: pl.LazyFrame | pl.DataFrame) -> Rows:
        """The rows themselves (batch key and features): Harmony needs all of them.

        Raises
        ------
        MissingColumnsError
            If the batch key or a feature is absent.
        """
        lf = frame.lazy()
        where = "the profiles to correct with Harmony"
        require_columns(lf, [self.batch_key], where, "name the batch column with batch_key=...")
        features = resolve_features(lf, self.features, where)
        if self.batch_key in features:
            features = [f for f in features if f != self.batch_key]
        return Rows(lf.select([self.batch_key, *features]).collect())

    def from_statistics(self, stats: Rows) -> Harmony:
        """Run PCA and Harmony on all rows (merged :class:`Rows`); returns ``self``.

        Raises
        ------
        EmptyInputError
            With fewer than 2 rows.
        InvalidInputError
            With a null batch, missing or non-finite feature values, a single
            batch, or statistics that are not rows.

        Warns
        -----
        HarmonyNotConvergedWarning
            If Harmony stopped at ``max_iter`` before its objective settled.
        """
        if not isinstance(stats, Rows):
            raise InvalidInputError(
                f"Harmony is fitted from the rows themselves (Rows, from Harmony.statistics), "
                f"not {type(stats).__name__}"
            )
        frame = stats.frame
        features = [c for c in frame.columns if c != self.batch_key]
        if frame.height < 2:
            raise EmptyInputError(f"Harmony needs at least 2 rows, found {frame.height}")
        batch_col = frame[self.batch_key]
        n_null = batch_col.null_count()
        if n_null:
            raise InvalidInputError(
                f"{n_null} of {frame.height} rows have a null {self.batch_key!r}; Harmony needs "
                "every row's batch: fill or drop those rows first"
            )
        batch = batch_col.cast(pl.String).to_numpy()
        n_batches = len(set(batch.tolist()))
        if n_batches < 2:
            raise InvalidInputError(
                f"{self.batch_key!r} has a single value ({batch[0]!r}); Harmony corrects between "
                "batches: choose a batch_key with at least 2 values"
            )
        x = to_numpy64(frame, features)
        bad = ~np.isfinite(x)
        if bad.any():
            cols = [f for f, b in zip(features, bad.any(axis=0), strict=True) if b]
            raise InvalidInputError(
                f"{int(bad.sum())} feature values are missing or infinite in {len(cols)} "
                f"feature(s), e.g. {cols[:5]}; Harmony needs complete rows: drop those "
                "features (drop_na_columns) or impute first"
            )
        self._fit_pca(x, features)
        scores = (x - self.mean_) @ self.components_.T
        self._run_harmony(scores, batch)
        self.features_ = features
        self.n_rows_ = frame.height
        self._rows = {key: i for i, key in enumerate(_row_keys(batch, x))}
        return self

    def _fit_pca(self, x: np.ndarray, features: list[str]) -> None:
        n, d = x.shape
        k_max = min(n, d)
        k = k_max if self.n_components is None else min(self.n_components, k_max)
        if self.n_components is not None and self.n_components > k_max:
            warn(
                f"Harmony n_components={self.n_components} is more than min(rows, features) = "
                f"min({n}, {d}): using {k_max} components",
                stacklevel=5,
            )
        self.mean_ = x.mean(axis=0)
        centred = x - self.mean_
        if n > d:
            # Eigen-decompose the d x d scatter matrix: a fraction of the SVD's time
            # and memory for tall profile tables (wells >> features).
            evals, evecs = np.linalg.eigh(centred.T @ centred)
            order = np.argsort(evals)[::-1][:k]
            s = np.sqrt(np.clip(evals[order], 0.0, None))
            vt = evecs[:, order].T
        else:
            _, s, vt = np.linalg.svd(centred, full_matrices=False)
            vt = vt[:k]
        del centred
        # Deterministic signs (scikit-learn's svd_flip convention on the loadings).
        signs = np.sign(vt[np.arange(k), np.argmax(np.abs(vt), axis=1)])
        signs[signs == 0] = 1.0
        self.components_ = vt * signs[:, None]
        self.explained_variance_ = s[:k] ** 2 / max(n - 1, 1)
        self.output_names_ = [f"{PREFIX}{i}" for i in range(k)]

    def _run_harmony(self, scores: np.ndarray, batch: np.ndarray) -> None:
        try:
            import harmonypy
        except ImportError as exc:  # pragma: no cover - harmonypy is a dependency
            raise InvalidInputError(
                "Harmony needs the harmonypy package (pip install 'harmonypy>=2.1')"
            ) from exc
        n = scores.shape[0]
        n_clusters = (
            self.n_clusters if self.n_clusters is not None else int(min(round(n / 30), 100))
        )
        if n_clusters > n:
            warn(
                f"Harmony n_clusters={n_clusters} is more than the {n} rows: using {n} clusters",
                stacklevel=5,
            )
            n_clusters = n
        result = harmonypy.run_harmony(
            scores,
            {self.batch_key: batch},
            self.batch_key,
            theta=self.theta,
            nclust=n_clusters,
            max_iter_harmony=self.max_iter,
            epsilon_harmony=self.epsilon,
            random_state=self.seed,
            verbose=False,
        )
        self.corrected_ = np.asarray(result.Z_corr, dtype=np.float64).reshape(n, -1)
        self.objective_ = [float(v) for v in result.objective_harmony]
        self.n_iterations_ = len(result.kmeans_rounds)
        self.n_clusters_used_ = n_clusters
        obj = self.objective_
        change = abs(obj[-2] - obj[-1]) / abs(obj[-2]) if len(obj) >= 2 and obj[-2] else np.inf
        # harmonypy stops early only on convergence; at max_iter it may or may not have.
        self.converged_ = bool(self.n_iterations_ < self.max_iter or change < self.epsilon)
        if not self.converged_:
            warnings.warn(
                f"Harmony did not converge in {self.max_iter} iterations (last relative change "
                f"of the objective {change:.3g} >= epsilon {self.epsilon:g}); raise max_iter",
                HarmonyNotConvergedWarning,
                stacklevel=4,
            )

    def fit(self, frame: pl.LazyFrame | pl.DataFrame) -> Harmony:
        """:meth:`statistics` then :meth:`from_statistics` on every row of ``frame``."""
        return self.from_statistics(self.statistics(frame))

    def _require_fitted(self) -> None:
        if not hasattr(self, "corrected_"):
            raise InvalidInputError("this Harmony is not fitted; call fit(...) first")

    def transform(self, frame: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
        """The corrected rows: ``frame``'s non-feature columns, then ``harmony_0 ...``.

        ``frame``'s rows must be among the rows Harmony was fitted on (all of
        them, or some, e.g. one plate, in any order): each is matched to its
        fitted row by its batch and feature values. Harmony has no transform
        for rows it did not see.

        Raises
        ------
        InvalidInputError
            If some row of ``frame`` is not a fitted row.
        """
        self._require_fitted()
        df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
        require_columns(
            df,
            [self.batch_key, *self.features_],
            "the profiles to correct with Harmony",
            "pass the rows Harmony was fitted on",
        )
        batch = df[self.batch_key].cast(pl.String).to_numpy()
        x = to_numpy64(df, self.features_)
        index = np.array([self._rows.get(k, -1) for k in _row_keys(batch, x)], dtype=np.int64)
        unseen = int((index < 0).sum())
        if unseen:
            raise InvalidInputError(
                f"{unseen} of {df.height} rows were not among the {self.n_rows_} rows Harmony "
                "was fitted on (matched by batch and feature values); Harmony has no transform "
                "for new rows: fit it on all the rows to correct together (fit_transform)"
            )
        rest = [c for c in df.columns if c not in set(self.features_)]
        out = pl.DataFrame(
            self.corrected_[index].astype(np.float32),
            schema=dict.fromkeys(self.output_names_, FEATURE_DTYPE),
            orient="row",
        )
        return df.select(rest).hstack(out).lazy()

    def fit_transform(self, frame: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
        """:meth:`fit` on every row of ``frame``, then its corrected rows."""
        df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
        return self.fit(df).transform(df)

    # ------------------------------------------------------------------ storage
    def to_frame(self) -> pl.DataFrame:
        """The PCA behind the fit: rows ``mean``, ``explained_variance`` then one per component.

        ``explained_variance`` holds component i's variance in its i-th
        feature column (the rest null). Harmony's per-row correction is the
        output table itself; its convergence is in :meth:`parameters`.
        """
        self._require_fitted()
        k, d = self.components_.shape
        ev = np.full(d, np.nan)
        ev[: min(k, d)] = self.explained_variance_[: min(k, d)]
        rows = np.vstack([self.mean_, ev, self.components_])
        frame = pl.DataFrame(rows, schema=dict.fromkeys(self.features_, pl.Float64), orient="row")
        frame = frame.with_columns(pl.all().fill_nan(None))
        return frame.insert_column(
            0, pl.Series(ROW, ["mean", "explained_variance", *self.output_names_])
        )

    def __repr__(self) -> str:
        return (
            f"Harmony(batch_key={self.batch_key!r}, n_components={self.n_components}, "
            f"n_clusters={self.n_clusters}, max_iter={self.max_iter}, seed={self.seed})"
        )


def harmony(
    frame: pl.LazyFrame | pl.DataFrame,
    batch_key: str = PLATE,
    *,
    n_components: int | None = 50,
    n_clusters: int | None = None,
    max_iter: int = 20,
    seed: int = 0,
    features: Sequence[str] | None = None,
) -> pl.LazyFrame:
    """Correct ``frame`` with :class:`Harmony` on all its rows (see the class for the parameters).

    Examples
    --------
    >>> import numpy as np, polars as pl
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(120, 4))
    >>> x[60:] += 5.0  # the second plate is offset
    >>> df = pl.DataFrame({"Metadata_Plate": ["p1"] * 60 + ["p2"] * 60,
    ...                    **{f"f{j}": x[:, j] for j in range(4)}})
    >>> out = harmony(df, n_components=2, n_clusters=2).collect()
    >>> out.columns
    ['Metadata_Plate', 'harmony_0', 'harmony_1']
    """
    step = Harmony(
        batch_key,
        n_components=n_components,
        n_clusters=n_clusters,
        max_iter=max_iter,
        seed=seed,
        features=features,
    )
    return step.fit_transform(frame)
