"""Frame update time of the denoising viewer: what changes per frame when a trajectory plays.

Python: the scenes of a trajectory are computed once when the run ends (``trajectory_scenes``);
their cost per frame is timed here on a Perov-5-sized (5 atoms) and an MP-20-sized (20 atoms)
cell. Browser: playing sends only a frame index; the renderer (``scene_renderer.js``) redraws the
frame with arrows, a 4-frame trail, p(element) shading and ghosts. Each frame is timed with
``performance.now()`` in headless Chromium (software WebGL: SwiftShader) from the call to
``CdvaeScene.draw`` until WebGL has finished the picture (a one-pixel ``readPixels``), over every
frame, several passes; the renderer's own ``updateMs`` (its JavaScript alone) is kept beside it.

The same run times the renderer of the first round (``BEFORE``, read from git: it rebuilt every
model and shape each frame, rendered twice and drew antialiased at twice the resolution) and the
current one (``cdvae_core/resources/scene_renderer.js``), with the viewer each one creates.

    python benchmarks/bench_viewer.py [--also REV]   # writes benchmarks/results/viewer.json
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from cdvae_core.diffusion.presets import get_preset  # noqa: E402
from cdvae_core.explore import scene as scn  # noqa: E402
from cdvae_core.explore.offline import threedmol_js  # noqa: E402
from cdvae_core.model.decode import decode  # noqa: E402
from cdvae_core.utils import cpu_info  # noqa: E402

from helpers import small_model  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
BEFORE = "11903b7"  # main before the frame-update work: the first round's renderer
GOAL_MS = 50

_TIME = """([passes, before]) => {
    const el = document.getElementById('v');
    const v = before ? $3Dmol.createViewer(el, {backgroundColor: 'white', antialias: true})
                     : CdvaeScene.createViewer(el);
    const gl = v.renderer && v.renderer._gl;  // to wait until the picture is finished
    const px = new Uint8Array(4);
    const finish = () => { if (gl) gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, px); };
    const opts = {arrows: true, trail: 4, shade: true, ghosts: true};
    CdvaeScene.draw(v, scenes, 0, Object.assign({resetView: true}, opts));
    finish();
    const drawn = [], js = [];
    let last = {};
    for (let k = 0; k < passes; k++)
      for (let i = 1; i < scenes.length; i++) {
        const t = performance.now();
        last = CdvaeScene.draw(v, scenes, i, opts);
        finish();
        drawn.push(performance.now() - t);
        js.push(parseFloat(last.updateMs));
      }
    return {drawn: drawn, js: js, canvas: [v.getCanvas().width, v.getCanvas().height],
            last: last};
}"""


def trajectory(num_atoms: int, frames: int = 30):
    z = torch.randn(1, 8, generator=torch.Generator().manual_seed(0))
    cfg = get_preset("interactive", n_step_each=1, level_stride=1, save_every=1)
    res = decode(small_model(), z, cfg, torch.Generator().manual_seed(0),
                 num_atoms=torch.tensor([num_atoms]))
    res.frames = res.frames[:frames]
    return res


def renderer_source(before: bool, rev: str | None = None) -> str:
    """The renderer of the working tree, or that of ``rev`` (``BEFORE`` when ``before``)."""
    rev = BEFORE if before else rev
    if rev is None:
        return scn.renderer_js()
    return subprocess.run(["git", "show", f"{rev}:cdvae_core/resources/scene_renderer.js"],
                          cwd=REPO, check=True, capture_output=True, text=True).stdout


def browser_ms(scenes: list[dict], before: bool, passes: int, rev: str | None = None) -> dict:
    from playwright.sync_api import sync_playwright

    html = (f"<html><body><div id='v' style='position:relative;width:600px;height:460px'></div>"
            f"<script>{threedmol_js()}</script><script>{renderer_source(before, rev)}</script>"
            f"<script>window.scenes={json.dumps(scenes)};</script></body></html>")
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        page_path = Path(tmp) / "bench.html"
        page_path.write_text(html)
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        pg = b.new_page()
        pg.goto(page_path.as_uri())
        out = pg.evaluate(_TIME, [passes, before])
        b.close()
    return out


def _stats(out: dict) -> dict:
    drawn = out["drawn"]
    return {"drawn_ms_median": round(statistics.median(drawn), 1),
            "drawn_ms_p90": round(float(np.percentile(drawn, 90)), 1),
            "renderer_update_ms_median": round(statistics.median(out["js"]), 1),
            "frames_timed": len(drawn), "canvas_px": out["canvas"],
            "antialias": out["last"].get("antialias", "true (2x resolution)")}


def main() -> None:
    import argparse
    import os

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--also", metavar="REV",
                        help="time the renderer of this git revision too, in the same run "
                             "(the one a change is measured against)")
    args = parser.parse_args()

    results = {**cpu_info(), "load_average_1min_before": round(os.getloadavg()[0], 2),
               "goal_ms_per_frame": GOAL_MS, "cases": {},
               "note": ("headless Chromium, software WebGL (SwiftShader, no GPU), 600 x 460 px "
                        "view, on the CPU named (shared with other jobs); drawn_ms: from "
                        "CdvaeScene.draw of a frame (atoms, bonds, arrows, 4-frame trails, "
                        "shading, ghosts) until WebGL finished the picture; before: the "
                        f"renderer at {BEFORE}")}
    out = REPO / "benchmarks" / "results" / "viewer.json"
    for name, n in [("perov_5", 5), ("mp_20", 20)]:
        res = trajectory(n)
        t0 = time.perf_counter()
        scenes = scn.trajectory_scenes(res)
        py_ms = 1000 * (time.perf_counter() - t0) / len(scenes)
        case = {"atoms": n, "frames": len(scenes),
                "python_scene_ms_per_frame (once per run)": round(py_ms, 2),
                "payload_kb": round(len(json.dumps(scenes)) / 1024, 1)}
        case["before"] = _stats(browser_ms(scenes, before=True, passes=1))
        case["after"] = _stats(browser_ms(scenes, before=False, passes=3))
        case["after"]["meets_goal"] = case["after"]["drawn_ms_median"] <= GOAL_MS
        if args.also:
            case[f"at {args.also}"] = _stats(browser_ms(scenes, before=False, passes=3,
                                                        rev=args.also))
        results["cases"][name] = case
        print(name, json.dumps(case), flush=True)
        out.write_text(json.dumps(results, indent=2) + "\n")  # after each case
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
