"""Langevin trajectories as structures, per-atom tables, extended XYZ and payloads of the app's 3D
viewer."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pandas as pd
from pymatgen.core import Element, Lattice, Structure
from torch import Tensor

from cdvae_core.diffusion.langevin import Frame
from cdvae_core.model.decode import DecodeResult

__all__ = ["frame_atom_table", "frame_structure", "frame_structures", "trajectory_to_extxyz",
           "viewer_frame"]


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
