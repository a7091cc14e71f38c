"""Reading latent space: the latent heads, interpolation, chunked encoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cdvae_core import explore
from cdvae_core.data.dataset import CrystalDataset
from cdvae_core.diffusion.presets import get_preset
from cdvae_core.model.decode import decode

from conftest import cubic_srtio3, rocksalt_nacl
from helpers import small_model

SMALL = {"hidden": 16, "num_layers": 1, "num_rbf": 8}


@pytest.fixture(scope="module")
def model():
    return small_model()


def test_read_latent_matches_the_heads(model):
    z = torch.randn(8)
    r = explore.read_latent(model, z, top_k=4)
    n = int(model.predict_num_atoms(z[None]).argmax(-1).clamp(min=1))
    assert r.num_atoms == n and 0 < r.num_atoms_prob <= 1
    assert len(r.lengths) == 3 and len(r.angles_deg) == 3 and min(r.lengths) > 0
    probs = [p for _, p in r.composition]
    assert len(probs) == 4 and probs == sorted(probs, reverse=True)
    with torch.no_grad():
        assert r.prop == pytest.approx(float(model.predict_property(z[None])[0]))
    assert r.formula  # a reduced formula of n drawn atoms
    assert explore.read_latent(model, z).formula == r.formula  # seeded


def test_readout_lattice_is_the_decoders(model):
    z = torch.randn(1, 8)
    r = explore.read_latent(model, z)
    res = decode(model, z, get_preset("interactive", n_step_each=1, level_stride=25))
    assert res.num_atoms.item() == r.num_atoms
    assert np.allclose(res.lengths[0].tolist(), r.lengths, atol=1e-5)
    assert np.allclose(res.angles_deg[0].tolist(), r.angles_deg, atol=1e-4)


def test_interpolation_ends_and_shapes():
    a, b = torch.randn(8), torch.randn(8)
    for mode in ("linear", "slerp"):
        path = explore.interpolate_latents(a, b, 5, mode)
        assert path.shape == (5, 8)
        assert torch.allclose(path[0], a, atol=1e-5) and torch.allclose(path[-1], b, atol=1e-5)
    line = explore.interpolate_latents(a, b, 3)
    assert torch.allclose(line[1], (a + b) / 2, atol=1e-6)
    # slerp between vectors of equal norm keeps the norm
    c = b / b.norm() * a.norm()
    assert torch.allclose(explore.interpolate_latents(a, c, 4, "slerp").norm(dim=1), a.norm(),
                          atol=1e-4)
    with pytest.raises(ValueError):
        explore.interpolate_latents(a, b, 1)
    with pytest.raises(ValueError):
        explore.interpolate_latents(a, b, 3, "cubic")


def test_encode_in_chunks_equals_one_pass(model):
    ds = CrystalDataset.from_structures([cubic_srtio3(), cubic_srtio3(4.0), rocksalt_nacl()])
    seen = []
    z = explore.encode_in_chunks(model, ds, chunk=2, progress=seen.append)
    from cdvae_core.model.decode import encode_dataset

    assert torch.allclose(z, encode_dataset(model, ds), atol=1e-5)
    assert seen == [pytest.approx(2 / 3), 1.0]
