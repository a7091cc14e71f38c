"""The 3D crystal viewer: 3Dmol.js inside a Streamlit component (frontend in ``viewer3d/``)
drawing scenes of :mod:`cdvae_core.explore.scene` with the library's renderer.

The component stays mounted across reruns and redraws when it is sent a new frame index or new
drawing options, so a trajectory plays without reloading the page or 3Dmol.js. The JavaScript
is served by the app from ``app/static/3Dmol-min.js``, never from a CDN.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import streamlit.components.v1 as components
from pymatgen.core import Structure

from cdvae_core.explore import scene as scn

STATIC_JS = Path(__file__).resolve().parents[1] / "static" / "3Dmol-min.js"
_component = components.declare_component("viewer3d", path=str(Path(__file__).with_name("viewer3d")))


def js_available() -> bool:
    return STATIC_JS.is_file()


def show_frames(
    scenes: list[dict],
    index: int = 0,
    height: int = 420,
    key: str | None = None,
    options: dict | None = None,
    name: str = "view",
) -> None:
    """Show ``scenes`` (of :mod:`cdvae_core.explore.scene`) at ``index``; ``options`` are the
    renderer's (arrows, trail, shade, ghosts, arrowGain, polyhedra, images, style).

    The scenes are identified by a content hash: the viewer keeps its camera while only the
    index or the options change and re-centres when it is given new scenes.
    """
    data_id = hashlib.sha1(json.dumps(scenes).encode()).hexdigest()[:16]
    _component(scenes=scenes, index=int(index), data_id=data_id, height=int(height),
               options=options or {}, name=name, renderer=scn.renderer_js(), key=key,
               default=None)


def show_structure(
    structure: Structure,
    label: str = "",
    height: int = 320,
    key: str | None = None,
    options: scn.SceneOptions | None = None,
) -> dict:
    """Draw one structure; returns its scene."""
    scene = scn.structure_scene(structure, options or scn.SceneOptions(), label)
    show_frames([scene], 0, height, key, name=label or "structure")
    return scene
