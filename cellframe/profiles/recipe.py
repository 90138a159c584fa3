"""JUMP-style recipes: a token string or a TOML list of steps, run in order (DOMAIN.md §7).

The JUMP profiling recipe names a chain of corrections by joining its step
tokens with ``_``: ``var_mad_int_featselect_harmony`` for compounds,
``wellpos_cc_var_mad_outlier_featselect_sphering_harmony_PCA`` for genetic
perturbations. :func:`parse_recipe` turns such a string, a TOML text with one
``[[step]]`` table per step (``run = "<token>"`` plus that step's parameters)
or a Python list into fresh step objects, and :func:`apply_recipe` fits and
applies them to a Polars frame, recording each step's parameters (after
fitting: Harmony's convergence, the chosen sphering lambda) in a provenance
list. Nothing here reads or writes a store (see :mod:`cellframe.pipeline.recipe`).

Tokens and the steps they build (:data:`RECIPE_TOKENS`):

==============  ==============================================================
token           step (defaults)
==============  ==============================================================
``wellpos``     :class:`WellPositionCorrector`: subtract the per-position mean
                of every well across plates
``cc``          :class:`CellCountRegressor`: residuals of each feature on
                ``Metadata_Count_Cells``
``var``         :class:`FeatureSelector` ``drop_na_columns`` (``na_cutoff=0``)
                then ``variance_threshold`` (``min_variance=1e-6``)
``mad``         :class:`Normalizer` ``mad_robustize`` per ``Metadata_Plate`` on
                ``negcon`` rows
``int``         :class:`InverseNormalTransformer` (Blom, over all rows)
``outlier``     :class:`FeatureSelector` ``drop_outliers`` (``outlier_cutoff=100``)
``featselect``  :class:`FeatureSelector` ``frequency_threshold``,
                ``correlation_threshold`` (0.9), ``blocklist``,
                ``drop_na_columns`` (``na_cutoff=0``)
``sphering``    :class:`SphereByMAP`: lambda (1e-5 ... 1e3) with the highest mAP of
                ``Metadata_Treatment`` replicates against ``negcon`` rows
``tvn``         :class:`TypicalVariationNormalizer` per ``Metadata_Plate`` on
                ``negcon`` rows
``harmony``     :class:`Harmony` on ``Metadata_Plate``
``PCA``         :class:`VariancePCA` keeping 98% of the variance
==============  ==============================================================
"""

from __future__ import annotations

import inspect
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from cellframe.columns import COUNT_CELLS, FEATURE_DTYPE, PLATE, TREATMENT, WELL, feature_columns
from cellframe.errors import InvalidInputError, UnknownRecipeTokenError
from cellframe.profiles._common import RowFilter

__all__ = [
    "RECIPE_TOKENS",
    "RecipeResult",
    "RecipeStep",
    "VariancePCA",
    "apply_recipe",
    "parse_recipe",
]


# ---------------------------------------------------------------- step factories
def _wellpos(*, position: str = WELL, controls: RowFilter = None) -> Any:
    from cellframe.profiles.correct import WellPositionCorrector

    return WellPositionCorrector(position=position, controls=controls)


def _cc(*, count: str = COUNT_CELLS, controls: RowFilter = None) -> Any:
    from cellframe.profiles.correct import CellCountRegressor

    return CellCountRegressor(count=count, controls=controls)


def _int(*, method: str = "blom", by: Sequence[str] = ()) -> Any:
    from cellframe.profiles.correct import InverseNormalTransformer

    return InverseNormalTransformer(method, by=by)


def _tvn(
    *, batch: str = PLATE, controls: RowFilter = "negcon", n_components: int | None = None
) -> Any:
    from cellframe.profiles.correct import TypicalVariationNormalizer

    return TypicalVariationNormalizer(batch=batch, controls=controls, n_components=n_components)


def _var(*, min_variance: float = 1e-6, samples: RowFilter = "all") -> Any:
    from cellframe.profiles.select import FeatureSelector

    return FeatureSelector(
        ["drop_na_columns", "variance_threshold"],
        na_cutoff=0.0,
        min_variance=min_variance,
        samples=samples,
    )


def _mad(
    *, by: Sequence[str] = (PLATE,), controls: RowFilter = "negcon", epsilon: float = 1e-18
) -> Any:
    from cellframe.profiles.normalize import Normalizer

    return Normalizer("mad_robustize", by=by, controls=controls, epsilon=epsilon)


def _featselect(
    *,
    freq_cut: float = 0.05,
    unique_cut: float = 0.01,
    corr_threshold: float = 0.9,
    blocklist: Sequence[str] | None = None,
    samples: RowFilter = "all",
) -> Any:
    from cellframe.profiles.select import FeatureSelector

    return FeatureSelector(
        ["frequency_threshold", "correlation_threshold", "blocklist", "drop_na_columns"],
        freq_cut=freq_cut,
        unique_cut=unique_cut,
        corr_threshold=corr_threshold,
        blocklist=blocklist,
        na_cutoff=0.0,
        samples=samples,
    )


def _outlier(*, outlier_cutoff: float = 100.0) -> Any:
    from cellframe.profiles.select import FeatureSelector

    return FeatureSelector("drop_outliers", outlier_cutoff=outlier_cutoff)


def _sphering(
    *,
    grid: Sequence[float] | None = None,
    score: str = "replicate",
    label: str = TREATMENT,
    controls: RowFilter = "negcon",
) -> Any:
    from cellframe.profiles.sphere import SphereByMAP

    return SphereByMAP(grid, score=score, label=label, controls=controls)


def _harmony(
    *,
    batch_key: str = PLATE,
    n_components: int | None = 50,
    n_clusters: int | None = None,
    max_iter: int = 20,
    seed: int = 0,
    theta: float = 2.0,
    epsilon: float = 1e-2,
) -> Any:
    from cellframe.profiles.harmony import Harmony

    return Harmony(
        batch_key,
        n_components=n_components,
        n_clusters=n_clusters,
        max_iter=max_iter,
        seed=seed,
        theta=theta,
        epsilon=epsilon,
    )


def _pca(*, variance: float = 0.98, n_components: int | None = None) -> Any:
    return VariancePCA(variance=variance, n_components=n_components)


#: Token -> factory of a fresh, unfitted step (keyword parameters with the recipe's defaults).
RECIPE_TOKENS: dict[str, Callable[..., Any]] = {
    "wellpos": _wellpos,
    "cc": _cc,
    "var": _var,
    "mad": _mad,
    "int": _int,
    "outlier": _outlier,
    "featselect": _featselect,
    "sphering": _sphering,
    "tvn": _tvn,
    "harmony": _harmony,
    "PCA": _pca,
}


# ---------------------------------------------------------------- PCA by variance
class VariancePCA:
    """:class:`~cellframe.profiles.qc.PCA` keeping the fewest components that explain ``variance``.

    The JUMP recipe's ``PCA`` step keeps 98% of the variance; a fixed
    ``n_components`` overrides the share.

    Parameters
    ----------
    variance : float, default 0.98
        Share of the total variance to keep, in (0, 1].
    n_components : int, optional
        Keep exactly this many components instead.
    """

    def __init__(self, *, variance: float = 0.98, n_components: int | None = None) -> None:
        if not (isinstance(variance, int | float) and 0 < variance <= 1):
            raise InvalidInputError(
                f"PCA variance={variance!r} must be a share in (0, 1], e.g. 0.98"
            )
        if n_components is not None and (
            isinstance(n_components, bool) or not isinstance(n_components, int) or n_components < 1
        ):
            raise InvalidInputError(f"PCA n_components={n_components!r} must be a positive integer")
        self.variance = float(variance)
        self.n_components = n_components

    def parameters(self) -> dict[str, Any]:
        """JSON-serialisable parameters, and the components kept once fitted."""
        params: dict[str, Any] = {"variance": self.variance, "n_components": self.n_components}
        if hasattr(self, "pca_"):
            params["n_components_kept"] = len(self.pca_.components_)
            params["variance_kept"] = float(self.pca_.explained_variance_ratio_.sum())
        return params

    def fit(self, frame: pl.LazyFrame | pl.DataFrame) -> VariancePCA:
        """Fit every component on ``frame``'s rows, then keep the first ones."""
        from cellframe.profiles.qc import PCA

        df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
        full = self.n_components or max(len(feature_columns(df)), 1)
        pca = PCA(full).fit(df)
        if self.n_components is None:
            share = np.cumsum(pca.explained_variance_ratio_)
            k = int(min(np.searchsorted(share, self.variance - 1e-12) + 1, share.size))
            pca.components_ = pca.components_[:k]
            pca.explained_variance_ratio_ = pca.explained_variance_ratio_[:k]
            pca.n_components = k
        self.pca_ = pca
        return self

    def transform(self, frame: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
        """Metadata columns, then ``PC1 ... PCk`` (Float32, as every feature)."""
        if not hasattr(self, "pca_"):
            raise InvalidInputError("this PCA is not fitted; call fit(...) first")
        names = [f"PC{i + 1}" for i in range(len(self.pca_.components_))]
        return self.pca_.transform(frame).with_columns(pl.col(names).cast(FEATURE_DTYPE))

    def __repr__(self) -> str:
        return f"VariancePCA(variance={self.variance}, n_components={self.n_components})"


# ---------------------------------------------------------------- parsing
@dataclass
class RecipeStep:
    """One step of a recipe: its token, the parameters given, and the unfitted step."""

    token: str
    parameters: dict[str, Any]
    step: Any


@dataclass
class RecipeResult:
    """What :func:`apply_recipe` returns: the corrected frame and one provenance entry per step."""

    frame: pl.DataFrame
    provenance: list[dict[str, Any]] = field(default_factory=list)
    steps: list[RecipeStep] = field(default_factory=list)


def _allowed() -> str:
    return ", ".join(map(repr, RECIPE_TOKENS))


def _resolve_token(token: Any, where: str) -> str:
    if not isinstance(token, str) or not token:
        raise UnknownRecipeTokenError(
            f"{where}: a step must be named by a token string, not {token!r}; allowed: {_allowed()}"
        )
    if token in RECIPE_TOKENS:
        return token
    folded = {t.lower(): t for t in RECIPE_TOKENS}
    if token.lower() in folded:
        return folded[token.lower()]
    raise UnknownRecipeTokenError(f"{where}: unknown recipe token {token!r}; allowed: {_allowed()}")


def _build(token: str, params: Mapping[str, Any], where: str) -> RecipeStep:
    factory = RECIPE_TOKENS[token]
    accepted = list(inspect.signature(factory).parameters)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise InvalidInputError(
            f"{where}: step {token!r} has no parameter(s) {unknown}; its parameters: "
            f"{', '.join(accepted) or '(none)'}"
        )
    return RecipeStep(token, dict(params), factory(**params))


def _steps_from_toml(text: str) -> list[tuple[str, dict[str, Any], str]]:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInputError(
            f"the recipe is not a token string and not valid TOML: {exc}"
        ) from None
    extra = sorted(set(doc) - {"step"})
    if extra:
        raise InvalidInputError(
            f"the TOML recipe has unknown top-level key(s) {extra}; write one [[step]] table "
            'per step with run = "<token>"'
        )
    steps = doc.get("step")
    if not isinstance(steps, list) or not steps:
        raise InvalidInputError(
            'the TOML recipe has no [[step]] tables; write one per step, e.g. [[step]] run = "mad"'
        )
    out = []
    for i, table in enumerate(steps, start=1):
        params = dict(table)
        if "run" not in params:
            raise InvalidInputError(
                f'TOML recipe step {i}: no run = "<token>" key; allowed tokens: {_allowed()}'
            )
        out.append((params.pop("run"), params, f"TOML recipe step {i}"))
    return out


def parse_recipe(
    recipe: str | Sequence[str | tuple[str, Mapping[str, Any]] | Mapping[str, Any]],
    *,
    parameters: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[RecipeStep]:
    """The steps a recipe names, unfitted, in order.

    Parameters
    ----------
    recipe : str or sequence
        A token string (``"var_mad_featselect_harmony"``: tokens joined by
        ``_``, matched case-insensitively), a TOML text with ``[[step]]``
        tables (``run = "<token>"`` and that step's parameters), or a list
        of tokens, ``(token, parameters)`` pairs or ``{"run": token, ...}``
        mappings.
    parameters : mapping, optional
        Per-token parameters applied to every step of that token, e.g.
        ``{"harmony": {"batch_key": "Metadata_Source"}}``; a step's own
        parameters (TOML, pairs) take precedence.

    Returns
    -------
    list of RecipeStep

    Raises
    ------
    UnknownRecipeTokenError
        For a token outside :data:`RECIPE_TOKENS` (the message names it and
        lists the allowed ones).
    InvalidInputError
        For an empty recipe, invalid TOML, or a parameter the step does not take.

    Examples
    --------
    >>> [s.token for s in parse_recipe("var_mad_featselect_harmony")]
    ['var', 'mad', 'featselect', 'harmony']
    >>> parse_recipe("mad_pca")[1].step
    VariancePCA(variance=0.98, n_components=None)
    """
    entries: list[tuple[Any, dict[str, Any], str]] = []
    if isinstance(recipe, str):
        text = recipe.strip()
        if "\n" in text or text.startswith("[") or "=" in text:
            entries = _steps_from_toml(text)
        else:
            tokens = text.split("_")
            if not text or any(not t for t in tokens):
                raise InvalidInputError(
                    f"recipe {recipe!r} has an empty token; join tokens with single "
                    f"underscores, e.g. 'var_mad_featselect_harmony'; allowed: {_allowed()}"
                )
            entries = [(t, {}, f"recipe {recipe!r}, token {i}") for i, t in enumerate(tokens, 1)]
    else:
        for i, item in enumerate(recipe, start=1):
            where = f"recipe step {i}"
            if isinstance(item, str):
                entries.append((item, {}, where))
            elif isinstance(item, Mapping):
                params = dict(item)
                entries.append((params.pop("run", None), params, where))
            elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], Mapping):
                entries.append((item[0], dict(item[1]), where))
            else:
                raise InvalidInputError(
                    f"{where}: {item!r} is not a token, a (token, parameters) pair or a "
                    "mapping with run = token"
                )
    if not entries:
        raise InvalidInputError(
            "the recipe names no step; e.g. 'var_mad_featselect_harmony' or a [[step]] list"
        )
    given = {_resolve_token(k, "parameters"): dict(v) for k, v in (parameters or {}).items()}
    steps = []
    for token, params, where in entries:
        name = _resolve_token(token, where)
        steps.append(_build(name, {**given.get(name, {}), **params}, where))
    return steps


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


def apply_recipe(
    frame: pl.LazyFrame | pl.DataFrame,
    recipe: str | Sequence[Any] | Sequence[RecipeStep],
    *,
    parameters: Mapping[str, Mapping[str, Any]] | None = None,
) -> RecipeResult:
    """Fit and apply each step of ``recipe`` to ``frame`` in order, on all its rows.

    Every step is fitted on the whole output of the previous one (Harmony and
    the lambda choice of sphering need all rows; the per-plate steps fit
    per plate within it).

    Parameters
    ----------
    frame : polars.LazyFrame or DataFrame
        Profiles (usually well profiles).
    recipe : str, sequence or list of RecipeStep
        As :func:`parse_recipe` takes, or its output.
    parameters : mapping, optional
        Per-token parameters (see :func:`parse_recipe`).

    Returns
    -------
    RecipeResult
        ``frame``: the corrected profiles; ``provenance``: one entry per step
        (``position``, ``token``, ``step``, ``parameters`` after fitting,
        ``rows``, ``features_in``, ``features_out``, ``seconds``, and for
        feature selection ``dropped``: each dropped feature with the operation
        and reason); ``steps``: the fitted steps.

    Raises
    ------
    UnknownRecipeTokenError, InvalidInputError
        As :func:`parse_recipe`, and whatever a step raises on its input.

    Examples
    --------
    >>> import polars as pl
    >>> df = pl.DataFrame({"Metadata_Plate": ["p"] * 4,
    ...                    "Metadata_Control": ["negcon", "negcon", "negcon", "trt"],
    ...                    "a": [1.0, 2.0, 3.0, 9.0], "b": [0.0, 0.0, 0.0, 0.0]})
    >>> out = apply_recipe(df, "var_mad")
    >>> out.frame.columns  # "b" is constant: var drops it
    ['Metadata_Plate', 'Metadata_Control', 'a']
    >>> [round(v, 4) for v in out.frame["a"]]  # (x - 2) / (1.4826 * MAD of the negcon rows)
    [-0.6745, 0.0, 0.6745, 4.7214]
    >>> [p["token"] for p in out.provenance]
    ['var', 'mad']
    """
    if isinstance(recipe, list) and recipe and all(isinstance(s, RecipeStep) for s in recipe):
        steps = list(recipe)
    else:
        steps = parse_recipe(recipe, parameters=parameters)
    current = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
    provenance = []
    for i, item in enumerate(steps, start=1):
        t0 = time.perf_counter()
        n_in = len(feature_columns(current))
        step = item.step
        if hasattr(step, "fit_transform"):
            out = step.fit_transform(current)
        else:
            out = step.fit(current).transform(current)
        current = out.collect() if isinstance(out, pl.LazyFrame) else out
        entry: dict[str, Any] = {}
        if hasattr(step, "selection_"):  # feature selection: say what it dropped and why
            entry["dropped"] = step.selection_.dropped.to_dicts()
        provenance.append(
            {
                "position": i,
                "token": item.token,
                "step": type(step).__name__,
                "parameters": _jsonable(step.parameters()),
                "rows": current.height,
                "features_in": n_in,
                "features_out": len(feature_columns(current)),
                "seconds": round(time.perf_counter() - t0, 3),
                **entry,
            }
        )
    return RecipeResult(current, provenance, steps)
