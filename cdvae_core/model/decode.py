"""The model's own generative procedure, from latent vectors to crystals: predict N, lattice and
composition from z, initialise a random structure, then hand the decoder to the network-free
annealed Langevin loop of :mod:`cdvae_core.diffusion.langevin` as its score callable.

Generation draws z from the prior; reconstruction encodes given crystals first. The options of
decoding that the loop does not read (the noise schedule walked, the number of atoms) are a
:class:`DecodeConfig`, which carries the loop's own :class:`LangevinConfig` as it is.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

import torch
from pymatgen.core import Lattice, Structure
from torch import Tensor
from tqdm.auto import tqdm

from cdvae_core.diffusion.langevin import (
    Frame,
    LangevinConfig,
    annealed_langevin,
    score_evaluations,
)
from cdvae_core.diffusion.noise import geometric_sigmas
from cdvae_core.geometry import lattice_params_to_matrix, sanitize_lattice_params
from cdvae_core.model.cdvae import CDVAE

if TYPE_CHECKING:
    from cdvae_core.data.batch import CrystalBatch
    from cdvae_core.data.dataset import CrystalDataset

__all__ = [
    "NUM_ATOMS_CHOICES",
    "DecodeConfig",
    "DecodeResult",
    "decodable_cell",
    "decode_steps",
    "encode_dataset",
    "sampling_sigmas",
    "sample_composition",
    "predicted_num_atoms",
    "decode",
    "decode_dropping_failures",
    "generate",
    "reconstruct",
    "to_structures",
]

NUM_ATOMS_CHOICES = ("argmax", "sample")
MIN_LENGTH = 0.5  # Å; a predicted length below this is clamped (only an untrained model does it)
ANGLE_RANGE = (10.0, 170.0)  # degrees; idem, then impossible angle triples are repaired


def decodable_cell(lengths: Tensor, angles_deg: Tensor) -> tuple[Tensor, Tensor]:
    """Predicted lattice parameters as a cell the sampler can use: angles clamped to
    :data:`ANGLE_RANGE`, lengths raised to :data:`MIN_LENGTH`, impossible angle triples repaired
    (:func:`cdvae_core.geometry.sanitize_lattice_params`)."""
    return sanitize_lattice_params(lengths, angles_deg.clamp(*ANGLE_RANGE), MIN_LENGTH)


@dataclass(frozen=True)
class DecodeConfig:
    """How a CDVAE decodes latent vectors.

    sampler: the annealed Langevin loop's settings, handed to it unchanged (a preset of
        :func:`cdvae_core.diffusion.presets.get_preset`, say).
    num_levels: run on this many geometric noise levels between the model's largest and smallest
        sigma instead of the model's own table (None: the table). Valid for CDVAE, whose decoder
        is not told the noise level: any sigma in the trained range is a level it has seen in
        kind.
    num_atoms: how a crystal decoded from z gets its number of atoms from the latent head's
        distribution ``p(N | z)``: ``"argmax"`` its mode (the reference code), ``"sample"`` a
        draw from it, which keeps the less frequent sizes that the mode never picks. A forced
        number of atoms overrides it; :func:`reconstruct` always takes the mode.
    """

    sampler: LangevinConfig = LangevinConfig()
    num_levels: int | None = None
    num_atoms: str = "argmax"

    def __post_init__(self):
        if self.num_atoms not in NUM_ATOMS_CHOICES:
            raise ValueError(f"num_atoms must be one of {', '.join(NUM_ATOMS_CHOICES)}, "
                             f"got {self.num_atoms!r}")
        if self.num_levels is not None and self.num_levels < 2:
            raise ValueError(f"num_levels must be >= 2 or None, got {self.num_levels}")

    @classmethod
    def of(cls, cfg: DecodeConfig | LangevinConfig) -> DecodeConfig:
        """``cfg`` itself, or a loop's settings with the default decoding options."""
        return cfg if isinstance(cfg, DecodeConfig) else cls(sampler=cfg)

    def to_dict(self) -> dict[str, Any]:
        """One flat dict, the loop's fields then ``num_levels`` and ``num_atoms``: the
        ``sampler`` block of a run's ``settings.json``."""
        return {**asdict(self.sampler), "num_levels": self.num_levels, "num_atoms": self.num_atoms}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DecodeConfig:
        """Inverse of :meth:`to_dict` (also reads the ``sampler`` block of older runs)."""
        loop = {f.name for f in fields(LangevinConfig)}
        return cls(LangevinConfig(**{k: v for k, v in d.items() if k in loop}),
                   d.get("num_levels"), d.get("num_atoms", "argmax"))


@dataclass
class DecodeResult:
    """Decoded crystals, flat as in a batch, with an optional trajectory.

    frac_coords ``[N, 3]``, atom_types ``[N]``, num_atoms ``[B]``, lengths ``[B, 3]`` (Å),
    angles_deg ``[B, 3]``, z ``[B, latent]``; frames: the saved Langevin frames (all crystals);
    failures: crystal index -> where its dynamics stopped being finite (a decode with
    ``on_nonfinite="drop"``); those crystals are no samples and :meth:`structures` gives None.
    """

    frac_coords: Tensor
    atom_types: Tensor
    num_atoms: Tensor
    lengths: Tensor
    angles_deg: Tensor
    z: Tensor
    frames: list[Frame] = field(default_factory=list)
    failures: dict[int, str] = field(default_factory=dict)

    def structures(self) -> list[Structure | None]:
        """The decoded crystals; None for each failed one (a failed decode, which the metrics
        count as invalid)."""
        return to_structures(self.frac_coords, self.atom_types, self.num_atoms, self.lengths,
                             self.angles_deg, skip=set(self.failures))


def to_structures(frac_coords, atom_types, num_atoms, lengths, angles_deg,
                  skip: set[int] = frozenset()) -> list[Structure | None]:
    """pymatgen Structures of flat crystal tensors (lattice from the six parameters); None for
    the crystals numbered in ``skip``."""
    out: list[Structure | None] = []
    start = 0
    for i, n in enumerate(num_atoms.tolist()):
        if i in skip:
            out.append(None)
            start += n
            continue
        lat = Lattice.from_parameters(*lengths[i].tolist(), *angles_deg[i].tolist())
        out.append(
            Structure(
                lat,
                atom_types[start : start + n].tolist(),
                frac_coords[start : start + n].detach().cpu().double().numpy(),
            )
        )
        start += n
    return out


def sample_composition(
    comp_probs: Tensor, num_atoms: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """Initial atom types ``[N]`` matching each crystal's predicted composition: ``round(p N)``
    atoms of each element, the remainder drawn from the leftover probability, then shuffled.

    comp_probs: ``[B, K]`` composition probabilities; num_atoms: ``[B]``.
    """
    types = []
    for probs, n in zip(comp_probs.detach().cpu().double(), num_atoms.tolist(), strict=True):
        counts = torch.round(probs * n).long()
        chosen = torch.repeat_interleave(torch.arange(1, probs.shape[0] + 1), counts)
        if chosen.shape[0] < n:
            left = (probs - counts.double() / n).clamp(min=0.0)
            if left.sum() <= 0:
                left = probs
            extra = torch.multinomial(left, n - chosen.shape[0], replacement=True,
                                      generator=generator) + 1
            chosen = torch.cat([chosen, extra])
        perm = torch.randperm(chosen.shape[0], generator=generator)
        types.append(chosen[perm][:n])
    return torch.cat(types).to(comp_probs.device)


def predicted_num_atoms(
    logits: Tensor, how: str = "argmax", generator: torch.Generator | None = None
) -> Tensor:
    """Number of atoms ``[B]`` from the head's logits ``[B, max_atoms + 1]``: the most likely
    count (``"argmax"``) or a draw from the softmax (``"sample"``, with the CPU ``generator``).
    A crystal needs at least one atom: the mode 0 becomes 1, and a draw never picks 0."""
    if how == "argmax":
        return logits.argmax(dim=-1).clamp(min=1)
    if how == "sample":
        probs = torch.softmax(logits.detach().double().cpu(), dim=-1)  # [B, max_atoms + 1]
        probs[:, 0] = 0.0
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1).to(logits.device)
    raise ValueError(f"num_atoms must be one of {', '.join(NUM_ATOMS_CHOICES)}, got {how!r}")


@torch.no_grad()
def decode(
    model: CDVAE,
    z: Tensor,
    cfg: DecodeConfig | LangevinConfig = DecodeConfig(),
    generator: torch.Generator | None = None,
    num_atoms: Tensor | None = None,
    atom_types: Tensor | None = None,
    callback: Callable[[Frame], None] | None = None,
    on_nonfinite: str = "raise",
) -> DecodeResult:
    """Algorithm 1 for a batch of latent vectors ``z [B, latent]``.

    ``num_atoms`` / ``atom_types`` force the true number of atoms / types (reconstruction
    options); forced types are kept fixed during the dynamics. The generator must live on the
    CPU; all random draws use it, so a seed reproduces a run. A bare :class:`LangevinConfig`
    decodes with the default :class:`DecodeConfig` options. ``on_nonfinite``: what a crystal
    whose dynamics stop being finite does, ``"raise"`` a ``SamplingError`` or ``"drop"`` out of
    the batch (:attr:`DecodeResult.failures`; see :func:`annealed_langevin`).
    """
    cfg = DecodeConfig.of(cfg)
    sampler = cfg.sampler
    device = z.device
    gen = generator or torch.Generator().manual_seed(0)
    if num_atoms is None:
        num_atoms = predicted_num_atoms(model.predict_num_atoms(z), cfg.num_atoms, gen)
    num_atoms = num_atoms.to(device)
    _, lengths, angles = model.predict_lattice(z, num_atoms)
    lengths, angles = decodable_cell(lengths, angles)
    lattice = lattice_params_to_matrix(lengths, angles)
    batch = torch.repeat_interleave(torch.arange(z.shape[0], device=device), num_atoms)
    if atom_types is None:
        comp = torch.softmax(model.fc_composition(z), dim=-1)
        types = sample_composition(comp, num_atoms, gen).to(device)
    else:
        types = atom_types.to(device)
        sampler = replace(sampler, update_types=False)
    frac = torch.rand((int(num_atoms.sum()), 3), generator=gen).to(device)

    sigmas = sampling_sigmas(model.sigmas, cfg)

    def score_fn(f: Tensor, t: Tensor, level: int):
        return model.decode_scores(z, f, t, num_atoms, lattice, batch, sigmas[level])

    result = annealed_langevin(score_fn, frac, types, lattice, batch, sigmas, sampler, gen,
                               callback, on_nonfinite)
    return DecodeResult(result.frac_coords, result.atom_types, num_atoms, lengths, angles, z,
                        result.frames, result.failures)


def sampling_sigmas(model_sigmas: Tensor, cfg: DecodeConfig | LangevinConfig) -> Tensor:
    """The noise levels a run of ``cfg`` walks: the model's table, or ``cfg.num_levels``
    geometric levels spanning the same range (:attr:`DecodeConfig.num_levels`)."""
    cfg = DecodeConfig.of(cfg)
    if cfg.num_levels is None or cfg.num_levels == model_sigmas.shape[0]:
        return model_sigmas
    return geometric_sigmas(float(model_sigmas[0]), float(model_sigmas[-1]), cfg.num_levels).to(
        device=model_sigmas.device, dtype=model_sigmas.dtype)


def decode_steps(model: CDVAE, cfg: DecodeConfig | LangevinConfig) -> int:
    """Steps (decoder calls) :func:`decode` takes with ``cfg`` for each batch: over the noise
    levels it really walks (:func:`sampling_sigmas`), not the model's own table."""
    cfg = DecodeConfig.of(cfg)
    return score_evaluations(sampling_sigmas(model.sigmas, cfg), cfg.sampler)


def decode_dropping_failures(model: CDVAE, z: Tensor, cfg, generator, names: Sequence[str],
                             **kwargs) -> list[Structure | None]:
    """:func:`decode` for a batch run: a crystal whose dynamics stop being finite is dropped
    (None, counted as invalid by the metrics) with a warning naming it (``names[i]``: what the
    user calls crystal ``i``), instead of ending the run for all."""
    res = decode(model, z, cfg, generator, on_nonfinite="drop", **kwargs)
    for i, where in res.failures.items():
        warnings.warn(f"{names[i]}: decoding failed ({where}); counted as an invalid sample",
                      RuntimeWarning, stacklevel=2)
    return res.structures()


def generate(
    model: CDVAE, num_samples: int, cfg: DecodeConfig | LangevinConfig = DecodeConfig(),
    seed: int = 0, batch_size: int = 256, progress: bool = True,
) -> list[Structure | None]:
    """``num_samples`` crystals with z drawn from the prior N(0, I); None for a failed decode
    (:func:`decode_dropping_failures`)."""
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    out: list[Structure] = []
    for start in tqdm(range(0, num_samples, batch_size), disable=not progress, desc="generate"):
        n = min(batch_size, num_samples - start)
        z = torch.randn(n, model.cfg.latent_dim, generator=gen).to(device)
        out.extend(decode_dropping_failures(
            model, z, cfg, gen, [f"sample {start + i}" for i in range(n)]))
    return out


@torch.no_grad()
def encode_dataset(
    model: CDVAE, dataset: CrystalDataset, batch_size: int = 256, sample: bool = False,
    seed: int = 0,
) -> Tensor:
    """Latent vectors ``[len(dataset), latent]`` (the mean, or a sample when ``sample``)."""
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    zs = []
    for start in range(0, len(dataset), batch_size):
        b: CrystalBatch = dataset.collate(range(start, min(len(dataset), start + batch_size)))
        mu, log_var, _ = model.encode(b.to(device))
        if sample:
            eps = torch.randn(mu.shape, generator=gen).to(device)
            mu = mu + eps * torch.exp(0.5 * log_var)
        zs.append(mu)
    return torch.cat(zs) if zs else torch.zeros(0, model.cfg.latent_dim)


def reconstruct(
    model: CDVAE,
    dataset: CrystalDataset,
    cfg: DecodeConfig | LangevinConfig = DecodeConfig(),
    seed: int = 0,
    batch_size: int = 256,
    force_num_atoms: bool = False,
    force_atom_types: bool = False,
    indices: Sequence[int] | None = None,
    progress: bool = True,
) -> list[Structure | None]:
    """Encode each crystal (latent mean) and decode it once, with the most likely number of
    atoms whatever ``cfg.num_atoms`` says (a reconstruction asks for the likeliest crystal).
    None for a failed decode (:func:`decode_dropping_failures`)."""
    cfg = replace(DecodeConfig.of(cfg), num_atoms="argmax")
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    idx = list(range(len(dataset)) if indices is None else indices)
    out: list[Structure] = []
    for start in tqdm(range(0, len(idx), batch_size), disable=not progress, desc="reconstruct"):
        chunk = idx[start : start + batch_size]
        b = dataset.collate(chunk).to(device)
        with torch.no_grad():
            mu, _, _ = model.encode(b)
        out.extend(decode_dropping_failures(
            model, mu, cfg, gen, [f"crystal {dataset.material_ids[i]}" for i in chunk],
            num_atoms=b.num_atoms if (force_num_atoms or force_atom_types) else None,
            atom_types=b.atom_types if force_atom_types else None,
        ))
    return out
