"""A toy periodic system with an exact score: one known crystal whose atoms are each blurred by
isotropic Gaussian noise of width sigma (Å) and wrapped back into the cell.

The blurred density of atom ``i`` is a Gaussian summed over the periodic images of its site, so
its score (the gradient of the log density) is exact:

    s_i(x) = sum_k w_k (c_i + k L - x) / sigma^2,   w_k = softmax_k(-|c_i + k L - x|^2 / 2 sigma^2)

For sigma much smaller than the cell only the nearest image counts and s_i is the minimum-image
displacement over sigma^2, the denoising target of CDVAE; for sigma comparable to the cell the
blurred density becomes flat and its score fades to zero. It knows no network: a test oracle for
the samplers of :mod:`cdvae_core.diffusion.langevin` and a reference for a trained decoder.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cdvae_core.diffusion.langevin import ScoreFn
from cdvae_core.geometry import num_images_for_cutoff

__all__ = ["MAX_IMAGES", "periodic_gaussian_score", "exact_score_fn"]

MAX_IMAGES = 10  # images searched per direction by the exact score (bounds memory)


def _largest_plane_spacing(lattice: Tensor) -> Tensor:
    """``[B]`` largest spacing (Å) among the 13 lattice-plane families with indices in {-1, 0, 1}."""
    recip = torch.linalg.inv(lattice).transpose(-1, -2)  # [B, 3, 3] rows a*, b*, c* (no 2 pi)
    hkl = torch.cartesian_prod(*[torch.tensor([-1.0, 0.0, 1.0])] * 3).to(lattice)
    hkl = hkl[hkl.abs().sum(-1) > 0]  # [26, 3]
    g = torch.einsum("mi,bij->bmj", hkl, recip).norm(dim=-1)  # [B, 26]
    return 1.0 / g.min(dim=-1).values


def periodic_gaussian_score(
    frac_coords: Tensor, site_frac: Tensor, lattice: Tensor, batch: Tensor, sigma: float
) -> Tensor:
    """Exact score ``[N, 3]`` (Å^-1) of each atom's density blurred by width ``sigma`` (Å).

    Atom ``i`` at ``frac_coords[i]`` belongs to site ``site_frac[i]``; its density is the sum of
    Gaussians of width ``sigma`` centred on every periodic image of the site. Images within
    ``6 sigma`` are summed exactly. Where ``sigma`` reaches the largest lattice-plane spacing
    ``d`` of a crystal, the density is flat to within ``exp(-2 pi^2 sigma^2 / d^2) < 3e-9`` and
    the score is returned as zero.

    Args:
        frac_coords, site_frac: ``[N, 3]`` fractional coordinates of the atoms and of their sites.
        lattice: ``[B, 3, 3]`` (rows are vectors, Å); batch: ``[N]`` crystal of each atom.
        sigma: noise width in Å.
    """
    lat = lattice.to(frac_coords.dtype)
    flat = sigma >= _largest_plane_spacing(lat)  # [B]
    diff = site_frac - frac_coords
    diff = diff - torch.round(diff)  # [N, 3] a nearby image of the site, refined below
    n_img = num_images_for_cutoff(lat, 6.0 * sigma + 1e-9).clamp(min=1, max=MAX_IMAGES)
    rng = n_img[~flat].max(dim=0).values.tolist() if (~flat).any() else [0, 0, 0]
    axes = [torch.arange(-r, r + 1, dtype=lat.dtype, device=lat.device) for r in rng]
    shifts = torch.cartesian_prod(*axes).reshape(-1, 3)  # [M, 3]
    disp = torch.einsum("nmi,nij->nmj", diff[:, None, :] + shifts[None], lat[batch])  # [N, M, 3]
    weights = torch.softmax(-disp.pow(2).sum(-1) / (2.0 * sigma**2), dim=1)  # [N, M]
    score = (weights[..., None] * disp).sum(1) / sigma**2  # [N, 3]
    return torch.where(flat[batch][:, None], torch.zeros_like(score), score)


def exact_score_fn(site_frac: Tensor, atom_types: Tensor, lattice: Tensor, sigmas: Tensor,
                   num_types: int = 100) -> ScoreFn:
    """A ``score_fn`` for :func:`~cdvae_core.diffusion.langevin.annealed_langevin` that knows the
    answer: the exact score of one crystal (sites ``site_frac [N, 3]``, atomic numbers
    ``atom_types [N]``, ``lattice [1, 3, 3]`` Å) blurred at noise level ``sigmas[level]`` (atom
    ``i`` is drawn to site ``i``), and type logits ``[N, num_types]`` that put all weight on the
    true elements."""
    n = site_frac.shape[0]
    batch = torch.zeros(n, dtype=torch.long)
    logits = torch.full((n, num_types), -30.0, dtype=site_frac.dtype)  # [N, K]
    logits[torch.arange(n), atom_types - 1] = 30.0

    def score_fn(frac: Tensor, types: Tensor, level: int) -> tuple[Tensor, Tensor]:
        return periodic_gaussian_score(frac, site_frac, lattice, batch, float(sigmas[level])), logits

    return score_fn
