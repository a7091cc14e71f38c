"""Wasserstein distances of property distributions and success rates SR5 / SR10 / SR15."""

from __future__ import annotations

import numpy as np
import pytest

from cdvae_core.data.registry import get_dataset_info
from cdvae_core.metrics.property_stats import (
    density_g_cm3,
    num_elements,
    property_wasserstein,
    success_rates,
    wasserstein,
)

AVOGADRO = 6.02214076e23


def test_density_of_rocksalt(nacl):
    # Four formula units of NaCl (22.990 + 35.453 g/mol) in a (5.64e-8 cm)^3 cell: 2.16 g/cm^3.
    expected = 4 * (22.990 + 35.453) / AVOGADRO / (5.64e-8) ** 3
    assert density_g_cm3(nacl) == pytest.approx(expected, rel=1e-3)
    assert np.isnan(density_g_cm3(None))


def test_number_of_elements(srtio3, diamond):
    assert num_elements(srtio3) == 3 and num_elements(diamond) == 1 and num_elements(None) == 0


def test_wasserstein_of_known_distributions():
    a = np.array([0.0, 1.0, 2.0])
    assert wasserstein(a, a) == 0.0
    assert wasserstein(a, a + 0.5) == pytest.approx(0.5)  # a shift moves all mass by 0.5
    # Half of the mass moves from 0 to 1: W1 = 0.5. NaN values are ignored.
    assert wasserstein([0.0, 1.0, np.nan], [1.0, 1.0]) == pytest.approx(0.5)
    assert np.isnan(wasserstein([], [1.0]))


def test_property_wasserstein_keys(nacl, srtio3, diamond):
    same = property_wasserstein([nacl, srtio3], [nacl, srtio3])
    assert same == {"wdist_density": 0.0, "wdist_num_elems": 0.0}
    # Number of elements: {1} against {2, 3} -> W1 = mean(|1-2|, |1-3|) = 1.5.
    out = property_wasserstein([diamond], [nacl, srtio3], np.array([1.0]), np.array([1.0, 3.0]))
    assert out["wdist_num_elems"] == pytest.approx(1.5)
    assert out["wdist_property"] == pytest.approx(1.0)


def test_success_rates_from_known_values():
    p5, p10, p15 = get_dataset_info("perov_5").sr_percentiles  # 0.4392, 0.6120, 0.7365
    best = np.array([0.1, 0.5, p15, 0.8, np.nan])  # exactly at p15 counts; NaN is a failure
    rates = success_rates(best, (p5, p10, p15))
    assert rates == {
        "SR5": pytest.approx(1 / 5),
        "SR10": pytest.approx(2 / 5),
        "SR15": pytest.approx(3 / 5),
    }


def test_success_rates_need_inputs():
    with pytest.raises(ValueError):
        success_rates([], (0.0, 1.0, 2.0))
