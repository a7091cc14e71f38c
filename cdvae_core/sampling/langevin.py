"""Annealed Langevin dynamics on periodic crystals (Song & Ermon 2019; the paper's Algorithm 1).

The sampler knows nothing of the network: it is given ``score_fn(frac_coords, atom_types,
sigma_index) -> (coord_score [N, 3] in Å^-1, type_logits [N, K])``. Coordinates move in
Cartesian space and are wrapped back into the cell after every step; atom types become the argmax
of the predicted type distribution.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from cdvae_core.geometry import cart_to_frac, frac_to_cart, wrap_frac

__all__ = ["LangevinConfig", "Frame", "LangevinResult", "annealed_langevin", "SamplingError"]

ScoreFn = Callable[[Tensor, Tensor, int], tuple[Tensor, Tensor]]


class SamplingError(RuntimeError):
    """The dynamics produced non-finite values (say where and at which level)."""


@dataclass(frozen=True)
class LangevinConfig:
    """Settings of annealed Langevin sampling.

    n_step_each: steps per noise level (paper: 100).
    step_lr: epsilon; level j uses ``alpha_j = step_lr * (sigma_j / sigma_L)^2`` (paper: 1e-4).
    min_sigma: levels below this sigma are skipped (0: all levels).
    level_stride: use every k-th level (1: all), always ending on the smallest one.
    noise_scale: multiplies the injected noise (1: Langevin; 0: deterministic descent).
    update_types: let the network change the atom types.
    save_every: keep a frame every k steps (None: no trajectory).
    """

    n_step_each: int = 100
    step_lr: float = 1e-4
    min_sigma: float = 0.0
    level_stride: int = 1
    noise_scale: float = 1.0
    update_types: bool = True
    save_every: int | None = None

    def __post_init__(self):
        if self.n_step_each < 1:
            raise ValueError(f"n_step_each must be >= 1, got {self.n_step_each}")
        if not (self.step_lr > 0 and math.isfinite(self.step_lr)):
            raise ValueError(f"step_lr must be a positive number, got {self.step_lr}")
        if self.level_stride < 1:
            raise ValueError(f"level_stride must be >= 1, got {self.level_stride}")
        if self.save_every is not None and self.save_every < 1:
            raise ValueError(f"save_every must be >= 1 or None, got {self.save_every}")


@dataclass
class Frame:
    """One saved step of a trajectory (all tensors on the CPU)."""

    step: int
    level: int
    sigma: float
    frac_coords: Tensor  # [N, 3]
    atom_types: Tensor  # [N]
    score_norm: Tensor  # [N] |score| in Å^-1
    type_probs: Tensor | None  # [N, K]


@dataclass
class LangevinResult:
    frac_coords: Tensor
    atom_types: Tensor
    frames: list[Frame] = field(default_factory=list)


def levels_to_run(sigmas: Tensor, cfg: LangevinConfig) -> list[int]:
    """Indices of the noise levels visited, largest sigma first."""
    idx = [i for i in range(sigmas.shape[0]) if float(sigmas[i]) >= cfg.min_sigma]
    if not idx:
        return []
    chosen = idx[:: cfg.level_stride]
    if chosen[-1] != idx[-1]:
        chosen.append(idx[-1])
    return chosen


def annealed_langevin(
    score_fn: ScoreFn,
    frac_coords: Tensor,
    atom_types: Tensor,
    lattice: Tensor,
    batch: Tensor,
    sigmas: Tensor,
    cfg: LangevinConfig = LangevinConfig(),
    generator: torch.Generator | None = None,
    callback: Callable[[Frame], None] | None = None,
) -> LangevinResult:
    """Run Algorithm 1 from the initial structure.

    Args:
        score_fn: ``(frac [N, 3], types [N], level) -> (score [N, 3] Å^-1, type_logits [N, K])``.
        frac_coords: ``[N, 3]`` initial fractional coordinates; atom_types ``[N]`` (1-based).
        lattice: ``[B, 3, 3]``; batch ``[N]``; sigmas ``[L]`` decreasing (Å).
        generator: source of the injected noise (a seed reproduces a run).
        callback: called with each saved :class:`Frame` as it is made (live display).
    """
    frac = wrap_frac(frac_coords)
    types = atom_types.clone()
    frames: list[Frame] = []
    sigma_last = float(sigmas[-1])
    gen_device = generator.device if generator is not None else frac.device
    step = 0
    for level in levels_to_run(sigmas, cfg):
        sigma = float(sigmas[level])
        alpha = cfg.step_lr * (sigma / sigma_last) ** 2
        for _ in range(cfg.n_step_each):
            # drawn on the generator's device (the CPU by default), so a seed gives the same
            # run on any device
            noise = torch.randn(frac.shape, generator=generator, device=gen_device,
                                dtype=frac.dtype).to(frac.device)
            score, logits = score_fn(frac, types, level)
            cart = frac_to_cart(frac, lattice, batch)
            cart = cart + alpha * score + math.sqrt(2.0 * alpha) * cfg.noise_scale * noise
            frac = wrap_frac(cart_to_frac(cart, lattice, batch))
            if not torch.isfinite(frac).all():
                bad = (~torch.isfinite(frac).all(-1)).nonzero().flatten()
                crystals = sorted(set(batch[bad].tolist()))
                raise SamplingError(
                    f"non-finite coordinates at level {level} (sigma {sigma:.3g} Å), step {step}, "
                    f"crystals {crystals[:10]}: the score or lattice is not finite there"
                )
            if cfg.update_types:
                types = logits.argmax(dim=-1) + 1
            step += 1
            if cfg.save_every is not None and (step % cfg.save_every == 0 or step == 1):
                frame = Frame(
                    step=step,
                    level=level,
                    sigma=sigma,
                    frac_coords=frac.detach().cpu().clone(),
                    atom_types=types.detach().cpu().clone(),
                    score_norm=score.detach().norm(dim=-1).cpu(),
                    type_probs=torch.softmax(logits.detach(), -1).cpu(),
                )
                frames.append(frame)
                if callback is not None:
                    callback(frame)
    return LangevinResult(frac, types, frames)
