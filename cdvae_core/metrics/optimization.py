"""Success rates of property optimisation, scored as the reference evaluation scores them.

Every decode of every optimised material is kept. The property instrument (the paper's own
property model, or another independent predictor) predicts each *valid* decode (structure and
composition validity); an invalid decode counts as +infinity, since an instrument's prediction
for overlapping atoms means nothing (the paper's Perov-5 model says -28.7 eV for some). A
material's best is the minimum over its decodes; SRk is the fraction of materials whose best is
at or below the k-th percentile of the training property distribution.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from cdvae_core.metrics.property_stats import success_rates
from cdvae_core.metrics.validity import composition_validity, structure_validity

__all__ = ["reference_decode_iterations", "score_optimization"]


def reference_decode_iterations(steps: int = 5000, num_decodes: int = 11) -> list[int]:
    """Iterations (0-based) after whose optimiser step the reference decodes: ``i % interval
    == 0`` or the last one, with ``interval = steps // (num_decodes - 2)`` (the reference's
    ``5000 // (10 - 1) = 555``); for 5000 steps 0, 555, 1110, ..., 4995 and 4999: 11 decodes.
    (Fewer when ``interval`` does not divide evenly, more for very short runs.)"""
    if steps < 1 or num_decodes < 3:
        raise ValueError(f"need steps >= 1 and num_decodes >= 3 (got {steps}, {num_decodes})")
    interval = max(1, steps // (num_decodes - 2))
    return [i for i in range(steps) if i % interval == 0 or i == steps - 1]


def score_optimization(
    decodes: Sequence[Sequence[Structure | None]],
    property_fn: Callable[[list[Structure]], np.ndarray],
    percentiles: Sequence[float],
    material_ids: Sequence[str],
    labels: Sequence[int] | None = None,
) -> tuple[dict, pd.DataFrame]:
    """SR5/10/15 over ``decodes[k][m]`` (decode k of material m).

    Args:
        decodes: ``K`` lists of ``M`` structures (``None``: a failed decode, invalid).
        property_fn: the instrument: ``structures -> [len]`` predictions.
        percentiles: the dataset's 5th / 10th / 15th training percentiles.
        material_ids: ``M`` names of the starting materials.
        labels: ``K`` names of the decodes (the optimiser iteration), for the table.

    Returns:
        ``(summary, table)``: the success rates, counts and mean best property; one table row
        per decode (material, decode label, validity, predicted property or NaN, best flag).
    """
    K = len(decodes)
    M = len(material_ids)
    if K == 0 or any(len(d) != M for d in decodes):
        raise ValueError(f"need K >= 1 decodes of {M} materials each")
    labels = list(labels) if labels is not None else list(range(K))
    rows = []
    valid_structures, valid_at = [], []
    for k in range(K):
        for m in range(M):
            s = decodes[k][m]
            s_ok, _ = structure_validity(s)
            c_ok = s is not None and composition_validity(s.composition)[0]
            rows.append({"material_id": material_ids[m], "decode": labels[k],
                         "formula": s.composition.reduced_formula if s is not None else "",
                         "struct_valid": bool(s_ok), "comp_valid": bool(c_ok)})
            if s_ok and c_ok:
                valid_structures.append(s)
                valid_at.append(k * M + m)
    prop = np.full(K * M, np.nan)
    if valid_structures:
        prop[valid_at] = np.asarray(property_fn(valid_structures), dtype=float)
    # invalid decodes (and an instrument's NaN) count as +infinity
    scored = np.where(np.isfinite(prop), prop, np.inf).reshape(K, M)
    best = scored.min(axis=0)  # [M]
    best_k = scored.argmin(axis=0)
    table = pd.DataFrame(rows)
    table["property"] = prop
    table["is_best"] = [bool(np.isfinite(best[m]) and best_k[m] == k)
                        for k in range(K) for m in range(M)]
    table.index.name = "decode_row"
    finite = best[np.isfinite(best)]
    summary = {
        "num_materials": M,
        "decodes_per_material": K,
        "valid_decodes": int(len(valid_at)),
        "materials_with_a_valid_decode": int(np.isfinite(best).sum()),
        "mean_best_property": float(finite.mean()) if len(finite) else None,
        "success_rates": success_rates(np.where(np.isfinite(best), best, np.nan), percentiles),
    }
    return summary, table
