"""The denoising page's sampler form: the bounds of its settings and their check, turned into a
:class:`LangevinConfig` that keeps about the number of frames asked for."""

from __future__ import annotations

import math

from torch import Tensor

from cdvae_core.diffusion.langevin import LangevinConfig, keep_frames, score_evaluations

__all__ = ["SAMPLER_LIMITS", "sampler_config"]

#: Bounds of the interactive sampler settings: wide enough for the paper's protocol (100 steps
#: per level, step 1e-4), narrow enough that a typo cannot start an hour-long run on a CPU.
SAMPLER_LIMITS = {
    "n_step_each": (1, 200),
    "step_lr": (1e-7, 1e-2),
    "frames": (2, 500),
    "level_stride": (1, 50),
    "noise_scale": (0.0, 5.0),
    "total_steps": 20_000,
}


def sampler_config(
    sigmas: Tensor,
    n_step_each: int,
    step_lr: float,
    frames: int,
    level_stride: int = 1,
    noise_scale: float = 1.0,
    scheme: str = "langevin",
) -> LangevinConfig:
    """A :class:`LangevinConfig` from interactive settings, keeping about ``frames`` frames of a
    run over the noise levels ``sigmas`` (the model's table: the form does not resample it).
    ``scheme="pc"`` allows 0 Langevin (corrector) steps per level.

    Raises:
        ValueError: a sentence naming the setting out of :data:`SAMPLER_LIMITS`.
    """
    lo_steps = 0 if scheme == "pc" else SAMPLER_LIMITS["n_step_each"][0]
    checks = {
        "steps per level": (n_step_each, (lo_steps, SAMPLER_LIMITS["n_step_each"][1])),
        "step size": (step_lr, SAMPLER_LIMITS["step_lr"]),
        "frames kept": (frames, SAMPLER_LIMITS["frames"]),
        "level stride": (level_stride, SAMPLER_LIMITS["level_stride"]),
        "noise scale": (noise_scale, SAMPLER_LIMITS["noise_scale"]),
    }
    for name, (value, (lo, hi)) in checks.items():
        if value is None or not math.isfinite(float(value)) or not lo <= value <= hi:
            raise ValueError(f"{name} must be between {lo:g} and {hi:g} (got {value})")
    base = LangevinConfig(
        n_step_each=int(n_step_each),
        step_lr=float(step_lr),
        level_stride=int(level_stride),
        noise_scale=float(noise_scale),
        scheme=scheme,
    )
    steps = score_evaluations(sigmas, base)
    if steps > SAMPLER_LIMITS["total_steps"]:
        raise ValueError(
            f"{steps} Langevin steps exceed the interactive limit of "
            f"{SAMPLER_LIMITS['total_steps']}: lower the steps per level or raise the stride"
        )
    return keep_frames(base, sigmas, int(frames))
