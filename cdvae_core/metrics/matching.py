"""Reconstruction match rate and RMSE (paper Section 5.1, REFERENCE.md "Evaluation protocol").

Each prediction is compared with its ground truth by pymatgen's
``StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)``. The match rate is taken over *all*
pairs, an invalid prediction counting as unmatched; the RMSE is the mean over matched pairs of
``get_rms_dist(...)[0]``, the matcher's RMS displacement normalised by ``(V / N)^(1/3)``.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

from cdvae_core.metrics.fingerprints import parallel_map
from cdvae_core.metrics.validity import composition_validity, structure_validity

__all__ = ["MatchResult", "match_structures", "rms_distance", "MATCHER_SETTINGS"]

#: Tolerances of the benchmark (site, angle in degrees, lattice length).
MATCHER_SETTINGS = {"stol": 0.5, "angle_tol": 10.0, "ltol": 0.3}


@dataclass(frozen=True)
class MatchResult:
    """Match rate, RMSE and per-pair outcomes of a reconstruction.

    Attributes:
        match_rate: matched pairs / all pairs, in [0, 1].
        rmse: mean normalised RMS distance over matched pairs (NaN when none matched).
        valid: ``[N]`` bool, the prediction was valid and therefore compared.
        matched: ``[N]`` bool.
        rms_dist: ``[N]`` normalised RMS distance, NaN where not matched.
    """

    match_rate: float
    rmse: float
    valid: np.ndarray
    matched: np.ndarray
    rms_dist: np.ndarray


@functools.cache
def _matcher() -> StructureMatcher:
    return StructureMatcher(**MATCHER_SETTINGS)


def rms_distance(pred: Structure, true: Structure) -> float | None:
    """Normalised RMS distance of ``pred`` to ``true``, or ``None`` if they do not match."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = _matcher().get_rms_dist(pred, true)
    return None if result is None else float(result[0])


def _match_one(pair: tuple[Structure | None, Structure | None]) -> float:
    pred, true = pair
    if pred is None or true is None:
        return np.nan
    try:
        rms = rms_distance(pred, true)
    except Exception:
        # The matcher can fail on degenerate lattices; the pair then counts as unmatched.
        return np.nan
    return np.nan if rms is None else rms


def _default_validity(pred: Structure | None) -> bool:
    if pred is None:
        return False
    return structure_validity(pred)[0] and composition_validity(pred.composition)[0]


def match_structures(
    preds: Sequence[Structure | None],
    trues: Sequence[Structure | None],
    valid: Sequence[bool] | np.ndarray | None = None,
    n_workers: int | None = None,
    progress: bool = True,
) -> MatchResult:
    """Compare each prediction with its ground truth.

    Args:
        preds: ``N`` predicted structures; ``None`` for a failed decode.
        trues: ``N`` ground-truth structures.
        valid: ``[N]`` validity of the predictions; default structure and composition validity
            (as in the reference evaluation). Invalid predictions are not compared.
        n_workers: worker processes (default: all available cores).
        progress: show a progress bar.

    Returns:
        A :class:`MatchResult`.
    """
    if len(preds) != len(trues):
        raise ValueError(f"{len(preds)} predictions for {len(trues)} ground-truth structures")
    if valid is None:
        valid = [_default_validity(p) for p in preds]
    valid = np.asarray(valid, dtype=bool)
    todo = np.flatnonzero(valid)
    rms = np.full(len(preds), np.nan)
    results = parallel_map(
        _match_one,
        [(preds[i], trues[i]) for i in todo],
        n_workers,
        desc="structure matching",
        progress=progress,
    )
    rms[todo] = results
    matched = np.isfinite(rms)
    n = len(preds)
    return MatchResult(
        match_rate=float(matched.sum() / n) if n else float("nan"),
        rmse=float(rms[matched].mean()) if matched.any() else float("nan"),
        valid=valid,
        matched=matched,
        rms_dist=rms,
    )
