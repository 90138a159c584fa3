"""Fusion of modalities: early (concatenate features), late (max probability), retrospective.

DOMAIN.md §6. Modalities are CS (chemical structure), MO (morphology, Cell
Painting) and GE (gene expression, L1000); fused modalities are named
``early_CS+MO``, ``late_CS+MO`` and ``retro_CS+MO``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import polars as pl

from cellframe.activity.columns import ASSAY, COMPOUND, FOLD, MODALITY, PROBABILITY, READOUT
from cellframe.columns import feature_columns
from cellframe.errors import InvalidInputError, MissingColumnsError

__all__ = ["early_fusion", "late_fusion", "retrospective_union"]


def _name(kind: str, modalities: Sequence[str]) -> str:
    return f"{kind}_{'+'.join(modalities)}"


def early_fusion(features: Mapping[str, pl.DataFrame], *, on: str = COMPOUND) -> pl.DataFrame:
    """Concatenate the feature tables of several modalities per compound.

    Feature columns are prefixed with their modality (``MO_Cells_...``) so names
    never clash. Only compounds present in every table are kept; the others are
    counted in a warning.

    Parameters
    ----------
    features : mapping of str to DataFrame
        Modality name -> feature table with an ``on`` column.
    on : str, default "Metadata_Compound"

    Returns
    -------
    polars.DataFrame
        ``on`` then the prefixed features of each modality, in mapping order.

    Raises
    ------
    InvalidInputError
        If fewer than two tables are given or a table repeats a compound.
    """
    if len(features) < 2:
        raise InvalidInputError("early fusion needs feature tables of at least two modalities")
    joined: pl.DataFrame | None = None
    all_ids: set[str] = set()
    for modality, frame in features.items():
        if on not in frame.columns:
            raise MissingColumnsError(f"the {modality} feature table", [on])
        if frame[on].is_duplicated().any():
            raise InvalidInputError(
                f"the {modality} feature table has several rows per compound; "
                "aggregate it to one profile per compound first"
            )
        cols = feature_columns(frame.drop(on))
        part = frame.select(
            pl.col(on).cast(pl.String), *[pl.col(c).alias(f"{modality}_{c}") for c in cols]
        )
        all_ids |= set(part[on].to_list())
        joined = (
            part if joined is None else joined.join(part, on=on, how="inner", maintain_order="left")
        )
    assert joined is not None
    dropped = len(all_ids) - joined.height
    if dropped:
        warnings.warn(
            f"early fusion: {dropped} compound(s) lack a profile in at least one modality "
            f"and are left out ({joined.height} kept)",
            stacklevel=2,
        )
    return joined


def late_fusion(
    predictions: pl.DataFrame, modalities: Sequence[str], *, name: str | None = None
) -> pl.DataFrame:
    """Late fusion: per compound and assay the maximum of the modalities' probabilities.

    Parameters
    ----------
    predictions : polars.DataFrame
        Long predictions (``Metadata_Modality, Metadata_Compound, Metadata_Assay,
        Metadata_Fold, readout, probability``) holding every modality named.
    modalities : sequence of str
        At least two.
    name : str, optional
        Modality name of the result (default ``late_<A>+<B>``).

    Returns
    -------
    polars.DataFrame
        The same columns, one row per (compound, assay, fold) predicted by all
        the modalities.

    Raises
    ------
    InvalidInputError
        If fewer than two modalities are named or one has no predictions.
    """
    if len(modalities) < 2:
        raise InvalidInputError("late fusion needs at least two modalities")
    keys = [COMPOUND, ASSAY, FOLD, READOUT]
    missing = [c for c in [MODALITY, *keys, PROBABILITY] if c not in predictions.columns]
    if missing:
        raise MissingColumnsError("the predictions table", missing)
    present = set(predictions[MODALITY].unique().to_list())
    absent = [m for m in modalities if m not in present]
    if absent:
        raise InvalidInputError(
            f"no predictions for modality {absent}; available: {sorted(present)}"
        )
    sub = predictions.filter(pl.col(MODALITY).is_in(list(modalities)))
    fused = sub.group_by(keys, maintain_order=True).agg(
        pl.col(PROBABILITY).max(), pl.col(MODALITY).n_unique().alias("_n")
    )
    partial = fused.filter(pl.col("_n") < len(modalities)).height
    if partial:
        warnings.warn(
            f"late fusion: {partial} readout(s) are not predicted by every modality and are left out",
            stacklevel=2,
        )
    return fused.filter(pl.col("_n") == len(modalities)).select(
        pl.lit(name or _name("late", modalities)).alias(MODALITY),
        *keys[:3],
        pl.col(READOUT),
        pl.col(PROBABILITY),
    )


def retrospective_union(
    per_assay: pl.DataFrame, modalities: Sequence[str], *, name: str | None = None
) -> pl.DataFrame:
    """Retrospective fusion: an assay counts as predicted when any single modality predicts it.

    The fused AUROC (AUPRC) of an assay is the best of the modalities' values, so
    the count of fused assays above a threshold is the size of the union of the
    assays each modality gets above it.

    Parameters
    ----------
    per_assay : polars.DataFrame
        ``Metadata_Modality, Metadata_Assay, auroc`` (``auprc`` optional).
    modalities : sequence of str
    name : str, optional
        Default ``retro_<A>+<B>``.

    Returns
    -------
    polars.DataFrame
        ``Metadata_Modality, Metadata_Assay, auroc, auprc, well_predicted``.
    """
    if len(modalities) < 2:
        raise InvalidInputError("the retrospective union needs at least two modalities")
    missing = [c for c in (MODALITY, ASSAY, "auroc") if c not in per_assay.columns]
    if missing:
        raise MissingColumnsError("the per-assay metrics", missing)
    present = set(per_assay[MODALITY].unique().to_list())
    absent = [m for m in modalities if m not in present]
    if absent:
        raise InvalidInputError(f"no metrics for modality {absent}; available: {sorted(present)}")
    frame = per_assay.filter(pl.col(MODALITY).is_in(list(modalities))).with_columns(
        pl.col("auroc").cast(pl.Float64).fill_nan(None)
    )
    auprc = (
        pl.col("auprc").cast(pl.Float64).fill_nan(None).max()
        if "auprc" in frame.columns
        else pl.lit(None, pl.Float64)
    )
    from cellframe.activity.metrics import WELL_PREDICTED_AUROC, above

    return (
        frame.group_by(ASSAY, maintain_order=True)
        .agg(pl.col("auroc").max(), auprc.alias("auprc"))
        .select(
            pl.lit(name or _name("retro", modalities)).alias(MODALITY),
            ASSAY,
            "auroc",
            "auprc",
            above("auroc", WELL_PREDICTED_AUROC).alias("well_predicted"),  # NaN is not > 0.9
        )
    )
