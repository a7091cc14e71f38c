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
