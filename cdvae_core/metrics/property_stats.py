"""Property statistics of generated materials and success rates of property optimisation.

* Wasserstein-1 (earth mover's) distances between generated and reference distributions of
  density (g/cm^3), number of distinct elements, and a predicted property (paper Table 3).
* SR5 / SR10 / SR15: fraction of optimised materials whose best predicted property is at or
  below the 5th / 10th / 15th percentile of the training property distribution (paper Table 4).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pymatgen.core import Structure
from scipy.stats import wasserstein_distance

__all__ = [
    "density_g_cm3",
    "num_elements",
    "wasserstein",
    "property_wasserstein",
    "success_rates",
]


def density_g_cm3(structure: Structure | None) -> float:
    """Mass density in g/cm^3 (NaN for ``None`` or a cell of zero volume)."""
    if structure is None:
        return float("nan")
    try:
        return float(structure.density)
    except (ZeroDivisionError, ValueError):
        return float("nan")


def num_elements(structure: Structure | None) -> int:
    """Number of distinct elements (0 for ``None``)."""
    return 0 if structure is None else len(structure.composition.elements)


def wasserstein(
    generated: Sequence[float] | np.ndarray, reference: Sequence[float] | np.ndarray
) -> float:
    """Wasserstein-1 distance between two 1-D samples, ignoring NaN (NaN if either is empty)."""
    a = np.asarray(generated, dtype=float)
    b = np.asarray(reference, dtype=float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    return float(wasserstein_distance(a, b))


def property_wasserstein(
    generated: Sequence[Structure | None],
    reference: Sequence[Structure | None],
    generated_property: np.ndarray | None = None,
    reference_property: np.ndarray | None = None,
) -> dict[str, float]:
    """Wasserstein-1 distances of density, number of elements and, if given, a property.

    Args:
        generated: the generated sample (the paper: 1,000 valid samples).
        reference: the reference set (test split).
        generated_property: ``[len(generated)]`` property values (e.g. an independent
            predictor's output); with ``reference_property`` adds ``"wdist_property"``.
        reference_property: ``[len(reference)]`` property values of the reference set.

    Returns:
        ``{"wdist_density": ..., "wdist_num_elems": ..., ["wdist_property": ...]}``.
    """
    out = {
        "wdist_density": wasserstein(
            [density_g_cm3(s) for s in generated], [density_g_cm3(s) for s in reference]
        ),
        "wdist_num_elems": wasserstein(
            [num_elements(s) for s in generated], [num_elements(s) for s in reference]
        ),
    }
    if generated_property is not None and reference_property is not None:
        out["wdist_property"] = wasserstein(generated_property, reference_property)
    return out


def success_rates(
    best_property: Sequence[float] | np.ndarray,
    percentiles: Sequence[float],
    names: Sequence[str] = ("SR5", "SR10", "SR15"),
) -> dict[str, float]:
    """Fraction of optimised materials whose best property is <= each percentile.

    Args:
        best_property: ``[M]`` best predicted property per optimised material (lower is
            better). NaN (no valid decode) counts as a failure but stays in the denominator.
        percentiles: the dataset's 5th / 10th / 15th training percentiles
            (``DatasetInfo.sr_percentiles``).
        names: keys of the returned dict, one per percentile.

    Returns:
        ``{"SR5": ..., "SR10": ..., "SR15": ...}``, fractions in [0, 1].
    """
    values = np.asarray(best_property, dtype=float)
    if len(values) == 0:
        raise ValueError("no optimised materials")
    if len(names) != len(percentiles):
        raise ValueError(f"{len(names)} names for {len(percentiles)} percentiles")
    # NaN <= p is False, so a failed optimisation is simply not a success.
    return {name: float(np.mean(values <= p)) for name, p in zip(names, percentiles, strict=True)}
