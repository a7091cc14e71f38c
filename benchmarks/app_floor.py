"""The floor of the app's first-map time: a Streamlit page holding only a WebGL scatter of
``$FLOOR_POINTS`` points (default 3,785, Perov-5's test set) drawn as the latent map is (same
marker size, colour scale, height, selection events), with no model, no torch, no data.
``benchmarks/bench_app.py --first-map`` times it beside the app in the same run, so the app's
own cost is the difference.

    streamlit run benchmarks/app_floor.py
"""

import os

import numpy as np
import plotly.graph_objects as go
import streamlit as st

st.set_page_config(page_title="first-map floor", layout="wide")
st.title("Latent map floor")
n = int(os.environ.get("FLOOR_POINTS", "3785"))
xy = np.random.default_rng(0).normal(size=(n, 2))
fig = go.Figure(go.Scattergl(
    x=xy[:, 0], y=xy[:, 1], mode="markers",
    marker=dict(size=6, color=xy[:, 0], colorscale="Viridis", showscale=True)))
fig.update_layout(height=520, margin=dict(l=0, r=0, t=30, b=0))
st.plotly_chart(fig, on_select="rerun", selection_mode="points", key="floor")
