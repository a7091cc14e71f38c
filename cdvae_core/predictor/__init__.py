"""Property networks independent of the generative model, which score what it generates."""

from cdvae_core.predictor.gnn import (
    PredictorConfig,
    PropertyPredictor,
    evaluate_mae,
    load_predictor,
    save_predictor,
    train_predictor,
)

__all__ = ["PredictorConfig", "PropertyPredictor", "evaluate_mae", "load_predictor",
           "save_predictor", "train_predictor"]
