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


@pytest.mark.parametrize("shape", [(300, 8), (5, 12), (2, 3)])
def test_projection_is_the_principal_component_frame_of_scikit_learn(shape):
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(1)
    z = rng.normal(size=shape) * np.linspace(3, 0.2, shape[1]) + 7.0
    ours = explore.fit_projection(z)
    ref = PCA(n_components=2).fit(z)
    k = ref.n_components_
    assert np.allclose(ours.explained[:k], ref.explained_variance_ratio_, atol=1e-10)
    xy, ref_xy = ours.transform(z)[:, :k], ref.transform(z)
    # the same frame up to the sign of each axis (the sign convention is a choice)
    for axis in range(k):
        assert np.allclose(np.abs(xy[:, axis]), np.abs(ref_xy[:, axis]), atol=1e-8)
        same = np.allclose(xy[:, axis], ref_xy[:, axis], atol=1e-8)
        assert same or np.allclose(xy[:, axis], -ref_xy[:, axis], atol=1e-8)
    # PCA's axes: uncorrelated, variance in decreasing order
    if shape[0] > 2:
        cov = np.cov(xy.T)
        assert abs(cov[0, 1]) < 1e-8 * cov[0, 0] and cov[0, 0] >= cov[1, 1]


def test_importing_and_fitting_the_projection_needs_no_scikit_learn():
    import subprocess
    import sys

    code = ("import sys, numpy as np; from cdvae_core.explore.projection import fit_projection; "
            "fit_projection(np.random.default_rng(0).normal(size=(50, 4))).transform(np.ones(4)); "
            "print(sorted(m for m in sys.modules if m.startswith('sklearn')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
