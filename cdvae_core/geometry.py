"""Batched periodic geometry in torch.

Conventions used throughout the package:

* A batch of crystals is flat: per-atom tensors are concatenated and ``batch`` (``[num_atoms]``)
  gives the crystal of each atom; ``num_atoms`` (``[num_crystals]``) counts atoms per crystal.
* Lattice matrices are ``[num_crystals, 3, 3]`` with the lattice vectors as **rows**, so
  ``cart = frac @ L`` (Å).
* Lattice parameters follow pymatgen's ``Lattice.from_parameters`` convention, so a matrix built
  here and one built by pymatgen from the same six numbers are identical.
* An edge ``(src, dst)`` of a periodic multigraph carries an integer image offset ``k``
  (``[num_edges, 3]``); its vector points from the centre atom ``dst`` to the neighbour image
  ``src + k``: ``edge_vec = (frac[src] + k - frac[dst]) @ L``. Messages flow ``src -> dst``
  (torch-geometric's ``source_to_target``).
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

__all__ = [
    "lattice_params_to_matrix",
    "matrix_to_lattice_params",
    "frac_to_cart",
    "cart_to_frac",
    "wrap_frac",
    "min_image_frac_displacement",
    "min_image_cart_displacement",
    "edge_vectors",
    "radius_graph_pbc",
    "num_images_for_cutoff",
    "cell_volume",
    "scaled_lengths",
    "unscaled_lengths",
    "sanitize_lattice_params",
]


def lattice_params_to_matrix(lengths: Tensor, angles_deg: Tensor) -> Tensor:
    """Lattice matrices ``[B, 3, 3]`` (rows = vectors, Å) from ``lengths [B, 3]`` (Å) and
    ``angles_deg [B, 3]`` (alpha, beta, gamma in degrees), pymatgen's convention."""
    angles = torch.deg2rad(angles_deg)
    cos_a, cos_b, cos_g = torch.cos(angles).unbind(-1)
    sin_a, sin_b = torch.sin(angles[..., 0]), torch.sin(angles[..., 1])
    val = ((cos_a * cos_b - cos_g) / (sin_a * sin_b)).clamp(-1.0, 1.0)
    gamma_star = torch.arccos(val)
    zeros = torch.zeros_like(cos_a)
    a, b, c = lengths.unbind(-1)
    vec_a = torch.stack([a * sin_b, zeros, a * cos_b], dim=-1)
    vec_b = torch.stack(
        [-b * sin_a * torch.cos(gamma_star), b * sin_a * torch.sin(gamma_star), b * cos_a], dim=-1
    )
    vec_c = torch.stack([zeros, zeros, c], dim=-1)
    return torch.stack([vec_a, vec_b, vec_c], dim=-2)


def sanitize_lattice_params(
    lengths: Tensor,
    angles_deg: Tensor,
    min_length: float = 0.5,
    min_volume_fraction: float = 0.1,
) -> tuple[Tensor, Tensor]:
    """Predicted lattice parameters made into a cell that can be inverted.

    Lengths below ``min_length`` (Å) are raised to it. Three angles need not describe a cell at
    all (say 10°, 10°, 170°): where ``V / (a b c) = sqrt(1 - cos²α - cos²β - cos²γ +
    2 cosα cosβ cosγ)`` is below ``min_volume_fraction`` (or the angles are not finite), the
    angles are pulled towards 90° along ``90 + t (angle - 90)``, with the largest ``t`` in
    ``{1, 0.95, ..., 0}`` that gives enough volume. A sound cell is returned unchanged, with its
    gradient.
    """
    lengths = torch.nan_to_num(lengths, nan=min_length).clamp(min=min_length)
    angles = torch.nan_to_num(angles_deg, nan=90.0, posinf=90.0, neginf=90.0)
    t = torch.linspace(1.0, 0.0, 21, dtype=angles.dtype, device=angles.device)
    cand = 90.0 + t[:, None, None] * (angles[None] - 90.0)  # [T, B, 3]
    cos = torch.cos(torch.deg2rad(cand))
    v2 = 1 - (cos**2).sum(-1) + 2 * cos.prod(-1)  # [T, B]; t = 0 gives 1
    ok = v2 >= min_volume_fraction**2
    ok[-1] = True
    first = ok.to(torch.int8).argmax(dim=0)  # first (largest) t that works, per crystal
    return lengths, cand[first, torch.arange(angles.shape[0], device=angles.device)]


def matrix_to_lattice_params(lattice: Tensor) -> tuple[Tensor, Tensor]:
    """``(lengths [B, 3] Å, angles_deg [B, 3])`` of lattice matrices ``[B, 3, 3]``."""
    lengths = lattice.norm(dim=-1)
    a, b, c = lattice.unbind(-2)
    la, lb, lc = lengths.unbind(-1)

    def angle(u: Tensor, v: Tensor, nu: Tensor, nv: Tensor) -> Tensor:
        cos = ((u * v).sum(-1) / (nu * nv)).clamp(-1.0, 1.0)
        return torch.rad2deg(torch.arccos(cos))

    angles = torch.stack([angle(b, c, lb, lc), angle(a, c, la, lc), angle(a, b, la, lb)], dim=-1)
    return lengths, angles


def cell_volume(lattice: Tensor) -> Tensor:
    """Absolute cell volumes ``[B]`` (Å^3)."""
    return torch.linalg.det(lattice).abs()


def frac_to_cart(frac_coords: Tensor, lattice: Tensor, batch: Tensor) -> Tensor:
    """Cartesian coordinates ``[N, 3]`` (Å) of fractional ``[N, 3]``; ``batch [N]`` indexes
    ``lattice [B, 3, 3]``."""
    return torch.einsum("ni,nij->nj", frac_coords, lattice[batch])


def cart_to_frac(cart_coords: Tensor, lattice: Tensor, batch: Tensor) -> Tensor:
    """Fractional coordinates ``[N, 3]`` of Cartesian ``[N, 3]`` (Å)."""
    inv = torch.linalg.inv(lattice)
    return torch.einsum("ni,nij->nj", cart_coords, inv[batch])


def wrap_frac(frac_coords: Tensor) -> Tensor:
    """Fractional coordinates mapped into ``[0, 1)``."""
    wrapped = frac_coords - torch.floor(frac_coords)
    # floor of -1e-9 gives 1 - 1e-9 which rounds to exactly 1.0 in float32: fold it back to 0.
    return torch.where(wrapped >= 1.0, wrapped - 1.0, wrapped)


_NEIGHBOUR_SHIFTS = torch.tensor(list(itertools.product((-1, 0, 1), repeat=3)), dtype=torch.float64)


def min_image_frac_displacement(
    frac_from: Tensor, frac_to: Tensor, lattice: Tensor, batch: Tensor
) -> Tensor:
    """Fractional displacement ``[N, 3]`` from ``frac_from`` to the nearest periodic image of
    ``frac_to`` (the minimum-image convention, exact for any cell shape: the rounded difference
    is refined over its 27 neighbouring images, which covers every Niggli-reduced cell)."""
    diff = frac_to - frac_from
    diff = diff - torch.round(diff)
    shifts = _NEIGHBOUR_SHIFTS.to(diff)  # [27, 3]
    cand = diff[:, None, :] + shifts[None]  # [N, 27, 3]
    cart = torch.einsum("nki,nij->nkj", cand, lattice[batch])  # [N, 27, 3]
    best = cart.pow(2).sum(-1).argmin(dim=1)  # [N]
    return cand[torch.arange(diff.shape[0], device=diff.device), best]


def min_image_cart_displacement(
    frac_from: Tensor, frac_to: Tensor, lattice: Tensor, batch: Tensor
) -> Tensor:
    """Cartesian minimum-image displacement ``[N, 3]`` (Å) from ``frac_from`` to ``frac_to``."""
    d = min_image_frac_displacement(frac_from, frac_to, lattice, batch)
    return frac_to_cart(d, lattice, batch)


def edge_vectors(
    frac_coords: Tensor, lattice: Tensor, batch: Tensor, edge_index: Tensor, images: Tensor
) -> Tensor:
    """Vectors ``[E, 3]`` (Å) from each centre atom ``edge_index[1]`` to its neighbour image
    ``edge_index[0] + images``; gradients flow to coordinates and lattice."""
    src, dst = edge_index
    dfrac = frac_coords[src] + images.to(frac_coords) - frac_coords[dst]
    return torch.einsum("ei,eij->ej", dfrac, lattice[batch[dst]])


def num_images_for_cutoff(lattice: Tensor, cutoff: float) -> Tensor:
    """Images ``[B, 3]`` needed along each lattice vector so that every neighbour within
    ``cutoff`` of any point of the cell is found: ``ceil(cutoff / interplanar spacing)``."""
    a, b, c = lattice.unbind(-2)
    vol = cell_volume(lattice)
    cross = torch.stack([torch.cross(b, c, dim=-1), torch.cross(c, a, dim=-1),
                         torch.cross(a, b, dim=-1)], dim=-2)
    spacing = vol[:, None] / cross.norm(dim=-1)
    return torch.ceil(cutoff / spacing).long()


def radius_graph_pbc(
    frac_coords: Tensor,
    lattice: Tensor,
    num_atoms: Tensor,
    cutoff: float,
    max_neighbors: int | None = None,
    max_images: int = 6,
) -> tuple[Tensor, Tensor, Tensor]:
    """Periodic radius graph for a whole batch, vectorised.

    Every ordered pair of atoms of a crystal is tried against every periodic image within the
    range needed for ``cutoff``; pairs closer than ``cutoff`` (Å) are kept, self-loops at zero
    distance dropped, and each centre keeps at most ``max_neighbors`` nearest neighbours.

    Args:
        frac_coords: ``[N, 3]`` fractional coordinates (any values; they are wrapped).
        lattice: ``[B, 3, 3]`` lattice matrices (rows are vectors, Å).
        num_atoms: ``[B]`` atoms per crystal.
        cutoff: radius in Å.
        max_neighbors: neighbours kept per centre atom, nearest first (``None``: all).
        max_images: cap on images searched per direction, which bounds memory for a degenerate
            (near-flat) cell; such a cell is not physical, and its graph is then truncated.

    Returns:
        ``edge_index [2, E]`` (row 0 neighbour, row 1 centre), ``images [E, 3]`` integer offsets
        of the neighbour, ``distances [E]`` in Å. Edges are sorted by centre, then distance.
    """
    device = frac_coords.device
    frac = wrap_frac(frac_coords)
    num_crystals = num_atoms.shape[0]
    start = torch.cumsum(num_atoms, 0) - num_atoms  # [B]

    # All ordered pairs (i = centre, j = neighbour) within each crystal.
    n_sq = num_atoms * num_atoms
    pair_crystal = torch.repeat_interleave(torch.arange(num_crystals, device=device), n_sq)
    pair_start = torch.repeat_interleave(torch.cumsum(n_sq, 0) - n_sq, n_sq)
    local = torch.arange(pair_crystal.shape[0], device=device) - pair_start
    n_of_pair = num_atoms[pair_crystal]
    centre = start[pair_crystal] + torch.div(local, n_of_pair, rounding_mode="floor")
    neigh = start[pair_crystal] + local % n_of_pair

    # One image range for the batch (the largest needed): vectorised and cheap for the small
    # cells of the benchmarks; pairs beyond the cutoff are filtered out below anyway.
    n_img = num_images_for_cutoff(lattice.detach(), cutoff).clamp(max=max_images)
    rng = n_img.max(dim=0).values.tolist() if num_crystals > 0 else [0, 0, 0]
    axes = [torch.arange(-r, r + 1, device=device, dtype=frac.dtype) for r in rng]
    shifts = torch.cartesian_prod(*axes).reshape(-1, 3)  # [M, 3]

    dfrac = frac[neigh] - frac[centre]  # [P, 3]
    lat = lattice[pair_crystal]  # [P, 3, 3]
    base = torch.einsum("pi,pij->pj", dfrac, lat)  # [P, 3]
    shift_cart = torch.einsum("mi,pij->pmj", shifts, lat)  # [P, M, 3]
    dist = (base[:, None, :] + shift_cart).norm(dim=-1)  # [P, M]

    keep = dist <= cutoff
    keep &= dist > 1e-8 * max(cutoff, 1.0)  # an atom is not its own neighbour
    pair_idx, img_idx = keep.nonzero(as_tuple=True)
    d = dist[pair_idx, img_idx]
    c = centre[pair_idx]
    nb = neigh[pair_idx]
    img = shifts[img_idx].round().long()

    # Sort by centre, then by distance (stable two-pass sort), and keep the nearest per centre.
    order = torch.argsort(d, stable=True)
    order = order[torch.argsort(c[order], stable=True)]
    d, c, nb, img = d[order], c[order], nb[order], img[order]
    if max_neighbors is not None and c.numel() > 0:
        counts = torch.bincount(c, minlength=frac.shape[0])
        first = torch.cumsum(counts, 0) - counts
        rank = torch.arange(c.shape[0], device=device) - first[c]
        sel = rank < max_neighbors
        d, c, nb, img = d[sel], c[sel], nb[sel], img[sel]
    return torch.stack([nb, c]), img, d


def scaled_lengths(lengths: Tensor, num_atoms: Tensor) -> Tensor:
    """Lengths divided by ``N^(1/3)``: the lattice target of the paper (scale_length)."""
    return lengths / num_atoms.to(lengths)[:, None].pow(1.0 / 3.0)


def unscaled_lengths(scaled: Tensor, num_atoms: Tensor) -> Tensor:
    """Inverse of :func:`scaled_lengths`."""
    return scaled * num_atoms.to(scaled)[:, None].pow(1.0 / 3.0)

