"""pyproject.toml and environment.yml declare the same dependencies with the same lower bounds."""

from __future__ import annotations

import re

import tomllib
import yaml

from helpers import REPO

# conda-forge names of PyPI packages that are spelled differently there
CONDA_NAMES = {"torch": "pytorch", "torch-geometric": "pytorch_geometric", "py3dmol": "py3dmol"}


def _split(req: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", req)
    assert m, req
    return m.group(1).lower(), m.group(2).replace(" ", "")


def test_environment_mirrors_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    wanted = {}
    for r in reqs:
        name, spec = _split(r)
        assert spec.startswith(">="), f"{r}: dependencies need a lower bound"
        wanted[CONDA_NAMES.get(name, name)] = spec
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    have = {}
    for dep in env["dependencies"]:
        if isinstance(dep, str) and not dep.startswith(("python", "pip")):
            name, spec = _split(dep)
            have[name] = spec
    assert have == wanted


def test_python_bound_matches():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert f"python{project['requires-python']}" in env["dependencies"]
