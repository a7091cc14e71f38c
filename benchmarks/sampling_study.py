"""Sampling study: quality of generated crystals against sampling cost.

For each sampler setting (steps per level, level stride, step size) generate ``--num-samples``
crystals from the prior with one seed, time it, and score them against test.csv: validity,
COV-R / COV-P, Wasserstein distances of density, number of elements and (with ``--predictor``)
the property. Writes ``benchmarks/results/sampling_study_<dataset>.csv`` and a plot
``sampling_study_<dataset>.html``; prints the table as JSON.

    python benchmarks/sampling_study.py checkpoints/perov_5/model.pt --data-dir ../shared/data \
        --predictor checkpoints/perov_5/predictor.pt --num-samples 1000
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import pandas as pd
import torch

from cdvae_core.data.splits import load_split
from cdvae_core.metrics.evaluate import evaluate_generation
from cdvae_core.metrics.predictor import load_predictor
from cdvae_core.nn.accel import compile_model
from cdvae_core.sampling import LangevinConfig, generate
from cdvae_core.sampling.langevin import levels_to_run
from cdvae_core.training.checkpoint import load_model
from cdvae_core.utils import atomic_write

# (steps per level, level stride, step_lr): from the paper's setting down to 50 decoder calls
GRID = [
    (100, 1, 1e-4),
    (50, 1, 1e-4),
    (20, 1, 1e-4),
    (10, 1, 1e-4),
    (5, 1, 1e-4),
    (2, 1, 1e-4),
    (1, 1, 1e-4),
    (10, 2, 1e-4),
    (5, 2, 1e-4),
    (2, 2, 1e-4),
    (5, 1, 5e-5),
    (5, 1, 1.5e-4),
]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("checkpoint")
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--predictor")
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--reference-size", type=int, default=None,
                   help="score against the first N test crystals (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--grid", nargs="*", help="subset of settings as steps:stride:lr")
    p.add_argument("--out-dir", default="benchmarks/results")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--compile", choices=["auto", "on", "off"], default="auto")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    model = load_model(args.checkpoint)
    compiled = compile_model(model, args.compile)
    if compiled:  # compile outside the timings
        generate(model, 16, LangevinConfig(n_step_each=1, level_stride=50), args.seed, 16,
                 progress=False)
    dataset = model.cfg.dataset
    test = load_split(args.data_dir, dataset, "test", progress=False)
    if args.reference_size:
        test = test.subset(range(min(args.reference_size, len(test))))
    reference = test.structures()
    predictor = load_predictor(args.predictor) if args.predictor else None
    grid = GRID
    if args.grid:
        grid = [(int(a), int(b), float(c)) for a, b, c in (g.split(":") for g in args.grid)]
    # The run's own timings depend on what else the machine was doing; the estimate below uses
    # the quiet 2-thread Langevin step time of benchmarks/results/model.json instead.
    step_s = None
    bench_file = Path(__file__).resolve().parent / "results" / "model.json"
    if bench_file.is_file() and args.batch_size == 256:
        arch = ("fast" if model.cfg.architecture == "fast" else "paper") + (
            "+compile" if compiled else "")
        entry = json.loads(bench_file.read_text()).get(f"{arch}/langevin_{dataset}_b256", {})
        step_s = entry.get("median_s")
    rows = []
    for steps, stride, lr in grid:
        cfg = LangevinConfig(n_step_each=steps, level_stride=stride, step_lr=lr)
        t0 = time.perf_counter()
        samples = generate(model, args.num_samples, cfg, args.seed, args.batch_size,
                           progress=False)
        seconds = time.perf_counter() - t0
        summary, _ = evaluate_generation(
            samples, reference, dataset, n_diversity=min(1000, args.num_samples),
            seed=args.seed, property_fn=predictor.predict if predictor else None,
            reference_ids=test.material_ids, progress=False,
        )
        levels = len(levels_to_run(model.sigmas, cfg))
        row = {
            "steps_per_level": steps, "level_stride": stride, "step_lr": lr,
            "decoder_calls": steps * levels,
            "seconds": seconds,
            "seconds_per_10k": seconds * 10000 / args.num_samples,
            "quiet_minutes_per_10k_estimate": (
                steps * levels * math.ceil(10000 / 256) * step_s / 60 if step_s else None),
            "num_samples": args.num_samples, "reference_size": len(reference),
            "threads": args.threads, "compiled": bool(compiled),
            "checkpoint": args.checkpoint,
            **{k: summary.get(k) for k in ("struct_validity", "comp_validity", "cov_recall",
                                           "cov_precision", "wdist_density", "wdist_num_elems",
                                           "wdist_property")},
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        table = pd.DataFrame(rows)
        out = Path(args.out_dir)
        with atomic_write(out / f"sampling_study_{dataset}.csv") as fh:
            table.to_csv(fh, index=False)
    _plot(table, Path(args.out_dir) / f"sampling_study_{dataset}.html", dataset,
          args.num_samples, torch.get_num_threads())


def _plot(table: pd.DataFrame, path: Path, dataset: str, n: int, threads: int) -> None:
    import plotly.graph_objects as go

    fig = go.Figure()
    for col in ("struct_validity", "comp_validity", "cov_recall", "cov_precision"):
        fig.add_trace(go.Scatter(x=table["seconds_per_10k"] / 60, y=table[col], mode="markers",
                                 name=col, text=[f"{s}x/{st} lr {lr}" for s, st, lr in zip(
                                     table["steps_per_level"], table["level_stride"],
                                     table["step_lr"], strict=True)]))
    fig.update_layout(title=f"{dataset}: quality vs sampling cost ({n} samples, {threads} threads)",
                      xaxis_title="minutes per 10,000 samples", yaxis_title="fraction",
                      xaxis_type="log")
    with atomic_write(path) as fh:
        fh.write(fig.to_html(include_plotlyjs="cdn", full_html=True))


if __name__ == "__main__":
    main()
