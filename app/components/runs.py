"""Long library calls wrapped with a progress bar and a message instead of a traceback."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import streamlit as st
import torch

from cdvae_core.diffusion.langevin import Frame, LangevinConfig, SamplingError
from cdvae_core.explore.latent import model_device
from cdvae_core.model.cdvae import CDVAE
from cdvae_core.model.decode import DecodeConfig, DecodeResult, decode, decode_steps


def run_decode(
    model: CDVAE,
    z: torch.Tensor,
    cfg: DecodeConfig | LangevinConfig,
    seed: int,
    label: str = "Annealed Langevin",
    on_frame: Callable[[Frame], None] | None = None,
    names: list[str] | None = None,
    **decode_kwargs,
) -> DecodeResult | None:
    """Decode ``z [B, latent]`` with a progress bar; None (after an error message) on failure.
    A crystal whose dynamics stop being finite (a latent point far from anything the model
    learned, as steering reaches) is dropped with a warning naming it (``names[i]``, the page's
    label of crystal ``i``; its number otherwise) and is None in the result's
    ``structures()``; when every crystal fails the run fails.

    Without frames requested, frames are still saved every ~1% of the run to move the bar and
    dropped afterwards. ``decode_kwargs`` go to :func:`cdvae_core.model.decode.decode`
    (``num_atoms``, ``atom_types``). The bar counts the steps the run takes, over the noise
    levels it walks (:func:`~cdvae_core.model.decode.decode_steps`).
    """
    cfg = DecodeConfig.of(cfg)
    steps = decode_steps(model, cfg)
    keep = cfg.sampler.save_every is not None
    if not keep:
        cfg = replace(cfg, sampler=replace(cfg.sampler, save_every=max(1, steps // 100)))
    bar = st.progress(0.0, text=f"{label}: starting...")
    t0 = time.perf_counter()

    def callback(frame: Frame) -> None:
        bar.progress(min(1.0, frame.step / steps),
                     text=f"{label}: step {frame.step}/{steps}, sigma {frame.sigma:.3g} Å, "
                          f"{time.perf_counter() - t0:.1f} s")
        if on_frame is not None:
            on_frame(frame)

    z = z.reshape(-1, model.cfg.latent_dim).to(model_device(model))
    try:
        result = decode(model, z, cfg, torch.Generator().manual_seed(int(seed)), callback=callback,
                        on_nonfinite="drop", **decode_kwargs)
    except (SamplingError, ValueError) as exc:
        bar.empty()
        st.error(f"Sampling failed: {exc}")
        return None
    bar.empty()
    if result.failures:
        first = next(iter(result.failures.values()))
        if len(result.failures) == z.shape[0]:
            st.error(f"Sampling failed: {first}. The network's score overflowed there; try "
                     "another seed or a smaller step size (a latent point far from the data, "
                     "as long steering reaches, does this more often).")
            return None
        which = "; ".join(f"{names[i] if names else f'crystal {i + 1}'} ({where})"
                          for i, where in sorted(result.failures.items()))
        st.warning(f"{label}: {len(result.failures)} of {z.shape[0]} crystals could not be "
                   f"decoded, the network's score overflowed: {which}. They are shown as "
                   "failed.")
    if not keep:
        result.frames = []
    return result
