"""RDKit chemistry: SMILES parsing, Morgan fingerprints, Bemis-Murcko scaffolds, PAINS.

DOMAIN.md §6 (CS features). RDKit is imported here only; an unparseable SMILES
never stops a run: it is counted, reported in a warning with its place and
RDKit's own reason (captured from RDKit's log), and skipped.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
import polars as pl

from cellframe.activity.columns import COMPOUND
from cellframe.errors import InvalidChoiceError, InvalidInputError

__all__ = [
    "PAINS_FAMILIES",
    "InvalidSmilesWarning",
    "SameMoleculeWarning",
    "canonical_molecules",
    "canonical_smiles",
    "morgan_fingerprints",
    "morgan_frame",
    "murcko_scaffolds",
    "pains_matches",
    "parse_smiles",
    "smiles_reasons",
]

#: RDKit FilterCatalog families of Baell & Holloway (2010) PAINS filters.
PAINS_FAMILIES = ("A", "B", "C")


class InvalidSmilesWarning(UserWarning):
    """SMILES that RDKit cannot parse (or empty ones) were skipped or kept for cleaning.

    The message names the source (file or function), the count and, for the
    first ten, the line or compound and RDKit's reason.
    """


class SameMoleculeWarning(UserWarning):
    """Rows wrote one molecule (one RDKit canonical SMILES) in different ways; they were merged."""


#: How many bad SMILES a message lists before it gives only the count.
SHOWN_SMILES = 10
_STAMP = re.compile(r"^\[\d\d:\d\d:\d\d\]\s*")


def _rdkit_reason(lines: list[str], smiles: str) -> str:
    """One line from RDKit's log lines for one SMILES (time stamps, echo and caret dropped)."""
    out: list[str] = []
    for line in lines:
        text = _STAMP.sub("", line).strip()
        if not text or text == smiles or set(text) <= {"^", " "} or text in out:
            continue
        out.append(text)
    reason = " / ".join(out) or "RDKit returned no molecule"
    return reason if len(reason) <= 200 else reason[:197] + "..."


def smiles_reasons(smiles: Sequence[Any]) -> tuple[list[Any], list[str | None]]:
    """Parse SMILES with RDKit and keep RDKit's reason for each failure.

    RDKit writes its parse errors to its log; they are captured here (sent to
    Python's ``sys.stderr`` with ``rdBase.LogToPythonStderr`` and read back)
    rather than printed.

    Parameters
    ----------
    smiles : sequence
        SMILES strings; ``None``, NaN and blank entries are "empty SMILES".

    Returns
    -------
    mols : list of rdkit.Chem.Mol or None
    reasons : list of str or None
        None where the molecule parsed, else RDKit's message (or ``"empty SMILES"``).

    Examples
    --------
    >>> mols, reasons = smiles_reasons(["CCO", "C1CC", ""])
    >>> [m is None for m in mols]
    [False, True, True]
    >>> reasons[1], reasons[2]
    ("SMILES Parse Error: unclosed ring for input: 'C1CC'", 'empty SMILES')
    """
    mols, reasons, _ = _parse_distinct(smiles, canonical=False)
    return mols, reasons


def _texts(smiles: Sequence[Any]) -> list[str | None]:
    return [s if isinstance(s, str) and s.strip() else None for s in smiles]


def _parse_distinct(
    smiles: Sequence[Any], *, canonical: bool
) -> tuple[list[Any], list[str | None], list[str | None]]:
    """Parse each distinct SMILES once; molecules (or their canonical SMILES), reasons.

    With ``canonical=True`` the molecules are not kept: the first list holds each
    entry's ``Mol.ToBinary(AllProps)`` bytes (rebuilt with ``Chem.Mol(b)`` at about a
    seventh of the cost of a parse, and ~1.4 KB instead of ~30 KB of memory per
    molecule; with every property, so that the rebuilt molecule is the parsed
    one, stereo perception included), the third list the canonical SMILES. Otherwise the first list holds the molecules (entries
    with the same SMILES share one) and the third is empty.
    """
    import contextlib
    import io

    from rdkit import Chem, RDLogger, rdBase

    texts = _texts(smiles)
    all_props = Chem.PropertyPickleOptions.AllProps
    first: dict[str, Any] = {}
    canon: dict[str, str | None] = {}
    # Parse every distinct SMILES with RDKit's log off (fast), then parse only the
    # failures again with the log captured, for their reasons.
    RDLogger.DisableLog("rdApp.*")
    try:
        for s in texts:
            if s is None or s in first:
                continue
            mol = Chem.MolFromSmiles(s)
            if canonical:
                # One molecule alive at a time: 93,087 MUV molecules held at once took GBs.
                canon[s] = None if mol is None else Chem.MolToSmiles(mol)
                first[s] = None if mol is None else mol.ToBinary(all_props)
            else:
                first[s] = mol
    finally:
        RDLogger.EnableLog("rdApp.*")
    failed = {s: "" for s, m in first.items() if m is None}
    if failed:
        rdBase.LogToPythonStderr()
        try:
            for s in failed:
                buffer = io.StringIO()
                with contextlib.redirect_stderr(buffer):
                    Chem.MolFromSmiles(s)
                failed[s] = _rdkit_reason(buffer.getvalue().splitlines(), s)
        finally:
            rdBase.LogToCppStreams()
    out = [None if s is None else first[s] for s in texts]
    reasons = ["empty SMILES" if s is None else failed.get(s) for s in texts]
    return out, reasons, [None if s is None else canon[s] for s in texts] if canonical else []


def canonical_smiles(smiles: Sequence[Any]) -> tuple[list[str | None], list[str | None]]:
    """RDKit canonical SMILES, so that one molecule written two ways compares equal.

    Parameters
    ----------
    smiles : sequence
        SMILES strings.

    Returns
    -------
    canonical : list of str or None
        ``Chem.MolToSmiles`` of each parsed molecule; None where it does not parse.
    reasons : list of str or None
        RDKit's reason for each failure (see :func:`smiles_reasons`).

    Examples
    --------
    >>> canonical_smiles(["OCC", "C(O)C", "CCO"])[0]
    ['CCO', 'CCO', 'CCO']
    """
    _, reasons, canonical = _parse_distinct(smiles, canonical=True)
    return canonical, reasons


def canonical_molecules(
    smiles: Sequence[Any],
) -> tuple[list[str | None], list[str | None], list[bytes | None]]:
    """:func:`canonical_smiles` plus each molecule as ``Mol.ToBinary()`` bytes.

    Each distinct SMILES is parsed once; the bytes let later steps rebuild the
    molecules (``rdkit.Chem.Mol(b)``, see :func:`parse_smiles`) without parsing
    the SMILES again.

    Parameters
    ----------
    smiles : sequence
        SMILES strings.

    Returns
    -------
    canonical, reasons : list of str or None
        As :func:`canonical_smiles`.
    binaries : list of bytes or None
        ``Mol.ToBinary(PropertyPickleOptions.AllProps)``; None where the SMILES
        does not parse.

    Examples
    --------
    >>> from rdkit import Chem
    >>> canonical, reasons, binaries = canonical_molecules(["OCC", "C1CC"])
    >>> canonical, Chem.MolToSmiles(Chem.Mol(binaries[0])), binaries[1]
    (['CCO', None], 'CCO', None)
    """
    binaries, reasons, canonical = _parse_distinct(smiles, canonical=True)
    return canonical, reasons, binaries


def describe_bad_smiles(
    labels: Sequence[str], smiles: Sequence[Any], reasons: Sequence[str | None]
) -> str:
    """``line 6 'C1CC': <reason>; ...`` for the first :data:`SHOWN_SMILES` failures."""
    items = [
        f"{lab} {s!r}: {r}" if r != "empty SMILES" else f"{lab}: empty SMILES"
        for lab, s, r in zip(labels, smiles, reasons, strict=True)
        if r is not None
    ]
    text = "; ".join(items[:SHOWN_SMILES])
    return text + (f"; ... ({len(items)} in all)" if len(items) > SHOWN_SMILES else "")


def parse_smiles(
    smiles: Sequence[str | None],
    *,
    warn: bool = True,
    where: str = "",
    labels: Sequence[str] | None = None,
    binaries: Sequence[bytes | None] | None = None,
) -> list[Any]:
    """Parse SMILES with RDKit; unparseable entries become ``None``.

    Parameters
    ----------
    smiles : sequence of str
        SMILES strings (``None``/NaN/empty are unparseable).
    warn : bool, default True
        Warn once (:class:`InvalidSmilesWarning`) with the number of
        unparseable SMILES and, for the first ten, where they are and RDKit's reason.
    where : str
        Name of the source (a file), for the warning.
    labels : sequence of str, optional
        What to call each entry in the warning (e.g. ``"line 7"`` or a
        compound id); default ``"entry <i>"`` (1-based).
    binaries : sequence of bytes or None, optional
        The molecules of ``smiles`` as ``Mol.ToBinary()`` bytes, None where a
        SMILES does not parse (:attr:`AssayMatrix.binaries
        <cellframe.activity.matrix.AssayMatrix.binaries>`, from
        :func:`canonical_molecules`): the molecules are rebuilt from them and
        only the None entries are parsed again, for RDKit's reasons.

    Returns
    -------
    list of rdkit.Chem.Mol or None

    Raises
    ------
    InvalidInputError
        If ``binaries`` is not one entry per SMILES.
    """
    if binaries is None:
        mols, reasons = smiles_reasons(smiles)
    else:
        from rdkit import Chem

        if len(binaries) != len(smiles):
            raise InvalidInputError(
                f"{len(binaries)} molecule binaries for {len(smiles)} SMILES"
                f"{' of ' + where if where else ''}; give one per SMILES"
            )
        mols = [None if b is None else Chem.Mol(b) for b in binaries]
        failed = [i for i, m in enumerate(mols) if m is None]
        _, failed_reasons = smiles_reasons([smiles[i] for i in failed])
        reasons = [None] * len(mols)
        for i, r in zip(failed, failed_reasons, strict=True):
            reasons[i] = r or "no molecule given"
    n_bad = sum(r is not None for r in reasons)
    if n_bad and warn:
        names = list(labels) if labels is not None else [f"entry {i + 1}" for i in range(len(mols))]
        warnings.warn(
            f"{n_bad} of {len(mols)} SMILES{' in ' + where if where else ''} cannot be parsed "
            f"by RDKit and are skipped: {describe_bad_smiles(names, smiles, reasons)}",
            InvalidSmilesWarning,
            stacklevel=2,
        )
    return mols


def _as_mols(molecules: Sequence[Any], where: str = "the SMILES given") -> list[Any]:
    if molecules and all(isinstance(m, str) or m is None for m in molecules):
        return parse_smiles(molecules, where=where)  # type: ignore[arg-type]
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
    numpy.ndarray of uint8, shape (n, n_bits)
    """
    from rdkit.Chem import rdFingerprintGenerator

    mols = _as_mols(molecules, "the SMILES given to morgan_fingerprints")
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
    mols = parse_smiles(smiles, where="the SMILES given to morgan_frame")
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
    for mol in _as_mols(molecules, "the SMILES given to murcko_scaffolds"):
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
        raise InvalidChoiceError(f"unknown PAINS families {unknown}; valid: {list(PAINS_FAMILIES)}")
    mols = _as_mols(molecules, "the SMILES given to pains_matches")
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
