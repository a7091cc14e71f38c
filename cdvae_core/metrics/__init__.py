"""The paper's metrics: validity, coverage, diversity, property statistics, reconstruction.

* :mod:`~cdvae_core.metrics.validity`: structure (0.5 Å, 0.1 Å^3) and composition (SMACT) checks.
* :mod:`~cdvae_core.metrics.fingerprints`: CrystalNN and Magpie fingerprints, parallel and cached.
* :mod:`~cdvae_core.metrics.coverage`: COV-R / COV-P, AMSD, AMCD, diversity.
* :mod:`~cdvae_core.metrics.matching`: StructureMatcher match rate and RMSE.
* :mod:`~cdvae_core.metrics.property_stats`: Wasserstein distances, success rates.
* :mod:`~cdvae_core.metrics.evaluate`: whole evaluations with per-sample tables.
"""

from cdvae_core.metrics.coverage import CoverageResult, coverage_metrics, diversity
from cdvae_core.metrics.evaluate import (
    describe_structures,
    evaluate_generation,
    evaluate_reconstruction,
    save_results,
)
from cdvae_core.metrics.fingerprints import (
    Fingerprints,
    cached_fingerprints,
    composition_fingerprint,
    compute_fingerprints,
    structure_fingerprint,
    structures_digest,
)
from cdvae_core.metrics.matching import MatchResult, match_structures, rms_distance
from cdvae_core.metrics.property_stats import (
    density_g_cm3,
    num_elements,
    property_wasserstein,
    success_rates,
    wasserstein,
)
from cdvae_core.metrics.validity import composition_validity, structure_validity

__all__ = [
    "CoverageResult",
    "Fingerprints",
    "MatchResult",
    "cached_fingerprints",
    "composition_fingerprint",
    "composition_validity",
    "compute_fingerprints",
    "coverage_metrics",
    "density_g_cm3",
    "describe_structures",
    "diversity",
    "evaluate_generation",
    "evaluate_reconstruction",
    "match_structures",
    "num_elements",
    "property_wasserstein",
    "rms_distance",
    "save_results",
    "structure_fingerprint",
    "structure_validity",
    "structures_digest",
    "success_rates",
    "wasserstein",
]
