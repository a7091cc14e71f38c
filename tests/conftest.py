"""Shared fixtures: a few small crystals built in code (not read from the shared dataset)."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

_FCC = [[0.0, 0.0, 0.0], [0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]]


def rocksalt_nacl(a: float = 5.64) -> Structure:
    """Conventional rock-salt NaCl, 8 atoms, lattice constant ``a`` Å (Na-Cl = a/2)."""
    cl = [list(np.add(p, [0.5, 0.0, 0.0]) % 1.0) for p in _FCC]
    return Structure(Lattice.cubic(a), ["Na"] * 4 + ["Cl"] * 4, _FCC + cl)


def cubic_srtio3(a: float = 3.905) -> Structure:
    """Cubic perovskite SrTiO3 (Pm-3m), 5 atoms: Sr at the corner, Ti at the body centre."""
    coords = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    return Structure(Lattice.cubic(a), ["Sr", "Ti", "O", "O", "O"], coords)


def diamond_carbon(a: float = 3.567) -> Structure:
    """Conventional diamond, 8 C atoms: fcc plus the fcc shifted by (1/4, 1/4, 1/4)."""
    shifted = [list(np.add(p, 0.25)) for p in _FCC]
    return Structure(Lattice.cubic(a), ["C"] * 8, _FCC + shifted)


def triclinic() -> Structure:
    """A skewed 4-atom cell (all angles away from 90 degrees)."""
    lattice = Lattice.from_parameters(4.1, 4.6, 5.2, 78.0, 96.0, 104.0)
    return Structure(lattice, ["Ba", "Ti", "O", "O"],
                     [[0.02, 0.1, 0.97], [0.5, 0.45, 0.55], [0.5, 0.95, 0.5], [0.9, 0.5, 0.1]])


@pytest.fixture
def nacl() -> Structure:
    return rocksalt_nacl()


@pytest.fixture
def srtio3() -> Structure:
    return cubic_srtio3()


@pytest.fixture
def diamond() -> Structure:
    return diamond_carbon()


def jittered_batch(structures, dataset: str, dtype=None, seed: int = 0):
    """Crystals built in code as a batch, coordinates jittered (see ``jitter_batch``)."""
    import torch

    from cdvae_core.data.dataset import CrystalDataset
    from cdvae_core.testing import jitter_batch

    batch = CrystalDataset.from_structures(structures, dataset).collate(range(len(structures)))
    batch = jitter_batch(batch.to("cpu", torch.float64), torch.Generator().manual_seed(seed))
    return batch.to("cpu", dtype or torch.float32)


@pytest.fixture
def perovskites(srtio3) -> list[Structure]:
    """SrTiO3 and a strained Ba variant."""
    strained = srtio3.copy()
    strained.replace_species({"Sr": "Ba"})
    strained.apply_strain([0.03, -0.02, 0.05])
    return [srtio3, strained]


@pytest.fixture
def carbons(diamond) -> list[Structure]:
    """Diamond and a strained copy."""
    strained = diamond.copy()
    strained.apply_strain([0.04, 0.0, -0.03])
    return [diamond, strained]


@pytest.fixture(params=[("float32", "perovskites"), ("float64", "perovskites"),
                        ("float32", "carbons"), ("float64", "carbons")],
                ids=lambda p: f"{p[1]}-{p[0]}")
def family_batch(request):
    """Two perovskites or two carbons as one jittered batch, in float32 and in float64 (the
    symmetry checks every network must pass in both precisions)."""
    import torch

    dtype, family = request.param
    dataset = "perov_5" if family == "perovskites" else "carbon_24"
    return jittered_batch(request.getfixturevalue(family), dataset, getattr(torch, dtype))


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from threads, and on a busy machine threaded kernels wait for
    cores; one thread keeps such tests fast."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def no_chgnet(monkeypatch):
    """As if the optional CHGNet package were not installed: importing it fails."""
    import builtins
    import sys

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "chgnet" or name.startswith("chgnet."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    for mod in [m for m in sys.modules if m == "chgnet" or m.startswith("chgnet.")]:
        monkeypatch.delitem(sys.modules, mod)
