"""Published per-assay AUROC tables (Moshkov et al. 2023) and NaN-safe counts over them.

The paper's ``predictions/*_median_AUC.csv`` files hold one row per assay and
predictor, with ``auc = nan`` where an assay was never evaluated (no test fold
held both classes). NaN compares greater than every number in Polars and
DuckDB, so ``auc > 0.9`` would count such an assay as well predicted; here it
becomes null, which no comparison counts, and the counts report it apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl

from cellframe.activity.metrics import WELL_PREDICTED_AUROC
from cellframe.errors import InvalidInputError, MissingColumnsError

__all__ = [
    "PUBLISHED_MODALITIES",
    "read_published_auroc",
    "well_predicted_sets",
]

#: Predictor names of the paper -> modality: chemical structure, gene expression
#: (L1000) and morphology (Cell Painting, batch-corrected).
PUBLISHED_MODALITIES: dict[str, str] = {"cp_es_op": "CS", "ge_es_op": "GE", "mobc_es_op": "MO"}


def read_published_auroc(
    path: str | Path, *, descriptors: Mapping[str, str] = PUBLISHED_MODALITIES
) -> pl.DataFrame:
    """Read a published per-assay AUROC table, one row per assay and modality.

    Parameters
    ----------
    path : str or Path
        A CSV with columns ``assay_id``, ``auc`` and ``descriptor`` (the
        paper's ``predictions/scaffold_median_AUC.csv`` layout).
    descriptors : mapping of str to str, default :data:`PUBLISHED_MODALITIES`
        Predictor name -> modality; other predictors are left out.

    Returns
    -------
    polars.DataFrame
        ``assay_id`` (str), ``modality`` (str), ``auroc`` (Float64; null where
        the file says ``nan``: the assay was not evaluated), sorted by modality
        and assay.

    Raises
    ------
    MissingColumnsError
        If a column is absent.
    InvalidInputError
        If an ``auc`` value is not a number, or is outside [0, 1].
    """
    path = Path(path)
    raw = pl.read_csv(path, glob=False, infer_schema_length=0)  # strings: check, then cast
    missing = [c for c in ("assay_id", "auc", "descriptor") if c not in raw.columns]
    if missing:
        raise MissingColumnsError(str(path), missing, f"columns present: {raw.columns[:8]}")
    table = raw.filter(pl.col("descriptor").is_in(list(descriptors))).with_row_index("row")
    auc = pl.col("auc").str.strip_chars().cast(pl.Float64, strict=False)
    bad = table.filter(auc.is_null() & pl.col("auc").is_not_null())
    if bad.height:
        row = bad.row(0, named=True)
        raise InvalidInputError(
            f"{path}: column 'auc' holds {row['auc']!r} for assay {row['assay_id']!r} "
            f"({row['descriptor']}); write a number in [0, 1] or nan"
        )
    table = table.with_columns(auc.fill_nan(None).alias("auroc"))
    out_of_range = table.filter(~pl.col("auroc").is_between(0.0, 1.0))
    if out_of_range.height:
        row = out_of_range.row(0, named=True)
        raise InvalidInputError(
            f"{path}: column 'auc' holds {row['auc']} for assay {row['assay_id']!r} "
            f"({row['descriptor']}), outside [0, 1]; an AUROC must lie in [0, 1]"
        )
    return table.select(
        pl.col("assay_id"),
        pl.col("descriptor").replace_strict(dict(descriptors)).alias("modality"),
        pl.col("auroc"),
    ).sort("modality", "assay_id")


def well_predicted_sets(
    per_assay: pl.DataFrame,
    *,
    threshold: float = WELL_PREDICTED_AUROC,
    modality: str = "modality",
    assay: str = "assay_id",
    auroc: str = "auroc",
) -> dict[str, list[str]]:
    """Assays predicted above ``threshold`` per modality; NaN and null are never counted.

    Parameters
    ----------
    per_assay : polars.DataFrame
        One row per assay and modality.
    threshold : float, default 0.9
        Strictly greater counts (the paper's "well predicted").
    modality, assay, auroc : str
        Column names.

    Returns
    -------
    dict of str to list of str
        Modality -> sorted assay ids (every modality present, possibly empty).

    Examples
    --------
    >>> t = pl.DataFrame({"assay_id": ["a", "b", "a"], "modality": ["CS", "CS", "MO"],
    ...                   "auroc": [0.95, float("nan"), None]})
    >>> well_predicted_sets(t)
    {'CS': ['a'], 'MO': []}
    """
    missing = [c for c in (modality, assay, auroc) if c not in per_assay.columns]
    if missing:
        raise MissingColumnsError("the per-assay AUROC table", missing)
    value = pl.col(auroc).cast(pl.Float64).fill_nan(None)
    return {
        m: sorted(group.filter(value > threshold)[assay].to_list())
        for (m,), group in per_assay.sort(modality).group_by(modality, maintain_order=True)
    }
