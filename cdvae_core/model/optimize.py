"""Latent property optimisation (the paper's section 5.3 protocol): Adam on z against a
differentiable property predictor of z, recording the trajectory; decoding of the z's at chosen
steps is left to the caller (see :func:`cdvae_core.model.decode`)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

__all__ = ["OptimizationResult", "optimize_latent"]


@dataclass
class OptimizationResult:
    """Trajectory of a latent optimisation.

    z_saved ``[S, B, latent]``: z at the saved steps ``saved_steps`` (step 0 is the start);
    prop ``[T + 1, B]``: predicted property at every step (index 0 = start).
    """

    z_saved: Tensor
    saved_steps: list[int]
    prop: Tensor


def optimize_latent(
    property_fn: Callable[[Tensor], Tensor],
    z0: Tensor,
    steps: int = 5000,
    lr: float = 1e-3,
    save_every: int = 500,
    direction: Literal["minimize", "maximize"] = "minimize",
    callback: Callable[[int, Tensor], None] | None = None,
    save_at: Collection[int] | None = None,
) -> OptimizationResult:
    """Adam on ``z`` (``[B, latent]``, one independent problem per row) to minimise or maximise
    ``property_fn(z) -> [B]``. Paper protocol: 5000 steps, lr 1e-3, decode every 500.

    ``callback(step, prop)`` is called after each step (live plots). Network parameters are not
    updated (only z is given to the optimiser) and keep their ``requires_grad``. ``save_at``:
    the numbers of optimiser steps after which z is saved, instead of every ``save_every``
    (the reference's schedule: :func:`cdvae_core.metrics.optimization.reference_decode_iterations`
    plus one). The objective is the mean of ``property_fn`` over the batch, as in the reference
    (Adam is invariant to that scale, up to its epsilon).
    """
    if direction not in ("minimize", "maximize"):
        raise ValueError(f"direction must be 'minimize' or 'maximize', got {direction!r}")
    if steps < 0 or save_every < 1 or not lr > 0:
        raise ValueError(f"need steps >= 0, save_every >= 1, lr > 0 (got {steps}, {save_every}, {lr})")
    sign = 1.0 if direction == "minimize" else -1.0
    save_at = frozenset(int(k) for k in save_at) if save_at is not None else None
    z = z0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    props: list[Tensor] = []  # props[k]: property at z after k steps
    saved, saved_steps = [z.detach().clone()], [0]
    with torch.enable_grad():
        for step in range(1, steps + 1):
            opt.zero_grad()
            p = property_fn(z)
            props.append(p.detach().clone())
            (sign * p.mean()).backward()
            opt.step()
            if (step in save_at) if save_at is not None else (step % save_every == 0):
                saved.append(z.detach().clone())
                saved_steps.append(step)
            if callback is not None:
                callback(step, p.detach())
    with torch.no_grad():
        props.append(property_fn(z).detach().clone())
    return OptimizationResult(torch.stack(saved), saved_steps, torch.stack(props))
