"""A 2D projection of latent space (PCA) in which new points land in the same frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import Tensor

__all__ = ["Projection", "fit_projection"]


def _as_array(z: np.ndarray | Tensor) -> np.ndarray:
    return z.detach().cpu().numpy() if isinstance(z, Tensor) else np.asarray(z)


@dataclass(frozen=True)
class Projection:
    """A fitted 2D projection of latent space (PCA): new points land in the same frame."""

    mean: np.ndarray  # [latent]
    components: np.ndarray  # [2, latent], orthonormal rows
    explained_variance_ratio: np.ndarray  # [2]

    def transform(self, z: np.ndarray | Tensor) -> np.ndarray:
        """``[M, latent] -> [M, 2]`` (a single vector gives ``[1, 2]``)."""
        z = _as_array(z).reshape(-1, self.mean.shape[0]).astype(np.float64)
        return (z - self.mean) @ self.components.T

    @property
    def explained(self) -> tuple[float, float]:
        """Fraction of the variance along each of the two axes."""
        r = self.explained_variance_ratio
        return float(r[0]), float(r[1])


def fit_projection(z: np.ndarray | Tensor, seed: int = 0) -> Projection:
    """Fit a 2-component PCA on ``z [M, latent]`` (M >= 2). ``seed`` is kept for callers; the
    fit is exact and deterministic.

    Written with numpy rather than scikit-learn's ``PCA``: importing scikit-learn costs more
    than a second on every app launch, on the path to the first latent map, and a 2-component
    PCA is one eigendecomposition of the covariance. Signs follow scikit-learn's convention
    (the largest loading of each component is positive), so the frame matches its ``PCA``; a
    test checks it.
    """
    del seed
    z = _as_array(z)
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"need at least 2 latent vectors [M, latent] to fit, got {z.shape}")
    z = z.astype(np.float64)
    mean = z.mean(axis=0)
    centred = z - mean
    # eigenvectors of the [latent, latent] covariance: for thousands of crystals and a latent
    # of 256 this is several times faster than an SVD of the data, in float64 as accurate here
    cov = centred.T @ centred / (z.shape[0] - 1)
    eigval, eigvec = np.linalg.eigh(cov)
    order = np.argsort(eigval)[::-1]
    variance = np.clip(eigval[order], 0.0, None)
    vt = eigvec[:, order].T
    total = variance.sum()
    k = min(2, vt.shape[0], z.shape[0] - 1)
    components = np.zeros((2, z.shape[1]))
    components[:k] = vt[:k]
    ratio = np.zeros(2)
    ratio[:k] = variance[:k] / total if total > 0 else 0.0
    # sign convention: the largest absolute loading of each component is positive
    rows = np.arange(2)
    signs = np.sign(components[rows, np.abs(components).argmax(axis=1)])
    signs[signs == 0] = 1.0
    return Projection(mean, components * signs[:, None], ratio)
