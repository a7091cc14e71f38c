"""Independent property models that score generated crystals (never the generative model's own
head): the paper's own DimeNet++ property models, :mod:`cdvae_core.predictor.paper_models`."""

from cdvae_core.predictor.paper_models import (
    PaperPropertyModel,
    PropertyModelError,
    fetch_property_models,
)

__all__ = ["PaperPropertyModel", "PropertyModelError", "fetch_property_models"]
