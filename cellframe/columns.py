"""Column names shared by every layer (DOMAIN.md §1).

Key columns carry the ``Metadata_`` prefix, as in pycytominer and CytoTable.
Every other numeric column of a profile table is a feature.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import polars as pl

METADATA_PREFIX = "Metadata_"

PLATE = "Metadata_Plate"
WELL = "Metadata_Well"
SITE = "Metadata_Site"
OBJECT_NUMBER = "Metadata_ObjectNumber"
IMAGE_NUMBER = "Metadata_ImageNumber"
TREATMENT = "Metadata_Treatment"
MOA = "Metadata_MoA"
CONTROL = "Metadata_Control"
COUNT_CELLS = "Metadata_Count_Cells"

NEGATIVE_CONTROL = "negcon"
POSITIVE_CONTROL = "poscon"

#: The keys of each level of a screen, from the finest to the coarsest.
LEVEL_KEYS: dict[str, tuple[str, ...]] = {
    "cell": (PLATE, WELL, SITE, OBJECT_NUMBER),
    "image": (PLATE, WELL, SITE),
    "well": (PLATE, WELL),
    "treatment": (TREATMENT,),
}

#: Polars dtype of every feature column (ARCHITECTURE.md: features are float32).
FEATURE_DTYPE = pl.Float32

_NUMERIC = (
    pl.Float32,
    pl.Float64,
    pl.Int8,
    pl.Int16,
    pl.Int32,
    pl.Int64,
    pl.UInt8,
    pl.UInt16,
    pl.UInt32,
    pl.UInt64,
    pl.Boolean,
)


def _names_and_types(schema: pl.Schema | pl.DataFrame | pl.LazyFrame) -> pl.Schema:
    if isinstance(schema, pl.LazyFrame):
        return schema.collect_schema()
    if isinstance(schema, pl.DataFrame):
        return schema.schema
    return schema


def is_metadata(name: str) -> bool:
    """Return whether ``name`` is a metadata (key or annotation) column.

    Examples
    --------
    >>> is_metadata("Metadata_Well"), is_metadata("Cells_AreaShape_Area")
    (True, False)
    """
    return name.startswith(METADATA_PREFIX)


def metadata_columns(schema: pl.Schema | pl.DataFrame | pl.LazyFrame) -> list[str]:
    """Names of the ``Metadata_*`` columns, in table order.

    Parameters
    ----------
    schema : polars.Schema, DataFrame or LazyFrame
        The table or its schema.

    Returns
    -------
    list of str

    Examples
    --------
    >>> import polars as pl
    >>> wells = pl.DataFrame({"Metadata_Plate": ["P"], "f": [1.0], "Metadata_Well": ["A01"]})
    >>> metadata_columns(wells)
    ['Metadata_Plate', 'Metadata_Well']
    """
    return [c for c in _names_and_types(schema) if is_metadata(c)]


def feature_columns(schema: pl.Schema | pl.DataFrame | pl.LazyFrame) -> list[str]:
    """Names of the feature columns: every numeric column without the metadata prefix.

    Parameters
    ----------
    schema : polars.Schema, DataFrame or LazyFrame
        The table or its schema.

    Returns
    -------
    list of str

    Examples
    --------
    >>> import polars as pl
    >>> df = pl.DataFrame({"Metadata_Well": ["A01"], "Cells_AreaShape_Area": [1.0], "note": ["x"]})
    >>> feature_columns(df)
    ['Cells_AreaShape_Area']
    """
    types = _names_and_types(schema)
    return [c for c, t in types.items() if not is_metadata(c) and t in _NUMERIC]


def missing_columns(available: Iterable[str], required: Sequence[str]) -> list[str]:
    """Return the names in ``required`` that are not in ``available`` (order kept).

    Examples
    --------
    >>> missing_columns(["Metadata_Plate", "f"], ["Metadata_Plate", "Metadata_Well"])
    ['Metadata_Well']
    """
    have = set(available)
    return [c for c in required if c not in have]
