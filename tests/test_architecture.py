"""ARCHITECTURE.md kept true: the layers of ``cdvae_core`` import one way, and the generic
diffusion layer loads none of the crystal, table or training stacks."""

from __future__ import annotations

import ast
import subprocess
import sys

from helpers import REPO

PACKAGE = REPO / "cdvae_core"

#: what each layer (a subpackage or a root module) may import of the package: ARCHITECTURE.md
ALLOWED: dict[str, set[str]] = {
    "utils": set(),
    "parallel": set(),
    "geometry": set(),
    "data": {"utils", "parallel", "geometry"},
    "diffusion": {"geometry"},
    "nn": {"utils", "geometry", "data"},
    "model": {"utils", "geometry", "data", "diffusion", "nn"},
    "predictor": {"utils", "geometry", "data", "nn"},
    "metrics": {"utils", "parallel", "geometry", "data"},
    "io": {"utils", "data"},
    "relax": {"utils", "data"},
    "testing": {"utils", "geometry", "data"},
    "training": {"utils", "geometry", "data", "diffusion", "nn", "model"},
    "explore": {"utils", "geometry", "data", "diffusion", "nn", "model", "metrics"},
    "experiments": {"utils", "geometry", "data", "diffusion", "nn", "model", "predictor",
                    "metrics", "io", "relax"},
    "cli": {"utils", "data", "diffusion", "nn", "model", "predictor", "relax", "training",
            "experiments"},
    "__main__": {"cli"},
    "__init__": set(),
}
HEAVY = ("torch_geometric", "pymatgen", "pandas", "lightning")


def _layer_imports() -> dict[str, set[str]]:
    """Layer -> the other layers its modules import, at any depth (lazy imports count too)."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        layer = path.relative_to(PACKAGE).with_suffix("").parts[0]
        deps = found.setdefault(layer, set())
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
                if node.module == "cdvae_core":  # from cdvae_core import x
                    names = [f"cdvae_core.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] == "cdvae_core" and len(parts) > 1 and parts[1] != layer:
                    deps.add(parts[1])
    return found


def test_layers_import_only_what_architecture_md_allows():
    found = _layer_imports()
    assert set(found) <= set(ALLOWED), f"layers missing from ALLOWED: {set(found) - set(ALLOWED)}"
    wrong = {layer: sorted(deps - ALLOWED[layer]) for layer, deps in found.items()
             if deps - ALLOWED[layer]}
    assert not wrong, f"imports against ARCHITECTURE.md: {wrong}"


def test_the_allowed_imports_point_one_way():
    # no cycle: repeatedly peel off layers that import nothing still left
    left = dict(ALLOWED)
    while left:
        leaves = [layer for layer, deps in left.items() if not deps & set(left)]
        assert leaves, f"the allowed imports have a cycle among {sorted(left)}"
        for layer in leaves:
            del left[layer]


def test_architecture_md_names_every_layer():
    text = (REPO / "ARCHITECTURE.md").read_text()
    missing = [layer for layer in ALLOWED if not layer.startswith("__") and f"`{layer}" not in text]
    assert not missing, f"ARCHITECTURE.md does not name {missing}"


def _modules_after(code: str) -> set[str]:
    """Module names loaded by a fresh interpreter after running ``code``."""
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint(*sorted(sys.modules))"],
                         capture_output=True, text=True, check=True, cwd=REPO)
    return set(out.stdout.split())


def test_importing_diffusion_loads_no_crystal_table_or_training_stack():
    loaded = _modules_after("import cdvae_core.diffusion")
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert not heavy, f"import cdvae_core.diffusion loaded {heavy[:10]}"
    ours = sorted(m for m in loaded if m.startswith("cdvae_core"))
    assert all(m in ("cdvae_core", "cdvae_core.geometry") or m.startswith("cdvae_core.diffusion")
               for m in ours), ours
