"""The toy exact periodic score against brute force and the minimum-image target."""

from __future__ import annotations

import pytest
import torch
from pymatgen.core import Structure

from cdvae_core.diffusion.noise import geometric_sigmas
from cdvae_core.diffusion.toy import periodic_gaussian_score
from cdvae_core.geometry import min_image_cart_displacement

from conftest import cubic_srtio3, triclinic

SMALL = {"hidden": 16, "num_layers": 1, "num_rbf": 8}
SIGMAS = geometric_sigmas(10.0, 0.01, 50)


def _log_density(x: torch.Tensor, site: torch.Tensor, lattice: torch.Tensor, sigma: float):
    """log sum over many images of exp(-|x - site - k L|^2 / 2 sigma^2), brute force."""
    r = torch.arange(-6, 7, dtype=torch.float64)
    shifts = torch.cartesian_prod(r, r, r)  # [M, 3]
    images = (site[None] + shifts) @ lattice  # [M, 3]
    return torch.logsumexp(-(x[None] - images).pow(2).sum(-1) / (2 * sigma**2), dim=0)


def _tensors(structure: Structure):
    frac = torch.tensor(structure.frac_coords % 1.0, dtype=torch.float64)
    lattice = torch.tensor(structure.lattice.matrix, dtype=torch.float64)[None]
    return frac, lattice, torch.zeros(len(structure), dtype=torch.long)


# ---------------------------------------------------------------------------- exact score
@pytest.mark.parametrize("sigma", [0.3, 0.8, 1.5])
def test_exact_score_is_the_gradient_of_the_periodic_log_density(sigma):
    sites, lattice, batch = _tensors(triclinic())
    gen = torch.Generator().manual_seed(0)
    x_frac = torch.rand(sites.shape, generator=gen, dtype=torch.float64)
    score = periodic_gaussian_score(x_frac, sites, lattice, batch, sigma)
    for i in range(len(sites)):
        x = (x_frac[i] @ lattice[0]).requires_grad_(True)
        (grad,) = torch.autograd.grad(_log_density(x, sites[i], lattice[0], sigma), x)
        assert torch.allclose(score[i], grad, atol=1e-8, rtol=1e-6), (sigma, i)


def test_exact_score_is_the_minimum_image_target_at_small_sigma():
    sites, lattice, batch = _tensors(triclinic())
    gen = torch.Generator().manual_seed(1)
    x = (sites + 0.03 * torch.randn(sites.shape, generator=gen, dtype=torch.float64)) % 1.0
    sigma = 0.05
    score = periodic_gaussian_score(x, sites, lattice, batch, sigma)
    target = min_image_cart_displacement(x, sites, lattice, batch) / sigma**2
    assert torch.allclose(score, target, rtol=1e-9, atol=1e-9)


def test_exact_score_is_periodic_batched_and_vanishes_for_large_sigma():
    a, b = triclinic(), cubic_srtio3()
    sa, la, _ = _tensors(a)
    sb, lb, _ = _tensors(b)
    gen = torch.Generator().manual_seed(2)
    xa = torch.rand(sa.shape, generator=gen, dtype=torch.float64)
    xb = torch.rand(sb.shape, generator=gen, dtype=torch.float64)
    sigma = 0.7
    one_a = periodic_gaussian_score(xa, sa, la, torch.zeros(len(a), dtype=torch.long), sigma)
    one_b = periodic_gaussian_score(xb, sb, lb, torch.zeros(len(b), dtype=torch.long), sigma)
    batch = torch.cat([torch.zeros(len(a)), torch.ones(len(b))]).long()
    both = periodic_gaussian_score(torch.cat([xa, xb]), torch.cat([sa, sb]),
                                            torch.cat([la, lb]), batch, sigma)
    assert torch.allclose(both, torch.cat([one_a, one_b]), atol=1e-10)
    shifted = xa + torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)  # the same points
    assert torch.allclose(
        periodic_gaussian_score(shifted, sa, la, torch.zeros(len(a), dtype=torch.long),
                                         sigma), one_a, atol=1e-10)
    flat = periodic_gaussian_score(xa, sa, la, torch.zeros(len(a), dtype=torch.long), 8.0)
    assert torch.equal(flat, torch.zeros_like(flat))
