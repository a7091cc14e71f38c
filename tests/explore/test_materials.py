"""Material helpers: formulas, families, the dataset table, nearest references."""

from __future__ import annotations

import numpy as np
import pytest

from cdvae_core import explore
from cdvae_core.data.dataset import CrystalDataset

from conftest import cubic_srtio3, diamond_carbon

SMALL = {"hidden": 16, "num_layers": 1, "num_rbf": 8}


def test_families_formulas_and_table():
    assert explore.structure_family([38, 22, 8, 8, 8]) == "O"
    assert explore.structure_family([7, 41, 38]) == "N"
    assert explore.structure_family([6] * 8) == "C"
    assert explore.structure_family([18, 11]) == "Na"  # argon has no electronegativity
    assert explore.reduced_formula([38, 22, 8, 8, 8]) == "SrTiO3"
    ds = CrystalDataset.from_structures([cubic_srtio3(), diamond_carbon()], props=[0.5, 1.0])
    table = explore.dataset_table(ds)
    assert list(table["formula"]) == ["SrTiO3", "C"]
    assert list(table["family"]) == ["O", "C"]
    assert list(table["n_atoms"]) == [5, 8] and list(table["n_elements"]) == [3, 1]
    assert table["volume_per_atom"][0] == pytest.approx(3.905**3 / 5, rel=1e-4)
    assert list(table["prop"]) == [0.5, 1.0]


def test_nearest_reference_by_composition_then_volume():
    ref = explore.composition_vectors([[38, 22, 8, 8, 8], [56, 22, 8, 8, 8], [38, 22, 8, 8, 8]])
    ref_vpa = np.array([10.0, 12.0, 14.0])
    query = explore.composition_vectors([[8, 8, 8, 22, 38], [56, 22, 8, 8, 8], [6, 6]])
    idx, dist = explore.nearest_reference(query, ref, np.array([13.5, 0.0, 0.0]), ref_vpa)
    assert idx[0] == 2 and dist[0] == 0  # same composition, closest volume per atom
    assert idx[1] == 1 and dist[1] == 0
    assert dist[2] == pytest.approx(2.0)  # no shared element: L1 of two distributions
    assert np.allclose(query.sum(1), 1.0)
    idx, dist = explore.nearest_reference(query, np.zeros((0, 100)))
    assert list(idx) == [-1, -1, -1]


def test_chemical_family_from_the_anion_or_intermetallic():
    assert explore.chemical_family([38, 22, 8, 8, 8]) == "oxide"  # SrTiO3
    assert explore.chemical_family([31, 7]) == "nitride"  # GaN
    assert explore.chemical_family([11, 17]) == "halide"  # NaCl
    assert explore.chemical_family([30, 16]) == "chalcogenide"  # ZnS
    assert explore.chemical_family([31, 33]) == "pnictide"  # GaAs
    assert explore.chemical_family([13, 29, 29]) == "intermetallic"  # AlCu2
    assert explore.chemical_family([6] * 8) == "element"


def test_cell_volumes_equal_pymatgen_for_triclinic_cells():
    from pymatgen.core import Lattice

    from cdvae_core.explore.materials import cell_volumes

    rng = np.random.default_rng(0)
    lengths = rng.uniform(2.0, 12.0, size=(50, 3))
    angles = rng.uniform(60.0, 120.0, size=(50, 3))
    ok = [Lattice.from_parameters(*a, *b).volume for a, b in zip(lengths, angles, strict=True)]
    assert np.allclose(cell_volumes(lengths, angles), ok, rtol=1e-10)
    assert cell_volumes(np.array([[3.0, 4.0, 5.0]]), np.array([[90.0, 90.0, 90.0]]))[0] == (
        pytest.approx(60.0))
