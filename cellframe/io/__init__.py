"""Readers that turn outside formats into cellframe tables, and ``ingest``.

Formats: CellProfiler CSV trees and SQLite (ExportToDatabase and
cytominer-database), CytoTable / pycytominer Parquet or CSV, DeepProfiler
``.npz``, IN Carta CSV; platemaps (CSV/TSV). See ``docs/io.md``.
"""

from __future__ import annotations

from cellframe.io._base import Reader
from cellframe.io.cellprofiler_csv import CellProfilerCSV
from cellframe.io.cellprofiler_sqlite import CellProfilerSQLite
from cellframe.io.deepprofiler import DeepProfilerNPZ
from cellframe.io.incarta import InCartaCSV
from cellframe.io.ingest import (
    FORMATS,
    IngestReport,
    IngestWarning,
    detect_format,
    ingest,
)
from cellframe.io.platemap import annotate, read_platemap
from cellframe.io.profiles import ProfilesFile

__all__ = [
    "FORMATS",
    "CellProfilerCSV",
    "CellProfilerSQLite",
    "DeepProfilerNPZ",
    "InCartaCSV",
    "IngestReport",
    "IngestWarning",
    "ProfilesFile",
    "Reader",
    "annotate",
    "detect_format",
    "ingest",
    "read_platemap",
]
