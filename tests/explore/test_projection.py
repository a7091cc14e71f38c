"""The 2D projection of latent space."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cdvae_core import explore

SMALL = {"hidden": 16, "num_layers": 1, "num_rbf": 8}


def test_projection_fits_and_places_new_points():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(200, 6)) * np.array([5, 2, 0.1, 0.1, 0.1, 0.1])
    proj = explore.fit_projection(z)
    xy = proj.transform(z)
    assert xy.shape == (200, 2)
    assert sum(proj.explained) > 0.95
    assert np.allclose(proj.transform(torch.tensor(z[:3])), xy[:3])
    assert proj.transform(z[0]).shape == (1, 2)
    with pytest.raises(ValueError):
        explore.fit_projection(z[:1])
