"""GemNet-T decoder: reference size, equivariance in float32 and float64, batching, gradients."""

from __future__ import annotations

import pytest
import torch

from cdvae_core.data.dataset import CrystalDataset
from cdvae_core.nn.base import MAX_ATOMIC_NUM
from cdvae_core.nn.gemnet import GemNetTConfig, GemNetTDecoder
from cdvae_core.testing import assert_decoder_equivariant

from conftest import jittered_batch
from helpers import parameters_of

#: a small decoder for the equivariance checks (the reference size is only counted)
SMALL = GemNetTConfig(
    hidden=32, emb_size_edge=32, emb_size_trip=16, emb_size_rbf=8, emb_size_cbf=8,
    emb_size_bil_trip=16, num_blocks=2, num_radial=32, num_atom=1,
)
LATENT = 16


def _run(model, z, b):
    return model(z, b.frac_coords, b.atom_types, b.num_atoms, b.lattice, b.batch)


pytestmark = pytest.mark.usefixtures("one_thread")


def test_reference_size_is_about_2p3_million_parameters():
    n = parameters_of(lambda: GemNetTDecoder(GemNetTConfig(), latent_dim=256))
    assert n == pytest.approx(2.3e6, rel=0.15)


def test_equivariant_coordinates_and_invariant_types(family_batch):
    batch, dtype = family_batch, family_batch.frac_coords.dtype
    torch.manual_seed(0)
    model = GemNetTDecoder(SMALL, latent_dim=LATENT).to(dtype).eval()
    z = torch.randn(batch.num_graphs, LATENT, dtype=dtype)
    coord_out, type_logits = _run(model, z, batch)
    n = batch.frac_coords.shape[0]
    assert coord_out.shape == (n, 3) and type_logits.shape == (n, MAX_ATOMIC_NUM)
    assert coord_out.abs().max() > 1e-3 and type_logits.abs().max() > 1e-3
    assert_decoder_equivariant(model, z, batch, seed=1)


def test_batch_equals_members_one_by_one(perovskites, carbons):
    torch.manual_seed(0)
    model = GemNetTDecoder(SMALL, latent_dim=LATENT).double().eval()
    for structures, dataset in ((perovskites, "perov_5"), (carbons, "carbon_24")):
        data = CrystalDataset.from_structures(structures, dataset)
        batch = jittered_batch(structures, dataset, torch.float64)
        z = torch.randn(batch.num_graphs, LATENT, dtype=torch.float64)
        with torch.no_grad():
            coords, types = _run(model, z, batch)
            for i in range(len(structures)):
                alone = data.collate([i]).to("cpu", torch.float64)
                alone = alone.replace(frac_coords=batch.frac_coords[batch.batch == i])
                c, t = _run(model, z[i : i + 1], alone)
                assert torch.allclose(c, coords[batch.batch == i], atol=1e-12)
                assert torch.allclose(t, types[batch.batch == i], atol=1e-12)


def test_output_depends_on_the_latent(perovskites):
    torch.manual_seed(0)
    model = GemNetTDecoder(SMALL, latent_dim=LATENT).eval()
    batch = jittered_batch(perovskites, "perov_5")
    with torch.no_grad():
        a = _run(model, torch.zeros(2, LATENT), batch)
        b = _run(model, torch.ones(2, LATENT), batch)
    assert not torch.allclose(a[0], b[0]) and not torch.allclose(a[1], b[1])


def test_gradients_reach_every_parameter_and_the_inputs(carbons):
    torch.manual_seed(0)
    model = GemNetTDecoder(SMALL, latent_dim=LATENT)
    batch = jittered_batch(carbons, "carbon_24")
    z = torch.randn(batch.num_graphs, LATENT, requires_grad=True)
    lattice = batch.lattice.clone().requires_grad_(True)
    coords, types = model(
        z, batch.frac_coords, batch.atom_types, batch.num_atoms, lattice, batch.batch
    )
    (coords.pow(2).sum() + types.logsumexp(-1).sum()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().max() > 0, name
    assert z.grad.abs().max() > 0 and torch.isfinite(lattice.grad).all()
