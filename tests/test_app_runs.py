"""The app's decode wrapper: its progress bar counts the steps the run really takes, and a
crystal that cannot be decoded is named, never a traceback."""

from __future__ import annotations

import sys

import pytest
import torch

from cdvae_core.diffusion.langevin import LangevinConfig
from cdvae_core.model.decode import DecodeConfig

from conftest import cubic_srtio3
from helpers import REPO, tiny_model

APP = str(REPO / "app")
sys.path.insert(0, APP)
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


def _overflow_crystals(model, monkeypatch, bad):
    """Make the score of the crystals numbered ``bad`` (within a batch) overflow."""
    original = model.decode_scores

    def overflowing(z, frac, types, num_atoms, lattice, batch, sigma):
        score, logits = original(z, frac, types, num_atoms, lattice, batch, sigma)
        hit = torch.isin(batch, torch.tensor(bad))
        return torch.where(hit[:, None], torch.inf, score), logits

    monkeypatch.setattr(model, "decode_scores", overflowing)


def test_a_crystal_that_cannot_be_decoded_is_named_and_the_rest_are_kept(monkeypatch):
    # steering walks z far from the prior, where a score may overflow: the page keeps the
    # other decodes and says which failed; when all fail it says so instead of a traceback
    model, _ = tiny_model([cubic_srtio3()])
    said: list = []
    monkeypatch.setattr(runs.st, "progress", lambda value, text="": _Bar([]))
    monkeypatch.setattr(runs.st, "warning", lambda text: said.append(("warning", text)))
    monkeypatch.setattr(runs.st, "error", lambda text: said.append(("error", text)))
    _overflow_crystals(model, monkeypatch, [1])
    cfg = LangevinConfig(n_step_each=1, level_stride=10)
    result = runs.run_decode(model, torch.zeros(3, model.cfg.latent_dim), cfg, seed=0,
                             label="Decoding the saved steps",
                             names=["steering step 0", "steering step 500", "steering step 999"])
    assert [s is None for s in result.structures()] == [False, True, False]
    assert len(said) == 1 and said[0][0] == "warning"
    assert said[0][1].startswith("Decoding the saved steps: 1 of 3 crystals could not be "
                                 "decoded, the network's score overflowed: steering step 500 "
                                 "(non-finite coordinates at noise level 0 ")
    _overflow_crystals(model, monkeypatch, [0])
    said.clear()
    assert runs.run_decode(model, torch.zeros(1, model.cfg.latent_dim), cfg, seed=0) is None
    assert said and said[-1][0] == "error"
    assert said[-1][1].startswith("Sampling failed: non-finite coordinates at noise level 0 ")
    assert "try another seed or a smaller step size" in said[-1][1]


def test_a_grid_shows_a_failed_decode_as_failed():
    from streamlit.testing.v1 import AppTest

    def page(app_dir, tests_dir):
        import sys

        sys.path[:0] = [app_dir, tests_dir]
        from components.cards import structure_grid

        from conftest import cubic_srtio3

        structure_grid([cubic_srtio3(), None], ["start", "step 555"], key="grid")

    at = AppTest.from_function(page, args=(APP, str(REPO / "tests")), default_timeout=120)
    at.run()
    assert not at.exception
    assert any("step 555**: no crystal" in m.value for m in at.markdown)
    assert [w.value for w in at.warning] == [
        "Decoding failed: the sampler's coordinates stopped being finite."]
