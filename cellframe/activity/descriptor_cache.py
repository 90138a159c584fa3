"""A compound library's RDKit descriptors kept in a Parquet file, keyed by canonical SMILES.

Re-predicting or re-training on the same library then costs a lookup instead of
~4-5 ms of CPU per molecule (:func:`~cellframe.activity.descriptors.rdkit_descriptors`
with ``cache=path``). The file holds one row per compound: ``smiles`` (RDKit's
canonical SMILES) and every descriptor of
:func:`~cellframe.activity.descriptors.descriptor_names` as float64 (NaN where RDKit
fails), with the RDKit version and :data:`DESCRIPTOR_SET_VERSION` in the Parquet
metadata. A file written by another RDKit or descriptor-set version is never read
for values: it is recomputed (:class:`DescriptorCacheVersionWarning`) and replaced.

The values stored for a compound are those of the molecule RDKit reads from its
canonical SMILES, so they depend on the compound only, not on how its SMILES was
written or in which order the atoms came (without a cache, a sum over atoms such as
``MolLogP`` may differ in its last bit between two atom orders of one molecule).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cellframe.errors import DescriptorCacheError

__all__ = [
    "DESCRIPTOR_SET_VERSION",
    "SMILES_COLUMN",
    "DescriptorCacheVersionWarning",
    "UncachedMoleculesWarning",
    "cache_versions",
    "cached_descriptors",
]

#: Version of cellframe's descriptor set (names, NaN rule, how each is computed).
#: Raised whenever a value could change for the same RDKit, so an older cache is
#: recomputed rather than read.
DESCRIPTOR_SET_VERSION = "1"
#: Key column of the cache file: RDKit's canonical (isomeric) SMILES.
SMILES_COLUMN = "smiles"
_META_RDKIT = b"cellframe.rdkit_version"
_META_SET = b"cellframe.descriptor_set_version"


class DescriptorCacheVersionWarning(UserWarning):
    """A descriptor cache written by another RDKit or descriptor-set version was recomputed."""


class UncachedMoleculesWarning(UserWarning):
    """Molecules whose canonical SMILES RDKit cannot read back: computed, not cached (count given)."""


def cache_versions() -> dict[str, str]:
    """The versions a cache file must carry to be read.

    Returns
    -------
    dict of str to str
        ``{"rdkit": rdkit.__version__, "descriptor_set": DESCRIPTOR_SET_VERSION}``.
    """
    import rdkit

    return {"rdkit": rdkit.__version__, "descriptor_set": DESCRIPTOR_SET_VERSION}


def cached_descriptors(
    molecules: Sequence[Any],
    names: Sequence[str],
    path: str | os.PathLike[str],
    compute: Callable[[list[Any]], np.ndarray],
) -> np.ndarray:
    """Descriptors of ``molecules`` from the cache at ``path``; new compounds computed and appended.

    Parameters
    ----------
    molecules : sequence of rdkit Mol or None
        Parsed molecules; ``None`` gives a row of NaN and is not cached.
    names : sequence of str
        Descriptor names to return (columns of the result, in this order).
    path : str or path-like
        Parquet file of the cache; created when absent.
    compute : callable
        ``compute(mols)`` -> all :func:`descriptor_names` of each molecule, shape
        ``(len(mols), n_all)`` (``rdkit_descriptors`` without a cache).

    Returns
    -------
    numpy.ndarray of float64, shape (n_molecules, len(names))

    Raises
    ------
    DescriptorCacheError
        If the file exists but is not a cellframe descriptor cache (not Parquet, no
        ``smiles`` column, a compound twice); the file is left as it was.

    Warns
    -----
    DescriptorCacheVersionWarning
        If the file was written by another RDKit or descriptor-set version: its
        values are not used, and it is replaced by freshly computed ones.
    UncachedMoleculesWarning
        With the count of molecules whose canonical SMILES RDKit cannot parse back:
        their descriptors are computed from the molecule given and not cached.
    """
    from rdkit import Chem

    from cellframe.activity.descriptors import _rdkit_log_off, descriptor_names

    path = Path(path)
    all_names = descriptor_names()
    column = {n: j for j, n in enumerate(all_names)}
    keys: list[str | None] = [None if m is None else Chem.MolToSmiles(m) for m in molecules]
    stored_keys, stored = _read(path, all_names)
    row_of = {k: i for i, k in enumerate(stored_keys)}
    new_keys = list(dict.fromkeys(k for k in keys if k is not None and k not in row_of))
    params = Chem.SmilesParserParams()
    params.removeHs = False  # the canonical SMILES keeps the molecule's explicit H atoms
    with _rdkit_log_off():
        canonical_mols = [Chem.MolFromSmiles(k, params) for k in new_keys]
    readable = [k for k, m in zip(new_keys, canonical_mols, strict=True) if m is not None]
    fresh = compute([m for m in canonical_mols if m is not None]) if readable else None
    fresh_row = {k: i for i, k in enumerate(readable)}
    unreadable = {k for k, m in zip(new_keys, canonical_mols, strict=True) if m is None}

    out = np.full((len(molecules), len(all_names)), np.nan, dtype=np.float64)
    direct = [i for i, k in enumerate(keys) if k in unreadable]
    if direct:
        out[direct] = compute([molecules[i] for i in direct])
        warnings.warn(
            f"{len(direct)} molecule(s) (e.g. {keys[direct[0]]!r}) have a canonical SMILES "
            f"RDKit cannot read back: their descriptors were computed from the molecule "
            f"given and not stored in the cache {path}",
            UncachedMoleculesWarning,
            stacklevel=3,
        )
    for i, k in enumerate(keys):
        if k is None or k in unreadable:
            continue
        if k in row_of:
            out[i] = stored[row_of[k]]
        else:
            out[i] = fresh[fresh_row[k]]  # type: ignore[index]
    if readable:
        _append(path, stored_keys, stored, readable, fresh, all_names)  # type: ignore[arg-type]
    return out[:, [column[n] for n in names]]


def _read(path: Path, names: list[str]) -> tuple[list[str], np.ndarray]:
    """The cache's keys and values, or empty ones when absent or of another version."""
    empty = ([], np.empty((0, len(names)), dtype=np.float64))
    if not path.exists():
        return empty
    import pyarrow.parquet as pq

    fix = "delete it or name another cache file"
    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises assorted errors for a non-Parquet file
        raise DescriptorCacheError(
            f"descriptor cache {path}: not a readable Parquet file ({type(err).__name__}: "
            f"{err}); {fix}"
        ) from err
    meta = table.schema.metadata or {}
    if SMILES_COLUMN not in table.column_names or _META_SET not in meta:
        raise DescriptorCacheError(
            f"descriptor cache {path}: not a cellframe descriptor cache (no "
            f"{SMILES_COLUMN!r} column or no {_META_SET.decode()} metadata); {fix}"
        )
    want = cache_versions()
    have = {
        "rdkit": meta.get(_META_RDKIT, b"?").decode(),
        "descriptor_set": meta[_META_SET].decode(),
    }
    if have != want or table.column_names[1:] != names:
        warnings.warn(
            f"descriptor cache {path} was written by RDKit {have['rdkit']} with descriptor "
            f"set {have['descriptor_set']} ({table.num_rows} compounds), this is RDKit "
            f"{want['rdkit']} with set {want['descriptor_set']}: its values are not used; "
            "every compound is recomputed and the file replaced",
            DescriptorCacheVersionWarning,
            stacklevel=4,
        )
        return empty
    keys = table.column(SMILES_COLUMN).to_pylist()
    if any(k is None for k in keys):
        raise DescriptorCacheError(
            f"descriptor cache {path}: column {SMILES_COLUMN!r} has "
            f"{sum(k is None for k in keys)} empty value(s); {fix}"
        )
    if len(set(keys)) != len(keys):
        seen: set[str] = set()
        twice = next(k for k in keys if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise DescriptorCacheError(
            f"descriptor cache {path}: compound {twice!r} appears more than once in column "
            f"{SMILES_COLUMN!r}; {fix}"
        )
    values = (
        np.column_stack(
            [table.column(n).to_numpy(zero_copy_only=False).astype(np.float64) for n in names]
        )
        if table.num_rows
        else empty[1]
    )
    return keys, values


def _append(
    path: Path,
    keys: list[str],
    values: np.ndarray,
    new_keys: list[str],
    new_values: np.ndarray,
    names: list[str],
) -> None:
    """Write the cache with the new rows after the old ones (a new file renamed over it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    all_values = np.vstack([values, new_values])
    columns = [pa.array(keys + new_keys, type=pa.string())]
    columns += [pa.array(all_values[:, j], type=pa.float64()) for j in range(len(names))]
    versions = cache_versions()
    schema = pa.schema(
        [pa.field(SMILES_COLUMN, pa.string()), *(pa.field(n, pa.float64()) for n in names)],
        metadata={_META_RDKIT: versions["rdkit"], _META_SET: versions["descriptor_set"]},
    )
    table = pa.Table.from_arrays(columns, schema=schema)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
