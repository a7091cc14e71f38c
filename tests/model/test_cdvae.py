"""The CDVAE model: symmetries (through cdvae_core.testing), batching, losses, checkpoints."""

from __future__ import annotations

import pytest
import torch

from cdvae_core.data.dataset import CrystalDataset
from cdvae_core.data.scaler import fit_scalers
from cdvae_core.diffusion.noise import geometric_sigmas, perturb_coords
from cdvae_core.model.cdvae import CDVAE
from cdvae_core.model.checkpoint import CheckpointError, load_model, save_model
from cdvae_core.model.config import ModelConfig
from cdvae_core.testing import (
    assert_decoder_equivariant,
    assert_encoder_invariant,
    jitter_batch,
)

from conftest import cubic_srtio3, diamond_carbon, rocksalt_nacl

SMALL = {"hidden": 32, "num_layers": 2, "num_rbf": 16}


def _dataset() -> CrystalDataset:
    s1 = cubic_srtio3()
    s2 = rocksalt_nacl()
    s3 = diamond_carbon()
    s4 = cubic_srtio3(4.1)
    s4.perturb(0.1, min_distance=0.05)
    return CrystalDataset.from_structures([s1, s2, s3, s4], "carbon_24", props=[0.1, 0.2, 0.3, 0.4])


def _model(arch: str = "fast", **kw) -> CDVAE:
    torch.manual_seed(0)
    cfg = ModelConfig.for_dataset("carbon_24", architecture=arch, encoder=SMALL, decoder=SMALL,
                                  latent_dim=16, hidden_dim=32, **kw)
    return CDVAE(cfg, fit_scalers(_dataset()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fast_encoder_and_latent_heads_are_invariant(dtype):
    model = _model().to(dtype)
    batch = jitter_batch(_dataset().collate([0, 1, 2, 3]).to("cpu", dtype),
                         torch.Generator().manual_seed(0))

    def latent_part(b):
        mu, log_var, _ = model.encode(b)
        _, lengths, angles = model.predict_lattice(mu, b.num_atoms)
        return torch.cat([mu, log_var, model.predict_num_atoms(mu), lengths, angles,
                          model.predict_property(mu)[:, None]], dim=-1)

    assert_encoder_invariant(model.encoder, batch)
    assert_encoder_invariant(latent_part, batch)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fast_decoder_is_equivariant(dtype):
    model = _model().to(dtype)
    batch = jitter_batch(_dataset().collate([0, 1, 2, 3]).to("cpu", dtype),
                         torch.Generator().manual_seed(1))
    z = torch.randn(4, 16, dtype=dtype, generator=torch.Generator().manual_seed(2))
    assert_decoder_equivariant(model.decoder, z, batch)


def test_checker_catches_a_broken_network():
    """The checker must fail for a decoder that uses absolute Cartesian positions."""
    model = _model().double()
    batch = jitter_batch(_dataset().collate([0, 1]).to("cpu", torch.float64),
                         torch.Generator().manual_seed(0))

    def broken(z, frac, types, num_atoms, lattice, b):
        out, logits = model.decoder(z, frac, types, num_atoms, lattice, b)
        return out + torch.einsum("ni,nij->nj", frac, lattice[b]), logits

    z = torch.randn(2, 16, dtype=torch.float64)
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_decoder_equivariant(broken, z, batch)


def test_batch_equals_members_one_by_one():
    model = _model().double().eval()
    ds = _dataset()
    batch = jitter_batch(ds.collate([0, 1, 2, 3]).to("cpu", torch.float64),
                         torch.Generator().manual_seed(3))
    z = torch.randn(4, 16, dtype=torch.float64)
    mu_all, _, _ = model.encode(batch)
    out_all, logits_all = model.decoder(z, batch.frac_coords, batch.atom_types, batch.num_atoms,
                                        batch.lattice, batch.batch)
    start = 0
    for i in range(4):
        n = int(batch.num_atoms[i])
        sl = slice(start, start + n)
        one = ds.collate([i]).to("cpu", torch.float64).replace(frac_coords=batch.frac_coords[sl])
        mu, _, _ = model.encode(one)
        torch.testing.assert_close(mu[0], mu_all[i])
        out, logits = model.decoder(z[i : i + 1], one.frac_coords, one.atom_types, one.num_atoms,
                                    one.lattice, one.batch)
        torch.testing.assert_close(out, out_all[sl])
        torch.testing.assert_close(logits, logits_all[sl])
        start += n


def test_losses_are_finite_and_weighted_as_configured():
    model = _model()
    out = model(_dataset().collate([0, 1, 2, 3]), generator=torch.Generator().manual_seed(0))
    w = model.cfg.loss
    expected = (w.num_atoms * out["num_atoms_loss"] + w.lattice * out["lattice_loss"]
                + w.coord * out["coord_loss"] + w.type * out["type_loss"]
                + w.composition * out["composition_loss"] + w.kl * out["kl_loss"]
                + w.property * out["property_loss"])
    torch.testing.assert_close(out["loss"], expected)
    assert all(torch.isfinite(v) for v in out.values())
    assert model.cfg.loss.kl == 0.03  # Carbon-24's KL weight
    out["loss"].backward()
    assert all(p.grad is not None for p in model.decoder.parameters() if p.requires_grad)


def test_noise_schedule_is_geometric():
    s = geometric_sigmas(10.0, 0.01, 50)
    assert s[0].item() == pytest.approx(10.0) and s[-1].item() == pytest.approx(0.01)
    ratios = s[:-1] / s[1:]
    torch.testing.assert_close(ratios, torch.full_like(ratios, ratios[0].item()))


def test_coordinate_noise_has_the_requested_spread():
    ds = _dataset()
    b = ds.collate([0] * 400).to("cpu", torch.float64)
    lat = b.lattice
    sigma = torch.full((b.frac_coords.shape[0],), 0.05, dtype=torch.float64)
    noisy = perturb_coords(b.frac_coords, lat, b.batch, sigma, torch.Generator().manual_seed(0))
    from cdvae_core.geometry import min_image_cart_displacement

    d = min_image_cart_displacement(b.frac_coords, noisy, lat, b.batch)
    assert d.std().item() == pytest.approx(0.05, rel=0.05)
    assert (noisy >= 0).all() and (noisy < 1).all()


def test_teacher_forcing_switch_changes_the_decoder_lattice():
    model = _model()
    b = _dataset().collate([0, 1])
    seen = []
    orig = model.decoder.forward

    def spy(z, frac, types, num_atoms, lattice, batch):
        seen.append(lattice.detach().clone())
        return orig(z, frac, types, num_atoms, lattice, batch)

    model.decoder.forward = spy
    model(b, teacher_forcing=True)
    model(b, teacher_forcing=False)
    torch.testing.assert_close(seen[0], b.lattice)
    assert not torch.allclose(seen[1], b.lattice)


def test_an_impossible_predicted_cell_does_not_stop_training():
    """Without teacher forcing the decoder sees the predicted cell. Angles of 10, 10 and 170
    degrees (and a negative length) describe no cell; the forward pass must still give finite
    losses and gradients (it used to stop a Carbon-24 run with a singular-matrix error)."""
    model = _model()
    b = _dataset().collate([0, 1, 2])
    with torch.no_grad():
        model.fc_lattice[-1].weight.zero_()
        raw = torch.tensor([-50.0, 1.0, 1.0, 10.0, 10.0, 170.0])
        model.fc_lattice[-1].bias.copy_((raw - model.lattice_mean) / model.lattice_std)
    out = model(b, teacher_forcing=False)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_config_roundtrip_and_unknown_fields():
    cfg = ModelConfig.for_dataset("perov_5", architecture="fast", encoder={"hidden": 64})
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown ModelConfig field"):
        ModelConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="unknown architecture"):
        CDVAE(cfg.replace(architecture="transformer"))


def test_save_load_roundtrip(tmp_path):
    model = _model().eval()
    path = tmp_path / "model.pt"
    save_model(model, path, {"dataset": "carbon_24"}, {"epochs": 1})
    loaded, info = load_model(path, with_info=True)
    assert info["split_policy"] == {"dataset": "carbon_24"}
    b = _dataset().collate([0, 1])
    torch.testing.assert_close(loaded.encode(b)[0], model.encode(b)[0])
    torch.testing.assert_close(loaded.lattice_mean, model.lattice_mean)
    # the file loads with the safe loader alone
    torch.load(path, weights_only=True)


def test_corrupt_and_foreign_checkpoints_give_clear_errors(tmp_path):
    model = _model()
    good = tmp_path / "model.pt"
    save_model(model, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt|truncated"):
        load_model(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not a cdvae_core checkpoint"):
        load_model(foreign)
    pickle = tmp_path / "pickle.pt"
    torch.save({"format": "cdvae_core.model", "evil": object()}, pickle)
    with pytest.raises(CheckpointError, match="safe"):
        load_model(pickle)
    mismatched = tmp_path / "mismatch.pt"
    obj = torch.load(good, weights_only=True)
    obj["config"]["latent_dim"] = 8
    torch.save(obj, mismatched)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(mismatched)
    with pytest.raises(CheckpointError, match="no such"):
        load_model(tmp_path / "missing.pt")
