"""Which crystals a model trains, validates and is tested on.

Upstream ships ``train.csv``, ``val.csv`` and ``test.csv`` per dataset. Where ``train.csv`` is
absent (as on machines that only have the validation and test files), training says so loudly and
follows the documented fallback policy :data:`FALLBACK_POLICY`: train on ``val.csv`` minus a
fixed, seeded hold-out fraction, validate on that hold-out. ``test.csv`` is never used for
training, tuning or checkpoint selection; it is loaded only by evaluation.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from cdvae_core.data.dataset import CrystalDataset
from cdvae_core.data.registry import DatasetInfo, get_dataset_info

__all__ = ["SplitPolicy", "TrainingSplits", "load_training_splits", "load_split", "dataset_dir"]

FALLBACK_POLICY = (
    "train.csv absent: training on val.csv minus a seeded {pct:.0f}% hold-out "
    "(torch.Generator seed {seed}), validating on that hold-out; test.csv untouched"
)


class MissingTrainSplitWarning(UserWarning):
    """``train.csv`` is absent and the fallback split policy is in use."""


@dataclass(frozen=True)
class SplitPolicy:
    """How the training and validation sets were formed; saved in every checkpoint."""

    dataset: str
    train_file: str
    val_file: str
    holdout_fraction: float
    seed: int
    description: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainingSplits:
    train: CrystalDataset
    val: CrystalDataset
    policy: SplitPolicy


def dataset_dir(data_dir: str | os.PathLike, info: DatasetInfo) -> Path:
    """``data_dir/<name>`` if it exists, else ``data_dir`` itself (a folder of one dataset)."""
    root = Path(data_dir)
    return root / info.name if (root / info.name).is_dir() else root


def load_split(
    data_dir: str | os.PathLike, dataset: str, split: str, **kwargs
) -> CrystalDataset:
    """One upstream split (``train``, ``val`` or ``test``) of ``dataset`` from ``data_dir``."""
    info = get_dataset_info(dataset)
    return CrystalDataset.from_csv(dataset_dir(data_dir, info) / f"{split}.csv", info, **kwargs)


def load_training_splits(
    data_dir: str | os.PathLike,
    dataset: str,
    holdout_fraction: float = 0.1,
    seed: int = 0,
    **kwargs,
) -> TrainingSplits:
    """Training and validation sets of ``dataset`` under the documented policy.

    With ``train.csv`` present: upstream train / val. Without it: the fallback policy, announced
    with a :class:`MissingTrainSplitWarning` and a line on stderr.
    """
    info = get_dataset_info(dataset)
    folder = dataset_dir(data_dir, info)
    train_csv, val_csv = folder / "train.csv", folder / "val.csv"
    if train_csv.is_file():
        policy = SplitPolicy(info.name, "train.csv", "val.csv", 0.0, seed, "upstream train/val")
        train = CrystalDataset.from_csv(train_csv, info, **kwargs)
        val = CrystalDataset.from_csv(val_csv, info, **kwargs)
        return TrainingSplits(train, val, policy)
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    desc = FALLBACK_POLICY.format(pct=100 * holdout_fraction, seed=seed)
    msg = f"{info.name}: {train_csv} not found. {desc}."
    warnings.warn(msg, MissingTrainSplitWarning, stacklevel=2)
    print(f"WARNING: {msg}", file=sys.stderr)
    full = CrystalDataset.from_csv(val_csv, info, **kwargs)
    train_idx, hold = holdout_indices(len(full), holdout_fraction, seed)
    policy = SplitPolicy(info.name, "val.csv", "val.csv", holdout_fraction, seed, desc)
    return TrainingSplits(
        full.subset(train_idx, source=f"{val_csv} (train part)"),
        full.subset(hold, source=f"{val_csv} (hold-out)"),
        policy,
    )


def holdout_indices(n: int, holdout_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train, hold-out)`` row indices (sorted) of the fallback policy's seeded split of ``n``
    rows: the hold-out a model trained under that policy never saw."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_hold = max(1, round(holdout_fraction * n))
    return perm[n_hold:].sort().values, perm[:n_hold].sort().values


def sr_thresholds(data_dir: str | os.PathLike | None, dataset: str) -> tuple[tuple[float, ...], str]:
    """The success-rate thresholds of ``dataset``: the 5th / 10th / 15th percentiles of the
    property over ``train.csv`` when the data directory has it (for the upstream split they equal
    the reference's), else the reference's values from the registry. Returns ``(values,
    source)``, the source in words for the run's summary."""
    import numpy as np
    import pandas as pd

    info = get_dataset_info(dataset)
    train = dataset_dir(data_dir, info) / "train.csv" if data_dir else None
    if train is not None and train.is_file():
        values = pd.read_csv(train, usecols=[info.property_column])[info.property_column]
        values = pd.to_numeric(values, errors="coerce").dropna().to_numpy()
        if len(values):
            p = np.percentile(values, [5, 10, 15])
            return tuple(float(x) for x in p), f"5/10/15th percentiles of {train} ({len(values)} rows)"
    return info.sr_percentiles, ("the reference's thresholds (percentiles of the upstream "
                                 f"{'MP-20' if info.subset_of else info.title} train split)")
