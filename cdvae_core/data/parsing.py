"""From a benchmark CSV row to a checked, Niggli-reduced crystal record with its CrystalNN graph.

A record holds plain numpy arrays so it can cross process boundaries cheaply and be stored in
the on-disk cache without pickling pymatgen objects.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from pymatgen.analysis.local_env import CrystalNN
from pymatgen.core import Lattice, Structure

__all__ = [
    "BadRowError",
    "CrystalRecord",
    "GraphSettings",
    "parse_cif",
    "canonical_structure",
    "check_structure",
    "crystalnn_edges",
    "record_from_structure",
    "process_row",
]

MAX_Z = 100
MIN_VOLUME_PER_CELL = 0.1  # Å^3; below this a cell is treated as degenerate


class BadRowError(ValueError):
    """A structure the data layer cannot use; ``reason`` says why."""

    def __init__(self, reason: str, row: int | None = None, material_id: str | None = None):
        self.reason = reason
        self.row = row
        self.material_id = material_id
        where = []
        if row is not None:
            where.append(f"row {row}")
        if material_id is not None:
            where.append(f"material_id {material_id}")
        super().__init__(f"{', '.join(where)}: {reason}" if where else reason)


@dataclass(frozen=True)
class GraphSettings:
    """Settings of the encoder graph; part of the cache key.

    The CrystalNN parameters are those of the reference configuration (no distance cutoffs,
    no electronegativity weighting, no porous adjustment).
    """

    method: str = "crystalnn"
    niggli: bool = True
    primitive: bool = False

    def key(self) -> str:
        return f"{self.method}-niggli{int(self.niggli)}-prim{int(self.primitive)}-v1"


@dataclass
class CrystalRecord:
    """One crystal, Niggli-reduced, with its encoder graph.

    Attributes:
        frac_coords: ``[N, 3]`` fractional coordinates in ``[0, 1)``.
        atom_types: ``[N]`` atomic numbers.
        lengths: ``[3]`` lattice lengths (Å).
        angles_deg: ``[3]`` lattice angles (degrees).
        edge_index: ``[2, E]`` CrystalNN bonds (row 0 neighbour, row 1 centre).
        images: ``[E, 3]`` integer image offset of the neighbour.
    """

    frac_coords: np.ndarray
    atom_types: np.ndarray
    lengths: np.ndarray
    angles_deg: np.ndarray
    edge_index: np.ndarray
    images: np.ndarray


def parse_cif(cif: str) -> Structure:
    """pymatgen Structure of a CIF string; :class:`BadRowError` if it cannot be read."""
    if not isinstance(cif, str) or not cif.strip():
        raise BadRowError("empty CIF")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = Structure.from_str(cif, fmt="cif")
    except Exception as exc:  # pymatgen raises many types for a bad CIF
        raise BadRowError(f"unparsable CIF ({type(exc).__name__}: {exc})") from None
    return structure


def check_structure(structure: Structure, max_atoms: int | None = None) -> None:
    """Raise :class:`BadRowError` for a structure the model cannot represent: disorder or partial
    occupancy, elements outside 1..100, too many atoms, a NaN or degenerate lattice."""
    if len(structure) == 0:
        raise BadRowError("structure has no atoms")
    if not structure.is_ordered:
        raise BadRowError("disordered or partially occupied sites are not supported")
    for site in structure:
        occ = sum(site.species.values())
        if not math.isclose(occ, 1.0, abs_tol=1e-6):
            raise BadRowError(f"site {site.species_string} has occupancy {occ:g} (must be 1)")
        z = site.specie.Z
        if not 1 <= z <= MAX_Z:
            raise BadRowError(f"element {site.specie} (Z={z}) outside 1..{MAX_Z}")
    if max_atoms is not None and len(structure) > max_atoms:
        raise BadRowError(f"{len(structure)} atoms exceeds the dataset maximum of {max_atoms}")
    matrix = structure.lattice.matrix
    if not np.all(np.isfinite(matrix)) or not np.all(np.isfinite(structure.frac_coords)):
        raise BadRowError("lattice or coordinates contain NaN or infinity")
    if abs(structure.lattice.volume) < MIN_VOLUME_PER_CELL:
        raise BadRowError(f"degenerate lattice (volume {structure.lattice.volume:.3g} Å^3)")


def canonical_structure(structure: Structure, settings: GraphSettings = GraphSettings()) -> Structure:
    """Niggli-reduced (optionally primitive) structure rebuilt from its six lattice parameters,
    so that the lattice matrix follows the canonical orientation of ``Lattice.from_parameters``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if settings.primitive:
            structure = structure.get_primitive_structure()
        if settings.niggli:
            structure = structure.get_reduced_structure(reduction_algo="niggli")
        lattice = Lattice.from_parameters(*structure.lattice.parameters)
        return Structure(
            lattice, structure.species, structure.frac_coords % 1.0, coords_are_cartesian=False
        )


_CRYSTALNN: CrystalNN | None = None


def _crystalnn() -> CrystalNN:
    global _CRYSTALNN
    if _CRYSTALNN is None:  # one instance per process: its construction is not free
        _CRYSTALNN = CrystalNN(distance_cutoffs=None, x_diff_weight=-1, porous_adjustment=False)
    return _CRYSTALNN


def crystalnn_edges(structure: Structure) -> tuple[np.ndarray, np.ndarray]:
    """CrystalNN bonds as a directed periodic multigraph.

    Returns ``edge_index [2, E]`` (row 0 neighbour, row 1 centre) and ``images [E, 3]``. Each
    bond found from either end is stored in both directions, de-duplicated, as a symmetric
    multigraph; ``get_all_nn_info`` is used directly rather than through ``StructureGraph``,
    which would add a networkx graph we do not need.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        all_nn = _crystalnn().get_all_nn_info(structure)
    edges: set[tuple[int, int, int, int, int]] = set()
    for centre, neighbours in enumerate(all_nn):
        for nn in neighbours:
            j = int(nn["site_index"])
            k = tuple(int(round(x)) for x in nn["image"])
            edges.add((j, centre, *k))
            edges.add((centre, j, -k[0], -k[1], -k[2]))
    if not edges:
        return np.zeros((2, 0), dtype=np.int64), np.zeros((0, 3), dtype=np.int64)
    arr = np.array(sorted(edges, key=lambda e: (e[1], e[0], e[2], e[3], e[4])), dtype=np.int64)
    return arr[:, :2].T.copy(), arr[:, 2:].copy()


def record_from_structure(
    structure: Structure,
    max_atoms: int | None = None,
    settings: GraphSettings = GraphSettings(),
    with_graph: bool = True,
) -> CrystalRecord:
    """Check, reduce and graph one structure."""
    check_structure(structure, max_atoms)
    canon = canonical_structure(structure, settings)
    if with_graph:
        edge_index, images = crystalnn_edges(canon)
    else:
        edge_index, images = np.zeros((2, 0), np.int64), np.zeros((0, 3), np.int64)
    lat = canon.lattice
    return CrystalRecord(
        frac_coords=np.asarray(canon.frac_coords, dtype=np.float64) % 1.0,
        atom_types=np.array([s.specie.Z for s in canon], dtype=np.int64),
        lengths=np.array(lat.abc, dtype=np.float64),
        angles_deg=np.array(lat.angles, dtype=np.float64),
        edge_index=edge_index,
        images=images,
    )


def process_row(args: tuple[int, str, str, int | None, GraphSettings]):
    """One CSV row ``(row, material_id, cif, max_atoms, settings)`` to
    ``(row, material_id, record or None, reason or None)``; runs in a graph worker, which
    imports this module only."""
    row, material_id, cif, max_atoms, settings = args
    try:
        record = record_from_structure(parse_cif(cif), max_atoms, settings)
    except BadRowError as exc:
        return row, material_id, None, exc.reason
    except Exception as exc:  # a pymatgen failure on a strange structure is still a bad row
        return row, material_id, None, f"{type(exc).__name__}: {exc}"
    return row, material_id, record, None
