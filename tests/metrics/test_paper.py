"""The papers reported results and the comparison with them."""

from __future__ import annotations

import math

import pytest

from cdvae_core.diffusion.noise import geometric_sigmas
from cdvae_core.metrics.paper import PAPER_METRICS, PAPER_RESULTS, compare_with_paper

SMALL = {"hidden": 16, "num_layers": 1, "num_rbf": 8}
SIGMAS = geometric_sigmas(10.0, 0.01, 50)


# ---------------------------------------------------------------------------- paper numbers
def test_paper_results_cover_every_metric():
    keys = {key for _, key, _, _ in PAPER_METRICS}
    for dataset, values in PAPER_RESULTS.items():
        assert set(values) == keys, dataset
    assert PAPER_RESULTS["perov_5"]["match_rate"] == 97.52
    assert PAPER_RESULTS["carbon_24"]["comp_validity"] is None


def test_compare_with_paper_converts_units_and_keeps_gaps():
    summaries = {
        "reconstruction": {"match_rate": 0.5, "rmse": 0.02},
        "generation": {"struct_validity": 1.0, "comp_validity": 0.9, "cov_recall": 0.99,
                       "cov_precision": 0.98, "wdist_density": 0.2, "wdist_num_elems": 0.1},
        "optimization": {"success_rates": {"SR5": 0.3, "SR10": 0.4, "SR15": 0.5}},
    }
    table = compare_with_paper(summaries, "perov_5")
    assert len(table) == len(PAPER_METRICS)
    row = table.set_index("metric")
    assert row.loc["Match rate (%)", "ours"] == pytest.approx(50.0)
    assert row.loc["Match rate (%)", "paper"] == 97.52
    assert math.isnan(row.loc["EMD property", "ours"])  # not computed without a predictor
    assert row.loc["SR10", "ours"] == 0.4
    carbon = compare_with_paper({"generation": summaries["generation"]}, "carbon-24")
    assert set(carbon["task"]) == {"generation"}
    assert math.isnan(carbon.set_index("metric").loc["Validity, composition (%)", "paper"])
