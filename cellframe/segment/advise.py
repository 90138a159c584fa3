"""Method-selection helper (the thesis's microscopy-tree assistant, DOMAIN.md §4).

A small bundled table of segmentation methods, filtered by microscopy modality,
2-D/3-D and the challenges the data pose (touching, overlapping or irregular
nuclei, low contrast), listing code and tutorial availability and which
methods cellframe implements itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources

import polars as pl

from cellframe.errors import InvalidChoiceError

__all__ = ["advise", "methods_table"]


def methods_table() -> pl.DataFrame:
    """The bundled table of segmentation methods (``cellframe/segment/data/methods.csv``).

    List-valued columns (``modalities``, ``dims``, ``challenges``) are
    ``List[String]``; yes/no columns are Boolean.
    """
    text = (resources.files("cellframe.segment") / "data" / "methods.csv").read_text("utf-8")
    df = pl.read_csv(text.encode(), infer_schema_length=0)
    split = [
        pl.col(c).fill_null("").str.split(";").list.eval(pl.element().filter(pl.element() != ""))
        for c in ("modalities", "dims", "challenges")
    ]
    yes = [pl.col(c) == "yes" for c in ("code", "tutorial", "cloud")]
    return df.with_columns(*split, *yes, pl.col("cellframe").fill_null(""))


def _values(df: pl.DataFrame, column: str) -> list[str]:
    return sorted(set(df[column].explode().drop_nulls().to_list()))


def advise(
    *,
    modality: str | None = None,
    dim: str | None = None,
    challenges: Sequence[str] = (),
    need_code: bool = False,
    need_tutorial: bool = False,
) -> pl.DataFrame:
    """Segmentation methods suited to the data, best candidates first.

    Parameters
    ----------
    modality : str, optional
        E.g. ``"fluorescence"``, ``"brightfield"``, ``"he"``, ``"phase contrast"``.
    dim : {"2d", "3d"}, optional
        Dimensionality of the images.
    challenges : sequence of str
        E.g. ``["touching", "irregular"]``; methods handling more of them rank higher.
    need_code, need_tutorial : bool
        Keep only methods with public code / a step-by-step tutorial.

    Returns
    -------
    polars.DataFrame
        The matching rows plus ``challenges_handled`` (how many of the asked
        challenges each handles) and ``implemented`` (cellframe has it),
        sorted by challenges handled, then implemented, tutorial, code.

    Raises
    ------
    ValueError
        For a modality, dimensionality or challenge not in the table; the
        message lists the known values.

    Examples
    --------
    >>> advise(modality="fluorescence", dim="2d").height > 3
    True
    """
    df = methods_table()
    checks = [
        ("modality", [modality] if modality else [], "modalities"),
        ("dim", [dim.lower()] if dim else [], "dims"),
        ("challenge", list(challenges), "challenges"),
    ]
    for what, given, column in checks:
        known = _values(df, column)
        bad = [g for g in given if g.lower() not in known]
        if bad:
            raise InvalidChoiceError(f"unknown {what} {bad}; known: {known}")
    if modality:
        df = df.filter(pl.col("modalities").list.contains(modality.lower()))
    if dim:
        df = df.filter(pl.col("dims").list.contains(dim.lower()))
    if need_code:
        df = df.filter(pl.col("code"))
    if need_tutorial:
        df = df.filter(pl.col("tutorial"))
    wanted = [c.lower() for c in challenges]
    handled = (
        pl.col("challenges").list.eval(pl.element().is_in(wanted)).list.sum().fill_null(0)
        if wanted
        else pl.lit(0)
    )
    return df.with_columns(
        challenges_handled=handled.cast(pl.Int32), implemented=pl.col("cellframe") != ""
    ).sort(
        ["challenges_handled", "implemented", "tutorial", "code", "method"],
        descending=[True, True, True, True, False],
    )
