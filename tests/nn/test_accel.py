"""torch.compile of the trunks: same numbers and same checkpoint keys as eager; clear refusals."""

from __future__ import annotations

import pytest
import torch

from cdvae_core.model.cdvae import CDVAE
from cdvae_core.model.config import ModelConfig
from cdvae_core.nn import accel
from cdvae_core.nn.accel import can_compile, compile_model

from conftest import jittered_batch

SMALL = {"hidden": 32, "num_layers": 2, "num_rbf": 16}


def _model(arch: str = "fast") -> CDVAE:
    torch.manual_seed(0)
    kw = {"encoder": SMALL, "decoder": SMALL} if arch == "fast" else {}
    return CDVAE(ModelConfig.for_dataset("perov_5", architecture=arch, latent_dim=16,
                                         hidden_dim=32, **kw)).eval()


def test_off_and_bad_modes():
    model = _model()
    assert compile_model(model, "off") == []
    with pytest.raises(ValueError, match="compile mode 'fast'"):
        compile_model(model, "fast")


def test_on_without_a_compiler_says_why(monkeypatch):
    monkeypatch.setattr(accel.shutil, "which", lambda name: None)
    ok, why = can_compile("cpu")
    assert not ok and "C++ compiler" in why
    model = _model()
    with pytest.raises(RuntimeError, match="C\\+\\+ compiler"):
        compile_model(model, "on")
    assert compile_model(model, "auto") == []  # auto falls back to eager


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["fast", "paper"])
def test_compiled_trunks_give_the_eager_numbers_and_keep_checkpoint_keys(perovskites, arch):
    if not can_compile("cpu")[0]:
        pytest.skip(can_compile("cpu")[1])
    batch = jittered_batch(perovskites * 3, "perov_5")
    eager, compiled = _model(arch), _model(arch)
    keys = list(compiled.state_dict())
    names = compile_model(compiled, "on")
    if arch == "fast":
        assert sorted(names) == ["decoder.trunk", "encoder.trunk"]
    else:  # every interaction block of DimeNet++, interaction and output block of GemNet-T
        assert len([n for n in names if n.startswith("encoder.interaction_blocks")]) == 4
        assert len([n for n in names if n.startswith("decoder.")]) == 7
    assert list(compiled.state_dict()) == keys
    z = torch.randn(batch.num_graphs, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        args = (z, batch.frac_coords, batch.atom_types, batch.num_atoms, batch.lattice,
                batch.batch)
        ref, ref_logits = eager.decoder(*args)
        out, logits = compiled.decoder(*args)
        mu_ref, mu = eager.encode(batch)[0], compiled.encode(batch)[0]
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(logits, ref_logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(mu, mu_ref, atol=1e-4, rtol=1e-4)
    # a batch of another size reuses the dynamic-shape kernels and still agrees
    small = jittered_batch(perovskites, "perov_5", seed=3)
    with torch.no_grad():
        a = eager.decoder(z[:2], small.frac_coords, small.atom_types, small.num_atoms,
                          small.lattice, small.batch)[0]
        b = compiled.decoder(z[:2], small.frac_coords, small.atom_types, small.num_atoms,
                             small.lattice, small.batch)[0]
    torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)
