"""Reconstruction matching: StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3), normalised RMS."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from scipy.spatial.transform import Rotation

from cdvae_core.metrics.matching import match_structures, rms_distance


def _rotated_translated_permuted(structure: Structure, seed: int = 0) -> Structure:
    """The same crystal described differently: rotated Cartesian frame, shifted origin,
    shuffled site order."""
    rng = np.random.default_rng(seed)
    rot = Rotation.random(random_state=seed).as_matrix()  # [3, 3]
    lattice = structure.lattice.matrix @ rot.T  # rows are the rotated lattice vectors
    cart = structure.cart_coords @ rot.T + rng.normal(size=3)  # [N, 3] Å
    order = rng.permutation(len(structure))
    species = [structure.species[i] for i in order]
    return Structure(Lattice(lattice), species, cart[order], coords_are_cartesian=True)


def test_a_crystal_matches_a_rotated_translated_permuted_copy(srtio3, diamond):
    for crystal in (srtio3, diamond):
        copy = _rotated_translated_permuted(crystal)
        assert not np.allclose(copy.lattice.matrix, crystal.lattice.matrix)
        assert rms_distance(copy, crystal) == pytest.approx(0.0, abs=1e-6)


def test_rms_is_normalised_by_the_volume_per_atom(srtio3):
    # Move one atom of N by d. After the best rigid translation (the mean displacement) the
    # moved atom is off by d (N-1)/N and the others by d/N, so rms = d sqrt(N-1) / N; the
    # matcher divides by (V/N)^(1/3).
    d, n = 0.1, len(srtio3)
    moved = srtio3.copy()
    moved.translate_sites([1], [d, 0, 0], frac_coords=False)
    expected = d * np.sqrt(n - 1) / n / (srtio3.volume / n) ** (1 / 3)
    assert rms_distance(moved, srtio3) == pytest.approx(expected, rel=1e-6)


def test_different_crystals_do_not_match(nacl, srtio3):
    assert rms_distance(nacl, srtio3) is None


def test_match_rate_counts_invalid_and_missing_predictions_as_unmatched(srtio3, diamond, nacl):
    close = srtio3.copy()
    close.translate_sites([1], [0.0, 0.0, 1.6], frac_coords=False)  # Ti 0.35 Å from an O
    preds = [_rotated_translated_permuted(srtio3, 1), nacl, None, close]
    trues = [srtio3, diamond, nacl, srtio3]
    result = match_structures(preds, trues, n_workers=1, progress=False)
    np.testing.assert_array_equal(result.valid, [True, True, False, False])
    np.testing.assert_array_equal(result.matched, [True, False, False, False])
    assert result.match_rate == pytest.approx(1 / 4)
    assert result.rmse == pytest.approx(0.0, abs=1e-6)  # over the matched pair only
    assert np.isnan(result.rms_dist[1:]).all()


def test_explicit_validity_overrides_the_default(srtio3):
    result = match_structures(
        [srtio3, srtio3], [srtio3, srtio3], valid=[True, False], progress=False
    )
    np.testing.assert_array_equal(result.matched, [True, False])
    assert result.match_rate == 0.5


def test_parallel_matches_serial(srtio3, diamond):
    preds = [_rotated_translated_permuted(s, i) for i, s in enumerate([srtio3, diamond] * 10)]
    trues = [srtio3, diamond] * 10
    serial = match_structures(preds, trues, n_workers=1, progress=False)
    parallel = match_structures(preds, trues, n_workers=2, progress=False)
    assert serial.match_rate == parallel.match_rate == 1.0
    # the crystals match exactly: RMS values are rounding noise (~1e-16), which may differ
    # between this process and a fresh worker process, so compare them absolutely
    np.testing.assert_allclose(serial.rms_dist, parallel.rms_dist, rtol=1e-7, atol=1e-10)
