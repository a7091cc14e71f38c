"""The fast architecture: triplet-free equivariant message passing for CPU training and sampling.

Each atom carries invariant features ``s [N, F]`` and equivariant vector features
``v [N, 3, F]``, updated by messages along periodic edges as in PaiNN (Schütt, Unke & Gastegger,
ICML 2021, https://arxiv.org/abs/2102.03150, eqs. 7-9). Unlike DimeNet++ / GemNet, no angles
over edge triplets are formed, so the cost is linear in the number of edges.

The encoder reads the CrystalNN graph with its image offsets; the decoder builds a periodic
radius graph from the noisy structure and returns a per-atom vector (a gated equivariant
read-out of ``v``) and type logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cdvae_core.data.batch import CrystalBatch
from cdvae_core.geometry import edge_vectors
from cdvae_core.nn.base import MAX_ATOMIC_NUM, CosineCutoff, GaussianBasis, decoder_graph, mlp

__all__ = ["PaiNNConfig", "PaiNNTrunk", "PaiNNEncoder", "PaiNNDecoder"]


@dataclass(frozen=True)
class PaiNNConfig:
    """Size of a PaiNN trunk.

    hidden: feature width F of scalars and vectors.
    num_layers: message + update blocks.
    num_rbf: Gaussians expanding each distance.
    cutoff: radius (Å) of the decoder graph and of the distance envelope.
    max_neighbors: neighbours kept per atom in the decoder graph.
    """

    hidden: int = 128
    num_layers: int = 3
    num_rbf: int = 32
    cutoff: float = 7.0
    max_neighbors: int = 20


def _scatter_sum(src: Tensor, index: Tensor, size: int) -> Tensor:
    out = src.new_zeros((size, *src.shape[1:]))
    return out.index_add_(0, index, src)


class _Message(nn.Module):
    def __init__(self, hidden: int, num_rbf: int):
        super().__init__()
        self.hidden = hidden
        self.phi = mlp([hidden, hidden, 3 * hidden])
        self.w = nn.Linear(num_rbf, 3 * hidden)

    def forward(self, s, v, edge_index, rbf, unit, env):
        src, dst = edge_index
        x = self.phi(s)[src] * self.w(rbf) * env[:, None]  # [E, 3F]
        a, b, c = torch.split(x, self.hidden, dim=-1)
        dv = v[src] * b[:, None, :] + unit[:, :, None] * c[:, None, :]  # [E, 3, F]
        n = s.shape[0]
        return s + _scatter_sum(a, dst, n), v + _scatter_sum(dv, dst, n)


class _Update(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.uv = nn.Linear(hidden, hidden, bias=False)
        self.vv = nn.Linear(hidden, hidden, bias=False)
        self.a = mlp([2 * hidden, hidden, 3 * hidden])

    def forward(self, s, v):
        uv, vv = self.uv(v), self.vv(v)  # [N, 3, F]
        vnorm = torch.sqrt(vv.pow(2).sum(1) + 1e-8)  # [N, F]
        a = self.a(torch.cat([s, vnorm], dim=-1))
        a_vv, a_sv, a_ss = torch.split(a, self.hidden, dim=-1)
        return s + a_ss + a_sv * (uv * vv).sum(1), v + uv * a_vv[:, None, :]


class PaiNNTrunk(nn.Module):
    """Message + update blocks on ``(s [N, F], edge_index, edge_vec)``; returns ``(s, v)``."""

    def __init__(self, cfg: PaiNNConfig):
        super().__init__()
        self.cfg = cfg
        self.rbf = GaussianBasis(cfg.cutoff, cfg.num_rbf)
        self.env = CosineCutoff(cfg.cutoff)
        self.messages = nn.ModuleList(_Message(cfg.hidden, cfg.num_rbf) for _ in range(cfg.num_layers))
        self.updates = nn.ModuleList(_Update(cfg.hidden) for _ in range(cfg.num_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(cfg.hidden) for _ in range(cfg.num_layers))

    def forward(self, s: Tensor, edge_index: Tensor, vec: Tensor) -> tuple[Tensor, Tensor]:
        dist = vec.norm(dim=-1)
        unit = vec / dist.clamp(min=1e-6)[:, None]
        rbf, env = self.rbf(dist), self.env(dist)
        v = s.new_zeros((s.shape[0], 3, s.shape[1]))
        for msg, upd, norm in zip(self.messages, self.updates, self.norms, strict=True):
            s, v = msg(s, v, edge_index, rbf, unit, env)
            s, v = upd(norm(s), v)
        return s, v


class PaiNNEncoder(nn.Module):
    """Invariant crystal encoder on the CrystalNN multigraph; mean read-out ``[B, out_dim]``."""

    def __init__(self, cfg: PaiNNConfig = PaiNNConfig(), out_dim: int = 256):
        super().__init__()
        self.cfg, self.out_dim = cfg, out_dim
        self.embed = nn.Embedding(MAX_ATOMIC_NUM + 1, cfg.hidden)
        self.trunk = PaiNNTrunk(cfg)
        self.out = mlp([cfg.hidden, cfg.hidden, out_dim])

    def forward(self, batch: CrystalBatch) -> Tensor:
        vec = edge_vectors(
            batch.frac_coords, batch.lattice, batch.batch, batch.edge_index, batch.images
        )
        s, _ = self.trunk(self.embed(batch.atom_types), batch.edge_index, vec)
        h = self.out(s)
        out = _scatter_sum(h, batch.batch, batch.num_graphs)
        return out / batch.num_atoms.clamp(min=1)[:, None].to(out)

    def __repr__(self) -> str:
        return f"PaiNNEncoder({self.cfg}, out_dim={self.out_dim})"


class PaiNNDecoder(nn.Module):
    """Score network: per-atom equivariant vector ``[N, 3]`` and type logits ``[N, 100]``,
    conditioned on z through the input embedding ``h0 = MLP(embed(type) || z)``."""

    def __init__(self, cfg: PaiNNConfig = PaiNNConfig(), latent_dim: int = 256):
        super().__init__()
        self.cfg, self.latent_dim = cfg, latent_dim
        self.embed = nn.Embedding(MAX_ATOMIC_NUM + 1, cfg.hidden)
        self.inp = mlp([cfg.hidden + latent_dim, cfg.hidden, cfg.hidden])
        self.trunk = PaiNNTrunk(cfg)
        self.gate_v = nn.Linear(cfg.hidden, cfg.hidden, bias=False)
        self.gate_s = mlp([2 * cfg.hidden, cfg.hidden, cfg.hidden])
        self.vec_out = nn.Linear(cfg.hidden, 1, bias=False)
        self.type_out = mlp([cfg.hidden, cfg.hidden, MAX_ATOMIC_NUM])

    def forward(self, z, frac_coords, atom_types, num_atoms, lattice, batch):
        edge_index, _, vec, _ = decoder_graph(
            frac_coords, lattice, num_atoms, batch, self.cfg.cutoff, self.cfg.max_neighbors
        )
        s = self.inp(torch.cat([self.embed(atom_types), z[batch]], dim=-1))
        s, v = self.trunk(s, edge_index, vec)
        # gated equivariant read-out: vector channels scaled by invariant gates
        gv = self.gate_v(v)  # [N, 3, F]
        gate = self.gate_s(torch.cat([s, torch.sqrt(gv.pow(2).sum(1) + 1e-8)], dim=-1))
        coord_out = self.vec_out(gv * gate[:, None, :]).squeeze(-1)  # [N, 3]
        return coord_out, self.type_out(s)

    def __repr__(self) -> str:
        return f"PaiNNDecoder({self.cfg}, latent_dim={self.latent_dim})"
