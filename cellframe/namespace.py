"""The Polars ``cf`` namespace: ``lf.cf.aggregate(...)`` and friends.

Registered when :mod:`cellframe` is imported. Each method only forwards to the
plain function of the same name, imported on first call, so the namespace costs
nothing at import time.
"""

from __future__ import annotations

from typing import Any

import polars as pl


@pl.api.register_lazyframe_namespace("cf")
class CellframeNamespace:
    """Chainable cellframe transforms on a LazyFrame.

    Examples
    --------
    >>> import polars as pl
    >>> import cellframe  # noqa: F401  (registers the namespace)
    >>> cells = pl.LazyFrame({"Metadata_Plate": ["P"] * 3, "Metadata_Well": ["A01", "A01", "B01"],
    ...                       "f": [1.0, 3.0, 5.0]})
    >>> cells.cf.aggregate("well").collect()["f"].to_list()
    [2.0, 5.0]
    """

    def __init__(self, lf: pl.LazyFrame) -> None:
        self._lf = lf

    def aggregate(self, level: str = "well", **kwargs: Any) -> pl.LazyFrame:
        """Forward to :func:`cellframe.profiles.aggregate`."""
        from cellframe.profiles.aggregate import aggregate

        return aggregate(self._lf, level, **kwargs)  # type: ignore[arg-type]

    def normalize(self, method: str = "standardize", **kwargs: Any) -> pl.LazyFrame:
        """Forward to :func:`cellframe.profiles.normalize`."""
        from cellframe.profiles.normalize import normalize

        return normalize(self._lf, method, **kwargs)

    def select_features(self, operation: Any = "variance_threshold", **kwargs: Any) -> pl.LazyFrame:
        """Forward to :func:`cellframe.profiles.select_features` (drops the selected features)."""
        from cellframe.profiles.select import select_features

        return select_features(self._lf, operation, **kwargs)

    def sphere(self, method: str = "regularized", **kwargs: Any) -> pl.LazyFrame:
        """Forward to :func:`cellframe.profiles.sphere`."""
        from cellframe.profiles.sphere import sphere

        return sphere(self._lf, method, **kwargs)

    def strong_treatments(self, k: int = 10, **kwargs: Any) -> pl.DataFrame:
        """Forward to :func:`cellframe.profiles.strong_treatments`."""
        from cellframe.profiles.strength import strong_treatments

        return strong_treatments(self._lf, k, **kwargs)

    def flag_outlier_wells(self, **kwargs: Any) -> pl.DataFrame:
        """Forward to :func:`cellframe.profiles.flag_outlier_wells`."""
        from cellframe.profiles.qc import flag_outlier_wells

        return flag_outlier_wells(self._lf, **kwargs)

    # ------------------------------------------------------------- evaluation
    def retrieval_map(self, **kwargs: Any) -> float:
        """Forward to :func:`cellframe.evaluate.retrieval_map` (mean interpolated AP)."""
        from cellframe.evaluate.retrieval import retrieval_map

        return retrieval_map(self._lf, **kwargs)

    def retrieval_metrics(self, **kwargs: Any) -> Any:
        """Forward to :func:`cellframe.evaluate.retrieval_metrics` (mAP, PR curve, enrichment, hits)."""
        from cellframe.evaluate.retrieval import retrieval_metrics

        return retrieval_metrics(self._lf, **kwargs)

    def phenotypic_activity(self, **kwargs: Any) -> pl.DataFrame:
        """Forward to :func:`cellframe.evaluate.phenotypic_activity` (copairs-compatible AP)."""
        from cellframe.evaluate.pairs import phenotypic_activity

        return phenotypic_activity(self._lf, **kwargs)
