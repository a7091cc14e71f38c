"""'Relax with CHGNet' under a generated or decoded structure: the relaxation plays frame by
frame in the app's 3D viewer, beside the energy per atom, displacement, volume and space group
before and after.

CHGNet is a universal machine-learned potential whose weights ship inside its PyPI package
(``pip install 'cdvae-core[relax]'``); it is loaded once per process (``state.chgnet_model``).
Results live in this session's ``st.session_state["relax"][key]``, tied to the structure they
were computed for, so a new decode on the same page never shows an old relaxation.
"""

from __future__ import annotations

import hashlib

import numpy as np
import plotly.graph_objects as go
import state
import streamlit as st
from pymatgen.core import Structure

from cdvae_core.explore.scene import structure_scene
from cdvae_core.io import structure_to_cif
from cdvae_core.metrics.evaluate import SPACEGROUP_SYMPREC, spacegroup_number
from cdvae_core.relax import (
    BARELY_MOVING_RMS_A,
    BARELY_MOVING_VOLUME,
    RelaxationUnavailable,
    relax_structures,
    require_chgnet,
)
from components.viewer import show_frames

RELAX_STEPS = 200  # FIRE steps at most: a few seconds to a minute on a CPU for a small cell
RELAX_FMAX = 0.1  # eV/Å
MAX_FRAMES = 60  # frames sent to the viewer (evenly spread over the relaxation)


def structure_digest(structure: Structure) -> str:
    """Identity of a structure's cell, species and coordinates."""
    h = hashlib.sha1()
    h.update(np.asarray(structure.lattice.matrix, dtype=np.float64).tobytes())
    h.update(np.asarray(structure.frac_coords, dtype=np.float64).tobytes())
    h.update(" ".join(site.specie.symbol for site in structure).encode())
    return h.hexdigest()[:16]


def relax_one(structure: Structure) -> dict:
    """Relax ``structure`` with the cached CHGNet model; the record the panel shows.
    Raises :class:`RelaxationUnavailable` without the package."""
    require_chgnet()  # cheap; the cached model below would hide a package removed since
    model = state.chgnet_model()
    (res,) = relax_structures([structure], fmax=RELAX_FMAX, steps=RELAX_STEPS, keep_every=1,
                              device=state.device().type, model=model)
    record = {"digest": structure_digest(structure), "result": res,
              "spacegroup_before": spacegroup_number(structure)}
    if res.error is None:
        record["spacegroup_after"] = spacegroup_number(res.structure)
        n = len(res.trajectory)
        shown = np.unique(np.linspace(0, n - 1, min(n, MAX_FRAMES)).round().astype(int))
        record["frames"] = [int(k) for k in shown]
        record["payload"] = [
            structure_scene(res.trajectory[k], label=f"step {res.trajectory_steps[k]} · "
                            f"{res.trajectory_energy_per_atom_eV[k]:.4f} eV/atom")
            for k in shown
        ]
    return record


def relax_panel(structure: Structure, name: str, key: str) -> None:
    """The button, then (once relaxed) the trajectory player and the before / after numbers.
    ``key`` names this panel's widgets and its result in the session."""
    store = st.session_state.setdefault("relax", {})
    clicked = st.button(
        "Relax with CHGNet", key=f"{key}_relax",
        help=f"CHGNet universal potential, FIRE on atoms and cell: at most {RELAX_STEPS} steps, "
             f"until every force is below {RELAX_FMAX} eV/Å.",
    )
    if clicked:
        store.pop(key, None)
        st.session_state[f"{key}_relax_frame"] = 0  # the new trajectory may be shorter
        st.session_state[f"{key}_relax_playing"] = False
        try:
            with st.spinner(f"Relaxing {structure.composition.reduced_formula} with CHGNet "
                            f"(at most {RELAX_STEPS} steps)..."):
                store[key] = relax_one(structure)
        except RelaxationUnavailable as exc:
            st.error(f"CHGNet is not installed. {exc}")
            return
    record = store.get(key)
    if record is None or record["digest"] != structure_digest(structure):
        return
    res = record["result"]
    if res.error is not None:
        st.error(f"CHGNet could not relax this structure: {res.error}")
        return
    _show(record, name, key)


def _show(record: dict, name: str, key: str) -> None:
    res, payload = record["result"], record["payload"]
    st.markdown(f"**CHGNet relaxation**: {res.steps} steps, "
                + ("converged" if res.converged else f"not converged within {RELAX_STEPS} steps")
                + (" · barely moves (already near a local minimum)" if res.barely_moved else ""))
    c1, c2 = st.columns([1, 4])
    playing = c1.toggle("Play", key=f"{key}_relax_playing")
    fps = c2.select_slider("Frames per second", [1, 2, 4, 8], value=4, key=f"{key}_relax_fps")

    @st.fragment(run_every=1.0 / fps if playing else None)
    def player() -> None:
        """Only this part reruns while playing: the viewer gets a new index, nothing reloads."""
        n = len(payload)
        index_key = f"{key}_relax_frame"
        if playing and st.session_state.get(index_key) is not None:
            st.session_state[index_key] = (st.session_state[index_key] + 1) % n
        i = st.slider("Relaxation frame", 0, n - 1, key=index_key) if n > 1 else 0
        k = record["frames"][i]
        left, right = st.columns([3, 2])
        with left:
            show_frames(payload, i, height=420, key=f"{key}_relax_viewer")
        with right:
            _numbers(record)
            steps = res.trajectory_steps
            fig = go.Figure(go.Scatter(x=steps, y=res.trajectory_energy_per_atom_eV,
                                       mode="lines+markers", name="energy (eV/atom)"))
            fig.add_vline(x=steps[k], line_dash="dot")
            fig.update_layout(height=180, margin=dict(l=0, r=0, t=10, b=0), xaxis_title="step",
                              yaxis_title="eV/atom")
            st.plotly_chart(fig, key=f"{key}_relax_curve", config={"displayModeBar": False})

    player()
    st.download_button("Relaxed structure (CIF)", structure_to_cif(res.structure),
                       f"{name}_relaxed.cif", "chemical/x-cif", key=f"{key}_relax_cif")


def _sg(number: int | None) -> str:
    return "?" if number is None else str(number)


def _numbers(record: dict) -> None:
    res = record["result"]
    m1, m2 = st.columns(2)
    m1.metric("Energy before (eV/atom)", f"{res.initial_energy_per_atom_eV:.4f}")
    m2.metric("Energy after (eV/atom)", f"{res.energy_per_atom_eV:.4f}",
              delta=f"{res.energy_per_atom_eV - res.initial_energy_per_atom_eV:+.4f}",
              delta_color="inverse")
    m1.metric("RMS displacement (Å)", f"{res.rms_displacement_A:.3f}",
              help="root mean square displacement of the atoms (minimum image, relaxed cell); "
                   f"'barely moves' below {BARELY_MOVING_RMS_A} Å and "
                   f"{BARELY_MOVING_VOLUME:.0%} volume change")
    m2.metric("Volume change", f"{res.volume_change:+.1%}")
    m1.metric("Converged", "yes" if res.converged else "no",
              help=f"every force below {RELAX_FMAX} eV/Å after {res.steps} of at most "
                   f"{RELAX_STEPS} steps")
    m2.metric("Space group before → after",
              f"{_sg(record['spacegroup_before'])} → {_sg(record['spacegroup_after'])}",
              help=f"spglib via pymatgen, symprec {SPACEGROUP_SYMPREC} Å")
