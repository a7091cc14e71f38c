"""Frame update time of the denoising viewer: what changes per frame when a trajectory plays.

Python: the scenes of a trajectory are computed once when the run ends (``trajectory_scenes``);
their cost per frame is timed here on a Perov-5-sized (5 atoms) and an MP-20-sized (20 atoms)
cell. Browser: playing sends only a frame index; the renderer (``scene_renderer.js``) redraws the
frame with arrows, a 4-frame trail and p(element) shading, and this times it with
``performance.now()`` in headless Chromium over every frame, several passes.

    python benchmarks/bench_viewer.py   # writes benchmarks/results/viewer.json
"""

from __future__ import annotations

import json
import statistics
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
from cdvae_core.utils import cpu_model  # noqa: E402

from helpers import small_model  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


def trajectory(num_atoms: int, frames: int = 40):
    z = torch.randn(1, 8, generator=torch.Generator().manual_seed(0))
    cfg = get_preset("interactive", n_step_each=1, level_stride=1, save_every=1)
    res = decode(small_model(), z, cfg, torch.Generator().manual_seed(0),
                 num_atoms=torch.tensor([num_atoms]))
    res.frames = res.frames[:frames]
    return res


def browser_ms(scenes: list[dict], passes: int = 3) -> list[float]:
    from playwright.sync_api import sync_playwright

    html = (f"<html><body><div id='v' style='position:relative;width:600px;height:460px'></div>"
            f"<script>{threedmol_js()}</script><script>{scn.renderer_js()}</script>"
            f"<script>window.scenes={json.dumps(scenes)};</script></body></html>")
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        page_path = Path(tmp) / "bench.html"
        page_path.write_text(html)
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        pg = b.new_page()
        pg.goto(page_path.as_uri())
        times = pg.evaluate("""(passes) => {
            const v = $3Dmol.createViewer(document.getElementById('v'), {backgroundColor: 'white'});
            const opts = {arrows: true, trail: 4, shade: true, ghosts: true};
            CdvaeScene.draw(v, scenes, 0, Object.assign({resetView: true}, opts));
            const out = [];
            for (let k = 0; k < passes; k++)
              for (let i = 0; i < scenes.length; i++)
                out.push(parseFloat(CdvaeScene.draw(v, scenes, i, opts).updateMs));
            return out;
        }""", passes)
        b.close()
    return times


def main() -> None:
    results = {"cpu": cpu_model(), "goal_ms_per_frame": 50, "cases": {}}
    for name, n in [("perov_5", 5), ("mp_20", 20)]:
        res = trajectory(n)
        t0 = time.perf_counter()
        scenes = scn.trajectory_scenes(res)
        py_ms = 1000 * (time.perf_counter() - t0) / len(scenes)
        js = browser_ms(scenes)
        results["cases"][name] = {
            "atoms": n, "frames": len(scenes),
            "python_scene_ms_per_frame (once per run)": round(py_ms, 2),
            "browser_update_ms_median": round(statistics.median(js), 2),
            "browser_update_ms_p90": round(float(np.percentile(js, 90)), 2),
            "payload_kb": round(len(json.dumps(scenes)) / 1024, 1),
        }
        print(name, results["cases"][name], flush=True)
        results["note"] = ("headless Chromium, software WebGL (no GPU), on the CPU named; the "
                           "update is CdvaeScene.draw of one frame (atoms, bonds, arrows, "
                           "trails, render)")
        out = REPO / "benchmarks" / "results" / "viewer.json"
        out.write_text(json.dumps(results, indent=2) + "\n")  # after each case
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
