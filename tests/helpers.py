"""Paths and small builders shared by the tests (crystals themselves live in conftest.py)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("CDVAE_DATA_DIR", REPO.parent / "shared" / "data"))


def data_file(dataset: str, split: str) -> Path:
    """Path of a shared benchmark file; the test is skipped (with the reason) if it is absent."""
    path = DATA_DIR / dataset / f"{split}.csv"
    if not path.is_file():
        pytest.skip(f"benchmark file {path} not available (set CDVAE_DATA_DIR)")
    return path


def parameters_of(build) -> int:
    """Number of parameters of the module ``build()`` makes, built on the meta device (shapes
    only: no initialisation work)."""
    import torch

    with torch.device("meta"):
        model = build()
    return sum(p.numel() for p in model.parameters())


def tiny_model(structures):
    """An untrained small Perov-5 CDVAE with scalers fitted on ``structures``, and their
    dataset."""
    import torch

    from cdvae_core.data.dataset import CrystalDataset
    from cdvae_core.data.scaler import fit_scalers
    from cdvae_core.model.cdvae import CDVAE
    from cdvae_core.model.config import ModelConfig

    small = {"hidden": 16, "num_layers": 1, "num_rbf": 8}
    ds = CrystalDataset.from_structures(structures, "perov_5")
    torch.manual_seed(0)
    model = CDVAE(ModelConfig.for_dataset("perov_5", encoder=small, decoder=small, latent_dim=8,
                                          hidden_dim=16), fit_scalers(ds)).eval()
    return model, ds


def small_model():
    """An untrained small Perov-5 CDVAE (latent 8) with lattice scalers near Perov-5's."""
    import torch

    from cdvae_core.data.scaler import StandardScaler
    from cdvae_core.model.cdvae import CDVAE
    from cdvae_core.model.config import ModelConfig

    small = {"hidden": 16, "num_layers": 1, "num_rbf": 8}
    torch.manual_seed(0)
    cfg = ModelConfig.for_dataset("perov_5", encoder=small, decoder=small, latent_dim=8,
                                  hidden_dim=16)
    # lattice scalers near Perov-5's: unit scalers give sub-Ångström cells (slow decoder graphs)
    lattice = StandardScaler(torch.tensor([2.3, 2.3, 2.3, 90.0, 90.0, 90.0]),
                             torch.tensor([0.1, 0.1, 0.1, 2.0, 2.0, 2.0]))
    return CDVAE(cfg, scalers={"lattice": lattice}).eval()


@contextlib.contextmanager
def served_process(cmd: list[str], health_url: str, log_path: Path, what: str,
                   timeout: float = 120.0, stop_timeout: float = 20.0, **popen):
    """Start the server ``cmd`` (``popen``: cwd, env), logging to ``log_path``; return once
    ``health_url`` answers 200 (the test fails with the log's tail if the process exits or
    ``timeout`` s pass first); terminate it on exit (killed after ``stop_timeout`` s)."""
    import subprocess
    import time
    import urllib.request

    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, **popen)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    with urllib.request.urlopen(health_url, timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail(f"{what} did not start:\n" + log_path.read_text()[-3000:])
                time.sleep(0.5)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
