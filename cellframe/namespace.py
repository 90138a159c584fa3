"""The Polars ``cf`` namespace: ``lf.cf.aggregate(...)``, ``df.cf.normalize(...)`` and friends.

Registered on both :class:`polars.LazyFrame` and :class:`polars.DataFrame` when
:mod:`cellframe` is imported. Each method forwards to the plain function of the
same name (the table :data:`FORWARDS` declares which), with the frame as its
first argument. The method *is* that function, seen from the frame: its
signature is the function's minus the frame parameter, its docstring is the
function's, so ``help(lf.cf.normalize)`` and tab completion show the real
parameters, and the two cannot drift apart (tests/test_namespace.py checks it).

The methods are built on first access, from the function itself: importing
:mod:`cellframe` loads none of ``profiles`` or ``evaluate`` (nor NumPy, whose
``np.float32`` is a default of several evaluation functions).

On a DataFrame, a transform (a function that returns a LazyFrame) returns the
collected DataFrame; methods that return a result object, a table or a number
(``strong_treatments``, ``retrieval_metrics``, ``feature_select``, ...) return
the same thing on both frames.
"""

from __future__ import annotations

import importlib
from typing import Any

import polars as pl

__all__ = ["FORWARDS", "DataFrameNamespace", "LazyFrameNamespace", "forwarded_function"]

#: Namespace method -> public module of the function it forwards to. The
#: function's first parameter is the frame.
FORWARDS: dict[str, str] = {
    # profiles: transforms (LazyFrame out)
    "aggregate": "cellframe.profiles",
    "aggregate_by": "cellframe.profiles",
    "consensus": "cellframe.profiles",
    "harmony": "cellframe.profiles",
    "inverse_normal_transform": "cellframe.profiles",
    "normalize": "cellframe.profiles",
    "regress_cell_count": "cellframe.profiles",
    "select_features": "cellframe.profiles",
    "sphere": "cellframe.profiles",
    "typical_variation_normalize": "cellframe.profiles",
    "well_position_correct": "cellframe.profiles",
    # profiles: tables and result objects
    "feature_select": "cellframe.profiles",
    "flag_outlier_wells": "cellframe.profiles",
    "image_qc": "cellframe.profiles",
    "lambda_sweep": "cellframe.profiles",
    "pca_profiles": "cellframe.profiles",
    "strong_treatments": "cellframe.profiles",
    "treatment_strength": "cellframe.profiles",
    # evaluate
    "average_precision": "cellframe.evaluate",
    "grit": "cellframe.evaluate",
    "hits_at_top": "cellframe.evaluate",
    "percent_replicating": "cellframe.evaluate",
    "phenotypic_activity": "cellframe.evaluate",
    "retrieval_map": "cellframe.evaluate",
    "retrieval_metrics": "cellframe.evaluate",
    "top_k_similar": "cellframe.evaluate",
}

_DATAFRAME_NOTE = (
    "On ``DataFrame.cf`` this method collects the result: a DataFrame in, "
    "a ``polars.DataFrame`` out."
)


def forwarded_function(name: str) -> Any:
    """The plain function that the namespace method ``name`` forwards to.

    Parameters
    ----------
    name : str
        A key of :data:`FORWARDS`, e.g. ``"normalize"``.

    Returns
    -------
    callable
        The function, e.g. :func:`cellframe.profiles.normalize`.
    """
    return getattr(importlib.import_module(FORWARDS[name]), name)


def _is_lazyframe_annotation(annotation: Any) -> bool:
    return annotation in (pl.LazyFrame, "pl.LazyFrame", "polars.LazyFrame", "LazyFrame")


def _build_method(name: str, owner: type) -> Any:
    """A method of ``owner`` with the signature and docstring of the forwarded function."""
    import inspect

    func = forwarded_function(name)
    signature = inspect.signature(func)
    frame_param, *params = signature.parameters.values()
    on_dataframe = owner is DataFrameNamespace
    transform = _is_lazyframe_annotation(signature.return_annotation)
    # A DataFrame goes in as is where the function takes one (it can skip a
    # re-read), lazily otherwise.
    takes_dataframe = "DataFrame" in str(frame_param.annotation)
    collect = on_dataframe and transform

    def method(self: _Namespace, *args: Any, **kwargs: Any) -> Any:
        frame = self._frame
        if isinstance(frame, pl.DataFrame) and not takes_dataframe:
            frame = frame.lazy()
        result = func(frame, *args, **kwargs)
        if collect and isinstance(result, pl.LazyFrame):
            result = result.collect()
        return result

    returns = "pl.DataFrame" if collect else signature.return_annotation
    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    method.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[self_param, *params], return_annotation=returns
    )
    method.__annotations__ = {
        **{p.name: p.annotation for p in params if p.annotation is not inspect.Parameter.empty},
        "return": returns,
    }
    doc = inspect.getdoc(func) or ""
    method.__doc__ = f"{doc}\n\n{_DATAFRAME_NOTE}" if collect else doc
    method.__name__ = name
    method.__qualname__ = f"{owner.__qualname__}.{name}"
    method.__module__ = __name__
    # inspect.signature stops at __signature__ before following __wrapped__.
    method.__wrapped__ = func  # type: ignore[attr-defined]
    return method


class _Forward:
    """Class attribute that builds the forwarding method on first access, then caches it.

    The class keeps this descriptor rather than the function, so that doctest
    finds the examples once, on the forwarded function, not again here.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._methods: dict[type, Any] = {}

    def __get__(self, instance: object, owner: type) -> Any:
        method = self._methods.get(owner)
        if method is None:
            method = self._methods[owner] = _build_method(self.name, owner)
        return method.__get__(instance, owner)


class _Namespace:
    def __init__(self, frame: pl.LazyFrame | pl.DataFrame) -> None:
        self._frame = frame


@pl.api.register_lazyframe_namespace("cf")
class LazyFrameNamespace(_Namespace):
    """Chainable cellframe functions on a LazyFrame: ``lf.cf.normalize(...)``.

    Every method is the function of the same name in :mod:`cellframe.profiles`
    or :mod:`cellframe.evaluate` (see ``cellframe.namespace.FORWARDS``), with
    the LazyFrame as its first argument; transforms return a LazyFrame.

    Examples
    --------
    >>> import polars as pl
    >>> import cellframe  # noqa: F401  (registers the namespace)
    >>> cells = pl.LazyFrame({"Metadata_Plate": ["P"] * 3, "Metadata_Well": ["A01", "A01", "B01"],
    ...                       "f": [1.0, 3.0, 5.0]})
    >>> cells.cf.aggregate("well").collect()["f"].to_list()
    [2.0, 5.0]
    """


@pl.api.register_dataframe_namespace("cf")
class DataFrameNamespace(_Namespace):
    """The cellframe functions on a DataFrame: ``df.cf.normalize(...)``.

    The same methods as ``LazyFrame.cf``. Transforms (``aggregate``,
    ``aggregate_by``, ``normalize``, ``select_features``, ``sphere``, the
    corrections and ``consensus``) return a collected DataFrame; the other methods return what the function returns
    (a DataFrame, a result object or a float).

    Examples
    --------
    >>> import polars as pl
    >>> import cellframe  # noqa: F401  (registers the namespace)
    >>> cells = pl.DataFrame({"Metadata_Plate": ["P"] * 3, "Metadata_Well": ["A01", "A01", "B01"],
    ...                       "f": [1.0, 3.0, 5.0]})
    >>> cells.cf.aggregate("well")["f"].to_list()
    [2.0, 5.0]
    """


for _name in FORWARDS:
    setattr(LazyFrameNamespace, _name, _Forward(_name))
    setattr(DataFrameNamespace, _name, _Forward(_name))
del _name
