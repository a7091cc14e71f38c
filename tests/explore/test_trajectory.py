"""Trajectories as structures, per-atom tables, extended XYZ and viewer payloads."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from ase.io import read
from pymatgen.core import Lattice

from cdvae_core import explore
from cdvae_core.diffusion.presets import get_preset
from cdvae_core.model.decode import decode

from conftest import cubic_srtio3
from helpers import small_model

SMALL = {"hidden": 16, "num_layers": 1, "num_rbf": 8}


@pytest.fixture(scope="module")
def model():
    return small_model()


@pytest.fixture(scope="module")
def trajectory(model):
    z = torch.randn(2, 8, generator=torch.Generator().manual_seed(1))
    cfg = get_preset("interactive", n_step_each=1, level_stride=10, save_every=2)
    return decode(model, z, cfg, torch.Generator().manual_seed(0))


def test_frame_structures_table_and_extxyz(trajectory):
    res = trajectory
    n0 = int(res.num_atoms[0])
    structures = explore.frame_structures(res, crystal=1)
    assert len(structures) == len(res.frames) > 1
    assert len(structures[0]) == int(res.num_atoms[1])
    final = explore.frame_structures(res)[-1]
    assert np.allclose(final.lattice.abc, res.lengths[0].tolist(), atol=1e-4)
    table = explore.frame_atom_table(res.frames[-1], res.num_atoms)
    assert len(table) == n0
    assert ((table["p_element"] >= 0) & (table["p_element"] <= 1)).all()
    assert {"atom", "element", "score_norm", "top1", "top2", "top3"} <= set(table.columns)
    text = explore.trajectory_to_extxyz(res)
    frames = read(io.StringIO(text), index=":", format="extxyz")
    assert len(frames) == len(res.frames)
    assert [f.info["step"] for f in frames] == [f.step for f in res.frames]
    assert frames[0].info["sigma"] == pytest.approx(res.frames[0].sigma)
    assert np.allclose(frames[-1].get_scaled_positions(wrap=False) % 1.0,
                       res.frames[-1].frac_coords[:n0].numpy() % 1.0, atol=1e-5)
    with pytest.raises(IndexError):
        explore.frame_structures(res, crystal=2)


def test_frame_structure_uses_given_lattice(trajectory):
    res = trajectory
    lattice = Lattice.from_parameters(*res.lengths[0].tolist(), *res.angles_deg[0].tolist())
    s = explore.frame_structure(res.frames[0], lattice, res.num_atoms)
    assert len(s) == int(res.num_atoms[0])


def test_viewer_frame_repeats_boundary_atoms():
    payload = explore.viewer_frame(cubic_srtio3(), "SrTiO3")
    symbols = [a[0] for a in payload["atoms"]]
    # Sr at the corner appears at all 8 corners, each O (on two faces' centres) twice, Ti once
    assert symbols.count("Sr") == 8 and symbols.count("O") == 6 and symbols.count("Ti") == 1
    assert np.allclose(payload["cell"], np.eye(3) * 3.905, atol=1e-4)
    coords = np.array([a[1:] for a in payload["atoms"]])
    assert coords.min() >= -1e-6 and coords.max() <= 3.905 + 1e-4
    assert payload["label"] == "SrTiO3"
    inner = explore.viewer_frame(cubic_srtio3(), boundary_tol=0)
    assert len(inner["atoms"]) == 5
