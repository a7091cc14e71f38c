"""The model file is read with torch and the model alone: no Lightning, and the shipped files
load unchanged. (Round trips and clear errors: ``test_cdvae.py``.)"""

from __future__ import annotations

import subprocess
import sys

import pytest

from helpers import REPO

SHIPPED = sorted((REPO / "checkpoints").glob("*/model.pt"))

# an import hook that makes Lightning absent, as in an environment without it
NO_LIGHTNING = """
import importlib.abc, sys
class _Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("lightning", "pytorch_lightning", "lightning_fabric"):
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, _Absent())
"""


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", NO_LIGHTNING + code], capture_output=True,
                         text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_load_model_works_without_lightning(tmp_path):
    path = tmp_path / "model.pt"
    out = _run(f"""
import sys
sys.path.insert(0, {str(REPO / "tests")!r})
import torch
from helpers import small_model
from cdvae_core.model.checkpoint import load_model, save_model
model = small_model()
save_model(model, {str(path)!r})
loaded = load_model({str(path)!r})
assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                             loaded.state_dict().values()))
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("lightning", "pytorch_lightning"))
assert not heavy, heavy
print("ok")
""")
    assert out.strip() == "ok"


@pytest.mark.skipif(not SHIPPED, reason="no shipped model.pt under checkpoints/")
def test_shipped_models_load_without_lightning():
    out = _run(f"""
from cdvae_core.model.checkpoint import load_model
for path in {[str(p) for p in SHIPPED]!r}:
    model, info = load_model(path, with_info=True)
    print(model.cfg.dataset, info["format"], model.num_parameters())
""")
    assert out.count("cdvae_core.model") == len(SHIPPED)
