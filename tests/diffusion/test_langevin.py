"""Annealed Langevin and predictor-corrector loops on known scores (no network), and their presets."""

from __future__ import annotations

import pytest
import torch
from pymatgen.analysis.structure_matcher import StructureMatcher

from cdvae_core.diffusion.langevin import (
    LangevinConfig,
    SamplingError,
    annealed_langevin,
    score_evaluations,
)
from cdvae_core.diffusion.noise import geometric_sigmas
from cdvae_core.diffusion.presets import PRESETS
from cdvae_core.geometry import frac_to_cart, min_image_frac_displacement
from cdvae_core.model.decode import (
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
    sigmas = geometric_sigmas(10.0, 0.01, 50)
    assert score_evaluations(sigmas, LangevinConfig(n_step_each=100)) == 5000
    assert score_evaluations(sigmas, LangevinConfig(n_step_each=4, scheme="pc")) == 250
    assert score_evaluations(sigmas, LangevinConfig(n_step_each=0, scheme="pc")) == 50
    # the presets' costs as documented (README, presets.py): the defaults fit the budget of
    # 10,000 Perov-5 crystals in about 30 minutes on 2 cores (250 calls)
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

    with pytest.raises(SamplingError,
                       match="non-finite coordinates at noise level 0 .*Langevin step 1,"):
        annealed_langevin(bad, torch.rand(2, 3, dtype=torch.float64), torch.ones(2, dtype=torch.long),
                          lat, batch, geometric_sigmas(1, 0.1, 3).double())


def test_langevin_config_rejects_absurd_settings():
    for kw in ({"n_step_each": 0}, {"step_lr": -1.0}, {"step_lr": float("nan")},
               {"level_stride": 0}, {"save_every": 0}, {"scheme": "ddim"},
               {"scheme": "pc", "n_step_each": -1}):
        with pytest.raises(ValueError):
            LangevinConfig(**kw)


def test_a_crystal_whose_score_breaks_is_set_aside_and_the_others_go_on():
    # two one-atom crystals in a 4 Å cube; the score of crystal 1 turns to NaN from level 1 on
    lat = (torch.eye(3, dtype=torch.float64) * 4).expand(2, 3, 3)
    batch = torch.tensor([0, 1])
    sigmas = geometric_sigmas(1, 0.1, 4).double()
    cfg = LangevinConfig(n_step_each=3, save_every=1)
    start = torch.tensor([[0.1, 0.2, 0.3], [0.6, 0.5, 0.4]], dtype=torch.float64)
    types = torch.ones(2, dtype=torch.long)

    def good(frac, types, level):
        return -frac_to_cart(frac - 0.5, lat, batch), torch.zeros(2, 100, dtype=frac.dtype)

    def breaks(frac, types, level):
        score, logits = good(frac, types, level)
        if level >= 1:
            score = score.clone()
            score[1] = float("nan")
        return score, logits

    clean = annealed_langevin(good, start, types, lat, batch, sigmas, cfg,
                              torch.Generator().manual_seed(0))
    run = annealed_langevin(breaks, start, types, lat, batch, sigmas, cfg,
                            torch.Generator().manual_seed(0), on_nonfinite="drop")
    assert run.failed.tolist() == [False, True]
    assert list(run.failures) == [1] and "noise level 1 " in run.failures[1]
    assert "Langevin step 4" in run.failures[1]  # 3 steps per level: the first of level 1
    # crystal 0 ran exactly as without the failure; crystal 1 stayed where level 0 left it
    torch.testing.assert_close(run.frac_coords[0], clean.frac_coords[0], rtol=0, atol=0)
    after_level_0 = [f for f in clean.frames if f.level == 0][-1].frac_coords[1]
    torch.testing.assert_close(run.frac_coords[1], after_level_0, rtol=0, atol=0)
    assert torch.isfinite(run.frac_coords).all()
    with pytest.raises(SamplingError, match="noise level 1 .*crystals \\[1\\]"):
        annealed_langevin(breaks, start, types, lat, batch, sigmas, cfg,
                          torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="on_nonfinite"):
        annealed_langevin(good, start, types, lat, batch, sigmas, cfg, on_nonfinite="ignore")


def test_broken_type_probabilities_set_a_crystal_aside_in_a_predictor_step_and_freeze_its_types():
    # predictor-corrector with no corrector steps: every step is a predictor step. Crystal 0's
    # type logits turn to NaN at level 2; its atom types stay what level 1 made them
    lat = (torch.eye(3, dtype=torch.float64) * 4).expand(2, 3, 3)
    batch = torch.tensor([0, 0, 1])
    sigmas = geometric_sigmas(1, 0.1, 5).double()
    cfg = LangevinConfig(n_step_each=0, scheme="pc", save_every=1)
    calls = []

    def fn(frac, types, level):
        calls.append(level)
        logits = torch.zeros(3, 100, dtype=frac.dtype)
        logits[:, 7 + level] = 1.0  # argmax: element 8 + level
        if level >= 2:
            logits[:2] = float("nan")
        return -frac_to_cart(frac - 0.5, lat, batch), logits

    run = annealed_langevin(fn, torch.rand(3, 3, dtype=torch.float64),
                            torch.ones(3, dtype=torch.long), lat, batch, sigmas, cfg,
                            torch.Generator().manual_seed(0), on_nonfinite="drop")
    assert run.failed.tolist() == [True, False]
    assert "non-finite atom-type probabilities at noise level 2" in run.failures[0]
    assert run.atom_types.tolist() == [9, 9, 12]  # frozen after level 1; the other went on
    assert calls == [0, 1, 2, 3, 4]


def test_a_run_whose_every_crystal_is_set_aside_stops_early():
    lat = torch.eye(3, dtype=torch.float64)[None] * 4
    calls = []

    def bad(frac, types, level):
        calls.append(level)
        return torch.full_like(frac, float("inf")), torch.zeros(2, 100, dtype=frac.dtype)

    run = annealed_langevin(bad, torch.rand(2, 3, dtype=torch.float64),
                            torch.ones(2, dtype=torch.long), lat, torch.zeros(2, dtype=torch.long),
                            geometric_sigmas(1, 0.1, 10).double(), LangevinConfig(n_step_each=50),
                            on_nonfinite="drop")
    assert run.failed.tolist() == [True] and len(calls) == 1
