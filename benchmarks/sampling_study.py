"""Sampling study: quality of generated crystals against sampling cost.

For each sampler setting (scheme, steps per level, level stride, step size, number of levels)
generate ``--num-samples`` crystals from the prior with one seed and score them: validity,
COV-R / COV-P, Wasserstein distances of density, number of elements and (with ``--predictor``)
the property. Writes ``<out-dir>/sampling_study_<dataset>_<reference><tag>.csv`` and a plot
``.html`` beside it; prints each row as JSON.

The same samples are scored against each ``--reference`` set (one row per setting and set):

``val``
    the model's own validation split (the split policy stored in the checkpoint: upstream
    ``val.csv``, or the seeded hold-out of ``val.csv`` where ``train.csv`` is absent);
``trainval``
    its training and validation crystals together: every crystal outside ``test.csv``. The
    sampler cannot memorise, so this larger set is a fair and much less noisy yardstick of
    "close to a real material" for choosing sampler settings (default: ``val trainval``);
``test``
    ``test.csv``: only to report a setting already chosen, never to choose one.

    python benchmarks/sampling_study.py checkpoints/perov_5/model.pt --data-dir ../shared/data \
        --predictor checkpoints/perov_5/predictor.pt --num-samples 512 \
        --grid 20:1:1e-4 5:1:2e-4 4:1:2e-4:pc 0:1:0:pc:250

Grid entries are ``steps:stride:step_lr[:scheme[:num_levels]]`` (``DecodeConfig``); each runs
once per ``--num-atoms`` choice (``argmax`` by default; ``argmax sample`` compares the two).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from cdvae_core.data.splits import load_split, load_training_splits
from cdvae_core.diffusion.langevin import LangevinConfig, score_evaluations
from cdvae_core.metrics.evaluate import evaluate_generation
from cdvae_core.model.checkpoint import load_model
from cdvae_core.model.decode import DecodeConfig, generate, sampling_sigmas
from cdvae_core.nn.accel import compile_model
from cdvae_core.predictor.gnn import load_predictor
from cdvae_core.utils import atomic_write

# steps:stride:step_lr[:scheme[:num_levels]], from the paper's setting down to 50 decoder calls
GRID = [
    "100:1:1e-4", "20:1:1e-4", "10:1:2e-4", "5:1:1e-4", "5:1:2e-4", "5:1:3e-4", "5:1:4e-4",
    "4:1:2e-4:pc", "4:1:3e-4:pc", "0:1:1e-4:pc:250", "1:1:2e-4:pc:125", "2:1:1e-4",
]


def parse_setting(text: str) -> DecodeConfig:
    """``steps:stride:step_lr[:scheme[:num_levels]]`` as a :class:`DecodeConfig`."""
    parts = text.split(":")
    if not 3 <= len(parts) <= 5:
        raise ValueError(f"grid entry {text!r}: expected steps:stride:step_lr[:scheme[:levels]]")
    steps, stride, lr = int(parts[0]), int(parts[1]), float(parts[2])
    scheme = parts[3] if len(parts) > 3 else "langevin"
    levels = int(parts[4]) if len(parts) > 4 else None
    return DecodeConfig(LangevinConfig(n_step_each=steps, level_stride=stride, step_lr=lr,
                                       scheme=scheme), num_levels=levels)


def reference_sets(data_dir: str, dataset: str, names: list[str], policy: dict,
                   size: int | None = None) -> dict[str, tuple[list, list]]:
    """``{name: (structures, material ids)}`` for each reference set asked for."""
    out = {}
    if {"val", "trainval"} & set(names):
        splits = load_training_splits(data_dir, dataset, policy.get("holdout_fraction") or 0.1,
                                      policy.get("seed", 0), progress=False)
    for name in names:
        if name == "test":
            parts = [load_split(data_dir, dataset, "test", progress=False)]
        elif name == "val":
            parts = [splits.val]
        else:
            parts = [splits.train, splits.val]
        structures = [s for d in parts for s in d.structures()]
        ids = [i for d in parts for i in d.material_ids]
        if size:
            structures, ids = structures[:size], ids[:size]
        out[name] = (structures, ids)
    return out


def replot(csv_path: str | Path) -> None:
    """Redraw the figure of a study from its CSV (``python sampling_study.py --replot X.csv``)."""
    table = pd.read_csv(csv_path)
    _plot(table, Path(csv_path).with_suffix(".html"), str(Path(csv_path).stem),
          int(table["num_samples"].iloc[0]), int(table["threads"].iloc[0]))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("checkpoint")
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--predictor")
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--reference", nargs="+", choices=["val", "trainval", "test"],
                   default=["val", "trainval"],
                   help="reference sets (default: val trainval, on which settings are chosen); "
                        "test: only to report an already chosen setting")
    p.add_argument("--reference-size", type=int, default=None,
                   help="score against the first N reference crystals (default: all)")
    p.add_argument("--tag", default="", help="suffix of the output file names")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--grid", nargs="*", help="subset of settings as steps:stride:lr")
    p.add_argument("--num-atoms", nargs="+", choices=["argmax", "sample"], default=["argmax"],
                   help="how decoding picks the number of atoms (DecodeConfig.num_atoms); "
                        "every grid setting runs once per choice")
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
    references = reference_sets(args.data_dir, dataset, args.reference,
                                info.get("split_policy") or {}, args.reference_size)
    predictor = load_predictor(args.predictor) if args.predictor else None
    grid = [replace(parse_setting(g), num_atoms=how)
            for g in (args.grid or GRID) for how in args.num_atoms]
    name = f"sampling_study_{dataset}{args.tag}"
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
        sigmas = sampling_sigmas(model.sigmas, cfg)
        calls = score_evaluations(sigmas, cfg.sampler)
        sizes = Counter(len(x) for x in samples if x is not None)
        for ref_name, (reference, ref_ids) in references.items():
            summary, _ = evaluate_generation(
                samples, reference, dataset, n_diversity=min(1000, args.num_samples),
                seed=args.seed, property_fn=predictor.predict if predictor else None,
                reference_ids=ref_ids, progress=False,
            )
            row = {
                "scheme": cfg.sampler.scheme, "steps_per_level": cfg.sampler.n_step_each,
                "level_stride": cfg.sampler.level_stride, "step_lr": cfg.sampler.step_lr,
                "num_levels": len(sigmas), "num_atoms": cfg.num_atoms,
                "decoder_calls": calls,
                "seconds": seconds,
                "seconds_per_10k": seconds * 10000 / args.num_samples,
                "quiet_minutes_per_10k_estimate": (
                    calls * math.ceil(10000 / 256) * step_s / 60 if step_s else None),
                "num_samples": args.num_samples, "reference": ref_name,
                "reference_size": len(reference),
                "threads": args.threads, "compiled": bool(compiled),
                "checkpoint": args.checkpoint,
                **{k: summary.get(k) for k in ("struct_validity", "comp_validity", "cov_recall",
                                               "cov_precision", "cov_recall_separate_minima",
                                               "cov_precision_separate_minima", "wdist_density",
                                               "wdist_num_elems", "wdist_property")},
                "num_atoms_counts": json.dumps(dict(sorted(sizes.items()))),
            }
            # binomial standard error of COV-P (each sample is covered or not)
            cp = row["cov_precision"]
            row["cov_precision_se"] = math.sqrt(cp * (1 - cp) / args.num_samples)
            rows.append(row)
            print(json.dumps(row), flush=True)
        table = pd.DataFrame(rows)
        out = Path(args.out_dir)
        with atomic_write(out / f"{name}.csv") as fh:
            table.to_csv(fh, index=False)
    _plot(table, Path(args.out_dir) / f"{name}.html", dataset, args.num_samples, args.threads)


def _plot(table: pd.DataFrame, path: Path, dataset: str, n: int, threads: int) -> None:
    """COV-P (with its standard error) and COV-R of every setting, one panel per reference set;
    settings sorted by cost, then by COV-P."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    table = table.copy()
    table["label"] = [
        f"{'Langevin' if sc == 'langevin' else 'PC'} {s}/level, {lr:g}"
        + ("" if lv == 50 else f", {lv} levels") + ("" if na == "argmax" else ", N drawn")
        + f" ({c} calls)"
        for sc, s, lr, lv, na, c in zip(
            table["scheme"], table["steps_per_level"], table["step_lr"], table["num_levels"],
            table.get("num_atoms", pd.Series(["argmax"] * len(table))), table["decoder_calls"],
            strict=True)]
    refs = list(table["reference"].unique())
    sizes = {r: int(table.loc[table.reference == r, "reference_size"].iloc[0]) for r in refs}
    fig = make_subplots(rows=1, cols=len(refs), shared_yaxes=True,
                        subplot_titles=[f"against {r} ({sizes[r]} crystals)" for r in refs])
    order = (table[table.reference == refs[0]]
             .sort_values(["decoder_calls", "cov_precision"], ascending=[False, True])["label"])
    for k, ref in enumerate(refs, start=1):
        part = table[table.reference == ref].set_index("label").loc[list(order)]
        fig.add_trace(go.Bar(x=part["cov_precision"], y=part.index, orientation="h",
                             name="COV-P", marker_color="#1f77b4", showlegend=k == 1,
                             error_x=dict(type="data", array=part["cov_precision_se"])),
                      row=1, col=k)
        fig.add_trace(go.Scatter(x=part["cov_recall"], y=part.index, mode="markers",
                                 name="COV-R", marker=dict(color="#d62728", size=9),
                                 showlegend=k == 1), row=1, col=k)
    fig.update_layout(title=f"{dataset}: coverage against sampling cost ({n} samples per "
                            f"setting, torch threads: {threads})", height=120 + 40 * len(order),
                      margin=dict(l=320))
    fig.update_xaxes(title_text="fraction", range=[0, 1])
    with atomic_write(path) as fh:
        fh.write(fig.to_html(include_plotlyjs="cdn", full_html=True))


if __name__ == "__main__":
    import sys

    if len(sys.argv) == 3 and sys.argv[1] == "--replot":
        replot(sys.argv[2])
    else:
        main()
