"""Small material helpers for looking at crystals: formulas, composition families and vectors, a
table of a dataset, the nearest reference material by composition. Cheap (no CrystalNN)."""

from __future__ import annotations

import functools
import math
import warnings
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd
from pymatgen.core import Composition, Element

from cdvae_core.nn.base import MAX_ATOMIC_NUM

if TYPE_CHECKING:
    from cdvae_core.data.dataset import CrystalDataset

__all__ = ["cell_volumes", "composition_vectors", "dataset_table", "nearest_reference",
           "reduced_formula", "structure_family", "chemical_family"]


def reduced_formula(atomic_numbers: Sequence[int]) -> str:
    """Reduced formula of a list of atomic numbers, e.g. ``[38, 22, 8, 8, 8] -> "SrTiO3"``."""
    return Composition(Counter(_element(int(z)).symbol for z in atomic_numbers)).reduced_formula


class _ElementFacts(NamedTuple):
    symbol: str
    electronegativity: float  # Pauling; -1 where it has none (noble gases)
    is_metal: bool


@functools.cache
def _element(z: int) -> _ElementFacts:
    """The facts the tables need about element ``z``, looked up once per element
    (``Element.from_Z`` is slow enough to dominate a table of thousands of crystals, which the
    app builds on every launch)."""
    el = Element.from_Z(z)
    # Noble gases have no Pauling electronegativity (pymatgen returns NaN and warns).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chi = el.X
    return _ElementFacts(el.symbol, chi if math.isfinite(chi) else -1.0, bool(el.is_metal))


def structure_family(atomic_numbers: Sequence[int]) -> str:
    """Composition family used to colour the latent map: the anion (the most electronegative
    element), e.g. ``"O"`` for oxides and ``"N"`` for nitrides; a single-element crystal is its
    element."""
    zs = sorted(set(int(z) for z in atomic_numbers))
    if not zs:
        return "?"
    if len(zs) == 1:
        return _element(zs[0]).symbol
    chi = [_element(z).electronegativity for z in zs]
    return _element(zs[int(np.argmax(chi))]).symbol


#: chemical family named by the anion (the most electronegative element) of a compound
_ANION_FAMILIES = {
    "O": "oxide", "N": "nitride", "C": "carbide", "B": "boride", "H": "hydride",
    "F": "halide", "Cl": "halide", "Br": "halide", "I": "halide",
    "S": "chalcogenide", "Se": "chalcogenide", "Te": "chalcogenide",
    "P": "pnictide", "As": "pnictide", "Sb": "pnictide",
    "Si": "silicide / germanide", "Ge": "silicide / germanide",
}


def chemical_family(atomic_numbers: Sequence[int]) -> str:
    """The chemical family a materials scientist would file a crystal under: ``"element"`` for
    one element, ``"intermetallic"`` when every element is a metal, else by its anion
    (:func:`structure_family`): oxide, nitride, halide, chalcogenide, pnictide, carbide, boride,
    hydride, silicide / germanide, or ``"<anion> compound"``."""
    zs = sorted(set(int(z) for z in atomic_numbers))
    if not zs:
        return "?"
    if len(zs) == 1:
        return "element"
    if all(_element(z).is_metal for z in zs):
        return "intermetallic"
    anion = structure_family(zs)
    return _ANION_FAMILIES.get(anion, f"{anion} compound")


def composition_vectors(atom_types: Sequence[Sequence[int]]) -> np.ndarray:
    """Element fractions ``[M, 100]`` (Z = 1..100) of each crystal's atomic numbers."""
    out = np.zeros((len(atom_types), MAX_ATOMIC_NUM))
    for i, zs in enumerate(atom_types):
        counts = np.bincount(np.asarray(zs, dtype=np.int64) - 1, minlength=MAX_ATOMIC_NUM)
        out[i] = counts[:MAX_ATOMIC_NUM] / max(1, counts.sum())
    return out


def cell_volumes(lengths: np.ndarray, angles_deg: np.ndarray) -> np.ndarray:
    """Cell volumes (Å^3) of ``[M, 3]`` lengths (Å) and angles (degrees), all at once: the
    closed form V = abc sqrt(1 - cos²α - cos²β - cos²γ + 2 cosα cosβ cosγ) that pymatgen's
    ``Lattice.volume`` equals, vectorised here because building one ``Lattice`` per crystal
    costs more than the rest of a dataset's table."""
    c = np.cos(np.radians(angles_deg))
    g = 1.0 - (c**2).sum(axis=1) + 2.0 * c.prod(axis=1)
    return np.prod(lengths, axis=1) * np.sqrt(np.clip(g, 0.0, None))


def dataset_table(dataset: CrystalDataset) -> pd.DataFrame:
    """One row per crystal: ``material_id``, ``formula``, ``family`` (anion),
    ``chemical_family`` (:func:`chemical_family`), ``n_atoms``,
    ``n_elements``, ``volume_per_atom`` (Å^3) and ``prop``, from the dataset's tensors (cheap:
    no pymatgen Structure is built)."""
    rows = []
    volumes = cell_volumes(dataset.lengths.double().numpy(), dataset.angles_deg.double().numpy())
    for i in range(len(dataset)):
        s, n = int(dataset.atom_start[i]), int(dataset.num_atoms[i])
        zs = dataset.atom_types[s : s + n].tolist()
        rows.append(
            {
                "material_id": dataset.material_ids[i],
                "formula": reduced_formula(zs),
                "family": structure_family(zs),
                "chemical_family": chemical_family(zs),
                "n_atoms": n,
                "n_elements": len(set(zs)),
                "volume_per_atom": float(volumes[i]) / n,
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
