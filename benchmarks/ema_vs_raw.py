"""Validation loss of the averaged (EMA) and the raw weights of one training checkpoint.

A run trained with ``--ema-decay`` stores both sets in every checkpoint (``state_dict``: the
average, ``current_model_state``: the raw weights). Both are scored here on the run's own
validation hold-out with the same fixed noise (one generator per batch, as the training
module's validation does), so the difference is the averaging alone, at the same epoch.

    python benchmarks/ema_vs_raw.py runs/perov_5 --data-dir ../shared/data [--out X.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from cdvae_core.data.splits import load_training_splits
from cdvae_core.training.module import CDVAEModule


def val_loss(module: CDVAEModule, val, batch_size: int) -> float:
    total = count = 0.0
    with torch.no_grad():
        for i, start in enumerate(range(0, len(val), batch_size)):
            batch = val.collate(range(start, min(start + batch_size, len(val))))
            gen = torch.Generator().manual_seed(1000 + i)
            out = module.model(batch, teacher_forcing=False, generator=gen)
            total += float(out["loss"]) * batch.num_graphs
            count += batch.num_graphs
    return total / count


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--checkpoint", default="last.ckpt")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    ck = torch.load(Path(args.run_dir, "checkpoints", args.checkpoint), weights_only=True)
    if "current_model_state" not in ck:
        raise SystemExit(f"{args.checkpoint} holds no weight average (trained without "
                         "--ema-decay)")
    hp = ck["hyper_parameters"]
    policy = hp.get("split_policy") or {}
    dataset = hp["model_config"]["dataset"]
    splits = load_training_splits(args.data_dir, dataset, policy.get("holdout_fraction") or 0.1,
                                  policy.get("seed") or 0, progress=False)
    module = CDVAEModule(hp["model_config"], policy).eval()
    result = {"dataset": dataset, "epoch": int(ck["epoch"]), "val_size": len(splits.val)}
    for name, state in (("ema", ck["state_dict"]), ("raw", ck["current_model_state"])):
        module.load_state_dict(state)
        result[f"val_loss_{name}"] = val_loss(module, splits.val, args.batch_size)
    print(json.dumps(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
