"""Model speed: training step (forward, backward, Adam) and Langevin step times, peak memory,
and a full training epoch over Perov-5 val.csv, for each architecture (``fast``, ``paper``, and
``fast+compile``: the fast one with torch.compile'd trunks, see cdvae_core/nn/accel.py). Each case runs in a fresh
subprocess so that its peak memory (max RSS) is its own. Prints JSON and writes
benchmarks/results/model.json.

    python benchmarks/bench_model.py --data-dir ../shared/data [--arch fast paper fast+compile]
        [--repeats 5] [--merge]   # --merge: update only the given architectures in model.json
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

# txie-93/cdvae default configuration, torch 2.13 CPU, 2 threads, measured in an earlier session
# on a CPU that was not recorded: NOT comparable with the figures this script measures (our CPU
# model changes between sessions); side-by-side figures are in benchmarks/README.md
REFERENCE = {
    "note": "earlier session, CPU not recorded: not comparable with this file's figures",
    "train_step_perov_5_b32_s": 0.85,
    "train_step_perov_5_b256_s": 7.8,
    "train_step_perov_5_b256_peak_gb": 6.0,
    "train_step_carbon_24_b32_s": 1.50,
    "langevin_step_perov_5_32_s": 0.43,
    "langevin_step_carbon_24_32_s": 0.75,
}

CASES = [
    ("train", "perov_5", 32),
    ("train", "perov_5", 256),
    ("train", "carbon_24", 32),
    ("langevin", "perov_5", 32),
    ("langevin", "perov_5", 256),
    ("langevin", "carbon_24", 32),
]


def _build(CDVAE, ModelConfig, dataset: str, arch: str, scalers):
    """``arch`` is ``fast``, ``paper`` or either with ``+compile`` (torch.compile'd trunks)."""
    from cdvae_core.nn.accel import compile_model

    base, _, extra = arch.partition("+")
    model = CDVAE(ModelConfig.for_dataset(dataset, architecture=base), scalers)
    if extra == "compile":
        compile_model(model, "on")
    return model


def run_case(kind: str, dataset: str, batch: int, arch: str, data_dir: str, repeats: int):
    from cdvae_core.data.scaler import fit_scalers
    from cdvae_core.data.splits import load_split
    from cdvae_core.geometry import cart_to_frac, frac_to_cart, wrap_frac
    from cdvae_core.model.cdvae import CDVAE
    from cdvae_core.model.config import ModelConfig

    ds = load_split(data_dir, dataset, "val", progress=False)
    torch.manual_seed(0)
    model = _build(CDVAE, ModelConfig, dataset, arch, fit_scalers(ds))
    b = ds.collate(range(batch))
    times = []
    if kind == "train":
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            out = model(b)
            opt.zero_grad()
            out["loss"].backward()
            opt.step()
            times.append(time.perf_counter() - t0)
    else:
        model.eval()
        z = torch.randn(batch, model.cfg.latent_dim)
        lattice = b.lattice
        sigma = model.sigmas[10]
        with torch.no_grad():
            for _ in range(repeats + 1):
                t0 = time.perf_counter()
                # one Langevin step: decoder call (graph included) and the update
                score, logits = model.decode_scores(z, b.frac_coords, b.atom_types, b.num_atoms,
                                                    lattice, b.batch, sigma)
                cart = frac_to_cart(b.frac_coords, lattice, b.batch) + 1e-2 * score
                cart = cart + 0.1 * torch.randn_like(cart)
                _ = logits.argmax(-1), wrap_frac(cart_to_frac(cart, lattice, b.batch))
                times.append(time.perf_counter() - t0)
    times = times[1:]  # the first call warms up allocators and caches (and compiles)
    return {"median_s": statistics.median(times), "min_s": min(times),
            "structures_per_s": batch / statistics.median(times),
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
            "repeats": repeats}


def run_epoch(arch: str, data_dir: str, batch: int):
    from cdvae_core.data.scaler import fit_scalers
    from cdvae_core.data.splits import load_split
    from cdvae_core.model.cdvae import CDVAE
    from cdvae_core.model.config import ModelConfig

    ds = load_split(data_dir, "perov_5", "val", progress=False)
    torch.manual_seed(0)
    model = _build(CDVAE, ModelConfig, "perov_5", arch, fit_scalers(ds))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    perm = torch.randperm(len(ds))

    def step(b):
        out = model(b)
        opt.zero_grad()
        out["loss"].backward()
        torch.nn.utils.clip_grad_value_(model.parameters(), 0.5)
        opt.step()

    # one warm-up step outside the timing (for "+compile" it holds the one-off compile)
    t0 = time.perf_counter()
    step(ds.collate(perm[:batch]))
    warmup = time.perf_counter() - t0
    t0 = time.perf_counter()
    for start in range(0, len(ds), batch):
        step(ds.collate(perm[start : start + batch]))
    return {"epoch_s": time.perf_counter() - t0, "warmup_step_s": warmup,
            "structures": len(ds), "batch_size": batch,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--arch", nargs="+", default=["fast", "paper"])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--epoch-batch", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="benchmarks/results/model.json")
    p.add_argument("--merge", action="store_true",
                   help="keep the other architectures' entries of an existing --out file")
    p.add_argument("--one", nargs=4, metavar=("KIND", "DATASET", "BATCH", "ARCH"),
                   help=argparse.SUPPRESS)
    p.add_argument("--no-flush", action="store_true",
                   help="keep subnormal floats (the CPU's default; for before/after figures)")
    args = p.parse_args()
    if args.no_flush:
        torch.set_num_threads(args.threads)
    else:
        from cdvae_core.utils import configure_cpu

        configure_cpu(args.threads)  # subnormals flushed, as the CLI and the app do
    if args.one:
        kind, dataset, batch, arch = args.one
        if kind == "epoch":
            res = run_epoch(arch, args.data_dir, int(batch))
        else:
            res = run_case(kind, dataset, int(batch), arch, args.data_dir, args.repeats)
        print(json.dumps(res))
        return
    results: dict = {"reference_implementation": REFERENCE, "threads": args.threads,
                     "subnormals_flushed": not args.no_flush}
    if args.merge and Path(args.out).is_file():
        results = {**json.loads(Path(args.out).read_text()), **results}
    for arch in args.arch:
        cases = [*CASES, ("epoch", "perov_5", args.epoch_batch)]
        for kind, dataset, batch in cases:
            key = f"{arch}/{kind}_{dataset}_b{batch}"
            cmd = [sys.executable, __file__, "--data-dir", args.data_dir, "--repeats",
                   str(args.repeats), "--threads", str(args.threads), "--one", kind, dataset,
                   str(batch), arch, *(["--no-flush"] if args.no_flush else [])]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                results[key] = {"error": out.stderr.strip().splitlines()[-1:]}
            else:
                results[key] = json.loads(out.stdout.strip().splitlines()[-1])
            print(key, results[key], file=sys.stderr, flush=True)
    from cdvae_core.utils import machine_record, write_json_result

    # every figure of this file was taken on this CPU (compare speeds only within one file)
    results["machine"] = machine_record()
    write_json_result(args.out, results)


if __name__ == "__main__":
    main()
