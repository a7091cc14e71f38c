"""Latent property optimisation."""

from __future__ import annotations

import pytest
import torch

from cdvae_core.model.optimize import optimize_latent


def test_latent_optimisation_descends_a_known_function():
    target = torch.tensor([[1.0, -2.0, 0.5]])

    def prop(z):
        return ((z - target) ** 2).sum(-1)

    res = optimize_latent(prop, torch.zeros(1, 3), steps=3000, lr=1e-2, save_every=500)
    assert res.saved_steps == [0, 500, 1000, 1500, 2000, 2500, 3000]
    assert res.prop.shape == (3001, 1)
    assert res.prop[-1, 0] < 1e-3 < res.prop[0, 0]
    torch.testing.assert_close(res.z_saved[-1], target, atol=1e-2, rtol=0)
    up = optimize_latent(prop, torch.zeros(1, 3), steps=100, lr=1e-2, direction="maximize")
    assert up.prop[-1, 0] > up.prop[0, 0]
    with pytest.raises(ValueError):
        optimize_latent(prop, torch.zeros(1, 3), direction="sideways")
