"""A 2D projection of latent space (PCA) in which new points land in the same frame."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from torch import Tensor

if TYPE_CHECKING:
    from sklearn.decomposition import PCA

__all__ = ["Projection", "fit_projection"]


@dataclass
class Projection:
    """A fitted 2D projection of latent space (PCA): new points land in the same frame."""

    pca: PCA

    def transform(self, z: np.ndarray | Tensor) -> np.ndarray:
        """``[M, latent] -> [M, 2]``."""
        z = z.detach().cpu().numpy() if isinstance(z, Tensor) else np.asarray(z)
        return self.pca.transform(z.reshape(-1, self.pca.n_features_in_).astype(np.float64))

    @property
    def explained(self) -> tuple[float, float]:
        """Fraction of the variance along each of the two axes."""
        r = self.pca.explained_variance_ratio_
        return float(r[0]), float(r[1])


def fit_projection(z: np.ndarray | Tensor, seed: int = 0) -> Projection:
    """Fit a 2-component PCA on ``z [M, latent]`` (M >= 2)."""
    z = z.detach().cpu().numpy() if isinstance(z, Tensor) else np.asarray(z)
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"need at least 2 latent vectors [M, latent] to fit, got {z.shape}")
    # imported on use: scikit-learn takes most of a second to import, on every app launch
    from sklearn.decomposition import PCA

    return Projection(PCA(n_components=2, random_state=seed).fit(z.astype(np.float64)))
