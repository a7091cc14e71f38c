"""Interfaces shared by every encoder and decoder, and the pieces they have in common.

Encoder: ``encoder(batch: CrystalBatch) -> Tensor [B, out_dim]``, invariant to atom permutation,
rigid translation, rotation of coordinates and lattice together, and the choice of periodic image
of each atom.

Decoder (score network): ``decoder(z [B, latent_dim], frac_coords [N, 3], atom_types [N],
num_atoms [B], lattice [B, 3, 3], batch [N]) -> (coord_out [N, 3], type_logits [N, 100])``.
``coord_out`` is equivariant (rotates with the structure, unchanged by translation and image
choice); the model divides it by sigma to get the coordinate score. ``type_logits`` are invariant.
The decoder builds its periodic radius graph on the fly from the (noisy) input structure.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from cdvae_core.geometry import edge_vectors, radius_graph_pbc, wrap_frac

__all__ = ["MAX_ATOMIC_NUM", "GaussianBasis", "CosineCutoff", "mlp", "decoder_graph"]

MAX_ATOMIC_NUM = 100


def mlp(dims: list[int], act: type[nn.Module] = nn.SiLU, last_act: bool = False) -> nn.Sequential:
    """Linear layers of widths ``dims`` with ``act`` between them."""
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2 or last_act:
            layers.append(act())
    return nn.Sequential(*layers)


class GaussianBasis(nn.Module):
    """``num`` Gaussians on ``[0, cutoff]`` (Å) expanding distances ``[E] -> [E, num]``."""

    def __init__(self, cutoff: float, num: int = 32):
        super().__init__()
        self.register_buffer("centres", torch.linspace(0.0, cutoff, num))
        self.gamma = 0.5 / (cutoff / (num - 1)) ** 2

    def forward(self, dist: Tensor) -> Tensor:
        g = torch.exp(-self.gamma * (dist[:, None] - self.centres) ** 2)
        # Gaussians far from a distance fall below the smallest normal float (exp(-87) in
        # float32) before they reach zero. Those subnormal values are zero to within 1.2e-38
        # (float32 and bfloat16; 2.2e-308 in float64), but Intel CPUs compute with them in
        # microcode: the weight gradient of the first linear layer after this basis (a
        # [3F, E] x [E, num] product) took 465 ms instead of 3 ms per layer on a Xeon
        # (benchmarks/README.md, "Where the time went"). Zeroing them works on every thread,
        # unlike torch.set_flush_denormal, which sets the calling thread's FPU mode only.
        return torch.where(g < torch.finfo(g.dtype).tiny, 0.0, g)


class CosineCutoff(nn.Module):
    """Smooth envelope ``0.5 (cos(pi d / cutoff) + 1)`` that goes to zero at the cutoff, so
    a neighbour crossing the cutoff changes the output continuously."""

    def __init__(self, cutoff: float):
        super().__init__()
        self.cutoff = cutoff

    def forward(self, dist: Tensor) -> Tensor:
        return 0.5 * (torch.cos(dist * math.pi / self.cutoff) + 1.0) * (dist < self.cutoff)


def decoder_graph(
    frac_coords: Tensor,
    lattice: Tensor,
    num_atoms: Tensor,
    batch: Tensor,
    cutoff: float,
    max_neighbors: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Radius graph of a (noisy) structure: ``edge_index [2, E]``, integer neighbour image
    offsets ``images [E, 3]`` (for wrapped coordinates), ``edge_vec [E, 3]`` (Å, from centre to
    neighbour, differentiable in coordinates and lattice) and ``dist [E]``."""
    with torch.no_grad():
        edge_index, images, _ = radius_graph_pbc(
            frac_coords.detach(), lattice.detach(), num_atoms, cutoff, max_neighbors
        )
    vec = edge_vectors(wrap_frac(frac_coords), lattice, batch, edge_index, images)
    return edge_index, images, vec, vec.norm(dim=-1)
