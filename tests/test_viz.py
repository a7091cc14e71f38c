"""Helpers of cdvae_core.viz: latent readout, projection, interpolation, sampler settings,
trajectory export, viewer payloads, nearest reference material."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from ase.io import read
from pymatgen.core import Lattice

from cdvae_core import viz
from cdvae_core.data.dataset import CrystalDataset
from cdvae_core.data.scaler import StandardScaler
from cdvae_core.model.cdvae import CDVAE
from cdvae_core.model.config import ModelConfig
from cdvae_core.sampling import decode, get_preset

from conftest import cubic_srtio3, diamond_carbon, rocksalt_nacl

SMALL = {"hidden": 16, "num_layers": 1, "num_rbf": 8}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = ModelConfig.for_dataset("perov_5", encoder=SMALL, decoder=SMALL, latent_dim=8,
                                  hidden_dim=16)
    # lattice scalers near Perov-5's: unit scalers give sub-Ångström cells (slow decoder graphs)
    lattice = StandardScaler(torch.tensor([2.3, 2.3, 2.3, 90.0, 90.0, 90.0]),
                             torch.tensor([0.1, 0.1, 0.1, 2.0, 2.0, 2.0]))
    return CDVAE(cfg, scalers={"lattice": lattice}).eval()


@pytest.fixture(scope="module")
def trajectory(model):
    z = torch.randn(2, 8, generator=torch.Generator().manual_seed(1))
    cfg = get_preset("interactive", n_step_each=1, level_stride=10, save_every=2)
    return decode(model, z, cfg, torch.Generator().manual_seed(0))


def test_read_latent_matches_the_heads(model):
    z = torch.randn(8)
    r = viz.read_latent(model, z, top_k=4)
    n = int(model.predict_num_atoms(z[None]).argmax(-1).clamp(min=1))
    assert r.num_atoms == n and 0 < r.num_atoms_prob <= 1
    assert len(r.lengths) == 3 and len(r.angles_deg) == 3 and min(r.lengths) > 0
    probs = [p for _, p in r.composition]
    assert len(probs) == 4 and probs == sorted(probs, reverse=True)
    with torch.no_grad():
        assert r.prop == pytest.approx(float(model.predict_property(z[None])[0]))
    assert r.formula  # a reduced formula of n drawn atoms
    assert viz.read_latent(model, z).formula == r.formula  # seeded


def test_readout_lattice_is_the_decoders(model):
    z = torch.randn(1, 8)
    r = viz.read_latent(model, z)
    res = decode(model, z, get_preset("interactive", n_step_each=1, level_stride=25))
    assert res.num_atoms.item() == r.num_atoms
    assert np.allclose(res.lengths[0].tolist(), r.lengths, atol=1e-5)
    assert np.allclose(res.angles_deg[0].tolist(), r.angles_deg, atol=1e-4)


def test_interpolation_ends_and_shapes():
    a, b = torch.randn(8), torch.randn(8)
    for mode in ("linear", "slerp"):
        path = viz.interpolate_latents(a, b, 5, mode)
        assert path.shape == (5, 8)
        assert torch.allclose(path[0], a, atol=1e-5) and torch.allclose(path[-1], b, atol=1e-5)
    line = viz.interpolate_latents(a, b, 3)
    assert torch.allclose(line[1], (a + b) / 2, atol=1e-6)
    # slerp between vectors of equal norm keeps the norm
    c = b / b.norm() * a.norm()
    assert torch.allclose(viz.interpolate_latents(a, c, 4, "slerp").norm(dim=1), a.norm(),
                          atol=1e-4)
    with pytest.raises(ValueError):
        viz.interpolate_latents(a, b, 1)
    with pytest.raises(ValueError):
        viz.interpolate_latents(a, b, 3, "cubic")


def test_projection_fits_and_places_new_points():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(200, 6)) * np.array([5, 2, 0.1, 0.1, 0.1, 0.1])
    proj = viz.fit_projection(z)
    xy = proj.transform(z)
    assert xy.shape == (200, 2)
    assert sum(proj.explained) > 0.95
    assert np.allclose(proj.transform(torch.tensor(z[:3])), xy[:3])
    assert proj.transform(z[0]).shape == (1, 2)
    with pytest.raises(ValueError):
        viz.fit_projection(z[:1])


def test_encode_in_chunks_equals_one_pass(model):
    ds = CrystalDataset.from_structures([cubic_srtio3(), cubic_srtio3(4.0), rocksalt_nacl()])
    seen = []
    z = viz.encode_in_chunks(model, ds, chunk=2, progress=seen.append)
    from cdvae_core.sampling import encode_dataset

    assert torch.allclose(z, encode_dataset(model, ds), atol=1e-5)
    assert seen == [pytest.approx(2 / 3), 1.0]


def test_families_formulas_and_table():
    assert viz.structure_family([38, 22, 8, 8, 8]) == "O"
    assert viz.structure_family([7, 41, 38]) == "N"
    assert viz.structure_family([6] * 8) == "C"
    assert viz.structure_family([18, 11]) == "Na"  # argon has no electronegativity
    assert viz.reduced_formula([38, 22, 8, 8, 8]) == "SrTiO3"
    ds = CrystalDataset.from_structures([cubic_srtio3(), diamond_carbon()], props=[0.5, 1.0])
    table = viz.dataset_table(ds)
    assert list(table["formula"]) == ["SrTiO3", "C"]
    assert list(table["family"]) == ["O", "C"]
    assert list(table["n_atoms"]) == [5, 8] and list(table["n_elements"]) == [3, 1]
    assert table["volume_per_atom"][0] == pytest.approx(3.905**3 / 5, rel=1e-4)
    assert list(table["prop"]) == [0.5, 1.0]


def test_nearest_reference_by_composition_then_volume():
    ref = viz.composition_vectors([[38, 22, 8, 8, 8], [56, 22, 8, 8, 8], [38, 22, 8, 8, 8]])
    ref_vpa = np.array([10.0, 12.0, 14.0])
    query = viz.composition_vectors([[8, 8, 8, 22, 38], [56, 22, 8, 8, 8], [6, 6]])
    idx, dist = viz.nearest_reference(query, ref, np.array([13.5, 0.0, 0.0]), ref_vpa)
    assert idx[0] == 2 and dist[0] == 0  # same composition, closest volume per atom
    assert idx[1] == 1 and dist[1] == 0
    assert dist[2] == pytest.approx(2.0)  # no shared element: L1 of two distributions
    assert np.allclose(query.sum(1), 1.0)
    idx, dist = viz.nearest_reference(query, np.zeros((0, 100)))
    assert list(idx) == [-1, -1, -1]


def test_sampler_config_limits_and_frames(model):
    cfg = viz.sampler_config(model.sigmas, 5, 1e-4, 60)
    steps = viz.total_steps(model.sigmas, cfg)
    assert steps == 250 and cfg.n_step_each == 5
    frames = 1 + steps // cfg.save_every  # step 1 and every save_every-th step
    assert 45 <= frames <= 75
    assert steps % cfg.save_every == 0  # the last frame is the final structure
    pc = viz.sampler_config(model.sigmas, 4, 4e-4, 60, scheme="pc")
    assert viz.total_steps(model.sigmas, pc) == 250 and pc.scheme == "pc"  # 4 + 1 per level
    assert viz.sampler_config(model.sigmas, 0, 1e-4, 10, scheme="pc").n_step_each == 0
    strided = viz.sampler_config(model.sigmas, 2, 1e-4, 10, level_stride=10)
    assert viz.total_steps(model.sigmas, strided) == 2 * 6  # 0, 10, .., 40 and the last level
    for bad, word in [((0, 1e-4, 10), "steps per level"), ((5, 0.0, 10), "step size"),
                      ((5, float("nan"), 10), "step size"), ((5, 1e-4, 1), "frames kept"),
                      ((201, 1e-4, 10), "steps per level")]:
        with pytest.raises(ValueError, match=word):
            viz.sampler_config(model.sigmas, *bad)
    many_levels = torch.logspace(1, -2, 200)  # 200 levels x 200 steps: over the total limit
    with pytest.raises(ValueError, match="interactive limit"):
        viz.sampler_config(many_levels, 200, 1e-4, 10)
    prime = torch.logspace(1, -2, 53)  # 53 steps: no divisor near 10 frames, every 6th step
    assert viz.sampler_config(prime, 1, 1e-4, 10).save_every == 6
    with pytest.raises(ValueError, match="noise scale"):
        viz.sampler_config(model.sigmas, 5, 1e-4, 10, noise_scale=-1)


def test_frame_structures_table_and_extxyz(trajectory):
    res = trajectory
    n0 = int(res.num_atoms[0])
    structures = viz.frame_structures(res, crystal=1)
    assert len(structures) == len(res.frames) > 1
    assert len(structures[0]) == int(res.num_atoms[1])
    final = viz.frame_structures(res)[-1]
    assert np.allclose(final.lattice.abc, res.lengths[0].tolist(), atol=1e-4)
    table = viz.frame_atom_table(res.frames[-1], res.num_atoms)
    assert len(table) == n0
    assert ((table["p_element"] >= 0) & (table["p_element"] <= 1)).all()
    assert {"atom", "element", "score_norm", "top1", "top2", "top3"} <= set(table.columns)
    text = viz.trajectory_to_extxyz(res)
    frames = read(io.StringIO(text), index=":", format="extxyz")
    assert len(frames) == len(res.frames)
    assert [f.info["step"] for f in frames] == [f.step for f in res.frames]
    assert frames[0].info["sigma"] == pytest.approx(res.frames[0].sigma)
    assert np.allclose(frames[-1].get_scaled_positions(wrap=False) % 1.0,
                       res.frames[-1].frac_coords[:n0].numpy() % 1.0, atol=1e-5)
    with pytest.raises(IndexError):
        viz.frame_structures(res, crystal=2)


def test_frame_structure_uses_given_lattice(trajectory):
    res = trajectory
    lattice = Lattice.from_parameters(*res.lengths[0].tolist(), *res.angles_deg[0].tolist())
    s = viz.frame_structure(res.frames[0], lattice, res.num_atoms)
    assert len(s) == int(res.num_atoms[0])


def test_viewer_frame_repeats_boundary_atoms():
    payload = viz.viewer_frame(cubic_srtio3(), "SrTiO3")
    symbols = [a[0] for a in payload["atoms"]]
    # Sr at the corner appears at all 8 corners, each O (on two faces' centres) twice, Ti once
    assert symbols.count("Sr") == 8 and symbols.count("O") == 6 and symbols.count("Ti") == 1
    assert np.allclose(payload["cell"], np.eye(3) * 3.905, atol=1e-4)
    coords = np.array([a[1:] for a in payload["atoms"]])
    assert coords.min() >= -1e-6 and coords.max() <= 3.905 + 1e-4
    assert payload["label"] == "SrTiO3"
    inner = viz.viewer_frame(cubic_srtio3(), boundary_tol=0)
    assert len(inner["atoms"]) == 5
