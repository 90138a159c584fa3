"""cellframe: image-based cell profiling around DuckDB tables and Polars pipelines.

``import cellframe`` is cheap: it loads Polars and DuckDB only. Subpackages that
need PyTorch (``segment``, ``embed``, ``activity``), Altair (``report``) or RDKit
are imported on first use.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("cellframe")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

from cellframe import namespace as _namespace  # noqa: F401  (registers lf.cf)

_SUBPACKAGES = (
    "activity",
    "columns",
    "embed",
    "engine",
    "errors",
    "evaluate",
    "io",
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
}

__all__ = sorted([*_SUBPACKAGES, *_LAZY_NAMES, "__version__"])

if TYPE_CHECKING:  # pragma: no cover
    from cellframe.columns import feature_columns as feature_columns
    from cellframe.columns import metadata_columns as metadata_columns
    from cellframe.engine import map_plates as map_plates
    from cellframe.evaluate import mean_average_precision as mean_average_precision
    from cellframe.evaluate import phenotypic_activity as phenotypic_activity
    from cellframe.evaluate import retrieval_map as retrieval_map
    from cellframe.evaluate import retrieval_metrics as retrieval_metrics
    from cellframe.io import ingest as ingest
    from cellframe.io import read_platemap as read_platemap
    from cellframe.profiles import Normalizer as Normalizer
    from cellframe.profiles import Spherizer as Spherizer
    from cellframe.profiles import aggregate as aggregate
    from cellframe.profiles import feature_select as feature_select
    from cellframe.profiles import normalize as normalize
    from cellframe.profiles import sphere as sphere
    from cellframe.store import Store as Store
    from cellframe.store import load_sql as load_sql


def __getattr__(name: str) -> Any:
    if name in _LAZY_NAMES:
        module = importlib.import_module(_LAZY_NAMES[name])
        value = getattr(module, name)
        globals()[name] = value
        return value
    if name in _SUBPACKAGES:
        module = importlib.import_module(f"cellframe.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'cellframe' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
