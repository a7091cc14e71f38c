"""Named sampler settings, chosen by the sampling study (``benchmarks/README.md``).

``paper``
    The paper's protocol: Algorithm 1, 100 Langevin steps at each of the 50 noise levels, step
    size 1e-4 (5,000 decoder calls).
``thorough`` (default of ``cdvae evaluate`` and ``cdvae generate`` for Carbon-24)
    Algorithm 1 with 20 steps per level (1,000 calls).
``fast`` (default of ``cdvae evaluate`` and ``cdvae generate`` for Perov-5 and MP-20)
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

Carbon-24 pays far more for the cheap budget (the same study, shipped Carbon-24 model, 256
samples against its 2,032 training and validation crystals: COV-P 0.30 with ``fast`` or
``interactive``, 0.47 with ``thorough``), so :func:`default_preset` gives it ``thorough``. MP-20
has not been studied (no trained model here) and gets ``fast``.
"""

from __future__ import annotations

from cdvae_core.diffusion.langevin import LangevinConfig

__all__ = ["DATASET_DEFAULTS", "PRESETS", "default_preset", "get_preset"]

PRESETS: dict[str, LangevinConfig] = {
    "paper": LangevinConfig(n_step_each=100, step_lr=1e-4),
    "thorough": LangevinConfig(n_step_each=20, step_lr=1e-4),
    "fast": LangevinConfig(n_step_each=4, step_lr=4e-4, scheme="pc"),
    "interactive": LangevinConfig(n_step_each=5, step_lr=2e-4),
}

# datasets whose default is not ``fast``, with the study's reason in the module docstring
DATASET_DEFAULTS: dict[str, str] = {"carbon_24": "thorough"}


def default_preset(dataset: str | None) -> str:
    """Name of the preset ``cdvae evaluate`` and ``cdvae generate`` use for ``dataset``'s models
    when no ``--sampler`` is given."""
    return DATASET_DEFAULTS.get(dataset or "", "fast")


def get_preset(name: str, **changes) -> LangevinConfig:
    """The preset ``name`` with fields ``changes`` replaced."""
    if name not in PRESETS:
        raise ValueError(f"unknown sampler preset {name!r}; choose one of {', '.join(PRESETS)}")
    return LangevinConfig(**{**PRESETS[name].__dict__, **changes})
