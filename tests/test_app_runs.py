"""The app's decode wrapper: its progress bar counts the steps the run really takes."""

from __future__ import annotations

import sys

import pytest
import torch

from cdvae_core.diffusion.langevin import LangevinConfig
from cdvae_core.model.decode import DecodeConfig

from conftest import cubic_srtio3
from helpers import REPO, tiny_model

sys.path.insert(0, str(REPO / "app"))
from components import runs  # noqa: E402


class _Bar:
    def __init__(self, texts):
        self.texts = texts

    def progress(self, value, text=""):
        self.texts.append((value, text))

    def empty(self):
        pass


@pytest.mark.parametrize("num_levels", [None, 3, 17])
def test_progress_counts_the_steps_of_a_resampled_schedule(num_levels, monkeypatch):
    model, _ = tiny_model([cubic_srtio3()])
    texts: list = []
    monkeypatch.setattr(runs.st, "progress", lambda value, text="": _Bar(texts))
    cfg = DecodeConfig(LangevinConfig(n_step_each=1, save_every=1), num_levels=num_levels)
    result = runs.run_decode(model, torch.zeros(1, model.cfg.latent_dim), cfg, seed=0)
    levels = num_levels or model.sigmas.shape[0]
    assert result.frames[-1].step == levels
    value, text = texts[-1]
    assert f"step {levels}/{levels}," in text and value == 1.0
