"""The viewer's scenes: periodic bonds across faces with their image atoms, corners, polyhedra,
supercells, cell choices, symmetry at a tolerance, trajectory physics, notebook HTML."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from cdvae_core.diffusion.presets import get_preset
from cdvae_core.explore import frame_structures
from cdvae_core.explore import scene as scn
from cdvae_core.model.decode import decode

from conftest import cubic_srtio3, rocksalt_nacl
from helpers import small_model


def _bond_lengths(sc: dict) -> np.ndarray:
    xyz = np.array([a[1:4] for a in sc["atoms"]])
    return np.array([np.linalg.norm(xyz[a] - xyz[b]) for a, b in sc["bonds"]])


def test_perovskite_has_its_corners_cross_face_bonds_and_images():
    sc = scn.structure_scene(cubic_srtio3(), label="SrTiO3")
    json.dumps(sc)
    atoms = sc["atoms"]
    assert sc["n_sites"] == 5 and sum(a[5] == 0 for a in atoms) == 5
    assert sum(a[0] == "Sr" and a[6] for a in atoms) == 8  # the cube of corner Sr
    assert sc["cross_bonds"] and any(a[5] == 2 for a in atoms)
    for k in sc["cross_bonds"]:  # a cross bond joins an atom of the cell to an image
        kinds = {atoms[i][5] for i in sc["bonds"][k]}
        assert 2 in kinds and kinds & {0, 1}
    lengths = _bond_lengths(sc)
    # Ti-O a/2 and Sr-O a/sqrt(2), nothing else (no cation-cation contacts)
    assert np.allclose(np.sort(np.unique(lengths.round(3))), [1.952, 2.761], atol=2e-3)
    assert sc["legend"][0][0] == "O" and sc["notes"]["convention"].startswith("VESTA")


def test_rocksalt_bonds_cross_the_faces():
    sc = scn.structure_scene(rocksalt_nacl())
    assert sc["cross_bonds"]
    assert np.allclose(_bond_lengths(sc), 5.64 / 2, atol=1e-3)
    box = [a[0] for a in sc["atoms"] if a[5] != 2]
    assert box.count("Na") == 14 and box.count("Cl") == 13


def test_polyhedra_are_the_octahedra_wound_outward():
    sc = scn.structure_scene(cubic_srtio3(), scn.SceneOptions(polyhedra=True))
    assert len(sc["polyhedra"]) == 1
    centre, faces = sc["polyhedra"][0]
    assert sc["atoms"][centre][0] == "Ti" and len(faces) == 8
    assert len({v for f in faces for v in f}) == 6
    xyz = np.array([a[1:4] for a in sc["atoms"]])
    for a, b, c in faces:
        normal = np.cross(xyz[b] - xyz[a], xyz[c] - xyz[a])
        assert np.dot(normal, xyz[a] - xyz[centre]) > 0
    big = scn.structure_scene(cubic_srtio3(), scn.SceneOptions(polyhedra=True, supercell=(2, 2, 2)))
    assert big["n_sites"] == 40 and len(big["polyhedra"]) == 8


def test_crystalnn_bonds_agree_on_rocksalt():
    sc = scn.structure_scene(rocksalt_nacl(), scn.SceneOptions(bonds="crystalnn"))
    assert sc["cross_bonds"] and np.allclose(_bond_lengths(sc), 2.82, atol=1e-3)
    assert not scn.structure_scene(rocksalt_nacl(), scn.SceneOptions(bonds="none"))["bonds"]


def test_cell_choices_and_supercell():
    prim = Structure(Lattice.from_parameters(3.99, 3.99, 3.99, 60, 60, 60), ["Na", "Cl"],
                     [[0, 0, 0], [0.5, 0.5, 0.5]])
    conv = scn.shown_structure(prim, scn.SceneOptions(cell="conventional"))
    assert len(conv) == 8 and np.allclose(conv.lattice.abc, 5.643, atol=1e-2)
    skewed = prim.copy()
    skewed.make_supercell([[1, 1, 0], [0, 1, 0], [0, 0, 1]])  # same lattice, a longer a
    niggli = scn.shown_structure(skewed, scn.SceneOptions(cell="niggli"))
    assert len(niggli) == 2 and np.allclose(niggli.lattice.abc, 3.99, atol=1e-3)
    sc = scn.shown_structure(prim, scn.SceneOptions(supercell=(2, 1, 3)))
    assert len(sc) == 12 and (sc.frac_coords >= 0).all() and (sc.frac_coords < 1).all()


def test_tolerance_decides_the_space_group_and_symmetrisation():
    s = cubic_srtio3()
    s.translate_sites([1], [0.0, 0.0, 0.01], frac_coords=True)  # Ti 0.04 Å off centre
    loose, tight = scn.symmetry_report(s, 0.1), scn.symmetry_report(s, 0.01)
    assert loose["number"] == 221 and loose["symbol"] == "Pm-3m"
    assert tight["number"] != 221 and tight["symprec"] == 0.01
    ideal = scn.shown_structure(s, scn.SceneOptions(symmetrized=True, symprec=0.1))
    assert scn.symmetry_report(ideal, 0.01)["number"] == 221


@pytest.mark.parametrize("kwargs, words", [
    ({"supercell": (10, 1, 1)}, "1 to 3"), ({"supercell": (0, 1, 1)}, "1 to 3"),
    ({"symprec": 0.0}, "0.01 to 0.5"), ({"symprec": -0.1}, "0.01 to 0.5"),
    ({"symprec": 0.6}, "0.01 to 0.5"), ({"cell": "primitive"}, "cell choice"),
    ({"bonds": "voronoi"}, "bonds")])
def test_bad_settings_are_refused_in_words(kwargs, words):
    with pytest.raises(scn.SceneError, match=words):
        scn.SceneOptions(**kwargs)


@pytest.fixture(scope="module")
def trajectory():
    z = torch.randn(1, 8, generator=torch.Generator().manual_seed(1))
    cfg = get_preset("interactive", n_step_each=1, level_stride=10, save_every=2)
    return decode(small_model(), z, cfg, torch.Generator().manual_seed(0))


def test_trajectory_scenes_carry_the_sampler_physics(trajectory):
    res = trajectory
    n = int(res.num_atoms[0])
    target = cubic_srtio3()
    scenes = scn.trajectory_scenes(res, target=target)
    assert len(scenes) == len(res.frames)
    json.dumps(scenes)
    for sc, f in zip(scenes, res.frames, strict=True):
        arrows = np.array(sc["arrows"])
        assert arrows.shape == (n, 6)
        assert np.allclose(arrows[:, 3:], f.sigma**2 * f.score[:n].numpy(), atol=1e-3)
        assert np.allclose(np.linalg.norm(f.score[:n], axis=-1), f.score_norm[:n], atol=1e-5)
        assert len(sc["p"]) == n and all(0 <= p <= 1 for p in sc["p"])
        assert len(sc["ghosts"]) == sum(a[5] != 2 for a in scn.structure_scene(target)["atoms"])
    assert np.allclose(scenes[0]["disp"], 0)
    # the chained displacements lead back to the previous frame (minimum image)
    lat = frame_structures(res)[0].lattice
    d = np.array(scenes[1]["disp"]) @ np.linalg.inv(lat.matrix)
    df = res.frames[1].frac_coords[:n].numpy() - res.frames[0].frac_coords[:n].numpy()
    assert np.allclose(d, df - np.round(df), atol=1e-3)
    with pytest.raises(scn.SceneError):
        scn.trajectory_scenes(res, options=scn.SceneOptions(supercell=(2, 1, 1)))


def test_notebook_html_is_offline_and_uses_the_renderer():
    html = scn.show_structures([cubic_srtio3(), rocksalt_nacl()],
                               options=scn.SceneOptions(polyhedra=True)).html(with_library=True)
    assert "CdvaeScene.standalone" in html and "$3Dmol" in html
    assert "<script src=" not in html  # everything inline: no network
    with pytest.raises(ValueError):
        scn.show_structures([])
