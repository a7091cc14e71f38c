"""The CDVAE model: periodic encoder, latent heads, score-network decoder and the training losses
of Xie et al., ICLR 2022 (https://arxiv.org/abs/2110.06197), section 4 and Appendix B."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cdvae_core.data.batch import CrystalBatch
from cdvae_core.data.scaler import StandardScaler, lattice_targets
from cdvae_core.diffusion.noise import geometric_sigmas, perturb_coords, perturb_types
from cdvae_core.geometry import (
    lattice_params_to_matrix,
    min_image_cart_displacement,
    sanitize_lattice_params,
    unscaled_lengths,
)
from cdvae_core.model.config import ModelConfig
from cdvae_core.nn import MAX_ATOMIC_NUM, build_decoder, build_encoder

__all__ = ["CDVAE", "scatter_mean"]


def scatter_mean(src: Tensor, index: Tensor, size: int) -> Tensor:
    """Mean of ``src [N, ...]`` per group ``index [N]`` -> ``[size, ...]``."""
    out = src.new_zeros((size, *src.shape[1:])).index_add_(0, index, src)
    count = torch.bincount(index, minlength=size).clamp(min=1).to(src)
    return out / count.view(-1, *([1] * (src.dim() - 1)))


def _head(latent: int, hidden: int, out: int, layers: int) -> nn.Sequential:
    dims = [latent] + [hidden] * layers + [out]
    mods: list[nn.Module] = []
    for i in range(len(dims) - 1):
        mods.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            mods.append(nn.ReLU())
    return nn.Sequential(*mods)


class CDVAE(nn.Module):
    """Crystal Diffusion VAE.

    Args:
        cfg: the model configuration.
        scalers: ``{"lattice": StandardScaler (6 columns), "prop": StandardScaler (1 column)}``
            fitted on the training split; stored as buffers, so they travel in the state dict.
    """

    def __init__(self, cfg: ModelConfig, scalers: dict[str, StandardScaler] | None = None):
        super().__init__()
        self.cfg = cfg
        h, lat = cfg.hidden_dim, cfg.latent_dim
        self.encoder = build_encoder(cfg.architecture, cfg.encoder, h)
        self.fc_mu = nn.Linear(h, lat)
        self.fc_var = nn.Linear(h, lat)
        self.fc_num_atoms = _head(lat, h, cfg.max_atoms + 1, cfg.fc_num_layers)
        self.fc_lattice = _head(lat, h, 6, cfg.fc_num_layers)
        self.fc_composition = _head(lat, h, MAX_ATOMIC_NUM, cfg.fc_num_layers)
        self.fc_property = _head(lat, h, 1, cfg.fc_num_layers) if cfg.predict_property else None
        self.decoder = build_decoder(cfg.architecture, cfg.decoder, lat)
        n = cfg.noise
        self.register_buffer(
            "sigmas", geometric_sigmas(n.coord_sigma_begin, n.coord_sigma_end, n.num_levels)
        )
        self.register_buffer(
            "type_sigmas", geometric_sigmas(n.type_sigma_begin, n.type_sigma_end, n.num_levels)
        )
        scalers = scalers or {}
        lat_s = scalers.get("lattice", StandardScaler(torch.zeros(6), torch.ones(6)))
        prop_s = scalers.get("prop", StandardScaler(torch.zeros(1), torch.ones(1)))
        self.register_buffer("lattice_mean", lat_s.mean.clone())
        self.register_buffer("lattice_std", lat_s.std.clone())
        self.register_buffer("prop_mean", prop_s.mean.clone())
        self.register_buffer("prop_std", prop_s.std.clone())

    # ------------------------------------------------------------------ latent part
    def encode(self, batch: CrystalBatch, generator: torch.Generator | None = None):
        """``(mu, log_var, z)``, each ``[B, latent_dim]``; z by the reparameterisation trick."""
        h = self.encoder(batch)
        # the clamp only bites in a diverging first few steps (exp(0.5 log_var) would overflow
        # to inf and poison the batch with NaN); trained models sit far inside it
        mu, log_var = self.fc_mu(h), self.fc_var(h).clamp(-30.0, 20.0)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu, log_var, mu + eps * torch.exp(0.5 * log_var)

    def predict_num_atoms(self, z: Tensor) -> Tensor:
        """Logits ``[B, max_atoms + 1]`` over the number of atoms."""
        return self.fc_num_atoms(z)

    def predict_lattice(self, z: Tensor, num_atoms: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(standardised output [B, 6], lengths [B, 3] Å, angles_deg [B, 3])``."""
        raw = self.fc_lattice(z)
        scaled = raw * self.lattice_std + self.lattice_mean
        lengths = unscaled_lengths(scaled[:, :3], num_atoms)
        return raw, lengths, scaled[:, 3:]

    def predict_composition(self, z: Tensor, num_atoms: Tensor) -> Tensor:
        """Per-atom composition logits ``[N, 100]`` (z repeated over each crystal's atoms)."""
        return self.fc_composition(z.repeat_interleave(num_atoms, dim=0))

    def predict_property(self, z: Tensor) -> Tensor:
        """Property in its physical unit ``[B]`` from the latent property head."""
        if self.fc_property is None:
            raise RuntimeError("this model was trained without a property head")
        return (self.fc_property(z) * self.prop_std + self.prop_mean).squeeze(-1)

    def decode_scores(self, z, frac_coords, atom_types, num_atoms, lattice, batch, sigma):
        """Coordinate score ``[N, 3]`` (Å^-1, decoder output / sigma) and type logits."""
        out, logits = self.decoder(z, frac_coords, atom_types, num_atoms, lattice, batch)
        return out / sigma.reshape(-1, 1) if torch.is_tensor(sigma) else out / sigma, logits

    # ------------------------------------------------------------------ training
    def forward(
        self,
        batch: CrystalBatch,
        teacher_forcing: bool = True,
        generator: torch.Generator | None = None,
        noise_levels: tuple[int, int] | None = None,
    ) -> dict[str, Tensor]:
        """All loss terms, their weighted sum (``"loss"``) and accuracies for one batch.

        ``noise_levels = (coordinate level, type level)`` fixes the noise of every crystal
        (for measurements at one noise scale); by default each crystal draws its own levels.
        """
        w = self.cfg.loss
        B, device = batch.num_graphs, batch.frac_coords.device
        mu, log_var, z = self.encode(batch, generator)

        # aggregated properties
        num_atoms_logits = self.predict_num_atoms(z)
        lattice_raw, pred_lengths, pred_angles = self.predict_lattice(z, batch.num_atoms)
        comp_logits = self.predict_composition(z, batch.num_atoms)

        # one noise level per crystal, for coordinates and for types
        idx = torch.randint(0, self.sigmas.shape[0], (B,), generator=generator, device=device)
        type_idx = torch.randint(0, self.sigmas.shape[0], (B,), generator=generator, device=device)
        if noise_levels is not None:
            idx, type_idx = torch.full_like(idx, noise_levels[0]), torch.full_like(idx, noise_levels[1])
        sigma_atom = self.sigmas[idx].repeat_interleave(batch.num_atoms)
        type_sigma_atom = self.type_sigmas[type_idx].repeat_interleave(batch.num_atoms)

        if teacher_forcing:
            lattice = batch.lattice
        else:
            # a prediction may not describe a cell at all (early in training, or on an odd
            # crystal): make it invertible rather than stop the run
            lattice = lattice_params_to_matrix(*sanitize_lattice_params(pred_lengths, pred_angles))
        comp_probs = F.softmax(comp_logits.detach(), dim=-1)
        noisy_types = perturb_types(batch.atom_types, comp_probs, type_sigma_atom, generator)
        noisy_frac = perturb_coords(batch.frac_coords, lattice, batch.batch, sigma_atom, generator)

        pred_out, type_logits = self.decoder(
            z, noisy_frac, noisy_types, batch.num_atoms, lattice, batch.batch
        )

        # coordinate loss: minimum-image displacement (true - noisy) / sigma^2 as target
        target = min_image_cart_displacement(
            noisy_frac, batch.frac_coords, lattice, batch.batch
        ) / sigma_atom[:, None] ** 2
        pred_score = pred_out / sigma_atom[:, None]
        coord_atom = 0.5 * (pred_score - target).pow(2).sum(-1) * sigma_atom**2
        coord_loss = scatter_mean(coord_atom, batch.batch, B).mean()

        type_atom = F.cross_entropy(type_logits, batch.atom_types - 1, reduction="none")
        type_loss = scatter_mean(type_atom / type_sigma_atom, batch.batch, B).mean()

        num_atoms_loss = F.cross_entropy(num_atoms_logits, batch.num_atoms)
        lat_target = (
            lattice_targets(batch.lengths, batch.angles_deg, batch.num_atoms) - self.lattice_mean
        ) / self.lattice_std
        lattice_loss = F.mse_loss(lattice_raw, lat_target)
        comp_atom = F.cross_entropy(comp_logits, batch.atom_types - 1, reduction="none")
        composition_loss = scatter_mean(comp_atom, batch.batch, B).mean()
        kl_loss = torch.mean(-0.5 * torch.sum(1 + log_var - mu**2 - log_var.exp(), dim=1))

        losses = {
            "num_atoms_loss": num_atoms_loss,
            "lattice_loss": lattice_loss,
            "coord_loss": coord_loss,
            "type_loss": type_loss,
            "composition_loss": composition_loss,
            "kl_loss": kl_loss,
        }
        total = (
            w.num_atoms * num_atoms_loss
            + w.lattice * lattice_loss
            + w.coord * coord_loss
            + w.type * type_loss
            + w.composition * composition_loss
            + w.kl * kl_loss
        )
        if self.fc_property is not None:
            prop = batch.prop
            known = torch.isfinite(prop)
            if known.any():
                target_p = (prop[known] - self.prop_mean) / self.prop_std
                prop_loss = F.mse_loss(self.fc_property(z[known]).squeeze(-1), target_p)
            else:
                prop_loss = z.new_zeros(())
            losses["property_loss"] = prop_loss
            total = total + w.property * prop_loss
        losses["loss"] = total
        with torch.no_grad():
            losses["num_atoms_acc"] = (num_atoms_logits.argmax(-1) == batch.num_atoms).float().mean()
            losses["type_acc"] = (type_logits.argmax(-1) + 1 == batch.atom_types).float().mean()
            losses["lengths_mae"] = (pred_lengths - batch.lengths).abs().mean()
            losses["angles_mae"] = (pred_angles - batch.angles_deg).abs().mean()
        return losses

    def num_parameters(self, part: str | None = None) -> int:
        module = self if part is None else getattr(self, part)
        return sum(p.numel() for p in module.parameters())

    def extra_repr(self) -> str:
        return f"architecture={self.cfg.architecture!r}, dataset={self.cfg.dataset!r}"

