"""The small tables, figures and 3D views of the notebooks, and the toy system of the tutorial:
one known crystal driven home by the library's annealed Langevin sampler with the exact score of
:mod:`cdvae_core.diffusion.toy` (:func:`run_toy_langevin`).

Figures are plotly ``Figure`` objects; 3D views are
:class:`~cdvae_core.explore.notebook_views.NotebookView` objects drawn by the app's own scene
renderer (:mod:`cdvae_core.explore.scene`), with the local 3Dmol.js embedded once per notebook,
never loaded from a CDN. Everything here is a pure function
of its inputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from pymatgen.core import Structure
from torch import Tensor

from cdvae_core.data.dataset import CrystalDataset
from cdvae_core.diffusion.langevin import LangevinConfig, LangevinResult, ScoreFn, annealed_langevin
from cdvae_core.diffusion.noise import perturb_coords
from cdvae_core.diffusion.toy import exact_score_fn, periodic_gaussian_score
from cdvae_core.explore.latent import read_latent
from cdvae_core.explore.notebook_views import NotebookView
from cdvae_core.explore.trajectory import frame_structures
from cdvae_core.geometry import lattice_params_to_matrix, min_image_cart_displacement
from cdvae_core.metrics.matching import rms_distance
from cdvae_core.metrics.property_stats import density_g_cm3, num_elements
from cdvae_core.model.cdvae import CDVAE
from cdvae_core.model.decode import DecodeResult
from cdvae_core.model.optimize import OptimizationResult
from cdvae_core.nn import MAX_ATOMIC_NUM

__all__ = [
    "score_profile",
    "toy_score_fn",
    "run_toy_langevin",
    "site_errors",
    "noisy_copies",
    "toy_trajectory_table",
    "reconstruction_trajectory_table",
    "score_error_by_level",
    "path_readout",
    "property_samples",
    "optimization_table",
    "best_decodes",
    "noise_schedule_figure",
    "score_profile_figure",
    "trajectory_figure",
    "score_error_figure",
    "optimization_figure",
    "structures_view",
]


# ---------------------------------------------------------------------------- the toy system
def score_profile(cell_length: float, sigma: float, site: float = 0.8, num: int = 401) -> pd.DataFrame:
    """Coordinate scores along one axis of a cubic cell of side ``cell_length`` (Å) with one
    site at fractional position ``site``, for a noisy atom at ``x`` in ``[0, cell_length)``.

    Columns: ``x`` (Å), ``exact`` (the score of the blurred, periodic density), ``min_image``
    (minimum-image displacement to the site over sigma^2, CDVAE's target) and ``naive`` (the
    plain difference ``site - x`` over sigma^2, which ignores periodicity), all in Å^-1.
    """
    x = torch.linspace(0.0, 1.0, num + 1, dtype=torch.float64)[:-1]  # [num]
    frac = torch.stack([x, torch.full_like(x, 0.5), torch.full_like(x, 0.5)], dim=-1)
    sites = torch.tensor([[site, 0.5, 0.5]], dtype=torch.float64).expand_as(frac)
    lattice = (torch.eye(3, dtype=torch.float64) * cell_length)[None]
    batch = torch.zeros(num, dtype=torch.long)
    exact = periodic_gaussian_score(frac, sites, lattice, batch, sigma)[:, 0]
    min_image = min_image_cart_displacement(frac, sites, lattice, batch)[:, 0] / sigma**2
    naive = (site - x) * cell_length / sigma**2
    return pd.DataFrame({"x": (x * cell_length).numpy(), "exact": exact.numpy(),
                         "min_image": min_image.numpy(), "naive": naive.numpy()})


def _structure_tensors(structure: Structure) -> tuple[Tensor, Tensor, Tensor]:
    frac = torch.tensor(np.mod(structure.frac_coords, 1.0), dtype=torch.float64)  # [N, 3]
    types = torch.tensor([site.specie.Z for site in structure], dtype=torch.long)  # [N]
    lattice = torch.tensor(structure.lattice.matrix, dtype=torch.float64)[None]  # [1, 3, 3]
    return frac, types, lattice


def toy_score_fn(structure: Structure, sigmas: Tensor) -> ScoreFn:
    """:func:`~cdvae_core.diffusion.toy.exact_score_fn` of ``structure``: the exact score of the
    crystal blurred at ``sigmas[level]``, and type logits on its true elements."""
    site_frac, types, lattice = _structure_tensors(structure)
    return exact_score_fn(site_frac, types, lattice, sigmas, MAX_ATOMIC_NUM)


def run_toy_langevin(
    structure: Structure, sigmas: Tensor, cfg: LangevinConfig = LangevinConfig(), seed: int = 0
) -> LangevinResult:
    """Annealed Langevin dynamics (the library's sampler) from uniformly random positions,
    driven by the exact score of :func:`toy_score_fn`; returns the sampler's result."""
    gen = torch.Generator().manual_seed(seed)
    site_frac, types, lattice = _structure_tensors(structure)
    start = torch.rand(site_frac.shape, generator=gen, dtype=torch.float64)
    batch = torch.zeros(len(structure), dtype=torch.long)
    return annealed_langevin(toy_score_fn(structure, sigmas), start, types, lattice, batch,
                             sigmas, cfg, gen)


def site_errors(frac_coords: Tensor, structure: Structure) -> Tensor:
    """Distance ``[N]`` (Å) from each atom to its own site of ``structure`` (minimum image)."""
    site_frac, _, lattice = _structure_tensors(structure)
    batch = torch.zeros(len(structure), dtype=torch.long)
    d = min_image_cart_displacement(frac_coords.to(site_frac), site_frac, lattice, batch)
    return d.norm(dim=-1)


def noisy_copies(structure: Structure, sigmas: Sequence[float], seed: int = 0) -> list[Structure]:
    """``structure`` with its atoms moved by Gaussian noise of each width in ``sigmas`` (Å)
    and wrapped into the cell, as the training corrupts crystals (one copy per sigma)."""
    gen = torch.Generator().manual_seed(seed)
    frac, _, lattice = _structure_tensors(structure)
    batch = torch.zeros(len(structure), dtype=torch.long)
    out = []
    for sigma in sigmas:
        noisy = perturb_coords(frac, lattice, batch, torch.full((len(structure),), float(sigma),
                                                                 dtype=frac.dtype), gen)
        out.append(Structure(structure.lattice, structure.species, noisy.numpy()))
    return out


def toy_trajectory_table(result: LangevinResult, structure: Structure) -> pd.DataFrame:
    """One row per saved frame: ``step``, ``level``, ``sigma`` (Å), ``rms_error`` and
    ``max_error`` (Å, atoms to their own sites) and ``mean_score`` (Å^-1)."""
    rows = []
    for f in result.frames:
        err = site_errors(f.frac_coords, structure)
        rows.append({"step": f.step, "level": f.level, "sigma": f.sigma,
                     "rms_error": float(err.pow(2).mean().sqrt()), "max_error": float(err.max()),
                     "mean_score": float(f.score_norm.mean())})
    return pd.DataFrame(rows)


def reconstruction_trajectory_table(
    result: DecodeResult, true_structure: Structure, crystal: int = 0
) -> pd.DataFrame:
    """One row per saved frame of crystal ``crystal`` of a decoding: ``step``, ``level``,
    ``sigma`` (Å), ``to_final`` (RMS distance in Å of the atoms to where they end, minimum
    image: how much is still moving), ``rms_dist`` (StructureMatcher's normalised RMS distance
    to ``true_structure``, NaN where they do not match), ``formula`` and ``mean_score`` (Å^-1)."""
    counts = result.num_atoms.tolist()
    start = sum(counts[:crystal])
    sl = slice(start, start + counts[crystal])
    lattice = lattice_params_to_matrix(result.lengths[crystal : crystal + 1].double(),
                                       result.angles_deg[crystal : crystal + 1].double()).cpu()
    final = result.frac_coords[sl].detach().cpu().double()
    batch = torch.zeros(counts[crystal], dtype=torch.long)
    rows = []
    for f, s in zip(result.frames, frame_structures(result, crystal), strict=True):
        moved = min_image_cart_displacement(f.frac_coords[sl].double(), final, lattice, batch)
        rms = rms_distance(s, true_structure)
        rows.append({"step": f.step, "level": f.level, "sigma": f.sigma,
                     "to_final": float(moved.pow(2).sum(-1).mean().sqrt()),
                     "rms_dist": math.nan if rms is None else rms,
                     "formula": s.composition.reduced_formula,
                     "mean_score": float(f.score_norm[sl].mean())})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- score error
@torch.no_grad()
def score_error_by_level(
    model: CDVAE, dataset: CrystalDataset, indices: Sequence[int] | None = None, seed: int = 0
) -> pd.DataFrame:
    """How well the decoder's score matches the denoising target at each noise level.

    Each crystal of ``indices`` (default: all) is encoded (latent mean), its coordinates are
    noised at every level of ``model.sigmas`` (true lattice and types, as in training) and the
    decoder's score ``s`` is compared with the target ``t`` (minimum-image displacement back to
    the clean position over sigma^2). Also compares the exact score of the blurred crystal
    (:func:`~cdvae_core.diffusion.toy.periodic_gaussian_score`) with the same target.

    Returns:
        One row per level: ``level``, ``sigma`` (Å), ``model_error`` and ``exact_error``, each
        ``sum |s - t|^2 / sum |t|^2`` (0: perfect; 1: no better than a score of zero).
    """
    device = next(model.parameters()).device
    idx = list(range(len(dataset)) if indices is None else indices)
    b = dataset.collate(idx).to(device)
    mu, _, _ = model.encode(b)
    lattice = b.lattice
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for level, sigma in enumerate(model.sigmas.tolist()):
        sig = torch.full((b.frac_coords.shape[0],), sigma, device=device)
        noise_frac = perturb_coords(b.frac_coords.cpu(), lattice.cpu(), b.batch.cpu(),
                                    sig.cpu(), gen).to(device)
        target = min_image_cart_displacement(noise_frac, b.frac_coords, lattice, b.batch) / sigma**2
        score, _ = model.decode_scores(mu, noise_frac, b.atom_types, b.num_atoms, lattice,
                                       b.batch, torch.tensor(sigma, device=device))
        exact = periodic_gaussian_score(noise_frac, b.frac_coords, lattice, b.batch, sigma)
        norm = target.pow(2).sum().clamp(min=1e-30)
        rows.append({"level": level, "sigma": sigma,
                     "model_error": float((score - target).pow(2).sum() / norm),
                     "exact_error": float((exact - target).pow(2).sum() / norm)})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- tables
def path_readout(model: CDVAE, zs: Tensor, min_prob: float = 0.05) -> pd.DataFrame:
    """What the latent heads predict along a path ``zs [M, latent]``: one row per point with
    ``t`` (0 to 1), ``num_atoms``, ``formula``, ``a``, ``b``, ``c`` (Å), ``alpha``, ``beta``,
    ``gamma`` (degrees), ``prop`` and a column ``p_<element>`` (composition probability) for
    every element above ``min_prob`` somewhere on the path."""
    readouts = [read_latent(model, z, top_k=8) for z in zs]
    elements = sorted({el for r in readouts for el, p in r.composition if p >= min_prob})
    rows = []
    for i, r in enumerate(readouts):
        comp = dict(r.composition)
        row = {"t": i / max(1, len(readouts) - 1), "num_atoms": r.num_atoms, "formula": r.formula,
               **dict(zip(("a", "b", "c"), r.lengths, strict=True)),
               **dict(zip(("alpha", "beta", "gamma"), r.angles_deg, strict=True)),
               "prop": r.prop}
        row.update({f"p_{el}": comp.get(el, 0.0) for el in elements})
        rows.append(row)
    return pd.DataFrame(rows)


def property_samples(
    structures: Sequence[Structure | None],
    property_fn: Callable[[list[Structure]], np.ndarray] | None = None,
    source: str = "",
) -> pd.DataFrame:
    """``source``, ``density_g_cm3``, ``n_elements`` and (with ``property_fn``, an independent
    predictor) ``predicted_property`` of each structure: the quantities whose distributions the
    paper compares between generated and test materials (NaN for a ``None`` structure)."""
    table = pd.DataFrame({
        "source": source,
        "density_g_cm3": [density_g_cm3(s) for s in structures],
        "n_elements": [num_elements(s) if s is not None else np.nan for s in structures],
    })
    if property_fn is not None:
        table["predicted_property"] = np.asarray(property_fn(list(structures)), dtype=float)
    return table


def optimization_table(
    traj: OptimizationResult,
    decoded: Sequence[Sequence[Structure]],
    material_ids: Sequence[str],
    property_fn: Callable[[list[Structure]], np.ndarray] | None = None,
) -> pd.DataFrame:
    """One row per (saved step, material) of a latent optimisation: ``step``, ``material_id``,
    ``formula`` and ``n_atoms`` of the structure decoded there, ``latent_property`` (the
    model's own head at that z) and ``predicted_property`` (``property_fn``, an independent
    predictor, on the decoded structure; NaN without one).

    Args:
        traj: the result of :func:`~cdvae_core.model.optimize.optimize_latent`.
        decoded: ``decoded[k]`` the structures decoded from ``traj.z_saved[k]`` (None for a
            failed decode: no formula, ``decoded`` False, no prediction).
        material_ids: one id per optimised material.
    """
    rows = []
    for step, structures in zip(traj.saved_steps, decoded, strict=True):
        ok = [i for i, s in enumerate(structures) if s is not None]
        pred = np.full(len(structures), np.nan)
        if property_fn is not None and ok:
            pred[ok] = np.asarray(property_fn([structures[i] for i in ok]), dtype=float)
        for i, s in enumerate(structures):
            rows.append({"step": step, "material_id": material_ids[i],
                         "formula": s.composition.reduced_formula if s is not None else "",
                         "n_atoms": len(s) if s is not None else 0,
                         "decoded": s is not None,
                         "latent_property": float(traj.prop[step, i]),
                         "predicted_property": float(pred[i])})
    return pd.DataFrame(rows)


def best_decodes(table: pd.DataFrame, direction: str = "minimize") -> pd.DataFrame:
    """Each material's best decode after the start (``step > 0``) by ``predicted_property``
    (the paper keeps the best of the 10 decodes by the independent predictor), beside its
    start (``start_formula``, ``start_property``: the decode of the unoptimised z). A material
    without any predicted value keeps its last decode with NaN."""
    if direction not in ("minimize", "maximize"):
        raise ValueError(f"direction must be 'minimize' or 'maximize', got {direction!r}")
    sign = 1.0 if direction == "minimize" else -1.0
    later = table[table["step"] > 0]
    later = later.assign(_key=(sign * later["predicted_property"]).fillna(np.inf))
    # reversed, then a stable sort: among equal values (all NaN included) the last decode wins
    best = later.iloc[::-1].sort_values("_key", kind="stable").drop_duplicates("material_id")
    ids = list(dict.fromkeys(later["material_id"]))
    best = best.drop(columns="_key").set_index("material_id").loc[ids].reset_index()
    start = table[table["step"] == 0].set_index("material_id")
    return best.assign(start_formula=best["material_id"].map(start["formula"]),
                       start_property=best["material_id"].map(start["predicted_property"]))


# ---------------------------------------------------------------------------- figures
def noise_schedule_figure(sigmas: Tensor, step_lr: float) -> go.Figure:
    """Noise level ``sigma_j`` (Å) and Langevin step ``alpha_j = step_lr (sigma_j/sigma_L)^2``
    (Å^2) against the level ``j``, side by side on log axes with one tick per decade (on one
    shared plot the two straight lines cross and their tick labels collide)."""
    s = sigmas.detach().cpu().double()
    alpha = step_lr * (s / s[-1]) ** 2
    levels = list(range(1, len(s) + 1))
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12,
                        subplot_titles=["noise level sigma_j (Å)", "Langevin step size alpha_j (Å²)"])
    fig.add_trace(go.Scatter(x=levels, y=s.tolist(), name="sigma_j (Å)", mode="lines+markers",
                             marker={"size": 4}), row=1, col=1)
    fig.add_trace(go.Scatter(x=levels, y=alpha.tolist(), name="alpha_j (Å²)",
                             mode="lines+markers", marker={"size": 4}), row=1, col=2)
    fig.update_yaxes(type="log", dtick=1, exponentformat="power")
    fig.update_xaxes(title_text="level j (1 = noisiest)")
    fig.update_layout(title="Geometric noise schedule and Langevin step sizes", height=380,
                      showlegend=False)
    return fig


def score_profile_figure(cell_length: float, sigmas: Sequence[float], site: float = 0.8) -> go.Figure:
    """One panel per noise level: exact, minimum-image and naive scores along the cell."""
    fig = make_subplots(rows=1, cols=len(sigmas), subplot_titles=[f"sigma = {s:g} Å" for s in sigmas])
    styles = {"exact": ("exact score of the blurred periodic density", "solid"),
              "min_image": ("minimum-image target (CDVAE)", "dash"),
              "naive": ("naive target (ignores periodicity)", "dot")}
    for col, sigma in enumerate(sigmas, start=1):
        prof = score_profile(cell_length, sigma, site)
        for key, (name, dash) in styles.items():
            fig.add_trace(go.Scatter(x=prof["x"], y=prof[key] * sigma**2, name=name,
                                     legendgroup=key, showlegend=col == 1,
                                     line={"dash": dash}), row=1, col=col)
        fig.add_vline(x=site * cell_length, line={"color": "grey", "width": 1}, row=1, col=col)
        fig.update_xaxes(title_text="noisy position x (Å)", row=1, col=col)
    fig.update_yaxes(title_text="score × sigma² (Å)", row=1, col=1)
    fig.update_layout(title=f"Scores along a cell of {cell_length:g} Å, site at "
                            f"{site * cell_length:.2f} Å (grey)", height=380)
    return fig


def trajectory_figure(table: pd.DataFrame, columns: dict[str, str], title: str) -> go.Figure:
    """The noise level and the distances ``columns`` (``{column: legend label}``) of a
    trajectory table against the Langevin step, on a log axis."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=table["step"], y=table["sigma"], name="noise level sigma (Å)",
                             line={"dash": "dash", "color": "grey"}))
    for column, label in columns.items():
        # a log axis has no zero (e.g. the distance to the final positions at the last step):
        # such points are left out rather than drawn as a plunge to the axis floor
        y = table[column].where(table[column] > 0)
        fig.add_trace(go.Scatter(x=table["step"], y=y, name=label, mode="lines+markers",
                                 marker={"size": 4}))
    fig.update_yaxes(type="log")
    fig.update_layout(title=title, xaxis_title="Langevin step", height=400,
                      legend={"orientation": "h", "y": -0.25})
    return fig


def score_error_figure(table: pd.DataFrame, model_label: str = "trained decoder") -> go.Figure:
    """Relative score error against sigma (log x) for the model and the exact score."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=table["sigma"], y=table["model_error"], name=model_label,
                             mode="lines+markers"))
    fig.add_trace(go.Scatter(x=table["sigma"], y=table["exact_error"],
                             name="exact score of the blurred crystal", line={"dash": "dash"}))
    fig.add_hline(y=1.0, line={"color": "grey", "dash": "dot"},
                  annotation_text="score = 0", annotation_position="bottom right")
    fig.update_xaxes(type="log", title_text="noise level sigma (Å)")
    fig.update_yaxes(title_text="|s - target|² / |target|²")
    fig.update_layout(title="Score error against the denoising target, per noise level", height=380)
    return fig


def optimization_figure(
    traj: OptimizationResult,
    table: pd.DataFrame | None = None,
    percentiles: Sequence[float] | None = None,
    property_name: str = "property",
) -> go.Figure:
    """The latent head's property at every Adam step (thin line per material, bold mean) and,
    with ``table`` (:func:`optimization_table`), the independent predictor's mean on the
    structures decoded at the saved steps; dotted lines at the SR5/10/15 ``percentiles``."""
    prop = traj.prop.detach().cpu().numpy()  # [T + 1, B]
    steps = np.arange(prop.shape[0])
    fig = go.Figure()
    for i in range(prop.shape[1]):
        fig.add_trace(go.Scatter(x=steps, y=prop[:, i], mode="lines", showlegend=i == 0,
                                 name="latent head, each material", legendgroup="each",
                                 line={"width": 0.7, "color": "rgba(100,100,200,0.35)"}))
    fig.add_trace(go.Scatter(x=steps, y=prop.mean(axis=1), name="latent head, mean",
                             line={"width": 3, "color": "navy"}))
    if table is not None and table["predicted_property"].notna().any():
        mean = table.groupby("step")["predicted_property"].mean()
        fig.add_trace(go.Scatter(x=mean.index, y=mean.values, mode="lines+markers",
                                 name="independent predictor on decoded structures, mean",
                                 line={"color": "darkorange", "width": 2}))
    for name, p in zip(("SR5", "SR10", "SR15"), percentiles or (), strict=False):
        fig.add_hline(y=p, line={"dash": "dot", "color": "grey"}, annotation_text=name)
    fig.update_layout(title="Property along the latent optimisation", xaxis_title="Adam step",
                      yaxis_title=property_name, height=420)
    return fig


# ---------------------------------------------------------------------------- 3D views
def structures_view(
    structures: Sequence[Structure],
    labels: Sequence[str] | None = None,
    columns: int = 4,
    width: int = 240,
    height: int = 240,
    options=None,
) -> NotebookView:
    """A grid of 3D views, ``columns`` per row, one per structure, drawn as the app draws them
    (:func:`cdvae_core.explore.scene.show_structures`: bonds across the cell faces with the
    image atoms they reach, atoms on faces repeated, the cell edges, VESTA colours with a
    legend; ``options``: a :class:`~cdvae_core.explore.scene.SceneOptions` for supercells,
    polyhedra, cell choice). Displayed, it draws offline
    (:class:`~cdvae_core.explore.notebook_views.NotebookView`)."""
    from cdvae_core.explore.scene import SceneOptions, show_structures

    return show_structures(structures, labels, options or SceneOptions(), columns, width, height)
