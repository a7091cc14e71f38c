"""The denoising page sampler form: its limits and its frame budget."""

from __future__ import annotations

import sys

import pytest
import torch

from cdvae_core.diffusion.langevin import score_evaluations

from helpers import REPO, small_model

sys.path.insert(0, str(REPO / "app"))
from components.sampler_form import sampler_config  # noqa: E402

SMALL = {"hidden": 16, "num_layers": 1, "num_rbf": 8}


@pytest.fixture(scope="module")
def model():
    return small_model()


def test_sampler_config_limits_and_frames(model):
    cfg = sampler_config(model.sigmas, 5, 1e-4, 60)
    steps = score_evaluations(model.sigmas, cfg)
    assert steps == 250 and cfg.n_step_each == 5
    frames = 1 + steps // cfg.save_every  # step 1 and every save_every-th step
    assert 45 <= frames <= 75
    assert steps % cfg.save_every == 0  # the last frame is the final structure
    pc = sampler_config(model.sigmas, 4, 4e-4, 60, scheme="pc")
    assert score_evaluations(model.sigmas, pc) == 250 and pc.scheme == "pc"  # 4 + 1 per level
    assert sampler_config(model.sigmas, 0, 1e-4, 10, scheme="pc").n_step_each == 0
    strided = sampler_config(model.sigmas, 2, 1e-4, 10, level_stride=10)
    assert score_evaluations(model.sigmas, strided) == 2 * 6  # 0, 10, .., 40 and the last level
    for bad, word in [((0, 1e-4, 10), "steps per level"), ((5, 0.0, 10), "step size"),
                      ((5, float("nan"), 10), "step size"), ((5, 1e-4, 1), "frames kept"),
                      ((201, 1e-4, 10), "steps per level")]:
        with pytest.raises(ValueError, match=word):
            sampler_config(model.sigmas, *bad)
    many_levels = torch.logspace(1, -2, 200)  # 200 levels x 200 steps: over the total limit
    with pytest.raises(ValueError, match="interactive limit"):
        sampler_config(many_levels, 200, 1e-4, 10)
    prime = torch.logspace(1, -2, 53)  # 53 steps: no divisor near 10 frames, every 6th step
    assert sampler_config(prime, 1, 1e-4, 10).save_every == 6
    with pytest.raises(ValueError, match="noise scale"):
        sampler_config(model.sigmas, 5, 1e-4, 10, noise_scale=-1)
