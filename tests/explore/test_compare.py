"""The compare view's candidates and fingerprint distances (cdvae_core/explore/compare.py)."""

from __future__ import annotations

import numpy as np

from cdvae_core.explore import compare
from cdvae_core.metrics.fingerprints import composition_fingerprint, structure_fingerprint

from conftest import cubic_srtio3, rocksalt_nacl


def test_candidates_name_why_and_skip_unknown_ids():
    row = {"nearest_struct_ref_id": "m1", "nearest_comp_ref_id": "m2", "other": 3}
    got = compare.candidate_ids(row, "m1", ["m0", "m1", "m2"])
    assert list(got) == ["m1", "m2"]
    assert got["m1"] == ["nearest by structure (evaluation)", "nearest by element fractions (app)"]
    assert compare.candidate_ids({"nearest_struct_ref_id": float("nan")}, "x", ["m0"]) == {}
    assert compare.candidate_ids({}, "m0", ["m0"]) == {"m0": ["nearest by element fractions (app)"]}


def test_distances_are_the_coverage_metrics_euclidean_ones():
    sample = cubic_srtio3(3.95)
    refs = [cubic_srtio3(3.905), rocksalt_nacl()]
    d = compare.fingerprint_distances(sample, refs)
    for k, ref in enumerate(refs):
        s = np.linalg.norm(structure_fingerprint(sample) - structure_fingerprint(ref))
        c = np.linalg.norm(composition_fingerprint(sample) - composition_fingerprint(ref))
        assert np.isclose(d["struct_dist"][k], s) and np.isclose(d["comp_dist"][k], c)
    assert d["comp_dist"][0] < 1e-9 < d["comp_dist"][1]  # same composition
    assert list(d["nearest_struct"]) == [True, False] and list(d["nearest_comp"]) == [True, False]
