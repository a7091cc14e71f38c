"""Subnormal floats (below 1.2e-38 in float32) are as good as zero in these networks but cost
up to 27x per matrix product on Intel CPUs: the radial basis never emits them, the entry points
flush them, and flushing changes no result beyond float tolerance."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
TINY = torch.finfo(torch.float32).tiny


_BASIS = r"""
import json, torch
from cdvae_core.nn.base import GaussianBasis
basis = GaussianBasis(cutoff=7.0, num=32)
d = torch.linspace(0.0, 7.0, 5001)
g = basis(d)
exact = torch.exp(-basis.gamma * (d[:, None].double() - basis.centres.double()) ** 2)
print(json.dumps({"g": g.flatten().tolist(), "exact": exact.flatten().tolist()}))
"""


def test_gaussian_basis_has_no_subnormal_values():
    # in a fresh process without flush-to-zero (this suite's conftest sets it, and the CPU
    # would then hide the subnormals the basis produces on its own)
    out = subprocess.run([sys.executable, "-c", _BASIS], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    g = torch.tensor(res["g"], dtype=torch.float64)
    exact = torch.tensor(res["exact"], dtype=torch.float64)
    nonzero = g[g != 0]
    assert (nonzero.abs() >= TINY).all(), nonzero.abs().min()
    # and it is still the Gaussian exp(-gamma (d - mu)^2) wherever that is a normal float
    normal = exact >= TINY
    assert normal.sum() > 0.5 * exact.numel()
    assert ((exact > 0) & ~normal).any()  # the case in question: subnormal Gaussians exist
    torch.testing.assert_close(g[normal], exact[normal], rtol=1e-5, atol=1e-7)
    assert (g[~normal] == 0).all()  # the rest: zero, within 1.2e-38 of exact


_STEP = r"""
import json, sys, torch
from cdvae_core.utils import configure_cpu
if sys.argv[1] == "flush":
    configure_cpu(2)
else:
    torch.set_num_threads(2)
sub = (torch.tensor([1e-39]) * 1.0).item()
sys.path.insert(0, "tests")
from conftest import cubic_srtio3, jittered_batch
from cdvae_core.model.cdvae import CDVAE
from cdvae_core.model.config import ModelConfig
small = {"hidden": 32, "num_layers": 2, "num_rbf": 16}
torch.manual_seed(0)
model = CDVAE(ModelConfig.for_dataset("perov_5", latent_dim=16, hidden_dim=32,
                                      encoder=small, decoder=small))
batch = jittered_batch([cubic_srtio3(), cubic_srtio3(4.1), cubic_srtio3(3.8)], "perov_5", seed=3)
out = model(batch, generator=torch.Generator().manual_seed(1))
out["loss"].backward()
grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
print(json.dumps({"subnormal_after": sub, "loss": out["loss"].item(),
                  "coord_loss": out["coord_loss"].item(), "grads": grads.tolist()}))
"""


def _run(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _STEP, mode], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_flushing_subnormals_changes_a_training_step_only_within_float_tolerance():
    plain, flushed = _run("plain"), _run("flush")
    assert plain["subnormal_after"] > 0  # the CPU keeps subnormals unless told otherwise
    assert flushed["subnormal_after"] == 0.0  # configure_cpu flushed them
    assert math.isclose(plain["loss"], flushed["loss"], rel_tol=1e-5)
    assert math.isclose(plain["coord_loss"], flushed["coord_loss"], rel_tol=1e-5)
    torch.testing.assert_close(torch.tensor(flushed["grads"]), torch.tensor(plain["grads"]),
                               rtol=1e-4, atol=1e-6)


def test_the_command_line_flushes_subnormals_before_running_a_command(monkeypatch, tmp_path):
    import cdvae_core.utils as utils
    from cdvae_core import cli

    calls = []
    monkeypatch.setattr(utils, "configure_cpu", lambda *a, **k: calls.append("flush") or True)
    monkeypatch.setattr(cli, "_info", lambda args: calls.append("command") or 0)
    assert cli.main(["info", str(tmp_path / "model.pt")]) == 0
    assert calls == ["flush", "command"]
