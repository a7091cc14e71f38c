"""The dataset registry: the paper's three benchmarks and the 2-3-element MP-20 subset, read
with one code path (issue 17)."""

from __future__ import annotations

import pandas as pd
import pytest

from cdvae_core.data.dataset import CrystalDataset
from cdvae_core.data.registry import DATASETS, get_dataset_info
from cdvae_core.data.splits import load_training_splits, sr_thresholds

from helpers import DATA_DIR, data_file


def test_subset_has_mp_20_settings_and_is_never_called_mp_20():
    sub, full = get_dataset_info("mp_20_biternary"), get_dataset_info("MP-20")
    for field in ("property_column", "max_atoms", "cov_struct_cutoff", "cov_comp_cutoff",
                  "kl_beta", "sr_percentiles"):
        assert getattr(sub, field) == getattr(full, field), field
    assert (sub.max_atoms, sub.cov_struct_cutoff, sub.cov_comp_cutoff, sub.kl_beta) == (
        20, 0.4, 10.0, 0.01)
    assert sub.subset_of == "mp_20" and "subset" in sub.title and sub.title != "MP-20"
    assert all(info.subset_of is None for name, info in DATASETS.items() if name != sub.name)


def test_mp_20_head_sample_reads_with_the_mp_20_entry(tmp_path):
    path = data_file("mp_20_sample", "test_head")
    ds = CrystalDataset.from_csv(path, "mp_20", cache_dir=tmp_path, progress=False)
    assert len(ds) + len(ds.bad_rows) == len(pd.read_csv(path)) == 142
    assert int(ds.num_atoms.max()) <= 20
    assert ds.prop.isfinite().all()  # formation_energy_per_atom


@pytest.mark.slow
def test_subset_reads_as_is_and_trains_under_the_fallback_policy(tmp_path):
    """The subset's files as they are (no train.csv: the seeded hold-out of val.csv); every
    crystal has 2 or 3 elements."""
    val = data_file("mp_20_biternary", "val")
    head = pd.read_csv(val).head(120)
    (tmp_path / "mp_20_biternary").mkdir()
    head.to_csv(tmp_path / "mp_20_biternary" / "val.csv", index=False)
    with pytest.warns(UserWarning, match="train.csv not found"):
        splits = load_training_splits(tmp_path, "mp_20_biternary", cache_dir=tmp_path / "c",
                                      progress=False)
    assert len(splits.train) + len(splits.val) + len(splits.train.bad_rows) == 120
    assert splits.policy.train_file == "val.csv" and splits.policy.holdout_fraction == 0.1
    for i in range(len(splits.train)):
        s, n = int(splits.train.atom_start[i]), int(splits.train.num_atoms[i])
        assert len(set(splits.train.atom_types[s:s + n].tolist())) in (2, 3)


def test_sr_thresholds_come_from_train_csv_when_present():
    values, source = sr_thresholds(DATA_DIR, "perov_5")
    if "train.csv" not in source:
        pytest.skip("Perov-5 train.csv not available")
    # the reference's thresholds are these percentiles of the upstream train split
    assert values == pytest.approx(get_dataset_info("perov_5").sr_percentiles, abs=1e-4)
    values, source = sr_thresholds(DATA_DIR, "mp_20_biternary")
    assert values == get_dataset_info("mp_20").sr_percentiles and "reference" in source
