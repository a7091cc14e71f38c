"""Registry of the three benchmark datasets of the paper (Perov-5, Carbon-24, MP-20).

The numbers are the benchmark's own: property column, largest cell, the coverage thresholds of
the paper's Appendix G and the percentiles of the training property distribution that define the
success rates SR5 / SR10 / SR15.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["DatasetInfo", "DATASETS", "get_dataset_info", "UPSTREAM_URL"]

#: Upstream location of the benchmark CSV files (``{name}`` and ``{split}`` are filled in).
UPSTREAM_URL = "https://raw.githubusercontent.com/txie-93/cdvae/main/data/{name}/{split}.csv"


@dataclass(frozen=True)
class DatasetInfo:
    """What the package knows about one benchmark dataset.

    Attributes:
        name: folder name of the dataset (``perov_5``, ``carbon_24``, ``mp_20``).
        property_column: CSV column used as the property (optimisation, energy statistics).
        max_atoms: largest number of atoms in a cell; larger rows are rejected.
        cov_struct_cutoff: COV threshold on the structure fingerprint distance.
        cov_comp_cutoff: COV threshold on the (normalised Magpie) composition distance.
        sr_percentiles: 5th / 10th / 15th percentiles of the training property distribution.
        kl_beta: weight of the KL term in the reference configuration.
        extra_columns: other property columns present in the CSV files.
        num_train / num_val / num_test: sizes of the upstream splits (0 where not checked here).
        subset_of: for a partial copy of a benchmark, the benchmark it was cut from; its
            numbers are never that benchmark's and are always labelled with :attr:`title`.
        subset_rule: what the subset keeps, in words.
    """

    name: str
    property_column: str
    max_atoms: int
    cov_struct_cutoff: float
    cov_comp_cutoff: float
    sr_percentiles: tuple[float, float, float]
    kl_beta: float
    extra_columns: tuple[str, ...] = ()
    num_train: int = 0
    num_val: int = 0
    num_test: int = 0
    subset_of: str | None = None
    subset_rule: str = ""

    @property
    def title(self) -> str:
        return {
            "perov_5": "Perov-5",
            "carbon_24": "Carbon-24",
            "mp_20": "MP-20",
            "mp_20_biternary": "MP-20 2-3-element subset",
        }.get(self.name, self.name)


DATASETS: dict[str, DatasetInfo] = {
    "perov_5": DatasetInfo(
        name="perov_5",
        property_column="heat_ref",
        max_atoms=20,
        cov_struct_cutoff=0.2,
        cov_comp_cutoff=4.0,
        sr_percentiles=(0.4392, 0.6120, 0.7365),
        kl_beta=0.01,
        extra_columns=("formula", "heat_all", "dir_gap", "ind_gap"),
        num_train=11356,
        num_val=3787,
        num_test=3785,
    ),
    "carbon_24": DatasetInfo(
        name="carbon_24",
        property_column="energy_per_atom",
        max_atoms=24,
        cov_struct_cutoff=0.2,
        cov_comp_cutoff=4.0,
        sr_percentiles=(-154.5271, -154.4587, -154.4421),
        kl_beta=0.03,
        num_train=6091,
        num_val=2032,
        num_test=2030,
    ),
    "mp_20": DatasetInfo(
        name="mp_20",
        property_column="formation_energy_per_atom",
        max_atoms=20,
        cov_struct_cutoff=0.4,
        cov_comp_cutoff=10.0,
        sr_percentiles=(-3.1756, -2.8220, -2.5281),
        kl_beta=0.01,
        extra_columns=(
            "band_gap",
            "e_above_hull",
            "pretty_formula",
            "elements",
            "spacegroup.number",
        ),
        num_train=27139,
        num_val=9046,
        num_test=9046,
    ),
}

# The rows of MP-20's val.csv and test.csv whose material has exactly 2 or 3 elements (the part of
# MP-20 these machines have): MP-20's own settings, its SR thresholds MP-20's training percentiles
# (no train.csv of the subset exists). Never MP-20's numbers.
DATASETS["mp_20_biternary"] = replace(
    DATASETS["mp_20"], name="mp_20_biternary", num_train=0, num_val=7140, num_test=7118,
    subset_of="mp_20",
    subset_rule="the 2- and 3-element materials of MP-20's val.csv and test.csv",
)


def get_dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name``; a clear error for an unknown name."""
    key = name.lower().replace("-", "_")
    if key not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    return DATASETS[key]
