"""Configuration dataclasses of the CDVAE model; a checkpoint stores ``ModelConfig.to_dict()``
so that a checkpoint alone rebuilds its model."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from cdvae_core.data.registry import get_dataset_info

__all__ = ["NoiseConfig", "LossWeights", "ModelConfig"]


@dataclass(frozen=True)
class NoiseConfig:
    """Geometric noise levels (reference: 50 levels, coordinates 10 -> 0.01 Å, types 5 -> 0.01)."""

    num_levels: int = 50
    coord_sigma_begin: float = 10.0
    coord_sigma_end: float = 0.01
    type_sigma_begin: float = 5.0
    type_sigma_end: float = 0.01


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms (reference values; ``kl`` is dataset dependent)."""

    num_atoms: float = 1.0
    lattice: float = 10.0
    coord: float = 10.0
    type: float = 1.0
    composition: float = 1.0
    property: float = 1.0
    kl: float = 0.01


@dataclass(frozen=True)
class ModelConfig:
    """The whole CDVAE model.

    dataset: benchmark name (sets ``max_atoms`` and the property column).
    architecture: ``"fast"`` (PaiNN-style, CPU default) or ``"paper"`` (DimeNet++ / GemNet-T).
    encoder / decoder: overrides of the architecture's own config dataclass fields.
    latent_dim: size of z; hidden_dim: width of the MLP heads on z (1 hidden layer, ReLU).
    predict_property: train the latent property head (needed for latent optimisation).
    teacher_forcing_max_epoch: the decoder sees the true lattice before this epoch, the
        predicted lattice after it.
    """

    dataset: str = "perov_5"
    architecture: str = "fast"
    encoder: dict = field(default_factory=dict)
    decoder: dict = field(default_factory=dict)
    latent_dim: int = 256
    hidden_dim: int = 256
    fc_num_layers: int = 1
    max_atoms: int = 20
    predict_property: bool = True
    property_column: str = "heat_ref"
    teacher_forcing_max_epoch: int = 1500
    noise: NoiseConfig = NoiseConfig()
    loss: LossWeights = LossWeights()

    @classmethod
    def for_dataset(cls, dataset: str, **overrides) -> ModelConfig:
        """Reference configuration of ``dataset`` (max atoms, property, KL weight)."""
        info = get_dataset_info(dataset)
        base = cls(
            dataset=info.name,
            max_atoms=info.max_atoms,
            property_column=info.property_column,
            loss=LossWeights(kl=info.kl_beta),
        )
        return base.replace(**overrides)

    def replace(self, **changes) -> ModelConfig:
        data = self.to_dict()
        for k, v in changes.items():
            if k not in data:
                raise ValueError(f"ModelConfig has no field {k!r}")
            data[k] = asdict(v) if hasattr(v, "__dataclass_fields__") else v
        return ModelConfig.from_dict(data)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown ModelConfig field(s): {sorted(unknown)}")
        data = dict(data)
        if isinstance(data.get("noise"), dict):
            data["noise"] = NoiseConfig(**data["noise"])
        if isinstance(data.get("loss"), dict):
            data["loss"] = LossWeights(**data["loss"])
        return cls(**data)
