"""Cleaning of an assay matrix, with a report of what each step removed.

DOMAIN.md §6, in this order: unparseable SMILES; PAINS (RDKit families A, B, C);
assays without observed readouts; assays without hits; redundant assays (IoU of
hit sets > 0.7, hierarchical clustering, one kept per cluster); frequent hitters
(hits in >= 10% of the assays); assays left without hits.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from cellframe.activity.matrix import AssayMatrix
from cellframe.errors import EmptyInputError, InvalidChoiceError

__all__ = [
    "CleaningResult",
    "SkippedStepWarning",
    "clean_assay_matrix",
    "frequent_hitters",
    "hit_set_iou",
    "redundant_assay_clusters",
]


class SkippedStepWarning(UserWarning):
    """A cleaning step could not run (e.g. PAINS without SMILES) and was skipped."""


@dataclass
class CleaningResult:
    """A cleaned matrix and what each step removed.

    Attributes
    ----------
    matrix : AssayMatrix
        The matrix after all steps.
    report : polars.DataFrame
        One row per step: ``step``, ``compounds_removed``, ``assays_removed``,
        ``compounds_left``, ``assays_left``.
    removed : dict
        ``{step: list of removed compound or assay ids}``.
    """

    matrix: AssayMatrix
    report: pl.DataFrame
    removed: dict[str, list[str]] = field(default_factory=dict)


def hit_set_iou(hits: np.ndarray) -> np.ndarray:
    """Intersection over union of the hit sets of every pair of assays.

    Parameters
    ----------
    hits : numpy.ndarray, shape (n_compounds, n_assays)
        Boolean hit mask.

    Returns
    -------
    numpy.ndarray of float64, shape (n_assays, n_assays)
        0 where both sets are empty.
    """
    h = np.asarray(hits, dtype=np.float64)
    inter = h.T @ h
    size = h.sum(axis=0)
    union = size[:, None] + size[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return iou


def redundant_assay_clusters(
    hits: np.ndarray, *, iou_threshold: float = 0.7, linkage: str = "complete"
) -> np.ndarray:
    """Cluster assays whose hit sets overlap by IoU > ``iou_threshold``.

    Hierarchical clustering on the distance ``1 - IoU``, cut so that clusters
    join only below ``1 - iou_threshold``; with complete linkage every pair of
    assays in a cluster has IoU > ``iou_threshold``.

    Parameters
    ----------
    hits : numpy.ndarray, shape (n_compounds, n_assays)
        Boolean hit mask.
    iou_threshold : float, default 0.7
        DOMAIN.md §6.
    linkage : {"complete", "average", "single"}, default "complete"
        scipy linkage method.

    Returns
    -------
    numpy.ndarray of int, shape (n_assays,)
        Cluster label (0-based, in order of first appearance) per assay.
    """
    from scipy.cluster.hierarchy import fcluster
    from scipy.cluster.hierarchy import linkage as scipy_linkage
    from scipy.spatial.distance import squareform

    valid = ("complete", "average", "single")
    if linkage not in valid:
        raise InvalidChoiceError(f"unknown linkage {linkage!r}; valid: {list(valid)}")
    n = hits.shape[1]
    if n < 2:
        return np.zeros(n, dtype=np.int64)
    dist = 1.0 - hit_set_iou(hits)
    np.fill_diagonal(dist, 0.0)
    tree = scipy_linkage(squareform(dist, checks=False), method=linkage)
    # Strictly greater IoU: merge only at distances below 1 - threshold.
    raw = fcluster(tree, t=(1.0 - iou_threshold) - 1e-9, criterion="distance")
    _, first = np.unique(raw, return_index=True)
    order = {lab: k for k, lab in enumerate(raw[np.sort(first)])}
    return np.array([order[lab] for lab in raw], dtype=np.int64)


def frequent_hitters(hits: np.ndarray, *, fraction: float = 0.10) -> np.ndarray:
    """Compounds that are hits in at least ``fraction`` of the assays.

    Parameters
    ----------
    hits : numpy.ndarray, shape (n_compounds, n_assays)
        Boolean hit mask.
    fraction : float, default 0.10
        DOMAIN.md §6: >= 10% of assays.

    Returns
    -------
    numpy.ndarray of bool, shape (n_compounds,)
        Mask of frequent hitters.
    """
    n_assays = hits.shape[1]
    if n_assays == 0:
        return np.zeros(hits.shape[0], dtype=bool)
    return hits.sum(axis=1) >= fraction * n_assays


def clean_assay_matrix(
    matrix: AssayMatrix,
    *,
    pains: bool = True,
    pains_families: Sequence[str] = ("A", "B", "C"),
    iou_threshold: float = 0.7,
    linkage: str = "complete",
    frequent_hitter_fraction: float | None = 0.10,
) -> CleaningResult:
    """Clean an assay matrix as in DOMAIN.md §6 and report every step.

    Parameters
    ----------
    matrix : AssayMatrix
        Input readouts; SMILES are needed for the PAINS and SMILES steps
        (skipped, and reported as skipped, without them).
    pains : bool, default True
        Drop compounds matched by RDKit's PAINS filters.
    pains_families : sequence of str
        PAINS families (``"A"``, ``"B"``, ``"C"``).
    iou_threshold : float or None, default 0.7
        Redundant assays have hit-set IoU above this; ``None`` skips the step.
    linkage : str, default "complete"
        Linkage of the assay clustering.
    frequent_hitter_fraction : float or None, default 0.10
        Compounds with hits in at least this fraction of the assays are
        dropped; ``None`` skips the step.

    Returns
    -------
    CleaningResult

    Raises
    ------
    EmptyInputError
        If nothing is left after cleaning.
    """
    rows: list[dict[str, object]] = []
    removed: dict[str, list[str]] = {}
    m = matrix

    def record(step: str, new: AssayMatrix, detail: str = "") -> AssayMatrix:
        gone_c = sorted(set(m.compounds) - set(new.compounds))
        gone_a = sorted(set(m.assays) - set(new.assays))
        removed[step] = gone_c + gone_a
        rows.append(
            {
                "step": step,
                "compounds_removed": len(gone_c),
                "assays_removed": len(gone_a),
                "compounds_left": new.shape[0],
                "assays_left": new.shape[1],
                "detail": detail,
            }
        )
        return new

    if m.smiles is not None:
        from cellframe.activity.chem import pains_matches, parse_smiles

        mols = parse_smiles(
            m.smiles,
            where="the assay matrix",
            labels=[f"compound {c!r}" for c in m.compounds],
            binaries=m.binaries,  # the molecules parsed when the matrix was read
        )
        ok = np.array([mol is not None for mol in mols])
        m = record("invalid SMILES", m.subset(compounds=ok), "unparseable by RDKit")
        mols = [mol for mol, good in zip(mols, ok, strict=True) if good]
        if pains:
            match = pains_matches(mols, families=pains_families)
            per_family = ", ".join(f"{f}: {int(match[f].sum())}" for f in pains_families)
            m = record("PAINS", m.subset(compounds=~match["any"]), per_family)
    elif pains:
        warnings.warn(
            f"the assay matrix of {m.shape[0]} compounds has no SMILES: the PAINS step is "
            "skipped (pass pains=False to skip it without this warning)",
            SkippedStepWarning,
            stacklevel=2,
        )

    m = record(
        "assays without readouts",
        m.subset(assays=m.observed.sum(axis=0) > 0),
        "no observed readout",
    )
    m = record("assays without hits", m.subset(assays=m.hits.sum(axis=0) > 0))
    if iou_threshold is not None and m.shape[1] > 1:
        labels = redundant_assay_clusters(m.hits, iou_threshold=iou_threshold, linkage=linkage)
        n_obs = m.observed.sum(axis=0)
        n_hits = m.hits.sum(axis=0)
        keep = np.zeros(m.shape[1], dtype=bool)
        for lab in np.unique(labels):
            members = np.flatnonzero(labels == lab)
            # Keep the best-measured assay: most readouts, then most hits, then first.
            best = max(members, key=lambda j: (n_obs[j], n_hits[j], -j))
            keep[best] = True
        n_multi = int(sum((labels == lab).sum() > 1 for lab in np.unique(labels)))
        m = record(
            "redundant assays",
            m.subset(assays=keep),
            f"IoU > {iou_threshold}, {linkage} linkage, {n_multi} cluster(s) of 2+",
        )
    if frequent_hitter_fraction is not None:
        fh = frequent_hitters(m.hits, fraction=frequent_hitter_fraction)
        m = record(
            "frequent hitters",
            m.subset(compounds=~fh),
            f"hits in >= {frequent_hitter_fraction:.0%} of assays",
        )
    m = record("assays left without hits", m.subset(assays=m.hits.sum(axis=0) > 0))
    if m.shape[0] == 0 or m.shape[1] == 0:
        raise EmptyInputError(
            f"cleaning left {m.shape[0]} compounds x {m.shape[1]} assays; "
            "relax the cleaning parameters or check the readouts"
        )
    report = pl.DataFrame(
        rows,
        schema={
            "step": pl.String,
            "compounds_removed": pl.Int64,
            "assays_removed": pl.Int64,
            "compounds_left": pl.Int64,
            "assays_left": pl.Int64,
            "detail": pl.String,
        },
    )
    return CleaningResult(matrix=m, report=report, removed=removed)
