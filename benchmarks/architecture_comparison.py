"""Quality reached per CPU-hour: the fast architecture against the paper's (DimeNet++ / GemNet-T).

Both runs train on the same split (Perov-5 ``val.csv`` minus the seeded hold-out), with the same
seed, batch size, optimiser and teacher forcing; their validation losses are read from the run
directories' logs. The cost of an epoch is not taken from the runs' wall clocks (they shared the
machine with other jobs) but from ``benchmarks/results/model.json``: the quiet, 2-thread time of
a training epoch over Perov-5 ``val.csv`` (3,787 crystals, batch 256) for each architecture,
scaled to the run's number of training crystals. Writes ``architecture_comparison.csv`` and
``architecture_comparison.html`` under ``benchmarks/results/`` and prints a JSON summary.

    python benchmarks/architecture_comparison.py runs/perov_5 runs/arch_paper_perov_5
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from cdvae_core.training.train import read_metrics
from cdvae_core.utils import atomic_write, write_json_result

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ["val_loss", "val_coord_loss", "val_type_loss", "val_lattice_loss", "val_type_acc"]


def val_curve(run_dir: str) -> pd.DataFrame:
    df = read_metrics(run_dir)
    val = df.dropna(subset=["val_loss"]).groupby("epoch")[COLUMNS].last().reset_index()
    return val


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("fast_run")
    p.add_argument("paper_run")
    p.add_argument("--model-json", default=str(REPO / "benchmarks/results/model.json"))
    p.add_argument("--train-size", type=int, default=3408,
                   help="training crystals per epoch in the runs (Perov-5 val.csv minus 10%%)")
    p.add_argument("--out-dir", default=str(REPO / "benchmarks/results"))
    args = p.parse_args()

    bench = json.loads(Path(args.model_json).read_text())
    rows = []
    for arch, run in (("fast", args.fast_run), ("paper", args.paper_run)):
        cost = {}
        for variant in (arch, f"{arch}+compile"):
            entry = bench.get(f"{variant}/epoch_perov_5_b256", {})
            if "epoch_s" in entry:
                cost[variant] = entry["epoch_s"] * args.train_size / entry["structures"]
        curve = val_curve(run)
        for _, r in curve.iterrows():
            row = {"architecture": arch, "epoch": int(r["epoch"]), **{c: r[c] for c in COLUMNS}}
            for variant, sec in cost.items():
                tag = "compiled" if variant.endswith("+compile") else "eager"
                row[f"cpu_hours_{tag}"] = (r["epoch"] + 1) * sec / 3600
            rows.append(row)
    table = pd.DataFrame(rows)
    out = Path(args.out_dir)
    with atomic_write(out / "architecture_comparison.csv") as fh:
        table.to_csv(fh, index=False)

    # at equal epochs and at equal CPU time: the paper run's last epoch against the fast run
    paper = table[table.architecture == "paper"]
    fast = table[table.architecture == "fast"]
    last = paper.iloc[-1]
    same_epoch = fast[fast.epoch == last.epoch].iloc[0]
    budget = last["cpu_hours_eager"]
    same_cost = fast[fast["cpu_hours_eager"] <= budget].iloc[-1]
    best_fast_reaching = fast[fast.val_loss <= last.val_loss]
    summary = {
        "paper_epochs": int(last.epoch) + 1,
        "paper_val_loss": float(last.val_loss),
        "paper_val_coord_loss": float(last.val_coord_loss),
        "paper_cpu_hours_eager": float(budget),
        "fast_at_same_epoch": {c: float(same_epoch[c]) for c in COLUMNS},
        "fast_at_same_cpu_hours": {"epoch": int(same_cost.epoch) + 1,
                                   **{c: float(same_cost[c]) for c in COLUMNS}},
        "fast_cpu_hours_to_reach_paper_val_loss": (
            float(best_fast_reaching.iloc[0]["cpu_hours_eager"])
            if len(best_fast_reaching) else None),
    }
    write_json_result(out / "architecture_comparison.json", summary)

    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("validation loss", "coordinate loss"))
    for arch, part in table.groupby("architecture"):
        for col, c in (("val_loss", 1), ("val_coord_loss", 2)):
            fig.add_trace(go.Scatter(x=part["cpu_hours_eager"], y=part[col], mode="lines+markers",
                                     name=f"{arch} {col}"), row=1, col=c)
    fig.update_xaxes(title_text="CPU hours (2 threads, eager, quiet machine)")
    fig.update_layout(title="Perov-5: quality reached per CPU-hour, fast vs paper architecture")
    with atomic_write(out / "architecture_comparison.html") as fh:
        fh.write(fig.to_html(include_plotlyjs="cdn", full_html=True))


if __name__ == "__main__":
    main()
