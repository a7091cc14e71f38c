"""From a benchmark CSV row to a checked, Niggli-reduced crystal record with its CrystalNN graph.

A record holds plain numpy arrays so it can cross process boundaries cheaply and be stored in
the on-disk cache without pickling pymatgen objects.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from pymatgen.core import Lattice, Structure

if TYPE_CHECKING:
    from pymatgen.analysis.local_env import CrystalNN

__all__ = [
    "BadRowError",
    "CrystalRecord",
    "GraphSettings",
    "parse_cif",
    "explain_cif_problem",
    "canonical_structure",
    "check_structure",
    "crystalnn_edges",
    "record_from_structure",
    "process_row",
    "process_structure",
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
    """pymatgen Structure of a CIF string; :class:`BadRowError` saying what is wrong with the
    file (in crystallographic terms, see :func:`explain_cif_problem`) if it cannot be read."""
    if not isinstance(cif, str) or not cif.strip():
        raise BadRowError("empty CIF")
    problem = explain_cif_problem(cif)
    if problem is not None:
        raise BadRowError(problem)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = Structure.from_str(cif, fmt="cif")
    except Exception as exc:  # pymatgen raises many types for a bad CIF
        first = (str(exc).splitlines() or [""])[0]
        raise BadRowError(f"pymatgen could not build a structure from this CIF ({first})") from None
    return structure


_CELL_TAGS = ("_cell_length_a", "_cell_length_b", "_cell_length_c",
              "_cell_angle_alpha", "_cell_angle_beta", "_cell_angle_gamma")


def _cif_number(value) -> float:
    """A CIF numeric value: '3.905(2)' -> 3.905; raises ValueError for text, '?' or '.'."""
    text = str(value).strip().split("(")[0]
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(text)
    return number


def explain_cif_problem(cif: str) -> str | None:
    """What makes ``cif`` unusable, in the user's terms, or None when nothing obvious is wrong.

    pymatgen answers a truncated file with ``ZeroDivisionError: integer modulo by zero`` and a
    zero-length, flat or cell-less one with ``Invalid CIF file with no structures!``; this reads
    the file's tags first (pymatgen's own CIF tokenizer, no structure built) and names the
    culprit: no data block, a loop cut off, a missing or impossible cell parameter, no atom
    positions, a coordinate or occupancy that is not a number.
    """
    from pymatgen.io.cif import CifFile

    if "data_" not in cif:
        return "no CIF data block (a line starting with data_): this is not a CIF file"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            blocks = list(CifFile.from_str(cif).data.values())
    except Exception:
        return ("the CIF is truncated or malformed: a loop_ ends before its values (the file "
                "may have been cut off)")
    if not blocks:
        return "no CIF data block found"
    data = blocks[0].data
    params = []
    for tag in _CELL_TAGS:
        name = tag.replace("_cell_", "").replace("_", " ")
        if tag not in data:
            return f"the cell parameter {tag} is missing"
        try:
            params.append(_cif_number(data[tag]))
        except ValueError:
            return f"the cell parameter {tag} is {data[tag]!r}, not a number"
        if tag.startswith("_cell_length") and params[-1] <= 0:
            return f"the cell {name} is {params[-1]:g} Å: lengths must be positive"
        if tag.startswith("_cell_angle") and not 0 < params[-1] < 180:
            return f"the cell {name} is {params[-1]:g}°: angles must lie between 0 and 180°"
    ca, cb, cg = (math.cos(math.radians(x)) for x in params[3:])
    volume_factor = 1 - ca * ca - cb * cb - cg * cg + 2 * ca * cb * cg
    volume = params[0] * params[1] * params[2] * math.sqrt(max(volume_factor, 0.0))
    if volume < MIN_VOLUME_PER_CELL:
        return (f"the cell is flat: angles {params[3]:g}°, {params[4]:g}°, {params[5]:g}° with "
                f"lengths {params[0]:g}, {params[1]:g}, {params[2]:g} Å enclose no volume")
    frac = all(f"_atom_site_fract_{x}" in data for x in "xyz")
    cart = all(f"_atom_site_Cartn_{x}" in data for x in "xyz")
    if not (frac or cart):
        return "the CIF has no atom positions (no _atom_site_fract_x/y/z loop)"
    keys = [f"_atom_site_fract_{x}" if frac else f"_atom_site_Cartn_{x}" for x in "xyz"]
    if "_atom_site_occupancy" in data:
        keys.append("_atom_site_occupancy")
    for key in keys:
        values = data[key] if isinstance(data[key], list) else [data[key]]
        for i, value in enumerate(values):
            try:
                number = _cif_number(value)
            except ValueError:
                return f"atom site {i}: {key} is {value!r}, not a number"
            if key == "_atom_site_occupancy" and not 0 < number <= 1 + 1e-6:
                return f"atom site {i}: occupancy {number:g} (must lie in (0, 1])"
    return None


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
    # imported here, not at the top: pymatgen's local_env takes 1.5 s to import, and a load
    # from the graph cache (the app's warm launch) never needs it
    from pymatgen.analysis.local_env import CrystalNN

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


def process_structure(args: tuple[int, Structure, int | None, GraphSettings]):
    """``(index, structure, max_atoms, settings)`` to ``(index, record or None, reason or
    None)``: :func:`process_row` for an in-memory structure (generated samples, uploads)."""
    index, structure, max_atoms, settings = args
    try:
        return index, record_from_structure(structure, max_atoms, settings), None
    except BadRowError as exc:
        return index, None, exc.reason
    except Exception as exc:  # pymatgen failing on a strange generated cell is a bad structure
        return index, None, f"{type(exc).__name__}: {exc}"
