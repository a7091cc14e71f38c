"""GemNet-T score network with direct, edge-based vector outputs (the decoder of CDVAE).

GemNet (Gasteiger, Becker & Günnemann, NeurIPS 2021, https://arxiv.org/abs/2106.08903) keeps an
embedding ``m_ca`` per directed edge and an embedding ``h_a`` per atom. Its triplet interaction
(eq. 5 and Fig. 3 of the paper; the "T" variant uses triplets only) updates every edge from the
edges that share an atom with it, through a bilinear layer on a radial x circular basis of the
distance and the angle at the shared atom; both directions of a bond are updated together
("symmetric message passing": the message of ``c -> a`` and that of ``a -> c`` are summed).
Direct outputs (section 5 of the paper, "GemNet-dT"): every output block gives a scalar per edge,
and the vector output of atom ``a`` is ``sum_c F_ca * unit(vec_ca)``, which rotates with the
structure by construction.

For CDVAE (Xie et al., ICLR 2022, https://arxiv.org/abs/2110.06197, section 4, Appendix B) the
atom embedding is conditioned on the latent ``z``: ``h_a = Linear(embed(type_a) || z)``, and the
graph is a periodic radius graph (7 Å, 20 neighbours) rebuilt from the noisy structure at every
call. Here the 20-nearest-neighbour list is made symmetric by adding missing reverse edges, and
triplets ``k -> j -> i`` exclude only the reverse edge (:mod:`cdvae_core.nn.triplets`).

Deviations from OCP's GemNet-T as used by CDVAE, and why:

* Type logits: every output block turns its per-atom features into 100 logits, summed over the
  blocks exactly as GemNet sums per-atom energies. (CDVAE reads the logits from the last atom
  embedding and leaves the energy path of its output blocks unused, without gradient.)
* The data-fitted scale factors of OCP (a JSON file of constants fitted on OC20) are replaced by
  fixed constants: ``1 / sqrt(max_neighbors)`` on sums over neighbours and triplets.
* The graph is symmetrised by union rather than by keeping one direction of each pair, which
  would depend on the order of the atoms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cdvae_core.nn.base import MAX_ATOMIC_NUM, decoder_graph, mlp
from cdvae_core.nn.triplets import Triplets, build_triplets, symmetrize_edges

__all__ = ["GemNetTConfig", "GemNetTDecoder", "ScaledSiLU", "he_orthogonal_"]

_INV_SQRT2 = 1.0 / math.sqrt(2.0)


def _mix(fresh: Tensor, other: Tensor) -> Tensor:
    """``(fresh + other) / sqrt(2)``: GemNet's variance-preserving skip connection, computed in
    ``fresh``, which must be a new tensor that autograd has not saved (a layer's output). On the
    edge tensors a new allocation costs as much as the addition itself."""
    return fresh.add_(other).mul_(_INV_SQRT2)


@dataclass(frozen=True)
class GemNetTConfig:
    """GemNet-T decoder; defaults are CDVAE's reference decoder (OCP's GemNet-T defaults with
    ``hidden = emb_size_edge = 128``): about 2.38 M parameters with ``latent_dim = 256``.

    hidden: atom embedding size (``emb_size_atom``).
    emb_size_edge: edge embedding size.
    emb_size_trip: down-projected edge size entering the triplet interaction.
    emb_size_rbf / emb_size_cbf: projections of the radial / circular basis.
    emb_size_bil_trip: output size of the triplet bilinear layer.
    num_blocks: interaction blocks (an output block follows the embedding and each of them).
    num_spherical: angular orders ``l`` of the circular basis.
    num_radial: Gaussians of the radial basis.
    num_before_skip / num_after_skip: residual layers around the edge skip connection.
    num_concat: residual layers after re-embedding the edges from their atoms.
    num_atom: residual layers of the atom update and output MLPs.
    cutoff: radius (Å) of the graph; the basis envelope reaches zero there.
    max_neighbors: neighbours kept per atom before symmetrisation.
    envelope_exponent: smoothness ``p`` of the polynomial envelope.
    """

    hidden: int = 128
    emb_size_edge: int = 128
    emb_size_trip: int = 64
    emb_size_rbf: int = 16
    emb_size_cbf: int = 16
    emb_size_bil_trip: int = 64
    num_blocks: int = 3
    num_spherical: int = 7
    num_radial: int = 128
    num_before_skip: int = 1
    num_after_skip: int = 2
    num_concat: int = 1
    num_atom: int = 3
    cutoff: float = 7.0
    max_neighbors: int = 20
    envelope_exponent: int = 5


# --------------------------------------------------------------------------- layers


def he_orthogonal_(weight: Tensor) -> Tensor:
    """GemNet's initialisation: a random orthogonal matrix whose rows are standardised and
    scaled to variance ``1 / fan_in``, so activations keep unit variance through a layer."""
    with torch.no_grad():
        nn.init.orthogonal_(weight)
        flat = weight.view(weight.shape[0], -1)
        if flat.shape[1] > 1:
            var, mean = torch.var_mean(flat, dim=1, keepdim=True)
            flat.sub_(mean).div_((var + 1e-6).sqrt())
        flat.mul_(1.0 / math.sqrt(flat.shape[1]))
    return weight


class _ScaledSiLUFunction(torch.autograd.Function):
    """``silu(x) / 0.6`` scaled in place in both passes: on the large edge tensors the extra
    allocation of an out-of-place scaling costs as much as the activation itself."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return F.silu(x).mul_(1.0 / 0.6)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return torch.ops.aten.silu_backward(grad, x).mul_(1.0 / 0.6)


class ScaledSiLU(nn.Module):
    """``silu(x) / 0.6``: the factor brings the output variance of unit-normal inputs back to
    about one (GemNet's activation)."""

    def forward(self, x: Tensor) -> Tensor:
        return _ScaledSiLUFunction.apply(x)


class Dense(nn.Sequential):
    """Bias-free linear layer with He-orthogonal initialisation and optional ScaledSiLU.

    ``splits > 1`` stacks that many independent layers of the same input into one matmul (each
    block of output rows initialised on its own); split the output with ``chunk``.
    """

    def __init__(
        self, in_dim: int, out_dim: int, act: bool = True, bias: bool = False, splits: int = 1
    ):
        linear = nn.Linear(in_dim, out_dim, bias=bias)
        for block in linear.weight.data.chunk(splits, dim=0):
            he_orthogonal_(block)
        if bias:
            nn.init.zeros_(linear.bias)
        super().__init__(*([linear, ScaledSiLU()] if act else [linear]))


class ResidualLayer(nn.Module):
    """``(x + Dense(Dense(x))) / sqrt(2)``, keeping the variance of ``x``."""

    def __init__(self, dim: int):
        super().__init__()
        self.dense = nn.Sequential(Dense(dim, dim), Dense(dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        return _mix(self.dense(x), x)


def _res_mlp(in_dim: int, dim: int, num_residual: int) -> nn.Sequential:
    return nn.Sequential(Dense(in_dim, dim), *(ResidualLayer(dim) for _ in range(num_residual)))


class RadialBasis(nn.Module):
    """Gaussians on the scaled distance ``d / cutoff in [0, 1]`` times GemNet's polynomial
    envelope ``1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2)`` (zero with two
    vanishing derivatives at the cutoff): ``dist [E] -> [E, num_radial]``."""

    def __init__(self, num_radial: int, cutoff: float, exponent: int):
        super().__init__()
        self.cutoff, self.p = cutoff, exponent
        self.register_buffer("centres", torch.linspace(0.0, 1.0, num_radial))
        self.gamma = 0.5 * (num_radial - 1) ** 2  # width = spacing of the centres

    def forward(self, dist: Tensor) -> Tensor:
        x = dist / self.cutoff
        p = self.p
        xp = x.pow(p)
        env = 1.0 + xp * (-(p + 1) * (p + 2) / 2 + x * (p * (p + 2) - x * p * (p + 1) / 2))
        env = torch.where(x < 1.0, env, torch.zeros_like(env))
        return env[:, None] * torch.exp(-self.gamma * (x[:, None] - self.centres) ** 2)


class _EdgeEmbedding(nn.Module):
    """``m_st = act(W [h_s || h_t || e_st])``. The weight is applied to the atoms before the
    gather (``(h W_s)[s] + (h W_t)[t]``): the same function, a third of the edge work."""

    def __init__(self, atom_dim: int, edge_in: int, edge_out: int):
        super().__init__()
        self.atom_dim = atom_dim
        self.dense = Dense(2 * atom_dim + edge_in, edge_out, act=False)
        self.act = ScaledSiLU()

    def forward(self, h: Tensor, e: Tensor, src: Tensor, dst: Tensor) -> Tensor:
        w = self.dense[0].weight  # [out, 2A + in]
        a = self.atom_dim
        hs, ht = h @ w[:, :a].T, h @ w[:, a : 2 * a].T  # [N, out]
        atoms = hs.index_select(0, src).add_(ht.index_select(0, dst))  # [E, out]
        return self.act(atoms.addmm_(e, w[:, 2 * a :].T))


def _sum_into_atoms(x: Tensor, dst: Tensor, num_nodes: int) -> Tensor:
    return x.new_zeros((num_nodes, *x.shape[1:])).index_add_(0, dst, x)


class _AtomUpdate(nn.Module):
    """Atom features from the edges into each atom: ``MLP(sum_c m_ca * W e_RBF(d_ca))``."""

    def __init__(self, atom_dim: int, edge_dim: int, rbf_dim: int, num_residual: int, scale: float):
        super().__init__()
        self.scale = scale
        self.dense_rbf = Dense(rbf_dim, edge_dim, act=False)
        self.layers = _res_mlp(edge_dim, atom_dim, num_residual)

    def forward(self, m: Tensor, rbf: Tensor, dst: Tensor, num_nodes: int) -> Tensor:
        x = _sum_into_atoms(m * self.dense_rbf(rbf), dst, num_nodes) * self.scale  # [N, edge]
        return self.layers(x)  # [N, atom]


class _OutputBlock(_AtomUpdate):
    """Per-atom type logits (GemNet's per-atom energy path) and one scalar per edge (its direct
    force path)."""

    def __init__(self, cfg: GemNetTConfig, scale: float):
        super().__init__(cfg.hidden, cfg.emb_size_edge, cfg.emb_size_rbf, cfg.num_atom, scale)
        self.out_types = Dense(cfg.hidden, MAX_ATOMIC_NUM, act=False)
        self.seq_edge = _res_mlp(cfg.emb_size_edge, cfg.emb_size_edge, cfg.num_atom)
        self.dense_rbf_edge = Dense(cfg.emb_size_rbf, cfg.emb_size_edge, act=False)
        self.out_edge = Dense(cfg.emb_size_edge, 1, act=False)

    def forward(  # type: ignore[override]
        self, m: Tensor, rbf: Tensor, dst: Tensor, num_nodes: int
    ) -> tuple[Tensor, Tensor]:
        """``(type logits [N, 100], edge scalars [E, 1])``."""
        types = self.out_types(super().forward(m, rbf, dst, num_nodes))
        x = self.seq_edge(m) * self.dense_rbf_edge(rbf)
        return types, self.out_edge(x)


class _Bases(NamedTuple):
    """Bases of the graph shared by all interaction blocks."""

    angular: Tensor  # [N, Kr, L, Kc] Y_l(angle) of every triplet
    cbf: Tensor  # [E, L, cbf] radial half of the circular basis, on the receiving edge
    rbf3: Tensor  # [E, rbf] radial basis for the triplet input edges
    rbf_h: Tensor  # [E, rbf] radial basis for the atom update


class _TripletInteraction(nn.Module):
    """GemNet's triplet message to every edge ``j -> i`` from the edges ``k -> j``.

    ``y_ji[o] = sum_{c,t} W_bil[c,t,o] sum_l r_ji[l,c] s_ji[l,t]`` with the triplet sums
    ``s_ji[l] = sum_k Y_l(angle_kji) x_kj`` (one batched matmul per atom,
    :meth:`Triplets.sum_per_channel`) and ``r_ji = W_cbf e_RBF(d_ji)`` the radial half of the
    circular basis. ``y`` of an edge and of its reverse feed two up-projections (symmetric
    message passing).
    """

    def __init__(self, cfg: GemNetTConfig, scale: float):
        super().__init__()
        self.scale = scale
        self.mlp_rbf = Dense(cfg.emb_size_rbf, cfg.emb_size_edge, act=False)
        self.down = Dense(cfg.emb_size_edge, cfg.emb_size_trip)
        self.bilinear = Dense(cfg.emb_size_cbf * cfg.emb_size_trip, cfg.emb_size_bil_trip, act=False)
        # GemNet's two up-projections (for y of the edge and of its reverse) share their input:
        # one matmul, split afterwards
        self.up = Dense(cfg.emb_size_bil_trip, 2 * cfg.emb_size_edge, splits=2)

    def forward(
        self, x_ba: Tensor, rbf3: Tensor, cbf_radial: Tensor, angular: Tensor, triplets: Triplets,
        rev: Tensor,
    ) -> Tensor:
        """``x_ba [E, F]`` (the dense transform of ``m``), ``rbf3 [E, rbf]``, ``cbf_radial
        [E, L, cbf]``, ``angular [N, Kr, L, Kc]``, ``rev [E]`` -> ``[E, F]``."""
        x = self.down(x_ba * self.mlp_rbf(rbf3))  # [E, T]
        per_l = triplets.sum_per_channel(angular, x)  # [E, L, T]
        mixed = torch.einsum("elc,elt->ect", cbf_radial, per_l)  # [E, cbf, T]
        y = self.bilinear(mixed.flatten(1)).mul_(self.scale)  # [E, bil]
        up_ac, up_ca = self.up(y).chunk(2, dim=-1)  # [E, F] each
        return _mix(up_ca.index_select(0, rev), up_ac)


class _InteractionBlock(nn.Module):
    """One GemNet-T interaction: triplet update of the edges with residual layers, then the atoms
    from their edges, then the edges again from their two atoms."""

    def __init__(self, cfg: GemNetTConfig, scale: float):
        super().__init__()
        e = cfg.emb_size_edge
        # GemNet's dense_ca (skip path) and the triplet's dense_ba read the same m: one matmul
        self.dense_ca_ba = Dense(e, 2 * e, splits=2)
        self.triplet = _TripletInteraction(cfg, scale)
        self.before_skip = nn.Sequential(*(ResidualLayer(e) for _ in range(cfg.num_before_skip)))
        self.after_skip = nn.Sequential(*(ResidualLayer(e) for _ in range(cfg.num_after_skip)))
        self.atom_update = _AtomUpdate(cfg.hidden, e, cfg.emb_size_rbf, cfg.num_atom, scale)
        self.concat = _EdgeEmbedding(cfg.hidden, e, e)
        self.residual_m = nn.Sequential(*(ResidualLayer(e) for _ in range(cfg.num_concat)))

    def forward(
        self, h: Tensor, m: Tensor, bases: _Bases, triplets: Triplets,
        graph: tuple[Tensor, Tensor, Tensor],
    ) -> tuple[Tensor, Tensor]:
        """``h [N, A]``, ``m [E, F]``; ``graph = (src, dst, rev)`` -> updated ``(h, m)``."""
        src, dst, rev = graph
        x_ca, x_ba = self.dense_ca_ba(m).chunk(2, dim=-1)
        x3 = self.triplet(x_ba, bases.rbf3, bases.cbf, bases.angular, triplets, rev)
        x = self.before_skip(_mix(x3, x_ca))
        m = self.after_skip(_mix(x, m))
        h = _mix(self.atom_update(m, bases.rbf_h, dst, h.shape[0]), h)
        m = _mix(self.residual_m(self.concat(h, m, src, dst)), m)
        return h, m


# --------------------------------------------------------------------------- decoder


class GemNetTDecoder(nn.Module):
    """GemNet-T score network: ``decoder(z [B, latent], frac_coords [N, 3], atom_types [N],
    num_atoms [B], lattice [B, 3, 3], batch [N]) -> (coord_out [N, 3], type_logits [N, 100])``.

    ``coord_out`` is equivariant (a sum of edge unit vectors with invariant weights); the type
    logits are invariant.
    """

    def __init__(self, cfg: GemNetTConfig = GemNetTConfig(), latent_dim: int = 256):
        super().__init__()
        self.cfg, self.latent_dim = cfg, latent_dim
        scale = 1.0 / math.sqrt(cfg.max_neighbors)
        self.radial = RadialBasis(cfg.num_radial, cfg.cutoff, cfg.envelope_exponent)
        # projections of the bases shared by all blocks (as in GemNet)
        self.mlp_rbf3 = Dense(cfg.num_radial, cfg.emb_size_rbf, act=False)
        self.mlp_cbf3 = Dense(cfg.num_radial, cfg.num_spherical * cfg.emb_size_cbf, act=False)
        self.mlp_rbf_h = Dense(cfg.num_radial, cfg.emb_size_rbf, act=False)
        self.mlp_rbf_out = Dense(cfg.num_radial, cfg.emb_size_rbf, act=False)

        self.atom_emb = nn.Embedding(MAX_ATOMIC_NUM + 1, cfg.hidden)
        nn.init.uniform_(self.atom_emb.weight, -math.sqrt(3.0), math.sqrt(3.0))
        self.atom_latent = mlp([cfg.hidden + latent_dim, cfg.hidden])  # one Linear, as CDVAE
        self.edge_emb = _EdgeEmbedding(cfg.hidden, cfg.num_radial, cfg.emb_size_edge)
        self.int_blocks = nn.ModuleList(_InteractionBlock(cfg, scale) for _ in range(cfg.num_blocks))
        self.out_blocks = nn.ModuleList(_OutputBlock(cfg, scale) for _ in range(cfg.num_blocks + 1))

    def forward(
        self,
        z: Tensor,
        frac_coords: Tensor,
        atom_types: Tensor,
        num_atoms: Tensor,
        lattice: Tensor,
        batch: Tensor,
    ) -> tuple[Tensor, Tensor]:
        cfg = self.cfg
        num_nodes = atom_types.shape[0]
        edge_index, images, vec, _ = decoder_graph(
            frac_coords, lattice, num_atoms, batch, cfg.cutoff, cfg.max_neighbors
        )
        edge_index, images, take, rev = symmetrize_edges(edge_index, images, num_nodes)
        vec = torch.cat([vec, -vec]).index_select(0, take)  # [E, 3]
        dist = vec.norm(dim=-1)  # [E]
        src, dst = edge_index
        triplets = build_triplets(edge_index, images, num_nodes)

        rbf = self.radial(dist)  # [E, R]
        num_edges = dist.shape[0]
        bases = _Bases(
            angular=triplets.angular_basis(vec, cfg.num_spherical),
            cbf=self.mlp_cbf3(rbf).view(num_edges, cfg.num_spherical, cfg.emb_size_cbf),
            rbf3=self.mlp_rbf3(rbf),
            rbf_h=self.mlp_rbf_h(rbf),
        )
        rbf_out = self.mlp_rbf_out(rbf)

        h = self.atom_latent(torch.cat([self.atom_emb(atom_types), z.index_select(0, batch)], -1))
        m = self.edge_emb(h, rbf, src, dst)  # [E, F]
        type_logits, edge_out = self.out_blocks[0](m, rbf_out, dst, num_nodes)
        for interaction, output in zip(self.int_blocks, self.out_blocks[1:], strict=True):
            h, m = interaction(h, m, bases, triplets, (src, dst, rev))
            t, e = output(m, rbf_out, dst, num_nodes)
            type_logits, edge_out = type_logits + t, edge_out + e

        unit = vec / dist[:, None]
        coord_out = _sum_into_atoms(edge_out * unit, dst, num_nodes)  # [N, 3]
        return coord_out, type_logits

    def __repr__(self) -> str:
        return f"GemNetTDecoder({self.cfg}, latent_dim={self.latent_dim})"
