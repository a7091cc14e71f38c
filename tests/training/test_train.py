"""Training: learning is real, resume after a kill is exact, checkpoints, 2-process DDP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from cdvae_core.data.dataset import CrystalDataset
from cdvae_core.data.scaler import fit_scalers
from cdvae_core.model.cdvae import CDVAE
from cdvae_core.model.checkpoint import load_model
from cdvae_core.model.config import ModelConfig
from cdvae_core.training.train import TrainConfig, export_run, read_metrics, train

from helpers import REPO, data_file

TINY = {"hidden": 32, "num_layers": 2, "num_rbf": 16}


@pytest.fixture
def tiny_data(tmp_path):
    """A data directory with the first 48 rows of Perov-5 val.csv (no train.csv)."""
    src = data_file("perov_5", "val")
    folder = tmp_path / "data" / "perov_5"
    folder.mkdir(parents=True)
    pd.read_csv(src, nrows=48).to_csv(folder / "val.csv", index=False)
    return tmp_path / "data"


def _cfg(tmp_path, data_dir, out, **kw) -> TrainConfig:
    base = dict(dataset="perov_5", data_dir=str(data_dir), out_dir=str(tmp_path / out),
                encoder=TINY, decoder=TINY, model_overrides={"latent_dim": 16, "hidden_dim": 32},
                epochs=3, batch_size=8, teacher_forcing_max_epoch=100, progress=False,
                cache_dir=str(tmp_path / "cache"), accelerator="cpu", devices=1, seed=7)
    base.update(kw)
    return TrainConfig(**base)


def _step_losses(run_dir) -> list[float]:
    df = read_metrics(run_dir)
    return df["train_loss_step"].dropna().tolist()


@pytest.mark.slow
def test_learning_is_real_on_16_perov5_structures():
    """Losses measured at fixed noise levels (a fixed generator, so before and after see the
    same noise) halve within a few hundred steps of training on 16 crystals. At the largest
    levels no denoiser can do much (the noise spans the whole cell), so the measurement uses
    levels where a learnt score helps: coordinates at sigma ~0.2 A, types at sigma ~0.1."""
    path = data_file("perov_5", "val")
    ds = CrystalDataset.from_csv(path, "perov_5", progress=False).subset(range(16))
    torch.manual_seed(0)
    cfg = ModelConfig.for_dataset("perov_5", encoder={"hidden": 64}, decoder={"hidden": 64})
    model = CDVAE(cfg, fit_scalers(ds))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = ds.collate(range(16))
    coord_level = int((model.sigmas - 0.2).abs().argmin())
    type_level = int((model.type_sigmas - 0.1).abs().argmin())

    def measure() -> dict[str, float]:
        with torch.no_grad():
            out = model(batch, generator=torch.Generator().manual_seed(123),
                        noise_levels=(coord_level, type_level))
        return {"coord_loss": out["coord_loss"].item(), "type_loss": out["type_loss"].item()}

    before = measure()
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        out = model(batch, generator=gen)
        opt.zero_grad()
        out["loss"].backward()
        torch.nn.utils.clip_grad_value_(model.parameters(), 0.5)
        opt.step()
    after = measure()
    for k in before:
        assert after[k] <= 0.5 * before[k], f"{k} fell only from {before[k]:.3f} to {after[k]:.3f}"


@pytest.mark.slow
def test_training_writes_checkpoints_and_a_loadable_model(tmp_path, tiny_data):
    path = train(_cfg(tmp_path, tiny_data, "run", epochs=2))
    ckpts = tmp_path / "run" / "checkpoints"
    assert (ckpts / "last.ckpt").is_file() and (ckpts / "best.ckpt").is_file()
    model, info = load_model(path, with_info=True)
    assert info["split_policy"]["train_file"] == "val.csv"
    assert info["training"]["epochs_completed"] == 2
    assert (tmp_path / "run" / "run.json").is_file()
    assert isinstance(model, CDVAE)


@pytest.mark.slow
def test_resume_after_kill_continues_exactly(tmp_path, tiny_data):
    reference = _cfg(tmp_path, tiny_data, "ref", epochs=4)
    train(reference)
    ref_losses = _step_losses(tmp_path / "ref")
    steps_per_epoch = len(ref_losses) // 4

    # the same run in a subprocess, killed hard once an epoch checkpoint exists
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "cdvae_core", "train", "--dataset", "perov_5",
           "--data-dir", str(tiny_data), "--out-dir", str(out), "--epochs", "40",
           "--batch-size", "8", "--teacher-forcing-max-epoch", "100", "--seed", "7",
           "--encoder", '{"hidden": 32, "num_layers": 2, "num_rbf": 16}',
           "--decoder", '{"hidden": 32, "num_layers": 2, "num_rbf": 16}',
           "--model-overrides", '{"latent_dim": 16, "hidden_dim": 32}',
           "--accelerator", "cpu", "--devices", "1", "--no-progress"]
    env = dict(os.environ, CDVAE_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    last = out / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if last.is_file() and torch.load(last, weights_only=True)["epoch"] >= 1:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = torch.load(last, weights_only=True)
    done_epochs = killed["epoch"] + 1  # epochs completed
    assert 2 <= done_epochs < 4
    assert killed["wall_time"]["seconds"] > 0 and killed["wall_time"]["from_epoch"] == 0

    model_path = train(_cfg(tmp_path, tiny_data, "killed", epochs=4))
    # training time adds up across the interruption
    resumed_wall = torch.load(last, weights_only=True)["wall_time"]["seconds"]
    assert resumed_wall > killed["wall_time"]["seconds"]
    assert load_model(model_path, with_info=True)[1]["training"]["wall_time_s"] >= resumed_wall
    resumed = _step_losses(out)
    n = steps_per_epoch * (4 - done_epochs)
    assert resumed[-n:] == pytest.approx(ref_losses[-n:], rel=1e-5, abs=1e-6)
    # the killed segment's log is kept, and so are its steps before the checkpoint
    segments = read_metrics(out)["segment"].unique().tolist()
    assert segments == [0, 1]
    assert len(resumed) >= len(ref_losses)


@pytest.mark.slow
def test_two_process_ddp_on_cpu(tmp_path, tiny_data):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "cdvae_core", "train", "--dataset", "perov_5",
           "--data-dir", str(tiny_data), "--out-dir", str(out), "--epochs", "2",
           "--batch-size", "8", "--encoder", '{"hidden": 32, "num_layers": 2, "num_rbf": 16}',
           "--decoder", '{"hidden": 32, "num_layers": 2, "num_rbf": 16}',
           "--model-overrides", '{"latent_dim": 16, "hidden_dim": 32}',
           "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--num-threads", "1",
           "--no-progress"]
    env = dict(os.environ, CDVAE_CACHE_DIR=str(tmp_path / "cache"))
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "gloo" in res.stderr + res.stdout or "world_size" in (res.stderr + res.stdout).lower() \
        or "distributed" in (res.stderr + res.stdout).lower()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    model = load_model(out / "model.pt")
    assert model.cfg.encoder["hidden"] == 32


def test_a_non_finite_gradient_skips_the_update_and_keeps_the_weights():
    cfg = ModelConfig.for_dataset("perov_5", encoder=TINY, decoder=TINY, latent_dim=16,
                                  hidden_dim=32)
    from cdvae_core.training.module import CDVAEModule

    module = CDVAEModule(cfg.to_dict())
    opt = torch.optim.Adam(module.parameters(), lr=1e-3)
    params = [p for p in module.parameters()]
    before = [p.detach().clone() for p in params]
    for p in params:
        p.grad = torch.ones_like(p)
    params[3].grad.view(-1)[0] = float("nan")
    module.on_before_optimizer_step(opt)
    assert all(p.grad is None for p in params)
    opt.step()
    assert all(torch.equal(a, p) for a, p in zip(before, params, strict=True))
    assert module.skipped_steps == 1
    # a finite gradient passes through untouched and moves the weights
    for p in params:
        p.grad = torch.ones_like(p)
    module.on_before_optimizer_step(opt)
    opt.step()
    assert not torch.equal(before[3], params[3])
    # too many bad steps in a row stop the run with a clear error
    module.max_bad_steps_in_a_row = 2
    for _ in range(2):
        for p in params:
            p.grad = torch.full_like(p, float("inf"))
        try:
            module.on_before_optimizer_step(opt)
        except FloatingPointError as exc:
            assert "non-finite gradients" in str(exc)
            break
    else:
        raise AssertionError("two non-finite steps in a row did not stop the run")


@pytest.mark.slow
def test_last_checkpoint_is_written_every_epoch_even_without_a_new_best(tmp_path, tiny_data):
    # lr 0: the weights never change, so the (fixed-noise) validation loss never improves after
    # the first epoch; last.ckpt must still follow every epoch
    train(_cfg(tmp_path, tiny_data, "run", epochs=3, lr=0.0))
    ckpts = tmp_path / "run" / "checkpoints"
    last = torch.load(ckpts / "last.ckpt", weights_only=True)
    best = torch.load(ckpts / "best.ckpt", weights_only=True)
    assert last["epoch"] == 2
    assert best["epoch"] == 0
    # the export ships the best epoch, with that epoch's own validation loss, the training
    # log, the resume file and the training time
    from cdvae_core.training.train import export_run

    dest = tmp_path / "shipped"
    export_run(tmp_path / "run", dest)
    _, info = load_model(dest / "model.pt", with_info=True)
    val = read_metrics(tmp_path / "run").dropna(subset=["val_loss"])
    assert info["training"]["best_epoch"] == 0 and info["training"]["epochs_completed"] == 3
    assert info["training"]["best_val_loss"] == pytest.approx(
        float(val.loc[val["epoch"] == 0, "val_loss"].iloc[-1]))
    assert info["training"]["wall_time_s"] > 0
    assert (dest / "resume" / "last.ckpt").is_file() and (dest / "training_log.csv").is_file()
    assert torch.load(dest / "resume" / "last.ckpt", weights_only=True)["epoch"] == 2


def test_exported_log_continues_the_shipped_history(tmp_path):
    # a run started with --init-from at epoch 5 logs epochs 5..7; the shipped log it continues
    # covers 0..5 (epoch 5 half done when that run was stopped): the exported log must read as
    # one run, epoch 5 taken from the new run only and its segments numbered after the old ones
    import pandas as pd

    from cdvae_core.training.train import prepend_history

    hist = pd.DataFrame({"epoch": [0, 1, 2, 3, 4, 5], "val_loss": [9, 8, 7, 6, 5, 99.0],
                         "segment": [0, 0, 0, 1, 1, 1]})
    hist.to_csv(tmp_path / "training_log.csv", index=False)
    run = pd.DataFrame({"epoch": [5, 6, 7], "val_loss": [4.0, 3.0, 2.0], "segment": [0, 0, 1]})
    log = prepend_history(tmp_path / "training_log.csv", run)
    assert log["epoch"].tolist() == [0, 1, 2, 3, 4, 5, 6, 7]
    assert log.loc[log["epoch"] == 5, "val_loss"].tolist() == [4.0]
    assert log["segment"].tolist() == [0, 0, 0, 1, 1, 2, 2, 3]
    (tmp_path / "foreign.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="foreign.csv: not a training log"):
        prepend_history(tmp_path / "foreign.csv", run)


def _ckpt(run_dir, name="last.ckpt"):
    return torch.load(Path(run_dir) / "checkpoints" / name, weights_only=True)


@pytest.mark.slow
def test_weight_average_follows_its_definition(tmp_path, tiny_data):
    # EMA: avg <- decay * avg + (1 - decay) * weights after every step. decay 1: the average
    # never leaves the starting weights, so the validation loss (fixed noise) cannot change
    # while the raw weights train; decay 0: the average is the raw weights
    train(_cfg(tmp_path, tiny_data, "frozen", epochs=2, ema_decay=1.0))
    val = read_metrics(tmp_path / "frozen").dropna(subset=["val_loss"])["val_loss"].tolist()
    assert len(val) == 2 and val[0] == val[1]
    ck = _ckpt(tmp_path / "frozen")
    moved = [k for k, v in ck["state_dict"].items()
             if not torch.equal(v, ck["current_model_state"][k])]
    assert moved, "raw weights should have trained away from the frozen average"
    # the shipped model file holds the average, and says so
    _, info = load_model(tmp_path / "frozen" / "model.pt", with_info=True)
    assert info["training"]["weight_averaging"] == {"ema_decay": 1.0, "from_epoch": 0}
    shipped = torch.load(tmp_path / "frozen" / "model.pt", weights_only=True)
    key = next(k for k in moved if k.startswith("model."))
    torch.testing.assert_close(shipped["state_dict"][key[len("model."):]], ck["state_dict"][key])

    train(_cfg(tmp_path, tiny_data, "follow", epochs=1, ema_decay=0.0))
    ck = _ckpt(tmp_path / "follow")
    for k, v in ck["current_model_state"].items():
        torch.testing.assert_close(ck["state_dict"][k], v)


@pytest.mark.slow
def test_resume_with_weight_average_continues_exactly(tmp_path, tiny_data):
    train(_cfg(tmp_path, tiny_data, "ref", epochs=3, ema_decay=0.9))
    train(_cfg(tmp_path, tiny_data, "split", epochs=2, ema_decay=0.9))
    train(_cfg(tmp_path, tiny_data, "split", epochs=3, ema_decay=0.9))  # resumes last.ckpt
    ref, split = _ckpt(tmp_path / "ref"), _ckpt(tmp_path / "split")
    # switched on when resuming a run that had none: the average starts at that epoch
    train(_cfg(tmp_path, tiny_data, "late", epochs=1))
    train(_cfg(tmp_path, tiny_data, "late", epochs=2, ema_decay=0.9))
    (tmp_path / "late" / "checkpoints" / "best.ckpt").unlink()  # export epoch 1 (last.ckpt)
    export_run(tmp_path / "late", tmp_path / "late_export")
    _, info = load_model(tmp_path / "late_export" / "model.pt", with_info=True)
    assert info["training"]["weight_averaging"] == {"ema_decay": 0.9, "from_epoch": 1}
    assert ref["epoch"] == split["epoch"] == 2
    for part in ("state_dict", "current_model_state"):
        for k, v in ref[part].items():
            torch.testing.assert_close(split[part][k], v, rtol=1e-5, atol=1e-6)
    n = len(_step_losses(tmp_path / "ref")) // 3
    assert _step_losses(tmp_path / "split")[-n:] == pytest.approx(
        _step_losses(tmp_path / "ref")[-n:], rel=1e-5, abs=1e-6)
    with pytest.raises(ValueError, match="ema_decay must lie in"):
        train(_cfg(tmp_path, tiny_data, "bad", epochs=1, ema_decay=1.5))
