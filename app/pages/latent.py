"""Latent explorer: the encoded test set in 2D; click a point, draw z from the prior, read the
latent heads, decode along the line between two points."""

from __future__ import annotations

import state
import streamlit as st
import torch
from components import latent_plot
from components.cards import latent_readout, structure_grid
from components.runs import run_decode

from cdvae_core import explore

ctx = state.context()
st.title("Latent explorer")


def _rerun_once(job) -> None:
    """Rerun the app once per change of the map job's state (the sidebar is then built again
    with it). A rerun that finds the same state (a context not rebuilt, as under AppTest)
    carries on instead of rerunning again and again."""
    change = (id(job), job.done, job.partial is not None)
    if st.session_state.get("_map_rerun") != change:
        st.session_state["_map_rerun"] = change
        st.rerun(scope="app")


job = ctx.map_job
if job is not None and (job.done or (ctx.test is None and job.wait(timeout=3.0))):
    # it finished after the sidebar looked (which still shows its progress): run again, or, if
    # that was done already, show the map in this run; while a preview is on screen the page
    # never waits (each click would cost 3 s)
    _rerun_once(job)
    ctx = state.with_finished_map(ctx)
    st.session_state["ctx"] = ctx
if ctx.map_job is not None:
    # the test set is still being prepared (cold cache): report progress until it is done,
    # then run the page again with the map; the other pages work meanwhile. Once the first
    # crystals are encoded their map is shown below (ctx.test holds them), growing to the
    # whole test set when the job is done.
    preview = ctx.test is not None

    @st.fragment(run_every=1.0)
    def _progress(job=ctx.map_job, preview=preview):
        if job.done or (job.partial is not None and not preview):
            _rerun_once(job)
        p = job.progress()
        shown = (f" The map shows the first {len(ctx.test.dataset):,} crystals meanwhile; "
                 "it fills in when the rest are done." if preview else "")
        st.info(f"Preparing the latent map of the {ctx.dataset.title} test set. "
                f"{p.line().rstrip('.')}.{shown}")
        if p.total:
            st.progress(min(1.0, p.done / p.total))
        st.caption("Only the first launch builds the crystal graphs; they are cached on disk "
                   "for every later launch. The denoising viewer, steering, upload and gallery "
                   "pages work meanwhile" + ("." if preview else " (from the prior)."))

    _progress()
    if not preview:
        st.stop()
lm = ctx.map
sel = state.selected()
if ctx.test is None:
    st.info("No test set loaded (set a data directory in the sidebar): the map shows draws "
            "from the prior N(0, I), which you can click like test materials.")

left, right = st.columns([3, 2], gap="large")
with left:
    colour = (st.selectbox("Colour by", latent_plot.COLOUR_OPTIONS, key="map_colour")
              if ctx.test is not None else "property")
    overlays = []
    for name, symbol, color in (("A", "circle", "#d62728"), ("B", "square", "#1f77b4")):
        point = st.session_state.get(f"point_{name}")
        if point is not None:
            overlays.append({"name": name, "xy": lm.projection.transform(point["z"]),
                             "symbol": symbol, "color": color, "size": 13,
                             "text": [f"{name}: {point['label']}"]})
    for up in st.session_state.get("uploads", []):
        overlays.append({"name": up["label"], "xy": lm.projection.transform(up["z"]),
                         "symbol": "diamond", "color": "#ff7f0e", "text": [up["label"]]})
    path = st.session_state.get("interp")
    if path is not None:
        overlays.append({"name": "A→B path", "xy": lm.projection.transform(path["z"]),
                         "mode": "lines+markers", "symbol": "circle", "size": 6,
                         "color": "#444444", "text": path["labels"]})
    if sel is not None:
        overlays.append({"name": "selected", "xy": lm.projection.transform(sel["z"]),
                         "symbol": "star", "color": "#111111", "size": 18,
                         "text": [sel["label"]]})
    fig = latent_plot.figure(ctx, colour, overlays)
    event = st.plotly_chart(fig, on_select="rerun", selection_mode="points", key="latent_map")
    hit = latent_plot.clicked(fig, event)
    # a selection persists across reruns: act on a click once, not on every rerun after it
    if hit is not None and hit != st.session_state.get("_last_click"):
        st.session_state["_last_click"] = hit
        kind, i = hit
        label = (f"{ctx.test.table['formula'][i]} ({ctx.test.table['material_id'][i]})"
                 if kind == "test" else f"prior draw {i}")
        state.select_z(lm.z[i], label, kind)
        st.rerun()

    c1, c2 = st.columns(2)
    with c1:
        if ctx.test is not None:
            table = ctx.test.table
            i = st.selectbox(
                "Or pick a test material", range(len(table)), index=None, key="pick_test",
                format_func=lambda k: f"{table['formula'][k]} · {table['material_id'][k]}",
                placeholder="formula or material id",
            )
            if i is not None and st.button("Select this material", key="select_test"):
                state.select_z(lm.z[i], f"{table['formula'][i]} ({table['material_id'][i]})",
                               "test")
                st.rerun()
    with c2:
        seed = st.number_input("Prior seed", 0, 2**31 - 1, 0, key="prior_seed")
        if st.button("Draw z from the prior", key="draw_prior"):
            state.draw_prior(ctx, int(seed))
            st.rerun()

with right:
    if sel is None:
        st.subheader("No z selected")
        st.write("Click a point on the map, pick a test material, or draw from the prior.")
    else:
        st.subheader(sel["label"])
        latent_readout(ctx.model, sel["z"], ctx.property_name, key="readout")
        a, b = st.columns(2)
        if a.button("Set as A", key="set_a"):
            st.session_state["point_A"] = dict(sel)
            st.rerun()
        if b.button("Set as B", key="set_b"):
            st.session_state["point_B"] = dict(sel)
            st.rerun()
        st.page_link("pages/denoise.py", label="Denoise this z in 3D →")

st.divider()
st.subheader("Decode along the line A → B")
pa, pb = st.session_state.get("point_A"), st.session_state.get("point_B")
st.write(f"A: {pa['label'] if pa else '-'} · B: {pb['label'] if pb else '-'}")
c1, c2, c3 = st.columns(3)
n = c1.slider("Points on the path", 2, 8, 5, key="interp_n")
mode = c2.radio("Path", ["linear", "slerp"], horizontal=True, key="interp_mode")
seed = c3.number_input("Sampler seed", 0, 2**31 - 1, 0, key="interp_seed")
if st.button("Decode along A → B", disabled=not (pa and pb), key="interp_run"):
    zs = explore.interpolate_latents(pa["z"], pb["z"], n, mode)
    labels = [f"t = {t:.2f}" for t in torch.linspace(0, 1, n).tolist()]
    result = run_decode(ctx.model, zs, state.default_sampler(), int(seed), "Decoding the path",
                        names=labels)
    if result is not None:
        st.session_state["interp"] = {
            "z": zs, "structures": result.structures(), "labels": labels,
        }
        st.rerun()
path = st.session_state.get("interp")
if path is not None:
    structure_grid(path["structures"], path["labels"], key="interp_grid")
