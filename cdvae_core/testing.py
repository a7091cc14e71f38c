"""Invariance and equivariance checks for crystal networks, used by the tests of every encoder and
decoder (in the spirit of e3nn's ``assert_equivariant``).

Each transformation maps a :class:`CrystalBatch` to another description of the *same* periodic
crystals: permutation of atoms, rigid translation (coordinates wrapped back into the cell, the
encoder graph's image offsets adjusted), rotation of coordinates and lattice together, and an
arbitrary choice of periodic image for each atom. An encoder must give the same output; a decoder
the same type logits and a coordinate output that follows the rotation and the permutation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from cdvae_core.data.batch import CrystalBatch

__all__ = [
    "TOLERANCES",
    "random_rotation",
    "permute_batch",
    "translate_batch",
    "rotate_batch",
    "reimage_batch",
    "jitter_batch",
    "assert_encoder_invariant",
    "assert_decoder_equivariant",
]

#: absolute tolerance on outputs of order one, per dtype
TOLERANCES = {torch.float32: 2e-4, torch.float64: 1e-9}


def random_rotation(generator: torch.Generator, dtype=torch.float64) -> Tensor:
    """A uniformly random proper rotation ``[3, 3]`` (QR of a Gaussian matrix, sign-fixed)."""
    a = torch.randn(3, 3, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q.to(dtype)


def _with_lattice(batch: CrystalBatch, lattice: Tensor) -> CrystalBatch:
    return batch.replace(lattice_matrix=lattice)


def permute_batch(batch: CrystalBatch, generator: torch.Generator) -> tuple[CrystalBatch, Tensor]:
    """Atoms shuffled within each crystal; returns the new batch and ``perm`` with
    ``new[k] = old[perm[k]]``."""
    keys = torch.rand(batch.batch.shape[0], generator=generator, dtype=torch.float64)
    perm = torch.argsort(batch.batch.double() * 2.0 + keys)  # stays grouped by crystal
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.shape[0])
    new = batch.replace(
        frac_coords=batch.frac_coords[perm],
        atom_types=batch.atom_types[perm],
        batch=batch.batch[perm],
        edge_index=inv[batch.edge_index],
    )
    return new, perm


def translate_batch(batch: CrystalBatch, generator: torch.Generator) -> CrystalBatch:
    """Every crystal translated by a random vector, coordinates wrapped into ``[0, 1)``; the
    encoder graph's image offsets follow so each bond keeps its vector."""
    shift = torch.rand(batch.num_graphs, 3, generator=generator, dtype=torch.float64)
    moved = batch.frac_coords.double() + shift[batch.batch]
    wrapped = moved - torch.floor(moved)
    n = (moved - wrapped).round().long()  # integer part removed from each atom
    src, dst = batch.edge_index
    images = batch.images + n[src] - n[dst]
    return batch.replace(frac_coords=wrapped.to(batch.frac_coords.dtype), images=images)


def reimage_batch(batch: CrystalBatch, generator: torch.Generator, span: int = 2) -> CrystalBatch:
    """Each atom replaced by a random periodic image of itself (integer shifts of its fractional
    coordinates, not wrapped), with the encoder graph's offsets adjusted."""
    n = torch.randint(-span, span + 1, batch.frac_coords.shape, generator=generator)
    src, dst = batch.edge_index
    return batch.replace(
        frac_coords=batch.frac_coords + n.to(batch.frac_coords),
        images=batch.images - n[src] + n[dst],
    )


def rotate_batch(batch: CrystalBatch, rotation: Tensor) -> CrystalBatch:
    """Coordinates and lattice rotated together: lattice rows ``L -> L R^T`` (fractional
    coordinates are unchanged by definition)."""
    return _with_lattice(batch, batch.lattice @ rotation.T.to(batch.frac_coords))


def jitter_batch(batch: CrystalBatch, generator: torch.Generator, scale: float = 0.02):
    """Fractional coordinates moved by up to ``scale``: breaks the exact distance ties of
    symmetric crystals, at which a graph truncated to the k nearest neighbours is (by design)
    discontinuous, so that the checks measure the network and not the choice among tied
    neighbours. Noisy structures, the decoder's actual inputs, have no ties."""
    noise = (torch.rand(batch.frac_coords.shape, generator=generator, dtype=torch.float64) - 0.5)
    return batch.replace(frac_coords=batch.frac_coords + 2 * scale * noise.to(batch.frac_coords))


def _err(a: Tensor, b: Tensor) -> float:
    return float((a - b).abs().max()) if a.numel() else 0.0


def assert_encoder_invariant(
    encoder: Callable[[CrystalBatch], Tensor],
    batch: CrystalBatch,
    seed: int = 0,
    atol: float | None = None,
) -> dict[str, float]:
    """Assert ``encoder`` is invariant under permutation, translation, rotation and image choice;
    returns the max absolute error per transformation."""
    gen = torch.Generator().manual_seed(seed)
    dtype = batch.frac_coords.dtype
    tol = atol if atol is not None else TOLERANCES[dtype]
    encoder = torch.no_grad()(encoder)
    ref = encoder(batch)
    scale = max(1.0, float(ref.abs().max()))
    errors = {
        "permutation": _err(encoder(permute_batch(batch, gen)[0]), ref),
        "translation": _err(encoder(translate_batch(batch, gen)), ref),
        "rotation": _err(encoder(rotate_batch(batch, random_rotation(gen, dtype))), ref),
        "periodic_image": _err(encoder(reimage_batch(batch, gen)), ref),
    }
    bad = {k: v for k, v in errors.items() if v > tol * scale}
    assert not bad, f"encoder not invariant (tolerance {tol * scale:.1e}): {bad}"
    return errors


def assert_decoder_equivariant(
    decoder: Callable[..., tuple[Tensor, Tensor]],
    z: Tensor,
    batch: CrystalBatch,
    seed: int = 0,
    atol: float | None = None,
) -> dict[str, float]:
    """Assert the decoder's coordinate output is equivariant (rotates with the crystal, follows
    permutations, ignores translation and image choice) and its type logits invariant."""
    gen = torch.Generator().manual_seed(seed)
    dtype = batch.frac_coords.dtype
    tol = atol if atol is not None else TOLERANCES[dtype]

    @torch.no_grad()
    def run(b: CrystalBatch):
        return decoder(z, b.frac_coords, b.atom_types, b.num_atoms, b.lattice, b.batch)

    ref_x, ref_t = run(batch)
    scale = max(1.0, float(ref_x.abs().max()), float(ref_t.abs().max()))
    errors: dict[str, float] = {}
    pb, perm = permute_batch(batch, gen)
    x, t = run(pb)
    errors["permutation"] = max(_err(x, ref_x[perm]), _err(t, ref_t[perm]))
    x, t = run(translate_batch(batch, gen))
    errors["translation"] = max(_err(x, ref_x), _err(t, ref_t))
    rot = random_rotation(gen, dtype)
    x, t = run(rotate_batch(batch, rot))
    errors["rotation"] = max(_err(x, ref_x @ rot.T), _err(t, ref_t))
    x, t = run(reimage_batch(batch, gen))
    errors["periodic_image"] = max(_err(x, ref_x), _err(t, ref_t))
    bad = {k: v for k, v in errors.items() if v > tol * scale}
    assert not bad, f"decoder not equivariant (tolerance {tol * scale:.1e}): {bad}"
    return errors
