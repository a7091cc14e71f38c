"""Benchmark datasets: registry, CSV parsing, CrystalNN graphs, on-disk cache, splits, download."""

from cdvae_core.data.registry import DATASETS, DatasetInfo, get_dataset_info

__all__ = ["DATASETS", "DatasetInfo", "get_dataset_info"]
