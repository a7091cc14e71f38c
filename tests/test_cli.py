"""The command line starts without torch, and importing it changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys

from helpers import REPO


def test_help_starts_without_importing_torch():
    code = ("import sys\nfrom cdvae_core.cli import main\n"
            "for argv in (['--help'], ['generate', '--help'], ['evaluate', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "--step-lr" in out.stdout and "--num-levels" in out.stdout


def test_importing_the_cli_has_no_side_effects():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = "import os, cdvae_core.cli\nprint(os.environ.get('OMP_WAIT_POLICY'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=REPO, check=True)
    assert out.stdout.strip() == "None"


def test_evaluation_names_its_property_instrument(tmp_path, monkeypatch):
    """Issue 20: the paper's property model by default, with a message naming the fetch command
    when its wheel is missing; our own predictor when a file is given, named as such."""
    import pytest

    from cdvae_core.cli import _instrument
    from cdvae_core.predictor.gnn import PredictorConfig, PropertyPredictor, save_predictor
    from cdvae_core.predictor.paper_models import PropertyModelError

    monkeypatch.setenv("CDVAE_CACHE_DIR", str(tmp_path / "empty-cache"))
    with pytest.raises(PropertyModelError, match="fetch-property-models"):
        _instrument(None, "perov_5")
    path = tmp_path / "predictor.pt"
    save_predictor(PropertyPredictor(PredictorConfig(hidden=8, num_layers=1)), path, {})
    fn, name = _instrument(str(path), "perov_5")
    assert callable(fn) and name.startswith("our independent GNN predictor")
