"""Lightning module and data module around :class:`~cdvae_core.model.cdvae.CDVAE`."""

from __future__ import annotations

import time

import lightning as L
import torch
from torch.utils.data import DataLoader

from cdvae_core.data.dataset import CrystalDataset
from cdvae_core.data.scaler import StandardScaler
from cdvae_core.model.cdvae import CDVAE
from cdvae_core.model.config import ModelConfig

__all__ = ["CDVAEModule", "CrystalDataModule"]


class CDVAEModule(L.LightningModule):
    """Training of CDVAE with the reference optimiser and schedule: Adam, ReduceLROnPlateau on
    the validation loss (factor 0.6, patience 30, min lr 1e-4); the trainer clips gradient values
    at 0.5. The decoder sees the true lattice before ``teacher_forcing_max_epoch``."""

    def __init__(
        self,
        model_config: dict,
        split_policy: dict | None = None,
        lr: float = 1e-3,
        lr_factor: float = 0.6,
        lr_patience: int = 30,
        min_lr: float = 1e-4,
        scalers: dict | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["scalers"])
        cfg = ModelConfig.from_dict(model_config)
        sc = {k: StandardScaler.from_state_dict(v) for k, v in (scalers or {}).items()}
        self.model = CDVAE(cfg, sc)
        self.skipped_steps = 0  # updates skipped for non-finite gradients (this process)
        self._bad_steps_in_a_row = 0
        self._last_step_info = None  # (crystal indices, losses) of the latest training step
        # training wall time, carried across interruptions in the checkpoints: seconds spent
        # before this process's fit, and the epoch from which time was recorded (checkpoints
        # written before this was kept carry none)
        self._wall_before = 0.0
        self.wall_time_from_epoch = 0
        self._fit_started = None

    def _teacher_forcing(self) -> bool:
        return self.current_epoch < self.model.cfg.teacher_forcing_max_epoch

    def training_step(self, batch, batch_idx):
        out = self.model(batch, teacher_forcing=self._teacher_forcing())
        bs = batch.num_graphs
        # kept for the report of a skipped (non-finite) update
        self._last_step_info = (batch.index, {k: v.detach() for k, v in out.items()})
        self.log_dict(
            {f"train_{k}": v.detach() for k, v in out.items()},
            on_step=False, on_epoch=True, batch_size=bs, sync_dist=True,
        )
        self.log("train_loss_step", out["loss"].detach(), prog_bar=True, on_step=True,
                 on_epoch=False, batch_size=bs)
        return out["loss"]

    def on_before_optimizer_step(self, optimizer):
        # A non-finite gradient (a rare NaN from one noisy batch) would poison every weight and
        # Adam's moments at once; skipping that one update keeps the run alive. Parameters
        # with ``grad=None`` are left untouched by Adam, moments included. All ranks see the
        # same all-reduced gradients, so DDP ranks skip together.
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        # one host sync per step rather than one per parameter (this runs every step)
        if not grads or bool(torch.stack([torch.isfinite(g).all() for g in grads]).all()):
            self._bad_steps_in_a_row = 0
            return
        optimizer.zero_grad(set_to_none=True)
        self.skipped_steps += 1
        self._bad_steps_in_a_row += 1
        print(f"warning: non-finite gradient at epoch {self.current_epoch}, step "
              f"{self.global_step}: update skipped ({self.skipped_steps} so far)", flush=True)
        info = self._last_step_info
        if info is not None:
            losses = {k: round(float(v), 4) for k, v in info[1].items()}
            print(f"  losses: {losses}\n  crystals (training-set positions): "
                  f"{info[0].tolist()}", flush=True)
        if self._bad_steps_in_a_row >= self.max_bad_steps_in_a_row:
            raise FloatingPointError(
                f"{self._bad_steps_in_a_row} training steps in a row had non-finite gradients "
                f"(epoch {self.current_epoch}); the weights are still finite in the last "
                "checkpoint; lower the learning rate or check the data")

    max_bad_steps_in_a_row = 20

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None,
                                    gradient_clip_algorithm=None):
        # after a skipped update no parameter has a gradient, and torch's clipping refuses an
        # empty gradient list
        if any(p.grad is not None for g in optimizer.param_groups for p in g["params"]):
            self.clip_gradients(optimizer, gradient_clip_val=gradient_clip_val,
                                gradient_clip_algorithm=gradient_clip_algorithm)

    def on_train_epoch_end(self):
        self.log("skipped_steps", float(self.skipped_steps))

    def validation_step(self, batch, batch_idx):
        # a fixed generator per batch: the validation loss is comparable across epochs
        gen = torch.Generator(device=batch.frac_coords.device).manual_seed(1000 + batch_idx)
        out = self.model(batch, teacher_forcing=False, generator=gen)
        self.log_dict(
            {f"val_{k}": v for k, v in out.items() if k != "loss"},
            on_epoch=True, batch_size=batch.num_graphs, sync_dist=True,
        )
        self.log("val_loss", out["loss"], prog_bar=True, on_epoch=True,
                 batch_size=batch.num_graphs, sync_dist=True)

    def configure_optimizers(self):
        hp = self.hparams
        opt = torch.optim.Adam(self.parameters(), lr=hp.lr)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, factor=hp.lr_factor, patience=hp.lr_patience, min_lr=hp.min_lr
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val_loss"}}

    def on_train_epoch_start(self):
        self.log("lr", self.optimizers().param_groups[0]["lr"], on_epoch=True, on_step=False)

    # RNG state travels in the checkpoint so that a resumed run draws the same noise and
    # shuffles as an uninterrupted one would have.
    def on_save_checkpoint(self, checkpoint):
        checkpoint["rng_state"] = {"torch": torch.get_rng_state()}
        checkpoint["wall_time"] = {"seconds": self.wall_time_s(),
                                   "from_epoch": self.wall_time_from_epoch}

    def on_load_checkpoint(self, checkpoint):
        # restored here, before the fit loop draws the next epoch's shuffle
        rng = checkpoint.get("rng_state")
        if rng is not None:
            torch.set_rng_state(rng["torch"])
        wall = checkpoint.get("wall_time")
        if wall is not None:
            self._wall_before, self.wall_time_from_epoch = float(wall["seconds"]), wall["from_epoch"]
        else:  # an older checkpoint: time is counted from here on
            self._wall_before, self.wall_time_from_epoch = 0.0, int(checkpoint.get("epoch", 0))

    def on_fit_start(self):
        self._fit_started = time.time()

    def wall_time_s(self) -> float:
        """Training wall time so far, over all sessions since ``wall_time_from_epoch``."""
        now = time.time() - self._fit_started if self._fit_started is not None else 0.0
        return self._wall_before + now


class CrystalDataModule(L.LightningDataModule):
    """Train / validation loaders over :class:`CrystalDataset` (vectorised collation)."""

    def __init__(self, train: CrystalDataset, val: CrystalDataset, batch_size: int = 256,
                 val_batch_size: int | None = None, num_workers: int = 0):
        super().__init__()
        self.train_ds, self.val_ds = train, val
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers

    def train_dataloader(self):
        return DataLoader(self.train_ds, batch_size=self.batch_size, shuffle=True,
                          collate_fn=self.train_ds.collate, num_workers=self.num_workers)

    def val_dataloader(self):
        return DataLoader(self.val_ds, batch_size=self.val_batch_size, shuffle=False,
                          collate_fn=self.val_ds.collate, num_workers=self.num_workers)
