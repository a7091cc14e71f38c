"""Periodic DimeNet++ encoder: reference size, invariances in float32 and float64, batching, and
the spherical Bessel basis against scipy."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy.special import spherical_jn as scipy_jn

from cdvae_core.data.dataset import CrystalDataset
from cdvae_core.nn.dimenet import (
    DimeNetPPConfig,
    PeriodicDimeNetPP,
    spherical_bessel_zeros,
    spherical_jn,
)
from cdvae_core.testing import assert_encoder_invariant

from conftest import jittered_batch
from helpers import parameters_of

#: a small encoder for the invariance checks (the reference size is only counted)
SMALL = DimeNetPPConfig(
    hidden=32, num_blocks=2, int_emb_size=16, basis_emb_size=4, out_emb_channels=32,
    output_init="glorot_orthogonal",
)


pytestmark = pytest.mark.usefixtures("one_thread")


def test_reference_size_is_about_2p2_million_parameters():
    n = parameters_of(lambda: PeriodicDimeNetPP(DimeNetPPConfig(), out_dim=256))
    assert n == pytest.approx(2.2e6, rel=0.15)


def test_invariant_to_permutation_translation_rotation_and_images(family_batch):
    batch = family_batch
    torch.manual_seed(0)
    model = PeriodicDimeNetPP(SMALL, out_dim=8).to(batch.frac_coords.dtype).eval()
    out = model(batch)
    assert out.shape == (batch.num_graphs, 8) and out.abs().max() > 1e-3
    assert_encoder_invariant(model, batch, seed=1)


def test_batch_equals_members_one_by_one(perovskites, carbons):
    torch.manual_seed(0)
    model = PeriodicDimeNetPP(SMALL, out_dim=8).double().eval()
    for structures, dataset in ((perovskites, "perov_5"), (carbons, "carbon_24")):
        data = CrystalDataset.from_structures(structures, dataset)
        batch = jittered_batch(structures, dataset, torch.float64)
        with torch.no_grad():
            together = model(batch)
            for i in range(len(structures)):
                alone = data.collate([i]).to("cpu", torch.float64)
                alone = alone.replace(frac_coords=batch.frac_coords[batch.batch == i])
                assert torch.allclose(model(alone)[0], together[i], atol=1e-12)


def test_zero_initialised_output_by_default(srtio3):
    model = PeriodicDimeNetPP(dataclasses.replace(SMALL, output_init="zeros"), out_dim=4)
    assert torch.equal(model(jittered_batch([srtio3], "perov_5")), torch.zeros(1, 4))


def test_gradients_reach_every_parameter(perovskites):
    torch.manual_seed(0)
    model = PeriodicDimeNetPP(SMALL, out_dim=8)
    model(jittered_batch(perovskites, "perov_5")).pow(2).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().max() > 0, name


def test_spherical_bessel_zeros_and_values_match_scipy():
    zeros = spherical_bessel_zeros(7, 6)
    for order in range(7):
        assert np.abs(scipy_jn(order, zeros[order])).max() < 1e-12
    assert np.all(np.diff(zeros, axis=1) > 0) and np.all(zeros[1:, 0] > zeros[:-1, 0])
    x = torch.linspace(1e-3, 30.0, 4001, dtype=torch.float64)
    for order in range(7):
        ref = torch.from_numpy(scipy_jn(order, x.numpy()))
        assert (spherical_jn(order, x) - ref).abs().max() < 1e-14
        # float32 keeps full precision at small arguments, where the closed forms cancel
        assert (spherical_jn(order, x.float()).double() - ref).abs().max() < 5e-7
        # both branches are evaluated; the one not taken must not poison the gradient
        xg = torch.tensor([1e-4, 0.5, float(order) - 1e-3, float(order) + 1e-3, 25.0],
                          dtype=torch.float64, requires_grad=True)
        spherical_jn(order, xg).sum().backward()
        assert torch.isfinite(xg.grad).all()


def test_dense_interaction_equals_torch_geometric_per_triplet_forward(perovskites):
    """The per-atom triplet sum reproduces torch-geometric's InteractionPPBlock run on an explicit
    triplet list with its own (sympy) spherical basis, given the same angles."""
    pytest.importorskip("sympy")
    from torch_geometric.nn.models.dimenet import InteractionPPBlock, SphericalBasisLayer

    from cdvae_core.geometry import edge_vectors
    from cdvae_core.nn.triplets import build_triplets

    cfg = dataclasses.replace(SMALL, num_spherical=4, num_radial=3)  # sympy is slow beyond
    batch = jittered_batch(perovskites, "perov_5", torch.float64)
    torch.manual_seed(0)
    model = PeriodicDimeNetPP(cfg, out_dim=8).double()
    vec = edge_vectors(
        batch.frac_coords, batch.lattice, batch.batch, batch.edge_index, batch.images
    )
    dist = vec.norm(dim=-1)
    trip = build_triplets(batch.edge_index, batch.images, batch.frac_coords.shape[0])
    idx_kj, idx_ji = trip.index()
    unit = vec / dist[:, None]
    angle = torch.acos((unit[idx_kj] * -unit[idx_ji]).sum(-1).clamp(-1.0, 1.0))
    sbf = SphericalBasisLayer(cfg.num_spherical, cfg.num_radial, cfg.cutoff).double()
    block = model.interaction_blocks[0]
    x = torch.randn(dist.shape[0], cfg.hidden, dtype=torch.float64)
    rbf = model.rbf(dist)
    ours = block(x, rbf, model.sbf(dist), trip.angular_basis(vec, cfg.num_spherical, True), trip)
    ref = InteractionPPBlock.forward(block, x, rbf, sbf(dist, angle, idx_kj), idx_kj, idx_ji)
    # torch-geometric's closed-form Bessel functions lose ~1e-7 relative to cancellation
    assert (ours - ref).abs().max() < 1e-5 * ref.abs().max()
