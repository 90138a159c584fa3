"""cellframe: image-based cell profiling around DuckDB tables and Polars pipelines.

``import cellframe`` is cheap: every public name and subpackage is imported on
first use (:mod:`cellframe._lazy`), so Polars, DuckDB, pyarrow, PyTorch
(``segment``, ``embed``, ``activity``), Altair (``report``) and RDKit load only
when a name needs them. The Polars ``.cf`` namespace is registered when Polars
is imported (before or after cellframe).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cellframe._lazy import attach, when_imported

# The Polars ``.cf`` namespace registers as soon as Polars is imported (now, if
# it already is), so ``import cellframe`` does not pay for loading Polars.
when_imported("polars", lambda _: importlib.import_module("cellframe.namespace"))

_SUBPACKAGES = (
    "activity",
    "columns",
    "embed",
    "engine",
    "errors",
    "evaluate",
    "io",
    "pipeline",
    "profiles",
    "report",
    "segment",
    "store",
)

#: Public names re-exported at the top level, and the module each lives in.
_LAZY_NAMES: dict[str, str] = {
    "Store": "cellframe.store",
    "load_sql": "cellframe.store",
    "feature_columns": "cellframe.columns",
    "metadata_columns": "cellframe.columns",
    "ingest": "cellframe.io",
    "read_platemap": "cellframe.io",
    "aggregate": "cellframe.profiles",
    "normalize": "cellframe.profiles",
    "feature_select": "cellframe.profiles",
    "sphere": "cellframe.profiles",
    "Normalizer": "cellframe.profiles",
    "Spherizer": "cellframe.profiles",
    "retrieval_map": "cellframe.evaluate",
    "retrieval_metrics": "cellframe.evaluate",
    "phenotypic_activity": "cellframe.evaluate",
    "mean_average_precision": "cellframe.evaluate",
    "map_plates": "cellframe.engine",
    "LocalEngine": "cellframe.engine",
    "RayEngine": "cellframe.engine",
    "run_step": "cellframe.pipeline",
    "run_pipeline": "cellframe.pipeline",
}

__getattr__lazy, _dir, _all = attach(__name__, _LAZY_NAMES, _SUBPACKAGES)
__all__ = [*_all, "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from cellframe.columns import feature_columns as feature_columns
    from cellframe.columns import metadata_columns as metadata_columns
    from cellframe.engine import LocalEngine as LocalEngine
    from cellframe.engine import RayEngine as RayEngine
    from cellframe.engine import map_plates as map_plates
    from cellframe.evaluate import mean_average_precision as mean_average_precision
    from cellframe.evaluate import phenotypic_activity as phenotypic_activity
    from cellframe.evaluate import retrieval_map as retrieval_map
    from cellframe.evaluate import retrieval_metrics as retrieval_metrics
    from cellframe.io import ingest as ingest
    from cellframe.io import read_platemap as read_platemap
    from cellframe.pipeline import run_pipeline as run_pipeline
    from cellframe.pipeline import run_step as run_step
    from cellframe.profiles import Normalizer as Normalizer
    from cellframe.profiles import Spherizer as Spherizer
    from cellframe.profiles import aggregate as aggregate
    from cellframe.profiles import feature_select as feature_select
    from cellframe.profiles import normalize as normalize
    from cellframe.profiles import sphere as sphere
    from cellframe.store import Store as Store
    from cellframe.store import load_sql as load_sql


def __getattr__(name: str) -> Any:
    if name == "__version__":  # importlib.metadata costs ~20 ms: only when asked
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("cellframe")
        except PackageNotFoundError:  # a source tree that is not installed
            value = "0+unknown"
        globals()["__version__"] = value
        return value
    return __getattr__lazy(name)


def __dir__() -> list[str]:
    return sorted(__all__)
