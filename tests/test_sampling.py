"""Annealed Langevin, decoding and latent optimisation, tested apart from any trained network."""

from __future__ import annotations

import pytest
import torch
from pymatgen.analysis.structure_matcher import StructureMatcher

from cdvae_core.geometry import frac_to_cart, min_image_frac_displacement
from cdvae_core.model.noise import geometric_sigmas
from cdvae_core.sampling import (
    LangevinConfig,
    SamplingError,
    annealed_langevin,
    optimize_latent,
    predicted_num_atoms,
    sample_composition,
    to_structures,
)

from conftest import cubic_srtio3, diamond_carbon


def _analytic_score(true_frac, lattice, batch, num_types=100, true_types=None):
    """Exact score of N(x | true, sigma^2) per atom (minimum image): (true - x) / sigma^2."""

    def score_fn(frac, types, level, sigmas):
        disp = frac_to_cart(min_image_frac_displacement(frac, true_frac, lattice, batch),
                            lattice, batch)
        sigma = float(sigmas[level])
        logits = torch.full((frac.shape[0], num_types), -10.0, dtype=frac.dtype)
        if true_types is not None:
            logits[torch.arange(frac.shape[0]), true_types - 1] = 10.0
        return disp / sigma**2, logits

    return score_fn


def _tiny_model(structures):
    """An untrained small Perov-5 CDVAE with scalers fitted on ``structures``."""
    from cdvae_core.data.dataset import CrystalDataset
    from cdvae_core.data.scaler import fit_scalers
    from cdvae_core.model.cdvae import CDVAE
    from cdvae_core.model.config import ModelConfig

    small = {"hidden": 16, "num_layers": 1, "num_rbf": 8}
    ds = CrystalDataset.from_structures(structures, "perov_5")
    torch.manual_seed(0)
    model = CDVAE(ModelConfig.for_dataset("perov_5", encoder=small, decoder=small, latent_dim=8,
                                          hidden_dim=16), fit_scalers(ds)).eval()
    return model, ds


def _fix_num_atoms_head(model, probs: dict[int, float]) -> None:
    """Make the number-of-atoms head say ``p(N) = probs[N]`` whatever z is."""
    last = model.fc_num_atoms[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(-1e4)
        last.bias[list(probs)] = torch.log(torch.tensor(list(probs.values())))


@pytest.mark.parametrize("make", [cubic_srtio3, diamond_carbon])
def test_langevin_on_a_perfect_score_recovers_the_structure(make):
    s = make()
    true = torch.tensor(s.frac_coords % 1.0)
    lat = torch.tensor(s.lattice.matrix)[None]
    batch = torch.zeros(len(s), dtype=torch.long)
    types = torch.tensor(s.atomic_numbers)
    sigmas = geometric_sigmas(10.0, 0.01, 50).double()
    fn = _analytic_score(true, lat, batch, true_types=types)
    gen = torch.Generator().manual_seed(0)
    start = torch.rand(true.shape, generator=gen, dtype=torch.float64)
    wrong_types = torch.full_like(types, 6 if types[0] != 6 else 8)
    res = annealed_langevin(lambda f, t, lv: fn(f, t, lv, sigmas), start, wrong_types, lat, batch,
                            sigmas, LangevinConfig(n_step_each=10), gen)
    (out,) = to_structures(res.frac_coords, res.atom_types, torch.tensor([len(s)]),
                           torch.tensor([s.lattice.abc]), torch.tensor([s.lattice.angles]))
    assert StructureMatcher().fit(out, s)
    err = frac_to_cart(min_image_frac_displacement(res.frac_coords, true, lat, batch), lat, batch)
    assert err.norm(dim=-1).max() < 0.1  # the last level's noise is 0.01 A per step


@pytest.mark.parametrize("make", [cubic_srtio3, diamond_carbon])
def test_pc_sampler_lands_on_the_structure_with_a_perfect_score(make):
    """With the exact score of a point-mass crystal, the final noise-free step (Tweedie:
    x + sigma_L^2 s(x)) is the posterior mean, i.e. the true sites, whatever the earlier noise."""
    s = make()
    true = torch.tensor(s.frac_coords % 1.0)
    lat = torch.tensor(s.lattice.matrix)[None]
    batch = torch.zeros(len(s), dtype=torch.long)
    sigmas = geometric_sigmas(10.0, 0.01, 30).double()
    fn = _analytic_score(true, lat, batch, true_types=torch.tensor(s.atomic_numbers))
    gen = torch.Generator().manual_seed(1)
    start = torch.rand(true.shape, generator=gen, dtype=torch.float64)
    for correctors in (0, 2):
        res = annealed_langevin(lambda f, t, lv: fn(f, t, lv, sigmas), start,
                                torch.tensor(s.atomic_numbers), lat, batch, sigmas,
                                LangevinConfig(n_step_each=correctors, scheme="pc"), gen)
        err = frac_to_cart(min_image_frac_displacement(res.frac_coords, true, lat, batch), lat,
                           batch)
        assert err.norm(dim=-1).max() < 1e-8


def test_pc_predictor_keeps_the_marginal_spread_at_each_noise_level():
    """Reverse diffusion on a point mass: started from N(mu, sigma_0^2), after the predictor
    step from level k the spread is sigma_{k+1} (exact in the limit of fine levels; the
    discretisation error here is below 1 %). 3,000 independent atoms in a 200 Å box, so the
    periodic images play no role."""
    n = 3000
    lat = torch.eye(3, dtype=torch.float64)[None] * 200.0
    batch = torch.zeros(n, dtype=torch.long)
    centre = torch.full((n, 3), 0.5, dtype=torch.float64)
    sigmas = geometric_sigmas(2.0, 0.2, 100).double()
    fn = _analytic_score(centre, lat, batch)
    gen = torch.Generator().manual_seed(0)
    start = centre + float(sigmas[0]) * torch.randn(n, 3, generator=gen, dtype=torch.float64) / 200
    res = annealed_langevin(lambda f, t, lv: fn(f, t, lv, sigmas), start,
                            torch.ones(n, dtype=torch.long), lat, batch, sigmas,
                            LangevinConfig(n_step_each=0, scheme="pc", save_every=1,
                                           update_types=False), gen)
    assert len(res.frames) == 100  # one score evaluation per level
    for frame in res.frames[9:-1:10]:  # after the predictor from level k: sigma_{k+1}
        spread = ((frame.frac_coords - 0.5) * 200).std()
        assert float(spread) == pytest.approx(float(sigmas[frame.level + 1]), rel=0.04)
    # the last step is noise-free: every atom on the centre
    torch.testing.assert_close(res.frac_coords, centre)


def test_score_evaluations_counts_the_calls():
    from cdvae_core.sampling import score_evaluations

    sigmas = geometric_sigmas(10.0, 0.01, 50)
    assert score_evaluations(sigmas, LangevinConfig(n_step_each=100)) == 5000
    assert score_evaluations(sigmas, LangevinConfig(n_step_each=4, scheme="pc")) == 250
    assert score_evaluations(sigmas, LangevinConfig(n_step_each=0, scheme="pc")) == 50
    # the presets' costs as documented (README, presets.py): the defaults fit the budget of
    # 10,000 Perov-5 crystals in about 30 minutes on 2 cores (250 calls)
    from cdvae_core.sampling import PRESETS

    costs = {name: score_evaluations(sigmas, cfg) for name, cfg in PRESETS.items()}
    assert costs == {"paper": 5000, "thorough": 1000, "fast": 250, "interactive": 250}


def test_langevin_is_reproducible_and_saves_frames():
    s = cubic_srtio3()
    true = torch.tensor(s.frac_coords)
    lat = torch.tensor(s.lattice.matrix)[None]
    batch = torch.zeros(5, dtype=torch.long)
    sigmas = geometric_sigmas(10.0, 0.01, 10).double()
    fn = _analytic_score(true, lat, batch)
    cfg = LangevinConfig(n_step_each=3, save_every=5)
    runs = []
    for _ in range(2):
        gen = torch.Generator().manual_seed(42)
        start = torch.rand(true.shape, generator=gen, dtype=torch.float64)
        runs.append(annealed_langevin(lambda f, t, lv: fn(f, t, lv, sigmas), start,
                                      torch.tensor(s.atomic_numbers), lat, batch, sigmas, cfg, gen))
    torch.testing.assert_close(runs[0].frac_coords, runs[1].frac_coords)
    frames = runs[0].frames
    assert [f.step for f in frames] == [1, 5, 10, 15, 20, 25, 30]
    assert frames[0].sigma == pytest.approx(10.0) and frames[-1].level == 9
    assert frames[0].type_probs.shape == (5, 100) and frames[0].score_norm.shape == (5,)
    for f in frames:
        assert (f.frac_coords >= 0).all() and (f.frac_coords < 1).all()


def test_langevin_stops_with_a_clear_error_on_nan():
    lat = torch.eye(3, dtype=torch.float64)[None] * 4
    batch = torch.zeros(2, dtype=torch.long)

    def bad(frac, types, level):
        return torch.full_like(frac, float("nan")), torch.zeros(2, 100, dtype=frac.dtype)

    with pytest.raises(SamplingError, match="non-finite coordinates at level 0"):
        annealed_langevin(bad, torch.rand(2, 3, dtype=torch.float64), torch.ones(2, dtype=torch.long),
                          lat, batch, geometric_sigmas(1, 0.1, 3).double())


def test_langevin_config_rejects_absurd_settings():
    for kw in ({"n_step_each": 0}, {"step_lr": -1.0}, {"step_lr": float("nan")},
               {"level_stride": 0}, {"save_every": 0}, {"scheme": "ddim"},
               {"scheme": "pc", "n_step_each": -1}, {"num_levels": 1}, {"num_atoms": "mean"}):
        with pytest.raises(ValueError):
            LangevinConfig(**kw)


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


def test_decode_with_forced_atoms_and_types_keeps_them():
    from cdvae_core.sampling import decode, reconstruct

    from conftest import rocksalt_nacl

    model, ds = _tiny_model([cubic_srtio3(), rocksalt_nacl()])
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
    res = decode(model, z, LangevinConfig(n_step_each=1, scheme="pc", num_levels=7, save_every=1),
                 torch.Generator().manual_seed(0))
    assert len(res.frames) == 14
    sig = sorted({f.sigma for f in res.frames}, reverse=True)
    assert len(sig) == 7
    assert sig[0] == pytest.approx(float(model.sigmas[0]), rel=1e-5)
    assert sig[-1] == pytest.approx(float(model.sigmas[-1]), rel=1e-5)
    # the sampler's num_atoms setting reaches decode: a head fixed at p(2, 3, 4) = 0.6, 0.2, 0.2
    _fix_num_atoms_head(model, {2: 0.6, 3: 0.2, 4: 0.2})
    z = torch.randn(40, 8)
    for how, sizes in (("argmax", {2}), ("sample", {2, 3, 4})):
        res = decode(model, z, LangevinConfig(n_step_each=1, level_stride=50, num_atoms=how),
                     torch.Generator().manual_seed(0))
        assert set(res.num_atoms.tolist()) == sizes, how


def test_reconstruction_takes_the_most_likely_number_of_atoms():
    from cdvae_core.sampling import reconstruct

    model, ds = _tiny_model([cubic_srtio3()] * 6)
    _fix_num_atoms_head(model, {3: 0.4, 4: 0.3, 5: 0.3})
    out = reconstruct(model, ds, LangevinConfig(n_step_each=1, level_stride=50,
                                                num_atoms="sample"), progress=False)
    assert [len(s) for s in out] == [3] * 6
