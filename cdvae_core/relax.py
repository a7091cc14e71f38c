"""Physical checks of generated crystals with a universal machine-learned potential (CHGNet).

CHGNet ships its weights inside its PyPI package, so relaxation works offline. A structure that
barely moves when relaxed sits near a local minimum of the potential energy surface, which is
what the paper's decoder is meant to produce (section 3.2: dE/dX = 0).

Install with ``pip install 'cdvae-core[relax]'``.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from pymatgen.core import Structure

__all__ = ["RelaxResult", "RelaxationUnavailable", "relax_structures", "relaxation_summary"]


class RelaxationUnavailable(ImportError):
    """The potential's package is not installed."""


@dataclass
class RelaxResult:
    """One relaxation.

    energy_per_atom_eV: CHGNet energy of the relaxed structure; initial_energy_per_atom_eV: of
    the input; rms_displacement_A: root mean square minimum-image displacement of the atoms
    (relaxed lattice); volume_change: relative; converged: max force below ``fmax``;
    trajectory: the structures along the relaxation (every ``keep_every`` steps, ends included).
    """

    structure: Structure
    energy_per_atom_eV: float
    initial_energy_per_atom_eV: float
    rms_displacement_A: float
    volume_change: float
    steps: int
    converged: bool
    trajectory: list[Structure] = field(default_factory=list)
    error: str | None = None


def _load_chgnet():
    try:
        from chgnet.model import CHGNet, StructOptimizer
    except ImportError as exc:
        raise RelaxationUnavailable(
            "relaxation needs the CHGNet package (its weights ship inside it and load offline): "
            "pip install 'cdvae-core[relax]'  (or: pip install chgnet)"
        ) from exc
    with contextlib.redirect_stdout(io.StringIO()):  # CHGNet prints its version on load
        model = CHGNet.load(verbose=False)
    return model, StructOptimizer


def _rms_displacement(a: Structure, b: Structure) -> float:
    d = np.asarray(b.frac_coords) - np.asarray(a.frac_coords)
    d -= np.round(d)
    cart = d @ np.asarray(b.lattice.matrix)
    return float(np.sqrt((cart**2).sum(-1).mean()))


def relax_structures(
    structures: Sequence[Structure],
    fmax: float = 0.1,
    steps: int = 200,
    relax_cell: bool = True,
    keep_every: int = 5,
    device: str = "cpu",
    callback: Callable[[int, RelaxResult], None] | None = None,
) -> list[RelaxResult]:
    """Relax each structure with CHGNet (FIRE, forces below ``fmax`` eV/Å or ``steps``).

    A structure CHGNet cannot handle gets a result with ``error`` set (never an exception for
    one bad sample); a missing package raises :class:`RelaxationUnavailable`.
    """
    if fmax <= 0 or steps < 1 or keep_every < 1:
        raise ValueError(f"need fmax > 0, steps >= 1, keep_every >= 1 (got {fmax}, {steps}, "
                         f"{keep_every})")
    model, optimizer_cls = _load_chgnet()
    optimizer = optimizer_cls(model=model, use_device=device)
    results = []
    for i, s in enumerate(structures):
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                out = optimizer.relax(s, fmax=fmax, steps=steps, relax_cell=relax_cell,
                                      verbose=False)
            final: Structure = out["final_structure"]
            traj = out["trajectory"]
            n_steps = len(traj.energies)
            frames = []
            for k in sorted(set(range(0, n_steps, keep_every)) | {n_steps - 1}):
                frames.append(Structure(traj.cells[k], s.species, traj.atom_positions[k],
                                        coords_are_cartesian=True))
            forces = np.asarray(traj.forces[-1])
            res = RelaxResult(
                structure=final,
                energy_per_atom_eV=float(traj.energies[-1]) / len(s),
                initial_energy_per_atom_eV=float(traj.energies[0]) / len(s),
                rms_displacement_A=_rms_displacement(s, final),
                volume_change=final.volume / s.volume - 1.0,
                steps=n_steps,
                converged=bool(np.linalg.norm(forces, axis=-1).max() <= fmax),
                trajectory=frames,
            )
        except Exception as exc:  # one unphysical sample must not stop a batch
            res = RelaxResult(s, math.nan, math.nan, math.nan, math.nan, 0, False,
                              error=f"{type(exc).__name__}: {exc}")
        results.append(res)
        if callback is not None:
            callback(i, res)
    return results


def relaxation_summary(results: Sequence[RelaxResult], rms_threshold_A: float = 0.1,
                       volume_threshold: float = 0.05) -> dict[str, float]:
    """Mean energy per atom, median RMS displacement, and the fraction of structures that
    barely move (RMS displacement below ``rms_threshold_A`` and volume change below
    ``volume_threshold``): a proxy for "already at a local minimum"."""
    ok = [r for r in results if r.error is None]
    if not ok:
        return {"relaxed": 0, "failed": len(results)}
    rms = np.array([r.rms_displacement_A for r in ok])
    dv = np.abs([r.volume_change for r in ok])
    return {
        "relaxed": len(ok),
        "failed": len(results) - len(ok),
        "mean_energy_per_atom_eV": float(np.mean([r.energy_per_atom_eV for r in ok])),
        "median_rms_displacement_A": float(np.median(rms)),
        "fraction_barely_moving": float(np.mean((rms < rms_threshold_A) & (dv < volume_threshold))),
        "fraction_converged": float(np.mean([r.converged for r in ok])),
        "rms_threshold_A": rms_threshold_A,
        "volume_threshold": volume_threshold,
    }
