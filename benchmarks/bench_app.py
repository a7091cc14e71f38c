"""Time what the app's denoising viewer does: from pressing "Run" to the first 3D frame, and a
whole default trajectory of a Perov-5 material.

Library level, as the page does it: :func:`cdvae_core.model.decode` with a callback under
the app's default sampler (the ``interactive`` preset, about 60 frames kept); the first frame
counts as shown once its viewer payload (:func:`cdvae_core.explore.trajectory.viewer_frame`) is serialised to
the JSON the viewer component receives. "Whole" adds what the page builds after the run (every
frame's payload, the extended XYZ trajectory). The browser's own drawing is not included.

Model: ``checkpoints/perov_5/model.pt`` when it exists; otherwise the reference-size fast
model with random weights, whose lattice scalers are set to Perov-5-like values (unit scalers
make a random model predict sub-Ångström cells, whose decoder graphs hold thousands of periodic
images, which no trained model does). The JSON says which.

Threads: the app's default (``CDVAE_APP_THREADS``, 1), set here the same way.

    python benchmarks/bench_app.py [--repeats 3] [--checkpoint PATH --out PATH]

``--first-map`` instead times what a new user waits for: ``streamlit run app/main.py`` with a
shipped model and ``../shared/data``, opened in headless Chromium (Playwright, as the browser
tests do), from opening the page to the first latent map being drawn (on a cold cache, the map
of the test set's first 256 crystals) and to the map of the whole test set: once on an empty
cache folder (cold: CrystalNN graphs built, test set encoded) and once more on a new server
over the same cache (warm). Goals (issue 14), for the first map: cold <= 60 s, warm <= 3 s.

    python benchmarks/bench_app.py --first-map [--models perov_5 carbon_24]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import torch
from pymatgen.core import Lattice

from cdvae_core import explore
from cdvae_core.data.dataset import CrystalDataset
from cdvae_core.data.scaler import StandardScaler
from cdvae_core.diffusion.langevin import LangevinConfig, keep_frames
from cdvae_core.diffusion.presets import get_preset
from cdvae_core.io import atomic_write
from cdvae_core.model.cdvae import CDVAE
from cdvae_core.model.checkpoint import load_model
from cdvae_core.model.config import ModelConfig
from cdvae_core.model.decode import decode, decode_steps, encode_dataset
from cdvae_core.utils import cpu_info, cpu_model

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from conftest import cubic_srtio3  # noqa: E402  (the test crystals, built in code)

TARGETS_S = {"first_frame": 2.0, "whole_trajectory": 15.0}
FRAMES = 60  # the viewer's default number of frames kept


def _model(path: str | None) -> tuple[CDVAE, dict]:
    shipped = Path(path) if path else REPO / "checkpoints" / "perov_5" / "model.pt"
    if shipped.is_file():
        t0 = time.perf_counter()
        model = load_model(shipped)
        where = shipped.resolve()
        where = where.relative_to(REPO) if where.is_relative_to(REPO) else where
        return model, {"model": "given checkpoint" if path else "shipped checkpoint",
                       "path": str(where), "load_s": round(time.perf_counter() - t0, 3)}
    torch.manual_seed(0)
    lattice = StandardScaler(torch.tensor([2.3, 2.3, 2.3, 90.0, 90.0, 90.0]),
                             torch.tensor([0.1, 0.1, 0.1, 2.0, 2.0, 2.0]))
    model = CDVAE(ModelConfig.for_dataset("perov_5"), scalers={"lattice": lattice}).eval()
    return model, {
        "model": "reference-size fast model with RANDOM weights (no checkpoints/perov_5/model.pt)",
        "lattice_scalers": "Perov-5-like (lengths / N^(1/3) 2.3 +- 0.1 A, angles 90 +- 2 deg)",
    }


def run_once(model: CDVAE, z: torch.Tensor, num_atoms: torch.Tensor, seed: int) -> dict:
    """One run as the viewer does it; seconds from the start of the run."""
    preset = get_preset("interactive")
    cfg = keep_frames(LangevinConfig(n_step_each=preset.n_step_each, step_lr=preset.step_lr),
                      model.sigmas, FRAMES)
    readout = explore.read_latent(model, z)
    lattice = Lattice.from_parameters(*readout.lengths, *readout.angles_deg)
    first: dict[str, float] = {}
    t0 = time.perf_counter()

    def callback(frame):
        if not first:
            first["callback"] = time.perf_counter() - t0
            payload = explore.viewer_frame(explore.frame_structure(frame, lattice, num_atoms))
            json.dumps({"frames": [payload], "index": 0})
            first["shown"] = time.perf_counter() - t0

    result = decode(model, z[None], cfg, torch.Generator().manual_seed(seed),
                    num_atoms=num_atoms, callback=callback)
    decoded = time.perf_counter() - t0
    structures = explore.frame_structures(result)
    json.dumps([explore.viewer_frame(s) for s in structures])
    explore.trajectory_to_extxyz(result)
    whole = time.perf_counter() - t0
    return {"first_frame_s": first["shown"], "first_callback_s": first["callback"],
            "decode_s": decoded, "whole_trajectory_s": whole, "frames": len(result.frames),
            "steps": decode_steps(model, cfg)}


FIRST_MAP_TARGETS_S = {"cold": 60.0, "warm": 3.0}


def time_first_map(browser, checkpoint: Path, data_dir: Path, cache: Path, log: Path) -> dict:
    """Seconds from opening the app's page to the drawn latent map of the whole test set."""
    from test_app_browser import offline_page, streamlit_server

    env = {"CDVAE_CHECKPOINT": str(checkpoint), "CDVAE_DATA_DIR": str(data_dir),
           "CDVAE_CACHE_DIR": str(cache)}
    count = ("() => { const p = document.querySelector('.js-plotly-plot');"
             " return p && p._fullData ? p._fullData[0].x.length : 0; }")
    started = time.perf_counter()
    with streamlit_server(env, log) as url:
        t0 = time.perf_counter()
        ready = t0 - started  # the server answers once its warm-up (app/main.py) is done
        pg = offline_page(browser, url)
        try:
            # the latent page draws no chart until test crystals are encoded: the first chart
            # is the first map (on a cold cache, that of the first crystals)
            pg.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=1_800_000)
            first = time.perf_counter() - t0
            first_points = pg.evaluate(count)
            # the whole test set: the sidebar says how many crystals were encoded
            done = pg.get_by_text(re.compile(r"Test set: \d+ crystals encoded"))
            done.wait_for(timeout=1_800_000)
            total = int(re.search(r"(\d+) crystals encoded", done.inner_text()).group(1))
            # the sidebar says so before the map is redrawn: wait for the map's own points
            pg.wait_for_function(f"() => ({count})() >= {total}", timeout=600_000)
            whole = time.perf_counter() - t0
            points = pg.evaluate(count)
        finally:
            pg.context.close()
    return {"server_ready_s": round(ready, 2), "first_map_s": round(first, 2),
            "first_map_points": first_points, "whole_map_s": round(whole, 2), "points": points,
            "command_to_first_map_s": round(ready + first, 2)}


def time_floor(browser, points: int, log: Path) -> dict:
    """The same measure on ``benchmarks/app_floor.py``: a Streamlit page holding nothing but a
    WebGL scatter of ``points`` points, the least any Streamlit app with this map can take
    (page scripts, websocket, plotly's chunk loaded and drawn) on this machine and browser."""
    from test_app_browser import offline_page, served_process_for

    started = time.perf_counter()
    with served_process_for(REPO / "benchmarks" / "app_floor.py", {"FLOOR_POINTS": str(points)},
                            log) as url:
        t0 = time.perf_counter()
        pg = offline_page(browser, url)
        try:
            pg.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=600_000)
            first = time.perf_counter() - t0
        finally:
            pg.context.close()
    return {"server_ready_s": round(t0 - started, 2), "first_map_s": round(first, 2),
            "points": points}


def first_map(models: list[str], out: Path, note: str = "") -> int:
    import tempfile

    from playwright.sync_api import sync_playwright
    from test_app_browser import CHROMIUM, CHROMIUM_ARGS

    data_dir = REPO.parent / "shared" / "data"
    results = {}
    with sync_playwright() as p, tempfile.TemporaryDirectory() as tmp:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for name in models:
            checkpoint = REPO / "checkpoints" / name / "model.pt"
            cache = Path(tmp) / name  # empty: the first launch on a new machine
            load = round(os.getloadavg()[0], 2)
            cold = time_first_map(browser, checkpoint, data_dir, cache, Path(tmp) / f"{name}.log")
            warm = time_first_map(browser, checkpoint, data_dir, cache, Path(tmp) / f"{name}2.log")
            floor = time_floor(browser, warm["points"], Path(tmp) / f"{name}_floor.log")
            results[name] = {"cold": cold, "warm": warm, "floor": floor,
                             "load_average_1min_before": load,
                             "meets_targets": {
                                 "cold": cold["first_map_s"] <= FIRST_MAP_TARGETS_S["cold"],
                                 "warm": warm["first_map_s"] <= FIRST_MAP_TARGETS_S["warm"]}}
            print(name, json.dumps(results[name]), flush=True)
            with atomic_write(out) as fh:  # after every model: a stopped run keeps its figures
                fh.write(json.dumps({"partial": True, "results": results, "cpu": cpu_model()},
                                    indent=2) + "\n")
        browser.close()
    text = json.dumps({
        "benchmark": "app: time from opening the page to the first drawn latent map (on a cold "
                     "cache the first 256 test crystals) and to the map of the whole test set",
        "how": "streamlit run app/main.py (default settings), headless Chromium via Playwright; "
               "cold = empty cache folder (graphs built, test set encoded), warm = a new server "
               "process over the cache the cold run left; first_map_s counts from opening the "
               "page once the server answers (server_ready_s after the command: app/main.py "
               "warms up first), command_to_first_map_s is their sum; floor = the same measure "
               "on benchmarks/app_floor.py, a Streamlit page with only a scatter of as many "
               "points",
        "data": str(data_dir), "results": results, "targets_s": FIRST_MAP_TARGETS_S,
        **cpu_info(), "note": note,
        "load_average_1min_after": round(os.getloadavg()[0], 2),
        "torch": torch.__version__, "python": platform.python_version(),
    }, indent=2)
    print(text)
    with atomic_write(out) as fh:
        fh.write(text + "\n")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--checkpoint", help="model file (default: checkpoints/perov_5/model.pt)")
    parser.add_argument("--out", help="result file (default: benchmarks/results/app.json, or "
                                      "app_first_map.json with --first-map)")
    parser.add_argument("--note", default="",
                        help="what else ran on the machine, recorded in the --first-map file")
    parser.add_argument("--first-map", action="store_true",
                        help="time the cold and warm launch to the latent map instead")
    parser.add_argument("--models", nargs="+", default=["perov_5", "carbon_24"])
    args = parser.parse_args()
    if args.first_map:
        return first_map(args.models, Path(args.out or REPO / "benchmarks" / "results"
                                           / "app_first_map.json"), args.note)
    args.out = args.out or str(REPO / "benchmarks" / "results" / "app.json")

    threads = max(1, int(os.environ.get("CDVAE_APP_THREADS", "1")))
    torch.set_num_threads(threads)
    model, source = _model(args.checkpoint)
    material = cubic_srtio3()
    data = CrystalDataset.from_structures([material], model.cfg.dataset)
    z = encode_dataset(model, data)[0]  # the viewer starts from the encoded material's mean
    num_atoms = torch.tensor([len(material)])
    run_once(model, z, num_atoms, seed=0)  # warm-up: first calls allocate and import
    runs = [run_once(model, z, num_atoms, seed=i) for i in range(args.repeats)]
    median = {k: round(statistics.median(r[k] for r in runs), 3)
              for k in ("first_frame_s", "first_callback_s", "decode_s", "whole_trajectory_s")}
    out = {
        "benchmark": "app denoising viewer: time to first 3D frame and whole default trajectory",
        "material": f"{material.composition.reduced_formula} (cubic perovskite, 5 atoms, "
                    "built in code), z = its encoder mean, number of atoms forced to 5",
        **source,
        "sampler": "interactive preset: "
                   f"{get_preset('interactive').n_step_each} steps per level x "
                   f"{model.sigmas.shape[0]} levels = {runs[0]['steps']} steps, "
                   f"{runs[0]['frames']} frames kept",
        "repeats": args.repeats,
        "median_s": median,
        "runs": [{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}
                 for r in runs],
        "targets_s": TARGETS_S,
        "meets_targets": {
            "first_frame": median["first_frame_s"] <= TARGETS_S["first_frame"],
            "whole_trajectory": median["whole_trajectory_s"] <= TARGETS_S["whole_trajectory"],
        },
        "device": "cpu",
        "torch_threads": threads,
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "note": "first frame = decode start to the first frame's viewer payload serialised; "
                "whole = decode plus every frame's payload and the extended XYZ; browser "
                "drawing excluded",
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    text = json.dumps(out, indent=2)
    print(text)
    with atomic_write(args.out) as fh:
        fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
