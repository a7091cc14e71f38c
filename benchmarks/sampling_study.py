"""Sampling study: quality of generated crystals against sampling cost.

For each sampler setting (scheme, steps per level, level stride, step size, number of levels)
generate ``--num-samples`` crystals from the prior with one seed and score them: validity,
COV-R / COV-P, Wasserstein distances of density, number of elements and (with ``--predictor``)
the property. Writes ``<out-dir>/sampling_study_<dataset>_<reference><tag>.csv`` and a plot
``.html`` beside it; prints each row as JSON.

The reference crystals are, by default, the model's own **validation** split (the split policy
stored in the checkpoint: upstream ``val.csv``, or the seeded hold-out of ``val.csv`` where
``train.csv`` is absent). Sampler defaults are chosen on it. ``--reference test`` scores against
``test.csv``; use it only to report a setting already chosen, never to choose one.

    python benchmarks/sampling_study.py checkpoints/perov_5/model.pt --data-dir ../shared/data \
        --predictor checkpoints/perov_5/predictor.pt --num-samples 512 \
        --grid 20:1:1e-4 5:1:2e-4 4:1:2e-4:pc 0:1:0:pc:250

Grid entries are ``steps:stride:step_lr[:scheme[:num_levels]]`` (``LangevinConfig``).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import pandas as pd
import torch

from cdvae_core.data.splits import load_split, load_training_splits
from cdvae_core.metrics.evaluate import evaluate_generation
from cdvae_core.metrics.predictor import load_predictor
from cdvae_core.nn.accel import compile_model
from cdvae_core.sampling import LangevinConfig, generate, sampling_sigmas, score_evaluations
from cdvae_core.training.checkpoint import load_model
from cdvae_core.utils import atomic_write

# steps:stride:step_lr[:scheme[:num_levels]], from the paper's setting down to 50 decoder calls
GRID = [
    "100:1:1e-4", "20:1:1e-4", "10:1:2e-4", "5:1:1e-4", "5:1:2e-4", "5:1:3e-4", "5:1:4e-4",
    "4:1:2e-4:pc", "4:1:3e-4:pc", "0:1:1e-4:pc:250", "1:1:2e-4:pc:125", "2:1:1e-4",
]


def parse_setting(text: str) -> LangevinConfig:
    """``steps:stride:step_lr[:scheme[:num_levels]]`` as a :class:`LangevinConfig`."""
    parts = text.split(":")
    if not 3 <= len(parts) <= 5:
        raise ValueError(f"grid entry {text!r}: expected steps:stride:step_lr[:scheme[:levels]]")
    steps, stride, lr = int(parts[0]), int(parts[1]), float(parts[2])
    scheme = parts[3] if len(parts) > 3 else "langevin"
    levels = int(parts[4]) if len(parts) > 4 else None
    return LangevinConfig(n_step_each=steps, level_stride=stride, step_lr=lr, scheme=scheme,
                          num_levels=levels)


def reference_split(data_dir: str, dataset: str, which: str, policy: dict):
    """The crystals to score against: the model's validation split, or test.csv."""
    if which == "test":
        return load_split(data_dir, dataset, "test", progress=False)
    splits = load_training_splits(data_dir, dataset, policy.get("holdout_fraction") or 0.1,
                                  policy.get("seed", 0), progress=False)
    return splits.val


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("checkpoint")
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--predictor")
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--reference", choices=["val", "test"], default="val",
                   help="val (default): the model's validation split, on which settings are "
                        "chosen; test: only to report an already chosen setting")
    p.add_argument("--reference-size", type=int, default=None,
                   help="score against the first N reference crystals (default: all)")
    p.add_argument("--tag", default="", help="suffix of the output file names")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--grid", nargs="*", help="subset of settings as steps:stride:lr")
    p.add_argument("--out-dir", default="benchmarks/results")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--compile", choices=["auto", "on", "off"], default="auto")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    model, info = load_model(args.checkpoint, with_info=True)
    compiled = compile_model(model, args.compile)
    if compiled:  # compile outside the timings
        generate(model, 16, LangevinConfig(n_step_each=1, level_stride=50), args.seed, 16,
                 progress=False)
    dataset = model.cfg.dataset
    ref = reference_split(args.data_dir, dataset, args.reference, info.get("split_policy") or {})
    if args.reference_size:
        ref = ref.subset(range(min(args.reference_size, len(ref))))
    reference = ref.structures()
    predictor = load_predictor(args.predictor) if args.predictor else None
    grid = [parse_setting(g) for g in (args.grid or GRID)]
    name = f"sampling_study_{dataset}_{args.reference}{args.tag}"
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
    for cfg in grid:
        t0 = time.perf_counter()
        samples = generate(model, args.num_samples, cfg, args.seed, args.batch_size,
                           progress=False)
        seconds = time.perf_counter() - t0
        summary, _ = evaluate_generation(
            samples, reference, dataset, n_diversity=min(1000, args.num_samples),
            seed=args.seed, property_fn=predictor.predict if predictor else None,
            reference_ids=ref.material_ids, progress=False,
        )
        calls = score_evaluations(sampling_sigmas(model.sigmas, cfg), cfg)
        row = {
            "scheme": cfg.scheme, "steps_per_level": cfg.n_step_each,
            "level_stride": cfg.level_stride, "step_lr": cfg.step_lr,
            "num_levels": len(sampling_sigmas(model.sigmas, cfg)),
            "decoder_calls": calls,
            "seconds": seconds,
            "seconds_per_10k": seconds * 10000 / args.num_samples,
            "quiet_minutes_per_10k_estimate": (
                calls * math.ceil(10000 / 256) * step_s / 60 if step_s else None),
            "num_samples": args.num_samples, "reference": args.reference,
            "reference_size": len(reference),
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
        with atomic_write(out / f"{name}.csv") as fh:
            table.to_csv(fh, index=False)
    _plot(table, Path(args.out_dir) / f"{name}.html", f"{dataset} vs {args.reference}",
          args.num_samples, torch.get_num_threads())


def _plot(table: pd.DataFrame, path: Path, dataset: str, n: int, threads: int) -> None:
    import plotly.graph_objects as go

    fig = go.Figure()
    labels = [f"{sc} {s}x{lv}/{st} lr {lr:g}" for sc, s, lv, st, lr in zip(
        table["scheme"], table["steps_per_level"], table["num_levels"], table["level_stride"],
        table["step_lr"], strict=True)]
    for col in ("struct_validity", "comp_validity", "cov_recall", "cov_precision"):
        fig.add_trace(go.Scatter(x=table["decoder_calls"], y=table[col], mode="markers",
                                 name=col, text=labels))
    fig.update_layout(title=f"{dataset}: quality vs sampling cost ({n} samples, {threads} threads)",
                      xaxis_title="decoder calls per sample (cost)", yaxis_title="fraction",
                      xaxis_type="log")
    with atomic_write(path) as fh:
        fh.write(fig.to_html(include_plotlyjs="cdn", full_html=True))


if __name__ == "__main__":
    main()
