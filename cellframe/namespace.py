"""The Polars ``cf`` namespace: ``lf.cf.aggregate(...)`` and friends.

Registered when :mod:`cellframe` is imported. Each method only forwards to the
plain function of the same name, imported on first call, so the namespace costs
nothing at import time.
"""

from __future__ import annotations

import polars as pl


@pl.api.register_lazyframe_namespace("cf")
class CellframeNamespace:
    """Chainable cellframe transforms on a LazyFrame."""

    def __init__(self, lf: pl.LazyFrame) -> None:
        self._lf = lf
