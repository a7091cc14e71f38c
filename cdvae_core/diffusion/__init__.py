"""Generic diffusion on periodic crystals, apart from any network: noise schedules and corruption,
the annealed Langevin and predictor-corrector loops with their presets, and a toy exact periodic
score. Imports :mod:`cdvae_core.geometry` only; a sampler is given a score callable and a
``torch.Generator``."""

from cdvae_core.diffusion.langevin import (
    SCHEMES,
    Frame,
    LangevinConfig,
    LangevinResult,
    SamplingError,
    ScoreFn,
    annealed_langevin,
    keep_frames,
    levels_to_run,
    score_evaluations,
)
from cdvae_core.diffusion.noise import geometric_sigmas, perturb_coords, perturb_types
from cdvae_core.diffusion.presets import DATASET_DEFAULTS, PRESETS, default_preset, get_preset
from cdvae_core.diffusion.toy import exact_score_fn, periodic_gaussian_score

__all__ = [
    "DATASET_DEFAULTS",
    "PRESETS",
    "SCHEMES",
    "Frame",
    "LangevinConfig",
    "LangevinResult",
    "SamplingError",
    "ScoreFn",
    "annealed_langevin",
    "default_preset",
    "exact_score_fn",
    "geometric_sigmas",
    "get_preset",
    "keep_frames",
    "levels_to_run",
    "perturb_coords",
    "perturb_types",
    "periodic_gaussian_score",
    "score_evaluations",
]
