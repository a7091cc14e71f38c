"""The latent map: test set (or prior draws) in the 2D PCA frame, with the session's points."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import state

COLOUR_OPTIONS = ["property", "chemical family", "family (anion)", "number of elements",
                  "number of atoms"]
_PALETTE = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#eeca3b", "#b279a2",
            "#ff9da6", "#9d755d", "#bab0ac"]


def figure(ctx: state.Context, colour: str, overlays: list[dict]) -> go.Figure:
    """Scatter of the map; each background trace has ``meta`` "test" or "prior" and the crystal
    index as ``customdata``, so a click can be traced back to its latent vector.

    overlays: ``[{"name", "xy" [K, 2], "symbol", "color", "text": [K]}]`` drawn on top.
    """
    lm = ctx.map
    fig = go.Figure()
    if ctx.test is None:
        fig.add_trace(go.Scattergl(
            x=lm.xy[:, 0], y=lm.xy[:, 1], mode="markers", name="prior draws", meta="prior",
            customdata=np.arange(len(lm.xy))[:, None],
            marker=dict(size=5, color="#9aa5b1", opacity=0.6),
            hovertemplate="prior draw %{customdata[0]}<extra></extra>",
        ))
    else:
        table = ctx.test.table
        hover = ("%{text}<br>%{customdata[1]}<br>" + ctx.property_name
                 + " %{customdata[2]:.3f}<extra></extra>")
        groups = _groups(table, colour, ctx.property_name)
        for name, idx, marker in groups:
            fig.add_trace(go.Scattergl(
                x=lm.xy[idx, 0], y=lm.xy[idx, 1], mode="markers", name=name, meta="test",
                text=table["formula"].to_numpy()[idx],
                customdata=np.array([idx, table["material_id"].to_numpy()[idx],
                                     table["prop"].to_numpy()[idx]], dtype=object).T,
                marker=marker, hovertemplate=hover, showlegend=len(groups) > 1,
            ))
    for o in overlays:
        xy = np.atleast_2d(o["xy"])
        # WebGL like the background: an SVG trace would be drawn under the WebGL canvas
        fig.add_trace(go.Scattergl(
            x=xy[:, 0], y=xy[:, 1], mode=o.get("mode", "markers"), name=o["name"], meta="overlay",
            text=o.get("text"), hovertemplate="%{text}<extra></extra>",
            marker=dict(size=o.get("size", 14), symbol=o.get("symbol", "star"),
                        color=o.get("color", "black"), line=dict(width=1, color="white")),
            line=dict(color=o.get("color", "black"), dash="dot"),
        ))
    pc1, pc2 = lm.projection.explained
    fig.update_layout(
        height=520, margin=dict(l=0, r=0, t=30, b=0), dragmode="pan", clickmode="event+select",
        xaxis_title=f"PC1 ({pc1:.0%})", yaxis_title=f"PC2 ({pc2:.0%})",
        legend=dict(orientation="h", y=-0.12), uirevision="latent-map",
    )
    return fig


def _groups(table, colour: str, prop_name: str):
    """``(name, indices, marker)`` of each background trace for the chosen colouring."""
    if colour == "property":
        prop = table["prop"].to_numpy()
        return [("test set", np.arange(len(table)), dict(
            size=6, color=prop, colorscale="Viridis", showscale=bool(np.isfinite(prop).any()),
            colorbar=dict(title=dict(text=prop_name, side="right"), thickness=12)))]
    column = {"chemical family": "chemical_family", "family (anion)": "family",
              "number of elements": "n_elements",
              "number of atoms": "n_atoms"}[colour]
    values = table[column].to_numpy()
    counts = {v: int((values == v).sum()) for v in np.unique(values)}
    # the ten largest groups get a colour each, the rest share grey
    top = sorted(counts, key=lambda v: -counts[v])[:10]
    out = []
    for i, v in enumerate(sorted(top, key=str)):
        out.append((f"{v}", np.flatnonzero(values == v),
                    dict(size=6, color=_PALETTE[i % len(_PALETTE)])))
    rest = np.flatnonzero(~np.isin(values, top))
    if len(rest):
        out.append(("other", rest, dict(size=6, color="#cccccc")))
    return out


def clicked(fig: go.Figure, event) -> tuple[str, int] | None:
    """``(kind, index)`` of the first clicked background point of a selection event."""
    points = (event or {}).get("selection", {}).get("points", []) if event else []
    for p in points:
        trace = fig.data[p.get("curve_number", -1)] if 0 <= p.get("curve_number", -1) < len(
            fig.data) else None
        if trace is not None and trace.meta in ("test", "prior") and p.get("customdata"):
            return trace.meta, int(float(p["customdata"][0]))
    return None
