"""Structure validity (0.5 Å, 0.1 Å^3, periodic) and SMACT composition validity."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Composition, Lattice, Structure

from cdvae_core.metrics.validity import composition_validity, structure_validity


def test_reference_crystals_are_structure_valid(nacl, srtio3, diamond):
    # Shortest distances: Na-Cl 2.82 Å, Ti-O 1.95 Å, C-C 1.54 Å, all far above 0.5 Å.
    for crystal in (nacl, srtio3, diamond):
        assert structure_validity(crystal) == (True, None)


def test_two_atoms_0p4_apart_is_invalid():
    s = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.4 / 5.0, 0, 0]])
    valid, reason = structure_validity(s)
    assert not valid
    assert "atoms 0 and 1" in reason and "0.400 Å" in reason


def test_close_pair_across_the_cell_face_is_invalid():
    # Fractional x = 0.01 and 0.97 in a 5 Å cell: 0.2 Å apart through the periodic boundary.
    s = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0.01, 0.5, 0.5], [0.97, 0.5, 0.5]])
    valid, reason = structure_validity(s)
    assert not valid and "0.200 Å" in reason


def test_atom_close_to_its_own_image_is_invalid():
    s = Structure(Lattice.orthorhombic(0.45, 5.0, 5.0), ["C"], [[0, 0, 0]])
    valid, reason = structure_validity(s)
    assert not valid and "own periodic image" in reason and "0.450" in reason


def test_short_lattice_vector_hidden_in_a_skewed_cell_is_found():
    # None of the three cell vectors is short (10, 10, 7.07 Å) but 2c - a - b = (0, 0, 0.4) Å
    # is a lattice vector, so the single atom sits 0.4 Å from one of its own images.
    lattice = Lattice([[10.0, 0, 0], [0, 10.0, 0], [5.0, 5.0, 0.2]])
    s = Structure(lattice, ["C"], [[0, 0, 0]])
    assert lattice.volume > 0.1
    valid, reason = structure_validity(s)
    assert not valid and "0.400" in reason


def test_coincident_atoms_are_invalid():
    s = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]])
    valid, reason = structure_validity(s)
    assert not valid and "0.000 Å" in reason


def test_distance_threshold_is_inclusive():
    # 0.125 * 4 Å = 0.5 Å exactly in binary floating point.
    at = Structure(Lattice.cubic(4.0), ["H", "H"], [[0, 0, 0], [0.125, 0, 0]])
    below = Structure(Lattice.cubic(4.0), ["H", "H"], [[0, 0, 0], [0.12, 0, 0]])
    assert structure_validity(at)[0]
    assert not structure_validity(below)[0]


def test_tiny_volume_is_invalid():
    s = Structure(Lattice.cubic(0.4), ["H"], [[0, 0, 0]])  # 0.064 Å^3
    valid, reason = structure_validity(s)
    assert not valid and "volume" in reason


def test_missing_or_broken_structures_are_invalid():
    assert structure_validity(None) == (False, "no structure (decoding failed)")
    s = Structure(Lattice(np.full((3, 3), np.nan)), ["H"], [[0, 0, 0]], validate_proximity=False)
    assert not structure_validity(s)[0]


@pytest.mark.parametrize(
    "composition",
    [
        "NaCl",  # Na+ Cl-
        "SrTiO3",  # Sr2+ Ti4+ 3 O2-
        "Fe2O3",  # 2 Fe3+ 3 O2-
        "Na2Cl2",  # counts divided by their gcd: NaCl
        "C8",  # a single element is valid
        "CuZn",  # only metals: an alloy is valid without charge balance
    ],
)
def test_valid_compositions(composition):
    assert composition_validity(composition) == (True, None)


def test_accepted_input_forms_agree(nacl):
    expected = composition_validity("NaCl")
    assert composition_validity(nacl.composition) == expected
    assert composition_validity(["Na", "Cl", "Na", "Cl"]) == expected
    assert composition_validity([11, 17]) == expected
    assert composition_validity({"Na": 4, "Cl": 4}) == expected
    assert composition_validity(Composition("Na4Cl4")) == expected


def test_charge_impossible_composition_is_invalid():
    # NaCl2: q(Na) + 2 q(Cl) = 0 needs an even charge on Na, and sodium only takes +1.
    valid, reason = composition_validity("NaCl2")
    assert not valid and "charge-neutral" in reason and "NaCl2" in reason
    # Na2Cl: 2 + q(Cl) = 0 needs Cl2-; chlorine's states are all odd (-1, +1, +3, +5, +7).
    assert not composition_validity("Na2Cl")[0]


def test_pauling_test_rejects_a_charge_neutral_composition():
    # H3Cl: 3 q(H) + q(Cl) = 0. H+ would need Cl3- (not a chlorine state); H- with Cl3+ is
    # neutral, but then Cl (Pauling 3.16) is a cation more electronegative than the H anion
    # (2.20), which the Pauling test forbids.
    valid, reason = composition_validity("H3Cl")
    assert not valid and "Pauling" in reason


def test_unknown_element_is_invalid_with_a_reason():
    valid, reason = composition_validity({"Xx": 1, "O": 1})
    assert not valid and "Xx" in reason


def test_oxidation_state_sets_are_selectable():
    assert composition_validity("SrTiO3", oxidation_states="smact14")[0]
    with pytest.raises(ValueError, match="oxidation-state set"):
        composition_validity("SrTiO3", oxidation_states="nonsense")
