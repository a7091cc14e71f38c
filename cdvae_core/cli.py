"""Command line: ``cdvae train | download | sample | evaluate | info`` (``python -m cdvae_core``)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields

__all__ = ["main"]


def _train(args: argparse.Namespace) -> int:
    from cdvae_core.training.train import TrainConfig, train

    known = {f.name for f in fields(TrainConfig)}
    kwargs = {k: v for k, v in vars(args).items() if k in known and v is not None}
    for key in ("encoder", "decoder", "model_overrides"):
        if key in kwargs:
            kwargs[key] = json.loads(kwargs[key])
    path = train(TrainConfig(**kwargs))
    print(f"model written to {path}")
    return 0


def _download(args: argparse.Namespace) -> int:
    from cdvae_core.data.download import download_dataset

    paths = download_dataset(args.dataset, args.data_dir, splits=tuple(args.splits))
    for split, path in paths.items():
        print(f"{split}: {path}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from cdvae_core.training.checkpoint import load_model

    model, info = load_model(args.checkpoint, with_info=True)
    print(json.dumps(info, indent=2, default=str))
    print(f"parameters: {model.num_parameters():,} (encoder {model.num_parameters('encoder'):,},"
          f" decoder {model.num_parameters('decoder'):,})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cdvae", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train (or resume) a model")
    t.add_argument("--dataset", default="perov_5")
    t.add_argument("--data-dir", dest="data_dir", required=True)
    t.add_argument("--out-dir", dest="out_dir", required=True)
    t.add_argument("--architecture", choices=["fast", "paper"])
    t.add_argument("--encoder", help="JSON dict of encoder config overrides")
    t.add_argument("--decoder", help="JSON dict of decoder config overrides")
    t.add_argument("--model-overrides", dest="model_overrides",
                   help='JSON dict of other model config fields, e.g. {"latent_dim": 128}')
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", dest="batch_size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--teacher-forcing-max-epoch", dest="teacher_forcing_max_epoch", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument("--accelerator")
    t.add_argument("--devices")
    t.add_argument("--strategy")
    t.add_argument("--precision")
    t.add_argument("--num-threads", dest="num_threads", type=int)
    t.add_argument("--max-time", dest="max_time", help="DD:HH:MM:SS wall-clock limit")
    t.add_argument("--no-resume", dest="resume", action="store_false", default=None)
    t.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    t.set_defaults(func=_train)

    d = sub.add_parser("download", help="download the upstream benchmark CSV files")
    d.add_argument("dataset")
    d.add_argument("--data-dir", dest="data_dir", required=True)
    d.add_argument("--splits", nargs="+", default=["train", "val", "test"])
    d.set_defaults(func=_download)

    i = sub.add_parser("info", help="print what a model file holds")
    i.add_argument("checkpoint")
    i.set_defaults(func=_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, RuntimeError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
