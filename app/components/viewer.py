"""The 3D crystal viewer: 3Dmol.js inside a Streamlit component (frontend in ``viewer3d/``).

The component stays mounted across reruns and redraws when it is sent a new frame index, so a
trajectory plays without reloading the page or 3Dmol.js. The JavaScript is served by the app
from ``app/static/3Dmol-min.js``, never from a CDN.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import streamlit.components.v1 as components
from pymatgen.core import Structure

from cdvae_core.explore.trajectory import viewer_frame

STATIC_JS = Path(__file__).resolve().parents[1] / "static" / "3Dmol-min.js"
_component = components.declare_component("viewer3d", path=str(Path(__file__).with_name("viewer3d")))


def js_available() -> bool:
    return STATIC_JS.is_file()


def show_frames(
    frames: list[dict],
    index: int = 0,
    height: int = 420,
    key: str | None = None,
    style: str = "ball_and_stick",
) -> None:
    """Show ``frames`` (payloads of :func:`cdvae_core.explore.trajectory.viewer_frame`) at ``index``.

    The frames are identified by a content hash: the viewer keeps its camera while only the
    index changes and re-centres when it is given new frames.
    """
    data_id = hashlib.sha1(json.dumps(frames).encode()).hexdigest()[:16]
    _component(frames=frames, index=int(index), data_id=data_id, height=int(height),
               style=style, key=key, default=None)


def show_structure(
    structure: Structure, label: str = "", height: int = 320, key: str | None = None
) -> None:
    show_frames([viewer_frame(structure, label)], 0, height, key)
