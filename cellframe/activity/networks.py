"""PyTorch modules: the D-MPNN graph encoder, the multitask network and its masked loss.

DOMAIN.md §6. The multitask network has one logit per assay; the loss is the
binary cross-entropy summed over observed readouts only (missing readouts carry
no gradient).

The encoder passes messages along directed bonds (Yang et al. 2019, "Analyzing
learned molecular representations for property prediction", the Chemprop
design): the hidden state of bond v->w is updated from the states of the bonds
k->v entering v, except the reverse bond w->v, so a message does not echo
straight back. A batch is one disjoint graph; every step is an index-based
scatter sum over the whole batch, with no Python loop over molecules.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from cellframe.activity.graph import ATOM_DIM, BOND_DIM
from cellframe.errors import InvalidChoiceError, InvalidInputError

__all__ = ["DMPNNEncoder", "MultitaskNetwork", "default_device", "masked_bce_loss"]


def default_device() -> torch.device:
    """CUDA when available, else CPU (ARCHITECTURE.md: the device is chosen once)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def masked_bce_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor,
    *,
    reduction: Literal["mean", "sum"] = "mean",
) -> torch.Tensor:
    """Binary cross-entropy over observed readouts only.

    Parameters
    ----------
    logits : torch.Tensor, shape (batch, n_assays)
    targets : torch.Tensor, shape (batch, n_assays)
        In {0, 1}; values where ``mask`` is False are ignored
        (NaN allowed there).
    mask : torch.Tensor of bool, shape (batch, n_assays)
        True where a readout is observed.
    reduction : {"mean", "sum"}, default "mean"
        ``"sum"`` is the sum of DOMAIN.md §6; ``"mean"`` divides it by the number
        of observed readouts (same minimiser, step size independent of sparsity).

    Returns
    -------
    torch.Tensor, shape ()
        Scalar; 0 when nothing is observed.
    """
    mask = mask.bool()
    safe_targets = torch.where(mask, targets, torch.zeros_like(targets))
    per = nn.functional.binary_cross_entropy_with_logits(logits, safe_targets, reduction="none")
    total = (per * mask).sum()
    if reduction == "sum":
        return total
    if reduction != "mean":
        raise InvalidChoiceError(f"reduction must be 'mean' or 'sum', not {reduction!r}")
    return total / mask.sum().clamp(min=1)


class DMPNNEncoder(nn.Module):
    """Directed message-passing encoder: a batch of graphs -> one vector per molecule.

    Parameters
    ----------
    hidden_size : int, default 300
    depth : int, default 3
        Message-passing steps.
    dropout : float, default 0.0
    atom_dim, bond_dim : int
        Feature widths (defaults match :func:`cellframe.activity.graph.featurize_molecules`).
    extra_dim : int, default 0
        Width of molecule-level features concatenated to the pooled vector.
    aggregation : {"mean", "sum"}, default "mean"
        Pooling of atom vectors into a molecule vector.
    """

    def __init__(
        self,
        hidden_size: int = 300,
        depth: int = 3,
        dropout: float = 0.0,
        *,
        atom_dim: int = ATOM_DIM,
        bond_dim: int = BOND_DIM,
        extra_dim: int = 0,
        aggregation: Literal["mean", "sum"] = "mean",
    ) -> None:
        super().__init__()
        if depth < 1:
            raise InvalidInputError(f"depth must be at least 1, got {depth}")
        if aggregation not in ("mean", "sum"):
            raise InvalidChoiceError(f"aggregation must be 'mean' or 'sum', not {aggregation!r}")
        self.depth = depth
        self.aggregation = aggregation
        self.hidden_size = hidden_size
        self.extra_dim = extra_dim
        self.w_in = nn.Linear(atom_dim + bond_dim, hidden_size, bias=False)
        self.w_hidden = nn.Linear(hidden_size, hidden_size, bias=False)
        self.w_out = nn.Linear(atom_dim + hidden_size, hidden_size)
        self.act = nn.ReLU()
        self.drop = nn.Dropout(dropout)

    @property
    def out_features(self) -> int:
        """Width of the molecule vector."""
        return self.hidden_size + self.extra_dim

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Encode a batch from :meth:`GraphSet.batch` (as tensors)."""
        atoms, edges = batch["atoms"], batch["edges"]
        src, dst, rev = batch["src"], batch["dst"], batch["rev"]
        n_atoms = atoms.shape[0]
        h0 = self.act(self.w_in(torch.cat([atoms[src], edges], dim=1)))
        h = h0
        for _ in range(self.depth - 1):
            # Sum of bond states entering each atom; for bond v->w drop w->v.
            incoming = h.new_zeros(n_atoms, h.shape[1]).index_add_(0, dst, h)
            h = self.drop(self.act(h0 + self.w_hidden(incoming[src] - h[rev])))
        node_msg = h.new_zeros(n_atoms, h.shape[1]).index_add_(0, dst, h)
        node = self.drop(self.act(self.w_out(torch.cat([atoms, node_msg], dim=1))))
        n_mols = int(batch["n_mols"])
        mol = node.new_zeros(n_mols, node.shape[1]).index_add_(0, batch["atom_mol"], node)
        if self.aggregation == "mean":
            counts = torch.bincount(batch["atom_mol"], minlength=n_mols).clamp(min=1)
            mol = mol / counts.unsqueeze(1).to(mol.dtype)
        if self.extra_dim:
            mol = torch.cat([mol, batch["extra"]], dim=1)
        return mol


class MultitaskNetwork(nn.Module):
    """Feed-forward network with one logit per assay, over features or a graph encoder.

    Parameters
    ----------
    n_inputs : int
        Input width (ignored when ``encoder`` is given: its ``out_features`` is used).
    n_tasks : int
        Number of assays (logits).
    hidden_sizes : sequence of int, default (512,)
        Hidden layer widths.
    dropout : float, default 0.2
    encoder : nn.Module, optional
        Maps a batch dict to vectors (e.g. :class:`DMPNNEncoder`); trained jointly.
    """

    def __init__(
        self,
        n_inputs: int,
        n_tasks: int,
        *,
        hidden_sizes: Sequence[int] = (512,),
        dropout: float = 0.2,
        encoder: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        width = encoder.out_features if encoder is not None else n_inputs
        layers: list[nn.Module] = []
        for size in hidden_sizes:
            layers += [nn.Dropout(dropout), nn.Linear(width, size), nn.ReLU()]
            width = size
        layers += [nn.Dropout(dropout), nn.Linear(width, n_tasks)]
        self.head = nn.Sequential(*layers)

    def forward_features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The vector fed to the head (encoder output, or the input features)."""
        if self.encoder is not None:
            return self.encoder(batch)
        return batch["x"]

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits ``(batch, n_tasks)``."""
        return self.head(self.forward_features(batch))
