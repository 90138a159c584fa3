"""Readers that turn outside formats into cellframe tables, and ``ingest``.

Formats: CellProfiler CSV trees and SQLite (ExportToDatabase and
cytominer-database), CytoTable / pycytominer Parquet or CSV, DeepProfiler
``.npz``, IN Carta CSV; platemaps (CSV/TSV); AnnData ``.h5ad`` in and out. See ``docs/io.md``.
"""

# ruff: noqa: F401  (the TYPE_CHECKING imports are the re-exports type checkers see)

from __future__ import annotations

from typing import TYPE_CHECKING

from cellframe._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "AnnDataContentWarning": "anndata",
        "annotate": "platemap",
        "CellProfilerCSV": "cellprofiler_csv",
        "CellProfilerSQLite": "cellprofiler_sqlite",
        "DeepProfilerNPZ": "deepprofiler",
        "detect_format": "ingest",
        "FORMATS": "ingest",
        "from_anndata": "anndata",
        "InCartaCSV": "incarta",
        "ingest": "ingest",
        "IngestOptions": "ingest",
        "IngestReport": "ingest",
        "IngestWarning": "ingest",
        "ProfilesFile": "profiles",
        "read_h5ad": "anndata",
        "read_platemap": "platemap",
        "Reader": "_base",
        "to_anndata": "anndata",
        "write_h5ad": "anndata",
        "write_h5ad_batches": "anndata",
    },
)

if TYPE_CHECKING:  # pragma: no cover
    from cellframe.io._base import Reader
    from cellframe.io.anndata import (
        AnnDataContentWarning,
        from_anndata,
        read_h5ad,
        to_anndata,
        write_h5ad,
        write_h5ad_batches,
    )
    from cellframe.io.cellprofiler_csv import CellProfilerCSV
    from cellframe.io.cellprofiler_sqlite import CellProfilerSQLite
    from cellframe.io.deepprofiler import DeepProfilerNPZ
    from cellframe.io.incarta import InCartaCSV
    from cellframe.io.ingest import (
        FORMATS,
        IngestOptions,
        IngestReport,
        IngestWarning,
        detect_format,
        ingest,
    )
    from cellframe.io.platemap import annotate, read_platemap
    from cellframe.io.profiles import ProfilesFile
