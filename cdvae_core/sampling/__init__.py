"""Annealed Langevin sampling, decoding of latent vectors, and latent property optimisation."""

from cdvae_core.sampling.decode import (
    DecodeResult,
    decode,
    encode_dataset,
    generate,
    predicted_num_atoms,
    reconstruct,
    sample_composition,
    sampling_sigmas,
    to_structures,
)
from cdvae_core.sampling.langevin import (
    Frame,
    LangevinConfig,
    LangevinResult,
    SamplingError,
    annealed_langevin,
    score_evaluations,
)
from cdvae_core.sampling.optimize import OptimizationResult, optimize_latent
from cdvae_core.sampling.presets import PRESETS, default_preset, get_preset

__all__ = [
    "DecodeResult",
    "Frame",
    "LangevinConfig",
    "LangevinResult",
    "OptimizationResult",
    "PRESETS",
    "SamplingError",
    "annealed_langevin",
    "decode",
    "default_preset",
    "encode_dataset",
    "generate",
    "get_preset",
    "optimize_latent",
    "predicted_num_atoms",
    "reconstruct",
    "sample_composition",
    "sampling_sigmas",
    "score_evaluations",
    "to_structures",
]
