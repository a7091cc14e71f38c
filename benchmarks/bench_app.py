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
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
from cdvae_core.utils import cpu_model

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--checkpoint", help="model file (default: checkpoints/perov_5/model.pt)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "app.json"))
    args = parser.parse_args()

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
