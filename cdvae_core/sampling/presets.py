"""Named sampler settings, chosen by the sampling study (``benchmarks/README.md``).

``paper``
    The paper's protocol: Algorithm 1, 100 Langevin steps at each of the 50 noise levels, step
    size 1e-4 (5,000 decoder calls).
``thorough``
    Algorithm 1 with 20 steps per level (1,000 calls; the evaluation default until the study on
    the shipped Perov-5 model).
``fast`` (default of ``cdvae evaluate`` and ``cdvae generate``)
    Predictor-corrector: at each of the 50 levels 4 Langevin corrector steps at step size 4e-4,
    then one reverse-diffusion predictor step, and a noise-free final step (250 calls). The best
    of the settings tried at 250 calls, the budget that generates 10,000 Perov-5 crystals in
    about 30 minutes on a 2-core CPU.
``interactive`` (the app's default)
    Algorithm 1 with 5 steps per level at step size 2e-4 (250 calls): the best plain-Langevin
    setting at that cost, so the app's denoising viewer shows the paper's dynamics.

With ``alpha_j = step_lr (sigma_j / sigma_L)^2`` and a score ``(x_true - x) / sigma_j^2`` one step
of size 1e-4 moves ``step_lr / sigma_L^2 = 1`` of the way to the target.

The study chose on crystals outside ``test.csv`` (the model's training and validation crystals,
and its validation hold-out alone), 512 samples per setting, with the shipped Perov-5 model:
at 250 calls ``fast`` reached COV-P 0.750 against the training and validation crystals, plain
Langevin 0.725-0.730 at step 2e-4-3e-4 and 0.580 at the paper's 1e-4; ``thorough`` 0.793. Cheap
settings lose a few points of coverage against 1,000 calls; the table gives the price.
"""

from __future__ import annotations

from cdvae_core.sampling.langevin import LangevinConfig

__all__ = ["PRESETS", "get_preset"]

PRESETS: dict[str, LangevinConfig] = {
    "paper": LangevinConfig(n_step_each=100, step_lr=1e-4),
    "thorough": LangevinConfig(n_step_each=20, step_lr=1e-4),
    "fast": LangevinConfig(n_step_each=4, step_lr=4e-4, scheme="pc"),
    "interactive": LangevinConfig(n_step_each=5, step_lr=2e-4),
}


def get_preset(name: str, **changes) -> LangevinConfig:
    """The preset ``name`` with fields ``changes`` replaced."""
    if name not in PRESETS:
        raise ValueError(f"unknown sampler preset {name!r}; choose one of {', '.join(PRESETS)}")
    return LangevinConfig(**{**PRESETS[name].__dict__, **changes})
