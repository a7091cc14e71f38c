"""Time the generation evaluation of Perov-5 samples against the Perov-5 test split.

Stand-ins for generated samples: test-split crystals drawn with replacement, every atom moved by
Gaussian noise (``--noise`` Å per Cartesian component). The reference fingerprints are timed
twice: cold (a fresh cache, a one-time cost per reference set) and warm (read from the cache).

With ``--measure-n`` smaller than ``--n`` the per-sample stages are measured on ``measure_n``
samples and scaled linearly to ``n``; the JSON says so.

    python benchmarks/bench_metrics.py --n 10000 --measure-n 1000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from cdvae_core.metrics.evaluate import evaluate_generation
from cdvae_core.metrics.fingerprints import cached_fingerprints
from cdvae_core.utils import atomic_write, available_workers, cpu_model

REPO = Path(__file__).resolve().parents[1]
PER_SAMPLE_STAGES = ("validity_and_symmetry", "generated_fingerprints", "coverage")


def _perturbed(structures: list[Structure], n: int, noise: float, seed: int) -> list[Structure]:
    rng = np.random.default_rng(seed)
    out = []
    for i in rng.integers(len(structures), size=n):
        s = structures[i]
        cart = s.cart_coords + rng.normal(scale=noise, size=(len(s), 3))  # [N, 3] Å
        out.append(Structure(s.lattice, s.species, cart, coords_are_cartesian=True))
    return out


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished (pool worker) children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000, help="samples to report the time for")
    parser.add_argument("--measure-n", type=int, default=None, help="samples actually run")
    parser.add_argument("--noise", type=float, default=0.1, help="coordinate noise (Å)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("CDVAE_DATA_DIR", str(REPO.parent / "shared" / "data")),
    )
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "metrics.json"))
    args = parser.parse_args()
    load_at_start = os.getloadavg()[0]
    measure_n = args.measure_n or args.n
    workers = args.workers or available_workers()

    frame = pd.read_csv(Path(args.data_dir) / "perov_5" / "test.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = [Structure.from_str(cif, fmt="cif") for cif in frame["cif"]]
    generated = _perturbed(reference, measure_n, args.noise, args.seed)

    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        cached_fingerprints(reference, cache, workers, progress=False)
        reference_cold = time.perf_counter() - t0
        t0, cpu0 = time.perf_counter(), _cpu_seconds()
        summary, _ = evaluate_generation(
            generated,
            reference,
            "perov_5",
            reference_ids=list(frame["material_id"]),
            cache_dir=cache,
            n_workers=workers,
            progress=False,
        )
        total_measured = time.perf_counter() - t0
        cpu_measured = _cpu_seconds() - cpu0

    timings = summary["timings_s"]
    scale = args.n / measure_n
    per_sample = sum(timings[k] for k in PER_SAMPLE_STAGES)
    # Diversity / property statistics use at most 1,000 samples and the warm cache read is
    # fixed: neither grows with n.
    fixed = total_measured - per_sample
    result = {
        "benchmark": "evaluate_generation, Perov-5 stand-ins against the Perov-5 test split",
        "n_reported": args.n,
        "n_measured": measure_n,
        "extrapolated": measure_n != args.n,
        "extrapolation": (
            f"per-sample stages ({', '.join(PER_SAMPLE_STAGES)}) scaled linearly by "
            f"{scale:g}; other stages kept as measured"
            if measure_n != args.n
            else None
        ),
        "n_reference": len(reference),
        "workers": workers,
        "coordinate_noise_A": args.noise,
        "seconds": {
            "reference_fingerprints_cold_one_time": round(reference_cold, 2),
            "reference_fingerprints_warm_cache": round(timings["reference_fingerprints"], 2),
            **{f"{k}_measured": round(timings[k], 2) for k in timings},
            "total_measured": round(total_measured, 2),
            "total_for_n_reported": round(fixed + per_sample * scale, 2),
            "total_for_n_reported_with_cold_reference": round(
                fixed + per_sample * scale + reference_cold, 2
            ),
        },
        "per_sample_ms": round(1000 * per_sample / measure_n, 2),
        # CPU seconds do not depend on other jobs sharing the cores: CPU / workers is the wall
        # time on otherwise idle cores (all stages but the tiny coverage step run in parallel).
        "cpu_seconds_measured": round(cpu_measured, 2),
        "estimated_s_for_n_reported_on_idle_cores": round(cpu_measured * scale / workers, 2),
        "target_s_for_10000": 900,
        "metrics_on_stand_ins": {
            k: summary[k]
            for k in ("struct_validity", "comp_validity", "cov_recall", "cov_precision")
        },
        "machine": {
            "cpu": cpu_model(),
            "cores_available": available_workers(),
            # Other jobs on the machine slow every stage; a load above 0 means shared cores.
            "load_average_1min_at_start": round(load_at_start, 2),
            "python": platform.python_version(),
        },
    }
    text = json.dumps(result, indent=2)
    with atomic_write(args.out, "w") as fh:
        fh.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
