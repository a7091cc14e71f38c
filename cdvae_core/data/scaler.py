"""Standard scalers for the lattice and property targets, fitted on the training split and saved
inside every checkpoint (plain tensors, so ``weights_only=True`` loading works)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from cdvae_core.geometry import scaled_lengths

if TYPE_CHECKING:
    from cdvae_core.data.dataset import CrystalDataset

__all__ = ["StandardScaler", "fit_scalers", "lattice_targets"]


class StandardScaler:
    """``(x - mean) / std`` per column; a column with zero spread keeps std 1."""

    def __init__(self, mean: Tensor, std: Tensor):
        self.mean = mean.detach().clone().float()
        self.std = std.detach().clone().float()

    @classmethod
    def fit(cls, x: Tensor) -> StandardScaler:
        x = x.double()
        finite = torch.isfinite(x).all(dim=-1) if x.dim() > 1 else torch.isfinite(x)
        x = x[finite]
        if x.shape[0] == 0:
            raise ValueError("cannot fit a scaler on no finite values")
        mean = x.mean(0)
        std = x.std(0, unbiased=False) if x.shape[0] > 1 else torch.ones_like(mean)
        std = torch.where(std > 1e-12, std, torch.ones_like(std))
        return cls(mean, std)

    def transform(self, x: Tensor) -> Tensor:
        return (x - self.mean.to(x)) / self.std.to(x)

    def inverse(self, x: Tensor) -> Tensor:
        return x * self.std.to(x) + self.mean.to(x)

    def state_dict(self) -> dict[str, Tensor]:
        return {"mean": self.mean, "std": self.std}

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor]) -> StandardScaler:
        return cls(state["mean"], state["std"])

    def __repr__(self) -> str:
        return f"StandardScaler(mean={self.mean.tolist()}, std={self.std.tolist()})"


def lattice_targets(lengths: Tensor, angles_deg: Tensor, num_atoms: Tensor) -> Tensor:
    """The 6 lattice targets ``[B, 6]``: lengths / N^(1/3) (Å) and angles (degrees)."""
    return torch.cat([scaled_lengths(lengths, num_atoms), angles_deg], dim=-1)


def fit_scalers(train: CrystalDataset) -> dict[str, StandardScaler]:
    """Scalers of the lattice targets and of the property, fitted on ``train`` only."""
    lattice = StandardScaler.fit(lattice_targets(train.lengths, train.angles_deg, train.num_atoms))
    prop = train.prop
    if torch.isfinite(prop).any():
        prop_scaler = StandardScaler.fit(prop[:, None])
    else:
        prop_scaler = StandardScaler(torch.zeros(1), torch.ones(1))
    return {"lattice": lattice, "prop": prop_scaler}
