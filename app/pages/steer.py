"""Property steering: gradient steps on z against the latent property head, then decode."""

from __future__ import annotations

import plotly.graph_objects as go
import state
import streamlit as st
from components.cards import structure_grid
from components.runs import run_decode

from cdvae_core import explore
from cdvae_core.model.optimize import optimize_latent

ctx = state.context()
st.title("Property steering")
prop = ctx.property_name
if ctx.model.fc_property is None:
    st.warning("This model was trained without a property head: nothing to steer.")
    st.stop()
sel = state.selected()
if sel is None:
    st.info("Select a latent vector first (latent explorer, upload, or gallery).")
    st.stop()
st.write(f"Start: **{sel['label']}**. Adam on z against the latent {prop} head "
         "(paper section 5.3: 5000 steps, lr 1e-3, decode every 500; fewer here).")

with st.form("steer_form"):
    c1, c2, c3, c4 = st.columns(4)
    goal = c1.radio("Goal", ["minimize", "maximize"], format_func=lambda g: f"{g} {prop}")
    steps = c2.number_input("Gradient steps", value=300, step=50)
    lr = c3.number_input("Learning rate", value=1e-2, step=1e-3, format="%.0e")
    every = c4.number_input("Decode every k steps", value=100, step=10)
    seed = st.number_input("Sampler seed", value=0, step=1)
    go_run = st.form_submit_button("Steer", type="primary")

if go_run:
    problems = []
    if not 1 <= steps <= 5000:
        problems.append(f"gradient steps must be between 1 and 5000 (got {steps})")
    if not 0 < lr <= 1:
        problems.append(f"the learning rate must be in (0, 1] (got {lr})")
    if not 1 <= every <= max(1, steps) or steps // max(1, every) > 8:
        problems.append(f"decode every k steps: k in 1..{steps}, at most 8 decodes (got {every})")
    if not 0 <= seed < 2**63:
        problems.append(f"the seed must be a non-negative integer (got {seed})")
    if problems:
        st.error("Settings not accepted: " + "; ".join(problems))
        st.stop()
    live, bar, history = st.empty(), st.progress(0.0, text="Steering..."), []

    def on_step(step, value):
        history.append(float(value[0]))
        if step % max(1, steps // 40) == 0 or step == steps:  # ~40 chart updates per run
            bar.progress(step / steps, text=f"Steering: step {step}/{steps}")
            live.line_chart({prop: history}, height=220)

    z0 = sel["z"].reshape(1, -1).to(explore.model_device(ctx.model))
    res = optimize_latent(ctx.model.predict_property, z0, int(steps), float(lr), int(every),
                          goal, on_step)
    bar.empty()
    live.empty()
    decoded = run_decode(ctx.model, res.z_saved[:, 0], state.default_sampler(), int(seed),
                         "Decoding the saved steps",
                         names=[f"steering step {s}" for s in res.saved_steps])
    if decoded is not None:
        st.session_state["steer_result"] = {
            "label": sel["label"], "goal": goal, "prop": res.prop[:, 0].tolist(),
            "saved": res.saved_steps, "z": res.z_saved[:, 0].cpu(),
            "structures": decoded.structures(),
        }

out = st.session_state.get("steer_result")
if out is not None:
    st.subheader(f"{out['goal'].capitalize()} {prop} from {out['label']}")
    fig = go.Figure(go.Scatter(y=out["prop"], mode="lines", name=f"predicted {prop}"))
    fig.add_scatter(x=out["saved"], y=[out["prop"][s] for s in out["saved"]], mode="markers",
                    marker=dict(size=10), name="decoded")
    fig.update_layout(height=260, margin=dict(l=0, r=0, t=10, b=0), xaxis_title="step",
                      yaxis_title=f"predicted {prop}")
    st.plotly_chart(fig, key="steer_curve")
    labels = [("start" if s == 0 else f"step {s}") + f" ({out['prop'][s]:.3f})"
              for s in out["saved"]]
    structure_grid(out["structures"], labels, key="steer_grid", cols=min(5, len(labels)))
    if st.button("Select the last z (to denoise it in 3D)", key="steer_select"):
        state.select_z(out["z"][-1], f"steered ({out['goal']}, step {out['saved'][-1]})",
                       "steer")
        st.switch_page("pages/denoise.py")
