"""Annealed Langevin dynamics on periodic crystals (Song & Ermon 2019; the paper's Algorithm 1),
and a predictor-corrector variant (Song et al. 2021, "Score-based generative modeling through
stochastic differential equations", reverse-diffusion predictor for the variance-exploding SDE).

The sampler knows nothing of the network: it is given ``score_fn(frac_coords, atom_types,
sigma_index) -> (coord_score [N, 3] in Å^-1, type_logits [N, K])``. Coordinates move in
Cartesian space and are wrapped back into the cell after every step; atom types become the argmax
of the predicted type distribution.

A crystal whose coordinates stop being finite (a score that overflowed, far from anything the
network was trained on) either stops the run with a :class:`SamplingError` naming it
(``on_nonfinite="raise"``, the default: one crystal asked for, one answer) or is set aside at its
last finite state and reported in :attr:`LangevinResult.failed` while the rest of the batch goes
on (``"drop"``: a batch of thousands is not lost to one crystal).

Schemes (:attr:`LangevinConfig.scheme`):

``langevin``
    Algorithm 1: at each level ``sigma_j``, ``n_step_each`` steps
    ``x <- x + alpha_j s(x) + sqrt(2 alpha_j) eps`` with ``alpha_j = step_lr (sigma_j/sigma_L)^2``.
``pc``
    At each level, ``n_step_each`` Langevin steps as above (the corrector, may be 0), then one
    reverse-diffusion step to the next level (the predictor):
    ``x <- x + (sigma_j^2 - sigma_{j+1}^2) s(x) + sqrt(sigma_j^2 - sigma_{j+1}^2) eps``; after the
    last level a noise-free step ``x <- x + sigma_L^2 s(x)`` (the posterior mean of a point-mass
    crystal blurred by ``sigma_L``, Tweedie's formula) ends the run. Each level costs
    ``n_step_each + 1`` score evaluations.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from cdvae_core.geometry import cart_to_frac, frac_to_cart, wrap_frac

__all__ = [
    "LangevinConfig",
    "Frame",
    "LangevinResult",
    "annealed_langevin",
    "SamplingError",
    "score_evaluations",
    "keep_frames",
    "SCHEMES",
    "levels_to_run",
]

ScoreFn = Callable[[Tensor, Tensor, int], tuple[Tensor, Tensor]]
SCHEMES = ("langevin", "pc")
NONFINITE = ("raise", "drop")


class SamplingError(RuntimeError):
    """The dynamics produced non-finite values (say where and at which level)."""


@dataclass(frozen=True)
class LangevinConfig:
    """Settings of annealed Langevin sampling.

    n_step_each: Langevin steps per noise level (paper: 100); with ``scheme="pc"`` the corrector
        steps per level, 0 allowed.
    step_lr: epsilon; level j uses ``alpha_j = step_lr * (sigma_j / sigma_L)^2`` (paper: 1e-4).
    min_sigma: levels below this sigma are skipped (0: all levels).
    level_stride: use every k-th level (1: all), always ending on the smallest one.
    noise_scale: multiplies the injected noise (1: Langevin; 0: deterministic descent).
    update_types: let the network change the atom types.
    save_every: keep a frame every k steps (None: no trajectory).
    scheme: ``"langevin"`` (Algorithm 1) or ``"pc"`` (predictor-corrector, see the module).

    Options of decoding a latent vector (the noise schedule to walk, the number of atoms) belong
    to the model, not to the loop: :class:`cdvae_core.model.decode.DecodeConfig`.
    """

    n_step_each: int = 100
    step_lr: float = 1e-4
    min_sigma: float = 0.0
    level_stride: int = 1
    noise_scale: float = 1.0
    update_types: bool = True
    save_every: int | None = None
    scheme: str = "langevin"

    def __post_init__(self):
        if self.scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}, got {self.scheme!r}")
        least = 0 if self.scheme == "pc" else 1
        if self.n_step_each < least:
            raise ValueError(f"n_step_each must be >= {least} with scheme {self.scheme!r}, "
                             f"got {self.n_step_each}")
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
    score: Tensor | None = None  # [N, 3] Å^-1, the score this step followed (Cartesian)


@dataclass
class LangevinResult:
    """The final state ``frac_coords [N, 3]``, ``atom_types [N]``, the saved frames, and the
    crystals set aside with ``on_nonfinite="drop"``: ``failed [B]`` (True: kept at its last
    finite state, not a sample) and ``failures`` (crystal index -> where it failed)."""

    frac_coords: Tensor
    atom_types: Tensor
    frames: list[Frame] = field(default_factory=list)
    failed: Tensor | None = None
    failures: dict[int, str] = field(default_factory=dict)


def levels_to_run(sigmas: Tensor, cfg: LangevinConfig) -> list[int]:
    """Indices of the noise levels visited, largest sigma first."""
    idx = [i for i in range(sigmas.shape[0]) if float(sigmas[i]) >= cfg.min_sigma]
    if not idx:
        return []
    chosen = idx[:: cfg.level_stride]
    if chosen[-1] != idx[-1]:
        chosen.append(idx[-1])
    return chosen


def score_evaluations(sigmas: Tensor, cfg: LangevinConfig) -> int:
    """Score-network calls a run of ``cfg`` makes over the noise levels ``sigmas`` (the cost)."""
    per_level = cfg.n_step_each + (1 if cfg.scheme == "pc" else 0)
    return len(levels_to_run(sigmas, cfg)) * per_level


def keep_frames(cfg: LangevinConfig, sigmas: Tensor, frames: int) -> LangevinConfig:
    """``cfg`` saving about ``frames`` frames of its run over the noise levels ``sigmas``."""
    return replace(cfg, save_every=_save_every(score_evaluations(sigmas, cfg), frames))


def _save_every(steps: int, frames: int) -> int:
    """Keep every k-th step with about ``frames`` frames (step 1 is always kept, so that is
    ``steps / k + 1``). A divisor of ``steps`` is preferred, so the last frame is the final
    structure, unless the nearest divisor misses the frame count by more than half."""
    plain = max(1, math.ceil(steps / max(1, frames - 1)))
    divisors = [k for k in range(1, steps + 1) if steps % k == 0]
    best = min(divisors, key=lambda k: abs(steps // k + 1 - frames))
    return best if abs(steps // best + 1 - frames) <= frames / 2 else plain


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
    on_nonfinite: str = "raise",
) -> LangevinResult:
    """Run Algorithm 1 from the initial structure.

    Args:
        score_fn: ``(frac [N, 3], types [N], level) -> (score [N, 3] Å^-1, type_logits [N, K])``.
        frac_coords: ``[N, 3]`` initial fractional coordinates; atom_types ``[N]`` (1-based).
        lattice: ``[B, 3, 3]``; batch ``[N]``; sigmas ``[L]`` decreasing (Å).
        generator: source of the injected noise (a seed reproduces a run).
        callback: called with each saved :class:`Frame` as it is made (live display).
        on_nonfinite: ``"raise"`` a :class:`SamplingError` when a crystal's coordinates stop
            being finite, or ``"drop"`` that crystal (kept at its last finite state, flagged in
            :attr:`LangevinResult.failed`) and go on with the others.
    """
    if on_nonfinite not in NONFINITE:
        raise ValueError(f"on_nonfinite must be one of {', '.join(NONFINITE)}, "
                         f"got {on_nonfinite!r}")
    num_crystals = int(batch.max()) + 1 if batch.numel() else 0
    failed = torch.zeros(num_crystals, dtype=torch.bool, device=batch.device)
    failures: dict[int, str] = {}
    frac = wrap_frac(frac_coords)
    types = atom_types.clone()
    frames: list[Frame] = []
    sigma_last = float(sigmas[-1])
    gen_device = generator.device if generator is not None else frac.device
    step = 0
    levels = levels_to_run(sigmas, cfg)

    def move(frac, types, level, sigma, drift, noise_std):
        """One update ``x + drift * score + noise_std * eps``; returns frac, types, score, logits."""
        # drawn on the generator's device (the CPU by default), so a seed gives the same run on
        # any device
        noise = torch.randn(frac.shape, generator=generator, device=gen_device,
                            dtype=frac.dtype).to(frac.device)
        score, logits = score_fn(frac, types, level)
        cart = frac_to_cart(frac, lattice, batch) + drift * score
        if noise_std > 0:
            cart = cart + noise_std * noise
        new = wrap_frac(cart_to_frac(cart, lattice, batch))
        new_types = logits.argmax(dim=-1) + 1 if cfg.update_types else types
        bad_coords = ~torch.isfinite(new).all(-1)
        bad_atoms = bad_coords | (~torch.isfinite(logits).all(-1) if cfg.update_types
                                  else torch.zeros_like(bad_coords))
        if bad_atoms.any():
            crystals = sorted(set(batch[bad_atoms].tolist()) - set(failures))
            what = ("coordinates" if bool(bad_coords.any()) else "atom-type probabilities")
            where = (f"non-finite {what} at noise level {level} (sigma {sigma:.3g} Å), "
                     f"Langevin step {step + 1}")
            if on_nonfinite == "raise":
                raise SamplingError(f"{where}, crystals {crystals[:10]}: the score or lattice "
                                    "is not finite there")
            for c in crystals:
                failures[c] = where
            failed[crystals] = True
        if failures:
            # set-aside crystals keep their last finite state; the others move on
            keep = failed[batch]
            new = torch.where(keep[:, None], frac, new)
            new_types = torch.where(keep, types, new_types)
        return new, new_types, score, logits

    def record(frac, types, level, sigma, score, logits):
        if cfg.save_every is not None and (step % cfg.save_every == 0 or step == 1):
            frame = Frame(
                step=step,
                level=level,
                sigma=sigma,
                frac_coords=frac.detach().cpu().clone(),
                atom_types=types.detach().cpu().clone(),
                score_norm=score.detach().norm(dim=-1).cpu(),
                score=score.detach().cpu().clone(),
                type_probs=torch.softmax(logits.detach(), -1).cpu(),
            )
            frames.append(frame)
            if callback is not None:
                callback(frame)

    def all_failed() -> bool:  # every crystal set aside: nothing is left to move
        return bool(num_crystals) and len(failures) == num_crystals

    for pos, level in enumerate(levels):
        sigma = float(sigmas[level])
        alpha = cfg.step_lr * (sigma / sigma_last) ** 2
        for _ in range(cfg.n_step_each):
            if all_failed():
                break
            frac, types, score, logits = move(
                frac, types, level, sigma, alpha, math.sqrt(2.0 * alpha) * cfg.noise_scale)
            step += 1
            record(frac, types, level, sigma, score, logits)
        if all_failed():
            break
        if cfg.scheme == "pc":
            # reverse-diffusion predictor to the next level; after the last, the noise-free
            # Tweedie step to the posterior mean
            nxt = float(sigmas[levels[pos + 1]]) if pos + 1 < len(levels) else 0.0
            var = sigma**2 - nxt**2
            frac, types, score, logits = move(
                frac, types, level, sigma, var, math.sqrt(var) * cfg.noise_scale if nxt else 0.0)
            step += 1
            record(frac, types, level, sigma, score, logits)
    return LangevinResult(frac, types, frames, failed, failures)
