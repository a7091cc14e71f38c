"""Denoising viewer: annealed Langevin from the selected z, played frame by frame in 3D."""

from __future__ import annotations

import time

import plotly.graph_objects as go
import state
import streamlit as st
import torch
from components.cards import structure_details
from components.relaxation import relax_panel
from components.runs import run_decode
from components.sampler_form import sampler_config
from components.structure_view import structure_view
from components.viewer import show_frames
from pymatgen.core import Lattice

from cdvae_core import explore
from cdvae_core.explore import scene

ctx = state.context()
st.title("Denoising viewer")

focus = st.session_state.get("focus")  # a gallery sample opened in the full viewer
if focus is not None:
    st.subheader(f"Sample {focus['name']}")
    left, right = st.columns([3, 2])
    with left:
        structure_view(focus["structure"], focus["name"], key="focus", height=420)
    with right:
        structure_details(focus["structure"], focus["name"], key="focus")
        if focus.get("z") is not None and st.button("Denoise from this sample's z",
                                                    key="focus_use_z"):
            state.select_z(focus["z"], f"gallery sample {focus['name']}", "sample")
        if st.button("Close sample", key="focus_close"):
            del st.session_state["focus"]
            st.rerun()
    relax_panel(focus["structure"], focus["name"], key="focus")
    st.divider()

sel = state.selected()
if sel is None:
    st.info("No latent vector selected: pick one in the latent explorer, or draw one here.")
    if st.button("Draw z from the prior (seed 0)", key="denoise_draw"):
        state.draw_prior(ctx, 0)
        st.rerun()
    st.stop()
st.write(f"Starting point: **{sel['label']}**")

preset = state.default_sampler()
with st.form("sampler"):
    c1, c2, c3, c4 = st.columns(4)
    n_step = c1.number_input("Steps per noise level", value=preset.n_step_each, step=1)
    step_lr = c2.number_input("Step size ε", value=preset.step_lr, step=1e-5, format="%.1e")
    seed = c3.number_input("Seed", value=0, step=1)
    frames = c4.number_input("Frames kept", value=60, step=10)
    with st.expander("More settings"):
        scheme = st.selectbox(
            "Scheme", ["langevin", "pc"], index=["langevin", "pc"].index(preset.scheme),
            format_func={"langevin": "Annealed Langevin (the paper's Algorithm 1)",
                         "pc": "Predictor-corrector (Langevin steps, then a reverse-diffusion "
                               "step per level; the evaluation's default)"}.get)
        stride = st.number_input("Use every k-th noise level", value=preset.level_stride, step=1)
        noise = st.number_input("Noise scale (0: deterministic)", value=preset.noise_scale,
                                step=0.1)
    run = st.form_submit_button("Run annealed Langevin", type="primary")

if run:
    try:
        cfg = sampler_config(ctx.model.sigmas, n_step, step_lr, frames, stride, noise,
                                 scheme)
        if not 0 <= seed < 2**63:
            raise ValueError(f"seed must be a non-negative integer (got {seed})")
    except ValueError as exc:
        st.error(f"Sampler settings not accepted: {exc}")
        st.stop()
    readout = explore.read_latent(ctx.model, sel["z"])
    lattice = Lattice.from_parameters(*readout.lengths, *readout.angles_deg)
    live = st.empty()
    shown = [0.0]
    n_atoms = torch.tensor([readout.num_atoms])

    def on_frame(frame):
        # redraw at most twice a second: each redraw costs a browser round trip
        if frame.step == 1 or time.perf_counter() - shown[0] > 0.5:
            shown[0] = time.perf_counter()
            s = explore.frame_structure(frame, lattice, n_atoms)
            with live.container():
                show_frames([scene.structure_scene(s, scene.SceneOptions(images=False),
                                                   f"step {frame.step} · σ {frame.sigma:.3g} Å")],
                            height=420)

    result = run_decode(ctx.model, sel["z"], cfg, int(seed), on_frame=on_frame)
    live.empty()
    if result is not None:
        target = None  # a test material's z: its crystal is the reconstruction's target
        if sel["source"] == "test" and ctx.test is not None:
            ids = list(ctx.test.table["material_id"])
            mid = sel["label"].rsplit("(", 1)[-1].rstrip(")")
            target = ctx.test.dataset.structure(ids.index(mid)) if mid in ids else None
        st.session_state["traj"] = {
            "label": sel["label"], "result": result, "final": result.structures()[0],
            "payload": scene.trajectory_scenes(result, target=target), "target": target,
            "extxyz": explore.trajectory_to_extxyz(result),
        }
        st.session_state["frame_idx"] = 0
        st.session_state["playing"] = False

traj = st.session_state.get("traj")
if traj is None:
    st.stop()
result, payload = traj["result"], traj["payload"]
st.subheader(f"Trajectory from {traj['label']}")
c1, c2 = st.columns([1, 4])
playing = c1.toggle("Play", key="playing")
fps = c2.select_slider("Frames per second", [1, 2, 4, 8], value=4, key="fps")
p1, p2, p3, p4, p5 = st.columns(5)
physics = {
    "arrows": p1.toggle("Score arrows", value=True, key="show_arrows"),
    "arrowGain": p2.select_slider("Arrow gain", [0.25, 0.5, 1.0, 2.0, 4.0], value=1.0,
                                  key="arrow_gain"),
    "trail": p3.select_slider("Trail (frames)", [0, 2, 4, 8], value=4, key="trail"),
    "shade": p4.toggle("Shade by p(element)", value=True, key="shade",
                       help="atoms fade towards grey as the probability of their element drops"),
    "ghosts": p5.toggle("Target as ghosts", value=True, key="ghosts",
                        disabled=traj.get("target") is None,
                        help="the test crystal this z encodes, drawn faint (reconstructions)"),
}


@st.fragment(run_every=1.0 / fps if playing else None)
def player() -> None:
    """Only this part reruns while playing: the viewer gets a new index, nothing reloads."""
    n = len(payload)
    if playing and st.session_state.get("frame_idx") is not None:
        st.session_state["frame_idx"] = (st.session_state["frame_idx"] + 1) % n
    i = st.slider("Frame", 0, n - 1, key="frame_idx")
    frame = result.frames[i]
    left, right = st.columns([3, 2])
    with left:
        show_frames(payload, i, height=460, key="traj_viewer", options=physics, name="denoising")
        s2 = frame.sigma ** 2
        st.caption(
            f"Arrows: {physics['arrowGain']:g} x σ² x score, the step to the denoised position "
            f"(Tweedie); σ² = {s2:.3g} Å² here, so 1 Å⁻¹ of score is "
            f"{physics['arrowGain'] * s2:.3g} Å of arrow. Blue trails: the last "
            f"{physics['trail']} frames. Bonds: {scene.BOND_METHODS['covalent']}.")
    with right:
        m1, m2 = st.columns(2)
        m1.metric("Step", f"{frame.step} / {result.frames[-1].step}")
        m2.metric("Noise σ", f"{frame.sigma:.3g} Å", help=f"noise level {frame.level}")
        m1.metric("Mean |score|", f"{float(frame.score_norm.mean()):.3g} Å⁻¹")
        m2.metric("Max |score|", f"{float(frame.score_norm.max()):.3g} Å⁻¹")
        table = explore.frame_atom_table(frame, result.num_atoms)
        st.dataframe(table, hide_index=True, height=240, column_config={
            "score_norm": st.column_config.NumberColumn("|score| Å⁻¹", format="%.3g"),
            "p_element": st.column_config.ProgressColumn("p(element)", min_value=0.0,
                                                         max_value=1.0, format="%.2f"),
        })
        steps = [f.step for f in result.frames]
        fig = go.Figure()
        fig.add_scatter(x=steps, y=[f.sigma for f in result.frames], name="σ (Å)")
        fig.add_scatter(x=steps, y=[float(f.score_norm.mean()) for f in result.frames],
                        name="mean |score| (Å⁻¹)")
        fig.add_vline(x=frame.step, line_dash="dot")
        fig.update_layout(height=200, margin=dict(l=0, r=0, t=10, b=0), yaxis_type="log",
                          xaxis_title="step", legend=dict(orientation="h", y=1.15))
        st.plotly_chart(fig, key="traj_curve", config={"displayModeBar": False})


player()
st.subheader("Final structure")
structure_details(traj["final"], "cdvae_sample", key="final")
st.download_button("Trajectory (extended XYZ)", traj["extxyz"], "trajectory.extxyz",
                   "chemical/x-extxyz", key="traj_xyz")
relax_panel(traj["final"], "cdvae_sample", key="final")
