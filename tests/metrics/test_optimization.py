"""Success rates as the reference scores them (REFERENCE.md, "Sampling and tasks" and
"Evaluation protocol")."""

from __future__ import annotations

import numpy as np
import pytest

from cdvae_core.metrics.optimization import reference_decode_iterations, score_optimization

from conftest import cubic_srtio3


def test_reference_schedule_is_eleven_decodes():
    its = reference_decode_iterations(5000)
    assert its == [0, 555, 1110, 1665, 2220, 2775, 3330, 3885, 4440, 4995, 4999]
    with pytest.raises(ValueError):
        reference_decode_iterations(0)


def test_invalid_decodes_count_as_infinity_and_best_is_the_minimum():
    good = cubic_srtio3()
    overlapping = good.copy()
    overlapping.translate_sites([1], [0.5, 0.5, 0.5 - 0.01])  # Ti onto Sr (0.04 A apart)
    values = {id(good): 0.3}

    def instrument(structures):
        # an instrument that would call the overlapping cell a record: it must never see it
        return np.array([values.get(id(s), -28.7) for s in structures])

    # material 0: decodes good (0.3) and overlapping; material 1: overlapping, failed (None)
    decodes = [[good, overlapping], [overlapping, None]]
    summary, table = score_optimization(decodes, instrument, (0.4392, 0.6120, 0.7365),
                                        ["m0", "m1"], labels=[0, 4999])
    assert summary["success_rates"] == {"SR5": 0.5, "SR10": 0.5, "SR15": 0.5}
    assert summary["valid_decodes"] == 1 and summary["materials_with_a_valid_decode"] == 1
    assert summary["mean_best_property"] == pytest.approx(0.3)
    assert table["property"].isna().sum() == 3
    assert table.loc[table["is_best"], "material_id"].tolist() == ["m0"]
