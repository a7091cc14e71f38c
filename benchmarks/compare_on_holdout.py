"""Two models' losses on the same crystals with the same noise: the shipped model against a
successor trained on other data, on the seeded hold-out the shipped model never saw.

The shipped Perov-5 model trained on ``val.csv`` minus a seeded 10 % hold-out (``train.csv``
was missing then); its successor trains on ``train.csv`` and validates on all of ``val.csv``.
Neither trained on the shipped model's hold-out, so the loss there (fixed noise per batch, no
teacher forcing, as the training module's validation) compares them without touching
``test.csv``. The successor's checkpoint was selected on ``val.csv``, which contains the
hold-out: a slight advantage to it, said in the output.

    python benchmarks/compare_on_holdout.py checkpoints/perov_5/model.pt \\
        runs/perov_5_full/checkpoints/best.ckpt --data-dir ../shared/data [--out X.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from cdvae_core.data.splits import holdout_indices, load_split
from cdvae_core.model.checkpoint import load_model
from cdvae_core.utils import configure_cpu


def losses(model, ds, batch_size: int) -> dict:
    totals: dict[str, float] = {}
    count = 0
    with torch.no_grad():
        for i, start in enumerate(range(0, len(ds), batch_size)):
            batch = ds.collate(range(start, min(start + batch_size, len(ds))))
            out = model(batch, teacher_forcing=False,
                        generator=torch.Generator().manual_seed(1000 + i))
            for k, v in out.items():
                totals[k] = totals.get(k, 0.0) + float(v) * batch.num_graphs
            count += batch.num_graphs
    return {k: v / count for k, v in totals.items()}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("shipped")
    p.add_argument("successor")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out")
    args = p.parse_args(argv)
    configure_cpu(args.threads)
    shipped, info = load_model(args.shipped, with_info=True)
    successor, succ_info = load_model(args.successor, with_info=True)
    policy = info.get("split_policy") or {}
    if policy.get("train_file") != "val.csv" or not policy.get("holdout_fraction"):
        raise SystemExit(f"{args.shipped} was not trained under the hold-out policy: {policy}")
    val = load_split(args.data_dir, shipped.cfg.dataset, "val", progress=False)
    _, hold = holdout_indices(len(val), policy["holdout_fraction"], policy["seed"])
    ds = val.subset(hold, source="the shipped model's hold-out")
    result = {"dataset": shipped.cfg.dataset, "crystals": len(ds),
              "hold_out": f"val.csv rows of the seeded {policy['holdout_fraction']:.0%} hold-out "
                          f"(seed {policy['seed']})",
              "shipped": {"file": args.shipped, "split_policy": policy,
                          "epoch": (info.get("training") or {}).get("best_epoch"),
                          **losses(shipped.eval(), ds, args.batch_size)},
              "successor": {"file": args.successor,
                            "split_policy": succ_info.get("split_policy"),
                            **losses(successor.eval(), ds, args.batch_size)},
              "caveat": "the successor's checkpoint was selected on val.csv, which holds these "
                        "crystals; neither model trained on them"}
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
