"""Named sampler settings.

``paper``: the paper's protocol, 100 Langevin steps at each of the 50 noise levels (5,000 decoder
calls). ``fast`` (20 steps per level, the evaluation default) and ``interactive`` (5, the app's)
take fewer. The step size stays at the paper's 1e-4: with ``alpha_j = step_lr (sigma_j /
sigma_L)^2`` and a score ``(x_true - x) / sigma_j^2`` one step moves ``step_lr / sigma_L^2 = 1``
of the way to the target.

The sampling study (``benchmarks/README.md``; so far only on an early Perov-5 snapshot) found
coverage still rising with the number of steps up to 20 per level, levels better not skipped,
and a step of 2e-4 with 2 steps per level as good as 5 steps at 1e-4. These presets stay
provisional until the study is rerun on the finished models.
"""

from __future__ import annotations

from cdvae_core.sampling.langevin import LangevinConfig

__all__ = ["PRESETS", "get_preset"]

PRESETS: dict[str, LangevinConfig] = {
    "paper": LangevinConfig(n_step_each=100, step_lr=1e-4),
    "fast": LangevinConfig(n_step_each=20, step_lr=1e-4),
    "interactive": LangevinConfig(n_step_each=5, step_lr=1e-4),
}


def get_preset(name: str, **changes) -> LangevinConfig:
    """The preset ``name`` with fields ``changes`` replaced."""
    if name not in PRESETS:
        raise ValueError(f"unknown sampler preset {name!r}; choose one of {', '.join(PRESETS)}")
    return LangevinConfig(**{**PRESETS[name].__dict__, **changes})
