"""D-MPNN encoder and masked loss against float64 NumPy references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cellframe.activity.graph import ATOM_DIM, BOND_DIM, featurize_molecules
from cellframe.activity.networks import DMPNNEncoder, MultitaskNetwork, masked_bce_loss
from cellframe.errors import InvalidInputError

from .conftest import SMILES


def _to_torch(batch):
    return {
        k: (int(v) if k == "n_mols" else torch.from_numpy(np.asarray(v))) for k, v in batch.items()
    }


def _reference_dmpnn(enc: DMPNNEncoder, graphs, i: int) -> np.ndarray:
    """One molecule, loops over bonds, float64: the D-MPNN equations written out."""
    w_in = enc.w_in.weight.detach().double().numpy()
    w_h = enc.w_hidden.weight.detach().double().numpy()
    w_o = enc.w_out.weight.detach().double().numpy()
    b_o = enc.w_out.bias.detach().double().numpy()
    a0, na = graphs.atom_start[i], graphs.n_atoms[i]
    e0, ne = graphs.edge_start[i], graphs.n_edges[i]
    x = graphs.atom_features[a0 : a0 + na].astype(np.float64)
    e = graphs.edge_features[e0 : e0 + ne].astype(np.float64)
    src = graphs.edge_src[e0 : e0 + ne]
    dst = graphs.edge_dst[e0 : e0 + ne]
    relu = lambda z: np.maximum(z, 0)  # noqa: E731
    h0 = np.zeros((ne, enc.hidden_size))
    for k in range(ne):
        h0[k] = relu(w_in @ np.concatenate([x[src[k]], e[k]]))
    h = h0.copy()
    for _ in range(enc.depth - 1):
        new = np.empty_like(h)
        for k in range(ne):  # bond v->w: sum of bonds u->v with u != w
            v, w = src[k], dst[k]
            m = sum((h[j] for j in range(ne) if dst[j] == v and src[j] != w), np.zeros(h.shape[1]))
            new[k] = relu(h0[k] + w_h @ m)
        h = new
    atoms = []
    for a in range(na):
        m = sum((h[j] for j in range(ne) if dst[j] == a), np.zeros(enc.hidden_size))
        atoms.append(relu(w_o @ np.concatenate([x[a], m]) + b_o))
    return np.mean(atoms, axis=0)


@pytest.mark.parametrize("depth", [1, 3])
def test_dmpnn_matches_loop_reference(depth):
    torch.manual_seed(0)
    smiles = [*SMILES[:6], "[Na+].[Cl-]", "C"]  # fragments and a single atom
    graphs = featurize_molecules(smiles)
    enc = DMPNNEncoder(hidden_size=16, depth=depth).eval()
    with torch.no_grad():
        out = enc(_to_torch(graphs.batch(np.arange(len(smiles))))).double().numpy()
    for i in range(len(smiles)):
        np.testing.assert_allclose(out[i], _reference_dmpnn(enc, graphs, i), rtol=1e-5, atol=1e-6)


def test_batching_is_order_and_batch_invariant():
    torch.manual_seed(1)
    graphs = featurize_molecules(SMILES)
    enc = DMPNNEncoder(hidden_size=12, depth=3).eval()
    with torch.no_grad():
        full = enc(_to_torch(graphs.batch(np.arange(len(SMILES))))).numpy()
        order = np.array([5, 0, 11, 3])
        part = enc(_to_torch(graphs.batch(order))).numpy()
        sub = enc(_to_torch(graphs.subset(order).batch(np.arange(4)))).numpy()
    np.testing.assert_allclose(part, full[order], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(sub, full[order], rtol=1e-6, atol=1e-6)


def test_graph_structure():
    g = featurize_molecules(["CCO", "c1ccccc1"])
    assert g.atom_features.shape == (9, ATOM_DIM) and g.edge_features.shape == (2 * 8, BOND_DIM)
    b = g.batch(np.array([1, 0]))
    # The reverse of every directed bond swaps its ends.
    np.testing.assert_array_equal(b["src"][b["rev"]], b["dst"])
    np.testing.assert_array_equal(b["atom_mol"], [0] * 6 + [1] * 3)
    assert b["src"].max() < 9
    with pytest.raises(InvalidInputError, match="cannot be parsed"), pytest.warns(UserWarning):
        featurize_molecules(["CCO", "xx"])


def test_masked_bce_against_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 3))
    y = rng.integers(0, 2, size=(6, 3)).astype(np.float64)
    mask = rng.random((6, 3)) < 0.6
    y_nan = np.where(mask, y, np.nan)
    p = 1 / (1 + np.exp(-logits))
    per = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    expected_sum = per[mask].sum()
    t = lambda a: torch.from_numpy(a)  # noqa: E731
    got_sum = masked_bce_loss(t(logits), t(y_nan), t(mask), reduction="sum")
    got_mean = masked_bce_loss(t(logits), t(y_nan), t(mask))
    assert float(got_sum) == pytest.approx(expected_sum, rel=1e-12)
    assert float(got_mean) == pytest.approx(expected_sum / mask.sum(), rel=1e-12)
    # Missing readouts carry no gradient.
    lg = t(logits).requires_grad_()
    masked_bce_loss(lg, t(y_nan), t(mask), reduction="sum").backward()
    assert np.all(lg.grad.numpy()[~mask] == 0)
    assert np.isfinite(lg.grad.numpy()).all()


def test_multitask_network_shapes():
    net = MultitaskNetwork(10, 4, hidden_sizes=(8, 6))
    out = net({"x": torch.zeros(3, 10)})
    assert out.shape == (3, 4)
    enc = DMPNNEncoder(hidden_size=5, extra_dim=2)
    g = featurize_molecules(SMILES[:3], extra=np.ones((3, 2), dtype=np.float32))
    net = MultitaskNetwork(2, 7, encoder=enc)
    assert net(_to_torch(g.batch(np.arange(3)))).shape == (3, 7)
