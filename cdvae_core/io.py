"""Reading and writing crystal structures: CIF (single, folder, zip), extended XYZ, POSCAR.

Every writer is atomic: it writes a temporary file beside the target and renames it over the
target with :func:`os.replace`, so a reader never sees half a file and an interrupted run leaves
the previous file intact. Every reader raises a :class:`ValueError` naming the file and the
reason (malformed CIF, partial occupancy or disorder, unknown element) instead of a pymatgen
traceback.
"""

from __future__ import annotations

import io
import os
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from pymatgen.core import DummySpecies, Structure
from pymatgen.io.cif import CifWriter

from cdvae_core.data.parsing import BadRowError, parse_cif
from cdvae_core.utils import atomic_write

# pymatgen.io.ase and pymatgen.io.vasp are imported where used: together they take two seconds
# to import (ASE, scipy.signal), on every launch of the app, for formats most runs never write

__all__ = [
    "atomic_write",
    "load_structures",
    "load_named_structures",
    "structure_from_cif",
    "structure_to_cif",
    "structure_to_poscar",
    "write_cif_zip",
    "write_extxyz",
]

PathLike = str | os.PathLike[str]
_XYZ_SUFFIXES = (".xyz", ".extxyz")


def _check_loaded(structure: Structure, where: str) -> Structure:
    """Reject what the metrics and the model cannot represent; ``where`` names the source."""
    for index, site in enumerate(structure):
        if not site.is_ordered or abs(sum(site.species.values()) - 1.0) > 1e-6:
            raise ValueError(
                f"{where}: site {index} ({site.species_string}) is disordered or partially "
                "occupied; only fully ordered structures are supported"
            )
        if isinstance(site.specie, DummySpecies):
            # pymatgen turns an unknown symbol into a dummy species instead of failing.
            symbol = str(site.specie).rstrip("0123456789+-")
            raise ValueError(f"{where}: site {index} has unknown element {symbol!r}")
    if len(structure) == 0:
        raise ValueError(f"{where}: structure has no atoms")
    return structure


def structure_from_cif(text: str, where: str = "<string>") -> Structure:
    """Parse one CIF string into an ordered :class:`Structure`.

    Args:
        text: CIF text (the first data block is read, as by pymatgen).
        where: name of the source, used in error messages (a file name, a CSV row).

    Raises:
        ValueError: naming ``where`` and the reason (malformed CIF, disorder, unknown element).
    """
    try:
        structure = parse_cif(text)
    except BadRowError as exc:
        raise ValueError(f"{where}: {exc.reason}") from None
    return _check_loaded(structure, where)


def _read_extxyz(path: Path) -> list[tuple[str, Structure]]:
    from ase.io import read  # ase is only needed for this format

    try:
        frames = read(path, index=":", format="extxyz")
    except Exception as exc:  # ase raises many types for a malformed file
        raise ValueError(
            f"{path}: cannot read as extended XYZ ({type(exc).__name__}: {exc})"
        ) from None
    named = []
    for i, atoms in enumerate(frames):
        where = f"{path} (frame {i})"
        if not all(atoms.pbc) or abs(atoms.cell.volume) == 0.0:
            raise ValueError(f'{where}: no periodic lattice (need Lattice=... and pbc="T T T")')
        from pymatgen.io.ase import AseAtomsAdaptor

        try:
            structure = AseAtomsAdaptor.get_structure(atoms)
        except Exception as exc:
            raise ValueError(f"{where}: {type(exc).__name__}: {exc}") from None
        name = str(atoms.info.get("name", f"{i:05d}"))
        named.append((name, _check_loaded(structure, where)))
    return named


def _read_csv(path: Path) -> list[tuple[str, Structure]]:
    frame = pd.read_csv(path)
    if "cif" not in frame.columns:
        raise ValueError(f"{path}: CSV has no 'cif' column (columns: {list(frame.columns)})")
    ids = frame["material_id"] if "material_id" in frame.columns else frame.index
    return [
        (str(mid), structure_from_cif(cif, f"{path} (row {row}, material_id {mid})"))
        for row, (mid, cif) in enumerate(zip(ids, frame["cif"], strict=True))
    ]


def load_named_structures(path: PathLike) -> list[tuple[str, Structure]]:
    """Read structures with a name for each, from any format :func:`load_structures` accepts.

    Names are the file stem (folder, zip), the ``name`` key of the frame info or the frame
    index (extended XYZ), or the ``material_id`` column (CSV).
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file or folder")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".cif")
        if not files:
            raise ValueError(f"{path}: folder contains no .cif files")
        return [(p.stem, structure_from_cif(p.read_text(), str(p))) for p in files]
    suffix = path.suffix.lower()
    if suffix == ".zip":
        try:
            archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile as exc:
            raise ValueError(f"{path}: not a valid zip file ({exc})") from None
        with archive:
            members = sorted(n for n in archive.namelist() if n.lower().endswith(".cif"))
            if not members:
                raise ValueError(f"{path}: zip contains no .cif files")
            return [
                (
                    Path(name).stem,
                    structure_from_cif(archive.read(name).decode("utf-8"), f"{path}:{name}"),
                )
                for name in members
            ]
    if suffix == ".cif":
        return [(path.stem, structure_from_cif(path.read_text(), str(path)))]
    if suffix in _XYZ_SUFFIXES:
        return _read_extxyz(path)
    if suffix == ".csv":
        return _read_csv(path)
    raise ValueError(
        f"{path}: unsupported format {suffix!r} (expected a folder of .cif, .zip, .cif, "
        ".xyz/.extxyz or a benchmark .csv)"
    )


def load_structures(path: PathLike) -> list[Structure]:
    """Read structures from a folder of ``.cif`` files, a ``.zip`` of CIFs, a single ``.cif``,
    an extended XYZ file with lattices, or a benchmark CSV (``cif`` column).

    Files of a folder or zip are read in sorted name order.

    Raises:
        ValueError: naming the file (and member, frame or row) and the reason.
    """
    return [structure for _, structure in load_named_structures(path)]


def structure_to_cif(structure: Structure) -> str:
    """P1 CIF text of ``structure`` (pymatgen's writer, no symmetrisation)."""
    return str(CifWriter(structure))


def structure_to_poscar(structure: Structure) -> str:
    """VASP POSCAR text of ``structure`` (fractional coordinates)."""
    from pymatgen.io.vasp import Poscar

    return Poscar(structure).get_str()


def _unique_names(names: Sequence[str] | None, count: int) -> list[str]:
    if names is None:
        return [f"{i:05d}" for i in range(count)]
    if len(names) != count:
        raise ValueError(f"got {len(names)} names for {count} structures")
    if len(set(names)) != count:
        raise ValueError("names must be unique (they become file names in the archive)")
    return [str(n) for n in names]


def write_cif_zip(
    structures: Sequence[Structure], path: PathLike, names: Sequence[str] | None = None
) -> Path:
    """Write one ``<name>.cif`` per structure into a zip archive at ``path`` (atomic).

    Args:
        structures: structures to write.
        path: destination ``.zip``.
        names: unique file stems; default ``00000``, ``00001``, ...

    Returns:
        ``path`` as a :class:`Path`.
    """
    names = _unique_names(names, len(structures))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, structure in zip(names, structures, strict=True):
            archive.writestr(f"{name}.cif", structure_to_cif(structure))
    with atomic_write(path, "wb") as fh:
        fh.write(buffer.getvalue())
    return Path(path)


def write_extxyz(
    structures: Sequence[Structure],
    path: PathLike,
    info: Sequence[Mapping[str, Any]] | None = None,
) -> Path:
    """Write structures as frames of an extended XYZ file with lattices (atomic).

    Args:
        structures: structures to write.
        path: destination ``.xyz`` / ``.extxyz``.
        info: optional per-structure key/value pairs stored in each frame's comment line
            (e.g. ``{"name": ..., "energy_per_atom": ...}``); same length as ``structures``.

    Returns:
        ``path`` as a :class:`Path`.
    """
    from ase.io import write  # ase is only needed for this format

    if info is not None and len(info) != len(structures):
        raise ValueError(f"got {len(info)} info entries for {len(structures)} structures")
    from pymatgen.io.ase import AseAtomsAdaptor

    frames = []
    for i, structure in enumerate(structures):
        atoms = AseAtomsAdaptor.get_atoms(structure)
        if info is not None:
            atoms.info.update(dict(info[i]))
        frames.append(atoms)
    with atomic_write(path, "w") as fh, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write(fh, frames, format="extxyz")
    return Path(path)
