"""Looking at a trained model: latent readout and projection, trajectories and viewer payloads,
material helpers (pure functions, no Streamlit; the app and the notebooks call them). The
notebooks' figures are :mod:`cdvae_core.explore.tutorial` (plotly, imported on its own)."""

from cdvae_core.explore.latent import (
    LatentReadout,
    encode_in_chunks,
    interpolate_latents,
    model_device,
    read_latent,
)
from cdvae_core.explore.materials import (
    chemical_family,
    composition_vectors,
    dataset_table,
    nearest_reference,
    reduced_formula,
    structure_family,
)
from cdvae_core.explore.projection import Projection, fit_projection
from cdvae_core.explore.trajectory import (
    frame_atom_table,
    frame_structure,
    frame_structures,
    trajectory_to_extxyz,
    viewer_frame,
)

__all__ = [
    "LatentReadout",
    "Projection",
    "composition_vectors",
    "dataset_table",
    "encode_in_chunks",
    "fit_projection",
    "frame_atom_table",
    "frame_structure",
    "frame_structures",
    "interpolate_latents",
    "model_device",
    "nearest_reference",
    "read_latent",
    "reduced_formula",
    "structure_family",
    "chemical_family",
    "trajectory_to_extxyz",
    "viewer_frame",
]
