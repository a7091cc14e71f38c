"""Where the fast network's time goes: torch.profiler tables of one training step (forward,
backward, Adam) and one decoder call (a Langevin step's network part), by operator and by
module, on this machine's CPU (named in the output). Writes
benchmarks/results/profile_<arch>.json (top operators, module shares, the CPU) and prints the
tables.

    python benchmarks/profile_model.py --data-dir ../shared/data [--arch fast] [--batch 256]
        [--compile] [--threads 2]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function


def _module_hooks(model: torch.nn.Module, depth: int = 3):
    """record_function ranges around every module down to ``depth`` levels (by qualified
    name), so that the profile can be read by module as well as by operator."""
    handles = []
    for name, mod in model.named_modules():
        if not name or name.count(".") >= depth:
            continue
        label = f"module::{name}"

        def pre(_m, _inp, label=label):
            _m._prof_ctx = record_function(label)
            _m._prof_ctx.__enter__()

        def post(_m, _inp, _out):
            _m._prof_ctx.__exit__(None, None, None)

        handles.append(mod.register_forward_pre_hook(pre))
        handles.append(mod.register_forward_hook(post))
    return handles


def _tables(prof, total_s: float, top: int):
    ops, modules = [], defaultdict(float)
    for ev in prof.key_averages():
        if ev.key.startswith("module::"):
            modules[ev.key[len("module::"):]] += ev.cpu_time_total / 1e6
        elif not ev.key.startswith(("step::", "ProfilerStep")):
            ops.append({"op": ev.key, "self_s": ev.self_cpu_time_total / 1e6,
                        "count": ev.count})
    ops.sort(key=lambda r: -r["self_s"])
    self_total = sum(r["self_s"] for r in ops) or 1.0
    for r in ops:
        r["share"] = round(r["self_s"] / self_total, 4)
    mods = [{"module": k, "total_s": v, "share_of_step": round(v / total_s, 4)}
            for k, v in sorted(modules.items(), key=lambda kv: -kv[1])]
    return ops[:top], mods


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--dataset", default="perov_5")
    p.add_argument("--arch", default="fast")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--out", default=None)
    p.add_argument("--no-flush", action="store_true",
                   help="keep subnormal floats (the CPU's default; run with PYTHONPATH set to "
                        "an older checkout for before figures)")
    args = p.parse_args()
    if args.no_flush:
        torch.set_num_threads(args.threads)
    else:
        from cdvae_core.utils import configure_cpu

        configure_cpu(args.threads)  # subnormals flushed, as the CLI and the app do

    from cdvae_core.data.scaler import fit_scalers
    from cdvae_core.data.splits import load_split
    from cdvae_core.model.cdvae import CDVAE
    from cdvae_core.model.config import ModelConfig
    from cdvae_core.nn.accel import compile_model
    from cdvae_core.utils import machine_record, write_json_result

    ds = load_split(args.data_dir, args.dataset, "val", progress=False)
    torch.manual_seed(0)
    model = CDVAE(ModelConfig.for_dataset(args.dataset, architecture=args.arch), fit_scalers(ds))
    if args.compile:
        compile_model(model, "on")
    b = ds.collate(range(args.batch))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def train_step():
        out = model(b)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()

    z = torch.randn(args.batch, model.cfg.latent_dim)

    def decoder_call():
        with torch.no_grad():
            model.decode_scores(z, b.frac_coords, b.atom_types, b.num_atoms, b.lattice,
                                b.batch, model.sigmas[10])

    import cdvae_core

    result = {"dataset": args.dataset, "arch": args.arch, "compile": args.compile,
              "batch": args.batch, "threads": args.threads,
              "subnormals_flushed": not args.no_flush,
              "code": str(Path(cdvae_core.__file__).resolve().parents[1]),
              "machine": machine_record()}
    for name, fn in (("train_step", train_step), ("decoder_call", decoder_call)):
        model.train(name == "train_step")
        fn()  # warm-up (and the one-off compile)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            fn()
        plain = (time.perf_counter() - t0) / args.steps
        handles = _module_hooks(model) if not args.compile else []
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            for _ in range(args.steps):
                fn()
            profiled = (time.perf_counter() - t0) / args.steps
        for h in handles:
            h.remove()
        ops, mods = _tables(prof, profiled * args.steps, args.top)
        result[name] = {"seconds_per_call": plain, "seconds_per_call_profiled": profiled,
                        "top_ops": ops, "modules": mods}
        print(f"\n== {name}: {plain:.3f} s per call ({profiled:.3f} s under the profiler)")
        for r in ops:
            print(f"  {r['share']:6.1%}  {r['self_s']:.3f} s  x{r['count']:<6} {r['op']}")
        for r in mods[:20]:
            print(f"  module {r['share_of_step']:6.1%}  {r['module']}")
    out = args.out or (f"benchmarks/results/profile_{args.arch}{'_compile' if args.compile else ''}"
                       f"_{args.dataset}_b{args.batch}.json")
    write_json_result(out, result, show=None)  # the tables above are the readable copy
    print("wrote", out)


if __name__ == "__main__":
    main()
