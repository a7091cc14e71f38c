"""Train a CDVAE model: ``train(TrainConfig(...))`` or ``cdvae train ...``.

A run directory holds ``checkpoints/last.ckpt`` (every epoch, atomic), ``checkpoints/best.ckpt``
(lowest validation loss), ``checkpoints/interrupted.ckpt`` (on Ctrl-C / SIGTERM), CSV and
TensorBoard logs, ``model.pt`` (the self-contained model file of the best epoch) and
``run.json`` (settings, split policy, wall time, hardware).
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import (
    Callback,
    EMAWeightAveraging,
    ModelCheckpoint,
    WeightAveraging,
)
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from cdvae_core.data.scaler import fit_scalers
from cdvae_core.data.splits import load_training_splits
from cdvae_core.model.checkpoint import load_model, save_model
from cdvae_core.model.config import ModelConfig
from cdvae_core.nn.accel import compile_model
from cdvae_core.training.checkpoint_io import AtomicCheckpointIO
from cdvae_core.training.module import CDVAEModule, CrystalDataModule
from cdvae_core.utils import configure_cpu

__all__ = ["TrainConfig", "train", "read_metrics", "export_run"]


@dataclass
class TrainConfig:
    """Settings of a training run.

    dataset / data_dir: benchmark name and the folder holding ``<dataset>/{train,val}.csv``.
    out_dir: run directory. resume: continue from ``out_dir/checkpoints/last.ckpt`` if present.
    architecture: ``"fast"`` or ``"paper"``; encoder / decoder: their config overrides;
        model_overrides: other :class:`ModelConfig` fields (``latent_dim``, ``noise``, ...).
    epochs, batch_size, lr: as in the paper (3000, 512 for Perov-5, 1e-3) unless changed.
    teacher_forcing_max_epoch: None means half of ``epochs`` (the paper: 1500 of 3000).
    accelerator / devices / strategy / precision: Lightning's; "auto" picks a GPU when present.
    holdout_fraction / seed: the fallback split policy when ``train.csv`` is absent.
    limit_train_batches / limit_val_batches: for smoke runs (1.0 = all).
    compile: ``"auto" | "on" | "off"``: ``torch.compile`` the message-passing trunks
        (:mod:`cdvae_core.nn.accel`; about 1.2x faster steps on a CPU after a 30-40 s compile).
    ema_decay: keep an exponential moving average of the weights, updated after every step
        with this decay (e.g. 0.999, as score-based generative models commonly do; Lightning's
        ``EMAWeightAveraging``). Validation, ``best.ckpt`` and ``model.pt`` then hold the
        averaged weights; the raw ones travel in the checkpoints (``current_model_state``), so a
        resumed run continues exactly. Starting from a checkpoint without an average starts the
        average at its weights. None: off, as in the paper.
    """

    dataset: str = "perov_5"
    data_dir: str = "data"
    out_dir: str = "runs/perov_5"
    architecture: str = "fast"
    encoder: dict = field(default_factory=dict)
    decoder: dict = field(default_factory=dict)
    model_overrides: dict = field(default_factory=dict)
    epochs: int = 3000
    batch_size: int = 256
    lr: float = 1e-3
    teacher_forcing_max_epoch: int | None = None
    predict_property: bool = True
    seed: int = 0
    holdout_fraction: float = 0.1
    accelerator: str = "auto"
    devices: int | str = "auto"
    strategy: str = "auto"
    precision: str = "32-true"
    num_nodes: int = 1
    resume: bool = True
    init_from: str | None = None
    gradient_clip_val: float = 0.5
    limit_train_batches: float | int = 1.0
    limit_val_batches: float | int = 1.0
    max_time: str | None = None
    progress: bool = True
    cache_dir: str | None = None
    num_threads: int | None = None
    compile: str = "off"
    ema_decay: float | None = None

    def model_config(self) -> ModelConfig:
        tf = self.teacher_forcing_max_epoch
        return ModelConfig.for_dataset(
            self.dataset,
            architecture=self.architecture,
            encoder=dict(self.encoder),
            decoder=dict(self.decoder),
            predict_property=self.predict_property,
            teacher_forcing_max_epoch=self.epochs // 2 if tf is None else tf,
            **self.model_overrides,
        )


class _SaveOnInterrupt(Callback):
    """Write ``interrupted.ckpt`` when training stops on an exception or Ctrl-C; ``last.ckpt``
    (end of the last full epoch, from which resuming is exact) is left as it was."""

    def __init__(self, path: Path):
        self.path = path

    def on_exception(self, trainer, pl_module, exception):
        averaging = any(isinstance(cb, WeightAveraging) for cb in trainer.callbacks)
        if averaging and trainer.validating:
            # the averaging callback has swapped the averaged weights into the model for
            # validation: a checkpoint now would store the two sets the wrong way round
            print("interrupted during validation with weight averaging: interrupted.ckpt not "
                  "written (last.ckpt, the end of the last full epoch, is the resume point)")
            return
        if trainer.global_rank == 0:
            try:
                trainer.save_checkpoint(self.path, weights_only=False)  # full state
            except Exception:  # never mask the original error
                pass


class WeightAverage(EMAWeightAveraging):
    """Lightning's EMA callback that also remembers, in the checkpoints, the epoch its average
    started from (a run may switch it on when resuming from a checkpoint without one)."""

    def __init__(self, decay: float):
        super().__init__(decay=decay)
        self.decay = decay
        self.from_epoch: int | None = None

    def on_train_start(self, trainer, pl_module):
        if self.from_epoch is None:
            self.from_epoch = int(trainer.current_epoch)

    def state_dict(self):
        return super().state_dict() | {"from_epoch": self.from_epoch, "decay": self.decay}

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self.from_epoch = state_dict.get("from_epoch")

    def record(self) -> dict:
        return {"ema_decay": self.decay, "from_epoch": self.from_epoch}


def _averaging_record(checkpoint: dict, settings: dict, first_epoch: int) -> dict | None:
    """What :class:`WeightAverage` stored in a Lightning checkpoint; for a checkpoint of
    Lightning's plain EMA callback (it keeps the raw weights in ``current_model_state``), the
    run's ``settings`` and first logged epoch. None: no averaging."""
    for state in (checkpoint.get("callbacks") or {}).values():
        if isinstance(state, dict) and "from_epoch" in state and "decay" in state:
            return {"ema_decay": state["decay"], "from_epoch": state["from_epoch"]}
    if "current_model_state" in checkpoint:
        return {"ema_decay": settings.get("ema_decay"), "from_epoch": first_epoch}
    return None


def _hardware() -> dict:
    info = {"platform": platform.platform(), "cpu_count": os.cpu_count(),
            "torch": str(torch.__version__), "threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def train(cfg: TrainConfig) -> Path:
    """Run (or resume) training; returns the path of the exported ``model.pt``."""
    configure_cpu(cfg.num_threads or None)
    out = Path(cfg.out_dir)
    ckpt_dir = out / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    splits = load_training_splits(
        cfg.data_dir, cfg.dataset, cfg.holdout_fraction, cfg.seed,
        cache_dir=cfg.cache_dir, progress=cfg.progress,
    )
    print(f"split policy: {splits.policy.description}")
    print(f"train: {splits.train!r}\nval:   {splits.val!r}")
    scalers = {k: v.state_dict() for k, v in fit_scalers(splits.train).items()}
    model_cfg = cfg.model_config()
    module = CDVAEModule(model_cfg.to_dict(), splits.policy.to_dict(), lr=cfg.lr, scalers=scalers)
    data = CrystalDataModule(splits.train, splits.val, cfg.batch_size)
    compiled = compile_model(module.model, cfg.compile)
    if compiled:
        print(f"compiled with torch.compile: {', '.join(compiled)}")

    last = ckpt_dir / "last.ckpt"
    if cfg.init_from and not last.exists():
        import shutil

        shutil.copyfile(cfg.init_from, last)
        print(f"run directory seeded from {cfg.init_from}")
    # best.ckpt: lowest validation loss; last.ckpt: written after every epoch's validation
    best = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val_loss", mode="min",
                           save_top_k=1, enable_version_counter=False)
    # Lightning's save_last only writes last.ckpt when a best checkpoint is written, so an epoch
    # without a new best would not be saved; a second, unmonitored callback writes it every epoch
    last_every_epoch = ModelCheckpoint(dirpath=ckpt_dir, filename="last", save_top_k=1,
                                       every_n_epochs=1, enable_version_counter=False)
    # a resumed run logs into a new version folder: earlier curves are kept (read_metrics joins)
    loggers = [CSVLogger(out, name="logs"), TensorBoardLogger(out, name="tb")]
    callbacks = [best, last_every_epoch, _SaveOnInterrupt(ckpt_dir / "interrupted.ckpt")]
    if cfg.ema_decay is not None:
        if not 0.0 <= cfg.ema_decay <= 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1], got {cfg.ema_decay}")
        callbacks.append(WeightAverage(cfg.ema_decay))
    trainer = L.Trainer(
        max_epochs=cfg.epochs,
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        strategy=cfg.strategy,
        num_nodes=cfg.num_nodes,
        precision=cfg.precision,
        gradient_clip_val=cfg.gradient_clip_val,
        gradient_clip_algorithm="value",
        callbacks=callbacks,
        logger=loggers,
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=cfg.progress,
        limit_train_batches=cfg.limit_train_batches,
        limit_val_batches=cfg.limit_val_batches,
        log_every_n_steps=1,
        max_time=cfg.max_time,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        use_distributed_sampler=True,
    )
    resume_from = str(last) if cfg.resume and last.is_file() else None
    if resume_from:
        print(f"resuming from {resume_from}")
    run_json = out / "run.json"
    if not run_json.is_file():  # what an in-progress run was started with, for export_run
        run_json.write_text(json.dumps({"hardware": _hardware(), "settings": asdict(cfg),
                                        "split_policy": splits.policy.to_dict()},
                                       indent=2, default=str))
    trainer.fit(module, datamodule=data, ckpt_path=resume_from)
    wall = module.wall_time_s()  # all sessions, carried in the checkpoints

    model_path = out / "model.pt"
    if trainer.global_rank == 0:
        src = best.best_model_path or str(last)
        model = load_model(src)
        training = {
            "epochs_completed": trainer.current_epoch,
            "best_epoch_checkpoint": Path(src).name,
            "best_val_loss": float(best.best_model_score) if best.best_model_score is not None
            else None,
            "wall_time_s": wall,
            "wall_time_from_epoch": module.wall_time_from_epoch,
            "weight_averaging": next((cb.record() for cb in callbacks
                                      if isinstance(cb, WeightAverage)), None),
            "hardware": _hardware(),
            "train_size": len(splits.train),
            "val_size": len(splits.val),
            "settings": asdict(cfg),
        }
        save_model(model, model_path, splits.policy.to_dict(), training)
        run_json.write_text(json.dumps(training | {"split_policy": splits.policy.to_dict()},
                                       indent=2, default=str))
    return model_path


def read_metrics(run_dir: str | os.PathLike):
    """All logged metrics of a run (every resumed segment, in order) as a pandas DataFrame."""
    import pandas as pd

    files = sorted(Path(run_dir, "logs").glob("version_*/metrics.csv"),
                   key=lambda p: int(p.parent.name.split("_")[1]))
    if not files:
        raise FileNotFoundError(f"no metrics.csv under {Path(run_dir, 'logs')}")
    frames = [pd.read_csv(f).assign(segment=i) for i, f in enumerate(files)]
    return pd.concat(frames, ignore_index=True)


def prepend_history(history: str | os.PathLike, metrics):
    """``metrics`` (a run's log from :func:`read_metrics`) preceded by the log of the runs it
    continues (``history``: an earlier ``training_log.csv``, e.g. a shipped one).

    A run started with ``--init-from`` logs only its own epochs. History rows from the run's first
    logged epoch on are dropped (that epoch was redone by the run) and the run's segments are
    numbered after the history's, so the result reads as one run from epoch 0."""
    import pandas as pd

    old = pd.read_csv(history)
    if "epoch" not in old or "epoch" not in metrics:
        raise ValueError(f"{history}: not a training log (no 'epoch' column)")
    old = old[old["epoch"] < metrics["epoch"].min()]
    if "segment" not in old:
        old = old.assign(segment=0)
    shift = int(old["segment"].max()) + 1 if len(old) else 0
    return pd.concat([old, metrics.assign(segment=metrics["segment"] + shift)],
                     ignore_index=True)


def _val_loss_at(val, epoch: int) -> float | None:
    """Validation loss logged for ``epoch`` (the last logged value if it was logged twice)."""
    if not len(val) or "epoch" not in val:
        return None
    rows = val[val["epoch"] == epoch]
    return float(rows["val_loss"].iloc[-1]) if len(rows) else None


def export_run(run_dir: str | os.PathLike, dest: str | os.PathLike,
               with_resume: bool = True, history: str | os.PathLike | None = None) -> Path:
    """Package a (possibly still running) training run for shipping: ``model.pt`` from the best
    epoch so far, ``resume/last.ckpt`` to continue training elsewhere, ``training_log.csv`` (all
    segments) and ``run.json``. ``history``: the training log of the runs this one continues
    (``--init-from``), prepended to the exported log (:func:`prepend_history`). Returns the model
    file."""
    import shutil

    from cdvae_core.utils import safe_torch_load

    run, out = Path(run_dir), Path(dest)
    ckpts = run / "checkpoints"
    best, last = ckpts / "best.ckpt", ckpts / "last.ckpt"
    if not last.is_file():
        raise FileNotFoundError(f"{last} not found: nothing to export")
    src = best if best.is_file() else last
    model = load_model(src)
    raw = safe_torch_load(src)
    last_raw = safe_torch_load(last)
    hp = raw.get("hyper_parameters", {})
    run_info = json.loads((run / "run.json").read_text()) if (run / "run.json").is_file() else {}
    metrics = read_metrics(run)
    averaging = _averaging_record(raw, run_info.get("settings") or {},
                                  int(metrics["epoch"].min()) if "epoch" in metrics else 0)
    if history is not None:
        metrics = prepend_history(history, metrics)
    val = metrics.dropna(subset=["val_loss"]) if "val_loss" in metrics else metrics.iloc[:0]
    training = {
        "best_epoch": int(raw.get("epoch", -1)),
        "epochs_completed": int(last_raw.get("epoch", -1)) + 1,
        # the validation loss of the exported epoch (the lowest logged, when best.ckpt exists)
        "best_val_loss": _val_loss_at(val, int(raw.get("epoch", -1))),
        # run.json (hardware, settings) is written when a run ends; for a run still in progress
        # the exporting machine is recorded instead, and labelled so
        "hardware": run_info.get("hardware") or {"exported_on": _hardware()},
        # recorded in the checkpoints, across interruptions, from the epoch named
        "wall_time_s": (last_raw.get("wall_time") or {}).get("seconds",
                                                              run_info.get("wall_time_s")),
        "wall_time_from_epoch": (last_raw.get("wall_time") or {}).get("from_epoch", 0),
        # the exported weights are this average when the run kept one (train --ema-decay)
        "weight_averaging": averaging,
    }
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / "model.pt"
    save_model(model, model_path, hp.get("split_policy", {}), training)
    metrics.to_csv(out / "training_log.csv", index=False)
    if with_resume:
        (out / "resume").mkdir(exist_ok=True)
        tmp = out / "resume" / ".last.ckpt.tmp"
        shutil.copyfile(last, tmp)
        os.replace(tmp, out / "resume" / "last.ckpt")
    return model_path
