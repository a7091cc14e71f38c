"""Edge triplets ``k -> j -> i`` of periodic multigraphs, held in a dense per-atom layout.

DimeNet (Gasteiger, Groß & Günnemann, ICLR 2020, https://arxiv.org/abs/2003.03123, eq. 4) and
GemNet (Gasteiger, Becker & Günnemann, NeurIPS 2021, https://arxiv.org/abs/2106.08903, eq. 5)
pass a message from edge ``k -> j`` to edge ``j -> i`` weighted by a basis of the angle at ``j``.
In a periodic multigraph an atom can be bonded to several images of one atom, itself included,
so a triplet is dropped only when ``k -> j`` is the *reverse* of ``j -> i`` (``k == i`` and the
same periodic image); ``k == i`` through another image is a genuine triplet.

Listing triplets explicitly costs about ``E * degree`` rows per gathered feature. Here the
triplets centred on atom ``j`` are instead all pairs of a *row* (an outgoing edge ``j -> i``) and a
*column* (an incoming edge ``k -> j``), both padded to a table ``[N, K]``. A triplet sum
``sum_k basis(angle_kji) * x[kj]`` then becomes one batched matmul of an angular matrix
``[N, K_rows, L, K_cols]`` with the padded edge features ``[N, K_cols, F]``: no per-triplet
tensor is ever built, and the work runs at BLAS speed. :meth:`Triplets.index` still lists the
triplets for tests and for readers who want to check the dense sums against a plain scatter.

Edge convention of :mod:`cdvae_core.geometry`: edge ``e = (src, dst)`` carries
``vec[e] = x[src] + image[e] @ L - x[dst]``, from the centre ``dst`` to the neighbour ``src``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["EdgeGroups", "Triplets", "build_triplets", "legendre", "symmetrize_edges"]


@dataclass(frozen=True)
class EdgeGroups:
    """The edges of a graph listed under one atom each, padded to ``[num_groups, size]``.

    Attributes:
        slot: ``[E]`` position ``group * size + rank`` of each edge in the flattened table.
        edge: ``[num_groups, size]`` edge id in each slot, ``-1`` for padding.
        num_groups: number of atoms ``N``.
        size: ``K``, the largest group (at least 1, so empty graphs still have a shape).
    """

    slot: Tensor
    edge: Tensor
    num_groups: int
    size: int

    @classmethod
    def build(cls, group: Tensor, num_groups: int) -> EdgeGroups:
        """Group edges by ``group [E]`` (the atom each edge is listed under)."""
        num_edges = group.shape[0]
        counts = torch.bincount(group, minlength=num_groups)
        size = max(int(counts.max()), 1) if num_edges > 0 else 1
        order = torch.argsort(group, stable=True)
        start = torch.cumsum(counts, 0) - counts
        rank = torch.empty_like(group)
        rank[order] = torch.arange(num_edges, device=group.device) - start[group[order]]
        slot = group * size + rank
        edge = torch.full((num_groups * size,), -1, dtype=torch.long, device=group.device)
        edge[slot] = torch.arange(num_edges, device=group.device)
        return cls(slot, edge.view(num_groups, size), num_groups, size)

    @property
    def valid(self) -> Tensor:
        """``[N, K]`` True where a slot holds an edge."""
        return self.edge >= 0

    def pad(self, x: Tensor) -> Tensor:
        """Per-edge ``x [E, ...]`` -> zero-padded table ``[N, K, ...]`` (differentiable)."""
        out = x.new_zeros((self.num_groups * self.size, *x.shape[1:]))
        out.index_copy_(0, self.slot, x)  # in place: autograd needs neither ``out`` nor ``x``
        return out.view(self.num_groups, self.size, *x.shape[1:])

    def unpad(self, x: Tensor) -> Tensor:
        """Table ``[N, K, ...]`` -> per-edge ``[E, ...]`` (padding slots dropped)."""
        return x.reshape(self.num_groups * self.size, *x.shape[2:]).index_select(0, self.slot)


def _image_code(images: Tensor, radius: int) -> Tensor:
    """One integer per image offset ``[E, 3]`` (components in ``[-radius, radius]``)."""
    base = 2 * radius + 1
    shifted = images + radius
    return (shifted[:, 0] * base + shifted[:, 1]) * base + shifted[:, 2]


def legendre(x: Tensor, num: int, dim: int = -1) -> Tensor:
    """Legendre polynomials ``P_0 .. P_{num-1}`` of ``x`` stacked on a new dimension ``dim``
    (``x [..., M] -> [..., M, num]`` by default; Bonnet's recurrence, stable on ``[-1, 1]``)."""
    out = [torch.ones_like(x)]
    if num > 1:
        out.append(x)
    for n in range(1, num - 1):
        out.append(((2 * n + 1) * x * out[n] - n * out[n - 1]) / (n + 1))
    return torch.stack(out, dim=dim)


@dataclass(frozen=True)
class Triplets:
    """All non-backtracking triplets ``k -> j -> i`` of a multigraph, grouped by the middle atom.

    Attributes:
        rows: outgoing edges ``j -> i`` grouped by ``j`` (their ``src``): the edges that receive.
        cols: incoming edges ``k -> j`` grouped by ``j`` (their ``dst``): the edges that send.
        mask: ``[N, K_rows, K_cols]`` True for a real, non-backtracking triplet.
    """

    rows: EdgeGroups
    cols: EdgeGroups
    mask: Tensor

    @property
    def num_triplets(self) -> int:
        return int(self.mask.sum())

    def index(self) -> tuple[Tensor, Tensor]:
        """Explicit triplet list ``(idx_kj [T], idx_ji [T])`` of edge ids, sorted by ``j``."""
        j, r, c = self.mask.nonzero(as_tuple=True)
        return self.cols.edge[j, c], self.rows.edge[j, r]

    def angular_basis(self, vec: Tensor, num_spherical: int, l_last: bool = False) -> Tensor:
        """Zonal spherical harmonics ``Y_l^0(cos angle_kji)`` of every triplet, ``l <
        num_spherical``, as ``[N, K_rows, L, K_cols]`` (``l_last``: ``[N, K_rows, K_cols, L]``,
        the layout of :meth:`sum_contracted`); zero outside ``mask``.

        The angle is the bond angle at ``j`` between the bonds to ``k`` and to ``i``
        (DimeNet's ``alpha_(kj,ji)``); ``vec [E, 3]`` are the edge vectors (centre to neighbour).
        torch-geometric's DimeNet++ uses the supplementary angle, which flips the sign of the odd
        orders (``P_l(-x) = (-1)^l P_l(x)``): the learnt projection of the basis absorbs it.
        """
        unit = vec / vec.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        # Seen from j: the row edge j -> i points to i along -vec[ji]; the column edge k -> j
        # already points from j (its centre) to k.
        u_rows = self.rows.pad(-unit)  # [N, Kr, 3]
        u_cols = self.cols.pad(unit)  # [N, Kc, 3]
        cos = torch.bmm(u_rows, u_cols.transpose(1, 2))  # [N, Kr, Kc]
        norm = torch.tensor(
            [math.sqrt((2 * n + 1) / (4 * math.pi)) for n in range(num_spherical)],
            dtype=vec.dtype,
            device=vec.device,
        )
        mask = self.mask.to(vec.dtype)
        if l_last:
            return legendre(cos, num_spherical, dim=-1) * (norm * mask[..., None])  # [N,Kr,Kc,L]
        return legendre(cos, num_spherical, dim=-2) * (norm[:, None] * mask[:, :, None, :])

    def sum_per_channel(self, basis: Tensor, x: Tensor) -> Tensor:
        """For every receiving edge ``ji``: ``out[ji, l] = sum_k basis_l(kji) x[kj]``.

        ``basis [N, Kr, L, Kc]``, ``x [E, F]`` -> ``[E, L, F]`` (GemNet's triplet sum, kept
        separate per angular channel so that a radial basis can mix the channels afterwards).
        """
        n, kr, num_l, kc = basis.shape
        xp = self.cols.pad(x)  # [N, Kc, F]
        out = torch.bmm(basis.reshape(n, kr * num_l, kc), xp)  # [N, Kr*L, F]
        return self.rows.unpad(out.view(n, kr, num_l * x.shape[-1])).view(-1, num_l, x.shape[-1])

    def sum_contracted(self, basis: Tensor, x: Tensor) -> Tensor:
        """For every receiving edge ``ji``: ``out[ji] = sum_k sum_l basis_l(kji) x[kj, l]``.

        ``basis [N, Kr, Kc, L]`` (``l_last`` layout), ``x [E, L, F]`` -> ``[E, F]`` (DimeNet++'s
        triplet sum, where the per-channel features already carry the radial part of the input
        edge).
        """
        n, kr, kc, num_l = basis.shape
        xp = self.cols.pad(x).view(n, kc * num_l, x.shape[-1])  # [N, Kc*L, F], no copy
        out = torch.bmm(basis.reshape(n, kr, kc * num_l), xp)  # [N, Kr, F]
        return self.rows.unpad(out)


def build_triplets(edge_index: Tensor, images: Tensor, num_nodes: int) -> Triplets:
    """Triplets ``k -> j -> i`` of the multigraph ``edge_index [2, E]`` (row 0 ``src``, row 1
    ``dst``) with neighbour image offsets ``images [E, 3]``; vectorised, no loop over edges.

    A pair (column ``k -> j``, row ``j -> i``) is kept unless the column is the reverse of the
    row: ``k == i`` and ``image[kj] == -image[ji]`` (the neighbour seen from ``i`` through ``j``
    is ``i`` itself, in the same cell).
    """
    with torch.no_grad():
        src, dst = edge_index
        rows = EdgeGroups.build(src, num_nodes)
        cols = EdgeGroups.build(dst, num_nodes)
        if src.numel() == 0:
            empty = torch.zeros((num_nodes, 1, 1), dtype=torch.bool, device=src.device)
            return Triplets(rows, cols, empty)
        radius = int(images.abs().max()) if images.numel() else 0
        code = _image_code(images, radius)
        neg_code = _image_code(-images, radius)
        row_e, col_e = rows.edge.clamp(min=0), cols.edge.clamp(min=0)
        # row j -> i: its far end i = dst and the image that returns to j, -image[ji]
        row_far, row_back = dst[row_e], neg_code[row_e]  # [N, Kr]
        col_far, col_img = src[col_e], code[col_e]  # [N, Kc]
        backtrack = (row_far[:, :, None] == col_far[:, None, :]) & (
            row_back[:, :, None] == col_img[:, None, :]
        )
        mask = rows.valid[:, :, None] & cols.valid[:, None, :] & ~backtrack
    return Triplets(rows, cols, mask)


def symmetrize_edges(
    edge_index: Tensor, images: Tensor, num_nodes: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Union of a directed multigraph with its reverse, and the reverse of every edge.

    A neighbour list truncated to the k nearest is not symmetric (``i`` may be among the k
    nearest of ``j`` but not the reverse). GemNet's symmetric message passing needs the reverse
    of every edge; taking the union keeps every edge of the input and does not depend on the
    order of the atoms (choosing one direction of each pair, as OCP's GemNet does, would).

    Returns:
        ``edge_index [2, E']``, ``images [E', 3]``, ``take [E']`` and ``rev [E']``: edge ``e`` of
        the result is edge ``take[e]`` of the doubled list ``[edges, reversed edges]``, so per-edge
        vectors follow as ``torch.cat([vec, -vec])[take]``; ``rev[e]`` is the reverse of ``e``.
    """
    with torch.no_grad():
        src, dst = edge_index
        cand_src, cand_dst = torch.cat([src, dst]), torch.cat([dst, src])
        cand_img = torch.cat([images, -images])
        radius = int(images.abs().max()) if images.numel() else 0
        n_img = (2 * radius + 1) ** 3

        def key(s: Tensor, d: Tensor, img: Tensor) -> Tensor:
            return (s * num_nodes + d) * n_img + _image_code(img, radius)

        keys = key(cand_src, cand_dst, cand_img)
        uniq, inverse = torch.unique(keys, sorted=True, return_inverse=True)
        # keep the first copy (an original edge before its mirrored duplicate)
        take = torch.full_like(uniq, keys.shape[0]).scatter_reduce_(
            0, inverse, torch.arange(keys.shape[0], device=keys.device), reduce="amin"
        )
        new_src, new_dst, new_img = cand_src[take], cand_dst[take], cand_img[take]
        rev = torch.searchsorted(uniq, key(new_dst, new_src, -new_img))
    return torch.stack([new_src, new_dst]), new_img, take, rev
