"""One crystal in the 3D viewer with the crystallographer's settings: cell choice (as
generated, Niggli, conventional), symmetrisation and its tolerance, supercell, bonds method,
polyhedra, image atoms; the space group at that tolerance; the shown cell as CIF / POSCAR /
extended XYZ."""

from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st
from pymatgen.core import Structure

from cdvae_core.explore import scene as scn
from cdvae_core.io import structure_to_cif, structure_to_poscar, write_extxyz
from components.viewer import show_structure


def _extxyz(structure: Structure) -> str:
    with tempfile.TemporaryDirectory() as tmp:  # the writer takes a path
        return write_extxyz([structure], Path(tmp) / "shown.extxyz").read_text()


DEFAULT_SYMPREC = 0.1  # Å, the tolerance of the gallery and the metrics (SPACEGROUP_SYMPREC)


def view_options(key: str) -> scn.SceneOptions:
    """The settings widgets; out-of-range values give a message and the default view."""
    with st.expander("View: cell, supercell, bonds, polyhedra, symmetry", expanded=True):
        c1, c2, c3, c4 = st.columns(4)
        cell = c1.selectbox("Cell", list(scn.CELL_CHOICES), format_func=scn.CELL_CHOICES.get,
                            key=f"{key}_cell")
        bonds = c2.selectbox("Bonds", list(scn.BOND_METHODS), key=f"{key}_bonds",
                             format_func={"covalent": "covalent radii (fast)",
                                          "crystalnn": "CrystalNN (slower)",
                                          "none": "none"}.get)
        tol = c3.slider("Symmetry tolerance (Å)", 0.0, 0.5, DEFAULT_SYMPREC, 0.01,
                        key=f"{key}_symprec", help="spglib's symprec, through pymatgen")
        sym = c4.checkbox("Symmetrised", key=f"{key}_sym",
                          help="spglib's idealised structure at this tolerance")
        poly = c4.checkbox("Polyhedra", key=f"{key}_poly",
                           help="around cations with 4-8 anion neighbours (BX6 octahedra)")
        images = c4.checkbox("Atoms bonded outside the cell", value=True, key=f"{key}_images")
        s1, s2, s3, _ = st.columns(4)
        sc = [s.number_input(f"Supercell {ax}", value=1, step=1, key=f"{key}_n{ax}")
              for s, ax in zip((s1, s2, s3), "abc", strict=True)]
    try:
        return scn.SceneOptions(supercell=tuple(sc), cell=cell, symprec=float(tol),
                                symmetrized=sym, bonds=bonds, polyhedra=poly, images=images)
    except scn.SceneError as exc:
        st.error(f"View settings not accepted: {exc}. Showing the default view.")
        return scn.SceneOptions()


def structure_view(structure: Structure, name: str, key: str, height: int = 380) -> None:
    """Settings, the 3D view, its space group and the downloads of the shown cell."""
    opts = view_options(key)
    try:
        shown = scn.shown_structure(structure, opts)
    except Exception as exc:  # spglib fails on some noisy cells: say so, show the raw cell
        st.warning(f"This cell choice failed for this structure ({exc}); showing it as generated.")
        opts = scn.SceneOptions(supercell=opts.supercell, bonds=opts.bonds,
                                polyhedra=opts.polyhedra, images=opts.images)
        shown = scn.shown_structure(structure, opts)
    show_structure(shown, name, height=height, key=f"{key}_viewer",
                   options=scn.SceneOptions(bonds=opts.bonds, polyhedra=opts.polyhedra,
                                            images=opts.images))
    sym = scn.symmetry_report(structure, opts.symprec)
    number = "" if sym["number"] is None else f" ({sym['number']})"
    st.caption(f"Space group **{sym['symbol']}**{number}, {sym['crystal_system']}, at tolerance "
               f"{opts.symprec:.2f} Å · {opts.describe()} · hover an atom for its element, "
               "site and fractional coordinates")
    d1, d2, d3 = st.columns(3)
    stem = f"{name}_shown"
    d1.download_button("Shown cell (CIF)", structure_to_cif(shown), f"{stem}.cif",
                       "chemical/x-cif", key=f"{key}_shown_cif")
    d2.download_button("Shown cell (POSCAR)", structure_to_poscar(shown), f"{stem}.vasp",
                       "text/plain", key=f"{key}_shown_poscar")
    d3.download_button("Shown cell (extended XYZ)", _extxyz(shown), f"{stem}.extxyz",
                       "chemical/x-extxyz", key=f"{key}_shown_xyz")
