"""A batch of crystals as flat tensors (the torch-geometric convention: a ``batch`` index per
atom) with its encoder graph."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

from cdvae_core.geometry import lattice_params_to_matrix

__all__ = ["CrystalBatch"]


@dataclass
class CrystalBatch:
    """``B`` crystals with ``N`` atoms and ``E`` encoder edges in total.

    Attributes:
        frac_coords: ``[N, 3]`` fractional coordinates.
        atom_types: ``[N]`` atomic numbers (1..100).
        num_atoms: ``[B]`` atoms per crystal.
        batch: ``[N]`` crystal index of each atom.
        lengths: ``[B, 3]`` lattice lengths (Å).
        angles_deg: ``[B, 3]`` lattice angles (degrees).
        edge_index: ``[2, E]`` encoder graph (row 0 neighbour, row 1 centre), batch-global.
        images: ``[E, 3]`` integer image offsets of the neighbours.
        prop: ``[B]`` raw (unscaled) property, NaN where unknown.
        index: ``[B]`` position of each crystal in its dataset.
        lattice_matrix: optional ``[B, 3, 3]`` lattice in a chosen orientation; when absent the
            lattice is built from the six parameters in pymatgen's canonical orientation.
    """

    frac_coords: Tensor
    atom_types: Tensor
    num_atoms: Tensor
    batch: Tensor
    lengths: Tensor
    angles_deg: Tensor
    edge_index: Tensor
    images: Tensor
    prop: Tensor
    index: Tensor
    lattice_matrix: Tensor | None = None

    @property
    def num_graphs(self) -> int:
        return int(self.num_atoms.shape[0])

    @property
    def lattice(self) -> Tensor:
        """``[B, 3, 3]`` lattice matrices (rows are vectors, Å)."""
        if self.lattice_matrix is not None:
            return self.lattice_matrix
        return lattice_params_to_matrix(self.lengths, self.angles_deg)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> CrystalBatch:
        """Copy on ``device``; floating tensors cast to ``dtype`` when given."""
        out = {}
        for f in fields(self):
            t = getattr(self, f.name)
            if t is None:
                out[f.name] = None
                continue
            if dtype is not None and t.is_floating_point():
                t = t.to(dtype)
            out[f.name] = t.to(device)
        return CrystalBatch(**out)

    def replace(self, **changes: Tensor) -> CrystalBatch:
        return replace(self, **changes)

    def __len__(self) -> int:
        return self.num_graphs
