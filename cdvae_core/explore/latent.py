"""Reading a trained CDVAE's latent space: what the latent heads predict for a z, paths between
two z's, latent means of a dataset in chunks with progress. Pure functions (no Streamlit); the app
and the notebooks call them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from pymatgen.core import Element
from torch import Tensor

from cdvae_core.explore.materials import reduced_formula
from cdvae_core.model.cdvae import CDVAE
from cdvae_core.model.decode import decodable_cell, encode_dataset, sample_composition

if TYPE_CHECKING:
    from cdvae_core.data.dataset import CrystalDataset

__all__ = ["LatentReadout", "encode_in_chunks", "interpolate_latents", "model_device",
           "read_latent"]


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@dataclass(frozen=True)
class LatentReadout:
    """What the latent heads of a CDVAE predict for one ``z``.

    num_atoms / num_atoms_prob: the most likely number of atoms and its probability.
    lengths (Å) / angles_deg: the predicted lattice (clamped as the decoder clamps it).
    composition: ``[(symbol, probability), ...]`` of the most likely elements, best first.
    formula: reduced formula of the composition drawn for ``num_atoms`` atoms (seeded).
    prop: the latent property head's prediction (``None`` without a property head).
    """

    num_atoms: int
    num_atoms_prob: float
    lengths: tuple[float, float, float]
    angles_deg: tuple[float, float, float]
    composition: list[tuple[str, float]]
    formula: str
    prop: float | None


@torch.no_grad()
def read_latent(model: CDVAE, z: Tensor, top_k: int = 5, seed: int = 0) -> LatentReadout:
    """Read the latent heads (atoms, lattice, composition, property) for ``z [latent]``."""
    z = z.reshape(1, -1).to(model_device(model), torch.float32)  # [1, latent]
    n_probs = torch.softmax(model.predict_num_atoms(z), -1)[0]  # [max_atoms + 1]
    n = int(n_probs.argmax().clamp(min=1))
    num_atoms = torch.tensor([n], device=z.device)
    _, lengths, angles = model.predict_lattice(z, num_atoms)
    lengths, angles = decodable_cell(lengths, angles)
    lengths, angles = lengths[0].tolist(), angles[0].tolist()
    comp = torch.softmax(model.fc_composition(z), -1)  # [1, 100]
    p, idx = comp[0].topk(min(top_k, comp.shape[-1]))
    top = [(Element.from_Z(int(i) + 1).symbol, float(q)) for q, i in zip(p, idx, strict=True)]
    types = sample_composition(comp, num_atoms, torch.Generator().manual_seed(seed))
    formula = reduced_formula(types.tolist())
    prop = float(model.predict_property(z)[0]) if model.fc_property is not None else None
    return LatentReadout(n, float(n_probs[n]), tuple(lengths), tuple(angles), top, formula, prop)


def interpolate_latents(
    z_a: Tensor, z_b: Tensor, n: int, mode: Literal["linear", "slerp"] = "linear"
) -> Tensor:
    """``n`` latent vectors ``[n, latent]`` from ``z_a`` to ``z_b`` (both ends included).

    ``slerp`` follows the great circle (the prior's mass lies near a sphere of radius
    sqrt(latent), so a straight line through its inside passes through atypical, short z).
    """
    if n < 2:
        raise ValueError(f"need at least 2 points on the path, got {n}")
    a, b = z_a.reshape(-1).float(), z_b.reshape(-1).float()
    t = torch.linspace(0.0, 1.0, n, device=a.device)[:, None]  # [n, 1]
    if mode == "linear":
        return (1 - t) * a + t * b
    if mode != "slerp":
        raise ValueError(f"mode must be 'linear' or 'slerp', got {mode!r}")
    cos = torch.dot(a, b) / (a.norm() * b.norm()).clamp(min=1e-12)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    if float(omega) < 1e-4:  # (anti)parallel: slerp degenerates to a line
        return (1 - t) * a + t * b
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


def encode_in_chunks(
    model: CDVAE,
    dataset: CrystalDataset,
    chunk: int = 256,
    progress: Callable[[float], None] | None = None,
) -> Tensor:
    """Latent means ``[len(dataset), latent]`` (CPU), reporting the fraction done after each
    chunk (a long encoding in the app shows a moving bar instead of a frozen page)."""
    out = []
    for start in range(0, len(dataset), chunk):
        part = dataset.subset(range(start, min(len(dataset), start + chunk)))
        out.append(encode_dataset(model, part, batch_size=chunk).cpu())
        if progress is not None:
            progress(min(1.0, (start + chunk) / max(1, len(dataset))))
    return torch.cat(out) if out else torch.zeros(0, model.cfg.latent_dim)
