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


@pytest.fixture
def nacl() -> Structure:
    return rocksalt_nacl()


@pytest.fixture
def srtio3() -> Structure:
    return cubic_srtio3()


@pytest.fixture
def diamond() -> Structure:
    return diamond_carbon()
