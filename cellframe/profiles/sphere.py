"""Sphering (whitening) of profiles against negative controls (DOMAIN.md §2).

Two families:

* ``"regularized"`` — the thesis's eigenvalue-regularized ZCA. On the
  negative-control profiles X (n x d): mu = mean(X), S = (X - mu)^T (X - mu) / n,
  S = U diag(e) U^T, W = U diag(1 / sqrt(e + lambda)) U^T; a profile y becomes
  (y - mu) W. Smaller lambda = stronger correction; the thesis sweeps
  1e-4 ... 1e0 and uses 1e-2 (:func:`lambda_sweep` scores a grid).
* ``"ZCA"``, ``"ZCA-cor"``, ``"PCA"``, ``"PCA-cor"`` — pycytominer >= 1.7.1's
  ``Spherize``: covariance with n - 1, ``epsilon`` added to the *singular
  values*, null-space singular values set to the smallest non-zero one when
  n <= d, ``-cor`` methods standardize first. No lambda reproduces it.

A :class:`Spherizer` is a fitted step (:mod:`cellframe.profiles._fitted`):
``statistics`` of any split of the rows merge exactly, ``from_statistics``
fits, ``transform`` applies, ``to_frame``/``from_frame`` save the fit as a
table (mean, scale, W) to apply to new plates.

:class:`SphereByMAP` is the regularized ZCA with lambda chosen as a step: the
grid point whose sphered profiles score the highest mAP on the fitting rows
(the JUMP recipe's ``sphering`` token; DOMAIN.md §7).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import polars as pl

from cellframe.columns import FEATURE_DTYPE, MOA
from cellframe.errors import InvalidChoiceError, InvalidInputError
from cellframe.profiles._common import (
    RowFilter,
    filter_columns,
    require_columns,
    resolve_features,
    row_filter,
    to_numpy64,
)
from cellframe.profiles._fitted import ColumnStatistics, Rows

__all__ = [
    "LAMBDA_GRID",
    "SPHERE_METHODS",
    "SPHERE_SCORES",
    "SphereByMAP",
    "Spherizer",
    "lambda_sweep",
    "sphere",
]

#: Sphering methods: the thesis's regularized ZCA and pycytominer's four.
SPHERE_METHODS = ("regularized", "ZCA", "ZCA-cor", "PCA", "PCA-cor")

#: Column of a saved sphering table telling what each row holds.
ROW = "Metadata_Row"

#: Columns of :meth:`SphereByMAP.to_frame`'s sweep rows.
SWEEP_LAMBDA = "Metadata_Lambda"
SWEEP_SCORE = "Metadata_Score"
SWEEP_CHOSEN = "Metadata_Chosen"

Score = Callable[[pl.DataFrame], float]

#: Smallest eigenvalue ratio of the Gram matrix for the fast (eigh) path: 1e-10 = condition 1e5.
_GRAM_MIN_RATIO = 1e-10


def _check_method(method: str) -> str:
    if method not in SPHERE_METHODS:
        raise InvalidChoiceError(
            f"unknown sphering method {method!r}; valid: {', '.join(map(repr, SPHERE_METHODS))}"
        )
    return method


def _check_nonnegative(name: str, value: float, what: str) -> float:
    """``value`` as a float when it is a finite number >= 0, else a named error."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not (np.isfinite(number) and number >= 0):
        raise InvalidInputError(
            f"Spherizer {name}={value!r} ({what}) must be a finite number >= 0 "
            f"(e.g. {name}=1e-2; 0 for none)"
        )
    return number


def _regularized_w(evals: np.ndarray, evecs: np.ndarray, lam: float) -> np.ndarray:
    return (evecs / np.sqrt(evals + lam)) @ evecs.T


def _pycytominer_w(xt: np.ndarray, method: str, epsilon: float, center: bool) -> np.ndarray:
    """pycytominer >= 1.7.1 ``Spherize.fit`` on the already centred/standardized X.

    One decomposition gives both the rank (numpy's ``matrix_rank`` tolerance)
    and the whitening matrix: an eigen-decomposition of X^T X when n > d and
    X is well conditioned, else an economy SVD; pycytominer's full-size SVD
    is needed only for PCA with n <= d, whose null-space components need a
    full basis.
    """
    n, d = xt.shape
    pca = method.startswith("PCA")
    sigma = vt = None
    if n > d:
        # Fast path: eigen-decompose the d x d Gram matrix instead of the SVD
        # of the n x d data. Its eigenvalues are the squared singular values;
        # it is used only when the controls are well conditioned (condition
        # number below 1e5), where the squared values lose < 1e-6 relative
        # accuracy. Otherwise the exact SVD below is used.
        evals, evecs = np.linalg.eigh(xt.T @ xt)
        evals, evecs = evals[::-1], evecs[:, ::-1]
        if evals[-1] > evals[0] * _GRAM_MIN_RATIO:
            sigma, vt = np.sqrt(evals), np.ascontiguousarray(evecs.T)
    if sigma is None:
        _, sigma, vt = np.linalg.svd(xt, full_matrices=pca and n <= d)
    tol = (sigma.max() if sigma.size else 0.0) * max(n, d) * np.finfo(np.float64).eps
    r = int((sigma > tol).sum())
    ok = (r == d) or (center and r == n - 1) or (not (center and r == n))
    if not ok:
        raise InvalidInputError(
            f"the control profiles are not full rank: n = {n}, d = {d}, rank = {r}; "
            "remove linearly dependent features (e.g. correlation_threshold) first"
        )
    if r == 0:
        raise InvalidInputError("the control profiles have rank 0 (all equal); cannot sphere")
    scale = np.sqrt(n - 1)
    if n <= d:
        fill = sigma[r - 1]
        if pca:
            s = np.concatenate((sigma[:r], np.repeat(fill, d - r))) + epsilon
            return (vt / s[:, None]).T * scale
        # ZCA: the null-space directions all get the same value, so the
        # projector onto them replaces pycytominer's arbitrary full basis.
        v_r = vt[:r].T
        s_r = sigma[:r] + epsilon
        w = (v_r / s_r) @ v_r.T + (np.eye(d) - v_r @ v_r.T) / (fill + epsilon)
        return w * scale
    s = sigma + epsilon
    w = (vt / s[:, None]).T * scale
    if not pca:
        w = w @ vt
    return w


class Spherizer:
    """A sphering transform fitted on negative-control profiles.

    Parameters
    ----------
    method : {"regularized", "ZCA", "ZCA-cor", "PCA", "PCA-cor"}, default "regularized"
        ``"regularized"`` is the thesis's ZCA with ``lam``; the others are
        pycytominer's ``Spherize`` methods (compatibility mode).
    lam : float, default 1e-2
        Regularization lambda of ``"regularized"`` (added to the eigenvalues).
    epsilon : float, default 1e-6
        pycytominer's epsilon, added to the singular values (compatibility mode).
    center : bool, default True
        Centre before sphering (compatibility mode; ``-cor`` methods require it).
    controls : str, polars.Expr or None, default "negcon"
        Rows to fit on (see :func:`cellframe.profiles.normalize.Normalizer`).
    features : sequence of str, optional
        Features to sphere (default: every numeric non-metadata column).

    Attributes
    ----------
    features_ : list of str
    mean_, scale_ : numpy.ndarray
        Subtracted and divided before multiplying by ``W_`` (scale is 1
        except for the ``-cor`` methods).
    W_ : numpy.ndarray
        d x d whitening matrix.
    output_names_ : list of str
        Output feature names: the input names, or ``PC1 ... PCd`` for PCA.
    n_controls_ : int
    eigenvalues_, eigenvectors_ : numpy.ndarray
        ``"regularized"`` only: the control covariance's eigenvalues (descending)
        and eigenvectors (columns, in ascending eigenvalue order).
    """

    def __init__(
        self,
        method: str = "regularized",
        *,
        lam: float = 1e-2,
        epsilon: float = 1e-6,
        center: bool = True,
        controls: RowFilter = "negcon",
        features: Sequence[str] | None = None,
    ) -> None:
        self.method = _check_method(method)
        self.lam = _check_nonnegative("lam", lam, "the ridge added to the covariance's eigenvalues")
        self.epsilon = _check_nonnegative("epsilon", epsilon, "pycytominer's whitening epsilon")
        if method in ("ZCA-cor", "PCA-cor") and not center:
            raise InvalidInputError("PCA-cor and ZCA-cor require center=True")
        self.center = bool(center)
        self.controls = controls
        self.features = None if features is None else list(features)

    def parameters(self) -> dict[str, Any]:
        """JSON-serialisable parameters (recorded in provenance)."""
        return {
            "method": self.method,
            "lam": self.lam,
            "epsilon": self.epsilon,
            "center": self.center,
            "controls": self.controls
            if isinstance(self.controls, str | None)
            else str(self.controls),
        }

    def statistics(self, frame: pl.LazyFrame | pl.DataFrame) -> ColumnStatistics | Rows:
        """What the fit needs from ``frame``'s control rows (mergeable).

        ``"regularized"``: counts, means and cross-moments of the control rows
        (exact when merged, re-based, no ``X^T X / n - mu mu^T`` cancellation).
        pycytominer's methods use an SVD of the centred controls, which has no
        finite sufficient statistic: the control rows themselves
        (:class:`~cellframe.profiles._fitted.Rows`, ``needs_all_rows``).

        Raises
        ------
        MissingColumnsError
            If the control column or a feature is absent.
        """
        lf = frame.lazy()
        where = "the profiles to sphere"
        require_columns(
            lf,
            filter_columns(self.controls),
            where,
            "name the control rows with controls=..., or controls='all'",
        )
        features = resolve_features(lf, self.features, where)
        predicate = row_filter(self.controls)
        ctrl = (lf if predicate is None else lf.filter(predicate)).select(features).collect()
        if self.method != "regularized":
            return Rows(ctrl)
        return ColumnStatistics.of(to_numpy64(ctrl, features), features, moments=True)

    def _check_controls(self, features: Sequence[str], n: int, count: np.ndarray) -> None:
        if n < 2:
            from cellframe.errors import EmptyInputError

            raise EmptyInputError(
                f"sphering needs at least 2 control profiles, found {n} "
                f"(controls={self.controls!r})"
            )
        bad = count < n
        if bad.any():
            names = [f for f, b in zip(features, bad, strict=True) if b]
            raise InvalidInputError(
                f"{len(names)} feature(s) have missing values in the control profiles, e.g. "
                f"{names[:5]}; drop them (drop_na_columns) or impute before sphering"
            )

    def from_statistics(self, stats: ColumnStatistics | Rows) -> Spherizer:
        """Fit mean and W from (merged) statistics of the control rows; returns ``self``.

        Raises
        ------
        EmptyInputError
            With fewer than 2 control rows.
        InvalidInputError
            With missing values in the controls, a constant feature in a
            ``-cor`` method, (pycytominer's check) rank-deficient controls, or
            statistics of the wrong kind for the method.
        """
        if self.method == "regularized":
            if not isinstance(stats, ColumnStatistics) or stats.moments is None:
                raise InvalidInputError(
                    "the regularized ZCA is fitted from ColumnStatistics with moments "
                    f"(Spherizer.statistics), not {type(stats).__name__}"
                )
            features = list(stats.features)
            self._check_controls(features, stats.n_rows, stats.count)
            d = len(features)
            self.mean_ = stats.mean.copy()
            self.scale_ = np.ones(d)
            cov = stats.moments.rebased(stats.mean).covariance()
            evals, evecs = np.linalg.eigh(cov)
            evals = np.clip(evals, 0.0, None)
            self.eigenvalues_ = evals[::-1].copy()
            self.eigenvectors_ = evecs
            self.W_ = _regularized_w(evals, evecs, self.lam)
            self.n_controls_ = int(stats.n_rows)
        else:
            if not isinstance(stats, Rows):
                raise InvalidInputError(
                    f"sphering method {self.method!r} is fitted from the control rows "
                    f"(Rows, from Spherizer.statistics), not {type(stats).__name__}"
                )
            features = list(stats.frame.columns)
            x = to_numpy64(stats.frame, features)
            self._check_controls(features, x.shape[0], (~np.isnan(x)).sum(axis=0))
            self._fit_pycytominer(features, x)
            self.n_controls_ = x.shape[0]
            d = len(features)
        self.features_ = features
        self.output_names_ = (
            [f"PC{i}" for i in range(1, d + 1)] if self.method.startswith("PCA") else list(features)
        )
        return self

    def _fit_pycytominer(self, features: list[str], x: np.ndarray) -> None:
        d = x.shape[1]
        if self.method.endswith("-cor"):
            self.mean_ = x.mean(axis=0)
            std = x.std(axis=0)
            if np.any(std == 0):
                zero = [f for f, s in zip(features, std, strict=True) if s == 0]
                raise InvalidInputError(
                    f"{len(zero)} feature(s) are constant in the controls, e.g. {zero[:5]}; "
                    f"{self.method} divides by their std: remove them first (variance_threshold)"
                )
            self.scale_ = std
        else:
            self.mean_ = x.mean(axis=0) if self.center else np.zeros(d)
            self.scale_ = np.ones(d)
        xt = (x - self.mean_) / self.scale_
        self.W_ = _pycytominer_w(xt, self.method, self.epsilon, self.center)

    def fit(self, lf: pl.LazyFrame | pl.DataFrame) -> Spherizer:
        """Fit mean and W on the control rows of ``lf`` (:meth:`statistics`, :meth:`from_statistics`).

        Raises
        ------
        EmptyInputError
            With fewer than 2 control rows.
        InvalidInputError
            With missing values in the controls, a constant feature in a
            ``-cor`` method, or (pycytominer's check) rank-deficient controls.
        """
        return self.from_statistics(self.statistics(lf))

    def _require_fitted(self) -> None:
        if not hasattr(self, "W_"):
            raise InvalidInputError(
                "this Spherizer is not fitted; call fit(...) first (or cellframe.pipeline.load_step)"
            )

    def transform_array(self, x: np.ndarray) -> np.ndarray:
        """Apply the transform to a float matrix with the fitted features as columns (float64 result)."""
        self._require_fitted()
        return ((np.asarray(x, dtype=np.float64) - self.mean_) / self.scale_) @ self.W_

    def transform(self, lf: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
        """Sphere every row of ``lf``; metadata passes through, features become Float32.

        For PCA methods the features are replaced by ``PC1 ... PCd``.

        Raises
        ------
        MissingColumnsError
            If a fitted feature is absent.
        """
        self._require_fitted()
        lf = lf.lazy()
        require_columns(
            lf,
            self.features_,
            "the profiles to sphere",
            "the fitted features must all be present (select common features across plates first)",
        )
        schema = lf.collect_schema()
        features = self.features_
        names = self.output_names_
        rest = [c for c in schema if c not in set(features)]
        out_schema = {**{c: schema[c] for c in rest}, **dict.fromkeys(names, FEATURE_DTYPE)}
        if names == features:  # ZCA keeps the column order of the input
            out_schema = {c: (FEATURE_DTYPE if c in set(features) else schema[c]) for c in schema}

        def apply(df: pl.DataFrame) -> pl.DataFrame:
            y = self.transform_array(to_numpy64(df, features)).astype(np.float32)
            new = pl.DataFrame(
                {n: y[:, i] for i, n in enumerate(names)},
                schema=dict.fromkeys(names, FEATURE_DTYPE),
            )
            return df.drop(features).hstack(new).select(list(out_schema))

        return lf.map_batches(apply, schema=out_schema, streamable=True)

    def fit_transform(self, lf: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
        """:meth:`fit` on the controls, then :meth:`transform` every row.

        A LazyFrame source is read once: collected, fitted on and transformed
        from memory (profiles that are fitted on fit in memory).
        """
        df = lf.collect() if isinstance(lf, pl.LazyFrame) else lf
        return self.fit(df).transform(df)

    # ------------------------------------------------------------------ storage
    def to_frame(self) -> pl.DataFrame:
        """The fit as a table: rows ``mean``, ``scale`` and one per output column (W's columns)."""
        self._require_fitted()
        rows = np.vstack([self.mean_, self.scale_, self.W_.T])
        labels = ["mean", "scale", *self.output_names_]
        frame = pl.DataFrame(rows, schema=dict.fromkeys(self.features_, pl.Float64), orient="row")
        return frame.insert_column(0, pl.Series(ROW, labels))

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, parameters: dict[str, Any]) -> Spherizer:
        """A fitted transform from :meth:`to_frame`'s table and :meth:`parameters`.

        Raises
        ------
        InvalidInputError
            If the table is not a saved sphering transform.
        """
        obj = cls(
            parameters["method"],
            lam=parameters["lam"],
            epsilon=parameters["epsilon"],
            center=parameters["center"],
            controls=parameters["controls"],
        )
        labels = frame[ROW].to_list() if ROW in frame.columns else []
        if labels[:2] != ["mean", "scale"]:
            raise InvalidInputError(
                f"this table is not a saved sphering transform: its {ROW} column must start "
                "with 'mean', 'scale'"
            )
        features = [c for c in frame.columns if c != ROW]
        values = frame.select(features).to_numpy().astype(np.float64)
        obj.features_ = features
        obj.mean_, obj.scale_ = values[0], values[1]
        obj.W_ = np.ascontiguousarray(values[2:].T)
        obj.output_names_ = labels[2:]
        obj.n_controls_ = int(parameters.get("n_controls", 0))
        return obj

    def __repr__(self) -> str:
        extra = (
            f", lam={self.lam:g}" if self.method == "regularized" else f", epsilon={self.epsilon:g}"
        )
        return f"Spherizer({self.method!r}{extra})"


def sphere(
    lf: pl.LazyFrame | pl.DataFrame,
    method: str = "regularized",
    *,
    lam: float = 1e-2,
    epsilon: float = 1e-6,
    center: bool = True,
    controls: RowFilter = "negcon",
    features: Sequence[str] | None = None,
) -> pl.LazyFrame:
    """Fit a :class:`Spherizer` on the controls of ``lf`` and sphere every row.

    Examples
    --------
    >>> import numpy as np, polars as pl
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(200, 3)) @ np.array([[2.0, 0, 0], [1, 1, 0], [0, 0, 3]])
    >>> lf = pl.LazyFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2]})
    >>> out = sphere(lf, lam=0.0, controls="all").collect().to_numpy()
    >>> bool(np.allclose(np.cov(out, rowvar=False, bias=True), np.eye(3), atol=1e-4))
    True
    """
    sph = Spherizer(
        method, lam=lam, epsilon=epsilon, center=center, controls=controls, features=features
    )
    return sph.fit_transform(lf)


def _default_score(label: str) -> Score:
    def score(profiles: pl.DataFrame) -> float:
        try:
            from cellframe.evaluate import retrieval_map
        except ImportError as exc:
            raise InvalidInputError(
                "lambda_sweep's default score needs cellframe.evaluate.retrieval_map, which "
                "is not available in this installation; pass score=callable(profiles) -> float"
            ) from exc
        value = retrieval_map(profiles, label=label)
        if isinstance(value, int | float | np.floating):
            return float(value)
        for attr in ("map", "mAP", "mean_average_precision"):
            if hasattr(value, attr):
                return float(getattr(value, attr))
        if isinstance(value, dict):
            for key, v in value.items():
                if "map" in str(key).lower():
                    return float(v)
        raise InvalidInputError(
            f"retrieval_map returned a {type(value).__name__}; lambda_sweep needs a number: "
            "pass score=callable(profiles) -> float"
        )

    return score


def _check_grid(lambdas: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    grid = np.asarray(lambdas, dtype=np.float64).ravel()
    if grid.size == 0 or not np.all(np.isfinite(grid) & (grid >= 0)):
        raise InvalidInputError(
            f"{what} lambdas={list(grid)!r} must be a non-empty sequence of finite "
            "numbers >= 0 (e.g. [1e-4, 1e-2, 1])"
        )
    return grid


def _sweep(
    base: Spherizer,
    data: pl.DataFrame,
    grid: np.ndarray,
    scorer: Score,
    prepare: Callable[[pl.LazyFrame], pl.LazyFrame] | None,
) -> list[float]:
    """Score ``base`` (fitted, regularized) at each lambda of ``grid``: one decomposition, W per lambda."""
    evals, evecs = base.eigenvalues_[::-1], base.eigenvectors_
    scores = []
    for lam in grid:
        sph = copy.copy(base)
        sph.lam = float(lam)
        sph.W_ = _regularized_w(evals, evecs, float(lam))
        out = sph.transform(data)
        if prepare is not None:
            out = prepare(out)
        scores.append(float(scorer(out.collect())))
    return scores


def lambda_sweep(
    lf: pl.LazyFrame | pl.DataFrame,
    lambdas: Sequence[float] | np.ndarray | None = None,
    *,
    controls: RowFilter = "negcon",
    features: Sequence[str] | None = None,
    score: Score | None = None,
    label: str = MOA,
    prepare: Callable[[pl.LazyFrame], pl.LazyFrame] | None = None,
) -> pl.DataFrame:
    """Score the regularized ZCA over a grid of lambdas.

    The control covariance is decomposed once; each lambda only rebuilds W.

    Parameters
    ----------
    lf : polars.LazyFrame or DataFrame
        Profiles (usually well profiles), controls included.
    lambdas : sequence of float, optional
        Grid (default ``10 ** arange(-6, 1)``: 1e-6 ... 1e0, the thesis's range
        widened by two decades).
    controls, features
        As in :class:`Spherizer`.
    score : callable, optional
        ``score(sphered_profiles) -> float`` (higher is better). The default
        is ``cellframe.evaluate.retrieval_map(profiles, label=label)``.
    label : str, default "Metadata_MoA"
        Column the default score retrieves by (DOMAIN.md §3: positives share a label).
    prepare : callable, optional
        Applied to each sphered LazyFrame before scoring, e.g. an
        aggregation to treatments.

    Returns
    -------
    polars.DataFrame
        Columns ``lambda`` and ``score``, one row per lambda, in grid order.
    """
    grid = _check_grid(10.0 ** np.arange(-6, 1) if lambdas is None else lambdas, "lambda_sweep")
    scorer = score if score is not None else _default_score(label)
    base = Spherizer("regularized", controls=controls, features=features)
    data = lf.lazy().collect()
    base.from_statistics(base.statistics(data))
    scores = _sweep(base, data, grid, scorer, prepare)
    n_nan = int(np.isnan(scores).sum())
    if n_nan:
        # NaN sorts above every number: sort(..., descending=True) would pick it as best.
        import warnings

        from cellframe.errors import NaNExcludedWarning

        warnings.warn(
            f"{n_nan} of {len(scores)} lambdas scored NaN; choose the best among the others "
            "(e.g. sweep.filter(pl.col('score').is_not_nan()))",
            NaNExcludedWarning,
            stacklevel=2,
        )
    return pl.DataFrame({"lambda": grid, "score": scores})


#: Default grid of :class:`SphereByMAP`: 1e-5 ... 1e3, one point per decade
#: (DOMAIN.md §7: the JUMP recipe samples lambda log-uniformly in 10^[-5, 3]).
LAMBDA_GRID = tuple(float(f"1e{e}") for e in range(-5, 4))


def _replicate_score(treatment: str, controls: RowFilter) -> Score:
    """Mean AP of each non-control row retrieving its replicates against the controls."""

    def score(profiles: pl.DataFrame) -> float:
        import warnings

        from cellframe.evaluate import phenotypic_activity

        predicate = row_filter(controls)
        if predicate is None:
            raise InvalidInputError(
                "SphereByMAP score='replicate' ranks replicates against the control rows: "
                "name them with controls=... (not 'all')"
            )
        with warnings.catch_warnings():
            # Treatments with one well have no replicate: phenotypic_activity counts them.
            warnings.simplefilter("ignore", RuntimeWarning)
            ap = phenotypic_activity(profiles, treatment=treatment, controls=predicate)
        values = ap.filter(~pl.col("is_control"))["average_precision"].drop_nulls()
        return float(values.mean()) if values.len() else float("nan")

    return score


#: Scores :class:`SphereByMAP` maximises (``score=`` also accepts a callable).
SPHERE_SCORES = ("retrieval", "replicate")


class SphereByMAP(Spherizer):
    """Regularized ZCA whose lambda is the grid point with the highest mAP on the fitting rows.

    For each lambda of ``grid`` the fit's whitening matrix is rebuilt (one
    eigen-decomposition of the control covariance for the whole grid), every
    fitting row is sphered and scored; the best lambda is kept (the first of
    equal scores, in grid order). Scoring reads every fitting row, so the
    statistics are the rows themselves (``needs_all_rows``).

    Parameters
    ----------
    grid : sequence of float, optional
        Lambdas to try (default :data:`LAMBDA_GRID`, 1e-5 ... 1e3 by decades).
    score : {"retrieval", "replicate"} or callable, default "retrieval"
        ``"retrieval"``: :func:`cellframe.evaluate.retrieval_map` of every row
        against the rows sharing its ``label``. ``"replicate"``: mean AP of
        each non-control row retrieving the other rows of its ``label``
        (the treatment) against the control rows
        (:func:`cellframe.evaluate.phenotypic_activity`; JUMP's "mAP vs
        negcon"; treatments with a single row have no replicate and do not
        count). A callable is ``score(sphered_profiles) -> float``, higher
        is better.
    label : str, default "Metadata_MoA"
        Column the built-in scores group by.
    controls, features
        As in :class:`Spherizer` (the sphering is fitted on the controls).
    prepare : callable, optional
        Applied to each sphered LazyFrame before scoring (e.g. a consensus).

    Attributes
    ----------
    lam : float
        The chosen lambda (after fitting).
    sweep_ : polars.DataFrame
        ``lambda``, ``score`` and ``chosen`` per grid point, in grid order.
    """

    def __init__(
        self,
        grid: Sequence[float] | np.ndarray | None = None,
        *,
        score: str | Score = "retrieval",
        label: str = MOA,
        controls: RowFilter = "negcon",
        features: Sequence[str] | None = None,
        prepare: Callable[[pl.LazyFrame], pl.LazyFrame] | None = None,
    ) -> None:
        self.grid = _check_grid(LAMBDA_GRID if grid is None else grid, "SphereByMAP")
        super().__init__(
            "regularized", lam=float(self.grid[0]), controls=controls, features=features
        )
        if isinstance(score, str) and score not in SPHERE_SCORES:
            raise InvalidChoiceError(
                f"unknown SphereByMAP score {score!r}; valid: "
                f"{', '.join(map(repr, SPHERE_SCORES))} (or a callable)"
            )
        if not isinstance(score, str) and not callable(score):
            raise InvalidInputError(
                f"SphereByMAP score must be one of {SPHERE_SCORES} or a callable, "
                f"not {type(score).__name__}"
            )
        self.score = score
        self.label = label
        self.prepare = prepare

    def parameters(self) -> dict[str, Any]:
        """JSON-serialisable parameters: the grid, score and label, and once fitted the chosen lambda."""
        params = super().parameters()
        params.update(
            grid=[float(v) for v in self.grid],
            score=self.score if isinstance(self.score, str) else repr(self.score),
            label=self.label,
        )
        if hasattr(self, "sweep_"):
            params["scores"] = [float(v) for v in self.sweep_["score"]]
        return params

    def _scorer(self) -> Score:
        if callable(self.score):
            return self.score
        if self.score == "replicate":
            return _replicate_score(self.label, self.controls)
        return _default_score(self.label)

    def statistics(self, frame: pl.LazyFrame | pl.DataFrame) -> Rows:
        """Every fitting row (the score reads them all): :class:`~cellframe.profiles._fitted.Rows`.

        Raises
        ------
        MissingColumnsError
            If the control column, a feature or (built-in scores) ``label`` is absent.
        """
        lf = frame.lazy()
        where = "the profiles to sphere"
        require_columns(
            lf,
            filter_columns(self.controls),
            where,
            "name the control rows with controls=..., or controls='all'",
        )
        if isinstance(self.score, str):
            require_columns(
                lf, [self.label], where, f"score={self.score!r} groups rows by label=..."
            )
        resolve_features(lf, self.features, where)
        return Rows(lf.collect())

    def from_statistics(self, stats: ColumnStatistics | Rows) -> SphereByMAP:
        """Fit on the controls of the rows, score every lambda of the grid, keep the best.

        Raises
        ------
        InvalidInputError
            If ``stats`` are not rows, or every lambda scores NaN.

        Warns
        -----
        NaNExcludedWarning
            With the count of lambdas that scored NaN (left out of the choice).
        """
        if not isinstance(stats, Rows):
            raise InvalidInputError(
                "SphereByMAP is fitted from the rows themselves (Rows, from "
                f"SphereByMAP.statistics), not {type(stats).__name__}"
            )
        data = stats.frame
        base = Spherizer("regularized", controls=self.controls, features=self.features)
        base.from_statistics(base.statistics(data))
        scores = np.asarray(_sweep(base, data, self.grid, self._scorer(), self.prepare))
        finite = ~np.isnan(scores)
        if not finite.any():
            raise InvalidInputError(
                f"every lambda of the grid scored NaN (score={self.score!r}, label="
                f"{self.label!r}): the fitting rows need groups of at least 2 rows to score"
            )
        if not finite.all():
            import warnings

            from cellframe.errors import NaNExcludedWarning

            warnings.warn(
                f"{int((~finite).sum())} of {len(scores)} lambdas scored NaN and were left out "
                "of the choice",
                NaNExcludedWarning,
                stacklevel=2,
            )
        best = int(np.argmax(np.where(finite, scores, -np.inf)))
        for name in (
            "mean_",
            "scale_",
            "eigenvalues_",
            "eigenvectors_",
            "n_controls_",
            "features_",
        ):
            setattr(self, name, getattr(base, name))
        self.output_names_ = list(base.output_names_)
        self.lam = float(self.grid[best])
        self.W_ = _regularized_w(base.eigenvalues_[::-1], base.eigenvectors_, self.lam)
        self.sweep_ = pl.DataFrame(
            {
                "lambda": self.grid,
                "score": scores,
                "chosen": np.arange(len(scores)) == best,
            }
        )
        return self

    def fit(self, lf: pl.LazyFrame | pl.DataFrame) -> SphereByMAP:
        """:meth:`statistics` then :meth:`from_statistics` on the rows of ``lf``."""
        return self.from_statistics(self.statistics(lf))

    def to_frame(self) -> pl.DataFrame:
        """:meth:`Spherizer.to_frame`'s table plus one ``sweep`` row per grid point.

        The sweep rows carry ``Metadata_Lambda``, ``Metadata_Score`` and
        ``Metadata_Chosen`` (true for the chosen lambda) and null features;
        the other rows have those three columns null.
        """
        core = super().to_frame()
        core = core.with_columns(
            pl.lit(None, pl.Float64).alias(SWEEP_LAMBDA),
            pl.lit(None, pl.Float64).alias(SWEEP_SCORE),
            pl.lit(None, pl.Boolean).alias(SWEEP_CHOSEN),
        )
        sweep = pl.DataFrame(
            {
                ROW: ["sweep"] * self.sweep_.height,
                SWEEP_LAMBDA: self.sweep_["lambda"],
                SWEEP_SCORE: self.sweep_["score"],
                SWEEP_CHOSEN: self.sweep_["chosen"],
            }
        )
        return pl.concat([core, sweep], how="diagonal_relaxed").select(core.columns)

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, parameters: dict[str, Any]) -> SphereByMAP:
        """A fitted step from :meth:`to_frame`'s table and :meth:`parameters`.

        Raises
        ------
        InvalidInputError
            If the table has no sweep rows or is not a saved sphering transform.
        """
        if ROW not in frame.columns or SWEEP_LAMBDA not in frame.columns:
            raise InvalidInputError(
                f"this table is not a saved SphereByMAP: it needs {ROW!r} and {SWEEP_LAMBDA!r} "
                "columns (SphereByMAP.to_frame)"
            )
        is_sweep = frame[ROW] == "sweep"
        core = Spherizer.from_frame(
            frame.filter(~is_sweep).drop(SWEEP_LAMBDA, SWEEP_SCORE, SWEEP_CHOSEN), parameters
        )
        sweep = frame.filter(is_sweep)
        obj = cls(
            sweep[SWEEP_LAMBDA].to_numpy(),
            score=parameters.get("score", "retrieval")
            if parameters.get("score") in SPHERE_SCORES
            else "retrieval",
            label=parameters.get("label", MOA),
            controls=parameters["controls"],
        )
        obj.__dict__.update({k: v for k, v in core.__dict__.items() if k.endswith("_")})
        obj.lam = core.lam
        obj.sweep_ = pl.DataFrame(
            {
                "lambda": sweep[SWEEP_LAMBDA],
                "score": sweep[SWEEP_SCORE],
                "chosen": sweep[SWEEP_CHOSEN],
            }
        )
        return obj

    def __repr__(self) -> str:
        chosen = f", lam={self.lam:g}" if hasattr(self, "sweep_") else ""
        return f"SphereByMAP(grid={[float(v) for v in self.grid]}, score={self.score!r}{chosen})"
