"""RDKit chemistry: SMILES parsing, Morgan fingerprints, Bemis-Murcko scaffolds, PAINS.

DOMAIN.md §6 (CS features). RDKit is imported here only; an unparseable SMILES
never stops a run: it is counted, reported in a warning and skipped.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
import polars as pl

from cellframe.activity.columns import COMPOUND

__all__ = [
    "PAINS_FAMILIES",
    "morgan_fingerprints",
    "morgan_frame",
    "murcko_scaffolds",
    "pains_matches",
    "parse_smiles",
]

#: RDKit FilterCatalog families of Baell & Holloway (2010) PAINS filters.
PAINS_FAMILIES = ("A", "B", "C")


def parse_smiles(smiles: Sequence[str | None], *, warn: bool = True, where: str = "") -> list[Any]:
    """Parse SMILES with RDKit; unparseable entries become ``None``.

    Parameters
    ----------
    smiles : sequence of str
        SMILES strings (``None``/empty are unparseable).
    warn : bool, default True
        Warn once with the number of unparseable SMILES and a few examples.
    where : str
        Name of the source, for the warning.

    Returns
    -------
    list of rdkit.Chem.Mol or None
    """
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")  # RDKit prints every failure to stderr; we count instead
    try:
        mols = [Chem.MolFromSmiles(s) if s else None for s in smiles]
    finally:
        RDLogger.EnableLog("rdApp.*")
    bad = [s for s, m in zip(smiles, mols, strict=True) if m is None]
    if bad and warn:
        shown = ", ".join(repr(s) for s in bad[:3])
        warnings.warn(
            f"{len(bad)} of {len(mols)} SMILES{' in ' + where if where else ''} cannot be parsed "
            f"by RDKit and are skipped (e.g. {shown})",
            stacklevel=2,
        )
    return mols


def _as_mols(molecules: Sequence[Any]) -> list[Any]:
    if molecules and all(isinstance(m, str) or m is None for m in molecules):
        return parse_smiles(molecules)  # type: ignore[arg-type]
    return list(molecules)


def morgan_fingerprints(
    molecules: Sequence[Any], *, radius: int = 2, n_bits: int = 2048, counts: bool = False
) -> np.ndarray:
    """Morgan (ECFP-like) fingerprints with RDKit's MorganGenerator.

    Parameters
    ----------
    molecules : sequence of str or rdkit Mol
        SMILES or molecules; unparseable ones (``None``) give an all-zero row.
    radius : int, default 2
        Radius (2 ~ ECFP4), DOMAIN.md §6.
    n_bits : int, default 2048
        Fingerprint length.
    counts : bool, default False
        Count fingerprint instead of bits.

    Returns
    -------
    numpy.ndarray
        ``(n, n_bits)`` uint8.
    """
    from rdkit.Chem import rdFingerprintGenerator

    mols = _as_mols(molecules)
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    out = np.zeros((len(mols), n_bits), dtype=np.uint8)
    for i, mol in enumerate(mols):
        if mol is None:
            continue
        fp = gen.GetCountFingerprintAsNumPy(mol) if counts else gen.GetFingerprintAsNumPy(mol)
        out[i] = np.minimum(fp, 255)
    return out


def morgan_frame(
    compounds: Sequence[str],
    smiles: Sequence[str],
    *,
    radius: int = 2,
    n_bits: int = 2048,
    prefix: str = "morgan",
) -> pl.DataFrame:
    """Morgan fingerprints as a feature table (Float32 columns ``<prefix>_<i>``).

    Compounds whose SMILES cannot be parsed are left out (counted in a warning).

    Parameters
    ----------
    compounds : sequence of str
        Compound ids, written to ``Metadata_Compound``.
    smiles : sequence of str
        SMILES per compound.
    radius, n_bits : int
        Fingerprint parameters.
    prefix : str
        Feature column prefix.

    Returns
    -------
    polars.DataFrame
    """
    mols = parse_smiles(smiles, where="morgan_frame")
    keep = [i for i, m in enumerate(mols) if m is not None]
    fps = morgan_fingerprints([mols[i] for i in keep], radius=radius, n_bits=n_bits)
    frame = pl.DataFrame(fps.astype(np.float32), schema=[f"{prefix}_{i}" for i in range(n_bits)])
    return frame.insert_column(0, pl.Series(COMPOUND, [compounds[i] for i in keep], pl.String))


def murcko_scaffolds(molecules: Sequence[Any]) -> list[str | None]:
    """Bemis-Murcko scaffold SMILES (``MurckoScaffoldSmiles``, no chirality).

    Acyclic molecules have the empty scaffold ``""``; unparseable ones ``None``.
    """
    from rdkit.Chem.Scaffolds import MurckoScaffold

    out: list[str | None] = []
    for mol in _as_mols(molecules):
        if mol is None:
            out.append(None)
        else:
            out.append(MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False))
    return out


@cache
def _pains_catalog(family: str) -> Any:
    from rdkit.Chem.FilterCatalog import FilterCatalog, FilterCatalogParams

    params = FilterCatalogParams()
    params.AddCatalog(getattr(FilterCatalogParams.FilterCatalogs, f"PAINS_{family}"))
    return FilterCatalog(params)


def pains_matches(
    molecules: Sequence[Any], *, families: Sequence[str] = PAINS_FAMILIES
) -> dict[str, np.ndarray]:
    """Which molecules match RDKit's PAINS filter families.

    Parameters
    ----------
    molecules : sequence of str or rdkit Mol
        Unparseable molecules never match.
    families : sequence of {"A", "B", "C"}
        PAINS families to test (Baell & Holloway 2010 via ``rdkit.Chem.FilterCatalog``).

    Returns
    -------
    dict
        ``{family: bool array}`` plus ``"any"`` (matched by any family).

    Raises
    ------
    ValueError
        For an unknown family.
    """
    unknown = [f for f in families if f not in PAINS_FAMILIES]
    if unknown:
        raise ValueError(f"unknown PAINS families {unknown}; valid: {list(PAINS_FAMILIES)}")
    mols = _as_mols(molecules)
    result: dict[str, np.ndarray] = {}
    for family in families:
        catalog = _pains_catalog(family)
        result[family] = np.array([m is not None and catalog.HasMatch(m) for m in mols], dtype=bool)
    result["any"] = (
        np.logical_or.reduce([result[f] for f in families])
        if families
        else np.zeros(len(mols), bool)
    )
    return result
