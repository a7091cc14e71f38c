"""A sample beside its nearest test crystals: the evaluation's fingerprint distances to a few
candidates (the drill-down of ``per_sample.csv``).

Candidates are the test crystals that some search named as nearest: the evaluation's
``nearest_struct_ref_id`` / ``nearest_comp_ref_id`` (over the whole test set, from its
fingerprints) when the sample comes from an evaluation run, and the cheap element-fraction
search of :func:`cdvae_core.explore.nearest_reference`. The distances are those of the
coverage metrics (:mod:`cdvae_core.metrics.fingerprints`): Euclidean between site-averaged
CrystalNN fingerprints (structure) and between Magpie fingerprints standardised with the
shipped scaler (composition). Fingerprinting a handful of crystals takes about a second;
the whole test set is the evaluation's job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from cdvae_core.metrics.fingerprints import compute_fingerprints

__all__ = ["EVALUATION_COLUMNS", "candidate_ids", "fingerprint_distances"]

# per_sample.csv columns naming the nearest test crystal by each fingerprint, and the reason shown
EVALUATION_COLUMNS = {"nearest_struct_ref_id": "nearest by structure (evaluation)",
                      "nearest_comp_ref_id": "nearest by composition (evaluation)"}


def candidate_ids(row: Mapping, composition_nearest: str | None,
                  known: Sequence[str]) -> dict[str, list[str]]:
    """Test material ids to compare a sample with, each with why it is a candidate.

    Args:
        row: the sample's gallery row (``per_sample.csv``'s columns where it has them).
        composition_nearest: the id the element-fraction search found (None: no search).
        known: the test set's material ids (ids of another test set are left out).
    """
    known = set(map(str, known))
    out: dict[str, list[str]] = {}
    named = [(row.get(col), why) for col, why in EVALUATION_COLUMNS.items()]
    named.append((composition_nearest, "nearest by element fractions (app)"))
    for mid, why in named:
        if mid is None or (isinstance(mid, float) and np.isnan(mid)) or str(mid) not in known:
            continue
        out.setdefault(str(mid), []).append(why)
    return out


def fingerprint_distances(sample: Structure, references: Sequence[Structure]) -> pd.DataFrame:
    """``[R]`` rows of ``struct_dist`` and ``comp_dist`` (Euclidean, the coverage metrics'
    fingerprints) from ``sample`` to each reference; NaN where a fingerprint fails; the columns
    ``nearest_struct`` / ``nearest_comp`` mark the smallest of each."""
    fps = compute_fingerprints([sample, *references], n_workers=1, progress=False)
    table = pd.DataFrame({
        "struct_dist": np.linalg.norm(fps.struct[1:] - fps.struct[0], axis=1),  # [R]
        "comp_dist": np.linalg.norm(fps.comp[1:] - fps.comp[0], axis=1),  # [R]
    })
    for col, dist in (("nearest_struct", "struct_dist"), ("nearest_comp", "comp_dist")):
        d = table[dist].to_numpy()
        table[col] = np.isfinite(d) & (d == np.nanmin(d)) if np.isfinite(d).any() else False
    return table
