"""Noise schedules and corruption of crystals (coordinates and atom types), apart from any network.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from cdvae_core.geometry import cart_to_frac, frac_to_cart, wrap_frac

__all__ = ["geometric_sigmas", "perturb_coords", "perturb_types"]


def geometric_sigmas(begin: float, end: float, num: int) -> Tensor:
    """``num`` noise levels from ``begin`` down to ``end``, equal ratios (float32 ``[num]``)."""
    if not (begin > 0 and end > 0 and num >= 1):
        raise ValueError(f"noise levels need begin, end > 0 and num >= 1 (got {begin}, {end}, {num})")
    return torch.exp(torch.linspace(math.log(begin), math.log(end), num)).float()


def perturb_coords(
    frac_coords: Tensor,
    lattice: Tensor,
    batch: Tensor,
    sigma_per_atom: Tensor,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Add isotropic Gaussian noise of std ``sigma_per_atom [N]`` (Å) in Cartesian space and wrap
    the result back into the cell; returns noisy fractional coordinates ``[N, 3]``."""
    noise = torch.randn(
        frac_coords.shape, generator=generator, device=frac_coords.device, dtype=frac_coords.dtype
    )
    cart = frac_to_cart(frac_coords, lattice, batch) + noise * sigma_per_atom[:, None]
    return wrap_frac(cart_to_frac(cart, lattice, batch))


def perturb_types(
    atom_types: Tensor,
    composition_probs: Tensor,
    sigma_per_atom: Tensor,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Noisy atom types ``[N]`` (atomic numbers) drawn from
    ``one_hot(true type) + sigma * predicted composition`` (normalised): the larger sigma, the
    more the type is drawn from the predicted composition of its crystal."""
    num_classes = composition_probs.shape[-1]
    one_hot = torch.nn.functional.one_hot(atom_types - 1, num_classes).to(composition_probs)
    probs = one_hot + composition_probs * sigma_per_atom[:, None]
    return torch.multinomial(probs, 1, generator=generator).squeeze(1) + 1
