"""DimeNet++ encoder adapted to periodic multigraphs (the encoder of CDVAE's reference model).

DimeNet++ (Gasteiger, Giri, Margraf & Günnemann, 2020, https://arxiv.org/abs/2011.14115) embeds
every directed edge and updates edge ``j -> i`` from the edges ``k -> j`` through a basis of the
distance ``d_kj`` and the angle at ``j`` (DimeNet, https://arxiv.org/abs/2003.03123, eqs. 4-7):

    m_ji <- f_int(m_ji, sum_k  W_sbf a_SBF(d_kj, alpha_kji)  *  W_rbf e_RBF(d_kj) * m_kj).

For crystals (CDVAE, Xie et al., ICLR 2022, https://arxiv.org/abs/2110.06197, Appendix B) the
graph is the CrystalNN multigraph with integer image offsets: edge vectors come from
:func:`cdvae_core.geometry.edge_vectors`, so an atom may bond to several images of one atom, and
only the reverse edge (same atom *and* same image) is excluded from the triplets
(:mod:`cdvae_core.nn.triplets`). The per-atom outputs are averaged over each crystal.

torch-geometric's building blocks are reused (Bessel radial basis, embedding, interaction and
output blocks); two parts are replaced: the interaction's triplet sum runs in the dense per-atom
layout of :class:`~cdvae_core.nn.triplets.Triplets`, and the spherical Bessel functions are
evaluated here without sympy and without the cancellation of their closed forms at small
arguments (which costs float32 most of its digits for ``l >= 4``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch_geometric.nn.models.dimenet import (
    BesselBasisLayer,
    EmbeddingBlock,
    Envelope,
    InteractionPPBlock,
    OutputPPBlock,
)

from cdvae_core.data.batch import CrystalBatch
from cdvae_core.geometry import edge_vectors
from cdvae_core.nn.base import MAX_ATOMIC_NUM
from cdvae_core.nn.triplets import Triplets, build_triplets

__all__ = ["DimeNetPPConfig", "PeriodicDimeNetPP", "SphericalBesselBasis"]


@dataclass(frozen=True)
class DimeNetPPConfig:
    """DimeNet++ encoder; the defaults are CDVAE's reference configuration (about 2.2 M parameters
    with ``out_dim = 256``).

    hidden: edge embedding size.
    num_blocks: interaction blocks (an output block follows the embedding and each of them).
    int_emb_size: down-projected size in which triplets interact.
    basis_emb_size: bottleneck of the radial and spherical basis projections.
    out_emb_channels: width of the output blocks' per-atom MLPs.
    num_spherical / num_radial: angular orders ``l`` and radial roots ``n`` of the bases.
    cutoff: distance (Å) at which the basis envelope reaches zero.
    max_num_neighbors: reference value for a radius graph; the CrystalNN graph read here has
        fewer bonds per atom (at most 12 on Perov-5) and is never truncated.
    envelope_exponent: smoothness of the polynomial envelope.
    num_before_skip / num_after_skip: residual layers around each interaction's skip connection.
    num_output_layers: hidden layers of each output block.
    readout: ``"mean"`` (reference) or ``"sum"`` of the per-atom outputs of a crystal.
    output_init: final layer of the output blocks, ``"zeros"`` (torch-geometric's default, and so
        the reference) or ``"glorot_orthogonal"``.
    """

    hidden: int = 128
    num_blocks: int = 4
    int_emb_size: int = 64
    basis_emb_size: int = 8
    out_emb_channels: int = 256
    num_spherical: int = 7
    num_radial: int = 6
    cutoff: float = 7.0
    max_num_neighbors: int = 20
    envelope_exponent: int = 5
    num_before_skip: int = 1
    num_after_skip: int = 2
    num_output_layers: int = 3
    readout: str = "mean"
    output_init: str = "zeros"


# --------------------------------------------------------------------------- spherical Bessel


def spherical_bessel_zeros(num_orders: int, num_roots: int) -> np.ndarray:
    """First ``num_roots`` positive zeros of ``j_l`` for ``l < num_orders``: ``[L, R]`` (float64).

    The zeros of ``j_l`` interlace those of ``j_{l-1}``, so each lies between two consecutive
    zeros of the order below, where Brent's method finds it.
    """
    from scipy.optimize import brentq
    from scipy.special import spherical_jn

    count = num_roots + num_orders  # orders above need brackets beyond the last root kept
    zeros = np.zeros((num_orders, num_roots))
    prev = np.arange(1, count + 1) * np.pi  # zeros of j_0
    zeros[0] = prev[:num_roots]
    for order in range(1, num_orders):
        cur = np.array(
            [
                brentq(lambda x, n=order: spherical_jn(n, x), prev[i], prev[i + 1], xtol=1e-15)
                for i in range(len(prev) - 1)
            ]
        )
        zeros[order] = cur[:num_roots]
        prev = cur
    return zeros


def spherical_jn(order: int, x: Tensor, num_terms: int = 18) -> Tensor:
    """Spherical Bessel function ``j_order(x)`` for ``x > 0``, accurate to working precision.

    Below ``x = max(order, 1)`` the power series is used (the closed forms there subtract
    terms of size ``(2l-1)!! / x^(l+1)`` to leave a result of size ``x^l / (2l+1)!!``); above it,
    the upward recurrence from ``j_0, j_1``, which is stable once ``x`` exceeds the order. Each
    branch sees a clamped argument so that the branch not taken cannot put inf/NaN in gradients.
    """
    threshold = float(max(order, 1))
    small = x < threshold
    # upward recurrence
    xr = torch.where(small, torch.full_like(x, threshold), x)
    s, c = torch.sin(xr), torch.cos(xr)
    j_prev = s / xr
    if order == 0:
        large = j_prev
    else:
        j = s / (xr * xr) - c / xr
        for n in range(1, order):
            j_prev, j = j, (2 * n + 1) / xr * j - j_prev
        large = j
    # power series: x^l / (2l+1)!! * sum_k (-x^2/2)^k / (k! (2l+3)(2l+5)...(2l+2k+1))
    xs = torch.where(small, x, torch.full_like(x, 0.5 * threshold))
    half_sq = -0.5 * xs * xs
    term = xs**order / float(np.prod(np.arange(1, 2 * order + 2, 2)))
    total = term
    for k in range(1, num_terms):
        term = term * half_sq / (k * (2 * order + 2 * k + 1))
        total = total + term
    return torch.where(small, total, large)


class SphericalBesselBasis(nn.Module):
    """Radial part of DimeNet's 2D spherical Fourier-Bessel basis (DimeNet eq. 6):
    ``u(d / c) * sqrt(2) / |j_{l+1}(z_ln)| * j_l(z_ln d / c)``, ``dist [E] -> [E, L, R]``,
    with ``u`` the polynomial envelope (which carries DimeNet's ``1 / d`` factor)."""

    def __init__(self, num_spherical: int, num_radial: int, cutoff: float, envelope_exponent: int):
        super().__init__()
        from scipy.special import spherical_jn as sp_jn

        self.cutoff = cutoff
        self.envelope = Envelope(envelope_exponent)
        zeros = spherical_bessel_zeros(num_spherical, num_radial)
        norm = np.stack([np.sqrt(2.0) / np.abs(sp_jn(n + 1, zeros[n])) for n in range(num_spherical)])
        self.register_buffer("zeros", torch.tensor(zeros, dtype=torch.float32))
        self.register_buffer("norm", torch.tensor(norm, dtype=torch.float32))

    def forward(self, dist: Tensor) -> Tensor:
        x = dist / self.cutoff  # [E]
        arg = x[:, None, None] * self.zeros  # [E, L, R]
        jl = torch.stack([spherical_jn(n, arg[:, n]) for n in range(arg.shape[1])], dim=1)
        return self.envelope(x)[:, None, None] * self.norm * jl


# --------------------------------------------------------------------------- blocks


class _Embedding(EmbeddingBlock):
    """torch-geometric's DimeNet embedding ``m_ji = act(W [h_i || h_j || act(W e_RBF)])`` with a
    row for every element up to :data:`MAX_ATOMIC_NUM` (torch-geometric's table stops at 94)."""

    def __init__(self, num_radial: int, hidden: int, act: nn.Module):
        super().__init__(num_radial, hidden, act)
        self.emb = nn.Embedding(MAX_ATOMIC_NUM + 1, hidden)
        self.reset_parameters()


class _PeriodicInteractionPP(InteractionPPBlock):
    """torch-geometric's DimeNet++ interaction with the triplet sum done per atom.

    With the spherical basis ``a_SBF(t) = sum_l Y_l(alpha_t) * R_l(d_kj)`` the projected basis
    is linear in ``Y_l``, so ``sum_k (W a_SBF(t)) * x_kj = sum_k sum_l Y_l(alpha_t) (W R_l(d_kj)
    * x_kj)``: the radial half is applied per edge, the angular half in
    :meth:`Triplets.sum_contracted`, exactly as torch-geometric's per-triplet product.
    """

    def forward(  # type: ignore[override]
        self, x: Tensor, rbf: Tensor, sbf_radial: Tensor, angular: Tensor, triplets: Triplets
    ) -> Tensor:
        """``x [E, H]``, ``rbf [E, R]``, ``sbf_radial [E, L, R]``, ``angular [N, Kr, Kc, L]``."""
        x_ji = self.act(self.lin_ji(x))
        x_kj = self.act(self.lin_kj(x)) * self.lin_rbf2(self.lin_rbf1(rbf))
        x_kj = self.act(self.lin_down(x_kj))  # [E, I]
        num_e, num_l, num_r = sbf_radial.shape
        # lin_sbf2(lin_sbf1(.)) restricted to one order l is a [R, I] matrix; applied to all
        # orders at once as one block-diagonal matmul (tiny weights, one large contiguous mm)
        w1 = self.lin_sbf1.weight.view(-1, num_l, num_r)  # [B, L, R], torch-geometric's l-major order
        per_l = torch.einsum("bln,ib->lni", w1, self.lin_sbf2.weight)  # [L, R, I]
        radial = sbf_radial.reshape(num_e, num_l * num_r) @ torch.block_diag(*per_l.unbind(0))
        radial = radial.view(num_e, num_l, -1)  # [E, L, I]
        x_kj = triplets.sum_contracted(angular, radial * x_kj[:, None, :])  # [E, I]
        x_kj = self.act(self.lin_up(x_kj))
        h = x_ji + x_kj
        for layer in self.layers_before_skip:
            h = layer(h)
        h = self.act(self.lin(h)) + x
        for layer in self.layers_after_skip:
            h = layer(h)
        return h


class PeriodicDimeNetPP(nn.Module):
    """DimeNet++ crystal encoder on the CrystalNN multigraph: ``encoder(batch) -> [B, out_dim]``.

    Invariant to atom permutation, translation, rotation and the choice of periodic image: it
    sees only edge lengths and the angles between edge vectors, and a bond's vector already
    includes its image offset.
    """

    def __init__(self, cfg: DimeNetPPConfig = DimeNetPPConfig(), out_dim: int = 256):
        super().__init__()
        if cfg.readout not in ("mean", "sum"):
            raise ValueError(f"readout must be 'mean' or 'sum', not {cfg.readout!r}")
        self.cfg, self.out_dim = cfg, out_dim
        act = nn.SiLU()
        self.rbf = BesselBasisLayer(cfg.num_radial, cfg.cutoff, cfg.envelope_exponent)
        self.sbf = SphericalBesselBasis(
            cfg.num_spherical, cfg.num_radial, cfg.cutoff, cfg.envelope_exponent
        )
        self.emb = _Embedding(cfg.num_radial, cfg.hidden, act)
        self.output_blocks = nn.ModuleList(
            OutputPPBlock(
                cfg.num_radial,
                cfg.hidden,
                cfg.out_emb_channels,
                out_dim,
                cfg.num_output_layers,
                act,
                cfg.output_init,
            )
            for _ in range(cfg.num_blocks + 1)
        )
        self.interaction_blocks = nn.ModuleList(
            _PeriodicInteractionPP(
                cfg.hidden,
                cfg.int_emb_size,
                cfg.basis_emb_size,
                cfg.num_spherical,
                cfg.num_radial,
                cfg.num_before_skip,
                cfg.num_after_skip,
                act,
            )
            for _ in range(cfg.num_blocks)
        )

    def forward(self, batch: CrystalBatch) -> Tensor:
        """Crystal embeddings ``[B, out_dim]`` of ``batch``."""
        num_nodes = batch.atom_types.shape[0]
        src, dst = batch.edge_index  # messages j = src -> i = dst
        vec = edge_vectors(
            batch.frac_coords, batch.lattice, batch.batch, batch.edge_index, batch.images
        )  # [E, 3]
        dist = vec.norm(dim=-1)  # [E]
        triplets, angular = self.triplet_basis(batch, vec)
        rbf = self.rbf(dist)  # [E, R]
        sbf_radial = self.sbf(dist)  # [E, L, R]

        x = self.emb(batch.atom_types, rbf, dst, src)  # [E, H]
        out = self.output_blocks[0](x, rbf, dst, num_nodes=num_nodes)  # [N, out_dim]
        for interaction, output in zip(self.interaction_blocks, self.output_blocks[1:], strict=True):
            x = interaction(x, rbf, sbf_radial, angular, triplets)
            out = out + output(x, rbf, dst, num_nodes=num_nodes)

        pooled = out.new_zeros((batch.num_graphs, out.shape[1])).index_add_(0, batch.batch, out)
        if self.cfg.readout == "mean":
            pooled = pooled / batch.num_atoms.clamp(min=1)[:, None].to(pooled)
        return pooled

    def triplet_basis(self, batch: CrystalBatch, vec: Tensor) -> tuple[Triplets, Tensor]:
        """The triplets of ``batch`` and their angular basis ``[N, Kr, Kc, L]`` (``vec [E, 3]``:
        edge vectors); a subclass may choose other triplets or another angle."""
        triplets = build_triplets(batch.edge_index, batch.images, batch.atom_types.shape[0])
        return triplets, triplets.angular_basis(vec, self.cfg.num_spherical, l_last=True)

    def __repr__(self) -> str:
        return f"PeriodicDimeNetPP({self.cfg}, out_dim={self.out_dim})"
