"""End-to-end evaluations, result files, and ground-truth acceptance checks on the test splits."""

from __future__ import annotations

import itertools
import json
import math
import warnings
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import smact
from pymatgen.core import Lattice, Structure
from smact.screening import pauling_test

from cdvae_core.metrics.evaluate import evaluate_generation, evaluate_reconstruction, save_results
from cdvae_core.metrics.validity import composition_validity, structure_validity

from helpers import data_file


@pytest.fixture
def too_close() -> Structure:
    """A carbon dimer 0.3 Å long: structure-invalid, composition-valid (one element)."""
    return Structure(Lattice.cubic(6.0), ["C", "C"], [[0.5, 0.5, 0.5], [0.55, 0.5, 0.5]])


def test_generation_summary_and_table(tmp_path, nacl, srtio3, diamond, too_close):
    reference = [nacl, srtio3, diamond]
    generated = [srtio3.copy(), None, nacl.copy(), too_close, diamond.copy()]
    summary, table = evaluate_generation(
        generated,
        reference,
        "perov_5",
        n_diversity=10,
        reference_ids=["r0", "r1", "r2"],
        cache_dir=tmp_path,
        progress=False,
    )
    assert summary["n_samples"] == 5 and summary["n_failed_decodes"] == 1
    assert summary["struct_validity"] == pytest.approx(3 / 5)
    assert summary["comp_validity"] == pytest.approx(4 / 5)
    assert summary["validity"] == pytest.approx(3 / 5)
    assert summary["cov_recall"] == 1.0  # every reference crystal was generated exactly
    assert summary["cov_precision"] == pytest.approx(table["covered"].mean())
    assert summary["cov_precision"] >= 3 / 5
    assert summary["n_stats_sample"] == 3  # fewer valid samples than n_diversity
    assert "stats_sample_note" in summary and "wdist_property_note" in summary
    assert "wdist_property" not in summary
    assert summary["wdist_density"] == pytest.approx(0.0, abs=1e-12)

    assert list(table["valid"]) == [True, False, True, False, True]
    assert "0.300 Å" in table.loc[3, "struct_reason"]
    assert table.loc[1, "struct_reason"] == "no structure (decoding failed)"
    assert list(table.loc[[0, 2, 4], "nearest_struct_ref_id"]) == ["r1", "r0", "r2"]
    assert list(table.loc[[0, 2, 4], "spacegroup"]) == [221, 225, 227]
    assert table.loc[0, "formula"] == "SrTiO3" and table.loc[0, "n_atoms"] == 5
    assert table.loc[1, "nearest_struct_ref"] == -1 and not table.loc[1, "has_fingerprint"]
    assert (
        table["in_stats_sample"].sum() == 3 and table.loc[table["in_stats_sample"], "valid"].all()
    )


def test_property_statistic_uses_the_given_predictor(tmp_path, nacl, srtio3, diamond):
    def atoms_per_cell(structures: list[Structure]) -> np.ndarray:
        return np.array([len(s) for s in structures], dtype=float)

    summary, table = evaluate_generation(
        [srtio3, srtio3],
        [nacl, srtio3, diamond],
        "perov_5",
        property_fn=atoms_per_cell,
        cache_dir=tmp_path,
        progress=False,
    )
    # Generated {5, 5} against reference {8, 5, 8}: two thirds of the mass moves by 3.
    assert summary["wdist_property"] == pytest.approx(2.0)
    assert "wdist_property_note" not in summary
    np.testing.assert_array_equal(table["predicted_property"], [5.0, 5.0])


def test_stats_sample_is_seeded(tmp_path, nacl, srtio3, diamond):
    generated = [nacl, srtio3, diamond] * 3
    runs = [
        evaluate_generation(
            generated,
            [nacl],
            "carbon_24",
            n_diversity=4,
            seed=seed,
            cache_dir=tmp_path,
            progress=False,
        )[1]["in_stats_sample"]
        for seed in (7, 7, 8)
    ]
    assert runs[0].sum() == 4
    assert runs[0].equals(runs[1])
    assert not runs[0].equals(runs[2])


def test_reconstruction(nacl, srtio3, diamond):
    moved = srtio3.copy()
    moved.translate_sites(list(range(5)), [0.1, 0.2, 0.3])  # same crystal, shifted origin
    summary, table = evaluate_reconstruction(
        [moved, nacl, None], [srtio3, diamond, nacl], true_ids=["a", "b", "c"], progress=False
    )
    assert summary["match_rate"] == pytest.approx(1 / 3)
    assert summary["rmse"] == pytest.approx(0.0, abs=1e-6)
    assert summary["n_valid"] == 2 and summary["n_matched"] == 1
    assert list(table["matched"]) == [True, False, False]
    assert list(table["true_formula"]) == ["SrTiO3", "C", "NaCl"]


def test_save_results_writes_strict_json_and_csv(tmp_path, nacl, srtio3):
    summary, table = evaluate_reconstruction([None], [nacl], progress=False)
    assert math.isnan(summary["rmse"])
    summary_path, table_path = save_results(summary, table, tmp_path / "out")
    loaded = json.loads(summary_path.read_text())  # strict JSON: NaN written as null
    assert loaded["rmse"] is None and loaded["match_rate"] == 0.0
    frame = pd.read_csv(table_path)
    assert len(frame) == 1 and not frame.loc[0, "matched"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "per_sample.csv",
        "summary.json",
    ]


# --- ground truth acceptance: the test splits evaluated against themselves -------------------


def _load_split(name: str) -> tuple[list[Structure], list[str]]:
    frame = pd.read_csv(data_file(name, "test"))  # skips, with the reason, if absent
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        structures = [Structure.from_str(cif, fmt="cif") for cif in frame["cif"]]
    return structures, [str(m) for m in frame["material_id"]]


def _plain_smact_check(structure: Structure) -> bool:
    """The protocol written out directly with SMACT, without the package's code or caching."""
    counts = Counter(site.specie.symbol for site in structure)
    symbols = list(counts)
    if len(symbols) == 1 or all(s in smact.metals for s in symbols):
        return True
    divisor = math.gcd(*counts.values())
    stoichs = [(counts[s] // divisor,) for s in symbols]
    elements = [smact.Element(s) for s in symbols]
    enegs = [e.pauling_eneg for e in elements]
    for states in itertools.product(*[e.oxidation_states for e in elements]):
        if smact.neutral_ratios(states, stoichs=stoichs, threshold=max(c for (c,) in stoichs)):
            if pauling_test(states, enegs):
                return True
    return False


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "expected_comp", "subset"), [("perov_5", 0.983, 400), ("carbon_24", 1.0, 150)]
)
def test_split_evaluated_against_itself(tmp_path, name, expected_comp, subset):
    structures, ids = _load_split(name)
    # Validity on the whole split.
    assert all(structure_validity(s)[0] for s in structures)
    ours = np.mean([composition_validity(s.composition)[0] for s in structures])
    plain = np.mean([_plain_smact_check(s) for s in structures])
    assert abs(ours - plain) <= 0.002
    assert ours == pytest.approx(expected_comp, abs=0.002)

    # Coverage on a seeded subset (fingerprints of the full splits take minutes on 2 cores).
    chosen = np.random.default_rng(0).choice(len(structures), size=subset, replace=False)
    sample = [structures[i] for i in chosen]
    summary, table = evaluate_generation(
        sample,
        sample,
        name,
        reference_ids=[ids[i] for i in chosen],
        cache_dir=tmp_path,
        progress=False,
    )
    assert summary["struct_validity"] == 1.0
    assert summary["n_generated_without_fingerprint"] == 0
    assert summary["cov_recall"] == 1.0 and summary["cov_precision"] == 1.0
    assert summary["amsd_precision"] == pytest.approx(0.0, abs=1e-9)
