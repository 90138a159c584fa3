"""Molecular graphs for the D-MPNN encoder (``cellframe.activity.networks``).

DOMAIN.md §6 (graph-convolution embeddings). Molecules are featurised once into
packed NumPy arrays (:class:`GraphSet`); a mini-batch is gathered with vectorised
index arithmetic into one disjoint graph whose directed bonds carry the messages.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cellframe.errors import InvalidInputError

__all__ = ["ATOM_DIM", "BOND_DIM", "GraphSet", "featurize_molecules"]

# One-hot vocabularies (the last slot of each is "other").
_ELEMENTS = [1, 5, 6, 7, 8, 9, 11, 14, 15, 16, 17, 19, 20, 26, 29, 30, 33, 34, 35, 53, 50, 80]
_DEGREES = [0, 1, 2, 3, 4, 5]
_CHARGES = [-2, -1, 0, 1, 2]
_CHIRAL = [0, 1, 2, 3]
_NUM_HS = [0, 1, 2, 3, 4]
_HYBRID = ["SP", "SP2", "SP3", "SP3D", "SP3D2"]
_BOND_TYPES = ["SINGLE", "DOUBLE", "TRIPLE", "AROMATIC"]
_STEREO = [0, 1, 2, 3, 4, 5]


def _width(vocab: Sequence[Any]) -> int:
    return len(vocab) + 1


#: Length of an atom feature vector.
ATOM_DIM = sum(_width(v) for v in (_ELEMENTS, _DEGREES, _CHARGES, _CHIRAL, _NUM_HS, _HYBRID)) + 2
#: Length of a bond feature vector.
BOND_DIM = _width(_BOND_TYPES) + 2 + _width(_STEREO)


def _one_hot(value: Any, vocab: Sequence[Any], out: np.ndarray, start: int) -> int:
    try:
        k = vocab.index(value)  # type: ignore[attr-defined]
    except ValueError:
        k = len(vocab)
    out[start + k] = 1.0
    return start + len(vocab) + 1


def _atom_features(atom: Any) -> np.ndarray:
    x = np.zeros(ATOM_DIM, dtype=np.float32)
    s = _one_hot(atom.GetAtomicNum(), _ELEMENTS, x, 0)
    s = _one_hot(atom.GetTotalDegree(), _DEGREES, x, s)
    s = _one_hot(atom.GetFormalCharge(), _CHARGES, x, s)
    s = _one_hot(int(atom.GetChiralTag()), _CHIRAL, x, s)
    s = _one_hot(atom.GetTotalNumHs(), _NUM_HS, x, s)
    s = _one_hot(str(atom.GetHybridization()), _HYBRID, x, s)
    x[s] = float(atom.GetIsAromatic())
    x[s + 1] = atom.GetMass() / 100.0
    return x


def _bond_features(bond: Any) -> np.ndarray:
    e = np.zeros(BOND_DIM, dtype=np.float32)
    s = _one_hot(str(bond.GetBondType()), _BOND_TYPES, e, 0)
    e[s] = float(bond.GetIsConjugated())
    e[s + 1] = float(bond.IsInRing())
    _one_hot(int(bond.GetStereo()), _STEREO, e, s + 2)
    return e


@dataclass
class GraphSet:
    """Packed molecular graphs of many molecules.

    Directed bonds come in pairs: bond ``2b`` is u->v and ``2b + 1`` is v->u, so
    the reverse of edge ``e`` is ``e ^ 1``. Indices inside each molecule are local
    (0-based); ``atom_start``/``edge_start`` locate each molecule's rows.

    Attributes
    ----------
    atom_features : numpy.ndarray of float32, shape (total_atoms, ATOM_DIM)
    edge_features : numpy.ndarray of float32, shape (total_edges, BOND_DIM)
        One row per directed bond.
    edge_src, edge_dst : numpy.ndarray of int, shape (total_edges,)
        Local atom index of each directed bond's source and target.
    atom_start, n_atoms, edge_start, n_edges : numpy.ndarray of int, shape (n,)
        Per-molecule offsets and counts.
    extra : numpy.ndarray, shape (n, d), optional
        Molecule-level features appended to the readout (e.g. descriptors).
    """

    atom_features: np.ndarray
    edge_features: np.ndarray
    edge_src: np.ndarray
    edge_dst: np.ndarray
    atom_start: np.ndarray
    n_atoms: np.ndarray
    edge_start: np.ndarray
    n_edges: np.ndarray
    extra: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.n_atoms)

    def batch(self, index: np.ndarray) -> dict[str, np.ndarray]:
        """Gather molecules ``index`` into one disjoint graph (global indices).

        Returns
        -------
        dict
            ``atoms``, ``edges``, ``src``, ``dst``, ``rev`` (reverse edge),
            ``atom_mol`` (molecule of each atom, 0..len(index)-1), ``n_mols``
            and ``extra`` when present.
        """
        index = np.asarray(index, dtype=np.int64)
        na = self.n_atoms[index]
        ne = self.n_edges[index]
        new_atom_start = np.concatenate([[0], np.cumsum(na)[:-1]])
        new_edge_start = np.concatenate([[0], np.cumsum(ne)[:-1]])
        atom_rows = np.repeat(self.atom_start[index] - new_atom_start, na) + np.arange(na.sum())
        edge_rows = np.repeat(self.edge_start[index] - new_edge_start, ne) + np.arange(ne.sum())
        edge_offset = np.repeat(new_atom_start, ne)
        out = {
            "atoms": self.atom_features[atom_rows],
            "edges": self.edge_features[edge_rows],
            "src": self.edge_src[edge_rows] + edge_offset,
            "dst": self.edge_dst[edge_rows] + edge_offset,
            # Pairs stay adjacent and every molecule has an even edge count.
            "rev": np.arange(ne.sum()) ^ 1,
            "atom_mol": np.repeat(np.arange(len(index)), na),
            "n_mols": np.array(len(index)),
        }
        if self.extra is not None:
            out["extra"] = self.extra[index]
        return out

    def subset(self, index: np.ndarray) -> GraphSet:
        """Molecules ``index`` as a new packed set."""
        b = self.batch(index)
        index = np.asarray(index, dtype=np.int64)
        na = self.n_atoms[index]
        ne = self.n_edges[index]
        atom_start = np.concatenate([[0], np.cumsum(na)[:-1]])
        edge_start = np.concatenate([[0], np.cumsum(ne)[:-1]])
        offset = np.repeat(atom_start, ne)
        return GraphSet(
            atom_features=b["atoms"],
            edge_features=b["edges"],
            edge_src=b["src"] - offset,
            edge_dst=b["dst"] - offset,
            atom_start=atom_start,
            n_atoms=na,
            edge_start=edge_start,
            n_edges=ne,
            extra=None if self.extra is None else self.extra[index],
        )


def featurize_molecules(molecules: Sequence[Any], *, extra: np.ndarray | None = None) -> GraphSet:
    """Featurise molecules into a :class:`GraphSet`.

    Parameters
    ----------
    molecules : sequence of str or rdkit Mol
        SMILES or molecules; all must parse (clean the matrix first).
    extra : numpy.ndarray, shape (n, d), optional
        Molecule-level features appended to the graph readout.

    Returns
    -------
    GraphSet

    Raises
    ------
    InvalidInputError
        If a molecule is missing/unparseable or ``extra`` has the wrong length.
    """
    from cellframe.activity.chem import _as_mols

    mols = _as_mols(molecules)
    bad = [i for i, m in enumerate(mols) if m is None]
    if bad:
        raise InvalidInputError(
            f"{len(bad)} molecule(s) cannot be parsed (first at position {bad[0]}); "
            "drop them first, e.g. with clean_assay_matrix"
        )
    if extra is not None and len(extra) != len(mols):
        raise InvalidInputError(f"extra features have {len(extra)} rows for {len(mols)} molecules")
    atoms, edges, src, dst, n_atoms, n_edges = [], [], [], [], [], []
    for mol in mols:
        atoms.extend(_atom_features(a) for a in mol.GetAtoms())
        for bond in mol.GetBonds():
            u, v = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
            f = _bond_features(bond)
            edges.extend((f, f))
            src.extend((u, v))
            dst.extend((v, u))
        n_atoms.append(mol.GetNumAtoms())
        n_edges.append(2 * mol.GetNumBonds())
    if any(n == 0 for n in n_atoms):
        warnings.warn("some molecules have no atoms; their embedding is zero", stacklevel=2)
    n_atoms_arr = np.asarray(n_atoms, dtype=np.int64)
    n_edges_arr = np.asarray(n_edges, dtype=np.int64)
    return GraphSet(
        atom_features=np.asarray(atoms, dtype=np.float32).reshape(-1, ATOM_DIM),
        edge_features=np.asarray(edges, dtype=np.float32).reshape(-1, BOND_DIM),
        edge_src=np.asarray(src, dtype=np.int64),
        edge_dst=np.asarray(dst, dtype=np.int64),
        atom_start=np.concatenate([[0], np.cumsum(n_atoms_arr)[:-1]]).astype(np.int64),
        n_atoms=n_atoms_arr,
        edge_start=np.concatenate([[0], np.cumsum(n_edges_arr)[:-1]]).astype(np.int64),
        n_edges=n_edges_arr,
        extra=None if extra is None else np.asarray(extra, dtype=np.float32),
    )
