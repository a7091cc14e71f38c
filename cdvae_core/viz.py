"""Helpers for looking at a trained CDVAE: read the latent heads, project latent vectors to 2D,
turn Langevin frames into structures, viewer payloads and extended XYZ, find the nearest
reference material. Pure functions (no Streamlit); the app and the notebooks call them.
"""

from __future__ import annotations

import io
import math
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import torch
from pymatgen.core import Composition, Element, Lattice, Structure
from sklearn.decomposition import PCA
from torch import Tensor

from cdvae_core.data.dataset import CrystalDataset
from cdvae_core.model.cdvae import CDVAE
from cdvae_core.nn import MAX_ATOMIC_NUM
from cdvae_core.sampling import DecodeResult, Frame, LangevinConfig, encode_dataset
from cdvae_core.sampling.decode import decodable_cell, sample_composition
from cdvae_core.sampling.langevin import score_evaluations

__all__ = [
    "SAMPLER_LIMITS",
    "LatentReadout",
    "Projection",
    "composition_vectors",
    "dataset_table",
    "encode_in_chunks",
    "fit_projection",
    "frame_atom_table",
    "frame_structure",
    "frame_structures",
    "interpolate_latents",
    "model_device",
    "nearest_reference",
    "read_latent",
    "reduced_formula",
    "sampler_config",
    "structure_family",
    "total_steps",
    "trajectory_to_extxyz",
    "viewer_frame",
]

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


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


# ---------------------------------------------------------------------------- latent heads
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


# ---------------------------------------------------------------------------- projection
@dataclass
class Projection:
    """A fitted 2D projection of latent space (PCA): new points land in the same frame."""

    pca: PCA

    def transform(self, z: np.ndarray | Tensor) -> np.ndarray:
        """``[M, latent] -> [M, 2]``."""
        z = z.detach().cpu().numpy() if isinstance(z, Tensor) else np.asarray(z)
        return self.pca.transform(z.reshape(-1, self.pca.n_features_in_).astype(np.float64))

    @property
    def explained(self) -> tuple[float, float]:
        """Fraction of the variance along each of the two axes."""
        r = self.pca.explained_variance_ratio_
        return float(r[0]), float(r[1])


def fit_projection(z: np.ndarray | Tensor, seed: int = 0) -> Projection:
    """Fit a 2-component PCA on ``z [M, latent]`` (M >= 2)."""
    z = z.detach().cpu().numpy() if isinstance(z, Tensor) else np.asarray(z)
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"need at least 2 latent vectors [M, latent] to fit, got {z.shape}")
    return Projection(PCA(n_components=2, random_state=seed).fit(z.astype(np.float64)))


# ---------------------------------------------------------------------------- materials
def reduced_formula(atomic_numbers: Sequence[int]) -> str:
    """Reduced formula of a list of atomic numbers, e.g. ``[38, 22, 8, 8, 8] -> "SrTiO3"``."""
    return Composition(Counter(Element.from_Z(int(z)).symbol for z in atomic_numbers)).reduced_formula


def structure_family(atomic_numbers: Sequence[int]) -> str:
    """Composition family used to colour the latent map: the anion (the most electronegative
    element), e.g. ``"O"`` for oxides and ``"N"`` for nitrides; a single-element crystal is its
    element."""
    zs = sorted(set(int(z) for z in atomic_numbers))
    if not zs:
        return "?"
    if len(zs) == 1:
        return Element.from_Z(zs[0]).symbol
    # Noble gases have no Pauling electronegativity (pymatgen returns NaN and warns).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chi = [Element.from_Z(z).X for z in zs]
    chi = [c if math.isfinite(c) else -1.0 for c in chi]
    return Element.from_Z(zs[int(np.argmax(chi))]).symbol


def composition_vectors(atom_types: Sequence[Sequence[int]]) -> np.ndarray:
    """Element fractions ``[M, 100]`` (Z = 1..100) of each crystal's atomic numbers."""
    out = np.zeros((len(atom_types), MAX_ATOMIC_NUM))
    for i, zs in enumerate(atom_types):
        counts = np.bincount(np.asarray(zs, dtype=np.int64) - 1, minlength=MAX_ATOMIC_NUM)
        out[i] = counts[:MAX_ATOMIC_NUM] / max(1, counts.sum())
    return out


def dataset_table(dataset: CrystalDataset) -> pd.DataFrame:
    """One row per crystal: ``material_id``, ``formula``, ``family``, ``n_atoms``,
    ``n_elements``, ``volume_per_atom`` (Å^3) and ``prop``, from the dataset's tensors (cheap:
    no pymatgen Structure is built)."""
    rows = []
    for i in range(len(dataset)):
        s, n = int(dataset.atom_start[i]), int(dataset.num_atoms[i])
        zs = dataset.atom_types[s : s + n].tolist()
        lattice = Lattice.from_parameters(
            *dataset.lengths[i].tolist(), *dataset.angles_deg[i].tolist()
        )
        rows.append(
            {
                "material_id": dataset.material_ids[i],
                "formula": reduced_formula(zs),
                "family": structure_family(zs),
                "n_atoms": n,
                "n_elements": len(set(zs)),
                "volume_per_atom": lattice.volume / n,
                "prop": float(dataset.prop[i]),
            }
        )
    return pd.DataFrame(rows)


def nearest_reference(
    query_comp: np.ndarray,
    ref_comp: np.ndarray,
    query_vpa: np.ndarray | None = None,
    ref_vpa: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest reference crystal of each query by composition, then volume per atom.

    Distance: L1 between element-fraction vectors (0 for the same reduced composition); among
    references at the smallest distance the one with the closest volume per atom wins. Cheap
    (one matrix product's worth of work), unlike the CrystalNN fingerprints of the metrics.

    Args:
        query_comp ``[Q, 100]``, ref_comp ``[R, 100]``: from :func:`composition_vectors`.
        query_vpa ``[Q]``, ref_vpa ``[R]``: volumes per atom (Å^3), optional tie-break.

    Returns:
        ``(index [Q], composition distance [Q])``; index -1 when there is no reference.
    """
    q, r = np.atleast_2d(query_comp), np.atleast_2d(ref_comp)
    if len(r) == 0 or r.shape[-1] == 0:
        return np.full(len(q), -1), np.full(len(q), np.nan)
    idx, best = np.empty(len(q), dtype=np.int64), np.empty(len(q))
    for i, row in enumerate(q):
        dist = np.abs(r - row).sum(axis=1)  # [R]
        d_min = dist.min()
        tied = np.flatnonzero(dist <= d_min + 1e-9)
        if query_vpa is not None and ref_vpa is not None and len(tied) > 1:
            tied = tied[[int(np.argmin(np.abs(ref_vpa[tied] - query_vpa[i])))]]
        idx[i], best[i] = tied[0], d_min
    return idx, best


# ---------------------------------------------------------------------------- sampler
def total_steps(sigmas: Tensor, cfg: LangevinConfig) -> int:
    """Steps (score evaluations) a run of ``cfg`` takes over the noise levels ``sigmas``."""
    return score_evaluations(sigmas, cfg)


def sampler_config(
    sigmas: Tensor,
    n_step_each: int,
    step_lr: float,
    frames: int,
    level_stride: int = 1,
    noise_scale: float = 1.0,
    scheme: str = "langevin",
) -> LangevinConfig:
    """A :class:`LangevinConfig` from interactive settings, keeping about ``frames`` frames.
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
    steps = total_steps(sigmas, base)
    if steps > SAMPLER_LIMITS["total_steps"]:
        raise ValueError(
            f"{steps} Langevin steps exceed the interactive limit of "
            f"{SAMPLER_LIMITS['total_steps']}: lower the steps per level or raise the stride"
        )
    return LangevinConfig(**{**base.__dict__, "save_every": _save_every(steps, int(frames))})


def _save_every(steps: int, frames: int) -> int:
    """Keep every k-th step with about ``frames`` frames (step 1 is always kept, so that is
    ``steps / k + 1``). A divisor of ``steps`` is preferred, so the last frame is the final
    structure, unless the nearest divisor misses the frame count by more than half."""
    plain = max(1, math.ceil(steps / max(1, frames - 1)))
    divisors = [k for k in range(1, steps + 1) if steps % k == 0]
    best = min(divisors, key=lambda k: abs(steps // k + 1 - frames))
    return best if abs(steps // best + 1 - frames) <= frames / 2 else plain


# ---------------------------------------------------------------------------- trajectories
def _crystal_slice(num_atoms: Tensor, crystal: int) -> slice:
    counts = num_atoms.tolist()
    if not 0 <= crystal < len(counts):
        raise IndexError(f"crystal {crystal} out of range (batch of {len(counts)})")
    start = int(sum(counts[:crystal]))
    return slice(start, start + int(counts[crystal]))


def frame_structure(frame: Frame, lattice: Lattice, num_atoms: Tensor, crystal: int = 0):
    """The structure of crystal ``crystal`` at one frame, on its (fixed) predicted lattice."""
    sl = _crystal_slice(num_atoms, crystal)
    return Structure(lattice, frame.atom_types[sl].tolist(), frame.frac_coords[sl].double().numpy())


def frame_structures(result: DecodeResult, crystal: int = 0) -> list[Structure]:
    """The structure of crystal ``crystal`` at every saved frame of ``result``."""
    lattice = Lattice.from_parameters(
        *result.lengths[crystal].tolist(), *result.angles_deg[crystal].tolist()
    )
    return [frame_structure(f, lattice, result.num_atoms, crystal) for f in result.frames]


def frame_atom_table(frame: Frame, num_atoms: Tensor, crystal: int = 0, top_k: int = 3):
    """Per-atom table of one frame: element, |score| (Å^-1), probability of the current
    element and the ``top_k`` most likely elements with their probabilities."""
    sl = _crystal_slice(num_atoms, crystal)
    types = frame.atom_types[sl].tolist()
    norms = frame.score_norm[sl].tolist()
    rows = []
    for i, (z, s) in enumerate(zip(types, norms, strict=True)):
        row = {"atom": i, "element": Element.from_Z(int(z)).symbol, "score_norm": s}
        if frame.type_probs is not None:
            probs = frame.type_probs[sl][i]  # [K]
            row["p_element"] = float(probs[int(z) - 1])
            p, idx = probs.topk(min(top_k, probs.shape[-1]))
            for k, (q, j) in enumerate(zip(p.tolist(), idx.tolist(), strict=True), start=1):
                row[f"top{k}"] = f"{Element.from_Z(j + 1).symbol} {q:.2f}"
        rows.append(row)
    return pd.DataFrame(rows)


def trajectory_to_extxyz(result: DecodeResult, crystal: int = 0) -> str:
    """Extended XYZ text of crystal ``crystal``'s saved frames, one frame per block, with the
    lattice and ``step``, ``level``, ``sigma`` (Å) and ``mean_score`` (Å^-1) in each comment."""
    from ase.io import write  # ase is only needed for this format
    from pymatgen.io.ase import AseAtomsAdaptor

    sl = _crystal_slice(result.num_atoms, crystal)
    frames = []
    for f, s in zip(result.frames, frame_structures(result, crystal), strict=True):
        atoms = AseAtomsAdaptor.get_atoms(s)
        atoms.info.update(
            step=int(f.step),
            level=int(f.level),
            sigma=float(f.sigma),
            mean_score=float(f.score_norm[sl].mean()),
        )
        frames.append(atoms)
    buf = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write(buf, frames, format="extxyz")
    return buf.getvalue()


def viewer_frame(structure: Structure, label: str = "", boundary_tol: float = 0.02) -> dict:
    """JSON-ready payload of one structure for the app's 3D viewer.

    Atoms within ``boundary_tol`` (fractional) of a cell face are repeated on the opposite face,
    so a cubic perovskite shows its full cube of corner atoms.

    Returns:
        ``{"atoms": [[symbol, x, y, z], ...] (Å), "cell": 3x3 rows (Å), "label": str}``.
    """
    frac = np.mod(np.asarray(structure.frac_coords, dtype=np.float64), 1.0)  # [N, 3]
    syms = [site.specie.symbol for site in structure]
    if boundary_tol > 0:
        # one axis at a time, so an atom on an edge or a corner is repeated 4 or 8 times
        for axis in range(3):
            near = np.flatnonzero(frac[:, axis] < boundary_tol)
            if len(near):
                shifted = frac[near].copy()
                shifted[:, axis] += 1.0
                frac = np.concatenate([frac, shifted])
                syms = syms + [syms[i] for i in near]
    cart = frac @ structure.lattice.matrix  # [M, 3]
    return {
        "atoms": [[s, *np.round(xyz, 4).tolist()] for s, xyz in zip(syms, cart, strict=True)],
        "cell": np.round(structure.lattice.matrix, 4).tolist(),
        "label": label,
    }
