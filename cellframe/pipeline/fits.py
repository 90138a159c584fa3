"""Save a fitted step to a store table and load it back.

A fitted step serializes itself (``to_frame()`` / ``from_frame(frame,
parameters)``, :mod:`cellframe.profiles`); this module only writes that frame
to the store with the parameters as provenance, and reads it back. The
provenance step name (``normalize_fit``, ``sphere_fit``) says which class a
saved table holds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import polars as pl

from cellframe.errors import InvalidInputError

if TYPE_CHECKING:
    from cellframe.store import Store

__all__ = ["load_step", "save_step"]


def _normalizer_record(step: Any) -> dict[str, Any]:
    return {
        **step.parameters(),
        "features": step.features_,
        "dropped_features": getattr(step, "dropped_features_", []),
    }


def _spherizer_record(step: Any) -> dict[str, Any]:
    return {
        **step.parameters(),
        "n_controls": step.n_controls_,
        "n_features": len(step.features_),
    }


def _kinds() -> dict[str, tuple[type, Callable[[Any], dict[str, Any]]]]:
    """Provenance step name -> (class, what to record besides the frame)."""
    from cellframe.profiles.normalize import Normalizer
    from cellframe.profiles.sphere import SphereByMAP, Spherizer

    # A subclass before its base: save_step takes the first class the step is an instance of.
    return {
        "normalize_fit": (Normalizer, _normalizer_record),
        "sphere_by_map_fit": (SphereByMAP, _spherizer_record),
        "sphere_fit": (Spherizer, _spherizer_record),
    }


def save_step(store: Store, step: Any, name: str) -> None:
    """Write a fitted step to table ``name`` of ``store`` (replacing it).

    Parameters
    ----------
    store : cellframe.store.Store
    step : Normalizer, Spherizer or SphereByMAP
        A fitted step; its ``to_frame()`` is written, its parameters are the
        table's provenance.
    name : str
        Table name (``"normalize_fit"``, ``"sphere_fit"``, ...).

    Raises
    ------
    InvalidInputError
        If ``step`` is of a class that cannot be saved.
    NotFittedError
        If ``step`` is not fitted.

    Examples
    --------
    >>> import polars as pl
    >>> from cellframe.profiles import Spherizer
    >>> from cellframe.store import Store
    >>> frame = pl.DataFrame({"Metadata_Control": ["negcon"] * 4,
    ...                       "f1": [0.0, 1.0, 2.0, 4.0], "f2": [1.0, 0.0, 3.0, 1.0]})
    >>> store = Store()
    >>> save_step(store, Spherizer("PCA").fit(frame), "sphere_fit")
    >>> loaded = load_step(store, "sphere_fit")
    >>> loaded.features_, loaded.method
    (['f1', 'f2'], 'PCA')
    """
    for kind, (cls, record) in _kinds().items():
        if isinstance(step, cls):
            frame = step.to_frame()
            store.write(name, frame, mode="replace", step=kind, parameters=record(step))
            return
    valid = ", ".join(cls.__name__ for cls, _ in _kinds().values())
    raise InvalidInputError(
        f"cannot save a {type(step).__name__} to table {name!r}; savable steps: {valid}"
    )


def load_step(store: Store, name: str, *, expect: type | None = None) -> Any:
    """Read a fitted step saved with :func:`save_step` (``from_frame`` of the table).

    Parameters
    ----------
    store : cellframe.store.Store
    name : str
        The table :func:`save_step` wrote.
    expect : type, optional
        The class the table must hold (``Normalizer``, ``Spherizer``, ``SphereByMAP``).

    Returns
    -------
    Normalizer, Spherizer or SphereByMAP
        The fitted step, of the class the table's provenance names.

    Raises
    ------
    InvalidInputError
        If ``name`` was not written by :func:`save_step` (or holds another
        class than ``expect``), holds a custom method, or is not laid out as
        a saved fit.

    Examples
    --------
    >>> import polars as pl
    >>> from cellframe.profiles import Normalizer
    >>> from cellframe.store import Store
    >>> wells = pl.DataFrame({"Metadata_Plate": ["P1"] * 3, "Metadata_Control": ["negcon"] * 3,
    ...                       "f": [1.0, 2.0, 6.0]})
    >>> store = Store()
    >>> save_step(store, Normalizer("robustize").fit(wells), "normalizer_fit")
    >>> loaded = load_step(store, "normalizer_fit", expect=Normalizer)
    >>> loaded.method, loaded.stats_.rows()  # median 2, IQR 2.5
    ('robustize', [('P1', 3, 2.0, 2.5)])
    """
    prov = store.provenance(name)
    kinds = _kinds()
    if expect is not None:
        kinds = {k: v for k, v in kinds.items() if v[0] is expect}
    prov = prov.filter(pl.col("step").is_in(list(kinds)))
    if prov.height == 0:
        what = f"a saved {expect.__name__}" if expect is not None else "save_step"
        raise InvalidInputError(
            f"table {name!r} was not written by {what} (no {' or '.join(kinds)} provenance); "
            "give the name of a table that save_step wrote"
        )
    kind = prov["step"][-1]
    cls, _ = kinds[kind]
    params = json.loads(prov["parameters"][-1])
    try:
        return cls.from_frame(store.read(name), params)
    except InvalidInputError as exc:
        raise InvalidInputError(f"table {name!r}: {exc}") from None
