"""Small display blocks shared by the pages: the latent readout, structure summaries, grids."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import torch
from pymatgen.core import Structure

from cdvae_core import explore
from cdvae_core.io import structure_to_cif, structure_to_poscar
from cdvae_core.metrics import describe_structures
from cdvae_core.metrics.evaluate import SPACEGROUP_SYMPREC
from components.viewer import show_structure


def describe(structures: list[Structure]) -> pd.DataFrame:
    """Validity (with reasons), formula, density, space group; in this process (a pool per
    rerun would cost more than the few structures a page shows)."""
    return describe_structures(structures, n_workers=1, progress=False)


def validity_text(row: pd.Series) -> str:
    if row["valid"]:
        return "valid"
    reasons = [r for r in (row["struct_reason"], row["comp_reason"]) if isinstance(r, str)]
    return "invalid: " + "; ".join(reasons)


def spacegroup_text(row: pd.Series) -> str:
    return "?" if pd.isna(row["spacegroup"]) else str(int(row["spacegroup"]))


def latent_readout(model, z: torch.Tensor, property_name: str, key: str) -> None:
    """What the latent heads predict for ``z``: atoms, lattice, composition, property."""
    r = explore.read_latent(model, z)
    c1, c2 = st.columns(2)
    c1.metric("Atoms", r.num_atoms, help=f"probability {r.num_atoms_prob:.2f}")
    c2.metric(f"{property_name} (predicted)", "n/a" if r.prop is None else f"{r.prop:.3f}")
    st.markdown(f"Composition drawn for {r.num_atoms} atoms: **{r.formula}**")
    a, b, c = r.lengths
    al, be, ga = r.angles_deg
    st.caption(f"Lattice: a {a:.2f} Å, b {b:.2f} Å, c {c:.2f} Å; "
               f"α {al:.1f}°, β {be:.1f}°, γ {ga:.1f}°")
    fig = go.Figure(go.Bar(x=[p for _, p in r.composition], y=[s for s, _ in r.composition],
                           orientation="h", marker_color="#4c78a8"))
    fig.update_layout(height=170, margin=dict(l=0, r=0, t=20, b=0), title="Composition head",
                      xaxis_title="probability", yaxis=dict(autorange="reversed"))
    st.plotly_chart(fig, key=f"{key}_composition", config={"displayModeBar": False})


def structure_details(structure: Structure, name: str, key: str) -> None:
    """Formula, space group, density, validity and CIF / POSCAR downloads of one structure."""
    row = describe([structure]).iloc[0]
    c1, c2, c3 = st.columns(3)
    c1.metric("Formula", row["formula"])
    c2.metric("Space group", spacegroup_text(row),
              help=f"international number, spglib at tolerance {SPACEGROUP_SYMPREC} Å")
    c3.metric("Density (g/cm³)", f"{row['density_g_cm3']:.2f}")
    (st.success if row["valid"] else st.warning)(validity_text(row))
    d1, d2 = st.columns(2)
    d1.download_button("CIF", structure_to_cif(structure), f"{name}.cif", "chemical/x-cif",
                       key=f"{key}_cif")
    d2.download_button("POSCAR", structure_to_poscar(structure), f"{name}.vasp", "text/plain",
                       key=f"{key}_poscar")


def structure_grid(structures: list[Structure], labels: list[str], key: str, cols: int = 5,
                   height: int = 220) -> None:
    """Small 3D views side by side, each with its caption (formula, validity, space group)."""
    table = describe(structures)
    columns = st.columns(min(cols, max(1, len(structures))))
    for i, (s, label) in enumerate(zip(structures, labels, strict=True)):
        row = table.iloc[i]
        with columns[i % len(columns)]:
            st.markdown(f"**{label}**: {row['formula'] or 'no crystal'}")
            if s is None:
                st.warning("Decoding failed: the sampler's coordinates stopped being finite.")
                continue
            show_structure(s, height=height, key=f"{key}_{i}")
            st.caption(f"SG {spacegroup_text(row)} (tol. {SPACEGROUP_SYMPREC} Å) · "
                       f"{validity_text(row)}")
