"""CrystalNN / Magpie fingerprints: shapes, invariances, failures and the on-disk cache."""

from __future__ import annotations

import numpy as np
import pytest

import cdvae_core.metrics.fingerprints as fp_module
from cdvae_core.metrics.fingerprints import (
    COMP_FP_DIM,
    STRUCT_FP_DIM,
    cached_fingerprints,
    composition_fingerprint,
    compute_fingerprints,
    structure_fingerprint,
    structures_digest,
)


def test_shapes_and_invariance_to_rigid_motion_and_permutation(srtio3):
    fp = structure_fingerprint(srtio3)
    assert fp.shape == (STRUCT_FP_DIM,) and np.all(np.isfinite(fp))
    moved = srtio3.copy()
    moved.translate_sites(list(range(len(moved))), [0.13, -0.27, 0.31])
    moved = moved.get_sorted_structure(key=lambda site: -site.specie.Z)  # permute the sites
    np.testing.assert_allclose(structure_fingerprint(moved), fp, atol=1e-8)
    comp = composition_fingerprint(srtio3)
    assert comp.shape == (COMP_FP_DIM,) and np.all(np.isfinite(comp))


def test_composition_fingerprint_depends_on_proportions_only(nacl):
    np.testing.assert_allclose(
        composition_fingerprint(nacl), composition_fingerprint(nacl.composition.reduced_composition)
    )


def test_distinct_crystals_have_distinct_fingerprints(nacl, diamond):
    assert np.linalg.norm(structure_fingerprint(nacl) - structure_fingerprint(diamond)) > 0.2


def test_failed_entries_give_nan_rows_in_parallel_and_in_order(nacl, srtio3, diamond):
    structures = [nacl, None, srtio3, diamond] * 5
    serial = compute_fingerprints(structures, n_workers=1, progress=False)
    parallel = compute_fingerprints(structures, n_workers=2, progress=False)
    assert serial.struct.shape == (20, STRUCT_FP_DIM) and serial.comp.shape == (20, COMP_FP_DIM)
    np.testing.assert_array_equal(serial.ok, [True, False, True, True] * 5)
    np.testing.assert_allclose(parallel.struct, serial.struct, equal_nan=True)
    np.testing.assert_allclose(parallel.comp, serial.comp, equal_nan=True)


def test_cache_is_written_once_and_reused(tmp_path, nacl, srtio3, monkeypatch):
    first = cached_fingerprints([nacl, srtio3], cache_dir=tmp_path, progress=False)
    files = list((tmp_path / "fingerprints").glob("*.npz"))
    assert len(files) == 1 and not list(tmp_path.rglob("*.tmp"))

    def no_compute(*args, **kwargs):
        raise AssertionError("a cached reference set was fingerprinted again")

    monkeypatch.setattr(fp_module, "compute_fingerprints", no_compute)
    again = cached_fingerprints([nacl, srtio3], cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(again.struct, first.struct)
    with pytest.raises(AssertionError, match="fingerprinted again"):
        cached_fingerprints([srtio3, nacl], cache_dir=tmp_path, progress=False)


def test_damaged_cache_file_is_recomputed(tmp_path, nacl):
    first = cached_fingerprints([nacl], cache_dir=tmp_path, progress=False)
    (path,) = (tmp_path / "fingerprints").glob("*.npz")
    path.write_bytes(b"not an npz file")
    again = cached_fingerprints([nacl], cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(again.struct, first.struct)


def test_digest_follows_content(nacl):
    same = nacl.copy()
    moved = nacl.copy()
    moved.translate_sites([0], [0.01, 0, 0])
    assert structures_digest([nacl]) == structures_digest([same])
    assert structures_digest([nacl]) != structures_digest([moved])
    assert structures_digest([nacl, None]) != structures_digest([nacl])
