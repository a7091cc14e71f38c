"""Decoding latent vectors with a CDVAE: composition, number of atoms, forced atoms, schedules."""

from __future__ import annotations

import pytest
import torch

from cdvae_core.diffusion.langevin import (
    LangevinConfig,
)
from cdvae_core.diffusion.presets import PRESETS
from cdvae_core.model.decode import (
    DecodeConfig,
    decode,
    predicted_num_atoms,
    reconstruct,
    sample_composition,
)

from conftest import cubic_srtio3
from helpers import tiny_model


def _fix_num_atoms_head(model, probs: dict[int, float]) -> None:
    """Make the number-of-atoms head say ``p(N) = probs[N]`` whatever z is."""
    last = model.fc_num_atoms[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(-1e4)
        last.bias[list(probs)] = torch.log(torch.tensor(list(probs.values())))


def test_sample_composition_matches_the_predicted_composition():
    probs = torch.zeros(2, 100)
    probs[0, [37, 21, 7]] = torch.tensor([0.2, 0.2, 0.6])  # Sr Ti O3 -> 1, 1, 3 of 5
    probs[1, 5] = 1.0  # pure carbon
    types = sample_composition(probs, torch.tensor([5, 8]), torch.Generator().manual_seed(0))
    first = sorted(types[:5].tolist())
    assert first == [8, 8, 8, 22, 38]
    assert types[5:].tolist() == [6] * 8
    # leftover atoms are drawn from the leftover probability
    probs = torch.zeros(1, 100)
    probs[0, [0, 1]] = torch.tensor([0.5, 0.5])
    types = sample_composition(probs, torch.tensor([3]), torch.Generator().manual_seed(0))
    assert len(types) == 3 and set(types.tolist()) <= {1, 2}


def test_number_of_atoms_is_the_mode_or_a_draw_from_the_head():
    # every crystal's head says p(N) = 0.5 at 6 atoms, 0.3 at 8, 0.2 at 14, plus a logit for
    # 0 atoms (which no crystal may have) nearly as large as the mode's
    p = torch.zeros(21)
    p[[6, 8, 14]] = torch.tensor([0.5, 0.3, 0.2])
    logits = torch.log(p).clamp(min=-1e4).expand(20000, 21).clone()
    logits[:, 0] = logits[:, 6] - 0.1
    mode = predicted_num_atoms(logits, "argmax")
    assert set(mode.tolist()) == {6}  # the mode never gives the rarer sizes
    drawn = predicted_num_atoms(logits, "sample", torch.Generator().manual_seed(0))
    freq = torch.bincount(drawn, minlength=21).double() / len(drawn)
    assert freq[0] == 0 and freq[[6, 8, 14]].sum() == 1
    # the 0-atom class removed, the rest renormalised: 0.5, 0.3, 0.2 (binomial se <= 0.0036)
    torch.testing.assert_close(freq[[6, 8, 14]], torch.tensor([0.5, 0.3, 0.2]).double(),
                               atol=0.015, rtol=0)
    again = predicted_num_atoms(logits, "sample", torch.Generator().manual_seed(0))
    assert torch.equal(drawn, again)
    # a head whose mode is 0 atoms still yields a crystal
    assert predicted_num_atoms(torch.tensor([[5.0, 1.0, 0.0]]), "argmax").tolist() == [1]


def test_decode_with_forced_atoms_and_types_keeps_them():
    from conftest import rocksalt_nacl

    model, ds = tiny_model([cubic_srtio3(), rocksalt_nacl()])
    out = reconstruct(model, ds, LangevinConfig(n_step_each=1), force_atom_types=True,
                      progress=False)
    for pred, true in zip(out, ds.structures(), strict=True):
        assert pred.composition == true.composition
    # frames: every saved frame carries the whole batch
    z = torch.randn(3, 8)
    res = decode(model, z, LangevinConfig(n_step_each=2, save_every=10),
                 torch.Generator().manual_seed(0), num_atoms=torch.tensor([2, 3, 4]))
    assert res.num_atoms.tolist() == [2, 3, 4]
    assert all(f.frac_coords.shape == (9, 3) for f in res.frames)
    assert len(res.structures()) == 3
    # a resampled schedule spans the model's range with the number of levels asked for
    res = decode(model, z, DecodeConfig(LangevinConfig(n_step_each=1, scheme="pc", save_every=1),
                                        num_levels=7), torch.Generator().manual_seed(0))
    assert len(res.frames) == 14
    sig = sorted({f.sigma for f in res.frames}, reverse=True)
    assert len(sig) == 7
    assert sig[0] == pytest.approx(float(model.sigmas[0]), rel=1e-5)
    assert sig[-1] == pytest.approx(float(model.sigmas[-1]), rel=1e-5)
    # the sampler's num_atoms setting reaches decode: a head fixed at p(2, 3, 4) = 0.6, 0.2, 0.2
    _fix_num_atoms_head(model, {2: 0.6, 3: 0.2, 4: 0.2})
    z = torch.randn(40, 8)
    for how, sizes in (("argmax", {2}), ("sample", {2, 3, 4})):
        res = decode(model, z, DecodeConfig(LangevinConfig(n_step_each=1, level_stride=50),
                                            num_atoms=how), torch.Generator().manual_seed(0))
        assert set(res.num_atoms.tolist()) == sizes, how


def test_reconstruction_takes_the_most_likely_number_of_atoms():
    model, ds = tiny_model([cubic_srtio3()] * 6)
    _fix_num_atoms_head(model, {3: 0.4, 4: 0.3, 5: 0.3})
    out = reconstruct(model, ds, DecodeConfig(LangevinConfig(n_step_each=1, level_stride=50),
                                              num_atoms="sample"), progress=False)
    assert [len(s) for s in out] == [3] * 6


def test_decode_config_rejects_absurd_options_and_round_trips_a_run_record():
    for kw in ({"num_levels": 1}, {"num_atoms": "mean"}):
        with pytest.raises(ValueError):
            DecodeConfig(**kw)
    cfg = DecodeConfig(PRESETS["fast"], num_levels=20, num_atoms="sample")
    record = cfg.to_dict()
    # the keys of a run's settings.json sampler block, as written before the split
    assert list(record) == ["n_step_each", "step_lr", "min_sigma", "level_stride", "noise_scale",
                            "update_types", "save_every", "scheme", "num_levels", "num_atoms"]
    assert DecodeConfig.from_dict(record) == cfg
    assert DecodeConfig.of(PRESETS["fast"]) == DecodeConfig(PRESETS["fast"])


def test_decode_steps_counts_the_levels_a_run_walks():
    from cdvae_core.model.decode import decode_steps

    model, _ = tiny_model([cubic_srtio3()])
    loop = LangevinConfig(n_step_each=2, scheme="pc")
    assert decode_steps(model, loop) == 3 * model.sigmas.shape[0]
    assert decode_steps(model, DecodeConfig(loop, num_levels=7)) == 3 * 7


def test_a_batch_run_counts_a_broken_decode_as_invalid_and_keeps_the_others(monkeypatch):
    # the score of the second crystal of every batch overflows: generation and reconstruction
    # report it as a failed decode (None, with a warning naming it) instead of ending the run
    from cdvae_core.model.decode import generate

    from conftest import rocksalt_nacl

    model, ds = tiny_model([cubic_srtio3(), rocksalt_nacl(), cubic_srtio3()])
    original = model.decode_scores

    def overflowing(z, frac, types, num_atoms, lattice, batch, sigma):
        score, logits = original(z, frac, types, num_atoms, lattice, batch, sigma)
        return torch.where((batch == 1)[:, None], torch.inf, score), logits

    monkeypatch.setattr(model, "decode_scores", overflowing)
    cfg = LangevinConfig(n_step_each=1, level_stride=10)
    with pytest.warns(RuntimeWarning, match="sample 1: decoding failed .*invalid sample"):
        out = generate(model, 3, cfg, progress=False)
    assert out[1] is None and out[0] is not None and out[2] is not None
    with pytest.warns(RuntimeWarning, match=f"crystal {ds.material_ids[1]}: decoding failed"):
        out = reconstruct(model, ds, cfg, progress=False)
    assert [s is None for s in out] == [False, True, False]
    # a single decode asked for directly still stops with the reason
    from cdvae_core.diffusion.langevin import SamplingError

    with pytest.raises(SamplingError, match="crystals \\[1\\]"):
        decode(model, torch.zeros(2, 8), cfg)
