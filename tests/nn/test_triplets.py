"""Triplets k -> j -> i of periodic multigraphs: hand-counted graphs, dense sums against an explicit
scatter over the triplet list, and the symmetrisation of a neighbour list."""

from __future__ import annotations

import math

import torch

from cdvae_core.geometry import edge_vectors, radius_graph_pbc
from cdvae_core.nn.triplets import build_triplets, legendre, symmetrize_edges


def _pairs(edge_index: torch.Tensor, images: torch.Tensor, num_nodes: int) -> set:
    """Triplets as a set of (edge k->j, edge j->i) id pairs."""
    idx_kj, idx_ji = build_triplets(edge_index, images, num_nodes).index()
    return set(zip(idx_kj.tolist(), idx_ji.tolist(), strict=True))


def test_triangle_molecule_has_one_triplet_per_edge():
    # 0-1-2 triangle, both directions, no periodic images: each edge j -> i continues from the
    # one other neighbour k of j (k == i would be backtracking).
    edge_index = torch.tensor([[0, 1, 1, 2, 2, 0], [1, 0, 2, 1, 0, 2]])
    images = torch.zeros(6, 3, dtype=torch.long)
    # edge ids: 0: 0->1, 1: 1->0, 2: 1->2, 3: 2->1, 4: 2->0, 5: 0->2
    expected = {(4, 0), (3, 1), (0, 2), (5, 3), (2, 4), (1, 5)}
    assert _pairs(edge_index, images, 3) == expected


def test_one_atom_cell_keeps_k_equal_i_through_other_images():
    # One atom bonded to its six face-neighbour images: k == i == j == 0 for every triplet, and
    # only the reverse edge (image -n after image n) is dropped: 6 * 5 = 30 triplets.
    shifts = [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]]
    images = torch.tensor(shifts)
    edge_index = torch.zeros(2, 6, dtype=torch.long)
    pairs = _pairs(edge_index, images, 1)
    assert len(pairs) == 30
    reverse = {0: 1, 1: 0, 2: 3, 3: 2, 4: 5, 5: 4}
    for kj, ji in pairs:
        assert kj != reverse[ji]
    assert (0, 0) in pairs  # straight on through the next cell: k == i, image 2 apart


def test_two_bonds_between_the_same_atoms_via_different_images():
    # 1D chain A B A B ... with two atoms per cell: A (atom 0) bonds to B (atom 1) in its own cell
    # and in the cell to the left. Every triplet A -> B -> A' (and B -> A -> B') goes to the other
    # image, so k == i in all four triplets but none is backtracking.
    edge_index = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 1]])
    images = torch.tensor([[0, 0, 0], [-1, 0, 0], [0, 0, 0], [1, 0, 0]])
    # 0: B->A, 1: B(-1)->A, 2: A->B, 3: A(+1)->B
    assert _pairs(edge_index, images, 2) == {(3, 0), (2, 1), (1, 2), (0, 3)}


def test_empty_graph():
    trip = build_triplets(torch.zeros(2, 0, dtype=torch.long), torch.zeros(0, 3, dtype=torch.long), 3)
    idx_kj, idx_ji = trip.index()
    assert idx_kj.numel() == idx_ji.numel() == 0


def _random_crystals(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    num_atoms = torch.tensor([3, 1, 4])
    frac = torch.rand(int(num_atoms.sum()), 3, generator=gen, dtype=torch.float64)
    lattice = torch.diag_embed(3.0 + torch.rand(3, 3, generator=gen, dtype=torch.float64))
    lattice = lattice + 0.3 * torch.rand(3, 3, 3, generator=gen, dtype=torch.float64)
    batch = torch.repeat_interleave(torch.arange(3), num_atoms)
    edge_index, images, _ = radius_graph_pbc(frac, lattice, num_atoms, 4.5, 8)
    vec = edge_vectors(frac, lattice, batch, edge_index, images)
    return edge_index, images, vec, int(num_atoms.sum())


def test_dense_sums_equal_scatter_over_the_triplet_list():
    edge_index, images, vec, n = _random_crystals()
    trip = build_triplets(edge_index, images, n)
    idx_kj, idx_ji = trip.index()
    assert idx_kj.numel() > 100
    num_l, e = 4, vec.shape[0]
    angular = trip.angular_basis(vec, num_l)
    assert torch.equal(trip.angular_basis(vec, num_l, l_last=True), angular.transpose(2, 3))

    # the angle at j between the bonds to k and to i, from the explicit list
    u = vec / vec.norm(dim=-1, keepdim=True)
    cos = (u[idx_kj] * -u[idx_ji]).sum(-1)
    ylm = legendre(cos, num_l, dim=0) * torch.tensor(
        [math.sqrt((2 * n + 1) / (4 * math.pi)) for n in range(num_l)], dtype=vec.dtype
    )[:, None]  # [L, T]

    gen = torch.Generator().manual_seed(1)
    x = torch.randn(e, 5, generator=gen, dtype=torch.float64)
    ref = torch.zeros(e, num_l, 5, dtype=torch.float64).index_add_(
        0, idx_ji, ylm.T[:, :, None] * x[idx_kj][:, None, :]
    )
    assert torch.allclose(trip.sum_per_channel(angular, x), ref, atol=1e-12)

    xl = torch.randn(e, num_l, 5, generator=gen, dtype=torch.float64)
    ref = torch.zeros(e, 5, dtype=torch.float64).index_add_(
        0, idx_ji, (ylm.T[:, :, None] * xl[idx_kj]).sum(1)
    )
    assert torch.allclose(trip.sum_contracted(angular.transpose(2, 3), xl), ref, atol=1e-12)


def test_triplet_count_matches_degrees():
    # In a symmetric graph every edge j -> i continues along the in-degree of j minus its reverse.
    edge_index, images, _, n = _random_crystals(2)
    edge_index, images, _, _ = symmetrize_edges(edge_index, images, n)
    indeg = torch.bincount(edge_index[1], minlength=n)
    expected = int((indeg[edge_index[0]] - 1).sum())
    assert build_triplets(edge_index, images, n).num_triplets == expected


def test_symmetrize_edges_adds_missing_reverses():
    edge_index, images, vec, n = _random_crystals(3)
    new_index, new_images, take, rev = symmetrize_edges(edge_index, images, n)
    # the reverse of the reverse is the edge; it swaps the atoms and negates the image
    assert torch.equal(rev[rev], torch.arange(rev.shape[0]))
    assert torch.equal(new_index[:, rev], new_index.flip(0))
    assert torch.equal(new_images[rev], -new_images)
    # every original edge is kept, vectors follow through ``take``
    assert new_index.shape[1] >= edge_index.shape[1]
    assert set(range(edge_index.shape[1])) <= set(take.tolist())
    new_vec = torch.cat([vec, -vec])[take]
    assert torch.allclose(new_vec[rev], -new_vec)
    old = {(s, d, tuple(i)) for s, d, i in zip(*edge_index.tolist(), images.tolist(), strict=True)}
    new = {(s, d, tuple(i)) for s, d, i in zip(*new_index.tolist(), new_images.tolist(), strict=True)}
    assert old <= new and len(new) == new_index.shape[1]
