"""Encoders and score-network decoders, selected by architecture name.

``"fast"``: the triplet-free equivariant network of :mod:`cdvae_core.nn.painn` (CPU default).
``"paper"``: the reference architecture, DimeNet++ encoder and GemNet-T decoder, adapted to
periodic multigraphs (:mod:`cdvae_core.nn.dimenet`, :mod:`cdvae_core.nn.gemnet`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from torch import nn

from cdvae_core.nn.base import MAX_ATOMIC_NUM
from cdvae_core.nn.painn import PaiNNConfig, PaiNNDecoder, PaiNNEncoder

__all__ = [
    "MAX_ATOMIC_NUM",
    "ARCHITECTURES",
    "build_encoder",
    "build_decoder",
    "PaiNNConfig",
    "PaiNNEncoder",
    "PaiNNDecoder",
]


def _fast_encoder(overrides: dict, out_dim: int) -> nn.Module:
    return PaiNNEncoder(dataclasses.replace(PaiNNConfig(), **overrides), out_dim)


def _fast_decoder(overrides: dict, latent_dim: int) -> nn.Module:
    return PaiNNDecoder(dataclasses.replace(PaiNNConfig(), **overrides), latent_dim)


def _paper_encoder(overrides: dict, out_dim: int) -> nn.Module:
    from cdvae_core.nn.dimenet import DimeNetPPConfig, PeriodicDimeNetPP

    return PeriodicDimeNetPP(dataclasses.replace(DimeNetPPConfig(), **overrides), out_dim)


def _paper_decoder(overrides: dict, latent_dim: int) -> nn.Module:
    from cdvae_core.nn.gemnet import GemNetTConfig, GemNetTDecoder

    return GemNetTDecoder(dataclasses.replace(GemNetTConfig(), **overrides), latent_dim)


#: name -> (encoder factory, decoder factory)
ARCHITECTURES: dict[str, tuple[Callable[[dict, int], nn.Module], Callable[[dict, int], nn.Module]]] = {
    "fast": (_fast_encoder, _fast_decoder),
    "paper": (_paper_encoder, _paper_decoder),
}


def _lookup(architecture: str):
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"unknown architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}"
        )
    return ARCHITECTURES[architecture]


def build_encoder(architecture: str, overrides: dict | None, out_dim: int) -> nn.Module:
    """Encoder of ``architecture`` with config fields ``overrides``; output ``[B, out_dim]``."""
    return _lookup(architecture)[0](dict(overrides or {}), out_dim)


def build_decoder(architecture: str, overrides: dict | None, latent_dim: int) -> nn.Module:
    """Score-network decoder of ``architecture`` with config fields ``overrides``."""
    return _lookup(architecture)[1](dict(overrides or {}), latent_dim)
