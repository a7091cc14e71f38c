"""The tutorial notebooks tables, figures and 3D views, and its toy Langevin run."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

from cdvae_core.data.dataset import CrystalDataset
from cdvae_core.data.scaler import fit_scalers
from cdvae_core.diffusion.langevin import LangevinConfig
from cdvae_core.diffusion.noise import geometric_sigmas
from cdvae_core.explore import tutorial
from cdvae_core.model.cdvae import CDVAE
from cdvae_core.model.config import ModelConfig
from cdvae_core.model.decode import decode
from cdvae_core.model.optimize import OptimizationResult

from conftest import cubic_srtio3, rocksalt_nacl, triclinic

SMALL = {"hidden": 16, "num_layers": 1, "num_rbf": 8}
SIGMAS = geometric_sigmas(10.0, 0.01, 50)


def test_score_profile_shows_where_the_naive_target_goes_wrong():
    prof = tutorial.score_profile(4.0, 0.1, site=0.8, num=200)
    assert list(prof.columns) == ["x", "exact", "min_image", "naive"]
    away = (prof["x"] - 1.2).abs() > 0.3  # at 1.2 Å two images of the site tie
    assert np.allclose(prof["exact"][away], prof["min_image"][away], rtol=1e-6, atol=1e-6)
    across = prof["x"] < 1.2  # more than half a cell from the site at 3.2 Å, through the face
    assert (prof.loc[across, "naive"] > 0).all() and (prof.loc[across, "min_image"] < 0).all()
    assert np.allclose(prof.loc[~across & (prof["x"] > 1.3), "naive"],
                       prof.loc[~across & (prof["x"] > 1.3), "min_image"])
    wide = tutorial.score_profile(4.0, 1.5, site=0.8, num=200)
    assert wide["exact"].abs().max() * 1.5**2 < 0.5 * (wide["min_image"].abs().max() * 1.5**2)


# ---------------------------------------------------------------------------- toy Langevin
@pytest.mark.parametrize("make", [cubic_srtio3, rocksalt_nacl, triclinic],
                         ids=["srtio3", "nacl", "triclinic"])
def test_toy_langevin_recovers_the_known_structure(make):
    structure = make()
    cfg = LangevinConfig(n_step_each=5, save_every=5)
    result = tutorial.run_toy_langevin(structure, SIGMAS, cfg, seed=0)
    errors = tutorial.site_errors(result.frac_coords, structure)
    assert float(errors.max()) < 0.1, errors
    table = tutorial.toy_trajectory_table(result, structure)
    assert list(table.columns) == ["step", "level", "sigma", "rms_error", "max_error",
                                   "mean_score"]
    assert table["rms_error"].iloc[0] > 10 * table["rms_error"].iloc[-1]
    assert table["sigma"].is_monotonic_decreasing
    assert torch.equal(result.atom_types, torch.tensor([s.specie.Z for s in structure]))


def test_toy_langevin_is_reproducible():
    s = cubic_srtio3()
    cfg = LangevinConfig(n_step_each=2)
    a = tutorial.run_toy_langevin(s, SIGMAS, cfg, seed=3).frac_coords
    assert torch.equal(a, tutorial.run_toy_langevin(s, SIGMAS, cfg, seed=3).frac_coords)
    assert not torch.equal(a, tutorial.run_toy_langevin(s, SIGMAS, cfg, seed=4).frac_coords)


def test_noisy_copies_move_atoms_by_about_sigma():
    s = rocksalt_nacl()
    copies = tutorial.noisy_copies(s, [0.001, 0.2], seed=0)
    moved = [tutorial.site_errors(torch.tensor(c.frac_coords), s) for c in copies]
    assert float(moved[0].max()) < 0.01
    assert 0.05 < float(moved[1].mean()) < 0.6
    assert [str(c.species[0]) for c in copies] == ["Na", "Na"]


# ---------------------------------------------------------------------------- with a model
@pytest.fixture
def tiny():
    structures = [cubic_srtio3(3.8 + 0.05 * i) for i in range(3)] + [rocksalt_nacl()]
    ds = CrystalDataset.from_structures(structures, "perov_5", props=[0.1, 0.5, 1.0, 2.0],
                                        material_ids=["a", "b", "c", "d"])
    torch.manual_seed(0)
    cfg = ModelConfig.for_dataset("perov_5", encoder=SMALL, decoder=SMALL, latent_dim=8,
                                  hidden_dim=16)
    return CDVAE(cfg, fit_scalers(ds)).eval(), ds


def test_score_error_by_level(tiny):
    model, ds = tiny
    table = tutorial.score_error_by_level(model, ds, [0, 1, 3], seed=0)
    assert list(table.columns) == ["level", "sigma", "model_error", "exact_error"]
    assert len(table) == len(model.sigmas)
    assert np.isfinite(table["model_error"]).all()
    assert table["exact_error"].iloc[-10:].max() < 1e-6  # small sigma: exact score = target
    assert table["exact_error"].iloc[0] == pytest.approx(1.0)  # large sigma: flat density
    assert tutorial.score_error_by_level(model, ds, [0, 1, 3], seed=0).equals(table)


def test_reconstruction_trajectory_table(tiny):
    model, ds = tiny
    z = torch.zeros(1, model.cfg.latent_dim)
    result = decode(model, z, LangevinConfig(n_step_each=1, save_every=5),
                    torch.Generator().manual_seed(0))
    table = tutorial.reconstruction_trajectory_table(result, ds.structure(0))
    assert len(table) == len(result.frames)
    assert {"step", "sigma", "to_final", "rms_dist", "formula"} <= set(table.columns)
    assert result.frames[-1].step == 50 and table["to_final"].iloc[-1] < 1e-6  # the end


def test_path_readout(tiny):
    model, _ = tiny
    zs = torch.randn(4, model.cfg.latent_dim, generator=torch.Generator().manual_seed(0))
    table = tutorial.path_readout(model, zs, min_prob=0.0)
    assert table["t"].tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert {"num_atoms", "formula", "a", "b", "c", "alpha", "beta", "gamma", "prop"} <= set(table)
    comp = table[[c for c in table if c.startswith("p_")]]
    assert comp.shape[1] >= 1 and (comp.to_numpy() >= 0).all()


def test_property_samples():
    structures = [cubic_srtio3(), None, rocksalt_nacl()]
    table = tutorial.property_samples(structures, source="gen")
    assert table["source"].eq("gen").all() and np.isnan(table["density_g_cm3"][1])
    assert table["n_elements"].tolist()[::2] == [3, 2]
    with_prop = tutorial.property_samples(structures, lambda ss: np.arange(len(ss), dtype=float))
    assert with_prop["predicted_property"].tolist() == [0.0, 1.0, 2.0]


# ---------------------------------------------------------------------------- optimisation
def _fake_optimisation():
    prop = torch.tensor([[1.0, 2.0], [0.5, 1.5], [0.2, 1.0]])  # [T + 1 = 3, B = 2]
    traj = OptimizationResult(torch.zeros(3, 2, 4), [0, 1, 2], prop)
    decoded = [[cubic_srtio3(), rocksalt_nacl()] for _ in range(3)]
    preds = iter([np.array([0.9, 3.0]), np.array([0.4, np.nan]), np.array([0.6, np.nan])])
    return traj, decoded, (lambda ss: next(preds))


def test_optimization_table_and_best_decodes():
    traj, decoded, fn = _fake_optimisation()
    table = tutorial.optimization_table(traj, decoded, ["m1", "m2"], fn)
    assert len(table) == 6 and table["latent_property"].tolist()[:2] == [1.0, 2.0]
    best = tutorial.best_decodes(table)
    assert best["material_id"].tolist() == ["m1", "m2"]
    assert best["step"].tolist() == [1, 2]  # m1: lowest after the start; m2: none, last decode
    assert best["predicted_property"].iloc[0] == 0.4 and math.isnan(best["predicted_property"][1])
    assert best["start_property"].tolist() == [0.9, 3.0]
    assert tutorial.best_decodes(table, "maximize")["step"].tolist()[0] == 2
    with pytest.raises(ValueError):
        tutorial.best_decodes(table, "sideways")
    fig = tutorial.optimization_figure(traj, table, (0.4, 0.6, 0.7), "heat_ref")
    assert isinstance(fig, go.Figure) and len(fig.data) == 2 + 1 + 1
    assert len(fig.layout.shapes) == 3


def test_optimization_table_takes_a_failed_decode_as_undecoded_and_unscored():
    traj, decoded, _ = _fake_optimisation()
    decoded[1][0] = None  # m1's decode at step 1 failed
    seen = []

    def fn(structures):
        seen.append(len(structures))
        return np.ones(len(structures))

    table = tutorial.optimization_table(traj, decoded, ["m1", "m2"], fn)
    assert seen == [2, 1, 2]  # the instrument never sees the failed decode
    row = table.iloc[2]
    assert (row["step"], row["material_id"], row["formula"], row["n_atoms"]) == (1, "m1", "", 0)
    assert not row["decoded"] and math.isnan(row["predicted_property"])
    assert table["decoded"].sum() == 5
    # m1: its only scored decode after the start; m2: equal values, the last decode wins
    assert tutorial.best_decodes(table)["step"].tolist() == [2, 2]


# ---------------------------------------------------------------------------- figures, views
def test_figures():
    fig = tutorial.noise_schedule_figure(SIGMAS, 1e-4)
    assert fig.data[1].y[0] == pytest.approx(100.0) and fig.data[1].y[-1] == pytest.approx(1e-4)
    assert len(tutorial.score_profile_figure(4.0, [0.1, 1.0]).data) == 6
    # sigma and alpha on their own log panels (one shared plot made their lines cross)
    assert fig.data[0].xaxis != fig.data[1].xaxis and fig.data[0].yaxis != fig.data[1].yaxis
    assert fig.layout.yaxis.type == fig.layout.yaxis2.type == "log"
    table = pd.DataFrame({"step": [1, 2, 3], "sigma": [1.0, 0.1, 0.01], "d": [2.0, 0.2, 0.0]})
    traj = tutorial.trajectory_figure(table, {"d": "distance"}, "t")
    assert len(traj.data) == 2 and traj.layout.yaxis.type == "log"
    # a log axis has no zero: the last distance is left out, not drawn at the axis floor
    assert list(traj.data[1].y[:2]) == [2.0, 0.2] and np.isnan(traj.data[1].y[2])
    errors = pd.DataFrame({"sigma": [1.0, 0.1], "model_error": [1.0, 0.3],
                           "exact_error": [0.5, 0.0]})
    assert len(tutorial.score_error_figure(errors).data) == 2


def test_structures_view_draws_every_cell():
    """The notebooks draw with the app's scene renderer (one picture for a lesson and the app)."""
    view = tutorial.structures_view([cubic_srtio3(), rocksalt_nacl(), triclinic()], columns=2)
    js = view.body_html
    assert view.atoms > 5 + 8 + 4  # atoms on cell faces are repeated
    assert "https://" not in js and "<script src=" not in js  # nothing from a CDN
    assert "CdvaeScene.standalone" in js and js.count('class="cdvae-cell"') == 3
    assert "max-width:486px" in js  # at most two columns of 240 px (and the 6 px gap)
    with pytest.raises(ValueError):
        tutorial.structures_view([])
