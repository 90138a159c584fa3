"""Plate-layout heatmaps (16 x 24 wells by default)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import altair as alt
import polars as pl

from cellframe.columns import WELL
from cellframe.errors import InvalidInputError
from cellframe.report.charts import _require

__all__ = ["plate_heatmap_chart", "plate_layout"]


_ROWS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def plate_layout(
    wells: pl.DataFrame, *, well: str = WELL, rows: int = 16, columns: int = 24
) -> pl.DataFrame:
    """Every position of a plate, joined with the rows of ``wells`` (nulls where absent).

    Parameters
    ----------
    wells : polars.DataFrame
        One row per well, with well names such as ``A01`` (or ``A1``).
    well : str
        Well column.
    rows, columns : int, default 16 and 24
        Plate geometry (384 wells).

    Returns
    -------
    polars.DataFrame
        ``rows * columns`` rows: ``plate_row`` (letter), ``plate_column`` (int),
        ``well`` and the columns of ``wells``.

    Raises
    ------
    InvalidInputError
        If a well name does not parse, lies outside the plate or repeats.
    """
    _require(wells, [well], "plate layout")
    names = wells[well].cast(pl.String)
    parsed = names.str.extract_groups(r"^([A-Za-z])(\d{1,2})$")
    r = parsed.struct.field("1").str.to_uppercase()
    c = parsed.struct.field("2").cast(pl.Int64)
    bad = names.filter(r.is_null() | c.is_null()).head(3).to_list()
    if bad:
        raise InvalidInputError(
            f"column {well!r}: well names such as {bad} do not read as A01 ... P24"
        )
    r_idx = r.map_elements(_ROWS.index, return_dtype=pl.Int64)
    outside = names.filter((r_idx >= rows) | (c < 1) | (c > columns)).head(3).to_list()
    if outside:
        raise InvalidInputError(
            f"column {well!r}: wells {outside} lie outside a {rows} x {columns} plate"
        )
    keyed = wells.with_columns(r.alias("plate_row"), c.alias("plate_column"))
    dup = (
        keyed.filter(pl.struct("plate_row", "plate_column").is_duplicated())[well].head(3).to_list()
    )
    if dup:
        raise InvalidInputError(
            f"column {well!r}: wells {dup} appear more than once; chart one plate"
        )
    grid = pl.DataFrame(
        {
            "plate_row": [_ROWS[i] for i in range(rows) for _ in range(columns)],
            "plate_column": [j + 1 for _ in range(rows) for j in range(columns)],
        }
    )
    return grid.join(keyed.drop(well), on=["plate_row", "plate_column"], how="left").with_columns(
        (pl.col("plate_row") + pl.col("plate_column").cast(pl.String).str.zfill(2)).alias("well")
    )


def plate_heatmap_chart(
    wells: pl.DataFrame,
    value: str,
    *,
    well: str = WELL,
    title: str | None = None,
    value_title: str | None = None,
    tooltip: Sequence[str] = (),
    colors: Mapping[str, str] | None = None,
    log_scale: bool = False,
    rows: int = 16,
    columns: int = 24,
) -> alt.LayerChart:
    """A plate-layout heatmap (16 x 24 wells by default) of one value per well.

    Parameters
    ----------
    wells : polars.DataFrame
        One row per well of one plate.
    value : str
        Column coloured: numeric (sequential colours) or boolean / text
        (categories, e.g. a QC flag).
    well : str
        Well column (``A01`` ... ``P24``).
    title, value_title : str, optional
        Chart title and legend title (give the unit).
    tooltip : sequence of str
        Extra columns in the tooltip.
    colors : mapping of str to str, optional
        Category -> colour, for a categorical ``value``.
    log_scale : bool, default False
        Log colour scale for a positive numeric ``value`` (e.g. a dose).
    rows, columns : int
        Plate geometry.

    Returns
    -------
    altair.LayerChart
        Wells without a row in ``wells`` (or a null or NaN value) are drawn
        light grey with "no data" in the tooltip.
    """
    _require(wells, [well, value], "plate heatmap")
    extra = [c for c in dict.fromkeys(tooltip) if c not in (well, value) and c in wells.columns]
    grid = plate_layout(wells.select(well, value, *extra), well=well, rows=rows, columns=columns)
    dtype = grid.schema[value]
    if dtype == pl.Boolean:
        grid = grid.with_columns(pl.col(value).cast(pl.String))
    numeric = dtype.is_numeric()
    if numeric and dtype.is_float():
        grid = grid.with_columns(
            pl.when(pl.col(value).is_nan()).then(None).otherwise(pl.col(value)).alias(value)
        )
    if numeric and log_scale and (grid[value] <= 0).any():
        raise InvalidInputError(
            f"column {value!r}: a log colour scale needs positive values; null the others"
        )
    legend = value_title or value
    if numeric:
        scale = alt.Scale(scheme="viridis", type="log" if log_scale else "linear")
        color = alt.Color(f"{value}:Q", title=legend, scale=scale)
    elif colors:
        color = alt.Color(
            f"{value}:N", title=legend,
            scale=alt.Scale(domain=list(colors), range=list(colors.values())),
        )  # fmt: skip
    else:
        color = alt.Color(f"{value}:N", title=legend, scale=alt.Scale(scheme="category10"))
    x = alt.X("plate_column:O", title="plate column", axis=alt.Axis(labelAngle=0))
    y = alt.Y("plate_row:O", title="plate row")
    tips = [
        alt.Tooltip("well:N", title="well"),
        alt.Tooltip(f"{value}:{'Q' if numeric else 'N'}", title=legend),
        *[alt.Tooltip(f"{c}:N") for c in extra],
    ]
    present = grid.filter(pl.col(value).is_not_null())
    missing = grid.filter(pl.col(value).is_null()).with_columns(pl.lit("no data").alias("status"))
    layers = []
    if missing.height:
        layers.append(
            alt.Chart(missing.select("well", "plate_row", "plate_column", "status").to_pandas())
            .mark_rect(stroke="white", strokeWidth=1, color="#e4e7eb")
            .encode(
                x=x, y=y, tooltip=[alt.Tooltip("well:N"), alt.Tooltip("status:N", title=legend)]
            )
        )
    if present.height:
        layers.append(
            alt.Chart(present.to_pandas())
            .mark_rect(stroke="white", strokeWidth=1)
            .encode(x=x, y=y, color=color, tooltip=tips)
        )
    return alt.layer(*layers, title=title or f"{legend} per well").properties(
        width=24 * columns, height=20 * rows
    )
