"""The independent property predictor used by the evaluation (energy statistics, success rates).

A GNN trained on the same training split as the generative model, but a separate network with
its own weights, so generated materials are not scored by the model's own latent head. It reads
a periodic radius graph (no CrystalNN), which is fast and defined for any generated structure.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from pymatgen.core import Structure
from torch import Tensor, nn

from cdvae_core.data.batch import CrystalBatch
from cdvae_core.data.dataset import CrystalDataset
from cdvae_core.data.parsing import BadRowError, check_structure
from cdvae_core.data.registry import get_dataset_info
from cdvae_core.nn.base import MAX_ATOMIC_NUM, decoder_graph, mlp
from cdvae_core.nn.painn import PaiNNConfig, PaiNNTrunk
from cdvae_core.utils import CheckpointError, atomic_torch_save, safe_torch_load

__all__ = ["PredictorConfig", "PropertyPredictor", "train_predictor", "load_predictor",
           "save_predictor"]

FORMAT = "cdvae_core.property_predictor"


@dataclass(frozen=True)
class PredictorConfig:
    """dataset / property_column: what is predicted; trunk: PaiNN sizes (radius graph)."""

    dataset: str = "perov_5"
    property_column: str = "heat_ref"
    hidden: int = 128
    num_layers: int = 3
    cutoff: float = 6.0
    max_neighbors: int = 16


class PropertyPredictor(nn.Module):
    """Property ``[B]`` (physical unit) of crystals, from a PaiNN trunk with a sum-then-mean
    read-out; the target scaler is stored as buffers."""

    def __init__(self, cfg: PredictorConfig, mean: float = 0.0, std: float = 1.0):
        super().__init__()
        self.cfg = cfg
        self.trunk_cfg = PaiNNConfig(hidden=cfg.hidden, num_layers=cfg.num_layers,
                                     cutoff=cfg.cutoff, max_neighbors=cfg.max_neighbors)
        self.embed = nn.Embedding(MAX_ATOMIC_NUM + 1, cfg.hidden)
        self.trunk = PaiNNTrunk(self.trunk_cfg)
        self.head = mlp([cfg.hidden, cfg.hidden, 1])
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def forward(self, batch: CrystalBatch) -> Tensor:
        edge_index, _, vec, _ = decoder_graph(batch.frac_coords, batch.lattice, batch.num_atoms,
                                           batch.batch, self.cfg.cutoff, self.cfg.max_neighbors)
        s, _ = self.trunk(self.embed(batch.atom_types), edge_index, vec)
        per_atom = self.head(s).squeeze(-1)
        out = per_atom.new_zeros(batch.num_graphs).index_add_(0, batch.batch, per_atom)
        return out / batch.num_atoms.to(out) * self.std + self.mean

    @torch.no_grad()
    def predict(self, structures: Sequence[Structure | None], batch_size: int = 256) -> np.ndarray:
        """Predictions for pymatgen structures; NaN for ``None`` or unusable ones."""
        out = np.full(len(structures), np.nan)
        good = []
        for i, s in enumerate(structures):
            if s is None:
                continue
            try:
                check_structure(s)
                good.append(i)
            except BadRowError:
                continue
        if not good:
            return out
        ds = _graphless_dataset([structures[i] for i in good], self.cfg.dataset)
        device = self.mean.device
        preds = []
        self.eval()
        for start in range(0, len(ds), batch_size):
            b = ds.collate(range(start, min(len(ds), start + batch_size))).to(device)
            preds.append(self(b).cpu())
        out[good] = torch.cat(preds).double().numpy()
        return out


def _graphless_dataset(structures: Sequence[Structure], dataset: str) -> CrystalDataset:
    """A dataset of structures as given (no Niggli, no CrystalNN: the predictor does not use
    them, and generated structures need not be reduced to be scored)."""
    from cdvae_core.data.parsing import CrystalRecord

    records = [
        CrystalRecord(
            frac_coords=np.asarray(s.frac_coords, dtype=np.float64) % 1.0,
            atom_types=np.array([site.specie.Z for site in s], dtype=np.int64),
            lengths=np.array(s.lattice.abc, dtype=np.float64),
            angles_deg=np.array(s.lattice.angles, dtype=np.float64),
            edge_index=np.zeros((2, 0), np.int64),
            images=np.zeros((0, 3), np.int64),
        )
        for s in structures
    ]
    info = get_dataset_info(dataset)
    return CrystalDataset.from_records(records, info)


def train_predictor(
    train: CrystalDataset,
    val: CrystalDataset,
    cfg: PredictorConfig | None = None,
    epochs: int = 200,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    patience: int = 30,
    progress: bool = True,
) -> tuple[PropertyPredictor, dict]:
    """Fit on ``train``, keep the epoch with the lowest validation MAE (early stopping)."""
    cfg = cfg or PredictorConfig(dataset=train.info.name,
                                 property_column=train.info.property_column)
    torch.manual_seed(seed)
    known = torch.isfinite(train.prop)
    if not known.any():
        raise ValueError(f"no finite {cfg.property_column} values in the training data")
    model = PropertyPredictor(cfg, float(train.prop[known].mean()), float(train.prop[known].std()))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.6, patience=10,
                                                       min_lr=1e-5)
    gen = torch.Generator().manual_seed(seed)
    train_idx = torch.nonzero(known).flatten()
    best, best_mae, history, since = None, float("inf"), [], 0
    t0 = time.time()
    for epoch in range(epochs):
        model.train()
        perm = train_idx[torch.randperm(len(train_idx), generator=gen)]
        total = 0.0
        for start in range(0, len(perm), batch_size):
            b = train.collate(perm[start : start + batch_size])
            loss = nn.functional.l1_loss((model(b) - model.mean) / model.std,
                                         (b.prop - model.mean) / model.std)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * b.num_graphs
        val_mae = evaluate_mae(model, val)
        sched.step(val_mae)
        history.append({"epoch": epoch, "train_l1_scaled": total / len(perm), "val_mae": val_mae})
        if progress:
            print(f"epoch {epoch}: val MAE {val_mae:.4f} ({time.time() - t0:.0f} s)", flush=True)
        if val_mae < best_mae:
            best_mae, best, since = val_mae, copy.deepcopy(model.state_dict()), 0
        else:
            since += 1
            if since >= patience:
                break
    model.load_state_dict(best)
    return model, {"best_val_mae": best_mae, "epochs_run": len(history), "history": history,
                   "wall_time_s": time.time() - t0}


@torch.no_grad()
def evaluate_mae(model: PropertyPredictor, ds: CrystalDataset, batch_size: int = 512) -> float:
    """Mean absolute error on the crystals of ``ds`` with a known property."""
    model.eval()
    known = torch.nonzero(torch.isfinite(ds.prop)).flatten()
    err, n = 0.0, 0
    for start in range(0, len(known), batch_size):
        b = ds.collate(known[start : start + batch_size])
        err += (model(b) - b.prop).abs().sum().item()
        n += b.num_graphs
    return err / max(n, 1)


def save_predictor(model: PropertyPredictor, path: str | os.PathLike, info: dict | None = None):
    import json

    atomic_torch_save({"format": FORMAT, "config": asdict(model.cfg),
                       "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                       "info": json.loads(json.dumps(info or {}, default=str))}, path)


def load_predictor(path: str | os.PathLike, map_location="cpu") -> PropertyPredictor:
    obj = safe_torch_load(path, map_location)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a cdvae_core property predictor")
    model = PropertyPredictor(PredictorConfig(**obj["config"]))
    model.load_state_dict(obj["state_dict"])
    model.info = obj.get("info", {})
    return model.eval()
