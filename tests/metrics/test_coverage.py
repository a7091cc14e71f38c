"""COV-R / COV-P, AMSD / AMCD and diversity on fingerprint arrays with known distances."""

from __future__ import annotations

import numpy as np
import pytest

import cdvae_core.metrics.coverage as coverage_module
from cdvae_core.metrics.coverage import coverage_metrics, diversity


def _random_fps(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.normal(size=(n, 61)), rng.normal(size=(n, 132))


def test_identical_sets_cover_each_other_completely():
    s, c = _random_fps(np.random.default_rng(0), 30)
    result = coverage_metrics(s, c, s, c, struct_cutoff=0.2, comp_cutoff=4.0)
    assert result.cov_recall == 1.0 and result.cov_precision == 1.0
    assert result.amsd_recall == 0.0 and result.amsd_precision == 0.0
    assert result.amcd_recall == 0.0 and result.amcd_precision == 0.0
    np.testing.assert_array_equal(result.nearest_struct_ref, np.arange(30))


def test_hand_made_distances():
    # Two reference materials at structure (0, 0) and (10, 0), both with composition 0.
    ref_s = np.array([[0.0, 0.0], [10.0, 0.0]])
    ref_c = np.array([[0.0], [0.0]])
    # Sample 0: 0.1 / 1.0 from ref 0 (covers it); sample 1: 0.3 from ref 1 (structure too far);
    # sample 2: sqrt(50) from both.
    gen_s = np.array([[0.1, 0.0], [10.0, 0.3], [5.0, 5.0]])
    gen_c = np.array([[1.0], [0.0], [0.0]])
    r = coverage_metrics(gen_s, gen_c, ref_s, ref_c, struct_cutoff=0.2, comp_cutoff=4.0)
    assert r.cov_recall == pytest.approx(1 / 2)
    assert r.cov_precision == pytest.approx(1 / 3)
    assert r.amsd_recall == pytest.approx((0.1 + 0.3) / 2)
    assert r.amsd_precision == pytest.approx((0.1 + 0.3 + np.sqrt(50.0)) / 3)
    assert r.amcd_recall == pytest.approx(0.0)  # samples 1 and 2 have composition 0
    assert r.amcd_precision == pytest.approx((1.0 + 0.0 + 0.0) / 3)
    np.testing.assert_array_equal(r.nearest_struct_ref[:2], [0, 1])
    np.testing.assert_allclose(r.min_struct_dist, [0.1, 0.3, np.sqrt(50.0)])
    np.testing.assert_array_equal(r.covered, [True, False, False])
    np.testing.assert_array_equal(r.ref_covered, [True, False])


def test_thresholds_are_inclusive():
    # 0.25 and 4.0 are exact in binary, so the distances equal the cutoffs exactly.
    ref_s, ref_c = np.zeros((1, 1)), np.zeros((1, 1))
    gen_s, gen_c = np.array([[0.25]]), np.array([[4.0]])
    r = coverage_metrics(gen_s, gen_c, ref_s, ref_c, struct_cutoff=0.25, comp_cutoff=4.0)
    assert r.cov_recall == 1.0 and r.cov_precision == 1.0
    r = coverage_metrics(gen_s, gen_c, ref_s, ref_c, struct_cutoff=0.2499, comp_cutoff=4.0)
    assert r.cov_recall == 0.0 and r.cov_precision == 0.0


def test_sample_without_fingerprint_only_counts_in_the_precision_denominator():
    ref_s, ref_c = np.array([[0.0], [1.0]]), np.array([[0.0], [1.0]])
    gen_s = np.array([[0.0], [np.nan], [5.0]])
    gen_c = np.array([[0.0], [np.nan], [5.0]])
    r = coverage_metrics(gen_s, gen_c, ref_s, ref_c, struct_cutoff=0.2, comp_cutoff=4.0)
    assert r.n_generated == 3 and r.n_generated_failed == 1
    assert r.cov_precision == pytest.approx(1 / 3)
    assert r.amsd_precision == pytest.approx((0.0 + 4.0) / 2)  # the NaN row drops out
    assert r.amsd_recall == pytest.approx((0.0 + 1.0) / 2)
    assert r.nearest_struct_ref[1] == -1 and np.isnan(r.min_struct_dist[1])
    assert not r.covered[1]


def test_reference_without_fingerprint_is_left_out():
    ref_s, ref_c = np.array([[0.0], [np.nan]]), np.array([[0.0], [np.nan]])
    r = coverage_metrics(np.zeros((1, 1)), np.zeros((1, 1)), ref_s, ref_c, 0.2, 4.0)
    assert r.cov_recall == 1.0 and r.n_reference_failed == 1
    assert not r.ref_covered[1]


def test_one_sample_must_satisfy_both_thresholds():
    # Sample 0 is structurally identical but compositionally far; sample 1 the opposite.
    ref_s, ref_c = np.zeros((1, 1)), np.zeros((1, 1))
    gen_s, gen_c = np.array([[0.0], [9.0]]), np.array([[9.0], [0.0]])
    joint = coverage_metrics(gen_s, gen_c, ref_s, ref_c, 0.2, 4.0)
    assert joint.cov_recall == 0.0 and joint.cov_precision == 0.0
    # The public reference code thresholds the two minima separately and counts it covered.
    separate = coverage_metrics(gen_s, gen_c, ref_s, ref_c, 0.2, 4.0, same_sample=False)
    assert separate.cov_recall == 1.0 and separate.cov_precision == 0.0
    # both definitions are always reported, whichever one is the headline
    assert joint.cov_recall_separate_minima == 1.0
    assert joint.cov_precision_separate_minima == 0.0
    assert separate.summary()["cov_recall_separate_minima"] == 1.0


def test_separate_minima_never_cover_less_than_one_sample_within_both():
    # One sample within both thresholds of a reference is also within each minimum, so the
    # reference code's COV can only be larger; with a NaN sample it stays in the denominator.
    rng = np.random.default_rng(3)
    gen_s, gen_c = rng.uniform(size=(200, 3)), rng.uniform(size=(200, 2)) * 8
    ref_s, ref_c = rng.uniform(size=(80, 3)), rng.uniform(size=(80, 2)) * 8
    gen_s[5] = np.nan
    r = coverage_metrics(gen_s, gen_c, ref_s, ref_c, 0.15, 1.0)
    assert r.cov_precision < r.cov_precision_separate_minima
    assert r.cov_recall < r.cov_recall_separate_minima
    by_hand = ((np.nan_to_num(r.min_struct_dist, nan=9.0) <= 0.15) & (r.min_comp_dist <= 1.0))
    assert r.cov_precision_separate_minima == pytest.approx(by_hand.sum() / 200)


def test_blockwise_computation_matches_a_single_block(monkeypatch):
    rng = np.random.default_rng(1)
    gen_s, gen_c = _random_fps(rng, 50)
    ref_s, ref_c = gen_s[:20] + 0.01 * rng.normal(size=(20, 61)), gen_c[:20]
    gen_s[7] = np.nan
    whole = coverage_metrics(gen_s, gen_c, ref_s, ref_c, 0.5, 4.0)
    monkeypatch.setattr(coverage_module, "_CHUNK_ROWS", 3)
    blocks = coverage_metrics(gen_s, gen_c, ref_s, ref_c, 0.5, 4.0)
    assert whole.summary() == blocks.summary()
    np.testing.assert_array_equal(whole.covered, blocks.covered)
    np.testing.assert_array_equal(whole.nearest_comp_ref, blocks.nearest_comp_ref)


def test_diversity_is_the_mean_pairwise_distance():
    # A 3-4-5 triangle: distances 5, 4, 3; the NaN row is ignored.
    fps = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 4.0], [np.nan, 1.0]])
    assert diversity(fps) == pytest.approx(4.0)
    assert np.isnan(diversity(fps[:1]))
