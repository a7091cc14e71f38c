"""Periodic geometry against pymatgen, the reference for crystallographic conventions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.core import Lattice, Structure

from cdvae_core.data.parsing import canonical_structure, parse_cif
from cdvae_core.geometry import (
    cart_to_frac,
    frac_to_cart,
    lattice_params_to_matrix,
    matrix_to_lattice_params,
    min_image_cart_displacement,
    radius_graph_pbc,
    wrap_frac,
)

from conftest import cubic_srtio3, diamond_carbon, rocksalt_nacl
from helpers import data_file


def _triclinic() -> Structure:
    lat = Lattice.from_parameters(3.1, 4.7, 5.3, 71.0, 103.0, 117.0)
    rng = np.random.default_rng(3)
    return Structure(lat, ["Si", "O", "O", "Mg"], rng.random((4, 3)))


def test_lattice_params_roundtrip_matches_pymatgen():
    params = [(3.9, 3.9, 3.9, 90, 90, 90), (2.5, 4.1, 6.3, 65.0, 80.0, 118.0),
              (5.0, 5.0, 7.0, 90, 90, 120)]
    for p in params:
        mat = lattice_params_to_matrix(torch.tensor([p[:3]], dtype=torch.float64),
                                       torch.tensor([p[3:]], dtype=torch.float64))[0]
        ref = Lattice.from_parameters(*p).matrix
        np.testing.assert_allclose(mat.numpy(), ref, atol=1e-10)
        lengths, angles = matrix_to_lattice_params(mat[None])
        np.testing.assert_allclose(lengths[0].numpy(), p[:3], atol=1e-10)
        np.testing.assert_allclose(angles[0].numpy(), p[3:], atol=1e-8)


def test_frac_cart_roundtrip_and_wrap():
    s = _triclinic()
    lat = torch.tensor(s.lattice.matrix)[None]
    frac = torch.tensor(s.frac_coords)
    batch = torch.zeros(len(s), dtype=torch.long)
    cart = frac_to_cart(frac, lat, batch)
    np.testing.assert_allclose(cart.numpy(), s.cart_coords, atol=1e-10)
    np.testing.assert_allclose(cart_to_frac(cart, lat, batch).numpy(), s.frac_coords, atol=1e-10)
    w = wrap_frac(torch.tensor([[-1e-9, 1.0, 2.25]], dtype=torch.float32))
    assert (w >= 0).all() and (w < 1).all()


def test_min_image_displacement_matches_pymatgen():
    s = _triclinic()
    rng = np.random.default_rng(0)
    a, b = rng.random((50, 3)) * 3 - 1, rng.random((50, 3)) * 3 - 1
    lat = torch.tensor(s.lattice.matrix)[None]
    batch = torch.zeros(50, dtype=torch.long)
    d = min_image_cart_displacement(torch.tensor(a), torch.tensor(b), lat, batch)
    for i in range(50):
        dist, _ = s.lattice.get_distance_and_image(a[i], b[i])
        assert d[i].norm().item() == pytest.approx(dist, abs=1e-9)


def _pymatgen_neighbours(s: Structure, cutoff: float):
    centres, neigh, images, dists = s.get_neighbor_list(cutoff)
    keep = dists > 1e-8
    return {
        (int(c), int(n), *map(int, np.round(im))): float(d)
        for c, n, im, d in zip(centres[keep], neigh[keep], images[keep], dists[keep], strict=True)
    }


def _ours(structures: list[Structure], cutoff: float, max_neighbors=None):
    frac = torch.tensor(np.concatenate([s.frac_coords % 1.0 for s in structures]))
    lat = torch.tensor(np.stack([s.lattice.matrix for s in structures]))
    num = torch.tensor([len(s) for s in structures])
    ei, img, dist = radius_graph_pbc(frac, lat, num, cutoff, max_neighbors)
    return ei, img, dist, num


def _real_structures() -> list[Structure]:
    out = [rocksalt_nacl(), cubic_srtio3(), diamond_carbon(), _triclinic()]
    for ds in ("perov_5", "carbon_24"):
        try:
            df = pd.read_csv(data_file(ds, "val"), nrows=6)
        except pytest.skip.Exception:
            continue
        out += [canonical_structure(parse_cif(c)) for c in df["cif"]]
    return out


def test_radius_graph_agrees_with_pymatgen_neighbour_lists():
    structures = [Structure(s.lattice, s.species, s.frac_coords % 1.0) for s in _real_structures()]
    cutoff = 5.0
    ei, img, dist, num = _ours(structures, cutoff)
    start = torch.cumsum(num, 0) - num
    batch = torch.repeat_interleave(torch.arange(len(structures)), num)
    for k, s in enumerate(structures):
        ref = _pymatgen_neighbours(s, cutoff)
        sel = batch[ei[1]] == k
        ours = {
            (int(c - start[k]), int(n - start[k]), *map(int, im)): float(d)
            for n, c, im, d in zip(ei[0][sel], ei[1][sel], img[sel], dist[sel], strict=True)
        }
        assert set(ours) == set(ref), f"structure {k}: neighbour sets differ"
        for key, d in ref.items():
            assert ours[key] == pytest.approx(d, abs=1e-6)


def test_radius_graph_max_neighbours_keeps_the_nearest():
    structures = _real_structures()
    cutoff, k_max = 7.0, 20
    ei, _, dist, num = _ours(structures, cutoff, k_max)
    start = torch.cumsum(num, 0) - num
    for k, s in enumerate(structures):
        ref = _pymatgen_neighbours(s, cutoff)
        for i in range(len(s)):
            ref_d = sorted(d for (c, *_), d in ref.items() if c == i)[:k_max]
            ours = dist[ei[1] == start[k] + i].sort().values.numpy()
            np.testing.assert_allclose(ours, ref_d, atol=1e-6)


def test_radius_graph_vector_matches_distance_and_is_batched():
    structures = _real_structures()[:4]
    ei, img, dist, num = _ours(structures, 6.0, 12)
    # one crystal at a time gives the same edges as the batch
    start = 0
    for s in structures:
        e1, i1, d1, _ = _ours([s], 6.0, 12)
        sel = (ei[1] >= start) & (ei[1] < start + len(s))
        torch.testing.assert_close(ei[:, sel] - start, e1)
        torch.testing.assert_close(dist[sel], d1)
        start += len(s)


def test_sanitize_lattice_params_repairs_only_impossible_cells():
    from cdvae_core.geometry import cell_volume, sanitize_lattice_params

    lengths = torch.tensor([[3.0, 4.0, 5.0], [3.0, -1.0, 5.0], [2.0, 2.0, 2.0], [4.0, 4.0, 4.0]],
                           dtype=torch.float64, requires_grad=True)
    angles = torch.tensor([[60.0, 70.0, 80.0], [90.0, 90.0, 90.0], [10.0, 10.0, 170.0],
                           [float("nan"), 90.0, 120.0]], dtype=torch.float64, requires_grad=True)
    new_len, new_ang = sanitize_lattice_params(lengths, angles, min_length=0.5,
                                               min_volume_fraction=0.1)
    # a sound cell is untouched and keeps its gradient
    assert torch.equal(new_len[0], lengths[0].detach()) and torch.equal(new_ang[0], angles[0].detach())
    new_ang[0].sum().backward(retain_graph=True)
    assert torch.equal(angles.grad[0], torch.ones(3, dtype=torch.float64))
    assert new_len[1, 1] == 0.5
    # 10/10/170 has no cell: pulled towards 90 degrees just enough
    lat = lattice_params_to_matrix(new_len, new_ang)
    frac_vol = cell_volume(lat) / new_len.prod(-1)
    assert (frac_vol >= 0.1 - 1e-9).all() and torch.isfinite(lat).all()
    # along 90 -/+ 80 t a cell needs alpha + beta > gamma, i.e. t < 0.375: on the 0.05 grid
    # t = 0.35, angles 62, 62, 118
    torch.testing.assert_close(new_ang[2].detach(), torch.tensor([62.0, 62.0, 118.0],
                                                                 dtype=torch.float64))
    assert new_ang[3, 0] == 90.0
    # a pymatgen lattice from the repaired numbers agrees
    ref = Lattice.from_parameters(*new_len[2].tolist(), *new_ang[2].tolist())
    assert abs(ref.volume - float(cell_volume(lat)[2])) < 1e-6
