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
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pymatgen.core import Structure

__all__ = ["RelaxResult", "RelaxationUnavailable", "load_chgnet", "relax_structures",
           "relaxation_summary", "require_chgnet"]

#: a relaxation "barely moves" a structure below both thresholds (see :func:`relaxation_summary`)
BARELY_MOVING_RMS_A = 0.1
BARELY_MOVING_VOLUME = 0.05
_INSTALL_HINT = (
    "relaxation needs the CHGNet package (its weights ship inside it and load offline): "
    "pip install 'cdvae-core[relax]'  (or: pip install chgnet)"
)


class RelaxationUnavailable(ImportError):
    """The potential's package is not installed."""


@dataclass
class RelaxResult:
    """One relaxation.

    energy_per_atom_eV: CHGNet energy of the relaxed structure; initial_energy_per_atom_eV: of
    the input; rms_displacement_A: root mean square minimum-image displacement of the atoms
    (relaxed lattice); volume_change: relative; steps: optimiser steps taken (0 when the input
    was already relaxed); converged: max force on an atom below ``fmax`` at the end;
    trajectory: the structures along the relaxation (every ``keep_every`` steps, ends included),
    with the optimiser step and the energy per atom of each in ``trajectory_steps`` and
    ``trajectory_energy_per_atom_eV``.
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
    trajectory_steps: list[int] = field(default_factory=list)
    trajectory_energy_per_atom_eV: list[float] = field(default_factory=list)

    @property
    def barely_moved(self) -> bool:
        """Below both "barely moves" thresholds (False for a failed relaxation)."""
        return (self.error is None and self.rms_displacement_A < BARELY_MOVING_RMS_A
                and abs(self.volume_change) < BARELY_MOVING_VOLUME)


def require_chgnet() -> str:
    """CHGNet's version; :class:`RelaxationUnavailable` (with the install command) if the
    package cannot be imported. Cheap: it loads no weights, so callers check it before any
    long computation whose results the relaxation would need."""
    try:
        import chgnet
        from chgnet.model import CHGNet, StructOptimizer  # noqa: F401
    except ImportError as exc:
        raise RelaxationUnavailable(_INSTALL_HINT) from exc
    return str(getattr(chgnet, "__version__", "unknown"))


def load_chgnet() -> Any:
    """The pretrained CHGNet model, from the weights inside its package (no network).

    Load it once and pass it to :func:`relax_structures` (``model=``) to relax many batches."""
    require_chgnet()
    from chgnet.model import CHGNet

    with contextlib.redirect_stdout(io.StringIO()):  # CHGNet prints its version on load
        return CHGNet.load(verbose=False)


def _distinct_frames(traj) -> int:
    """Entries of CHGNet's trajectory observer without the repeat of the final state that
    ``StructOptimizer.relax`` records after the optimiser has stopped."""
    n = len(traj.energies)
    if n >= 2 and np.array_equal(traj.atom_positions[-1], traj.atom_positions[-2]) and \
            np.array_equal(traj.cells[-1], traj.cells[-2]):
        n -= 1
    return n


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
    model: Any = None,
) -> list[RelaxResult]:
    """Relax each structure with CHGNet (FIRE, forces below ``fmax`` eV/Å or ``steps``).

    ``model``: a CHGNet model from :func:`load_chgnet` (loaded here when None).
    A structure CHGNet cannot handle gets a result with ``error`` set (never an exception for
    one bad sample); a missing package raises :class:`RelaxationUnavailable`.
    """
    if fmax <= 0 or steps < 1 or keep_every < 1:
        raise ValueError(f"need fmax > 0, steps >= 1, keep_every >= 1 (got {fmax}, {steps}, "
                         f"{keep_every})")
    if model is None:
        model = load_chgnet()
    from chgnet.model import StructOptimizer

    with contextlib.redirect_stdout(io.StringIO()):  # it prints the device it runs on
        optimizer = StructOptimizer(model=model, use_device=device)
    results = []
    for i, s in enumerate(structures):
        try:
            with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                # raised inside CHGNet's stress computation on every step; harmless
                warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad")
                out = optimizer.relax(s, fmax=fmax, steps=steps, relax_cell=relax_cell,
                                      verbose=False)
            final: Structure = out["final_structure"]
            traj = out["trajectory"]
            n_frames = _distinct_frames(traj)  # the input, then one per optimiser step
            kept = sorted(set(range(0, n_frames, keep_every)) | {n_frames - 1})
            frames = [Structure(traj.cells[k], s.species, traj.atom_positions[k],
                                coords_are_cartesian=True) for k in kept]
            forces = np.asarray(traj.forces[n_frames - 1])
            res = RelaxResult(
                structure=final,
                energy_per_atom_eV=float(traj.energies[n_frames - 1]) / len(s),
                initial_energy_per_atom_eV=float(traj.energies[0]) / len(s),
                rms_displacement_A=_rms_displacement(s, final),
                volume_change=final.volume / s.volume - 1.0,
                steps=n_frames - 1,
                converged=bool(np.linalg.norm(forces, axis=-1).max() <= fmax),
                trajectory=frames,
                trajectory_steps=kept,
                trajectory_energy_per_atom_eV=[float(traj.energies[k]) / len(s) for k in kept],
            )
        except Exception as exc:  # one unphysical sample must not stop a batch
            res = RelaxResult(s, math.nan, math.nan, math.nan, math.nan, 0, False,
                              error=f"{type(exc).__name__}: {exc}")
        results.append(res)
        if callback is not None:
            callback(i, res)
    return results


def relaxation_summary(results: Sequence[RelaxResult],
                       rms_threshold_A: float = BARELY_MOVING_RMS_A,
                       volume_threshold: float = BARELY_MOVING_VOLUME) -> dict[str, float]:
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
        "mean_initial_energy_per_atom_eV": float(
            np.mean([r.initial_energy_per_atom_eV for r in ok])),
        "median_rms_displacement_A": float(np.median(rms)),
        "fraction_barely_moving": float(np.mean((rms < rms_threshold_A) & (dv < volume_threshold))),
        "fraction_converged": float(np.mean([r.converged for r in ok])),
        "rms_threshold_A": rms_threshold_A,
        "volume_threshold": volume_threshold,
    }
