"""Property networks independent of the generative model (never its own latent head), which
score what it generates: the paper's own DimeNet++ property models
(:mod:`cdvae_core.predictor.paper_models`, the evaluation's default instrument) and our own
GNN predictor (:mod:`cdvae_core.predictor.gnn`)."""

from cdvae_core.predictor.gnn import (
    PredictorConfig,
    PropertyPredictor,
    evaluate_mae,
    load_predictor,
    save_predictor,
    train_predictor,
)
from cdvae_core.predictor.paper_models import (
    PaperPropertyModel,
    PropertyModelError,
    fetch_property_models,
)

__all__ = ["PaperPropertyModel", "PredictorConfig", "PropertyModelError", "PropertyPredictor",
           "evaluate_mae", "fetch_property_models", "load_predictor", "save_predictor",
           "train_predictor"]
